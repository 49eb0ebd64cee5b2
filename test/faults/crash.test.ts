import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../src/app.ts';
import { CouponService, CreateCampaignRequestSchema } from '../../src/gen/coupon/v1/coupon_pb.js';
import { type ChildService, childEnv, startChildService } from '../support/child-service.ts';
import { assertNeverOversold, eventually, settledProblems, snapshot } from '../support/invariants.ts';
import { rush, users } from '../support/rush.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from '../support/services.ts';

const RECONCILE_AFTER_MS = 1_500;
const serviceEnv = {
  DEPENDENCY_TIMEOUT_MS: '500',
  RECONCILE_AFTER_MS: String(RECONCILE_AFTER_MS),
  RECONCILE_INTERVAL_MS: '200',
};
// The test's own view of the stores; its reconciler never runs, so only the service settles claims.
const config = isolatedConfig({ ...serviceEnv, RECONCILE_INTERVAL_MS: '3600000' });
let inspector: Awaited<ReturnType<typeof startServices>>;
let services: Services;
const children: ChildService[] = [];

beforeAll(async () => {
  inspector = await startServices(config);
  services = inspector.services;
});
afterAll(async () => {
  for (const child of children) child.process.kill('SIGKILL');
  await inspector?.stop();
});

function clientOf(child: ChildService) {
  return createClient(CouponService, createConnectTransport({ baseUrl: child.baseUrl, httpVersion: '1.1' }));
}

describe('a service killed with SIGKILL in the middle of a rush', () => {
  it('loses nothing: after a restart and reconciliation, MySQL and Redis agree and the rest is issued', async () => {
    const amount = 300;
    const first = await startChildService(childEnv(config, serviceEnv));
    children.push(first);
    const window = openWindow();
    const { campaign } = await clientOf(first).createCampaign(
      create(CreateCampaignRequestSchema, {
        name: uniqueName('crash'),
        amount: BigInt(amount),
        issuedAt: timestampFromDate(window.issuedAt),
        expiresAt: timestampFromDate(window.expiresAt),
      }),
    );
    const campaignId = campaign?.id ?? '';

    const client = clientOf(first);
    let killedAt: number | undefined;
    const beforeCrash = await rush(
      async (userId) => (await client.issueCoupon({ campaignId, userId })).coupon ?? { code: '', userId },
      users('before-crash', 2_000),
      {
        concurrency: 64,
        onIssued: (count) => {
          if (count === 60 && killedAt === undefined) {
            killedAt = count;
            first.process.kill('SIGKILL');
          }
        },
      },
    );
    expect(await first.exited()).toBeNull();
    const atCrash = await snapshot(services, campaignId);
    expect(assertNeverOversold(atCrash)).toEqual([]);
    // The kill caught claims between Redis and MySQL: exactly what must not leak.
    expect(atCrash.pending).toBeGreaterThan(0);
    expect(beforeCrash.issued.length).toBeGreaterThanOrEqual(60);
    expect(beforeCrash.issued.length).toBeLessThan(amount);

    const second = await startChildService(childEnv(config, serviceEnv));
    children.push(second);
    const startedAt = Date.now();
    expect(
      await eventually(
        async () => settledProblems(await snapshot(services, campaignId)),
        RECONCILE_AFTER_MS + 5_000,
      ),
    ).toEqual([]);
    expect(Date.now() - startedAt).toBeLessThan(RECONCILE_AFTER_MS + 5_000);

    const afterCrash = await rush(
      async (userId) =>
        (await clientOf(second).issueCoupon({ campaignId, userId })).coupon ?? { code: '', userId },
      users('after-crash', 1_000),
      { concurrency: 32 },
    );
    const final = await snapshot(services, campaignId);
    expect(settledProblems(final)).toEqual([]);
    expect(final.rows).toHaveLength(amount);
    expect(final.remaining).toBe(0);
    expect(afterCrash.outcomes.ResourceExhausted).toBeGreaterThan(0);

    // Every coupon a client was told about exists, for that user.
    const stored = new Map(final.rows.map((row) => [row.code, row.user_id]));
    for (const coupon of [...beforeCrash.issued, ...afterCrash.issued]) {
      expect(stored.get(coupon.code)).toBe(coupon.userId);
    }

    console.info(
      `SIGKILL: ${beforeCrash.issued.length} issued before the kill, ${atCrash.rows.length} rows and ${atCrash.pending} pending claims at the kill; ` +
        `settled in ${Date.now() - startedAt} ms after restart; ${afterCrash.issued.length} more issued; final rows ${final.rows.length}/${amount}`,
    );
    second.process.kill('SIGTERM');
    expect(await second.exited()).toBe(0);
  });
});
