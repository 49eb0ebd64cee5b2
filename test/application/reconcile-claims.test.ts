import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../src/app.ts';
import { ClaimReconciler } from '../../src/application/reconcile-claims.ts';
import { openWindow, startServices, uniqueName } from '../support/services.ts';

let env: Awaited<ReturnType<typeof startServices>>;
let services: Services;

beforeAll(async () => {
  env = await startServices();
  services = env.services;
});
afterAll(async () => {
  await env?.stop();
});

async function createCampaign(amount: number) {
  return services.campaigns.createCampaign({
    name: uniqueName('reconcile'),
    amount: BigInt(amount),
    ...openWindow(),
  });
}

async function gateState(campaignId: string) {
  const keys = services.redisGate.keys(campaignId);
  return {
    remaining: Number(await services.redis.get(keys.remaining)),
    users: (await services.redis.smembers(keys.users)).sort(),
    pending: await services.redis.zrange(keys.pending, '0', '-1'),
  };
}

/** Claims a slot the way a request does (campaign marked active first), then "dies": nothing settles the claim. */
async function abandonedClaim(campaignId: string, userId: string): Promise<number> {
  await services.activity.markActive(campaignId);
  const claim = await services.gate.claimSlot(campaignId, userId);
  if (claim.status !== 'claimed') throw new Error(`expected a claim, got ${claim.status}`);
  return claim.claimedAt.getTime();
}

/** Everything claimed up to now counts as stale: no waiting for RECONCILE_AFTER_MS. */
async function reconcileNow(campaignId: string, reconciler = services.reconciler) {
  return reconciler.reconcileCampaign(campaignId, new Date((await services.gate.now()).getTime() + 1));
}

describe('the claim reconciler', () => {
  it('gives back the slot of a claim whose process died before the database write', async () => {
    const campaign = await createCampaign(2);
    await abandonedClaim(campaign.id, 'ghost');
    expect(await gateState(campaign.id)).toEqual({ remaining: 1, users: ['ghost'], pending: ['ghost'] });

    expect(await reconcileNow(campaign.id)).toEqual({ confirmed: 0, released: 1 });
    expect(await gateState(campaign.id)).toEqual({ remaining: 2, users: [], pending: [] });
    // The user is free again and gets a coupon.
    await expect(services.issuer.issueCoupon(campaign.id, 'ghost')).resolves.toMatchObject({
      userId: 'ghost',
    });
  });

  it('confirms a claim whose coupon row was written but never confirmed', async () => {
    const campaign = await createCampaign(2);
    const claimedAt = await abandonedClaim(campaign.id, 'written');
    await services.db.em
      .fork()
      .execute(
        "insert into coupon (campaign_id, user_id, code, issued_at) values (?, 'written', '가나다라마바사아자1', ?)",
        [campaign.id, new Date(claimedAt)],
      );

    expect(await reconcileNow(campaign.id)).toEqual({ confirmed: 1, released: 0 });
    expect(await gateState(campaign.id)).toEqual({ remaining: 1, users: ['written'], pending: [] });
  });

  it('leaves claims younger than the threshold alone', async () => {
    const campaign = await createCampaign(2);
    const claimedAt = await abandonedClaim(campaign.id, 'fresh');
    expect(await services.reconciler.reconcileCampaign(campaign.id, new Date(claimedAt))).toEqual({
      confirmed: 0,
      released: 0,
    });
    expect((await gateState(campaign.id)).pending).toEqual(['fresh']);
    await services.gate.releaseSlot(campaign.id, 'fresh');
  });

  it('never releases a newer claim of the same user with an old claim time', async () => {
    const campaign = await createCampaign(2);
    const first = await abandonedClaim(campaign.id, 'again');
    await services.gate.releaseSlot(campaign.id, 'again', first);
    let second = first;
    while (second === first) {
      await services.gate.releaseSlot(campaign.id, 'again');
      second = await abandonedClaim(campaign.id, 'again');
    }
    expect(await services.gate.releaseSlot(campaign.id, 'again', first)).toBe(false);
    expect(await gateState(campaign.id)).toEqual({ remaining: 1, users: ['again'], pending: ['again'] });
    expect(await services.gate.releaseSlot(campaign.id, 'again', second)).toBe(true);
  });

  it('gives a slot back once when several instances reconcile at the same time', async () => {
    const campaign = await createCampaign(50);
    for (let i = 0; i < 20; i++) await abandonedClaim(campaign.id, `crowd-${i}`);
    const instances = Array.from(
      { length: 4 },
      () =>
        new ClaimReconciler({
          gate: services.gate,
          ...services.repositories,
          activity: services.activity,
          staleAfterMs: 0,
          sweepPerPass: 100,
        }),
    );
    const reports = await Promise.all(instances.map((reconciler) => reconcileNow(campaign.id, reconciler)));
    expect(reports.reduce((sum, report) => sum + report.released, 0)).toBe(20);
    expect(await gateState(campaign.id)).toEqual({ remaining: 50, users: [], pending: [] });
  });

  it('finds every campaign with stale claims in one pass', async () => {
    const [a, b] = [await createCampaign(3), await createCampaign(3)];
    await abandonedClaim(a.id, 'lost-a');
    await abandonedClaim(b.id, 'lost-b');
    const reconciler = new ClaimReconciler({
      gate: services.gate,
      ...services.repositories,
      activity: services.activity,
      staleAfterMs: 0,
      sweepPerPass: 100,
    });
    // Claims stamped in this very millisecond are not yet "older than 0 ms".
    const claimedAt = (await services.gate.now()).getTime();
    while ((await services.gate.now()).getTime() === claimedAt) {}
    const report = await reconciler.reconcile();
    expect(report.released).toBeGreaterThanOrEqual(2);
    expect((await gateState(a.id)).remaining).toBe(3);
    expect((await gateState(b.id)).remaining).toBe(3);
  });

  it('gives back a slot whose pending mark was lost, and frees its user', async () => {
    const campaign = await createCampaign(5);
    await services.issuer.issueCoupon(campaign.id, 'holder-1');
    await services.issuer.issueCoupon(campaign.id, 'holder-2');
    await abandonedClaim(campaign.id, 'forgotten');
    // As after a Redis failover that lost the pending mark but kept the counter and the set.
    await services.redis.zrem(services.redisGate.keys(campaign.id).pending, 'forgotten');
    expect(await gateState(campaign.id)).toEqual({
      remaining: 2,
      users: ['forgotten', 'holder-1', 'holder-2'],
      pending: [],
    });
    const report = await services.reconciler.reconcile();
    expect(report.leaked).toBeGreaterThanOrEqual(1);
    expect(await gateState(campaign.id)).toEqual({
      remaining: 3,
      users: ['holder-1', 'holder-2'],
      pending: [],
    });
    await expect(services.issuer.issueCoupon(campaign.id, 'forgotten')).resolves.toMatchObject({
      userId: 'forgotten',
    });
  });

  it('leaves a healthy campaign alone', async () => {
    const campaign = await createCampaign(5);
    await services.issuer.issueCoupon(campaign.id, 'fine');
    await abandonedClaim(campaign.id, 'in-flight');
    await services.reconciler.reconcile();
    expect(await gateState(campaign.id)).toEqual({
      remaining: 3,
      users: ['fine', 'in-flight'],
      pending: ['in-flight'],
    });
    await services.gate.releaseSlot(campaign.id, 'in-flight');
  });
});
