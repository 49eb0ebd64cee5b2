import { UniqueConstraintViolationException } from '@mikro-orm/core';
import { DependencyUnavailableError } from '../../application/ports.ts';

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
