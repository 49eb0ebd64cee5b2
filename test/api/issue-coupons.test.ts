import { create } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFingerprint } from '../../src/api/admin-auth.ts';
import { CouponService, CouponState } from '../../src/gen/coupon/v1/coupon_pb.js';
import { settledProblems, snapshot } from '../support/invariants.ts';
import { campaignRequest, codeOf } from '../support/rpc.ts';
import { users } from '../support/rush.ts';
import { isolatedConfig, startApp } from '../support/services.ts';

const ADMIN_TOKEN = 'test-admin-token-for-bulk-issue';
const admin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
const config = isolatedConfig({ ADMIN_TOKEN, ISSUE_RATE_LIMIT_PER_USER: '0' });
let env: Awaited<ReturnType<typeof startApp>>;

beforeAll(async () => {
  env = await startApp(config);
});
afterAll(async () => {
  await env?.stop();
});

const grpc = () => createClient(CouponService, createGrpcTransport({ baseUrl: env.baseUrl }));
const connect = () =>
  createClient(CouponService, createConnectTransport({ baseUrl: env.baseUrl, httpVersion: '1.1' }));
const protocols = [
  ['Connect', connect],
  ['gRPC', grpc],
] as const;

async function createCampaign(overrides: Parameters<typeof campaignRequest>[0] = {}) {
  const { campaign } = await grpc().createCampaign(campaignRequest(overrides), admin);
  if (!campaign) throw new Error('no campaign');
  return campaign;
}

describe.each(protocols)('IssueCoupons over %s', (label, client) => {
  it('issues 500 coupons to the first 500 of 1,000 users and refuses the rest resource_exhausted, in one event', async () => {
    const campaign = await createCampaign({ amount: 500n });
    const userIds = users(`bulk-${label}`, 1_000);
    const { results } = await client().issueCoupons({ campaignId: campaign.id, userIds }, admin);
    expect(results.map((result) => result.userId)).toEqual(userIds);
    const issued = results.filter((result) => result.coupon);
    expect(issued.map((result) => result.userId)).toEqual(userIds.slice(0, 500));
    for (const result of issued) {
      expect(result.coupon).toMatchObject({
        userId: result.userId,
        state: CouponState.ISSUED,
        campaignId: campaign.id,
      });
      expect(result.refusal).toBe('');
    }
    const refused = results.slice(500);
    expect(new Set(refused.map((result) => result.refusal))).toEqual(new Set(['resource_exhausted']));
    expect(refused.every((result) => result.message.length > 0 && !result.coupon)).toBe(true);
    const state = await snapshot(env.app.services, campaign.id);
    expect(settledProblems(state)).toEqual([]);
    expect(state.rows.map((row) => row.user_id).sort()).toEqual(userIds.slice(0, 500).sort());
    const stored = new Map(state.rows.map((row) => [row.user_id, row.code]));
    for (const result of issued) expect(result.coupon?.code).toBe(stored.get(result.userId));

    const { events } = await grpc().listCampaignEvents({ campaignId: campaign.id }, admin);
    const bulk = events.filter((event) => event.kind === 'coupons_issued');
    expect(bulk).toHaveLength(1);
    expect(bulk[0]?.detail).toMatch(/issued 500 of 1000/);
    expect(bulk[0]?.actor).toBe(adminFingerprint(ADMIN_TOKEN));
  });

  it('is exact mixed with concurrent single issues: amount issued, never more, every refusal resource_exhausted', async () => {
    const campaign = await createCampaign({ amount: 500n });
    const bulkUsers = users(`mixed-bulk-${label}`, 1_000);
    const singleUsers = users(`mixed-single-${label}`, 300);
    const singles = singleUsers.map((userId) =>
      connect()
        .issueCoupon({ campaignId: campaign.id, userId })
        .then(
          () => 'issued',
          (error: unknown) => Code[ConnectError.from(error).code],
        ),
    );
    const bulk = client().issueCoupons({ campaignId: campaign.id, userIds: bulkUsers }, admin);
    const [singleOutcomes, { results }] = await Promise.all([Promise.all(singles), bulk]);
    const bulkIssued = results.filter((result) => result.coupon).length;
    const singleIssued = singleOutcomes.filter((outcome) => outcome === 'issued').length;
    expect(bulkIssued + singleIssued).toBe(500);
    expect(new Set(results.filter((r) => !r.coupon).map((r) => r.refusal))).toEqual(
      new Set(['resource_exhausted']),
    );
    for (const outcome of singleOutcomes) expect(['issued', 'ResourceExhausted']).toContain(outcome);
    expect(bulkIssued).toBeGreaterThan(0);
    expect(singleIssued).toBeGreaterThan(0);
    const state = await snapshot(env.app.services, campaign.id);
    expect(settledProblems(state)).toEqual([]);
    expect(state.rows).toHaveLength(500);
  });

  it('refuses per entry: a user listed twice, one who already holds a coupon, an invalid user id', async () => {
    const campaign = await createCampaign({
      amount: 10n,
      couponValidFor: create(DurationSchema, { seconds: 3_600n }),
    });
    await client().issueCoupon({ campaignId: campaign.id, userId: 'holder' });
    const { results } = await client().issueCoupons(
      { campaignId: campaign.id, userIds: ['a', 'holder', 'a', ' padded', 'b'] },
      admin,
    );
    expect(results.map((result) => [result.userId, result.refusal])).toEqual([
      ['a', ''],
      ['holder', 'already_exists'],
      ['a', 'already_exists'],
      [' padded', 'invalid_argument'],
      ['b', ''],
    ]);
    expect(results[2]?.message).toMatch(/user_ids\[0\]/);
    const coupon = results[0]?.coupon;
    const ms = (t: { seconds: bigint; nanos: number } | undefined) =>
      t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : Number.NaN;
    expect(ms(coupon?.validUntil) - ms(coupon?.issuedAt)).toBe(3_600_000);
    expect((await snapshot(env.app.services, campaign.id)).rows).toHaveLength(3);
  });

  it('refuses the whole call: more than 1,000 users or none, an unknown campaign, no admin token', async () => {
    const campaign = await createCampaign();
    const call = (request: { campaignId: string; userIds: string[] }, options = admin) =>
      codeOf(client().issueCoupons(request, options));
    expect(await call({ campaignId: campaign.id, userIds: users('too-many', 1_001) })).toBe(
      Code.InvalidArgument,
    );
    expect(await call({ campaignId: campaign.id, userIds: [] })).toBe(Code.InvalidArgument);
    expect(await call({ campaignId: '0190a0b0-0000-7000-8000-000000000000', userIds: ['u'] })).toBe(
      Code.NotFound,
    );
    expect(await call({ campaignId: 'not-an-id', userIds: ['u'] })).toBe(Code.NotFound);
    expect(await call({ campaignId: '', userIds: ['u'] })).toBe(Code.InvalidArgument);
    expect(await call({ campaignId: campaign.id, userIds: ['u'] }, { headers: {} } as typeof admin)).toBe(
      Code.Unauthenticated,
    );
    expect((await snapshot(env.app.services, campaign.id)).rows).toHaveLength(0);
  });
});
