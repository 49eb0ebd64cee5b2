import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CouponService, CreateCampaignRequestSchema } from '../../src/gen/coupon/v1/coupon_pb.js';
import { RateLimitedSchema } from '../../src/gen/coupon/v1/errors_pb.js';
import { isolatedConfig, openWindow, startApp, uniqueName } from '../support/services.ts';

let env: Awaited<ReturnType<typeof startApp>>;
let campaignId: string;

async function createCampaign(window: { issuedAt: Date; expiresAt: Date }): Promise<string> {
  const { campaign } = await client('198.51.100.1').createCampaign(
    create(CreateCampaignRequestSchema, {
      name: uniqueName('limits'),
      amount: 1_000n,
      issuedAt: timestampFromDate(window.issuedAt),
      expiresAt: timestampFromDate(window.expiresAt),
    }),
  );
  return campaign?.id ?? '';
}

beforeAll(async () => {
  env = await startApp(
    isolatedConfig({ ISSUE_RATE_LIMIT_PER_USER: '3', ISSUE_RATE_LIMIT_PER_IP: '8', TRUST_PROXY: 'true' }),
  );
  campaignId = await createCampaign(openWindow());
});
afterAll(async () => {
  await env?.stop();
});

function client(forwardedFor: string) {
  return createClient(
    CouponService,
    createConnectTransport({
      baseUrl: env.baseUrl,
      httpVersion: '1.1',
      interceptors: [
        (next) => (request) => {
          request.header.set('x-forwarded-for', forwardedFor);
          return next(request);
        },
      ],
    }),
  );
}

async function outcomes(calls: Promise<unknown>[]) {
  const errors = (await Promise.allSettled(calls)).flatMap((r) =>
    r.status === 'rejected' ? [ConnectError.from(r.reason)] : [],
  );
  return {
    rateLimited: errors.filter(
      (e) => e.code === Code.ResourceExhausted && e.rawMessage.startsWith('rate limited'),
    ),
    others: errors.filter(
      (e) => !(e.code === Code.ResourceExhausted && e.rawMessage.startsWith('rate limited')),
    ),
  };
}

describe('rate limits on IssueCoupon', () => {
  it('refuse a user over the per-user limit, with a detail that says when to retry, and not another user', async () => {
    const eager = client('203.0.113.10');
    const { rateLimited, others } = await outcomes(
      Array.from({ length: 6 }, () => eager.issueCoupon({ campaignId, userId: 'eager-user' })),
    );
    expect(rateLimited).toHaveLength(3);
    expect(others.every((e) => e.code === Code.AlreadyExists)).toBe(true);
    const [detail] = rateLimited[0]?.findDetails(RateLimitedSchema) ?? [];
    expect(detail?.scope).toBe('user');
    expect(detail?.limitPerSecond).toBe(3n);
    const retryMs = Number(detail?.retryAfter?.seconds ?? 0n) * 1000 + (detail?.retryAfter?.nanos ?? 0) / 1e6;
    expect(retryMs).toBeGreaterThan(0);
    expect(retryMs).toBeLessThanOrEqual(1000);
    // Someone else, at the same moment, is served.
    await expect(
      client('203.0.113.11').issueCoupon({ campaignId, userId: 'calm-user' }),
    ).resolves.toBeDefined();
  });

  it('count a user per campaign, and refuse the user hammering a campaign before it opens', async () => {
    const now = Date.now();
    const upcoming = await createCampaign({
      issuedAt: new Date(now + 60_000),
      expiresAt: new Date(now + 120_000),
    });
    const bot = client('203.0.113.20');
    const { rateLimited, others } = await outcomes(
      Array.from({ length: 6 }, () => bot.issueCoupon({ campaignId: upcoming, userId: 'early-bot' })),
    );
    expect(rateLimited).toHaveLength(3);
    expect(others.every((e) => e.code === Code.FailedPrecondition)).toBe(true);
    // The same user on another campaign has a count of its own.
    await expect(bot.issueCoupon({ campaignId, userId: 'early-bot' })).resolves.toBeDefined();
  });

  it('refuse an address over the per-IP limit (X-Forwarded-For trusted), and not another address', async () => {
    const crowded = client('192.0.2.50');
    const { rateLimited } = await outcomes(
      Array.from({ length: 12 }, (_, i) => crowded.issueCoupon({ campaignId, userId: `shared-ip-${i}` })),
    );
    expect(rateLimited).toHaveLength(4);
    expect(rateLimited[0]?.findDetails(RateLimitedSchema)[0]?.scope).toBe('ip');
    await expect(client('192.0.2.51').issueCoupon({ campaignId, userId: 'other-ip' })).resolves.toBeDefined();
  });
});
