import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CouponService, CreateCampaignRequestSchema } from '../../src/gen/coupon/v1/coupon_pb.js';
import { RateLimitedSchema } from '../../src/gen/coupon/v1/errors_pb.js';
import { eventually } from '../support/invariants.ts';
import { isolatedConfig, openWindow, startApp, uniqueName } from '../support/services.ts';

let env: Awaited<ReturnType<typeof startApp>>;
let campaignId: string;

async function createCampaign(window: { issuedAt: Date; expiresAt: Date }, amount = 1_000n): Promise<string> {
  const { campaign } = await client('198.51.100.1').createCampaign(
    create(CreateCampaignRequestSchema, {
      name: uniqueName('limits'),
      amount,
      issuedAt: timestampFromDate(window.issuedAt),
      expiresAt: timestampFromDate(window.expiresAt),
    }),
  );
  return campaign?.id ?? '';
}

beforeAll(async () => {
  env = await startApp(
    isolatedConfig({ ISSUE_RATE_LIMIT_PER_USER: '3', ISSUE_RATE_LIMIT_PER_IP: '8', TRUST_PROXY: '1' }),
  );
  campaignId = await createCampaign(openWindow());
});
afterAll(async () => {
  await env?.stop();
});

function client(forwardedFor: string, protocol: 'connect' | 'grpc-web' = 'connect') {
  const forward: Interceptor = (next) => (request) => {
    request.header.set('x-forwarded-for', forwardedFor);
    return next(request);
  };
  const options = { baseUrl: env.baseUrl, httpVersion: '1.1' as const, interceptors: [forward] };
  return createClient(
    CouponService,
    protocol === 'connect' ? createConnectTransport(options) : createGrpcWebTransport(options),
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
    // The one call that got a slot is served; the others, judged while its coupon was being
    // written, hear "already holds one" or "still being settled".
    expect(
      others.every(
        (e) =>
          e.code === Code.AlreadyExists ||
          (e.code === Code.Unavailable && e.rawMessage.includes('still being settled')),
      ),
    ).toBe(true);
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

  it('cannot be dodged by forging X-Forwarded-For hops: only the one the trusted proxy wrote counts', async () => {
    // One proxy in front (TRUST_PROXY=1): it appends the address it saw; what is left of it, the client wrote.
    const { rateLimited } = await outcomes(
      Array.from({ length: 12 }, (_, i) =>
        client(`10.9.${i}.1, 192.0.2.60`).issueCoupon({ campaignId, userId: `forger-${i}` }),
      ),
    );
    expect(rateLimited).toHaveLength(4);
  });

  it('refuse a forwarded address that is no IP address at all', async () => {
    const refused = await client('not-an-address')
      .issueCoupon({ campaignId, userId: 'garbage-hop' })
      .catch((error: unknown) => ConnectError.from(error));
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.InvalidArgument);
    expect((refused as ConnectError).rawMessage).toContain('X-Forwarded-For');
  });

  it('do not count late calls a sold-out campaign answers from memory before connect (Connect protocol)', async () => {
    const soldOut = await createCampaign(openWindow(), 1n);
    await client('198.51.100.2').issueCoupon({ campaignId: soldOut, userId: 'winner' });
    await client('198.51.100.2')
      .issueCoupon({ campaignId: soldOut, userId: 'first-late' })
      .catch(() => undefined);
    expect(
      await eventually(
        async () => (env.app.services.gate.isKnownSoldOut(soldOut) ? [] : ['not marked yet']),
        2_000,
      ),
    ).toEqual([]);
    const late = (address: string, protocol: 'connect' | 'grpc-web') =>
      outcomes(
        Array.from({ length: 12 }, (_, i) =>
          client(address, protocol).issueCoupon({ campaignId: soldOut, userId: `late-${protocol}-${i}` }),
        ),
      );
    const connect = await late('192.0.2.60', 'connect');
    expect(connect.rateLimited).toHaveLength(0);
    expect(connect.others.map((e) => e.code)).toEqual(Array(12).fill(Code.ResourceExhausted));
    // gRPC-Web goes through connect and its interceptors: the per-address limit counts it.
    const grpcWeb = await late('192.0.2.61', 'grpc-web');
    expect(grpcWeb.rateLimited).toHaveLength(4);
  });
});
