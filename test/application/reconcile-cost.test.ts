import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../src/app.ts';
import type { SlotGate } from '../../src/application/ports.ts';
import { ClaimReconciler } from '../../src/application/reconcile-claims.ts';
import type { Campaign } from '../../src/domain/campaign.ts';
import { startPrivateRedis } from '../support/private-redis.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from '../support/services.ts';

const IDLE_CAMPAIGNS = 2_000;
const SWEEP = 100;

let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
let env: Awaited<ReturnType<typeof startServices>>;
let services: Services;
let idle: Campaign[];

beforeAll(async () => {
  // A Redis of this file's own: INFO commandstats then counts what the reconciler sends, nothing else.
  redis = await startPrivateRedis();
  env = await startServices(
    isolatedConfig({
      REDIS_URL: redis.url,
      // The tests run the passes themselves.
      RECONCILE_INTERVAL_MS: '3600000',
      RECONCILE_SWEEP_SIZE: String(SWEEP),
    }),
  );
  services = env.services;
  idle = await createIdleCampaigns(IDLE_CAMPAIGNS);
});
afterAll(async () => {
  await env?.stop();
  await redis?.stop();
});

/** Campaigns written straight into MySQL and loaded into the gate, as CreateCampaign leaves them. */
async function createIdleCampaigns(count: number): Promise<Campaign[]> {
  const { issuedAt, expiresAt } = openWindow();
  const campaigns: Campaign[] = Array.from({ length: count }, () => ({
    id: uuidv7(),
    name: uniqueName('idle'),
    amount: 10,
    issuedCount: 0,
    issuedAt,
    expiresAt,
  }));
  const em = services.db.em.fork();
  for (let i = 0; i < campaigns.length; i += 500) {
    const chunk = campaigns.slice(i, i + 500);
    await em.execute(
      `insert into campaign (id, name, amount, issued_count, issued_at, expires_at, created_at) values ${chunk
        .map(() => '(?, ?, ?, 0, ?, ?, ?)')
        .join(', ')}`,
      chunk.flatMap((c) => [c.id, c.name, c.amount, c.issuedAt, c.expiresAt, new Date()]),
      'run',
    );
  }
  for (let i = 0; i < campaigns.length; i += 100) {
    await Promise.all(
      campaigns
        .slice(i, i + 100)
        .map((campaign) => services.redisGate.loadCampaign({ campaign, userIds: [] })),
    );
  }
  return campaigns;
}

async function commandsOf<T>(work: () => Promise<T>): Promise<{ result: T; commands: number }> {
  const before = await redis.commandsRun();
  const result = await work();
  return { result, commands: (await redis.commandsRun()) - before };
}

/** Claims stamped in this very millisecond are not yet "older than 0 ms": let the gate's clock move on. */
async function afterThisMillisecond(): Promise<void> {
  const now = (await services.gate.now()).getTime();
  while ((await services.gate.now()).getTime() === now) {}
}

function reconciler(
  overrides: { gate?: SlotGate; onCampaignFailed?: (id: string, e: unknown) => void } = {},
) {
  return new ClaimReconciler({
    gate: services.gate,
    ...services.repositories,
    activity: services.activity,
    staleAfterMs: 0,
    sweepPerPass: SWEEP,
    ...overrides,
  });
}

