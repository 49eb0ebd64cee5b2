import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { eventually, settledProblems, snapshot } from '../support/invariants.ts';
import { campaignRequest } from '../support/rpc.ts';
import { rush, users } from '../support/rush.ts';
import { isolatedConfig, startApp } from '../support/services.ts';

const ADMIN_TOKEN = 'test-admin-token-for-rushes';
const admin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
let env: Awaited<ReturnType<typeof startApp>>;

beforeAll(async () => {
  env = await startApp(isolatedConfig({ ADMIN_TOKEN, ISSUE_RATE_LIMIT_PER_USER: '0' }));
});
afterAll(async () => {
  await env?.stop();
});

const client = () => createClient(CouponService, createGrpcTransport({ baseUrl: env.baseUrl }));

async function createCampaign(amount: bigint) {
  const { campaign } = await client().createCampaign(campaignRequest({ amount }), admin);
  if (!campaign) throw new Error('no campaign');
  return campaign;
}

/** Every coupon a client saw, with when its claim was judged (the gate's clock). */
function issueTracking(campaignId: string) {
  const rpc = client();
  const calls: { startedAt: number; outcome: 'ok' | Code; claimedAt?: number }[] = [];
  const issue = async (userId: string) => {
    const call: (typeof calls)[number] = { startedAt: performance.now(), outcome: 'ok' };
    calls.push(call);
    try {
      const { coupon } = await rpc.issueCoupon({ campaignId, userId });
      if (!coupon?.issuedAt) throw new Error('no coupon');
      call.claimedAt = timestampDate(coupon.issuedAt).getTime();
      return { code: coupon.code, userId: coupon.userId };
    } catch (error) {
      call.outcome = (error as { code?: Code }).code ?? Code.Unknown;
      throw error;
    }
  };
  return { issue, calls };
}

describe('CloseCampaign during a rush', () => {
  it('2,000 users for 1,000 coupons: no claim judged after the close succeeds; rows == gate == OKs', async () => {
    const campaign = await createCampaign(1_000n);
    const { issue, calls } = issueTracking(campaign.id);
    let closing: Promise<{ closedAt: number; answeredAt: number }> | undefined;
    const result = await rush(issue, users('close-rush', 2_000), {
      concurrency: 64,
      onIssued: (count) => {
        if (count === 300 && !closing) {
          closing = client()
            .closeCampaign({ campaignId: campaign.id }, admin)
            .then(({ campaign: closed }) => ({
              closedAt: closed?.expiresAt ? timestampDate(closed.expiresAt).getTime() : Number.NaN,
              answeredAt: performance.now(),
            }));
        }
      },
    });
    const { closedAt, answeredAt } = await (closing as NonNullable<typeof closing>);
    const ok = result.issued.length;
    expect(ok).toBeGreaterThanOrEqual(300);
    expect(ok).toBeLessThan(1_000);
    // Every coupon was claimed before the close, and every call sent after its answer was refused.
    expect(calls.filter((c) => c.outcome === 'ok').every((c) => (c.claimedAt ?? 0) < closedAt)).toBe(true);
    const after = calls.filter((c) => c.startedAt > answeredAt);
    expect(after.length).toBeGreaterThan(100);
    expect(after.every((c) => c.outcome === Code.FailedPrecondition)).toBe(true);
    expect(result.outcomes).toEqual({ ok, FailedPrecondition: 2_000 - ok });

    const problems = await eventually(async () => {
      const state = await snapshot(env.app.services, campaign.id);
      const issues = settledProblems(state);
      if (state.rows.length !== ok) issues.push(`rows ${state.rows.length} != OKs ${ok}`);
      if (state.amount - (state.remaining ?? 0) !== ok)
        issues.push(`gate claimed ${state.amount - (state.remaining ?? 0)} != OKs ${ok}`);
      return issues;
    }, 10_000);
    expect(problems).toEqual([]);
    const row = await env.app.services.repositories.campaigns.findById(campaign.id);
    expect(row?.expiresAt.getTime()).toBe(closedAt);
  });
});

describe('UpdateCampaignAmount during a rush', () => {
  async function rushWithChange(from: bigint, to: bigint, changeAt: number) {
    const campaign = await createCampaign(from);
    const { issue } = issueTracking(campaign.id);
    let changing: Promise<unknown> | undefined;
    const result = await rush(issue, users(`amount-${from}-${to}`, 2_000), {
      concurrency: 64,
      onIssued: (count) => {
        if (count === changeAt && !changing) {
          changing = client().updateCampaignAmount({ campaignId: campaign.id, amount: to }, admin);
        }
      },
    });
    await changing;
    const problems = await eventually(async () => {
      const state = await snapshot(env.app.services, campaign.id);
      const issues = settledProblems(state);
      if (state.amount !== Number(to)) issues.push(`amount ${state.amount} != ${to}`);
      if (state.rows.length !== Number(to)) issues.push(`rows ${state.rows.length} != ${to}`);
      return issues;
    }, 10_000);
    expect(problems).toEqual([]);
    expect(result.issued).toHaveLength(Number(to));
    expect(result.outcomes).toEqual({ ok: Number(to), ResourceExhausted: 2_000 - Number(to) });
  }

  it('raised 500 -> 800 mid-rush: exactly 800 issued', async () => {
    await rushWithChange(500n, 800n, 250);
  });

  it('lowered 800 -> 600 mid-rush: exactly 600 issued', async () => {
    await rushWithChange(800n, 600n, 250);
  });
});
