import type { Span } from '@opentelemetry/api';
import type { CouponRepository, CouponToPersist, PersistOutcome } from '../../application/ports.ts';
import { endFailed, type Tracing } from '../tracing.ts';

export interface BatchCouponStore extends CouponRepository {
  persistMany(coupons: readonly CouponToPersist[]): Promise<PersistOutcome[]>;
}

interface Waiting {
  readonly coupon: CouponToPersist;
  resolve(outcome: PersistOutcome): void;
  reject(error: unknown): void;
  /** With tracing on, the write's span in the trace of the call that asked for it. */
  readonly span?: Span | undefined;
}

export interface GroupCommitOptions {
  /** Most rows in one transaction. */
  readonly maxBatch: number;
  /** Most batches being written at once. */
  readonly maxInFlight: number;
  /** Told of every batch written: its size and how long it took. */
  readonly onBatch?: (size: number, seconds: number) => void;
  /** With tracing on: each coupon's wait and write is a span of its call (`db.group_commit`). */
  readonly tracing?: Tracing;
}

/**
 * Group commit: coupons asked for while earlier batches are being written wait, and go together
 * in the next transaction. Under light load a coupon is written at once, alone; under a rush the
 * batches grow by themselves, and MySQL does one transaction per batch instead of one per coupon.
 * Each caller still gets its own outcome.
 */
export class GroupCommitCouponRepository implements CouponRepository {
  private readonly store: BatchCouponStore;
  private readonly options: GroupCommitOptions;
  private queue: Waiting[] = [];
  private inFlight = 0;
  private drainScheduled = false;

  constructor(store: BatchCouponStore, options: GroupCommitOptions) {
    this.store = store;
    this.options = options;
  }

  persist(coupon: CouponToPersist): Promise<PersistOutcome> {
    return new Promise((resolve, reject) => {
      const span = this.options.tracing?.startChild('db.group_commit', {
        'coupon.campaign_id': coupon.campaignId,
      });
      this.queue.push(span ? tracedWaiting(coupon, resolve, reject, span) : { coupon, resolve, reject });
      // Wait for the rest of this turn of the event loop: requests that arrived together go together.
      if (!this.drainScheduled) {
        this.drainScheduled = true;
        setImmediate(() => {
          this.drainScheduled = false;
          this.drain();
        });
      }
    });
  }

  findHolders(campaignId: string, userIds: readonly string[]): Promise<Set<string>> {
    return this.store.findHolders(campaignId, userIds);
  }

  isAvailable(): boolean {
    return this.store.isAvailable();
  }

  private drain(): void {
    while (this.inFlight < this.options.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.maxBatch);
      this.inFlight++;
      const started = performance.now();
      if (this.options.tracing) {
        for (const waiting of batch) {
          // Queued until here: the batch this coupon goes in is written from now on.
          waiting.span?.addEvent('batch write started', { 'coupon.batch_size': batch.length });
          waiting.span?.setAttribute('coupon.batch_size', batch.length);
        }
      }
      this.store
        .persistMany(batch.map((waiting) => waiting.coupon))
        .then(
          (outcomes) => {
            for (const [i, waiting] of batch.entries()) waiting.resolve(outcomes[i] as PersistOutcome);
          },
          (error: unknown) => {
            for (const waiting of batch) waiting.reject(error);
          },
        )
        .finally(() => {
          this.options.onBatch?.(batch.length, (performance.now() - started) / 1000);
          this.inFlight--;
          this.drain();
        });
    }
  }
}

/** A waiting coupon whose span ends with its outcome. */
function tracedWaiting(
  coupon: CouponToPersist,
  resolve: (outcome: PersistOutcome) => void,
  reject: (error: unknown) => void,
  span: Span,
): Waiting {
  return {
    coupon,
    span,
    resolve(outcome) {
      span.setAttribute('coupon.persist', outcome);
      span.end();
      resolve(outcome);
    },
    reject(error) {
      endFailed(span, error);
      reject(error);
    },
  };
}
