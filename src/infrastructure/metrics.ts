import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

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

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
