import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../src/app.ts';
import { eventually, settledProblems, snapshot } from '../support/invariants.ts';
import { rush, users } from '../support/rush.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from '../support/services.ts';

// The reconciler runs only when a test calls it.
let env: Awaited<ReturnType<typeof startServices>>;
let services: Services;

beforeAll(async () => {
  env = await startServices(
    isolatedConfig({ RECONCILE_INTERVAL_MS: '3600000', ISSUE_RATE_LIMIT_PER_USER: '0' }),
  );
  services = env.services;
});
afterAll(async () => {
  await env?.stop();
});

async function campaignWith(amount: number, issued: number) {
  const campaign = await services.campaigns.createCampaign({
    name: uniqueName('admin-crash'),
    amount: BigInt(amount),
    ...openWindow(),
  });
  for (let i = 0; i < issued; i++) await services.issuer.issueCoupon(campaign.id, `early-${i}`);
  return campaign;
}

/** What the change script holds for 30 s after an amount change: gone, as if the 30 s had passed. */
async function endRepairPause(campaignId: string) {
  await services.redis.del(`${services.redisGate.keys(campaignId).users}:repair`);
}

/**
 * The process died after the gate took an amount change and before MySQL committed it: the gate
 * has the change, MySQL (rolled back) has the old amount. Simulated by changing the gate alone.
 */
describe('an amount change the gate took and MySQL never recorded', () => {
  it('a lower: the reconciler gives the slots back once the repair pause is over, to the recorded amount', async () => {
    const campaign = await campaignWith(100, 10);
    expect(await services.redisGate.changeAmount(campaign.id, -50, 50)).toEqual({
      status: 'changed',
      remaining: 40,
    });
    await services.reconciler.reconcile();
    // Within the pause nothing is given back: a pass that read the amount before a change must not.
    expect((await snapshot(services, campaign.id)).remaining).toBe(40);
    await endRepairPause(campaign.id);
    await services.reconciler.reconcile();
    const state = await snapshot(services, campaign.id);
    expect(state.remaining).toBe(90);
    expect(settledProblems(state)).toEqual([]);
  });

  it('a raise: the extra slots are refused by MySQL and the campaign ends exactly at the recorded amount', async () => {
    const campaign = await campaignWith(10, 5);
    expect(await services.redisGate.changeAmount(campaign.id, 5, 15)).toEqual({
      status: 'changed',
      remaining: 10,
    });
    const result = await rush(
      (userId) => services.issuer.issueCoupon(campaign.id, userId),
      users('raised', 30),
      {
        concurrency: 8,
      },
    );
    expect(result.issued).toHaveLength(5);
    const problems = await eventually(
      async () => settledProblems(await snapshot(services, campaign.id)),
      5_000,
    );
    expect(problems).toEqual([]);
    expect((await snapshot(services, campaign.id)).rows).toHaveLength(10);
  });
});

describe('a reconciler pass that read the campaign before an amount change', () => {
  it('does not take the difference for leaked slots', async () => {
    const campaign = await campaignWith(100, 10);
    const readBefore = await services.repositories.campaigns.findById(campaign.id);
    await services.operations.updateAmount(campaign.id, 60n, 'test');
    if (!readBefore) throw new Error('campaign not found');
    expect(await services.reconciler.returnLeakedSlots(readBefore)).toBe(0);
    // Past the pause too: the repair judges by the amount it reads with the rows.
    await endRepairPause(campaign.id);
    expect(await services.reconciler.returnLeakedSlots(readBefore)).toBe(0);
    const state = await snapshot(services, campaign.id);
    expect(state.remaining).toBe(50);
    expect(settledProblems(state)).toEqual([]);
  });
});

describe('a close the gate took and MySQL never recorded', () => {
  it('stays in force, and CloseCampaign again records it once', async () => {
    const campaign = await campaignWith(10, 1);
    const closing = await services.redisGate.closeWindow(campaign.id);
    expect(closing.status).toBe('closed');
    await expect(services.issuer.issueCoupon(campaign.id, 'late')).rejects.toMatchObject({
      kind: 'campaign-not-open',
    });
    const closed = await services.operations.closeCampaign(campaign.id, 'test');
    expect(closed.expiresAt.getTime()).toBe(closing.status === 'closed' ? closing.closedAt.getTime() : 0);
    expect((await services.repositories.campaigns.findById(campaign.id))?.expiresAt).toEqual(
      closed.expiresAt,
    );
    await services.operations.closeCampaign(campaign.id, 'test');
    const events = await services.repositories.campaigns.listEvents(campaign.id, 0, 10);
    expect(events.map((e) => e.kind)).toEqual(['created', 'closed']);
  });
});
