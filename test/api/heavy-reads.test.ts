import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCouponCode } from '../../src/domain/coupon-code.ts';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { rush, users } from '../support/rush.ts';
import { fillCampaign, isolatedConfig, openWindow, startApp, uniqueName } from '../support/services.ts';

const COUPONS = 100_000;
let env: Awaited<ReturnType<typeof startApp>>;
let bigName: string;

beforeAll(async () => {
  // A short dependency timeout, so reads that queue for the database time out as they would
  // under a real crowd.
  env = await startApp(isolatedConfig({ DEPENDENCY_TIMEOUT_MS: '1000', RECONCILE_AFTER_MS: '2500' }));
  bigName = uniqueName('big');
  const campaign = await env.app.services.campaigns.createCampaign({
    name: bigName,
    amount: BigInt(COUPONS),
    ...openWindow(),
  });
  await fillCampaign(env.app.services, campaign.id, Array.from({ length: COUPONS }, generateCouponCode));
});
afterAll(async () => {
  await env?.stop();
});

describe('a crowd of large reads', () => {
  it('is bounded with RESOURCE_EXHAUSTED and never fails issuing', async () => {
    const client = createClient(CouponService, createGrpcTransport({ baseUrl: env.baseUrl }));
    const { campaign } = await client.createCampaign({
      name: uniqueName('rush'),
      amount: 1_000n,
      issuedAt: { seconds: BigInt(Math.floor(Date.now() / 1000) - 60) },
      expiresAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600) },
    });
    const reads = Promise.all(
      Array.from({ length: 40 }, () =>
        client.getCampaign({ name: bigName }).then(
          (read) => (read.couponCodes.length === COUPONS ? 'ok' : 'short'),
          (error: unknown) => Code[ConnectError.from(error).code],
        ),
      ),
    );
    const issuing = rush(
      async (userId) =>
        (await client.issueCoupon({ campaignId: campaign?.id as string, userId })).coupon as never,
      users('during-reads', 200),
      { concurrency: 10 },
    );
    const [readOutcomes, issued] = await Promise.all([reads, issuing]);
    expect(issued.outcomes).toEqual({ ok: 200 });
    expect(env.app.services.breakers.database.state).toBe('closed');
    expect(new Set(readOutcomes)).toEqual(new Set(['ok', 'ResourceExhausted']));
  });
});
