import http2 from 'node:http2';
import { gzipSync } from 'node:zlib';
import { create } from '@bufbuild/protobuf';
import { TimestampSchema, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectJsonRequest, Http1Connection } from '../../loadtest/driver/http1-client.ts';
import { CouponService, CreateCampaignRequestSchema } from '../../src/gen/coupon/v1/coupon_pb.js';
import { guarded } from '../../src/infrastructure/db/errors.ts';
import { DependencyBreaker } from '../../src/infrastructure/dependency-breaker.ts';
import { openWindow, startApp, uniqueName } from '../support/services.ts';

let env: Awaited<ReturnType<typeof startApp>>;
let binary: ReturnType<typeof createClient<typeof CouponService>>;
let grpc: ReturnType<typeof createClient<typeof CouponService>>;

beforeAll(async () => {
  env = await startApp();
  binary = createClient(
    CouponService,
    createConnectTransport({ baseUrl: env.baseUrl, httpVersion: '1.1', useBinaryFormat: true }),
  );
  grpc = createClient(CouponService, createGrpcTransport({ baseUrl: env.baseUrl }));
});
afterAll(async () => {
  await env?.stop();
});

async function failure(call: Promise<unknown>): Promise<{ code: Code | 'ok'; message: string }> {
  try {
    await call;
    return { code: 'ok', message: '' };
  } catch (error) {
    const connectError = ConnectError.from(error);
    return { code: connectError.code, message: connectError.rawMessage };
  }
}

function campaignWith(times: {
  issuedAt?: { seconds: bigint; nanos?: number };
  expiresAt?: { seconds: bigint; nanos?: number };
}) {
  const window = openWindow();
  return create(CreateCampaignRequestSchema, {
    name: uniqueName('hostile'),
    amount: 10n,
    issuedAt: times.issuedAt ? create(TimestampSchema, times.issuedAt) : timestampFromDate(window.issuedAt),
    expiresAt: times.expiresAt
      ? create(TimestampSchema, times.expiresAt)
      : timestampFromDate(window.expiresAt),
  });
}

const YEAR_10000 = 253_402_300_800n;
const BEFORE_YEAR_1 = -62_135_596_801n;

describe('request data the database cannot store', () => {
  it.each([
    ['expires_at in the year 10000', { expiresAt: { seconds: YEAR_10000 } }, 'expires_at'],
    ['issued_at before the year 1', { issuedAt: { seconds: BEFORE_YEAR_1 } }, 'issued_at'],
    ['negative nanos', { expiresAt: { seconds: 4_000_000_000n, nanos: -1 } }, 'expires_at'],
    [
      'nanos of a whole second',
      { expiresAt: { seconds: 4_000_000_000n, nanos: 1_000_000_000 } },
      'expires_at',
    ],
    ['the largest int64 seconds', { expiresAt: { seconds: 2n ** 63n - 1n } }, 'expires_at'],
  ])('%s is INVALID_ARGUMENT naming the field, before any store', async (_label, times, field) => {
    const refused = await failure(binary.createCampaign(campaignWith(times)));
    expect(refused.code).toBe(Code.InvalidArgument);
    expect(refused.message).toContain(field);
  });

  it('never opens the database breaker, so issuing goes on', async () => {
    const window = openWindow();
    const { campaign } = await binary.createCampaign({
      name: uniqueName('victim'),
      amount: 100n,
      issuedAt: timestampFromDate(window.issuedAt),
      expiresAt: timestampFromDate(window.expiresAt),
    });
    const attacks = await Promise.all(
      Array.from({ length: 30 }, () =>
        failure(binary.createCampaign(campaignWith({ expiresAt: { seconds: YEAR_10000 } }))),
      ),
    );
    expect(new Set(attacks.map((a) => a.code))).toEqual(new Set([Code.InvalidArgument]));
    expect(env.app.services.breakers.database.state).toBe('closed');
    const issued = await binary.issueCoupon({ campaignId: campaign?.id as string, userId: 'victim' });
    expect(issued.coupon?.userId).toBe('victim');
  });

  it('a value MySQL refuses is INVALID_ARGUMENT without its text, and does not count against the breaker', async () => {
    const breaker = new DependencyBreaker('database', { timeoutMs: 2_000, resetMs: 60_000 });
    try {
      const em = env.app.services.db.em;
      for (let i = 0; i < 20; i++) {
        const refused = await guarded(breaker, 'creating a campaign', () =>
          em
            .fork()
            .execute(
              "insert into campaign (id, name, amount, issued_count, issued_at, expires_at, created_at) values (?, ?, 1, 0, '2026-01-01', '10000-01-01', '2026-01-01')",
              [`bad-${i}`, uniqueName('bad')],
            ),
        ).then(
          () => undefined,
          (error: unknown) => error,
        );
        expect(refused).toMatchObject({ kind: 'invalid-argument', field: 'request' });
        expect((refused as Error).message).not.toMatch(/datetime|expires_at|Incorrect/i);
      }
      expect(breaker.state).toBe('closed');
    } finally {
      breaker.shutdown();
    }
  });
});

