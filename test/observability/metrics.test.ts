import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAMPAIGN_SERIES_MAX, Metrics } from '../../src/infrastructure/metrics.ts';
import { eventually } from '../support/invariants.ts';
import { isolatedConfig, openWindow, startApp, uniqueName } from '../support/services.ts';

const RECONCILE_AFTER_MS = 500;
let env: Awaited<ReturnType<typeof startApp>>;

beforeAll(async () => {
  env = await startApp(
    isolatedConfig({
      DEPENDENCY_TIMEOUT_MS: '200',
      RECONCILE_AFTER_MS: String(RECONCILE_AFTER_MS),
      // Passes are run by the test, one at a time.
      RECONCILE_INTERVAL_MS: '3600000',
      BUILD_COMMIT: 'abc1234',
    }),
  );
});
afterAll(async () => {
  await env?.stop();
});

async function scrape(): Promise<string> {
  return (await fetch(`${env.baseUrl}/metrics`)).text();
}

/** The value of one series in the text, undefined when it is absent. */
function seriesValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe('/metrics', () => {
  it('exports coupon_build_info with the version, the commit and the Node.js version', async () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    const text = await scrape();
    expect(
      seriesValue(text, `coupon_build_info{version="${version}",commit="abc1234",node="${process.version}"}`),
    ).toBe(1);
  });

  it("without BUILD_COMMIT, names the checkout's HEAD", async () => {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    const { readBuildInfo } = await import('../../src/infrastructure/build-info.ts');
    expect(readBuildInfo()).toMatchObject({ commit: head, node: process.version });
  });

  it('says whether the instance is ready, and which store answers, at each scrape', async () => {
    const text = await scrape();
    expect(seriesValue(text, 'coupon_ready')).toBe(1);
    expect(seriesValue(text, 'coupon_ready{dependency="redis"}')).toBe(1);
    expect(seriesValue(text, 'coupon_ready{dependency="database"}')).toBe(1);
  });

  it('shows remaining, issued and amount of an open campaign with claims, and claims pending past RECONCILE_AFTER_MS until settled', async () => {
    const { services } = env.app;
    const campaign = await services.campaigns.createCampaign({
      name: uniqueName('figures'),
      amount: 10n,
      ...openWindow(),
    });
    const series = (name: string) => `${name}{campaign_id="${campaign.id}"}`;
    await services.issuer.issueCoupon(campaign.id, 'holder');
    // A claim whose process died before its write: the gate counts it, the database never will.
    await services.activity.markActive(campaign.id);
    const lost = await services.gate.claimSlot(campaign.id, 'lost');
    expect(lost.status).toBe('claimed');

    await services.reconciler.reconcile();
    let text = await scrape();
    expect(seriesValue(text, series('coupon_campaign_amount'))).toBe(10);
    expect(seriesValue(text, series('coupon_campaign_issued'))).toBe(1);
    expect(seriesValue(text, series('coupon_campaign_remaining'))).toBe(8);
    expect(seriesValue(text, series('coupon_campaign_stale_claims'))).toBe(0);

    // Once the claim is older than RECONCILE_AFTER_MS a pass sees it stale, and settles it.
    const settled = await eventually(async () => {
      const report = await services.reconciler.reconcile();
      return report.released === 1 ? [] : ['not settled yet'];
    }, 10_000);
    expect(settled).toEqual([]);
    text = await scrape();
    expect(seriesValue(text, series('coupon_campaign_stale_claims'))).toBe(1);

    await services.reconciler.reconcile();
    text = await scrape();
    expect(seriesValue(text, series('coupon_campaign_stale_claims'))).toBe(0);
    expect(seriesValue(text, series('coupon_campaign_remaining'))).toBe(9);
  });

  it('counts reconcile passes by result', async () => {
    const text = await scrape();
    expect(seriesValue(text, 'coupon_reconcile_passes_total{result="ok"}')).toBeGreaterThanOrEqual(0);
    expect(seriesValue(text, 'coupon_reconcile_passes_total{result="failed"}')).toBe(0);
  });
});

describe('per-campaign gauges', () => {
  it(`keep at most ${CAMPAIGN_SERIES_MAX} campaigns: those with stale claims first, then the newest`, async () => {
    const metrics = new Metrics();
    const campaigns = Array.from({ length: CAMPAIGN_SERIES_MAX + 20 }, (_, i) => ({
      campaignId: `campaign-${String(i).padStart(3, '0')}`,
      amount: 100,
      issued: i,
      remaining: 100 - i,
      stale: i === 3 ? 2 : 0,
    }));
    metrics.setCampaignFigures(campaigns);
    const shown = (await metrics.campaignRemaining.get()).values.map((value) => value.labels.campaign_id);
    expect(shown).toHaveLength(CAMPAIGN_SERIES_MAX);
    expect(shown).toContain('campaign-003');
    expect(shown).toContain('campaign-069');
    expect(shown).not.toContain('campaign-019');

    // A pass that sees fewer campaigns drops the others' series.
    metrics.setCampaignFigures(campaigns.slice(0, 1));
    expect((await metrics.campaignIssued.get()).values.map((value) => value.labels.campaign_id)).toEqual([
      'campaign-000',
    ]);
    metrics.close();
  });
});