describe('the reconciler with many idle live campaigns', () => {
  it(`sends a bounded number of Redis commands per pass, not a few per live campaign (${IDLE_CAMPAIGNS})`, async () => {
    for (let pass = 0; pass < 3; pass++) {
      const { commands } = await commandsOf(() => services.reconciler.reconcile());
      // A page of the sweep (one MULTI of five commands each) and a few of its own, whatever the number of campaigns.
      expect(commands).toBeLessThanOrEqual(6 * SWEEP + 20);
    }
  });

  it('settles a crashed claim on an active campaign in such a pass, and then forgets the campaign', async () => {
    // Made after the idle ones: its id sorts last, far beyond the sweep's first pages.
    const campaign = await services.campaigns.createCampaign({
      name: uniqueName('busy'),
      amount: 3n,
      ...openWindow(),
    });
    // As a request does: mark, claim, then the process dies before the database write.
    await services.activity.markActive(campaign.id);
    expect(await services.gate.claimSlot(campaign.id, 'ghost')).toMatchObject({ status: 'claimed' });
    await afterThisMillisecond();

    const { result: report, commands } = await commandsOf(() => reconciler().reconcile());
    expect(report).toMatchObject({ released: 1, failed: 0, forgotten: 0, active: 1 });
    expect(commands).toBeLessThanOrEqual(6 * SWEEP + 40);
    expect(await services.redisGate.countSlots(campaign.id)).toEqual({ remaining: 3, users: 0, pending: 0 });

    // No claim pending any more, and (with no idle margin here) no mark that counts: forgotten.
    await afterThisMillisecond();
    expect(await reconciler().reconcile()).toMatchObject({ forgotten: 1, active: 0 });
    expect((await services.activity.listActive()).marks).toEqual([]);
  });

  it('never forgets a campaign marked again after the reconciler looked', async () => {
    const campaign = await services.campaigns.createCampaign({
      name: uniqueName('marked'),
      amount: 3n,
      ...openWindow(),
    });
    await services.activity.markActive(campaign.id);
    const [seen] = (await services.activity.listActive()).marks;
    expect(seen?.campaignId).toBe(campaign.id);
    await afterThisMillisecond();
    // Another instance marks it (its own one-second spacing does not apply here).
    await services.redis.markActive(`${env.config.redisKeyPrefix}active-campaigns`, campaign.id);
    expect(await services.activity.forgetUnlessMarkedSince(seen as NonNullable<typeof seen>)).toBe(false);
    const [now] = (await services.activity.listActive()).marks;
    expect(now?.markedAtMs).toBeGreaterThan(seen?.markedAtMs ?? 0);
    expect(await services.activity.forgetUnlessMarkedSince(now as NonNullable<typeof now>)).toBe(true);
  });

  it('still reaches every live campaign, within ceil(live / sweep size) passes', async () => {
    // A holder the gate lost (Redis lost data): only the sweep can find it, the campaign is idle.
    const lost = idle[IDLE_CAMPAIGNS - 3] as Campaign;
    const em = services.db.em.fork();
    await em.execute(
      "insert into coupon (campaign_id, user_id, code, issued_at) values (?, 'lost-holder', '가나다라마바사아자1', ?)",
      [lost.id, new Date()],
    );
    await em.execute('update campaign set issued_count = 1 where id = ?', [lost.id]);
    const sweeping = reconciler();
    let adopted = 0;
    let passes = 0;
    const live = IDLE_CAMPAIGNS + 2;
    while (adopted === 0 && passes < Math.ceil(live / SWEEP) + 1) {
      adopted += (await sweeping.reconcile()).adopted;
      passes++;
    }
    expect(adopted).toBe(1);
    expect(passes).toBeLessThanOrEqual(Math.ceil(live / SWEEP));
    expect(await services.redis.sismember(services.redisGate.keys(lost.id).users, 'lost-holder')).toBe(1);
  });

  it('goes on with the other campaigns when one fails, and counts it', async () => {
    const [broken, crashed] = [idle[10] as Campaign, idle[20] as Campaign];
    await services.gate.claimSlot(crashed.id, 'ghost');
    await afterThisMillisecond();
    // A gate that fails every call about one campaign.
    const gate = new Proxy(services.gate, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          if (args[0] === broken.id) return Promise.reject(new Error('this campaign is broken'));
          return value.apply(target, args);
        };
      },
    });
    const failures: string[] = [];
    // The whole list in one pass, as the reconciler before the active set visited it.
    const everything = new ClaimReconciler({
      ...reconcilerDeps(),
      gate,
      sweepPerPass: 10_000,
      onCampaignFailed: (id) => failures.push(id),
    });
    const report = await everything.reconcile();
    expect(failures).toEqual([broken.id]);
    expect(report).toMatchObject({ failed: 1, released: 1 });
    expect(await services.redisGate.countSlots(crashed.id)).toEqual({ remaining: 10, users: 0, pending: 0 });
  });
});

function reconcilerDeps() {
  return {
    gate: services.gate,
    ...services.repositories,
    activity: services.activity,
    staleAfterMs: 0,
    sweepPerPass: SWEEP,
  };
}
