import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { campaignRequest, codeOf } from '../support/rpc.ts';
import { isolatedConfig, startApp } from '../support/services.ts';

const ADMIN_TOKEN = 'test-admin-token-0123456789';
let env: Awaited<ReturnType<typeof startApp>>;

beforeAll(async () => {
  env = await startApp(isolatedConfig({ ADMIN_TOKEN, CAMPAIGN_CODE_READS_MAX: '1' }));
});
afterAll(async () => {
  await env?.stop();
});

async function metricValue(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${env.baseUrl}/metrics`)).text();
  const series = labels ? `${name}{${labels}} ` : `${name} `;
  const line = text.split('\n').find((l) => l.startsWith(series));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('admin auth', () => {
  const client = () => createClient(CouponService, createGrpcTransport({ baseUrl: env.baseUrl }));

  it('refuses CreateCampaign without a token or with a wrong one', async () => {
    expect(await codeOf(client().createCampaign(campaignRequest()))).toBe(Code.Unauthenticated);
    expect(
      await codeOf(
        client().createCampaign(campaignRequest(), { headers: { authorization: 'Bearer wrong-token' } }),
      ),
    ).toBe(Code.Unauthenticated);
    expect(
      await codeOf(client().createCampaign(campaignRequest(), { headers: { authorization: ADMIN_TOKEN } })),
    ).toBe(Code.Unauthenticated);
  });

  it('accepts the right token, and keeps IssueCoupon and GetCampaign open', async () => {
    const request = campaignRequest();
    const { campaign } = await client().createCampaign(request, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(await codeOf(client().issueCoupon({ campaignId: campaign?.id ?? '', userId: 'anyone' }))).toBe(
      'ok',
    );
    expect(await codeOf(client().getCampaign({ name: request.name }))).toBe('ok');
  });
});

describe('coupon codes, bearer secrets', () => {
  const client = () => createClient(CouponService, createGrpcTransport({ baseUrl: env.baseUrl }));
  it('go only to admin callers in GetCampaign; others see the campaign and its counts', async () => {
    const request = campaignRequest();
    const admin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
    const { campaign } = await client().createCampaign(request, admin);
    const issued = await client().issueCoupon({ campaignId: campaign?.id ?? '', userId: 'holder' });
    for (const headers of [{}, { authorization: 'Bearer wrong-token' }]) {
      const read = await client().getCampaign({ name: request.name }, { headers });
      expect(read.campaign?.issuedCount).toBe(1n);
      expect(read.couponCodes).toEqual([]);
    }
    expect((await client().getCampaign({ name: request.name }, admin)).couponCodes).toEqual([
      issued.coupon?.code,
    ]);
  });
});

describe('GetCampaign by made-up names', () => {
  // CAMPAIGN_CODE_READS_MAX=1 here: at most 4 reads without codes at once.
  it('reads a bounded number at once, refusing the rest at once, never failing issuing', async () => {
    const grpc = createClient(CouponService, createGrpcTransport({ baseUrl: env.baseUrl }));
    const request = campaignRequest();
    const { campaign } = await grpc.createCampaign(request, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const outcomes = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        codeOf(grpc.getCampaign({ name: `made-up-${i}-${Math.random()}` })),
      ),
    );
    const counts: Record<string, number> = {};
    for (const outcome of outcomes) counts[String(outcome)] = (counts[String(outcome)] ?? 0) + 1;
    expect(Object.keys(counts).sort()).toEqual(
      [String(Code.NotFound), String(Code.ResourceExhausted)].sort(),
    );
    expect(await codeOf(grpc.issueCoupon({ campaignId: campaign?.id ?? '', userId: 'after-names' }))).toBe(
      'ok',
    );
    expect(env.app.services.breakers.database.state).toBe('closed');
  });
});

describe('error messages', () => {
  const client = () => createClient(CouponService, createGrpcTransport({ baseUrl: env.baseUrl }));
  it('quote at most a short prefix of what the caller sent', async () => {
    const long = `${'긴'.repeat(150)}${'x'.repeat(50)}`;
    const notFound = await client()
      .getCampaign({ name: long })
      .catch((error: unknown) => ConnectError.from(error));
    expect(notFound).toBeInstanceOf(ConnectError);
    expect((notFound as ConnectError).code).toBe(Code.NotFound);
    expect((notFound as ConnectError).rawMessage).toContain(`"${'긴'.repeat(40)}"…`);
    expect((notFound as ConnectError).rawMessage.length).toBeLessThan(100);
  });
});

describe('metrics', () => {
  it('serves Prometheus text with process metrics and the service counters, and they move', async () => {
    const response = await fetch(`${env.baseUrl}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const text = await response.text();
    for (const name of [
      'process_cpu_user_seconds_total',
      'nodejs_eventloop_lag_seconds',
      'coupon_rpc_duration_seconds',
      'coupon_issue_outcomes_total',
      'coupon_circuit_breaker_open',
      'coupon_db_batch_size',
    ]) {
      expect(text).toContain(name);
    }

    const issuedBefore = await metricValue('coupon_issue_outcomes_total', 'outcome="issued"');
    const soldOutBefore = await metricValue('coupon_issue_outcomes_total', 'outcome="sold_out"');
    const batchesBefore = await metricValue('coupon_db_batch_size_count', '');
    const client = createClient(
      CouponService,
      createConnectTransport({ baseUrl: env.baseUrl, httpVersion: '1.1' }),
    );
    const { campaign } = await client.createCampaign(campaignRequest(), {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        client.issueCoupon({ campaignId: campaign?.id ?? '', userId: `m-${i}` }),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
    expect(await metricValue('coupon_issue_outcomes_total', 'outcome="issued"')).toBe(issuedBefore + 5);
    expect(await metricValue('coupon_issue_outcomes_total', 'outcome="sold_out"')).toBe(soldOutBefore + 3);
    expect(
      await metricValue('coupon_rpc_duration_seconds_count', 'method="IssueCoupon",code="ok"'),
    ).toBeGreaterThanOrEqual(5);
    expect(await metricValue('coupon_db_batch_size_count', '')).toBeGreaterThan(batchesBefore);
  });
});
