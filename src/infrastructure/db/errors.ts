import { setTimeout as delay } from 'node:timers/promises';
import {
  DeadlockException,
  LockWaitTimeoutException,
  UniqueConstraintViolationException,
} from '@mikro-orm/core';
import { DependencyUnavailableError } from '../../application/ports.ts';
import { DomainError, InvalidArgumentError } from '../../domain/errors.ts';
import type { DependencyBreaker } from '../dependency-breaker.ts';

/** The name of the unique key a duplicate-key error hit; only the driver's message carries it. */
export function violatedUniqueKey(error: unknown): string | undefined {
  if (!(error instanceof UniqueConstraintViolationException)) return undefined;
  const match = /for key '(?:[^'.]*\.)?([^']+)'/.exec(error.sqlMessage ?? error.message);
  return match?.[1];
}

/** Why InnoDB gave up a transaction over row locks. */
export type LockConflict = 'deadlock' | 'lock-wait-timeout';

/**
 * The lock conflict a statement failed with, if any (MikroORM maps errno 1213 ER_LOCK_DEADLOCK
 * to DeadlockException and 1205 ER_LOCK_WAIT_TIMEOUT to LockWaitTimeoutException). Either way
 * the transaction has written nothing once `transactional()` rethrows it: InnoDB rolls a deadlock
 * victim back whole, and after a lock wait timeout (which undoes only the statement, unless
 * innodb_rollback_on_timeout) `transactional()` rolls back the rest. So it is safe to run again.
 */
export function lockConflict(error: unknown): LockConflict | undefined {
  if (error instanceof DeadlockException) return 'deadlock';
  if (error instanceof LockWaitTimeoutException) return 'lock-wait-timeout';
  return undefined;
}

export interface LockConflictRetries {
  /** Most runs after the first (default 3). */
  readonly retries?: number;
  /**
   * No retry starts once this long has passed since the first run (default 2 s, under the 3 s
   * default of DEPENDENCY_TIMEOUT_MS): by then the caller has been told the outcome is unknown,
   * and a write that lands later only gives the reconciler more to settle. So a lock wait
   * timeout is retried only on a server whose innodb_lock_wait_timeout (50 s by default) is
   * shorter than this.
   */
  readonly withinMs?: number;
  /** Backoff before the first retry, doubled for each next one, with full jitter (default 10 ms). */
  readonly backoffMs?: number;
  /** Told of every retry, before it waits: a hook for a metric. */
  readonly onRetry?: (conflict: LockConflict) => void;
}

/**
 * Runs a transaction again when InnoDB gave it up over a lock conflict, a bounded number of
 * times. Only those two errors are retried: they say the transaction rolled back, while anything
 * else (a lost connection, a failed COMMIT) may have left it committed. The breaker's timeout
 * answers the caller but cannot stop this loop (opossum does not cancel a call): `withinMs` does.
 */
export async function retryingLockConflicts<T>(
  transaction: () => Promise<T>,
  options: LockConflictRetries = {},
): Promise<T> {
  const { retries = 3, withinMs = 2_000, backoffMs = 10, onRetry } = options;
  const started = performance.now();
  for (let retry = 0; ; retry++) {
    try {
      return await transaction();
    } catch (error) {
      const conflict = lockConflict(error);
      if (conflict === undefined || retry >= retries || performance.now() - started >= withinMs) throw error;
      onRetry?.(conflict);
      // Jittered, so transactions that collided once do not collide again in step.
      await delay(Math.random() * backoffMs * 2 ** retry);
    }
  }
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
