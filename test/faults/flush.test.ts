import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Services } from '../../src/app.ts';
import { AlreadyIssuedError } from '../../src/domain/errors.ts';
import { assertNeverOversold, eventually, settledProblems, snapshot } from '../support/invariants.ts';
import { rush, users } from '../support/rush.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from '../support/services.ts';

// FLUSHDB wipes a whole Redis database: this file gets one to itself.
const redisUrl = new URL(inject('redisUrl'));
redisUrl.pathname = '/13';
const RECONCILE_AFTER_MS = 1_500;
let env: Awaited<ReturnType<typeof startServices>>;
let services: Services;

beforeAll(async () => {
  env = await startServices(
    isolatedConfig({
      REDIS_URL: redisUrl.toString(),
      DEPENDENCY_TIMEOUT_MS: '500',
      RECONCILE_AFTER_MS: String(RECONCILE_AFTER_MS),
      RECONCILE_INTERVAL_MS: '200',
    }),
  );
  services = env.services;
});
afterAll(async () => {
  await env?.stop();
});

describe('Redis losing everything (FLUSHDB) in the middle of a campaign', () => {
  it('rebuilds from MySQL: earlier winners stay refused and the amount holds exactly', async () => {
    const amount = 300;
    const campaign = await services.campaigns.createCampaign({
      name: uniqueName('flush'),
      amount: BigInt(amount),
      ...openWindow(),
    });
    let flushed = false;
    const first = await rush(
      (userId) => services.issuer.issueCoupon(campaign.id, userId),
      users('first', 250),
      {
        concurrency: 32,
        onIssued: (count) => {
          if (count === 100 && !flushed) {
            flushed = true;
            void services.redis.flushdb();
          }
        },
      },
    );
    expect(flushed).toBe(true);
    expect(assertNeverOversold(await snapshot(services, campaign.id))).toEqual([]);

    // Writes in flight during the flush committed after the rebuild read MySQL; the reconciler
    // adds those holders back, so MySQL and Redis agree again within a pass or two.
    const settledIn = Date.now();
    expect(
      await eventually(
        async () => settledProblems(await snapshot(services, campaign.id)),
        RECONCILE_AFTER_MS + 5_000,
      ),
    ).toEqual([]);
    const settleMs = Date.now() - settledIn;

    // Everyone who won before the flush asks again: each is refused, none gets a second coupon.
    const winners = first.issued.map((coupon) => coupon.userId);
    const retries = await Promise.allSettled(
      winners.map((userId) => services.issuer.issueCoupon(campaign.id, userId)),
    );
    expect(retries.every((r) => r.status === 'rejected' && r.reason instanceof AlreadyIssuedError)).toBe(
      true,
    );

    const second = await rush(
      (userId) => services.issuer.issueCoupon(campaign.id, userId),
      users('second', 500),
      {
        concurrency: 32,
      },
    );
    const final = await snapshot(services, campaign.id);
    expect(settledProblems(final)).toEqual([]);
    expect(final.rows).toHaveLength(amount);
    expect(first.issued.length + second.issued.length).toBe(amount);
    const stored = new Map(final.rows.map((row) => [row.code, row.user_id]));
    for (const coupon of [...first.issued, ...second.issued])
      expect(stored.get(coupon.code)).toBe(coupon.userId);
    console.info(
      `FLUSHDB: ${first.issued.length} issued in the first rush (flushed after 100), ${winners.length} winners refused on retry, ` +
        `settled ${settleMs} ms after the rush; ${second.issued.length} issued after; rows ${final.rows.length}/${amount}, outcomes ${JSON.stringify(first.outcomes)}`,
    );
  });
});
