import { UniqueConstraintViolationException } from '@mikro-orm/core';
import { DependencyUnavailableError } from '../../application/ports.ts';
import { DomainError } from '../../domain/errors.ts';
import type { DependencyBreaker } from '../dependency-breaker.ts';

/** The name of the unique key a duplicate-key error hit; only the driver's message carries it. */
export function violatedUniqueKey(error: unknown): string | undefined {
  if (!(error instanceof UniqueConstraintViolationException)) return undefined;
  const match = /for key '(?:[^'.]*\.)?([^']+)'/.exec(error.sqlMessage ?? error.message);
  return match?.[1];
}

export function databaseUnavailable(operation: string, cause: unknown): DependencyUnavailableError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new DependencyUnavailableError('database', `database unavailable while ${operation}: ${reason}`, {
    cause,
  });
}

/** Parses a DATETIME(3) read as a string (the driver runs with dateStrings) as the UTC instant it stores. */
export function utcDate(value: string | Date): Date {
  return value instanceof Date ? value : new Date(`${value.replace(' ', 'T')}Z`);
}

/**
 * Runs one database operation behind the breaker (when there is one): business refusals pass
 * through, anything else becomes DependencyUnavailableError, and a call over the time limit fails
 * with its outcome unknown.
 */
export function guarded<T>(
  breaker: DependencyBreaker | undefined,
  operation: string,
  action: () => Promise<T>,
): Promise<T> {
  const run = async () => {
    try {
      return await action();
    } catch (error) {
      if (error instanceof DomainError || error instanceof DependencyUnavailableError) throw error;
      throw databaseUnavailable(operation, error);
    }
  };
  return breaker ? breaker.run(operation, run) : run();
}
