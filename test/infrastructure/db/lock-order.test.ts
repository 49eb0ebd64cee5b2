import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../../src/app.ts';
import type { CouponToPersist, PersistOutcome } from '../../../src/application/ports.ts';
import { generateCouponCode } from '../../../src/domain/coupon-code.ts';
import { MikroOrmCouponRepository } from '../../../src/infrastructure/db/coupon-repository.ts';
import type { LockConflict } from '../../../src/infrastructure/db/errors.ts';
import { type Database, openDatabase } from '../../../src/infrastructure/db/orm.ts';
import { openWindow, startServices, uniqueName } from '../../support/services.ts';

// Two instances writing batches of the same campaigns, each on a pool of its own: one through the
// services of this file, the other through a second ORM on the same database.
let env: Awaited<ReturnType<typeof startServices>>;
let services: Services;
let otherDb: Database;
let one: MikroOrmCouponRepository;
let two: MikroOrmCouponRepository;
const retried: LockConflict[] = [];

beforeAll(async () => {
  env = await startServices();
  services = env.services;
  otherDb = await openDatabase({
    url: env.config.databaseUrl,
    poolSize: 5,
    timeoutMs: env.config.dependencyTimeoutMs,
  });
  const onRetry = (conflict: LockConflict) => retried.push(conflict);
  one = new MikroOrmCouponRepository(services.db, undefined, { onRetry });
  two = new MikroOrmCouponRepository(otherDb, undefined, { onRetry });
});
afterAll(async () => {
  await otherDb?.close();
  await env?.stop();
});

async function campaignOf(amount: number) {
  return services.campaigns.createCampaign({
    name: uniqueName('lock-order'),
    amount: BigInt(amount),
    ...openWindow(),
  });
}

/** Two campaigns, the one MySQL would lock first (the smaller id) first. */
async function twoCampaigns(amount: number): Promise<[string, string]> {
  const ids = [(await campaignOf(amount)).id, (await campaignOf(amount)).id].sort();
  return [ids[0] as string, ids[1] as string];
}

function coupons(campaignId: string, users: readonly string[]): CouponToPersist[] {
  return users.map((userId) => ({ campaignId, userId, code: generateCouponCode(), issuedAt: new Date() }));
}

async function stored(campaignId: string) {
  const em = services.db.em.fork();
  const [row] = await em.execute<{ rows: number; issued_count: number; amount: number }[]>(
    `select (select count(*) from coupon where campaign_id = c.id) as \`rows\`, c.issued_count, c.amount
     from campaign c where c.id = ?`,
    [campaignId],
  );
  return { rows: Number(row?.rows), issuedCount: Number(row?.issued_count), amount: Number(row?.amount) };
}

/**
 * Resolves once `count` raises of `issued_count` (of one campaign, if named) are running on
 * this file's database. While
 * another transaction holds the row one names, it cannot finish: it waits for the lock. So the
 * interleavings below are made by locks and observed, never timed. (The process list, because
 * InnoDB's `innodb_trx` is a server-wide cache refreshed only when nobody read it in the last
 * 100 ms: two test files polling it at once keep each other's picture stale.)
 */
async function untilRaisesWaiting(count: number, campaignId = ''): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [row] = await services.db.em.fork().execute<{ running: number }[]>(
      `select count(*) as running from information_schema.processlist
       where db = database() and command = 'Query' and info like concat('update campaign set issued_count%', ?, '%')`,
      [campaignId],
    );
    if (Number(row?.running) >= count) return;
    if (Date.now() > deadline) throw new Error(`${count} raises of issued_count never waited for a lock`);
    await delay(5);
  }
}

/**
 * Holds the rows of the given campaigns in a transaction of the other pool until `release()`,
 * which commits it (it writes nothing).
 */
async function holdCampaignRows(ids: readonly string[]) {
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let signalLocked = () => {};
  const locked = new Promise<void>((resolve) => {
    signalLocked = resolve;
  });
  const done = otherDb.em.fork().transactional(async (em) => {
    await em.execute(`select id from campaign where id in (${ids.map(() => '?').join(', ')}) for update`, [
      ...ids,
    ]);
    signalLocked();
    await released;
  });
  await Promise.race([locked, done]);
  return {
    async release() {
      release();
      await done;
    },
  };
}