describe('requests too large for this API', () => {
  it('a name over the limit is INVALID_ARGUMENT before any store', async () => {
    expect((await failure(binary.getCampaign({ name: 'n'.repeat(201) }))).code).toBe(Code.InvalidArgument);
  });

  it.each([
    ['Connect binary', () => binary],
    ['gRPC', () => grpc],
  ])('a 1 MB user_id is RESOURCE_EXHAUSTED over %s, unread', async (_label, client) => {
    const refused = await failure(client().issueCoupon({ campaignId: 'x', userId: 'u'.repeat(1024 * 1024) }));
    expect(refused.code).toBe(Code.ResourceExhausted);
  });

  it('a 1 MB JSON body is RESOURCE_EXHAUSTED', async () => {
    const answer = await fetch(`${env.baseUrl}/coupon.v1.CouponService/GetCampaign`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'n'.repeat(1024 * 1024) }),
    });
    expect([answer.status, ((await answer.json()) as { code: string }).code]).toEqual([
      429,
      'resource_exhausted',
    ]);
  });

  // 60 MB of zeros in a user_id, 60 KB compressed.
  const bomb = gzipSync(
    Buffer.concat([Buffer.from([0x12, 0x80, 0x80, 0x80, 0x1e]), Buffer.alloc(60 * 1024 * 1024, 0x30)]),
  );

  it('a gzip bomb is RESOURCE_EXHAUSTED over Connect (content-encoding)', async () => {
    expect(bomb.length).toBeLessThan(100 * 1024);
    const answer = await fetch(`${env.baseUrl}/coupon.v1.CouponService/IssueCoupon`, {
      method: 'POST',
      headers: { 'content-type': 'application/proto', 'content-encoding': 'gzip' },
      body: bomb,
    });
    expect([answer.status, ((await answer.json()) as { code: string }).code]).toEqual([
      429,
      'resource_exhausted',
    ]);
  });

  it('a gzip bomb is RESOURCE_EXHAUSTED over gRPC (grpc-encoding)', async () => {
    const session = http2.connect(env.baseUrl);
    try {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/coupon.v1.CouponService/IssueCoupon',
        'content-type': 'application/grpc',
        'grpc-encoding': 'gzip',
        te: 'trailers',
      });
      const header = Buffer.alloc(5);
      header[0] = 1;
      header.writeUInt32BE(bomb.length, 1);
      stream.end(Buffer.concat([header, bomb]));
      const status = await new Promise<string>((resolve, reject) => {
        let headers: http2.IncomingHttpHeaders = {};
        stream.on('response', (h) => {
          headers = h;
        });
        stream.on('trailers', (t) => resolve(String(t['grpc-status'])));
        stream.on('end', () => resolve(String(headers['grpc-status'])));
        stream.on('error', reject);
        stream.resume();
      });
      expect(status).toBe(String(Code.ResourceExhausted));
    } finally {
      session.close();
    }
  });

  it.each([
    ['gRPC-Web', '/coupon.v1.CouponService/IssueCoupon', 'application/grpc-web+proto'],
    ['a Connect stream', '/grpc.health.v1.Health/Watch', 'application/connect+proto'],
    ['Connect binary', '/coupon.v1.CouponService/IssueCoupon', 'application/proto'],
  ])('refused unread over %s, it leaves the keep-alive connection serving', async (_label, path, type) => {
    const { host, port } = new URL(env.baseUrl);
    const body = Buffer.alloc(200 * 1024, 0x30);
    const oversized = Buffer.concat([
      Buffer.from(
        `POST ${path} HTTP/1.1\r\nhost: ${host}\r\ncontent-type: ${type}\r\ncontent-length: ${body.length}\r\n\r\n`,
      ),
      body,
    ]);
    const connection = await Http1Connection.open('127.0.0.1', Number(port));
    try {
      const refused = await connection.send(oversized);
      expect(
        refused.status === 429 ||
          refused.body.includes('grpc-status: 8') ||
          refused.body.includes('resource_exhausted'),
      ).toBe(true);
      const next = await connection.send(
        connectJsonRequest(host, 'IssueCoupon', { campaignId: 'x', userId: 'u' }),
      );
      expect(next.status).toBe(404);
    } finally {
      connection.close();
    }
  });

  it('how long the event loop was held is a histogram in /metrics', async () => {
    const metrics = await (await fetch(`${env.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^coupon_event_loop_delay_seconds_bucket\{le="0.05"\} \d+$/m);
    expect(metrics).toMatch(/^coupon_event_loop_delay_seconds_count [1-9]\d*$/m);
  });
});
