import { createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCouponCode } from '../../src/domain/coupon-code.ts';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { fillCampaign, openWindow, startApp, uniqueName } from '../support/services.ts';

const COUPONS = 100_000;
let env: Awaited<ReturnType<typeof startApp>>;
let name: string;
let codes: string[];

beforeAll(async () => {
  env = await startApp();
  name = uniqueName('large');
  const campaign = await env.app.services.campaigns.createCampaign({
    name,
    amount: BigInt(COUPONS),
    ...openWindow(),
  });
  // Filled straight into MySQL: this file is about reading a big campaign back.
  codes = Array.from({ length: COUPONS }, generateCouponCode);
  await fillCampaign(env.app.services, campaign.id, codes);
});
afterAll(async () => {
  await env?.stop();
});

describe('GetCampaign of a 100,000-coupon campaign', () => {
  it.each([
    ['gRPC', () => createGrpcTransport({ baseUrl: env.baseUrl })],
    ['Connect JSON', () => createConnectTransport({ baseUrl: env.baseUrl, httpVersion: '1.1' })],
  ])('returns every code over %s', async (label, transport) => {
    const client = createClient(CouponService, transport());
    const started = performance.now();
    const read = await client.getCampaign({ name });
    const elapsedMs = performance.now() - started;
    expect(read.campaign?.issuedCount).toBe(BigInt(COUPONS));
    expect(read.couponCodes).toHaveLength(COUPONS);
    expect(read.couponCodes).toEqual(codes);
    console.info(`GetCampaign 100,000 codes over ${label}: ${elapsedMs.toFixed(0)} ms`);
  });
});
