import http2 from 'node:http2';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { type Client, Code, createClient, type Transport } from '@connectrpc/connect';
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { codeOf, campaignRequest as openCampaignRequest } from '../support/rpc.ts';
import { isolatedConfig, startApp, uniqueName } from '../support/services.ts';

let env: Awaited<ReturnType<typeof startApp>>;

beforeAll(async () => {
  env = await startApp(isolatedConfig({ CORS_ORIGINS: 'https://shop.example' }));
});
afterAll(async () => {
  await env?.stop();
});

const transports: Record<string, () => Transport> = {
  'gRPC over h2c': () => createGrpcTransport({ baseUrl: env.baseUrl }),
  'Connect JSON over HTTP/1.1': () =>
    createConnectTransport({ baseUrl: env.baseUrl, httpVersion: '1.1', useBinaryFormat: false }),
  'gRPC-Web over HTTP/1.1': () => createGrpcWebTransport({ baseUrl: env.baseUrl, httpVersion: '1.1' }),
  'Connect binary over HTTP/2': () =>
    createConnectTransport({ baseUrl: env.baseUrl, httpVersion: '2', useBinaryFormat: true }),
};

describe.each(Object.entries(transports))('%s', (_label, transport) => {
  let client: Client<typeof CouponService>;
  beforeAll(() => {
    client = createClient(CouponService, transport());
  });

  const campaignRequest = (overrides: Parameters<typeof openCampaignRequest>[0] = {}) =>
    openCampaignRequest({ name: uniqueName('api'), amount: 2n, ...overrides });

  it('creates, issues and reads back a campaign', async () => {
    const request = campaignRequest();
    const { campaign } = await client.createCampaign(request);
    expect(campaign).toMatchObject({ name: request.name, amount: 2n, issuedCount: 0n });
    expect(campaign?.issuedAt).toEqual(request.issuedAt);

    const { coupon } = await client.issueCoupon({ campaignId: campaign?.id, userId: 'api-user' });
    expect(coupon).toMatchObject({ campaignId: campaign?.id, userId: 'api-user' });
    expect(coupon?.code).toMatch(/^[가-힣0-9]{10}$/u);

    const read = await client.getCampaign({ name: request.name });
    expect(read.campaign?.issuedCount).toBe(1n);
    expect(read.couponCodes).toEqual([coupon?.code]);
  });

  it('answers every failure with its own code', async () => {
    const { campaign } = await client.createCampaign(campaignRequest({ amount: 1n }));
    const id = campaign?.id ?? '';
    const future = campaignRequest({
      issuedAt: timestampFromDate(new Date(Date.now() + 3_600_000)),
      expiresAt: timestampFromDate(new Date(Date.now() + 7_200_000)),
    });
    const { campaign: notYet } = await client.createCampaign(future);

    expect(await codeOf(client.createCampaign(campaignRequest({ name: '' })))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.createCampaign(campaignRequest({ amount: 0n })))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.createCampaign(campaignRequest({ amount: 10_000_001n })))).toBe(
      Code.InvalidArgument,
    );
    expect(await codeOf(client.createCampaign(campaignRequest({ issuedAt: undefined })))).toBe(
      Code.InvalidArgument,
    );
    expect(await codeOf(client.createCampaign(campaignRequest({ name: campaign?.name ?? '' })))).toBe(
      Code.AlreadyExists,
    );
    expect(await codeOf(client.getCampaign({ name: uniqueName('missing') }))).toBe(Code.NotFound);
    expect(await codeOf(client.issueCoupon({ campaignId: 'missing', userId: 'u' }))).toBe(Code.NotFound);
    expect(await codeOf(client.issueCoupon({ campaignId: id, userId: '' }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.issueCoupon({ campaignId: notYet?.id ?? '', userId: 'u' }))).toBe(
      Code.FailedPrecondition,
    );
    expect(await codeOf(client.issueCoupon({ campaignId: id, userId: 'winner' }))).toBe('ok');
    expect(await codeOf(client.issueCoupon({ campaignId: id, userId: 'winner' }))).toBe(Code.AlreadyExists);
    expect(await codeOf(client.issueCoupon({ campaignId: id, userId: 'too-late' }))).toBe(
      Code.ResourceExhausted,
    );
  });
});

describe('CORS for browsers', () => {
  it('answers a preflight from an allowed origin with connect headers', async () => {
    const response = await fetch(`${env.baseUrl}/coupon.v1.CouponService/IssueCoupon`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://shop.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type,connect-protocol-version',
      },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe('https://shop.example');
    expect(response.headers.get('access-control-allow-headers')?.toLowerCase()).toContain(
      'connect-protocol-version',
    );
    expect(response.headers.get('access-control-allow-methods')).toContain('POST');
  });

  it('gives an origin that is not allowed no allow-origin header', async () => {
    const response = await fetch(`${env.baseUrl}/coupon.v1.CouponService/IssueCoupon`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('errors over plain HTTP', () => {
  it('are never HTTP 200: a Connect JSON client sees the status and a message', async () => {
    const response = await fetch(`${env.baseUrl}/coupon.v1.CouponService/IssueCoupon`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ campaignId: 'missing', userId: 'u' }),
    });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({
      code: 'not_found',
      message: expect.stringContaining('missing'),
    });
  });
});

describe('HTTP/2 settings', () => {
  it('allow at most 100 streams at once per connection, so one connection cannot hold unbounded memory', async () => {
    const session = http2.connect(env.baseUrl);
    try {
      const settings = await new Promise<http2.Settings>((resolve, reject) => {
        session.once('remoteSettings', resolve);
        session.once('error', reject);
      });
      expect(settings.maxConcurrentStreams).toBe(100);
    } finally {
      session.close();
    }
  });
});
