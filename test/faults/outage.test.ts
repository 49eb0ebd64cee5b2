import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Campaign } from '../../src/domain/campaign.ts';
import { assertNeverOversold, eventually, settledProblems, snapshot } from '../support/invariants.ts';
import { rush, users } from '../support/rush.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

const TIMEOUT_MS = 1_000;
const RECONCILE_AFTER_MS = 2_500;
const serviceSettings = {
  DEPENDENCY_TIMEOUT_MS: String(TIMEOUT_MS),
  BREAKER_RESET_MS: '300',
  RECONCILE_AFTER_MS: String(RECONCILE_AFTER_MS),
  RECONCILE_INTERVAL_MS: '200',
};

let mysqlProxy: TcpProxy;
let redisProxy: TcpProxy;
// The service reaches MySQL and Redis only through proxies the test can cut...
let service: Awaited<ReturnType<typeof startServices>>;
// ...while the test looks at the same stores directly.
let inspector: Awaited<ReturnType<typeof startServices>>;

function target(url: string) {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port) };
}

beforeAll(async () => {
  const direct = isolatedConfig({ ...serviceSettings, RECONCILE_INTERVAL_MS: '3600000' });
  mysqlProxy = await TcpProxy.start(target(direct.databaseUrl));
  redisProxy = await TcpProxy.start(target(direct.redisUrl));
  inspector = await startServices(direct);
  service = await startServices({
    ...direct,
    databaseUrl: mysqlProxy.route(direct.databaseUrl),
    redisUrl: redisProxy.route(direct.redisUrl),
    reconcileIntervalMs: 200,
  });
});
afterEach(() => {
  mysqlProxy.restore();
  redisProxy.restore();
});
afterAll(async () => {
  await service?.services.close();
  await inspector?.stop();
  await mysqlProxy?.close();
  await redisProxy?.close();
});

async function createCampaign(amount: number): Promise<Campaign> {
  return service.services.campaigns.createCampaign({
    name: uniqueName('outage'),
    amount: BigInt(amount),
    ...openWindow(),
  });
}

/** Issues until one call succeeds again: the service must recover by itself, with no restart. */
async function recovers(campaignId: string, label: string): Promise<number> {
  const started = Date.now();
  const problems = await eventually(async () => {
    try {
      await service.services.issuer.issueCoupon(campaignId, `${label}-${Date.now()}`);
      return [];
    } catch (error) {
      return [String(error)];
    }
  }, 15_000);
  expect(problems).toEqual([]);
  return Date.now() - started;
}

describe.each([
  ['MySQL', () => mysqlProxy, 'database'],
  ['Redis', () => redisProxy, 'redis'],
] as const)('%s cut off in the middle of a rush', (_label, proxy, dependency) => {
  it('fails calls fast with UNAVAILABLE, opens the breaker, leaks no slot, and resumes by itself', async () => {
    const amount = 400;
    const campaign = await createCampaign(amount);
    const breaker = service.services.breakers[dependency];
    let cut = false;

    const during = await rush(
      (userId) => service.services.issuer.issueCoupon(campaign.id, userId),
      users(`cut-${dependency}`, 600),
      {
        concurrency: 16,
        onIssued: (count) => {
          if (count === 50 && !cut) {
            cut = true;
            proxy().cut();
          }
        },
      },
    );
    expect(cut).toBe(true);
    // Every call ended, none hung: bounded by the dependency timeout, with room for a busy machine.
    expect(during.maxLatencyMs).toBeLessThan(TIMEOUT_MS * 2 + 1_000);
    expect(during.outcomes.database ?? during.outcomes.redis ?? 0).toBeGreaterThan(0);
    expect(Object.keys(during.outcomes).every((outcome) => outcome === 'ok' || outcome === dependency)).toBe(
      true,
    );
    // While it stays down, the breaker opens and calls stop reaching the dead dependency.
    expect(
      await eventually(async () => {
        await service.services.issuer
          .issueCoupon(campaign.id, `while-down-${Date.now()}`)
          .catch(() => undefined);
        return breaker.state === 'open' ? [] : [`breaker ${breaker.state}`];
      }, 5_000),
    ).toEqual([]);
    const fastFailStarted = performance.now();
    await expect(service.services.issuer.issueCoupon(campaign.id, 'while-open')).rejects.toThrow(
      /circuit open/,
    );
    const fastFailMs = performance.now() - fastFailStarted;
    expect(fastFailMs).toBeLessThan(100);
    expect(assertNeverOversold(await snapshot(inspector.services, campaign.id))).toEqual([]);

    proxy().restore();
    const recoveredInMs = await recovers(campaign.id, `back-${dependency}`);

    // Claims cut off mid-write are settled by the reconciler; then the stores agree.
    expect(
      await eventually(
        async () => settledProblems(await snapshot(inspector.services, campaign.id)),
        RECONCILE_AFTER_MS + 5_000,
      ),
    ).toEqual([]);

    const after = await rush(
      (userId) => service.services.issuer.issueCoupon(campaign.id, userId),
      users(`after-${dependency}`, 600),
      { concurrency: 16 },
    );
    const final = await snapshot(inspector.services, campaign.id);
    expect(settledProblems(final)).toEqual([]);
    expect(final.rows).toHaveLength(amount);
    const stored = new Map(final.rows.map((row) => [row.code, row.user_id]));
    for (const coupon of [...during.issued, ...after.issued])
      expect(stored.get(coupon.code)).toBe(coupon.userId);
    console.info(
      `${dependency} cut: outcomes during ${JSON.stringify(during.outcomes)}, slowest call ${Math.round(during.maxLatencyMs)} ms, ` +
        `breaker opened (then failing in ${fastFailMs.toFixed(1)} ms); issuing resumed ${recoveredInMs} ms after restore; final rows ${final.rows.length}/${amount}`,
    );
  });
});
