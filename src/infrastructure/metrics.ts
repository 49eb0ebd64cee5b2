import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

const LOOP_PROBE_MS = 10;

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

  private readonly loopProbe: NodeJS.Timeout;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // A histogram rather than the default metrics' percentiles of a sliding window: a single
    // stall of a second stays visible in the buckets, and rates per bucket can be alerted on.
    let expected = performance.now() + LOOP_PROBE_MS;
    this.loopProbe = setInterval(() => {
      const now = performance.now();
      this.eventLoopDelay.observe(Math.max(0, now - expected) / 1000);
      expected = now + LOOP_PROBE_MS;
    }, LOOP_PROBE_MS).unref();
  }

  /** Stops the event-loop probe. */
  close(): void {
    clearInterval(this.loopProbe);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
