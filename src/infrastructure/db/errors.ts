import { UniqueConstraintViolationException } from '@mikro-orm/core';
import { DependencyUnavailableError } from '../../application/ports.ts';
import { DomainError, InvalidArgumentError } from '../../domain/errors.ts';
import type { DependencyBreaker } from '../dependency-breaker.ts';

/** The name of the unique key a duplicate-key error hit; only the driver's message carries it. */
export function violatedUniqueKey(error: unknown): string | undefined {
  if (!(error instanceof UniqueConstraintViolationException)) return undefined;
  const match = /for key '(?:[^'.]*\.)?([^']+)'/.exec(error.sqlMessage ?? error.message);
  return match?.[1];
}

/** The driver's text stays in the logs (as the cause): a client hears what to do, not how MySQL said it. */
export function databaseUnavailable(operation: string, cause: unknown): DependencyUnavailableError {
  return new DependencyUnavailableError(
    'database',
    `database unavailable while ${operation}; retry shortly`,
    {
      cause,
    },
  );
}

/** MySQL errors about a value, not about the server: out of range, too long, not a date, bad text. */
const DATA_ERRNOS = new Set([
  1048, // ER_BAD_NULL_ERROR
  1153, // ER_NET_PACKET_TOO_LARGE (a statement over max_allowed_packet)
  1264, // ER_WARN_DATA_OUT_OF_RANGE
  1265, // WARN_DATA_TRUNCATED
  1292, // ER_TRUNCATED_WRONG_VALUE (e.g. "Incorrect datetime value")
  1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD ("Incorrect string value")
  1406, // ER_DATA_TOO_LONG
]);

/**
 * Whether the database refused the request's data rather than failed: SQLSTATE class 22 (data
 * exception) or one of the errnos above. Such an error is the caller's, so it must neither be
 * answered UNAVAILABLE nor count against the breaker, or a few bad requests would open the
 * circuit and fail everyone's IssueCoupon.
 */
export function refusedRequestData(error: unknown): boolean {
  const { errno, sqlState } = (error ?? {}) as { errno?: unknown; sqlState?: unknown };
  return (typeof sqlState === 'string' && sqlState.startsWith('22')) || DATA_ERRNOS.has(Number(errno));
}

/** Parses a DATETIME(3) read as a string (the driver runs with dateStrings) as the UTC instant it stores. */
export function utcDate(value: string | Date): Date {
  return value instanceof Date ? value : new Date(`${value.replace(' ', 'T')}Z`);
}

/**
 * Runs one database operation behind the breaker (when there is one): business refusals pass
 * through, a value the database refused becomes InvalidArgumentError (which the breaker does not
 * count), anything else becomes DependencyUnavailableError, and a call over the time limit fails
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
      if (refusedRequestData(error)) {
        throw new InvalidArgumentError(
          'request',
          `the database cannot store a value of this request while ${operation}; check its ranges and lengths`,
        );
      }
      throw databaseUnavailable(operation, error);
    }
  };
  return breaker ? breaker.run(operation, run) : run();
}
