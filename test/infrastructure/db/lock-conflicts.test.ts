import { MariaDbPlatform } from '@mikro-orm/mariadb';
import { describe, expect, it } from 'vitest';
import {
  type LockConflict,
  lockConflict,
  retryingLockConflicts,
} from '../../../src/infrastructure/db/errors.ts';

/** A driver error as MikroORM hands it over: mysql2's error, converted by the platform. */
function driverError(errno: number, message: string): Error {
  const raw = Object.assign(new Error(message), { errno });
  return new MariaDbPlatform().getExceptionConverter().convertException(raw);
}

const deadlock = () =>
  driverError(1213, 'Deadlock found when trying to get lock; try restarting transaction');
const lockWaitTimeout = () => driverError(1205, 'Lock wait timeout exceeded; try restarting transaction');

/** A transaction that fails with the given errors, one per run, then returns 'done'. */
function failingWith(...errors: Error[]) {
  const transaction = async () => {
    transaction.runs++;
    const error = errors.shift();
    if (error) throw error;
    return 'done';
  };
  transaction.runs = 0;
  return transaction;
}

describe('lock conflicts', () => {
  it('are told by errno 1213 and 1205, as MikroORM converts them, and nothing else', () => {
    expect(lockConflict(deadlock())).toBe('deadlock');
    expect(lockConflict(lockWaitTimeout())).toBe('lock-wait-timeout');
    expect(
      lockConflict(driverError(1062, "Duplicate entry 'x' for key 'coupon_code_unique'")),
    ).toBeUndefined();
    expect(lockConflict(new Error('Connection lost: The server closed the connection.'))).toBeUndefined();
  });

  it('run the transaction again until it commits, each retry told', async () => {
    const transaction = failingWith(deadlock(), lockWaitTimeout());
    const retried: LockConflict[] = [];
    await expect(
      retryingLockConflicts(transaction, { onRetry: (conflict) => retried.push(conflict) }),
    ).resolves.toBe('done');
    expect(transaction.runs).toBe(3);
    expect(retried).toEqual(['deadlock', 'lock-wait-timeout']);
  });

  it('are retried a bounded number of times, then the last one is thrown', async () => {
    const last = deadlock();
    const transaction = failingWith(deadlock(), deadlock(), deadlock(), last);
    await expect(retryingLockConflicts(transaction, { retries: 3 })).rejects.toBe(last);
    expect(transaction.runs).toBe(4);
  });

  it('are not retried once the caller has stopped waiting', async () => {
    const transaction = failingWith(deadlock());
    await expect(retryingLockConflicts(transaction, { withinMs: 0 })).rejects.toBeInstanceOf(Error);
    expect(transaction.runs).toBe(1);
  });

  it('are the only errors retried: any other may have committed', async () => {
    const lost = new Error('Connection lost: The server closed the connection.');
    const transaction = failingWith(lost);
    await expect(retryingLockConflicts(transaction)).rejects.toBe(lost);
    expect(transaction.runs).toBe(1);
  });
});