describe('batches of several campaigns from two instances', () => {
  it('both commit when they name the same campaigns in opposite orders, lock for lock', async () => {
    // A third transaction holds both campaign rows while the two batches start: each batch waits
    // for the first row it asks for. When it lets go, each gets that row at the same moment; two
    // batches that locked in arrival order would now hold A and B and each ask for the other's.
    const [a, b] = await twoCampaigns(1_000);
    retried.length = 0;
    const rounds = 10;
    for (let round = 0; round < rounds; round++) {
      const holder = await holdCampaignRows([a, b]);
      const batches = Promise.allSettled([
        one.persistMany([
          ...coupons(a, [`one-${round}-1`, `one-${round}-2`]),
          ...coupons(b, [`one-${round}`]),
        ]),
        two.persistMany([
          ...coupons(b, [`two-${round}-1`, `two-${round}-2`]),
          ...coupons(a, [`two-${round}`]),
        ]),
      ]);
      // Both must be waiting before the rows are let go, or there is no race to lose.
      await untilRaisesWaiting(2);
      await holder.release();
      const persisted = { status: 'fulfilled', value: ['persisted', 'persisted', 'persisted'] };
      expect(await batches).toEqual([persisted, persisted]);
    }
    // No batch even needed a retry: the lock order alone keeps them apart.
    expect(retried).toEqual([]);
    expect(await stored(a)).toEqual({ rows: 3 * rounds, issuedCount: 3 * rounds, amount: 1_000 });
    expect(await stored(b)).toEqual({ rows: 3 * rounds, issuedCount: 3 * rounds, amount: 1_000 });
  });

  it('all commit in a free-running rush in opposite orders, exactly up to the amount', async () => {
    const rounds = 60;
    const perCampaign = 5;
    // Two writers per instance, as with maxInFlight 2; half of them name B first.
    const writers = [
      { repository: one, label: 'one', reversed: false },
      { repository: two, label: 'two', reversed: true },
      { repository: one, label: 'three', reversed: true },
      { repository: two, label: 'four', reversed: false },
    ];
    const amount = writers.length * rounds * perCampaign;
    const [a, b] = await twoCampaigns(amount);
    retried.length = 0;
    const users = (label: string) => Array.from({ length: perCampaign }, (_, i) => `${label}-${i}`);
    const outcomes: PersistOutcome[] = [];
    const failures: unknown[] = [];
    const rush = async ({ repository, label, reversed }: (typeof writers)[number]) => {
      for (let round = 0; round < rounds; round++) {
        const forA = coupons(a, users(`${label}-${round}-a`));
        const forB = coupons(b, users(`${label}-${round}-b`));
        await repository.persistMany(reversed ? [...forB, ...forA] : [...forA, ...forB]).then(
          (batch) => outcomes.push(...batch),
          (error: unknown) => failures.push(error),
        );
      }
    };
    await Promise.all(writers.map(rush));
    expect(failures).toEqual([]);
    expect(outcomes.filter((o) => o !== 'persisted')).toEqual([]);
    expect(retried).toEqual([]);
    // Full now: a further batch is refused, and MySQL stays at the amount.
    const late = await one.persistMany([...coupons(b, ['late-1']), ...coupons(a, ['late-1'])]);
    expect(late).toEqual<PersistOutcome[]>(['campaign-full', 'campaign-full']);
    for (const id of [a, b]) expect(await stored(id)).toEqual({ rows: amount, issuedCount: amount, amount });
  });
});

class RolledBack extends Error {}

describe('a batch MySQL chose as a deadlock victim', () => {
  it('is written again, once, and counted', async () => {
    const [first, second] = await twoCampaigns(100);
    const heavy = await campaignOf(1_000);
    retried.length = 0;
    let signalLocked = () => {};
    const locked = new Promise<void>((resolve) => {
      signalLocked = resolve;
    });
    // Another transaction that has written many rows (so InnoDB, which rolls back the lighter
    // side of a deadlock, picks the batch) holds `second`, waits until the batch asks for it
    // (which the batch does only once it holds `first`), then asks for `first` itself.
    const other = otherDb.em.fork().transactional(async (em) => {
      const rows = coupons(
        heavy.id,
        Array.from({ length: 200 }, (_, i) => `heavy-${i}`),
      );
      await em.execute(
        `insert into coupon (campaign_id, user_id, code, issued_at) values ${rows.map(() => '(?, ?, ?, ?)').join(', ')}`,
        rows.flatMap((c) => [c.campaignId, c.userId, c.code, c.issuedAt]),
        'run',
      );
      await em.execute('select id from campaign where id = ? for update', [second]);
      signalLocked();
      await untilRaisesWaiting(1, second);
      await em.execute('select id from campaign where id = ? for update', [first]);
      throw new RolledBack('the other transaction writes nothing in the end');
    });
    await Promise.race([locked, other]);
    const batch = one.persistMany([...coupons(first, ['victim']), ...coupons(second, ['victim'])]);
    const [otherEnd, batchEnd] = await Promise.allSettled([other, batch]);
    expect(otherEnd).toMatchObject({ status: 'rejected', reason: expect.any(RolledBack) });
    expect(batchEnd).toEqual({ status: 'fulfilled', value: ['persisted', 'persisted'] });
    expect(retried).toEqual(['deadlock']);
    expect(await stored(first)).toEqual({ rows: 1, issuedCount: 1, amount: 100 });
    expect(await stored(second)).toEqual({ rows: 1, issuedCount: 1, amount: 100 });
    expect(await stored(heavy.id)).toEqual({ rows: 0, issuedCount: 0, amount: 1_000 });
  });
});
