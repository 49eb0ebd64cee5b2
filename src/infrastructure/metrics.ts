import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { BuildInfo } from './build-info.ts';

const LOOP_PROBE_MS = 10;

/**
 * Most campaigns given series of their own in the per-campaign gauges. Each campaign is four
 * series; a deployment with more campaigns with claims at once shows the ones that need a look
 * first (stale claims), then the newest, so a scrape stays a few kilobytes whatever runs.
 */
export const CAMPAIGN_SERIES_MAX = 50;

/** What the reconciler read of one campaign it visited for its claims (see `setCampaignFigures`). */
export interface CampaignFigures {
  readonly campaignId: string;
  readonly amount: number;
  /** Coupons recorded in the database. */
  readonly issued: number;
  /** Slots left at the gate. */
  readonly remaining: number;
  /** Pending claims older than RECONCILE_AFTER_MS when looked at. */
  readonly stale: number;
}

/** Whether the instance can serve, as /readyz would answer now; read at each scrape. */
export type ReadinessCheck = () => Promise<{
  ready: boolean;
  dependencies: Readonly<Record<string, boolean>>;
}>;

/** Every Prometheus metric of the service, in one registry of its own (so tests can build many apps). */
export class Metrics {
  readonly registry = new Registry();

  readonly rpcDuration = new Histogram({
    name: 'coupon_rpc_duration_seconds',
    help: 'RPC handling time by method and Connect code',
    labelNames: ['method', 'code'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly issueOutcomes = new Counter({
    name: 'coupon_issue_outcomes_total',
    help: 'IssueCoupon outcomes: issued, sold_out, duplicate, not_open, not_found, invalid, unavailable, rate_limited',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly claimsSettled = new Counter({
    name: 'coupon_claims_settled_total',
    help: 'Claims given back or settled outside the happy path: released (write failed), reconciled_released, reconciled_confirmed, adopted',
    labelNames: ['how'] as const,
    registers: [this.registry],
  });

  readonly reconcileFailures = new Counter({
    name: 'coupon_reconcile_failures_total',
    help: 'Campaigns the reconciler could not settle in a pass (tried again the next pass)',
    registers: [this.registry],
  });

  readonly activityMarkFailures = new Counter({
    name: 'coupon_activity_mark_failures_total',
    help: 'Marks of a campaign as active that could not be stored; its claims went on, found by the sweep if their instance dies',
    registers: [this.registry],
  });

  readonly activeCampaigns = new Gauge({
    name: 'coupon_active_campaigns',
    help: 'Campaigns with claims lately, which the reconciler visits every pass',
    registers: [this.registry],
  });

  readonly dbBatchSize = new Histogram({
    name: 'coupon_db_batch_size',
    help: 'Coupons written per database transaction (group commit)',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
    registers: [this.registry],
  });

  readonly dbLockRetries = new Counter({
    name: 'coupon_db_lock_retries_total',
    help: 'Coupon transactions InnoDB rolled back over a lock conflict and that were run again, by conflict (deadlock, lock-wait-timeout)',
    labelNames: ['conflict'] as const,
    registers: [this.registry],
  });

  readonly dbBatchDuration = new Histogram({
    name: 'coupon_db_batch_duration_seconds',
    help: 'Time to write one batch of coupons',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly dbQueries = new Counter({
    name: 'coupon_db_queries_total',
    help: 'SQL statements sent to the database (transaction begin/commit and the readiness ping not counted)',
    registers: [this.registry],
  });

  readonly dependencyErrors = new Counter({
    name: 'coupon_dependency_errors_total',
    help: 'Failed or timed-out calls to Redis or the database',
    labelNames: ['dependency'] as const,
    registers: [this.registry],
  });

  readonly breakerState = new Gauge({
    name: 'coupon_circuit_breaker_open',
    help: '1 while the circuit breaker of a dependency is open (failing fast), 0 when closed, 0.5 half-open',
    labelNames: ['dependency'] as const,
    registers: [this.registry],
  });

  readonly eventLoopDelay = new Histogram({
    name: 'coupon_event_loop_delay_seconds',
    help: 'How late a 10 ms timer fired: time the event loop was held by one piece of work (no request should hold it 50 ms)',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly buildInfo = new Gauge({
    name: 'coupon_build_info',
    help: 'Always 1: the version (package.json), commit and Node.js version this process runs',
    labelNames: ['version', 'commit', 'node'] as const,
    registers: [this.registry],
  });

  readonly reconcilePasses = new Counter({
    name: 'coupon_reconcile_passes_total',
    help: 'Reconciler passes by result: ok, or failed (the pass stopped: a store did not answer; the next one tries again)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly campaignRemaining = new Gauge({
    name: 'coupon_campaign_remaining',
    help: `Slots left at the gate, per campaign with claims lately that is open or has claims pending (at most ${CAMPAIGN_SERIES_MAX} campaigns), as the last reconcile pass read it`,
    labelNames: ['campaign_id'] as const,
    registers: [this.registry],
  });

  readonly campaignIssued = new Gauge({
    name: 'coupon_campaign_issued',
    help: 'Coupons recorded in the database, per campaign of coupon_campaign_remaining',
    labelNames: ['campaign_id'] as const,
    registers: [this.registry],
  });

  readonly campaignAmount = new Gauge({
    name: 'coupon_campaign_amount',
    help: 'Coupons the campaign hands out in all, per campaign of coupon_campaign_remaining',
    labelNames: ['campaign_id'] as const,
    registers: [this.registry],
  });

  readonly campaignStaleClaims = new Gauge({
    name: 'coupon_campaign_stale_claims',
    help: 'Claims the gate counts as taken with no confirmed row, pending longer than RECONCILE_AFTER_MS (the gate and the database disagree), per campaign of coupon_campaign_remaining; the pass that reads them settles them',
    labelNames: ['campaign_id'] as const,
    registers: [this.registry],
  });

  readonly ready: Gauge<'dependency'>;

  readonly rememberedUserTokens: Gauge;
  private rememberedUserTokenCount: (() => number) | undefined;

  private readonly loopProbe: NodeJS.Timeout;
  private readinessCheck: ReadinessCheck | undefined;

  constructor(build?: BuildInfo) {
    collectDefaultMetrics({ register: this.registry });
    if (build) this.buildInfo.set({ version: build.version, commit: build.commit, node: build.node }, 1);
    for (const result of ['ok', 'failed']) this.reconcilePasses.inc({ result }, 0);
    const metrics = this;
    this.ready = new Gauge({
      name: 'coupon_ready',
      help: '1 while the instance would answer /readyz 200 (its stores answer, not draining), 0 otherwise; with dependency, whether that one answers. Checked at each scrape',
      labelNames: ['dependency'] as const,
      registers: [this.registry],
      async collect() {
        if (!metrics.readinessCheck) return;
        const { ready, dependencies } = await metrics.readinessCheck();
        this.reset();
        this.set(ready ? 1 : 0);
        for (const [dependency, up] of Object.entries(dependencies)) this.set({ dependency }, up ? 1 : 0);
      },
    });
    this.rememberedUserTokens = new Gauge({
      name: 'coupon_user_tokens_remembered',
      help: 'Verified user tokens this instance holds so that their next calls are not verified again (HS256: only tokens whose call was refused); 0 without user tokens',
      registers: [this.registry],
      collect() {
        if (metrics.rememberedUserTokenCount) this.set(metrics.rememberedUserTokenCount());
      },
    });
    // A histogram rather than the default metrics' percentiles of a sliding window: a single
    // stall of a second stays visible in the buckets, and rates per bucket can be alerted on.
    let expected = performance.now() + LOOP_PROBE_MS;
    this.loopProbe = setInterval(() => {
      const now = performance.now();
      this.eventLoopDelay.observe(Math.max(0, now - expected) / 1000);
      expected = now + LOOP_PROBE_MS;
    }, LOOP_PROBE_MS).unref();
  }

  /** Makes `coupon_user_tokens_remembered` count what `count` says. */
  observeRememberedUserTokens(count: () => number): void {
    this.rememberedUserTokenCount = count;
  }

  /** Makes `coupon_ready` answer; until then it is absent. */
  observeReadiness(check: ReadinessCheck): void {
    this.readinessCheck = check;
  }

  /**
   * Replaces the per-campaign gauges with what one reconcile pass read of the campaigns with
   * claims lately: the open ones and those with claims pending, at most CAMPAIGN_SERIES_MAX.
   */
  setCampaignFigures(campaigns: readonly CampaignFigures[]): void {
    const shown = [...campaigns]
      .sort((a, b) => b.stale - a.stale || (a.campaignId < b.campaignId ? 1 : -1))
      .slice(0, CAMPAIGN_SERIES_MAX);
    for (const gauge of [
      this.campaignRemaining,
      this.campaignIssued,
      this.campaignAmount,
      this.campaignStaleClaims,
    ]) {
      gauge.reset();
    }
    for (const campaign of shown) {
      const labels = { campaign_id: campaign.campaignId };
      this.campaignRemaining.set(labels, campaign.remaining);
      this.campaignIssued.set(labels, campaign.issued);
      this.campaignAmount.set(labels, campaign.amount);
      this.campaignStaleClaims.set(labels, campaign.stale);
    }
  }

  /** Stops the event-loop probe. */
  close(): void {
    clearInterval(this.loopProbe);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
