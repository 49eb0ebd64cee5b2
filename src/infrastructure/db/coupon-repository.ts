import type { QueryResult } from '@mikro-orm/core';
import type { CouponRepository, CouponToPersist, PersistOutcome } from '../../application/ports.ts';
import type { DependencyBreaker } from '../dependency-breaker.ts';
import { guarded, type LockConflict, retryingLockConflicts, violatedUniqueKey } from './errors.ts';
import type { Database } from './orm.ts';

/** Ends the transaction with an outcome that is not an error, rolling back what it wrote. */
class Refused extends Error {
  readonly outcome: PersistOutcome;
  constructor(outcome: PersistOutcome) {
    super(outcome);
    this.outcome = outcome;
  }
}

/**
 * A coupon's validity end, from its issue time (`?`) and its campaign's (`?`) validity: fixed when
 * the row is written, so a redemption judges it from the coupon row alone. The campaign's row is
 * already held by the transaction (its issued_count was raised first): reading it costs no lock.
 * NULL when the campaign's coupons never expire.
 */
const VALID_UNTIL =
  '(select date_add(cast(? as datetime(3)), interval coupon_valid_for_ms * 1000 microsecond) from campaign where id = ?)';

export interface CouponRepositoryOptions {
  /** Told each time a transaction InnoDB gave up over a lock conflict is run again. */
  readonly onRetry?: (conflict: LockConflict) => void;
  /** No retry starts once a write has lasted this long (default 2 s; see `LockConflictRetries`). */
  readonly retryWithinMs?: number;
}

export class MikroOrmCouponRepository implements CouponRepository {
  private readonly db: Database;
  private readonly breaker: DependencyBreaker | undefined;
  private readonly options: CouponRepositoryOptions;

  constructor(db: Database, breaker?: DependencyBreaker, options: CouponRepositoryOptions = {}) {
    this.db = db;
    this.breaker = breaker;
    this.options = options;
  }

  isAvailable(): boolean {
    return this.breaker?.isClosed ?? true;
  }

  async findHolders(campaignId: string, userIds: readonly string[]): Promise<Set<string>> {
    if (userIds.length === 0) return new Set();
    return guarded(this.breaker, 'finding coupon holders', async () => {
      const rows = await this.db.em
        .fork()
        .execute<{ user_id: string }[]>(
          `select user_id from coupon where campaign_id = ? and user_id in (${userIds.map(() => '?').join(', ')})`,
          [campaignId, ...userIds],
        );
      return new Set(rows.map((row) => row.user_id));
    });
  }

  persist(coupon: CouponToPersist): Promise<PersistOutcome> {
    return guarded(this.breaker, 'recording a coupon', () => this.persistInTransaction(coupon));
  }

  /**
   * Records many coupons in one transaction: one guarded `issued_count` raise per campaign and
   * one multi-row INSERT. If any row is refused (full campaign, taken code, user who already
   * holds one), the whole batch rolls back and every row is retried on its own, so one bad row
   * never fails its neighbours. A batch InnoDB chose as a deadlock victim is run again whole.
   * Outcomes come back in input order.
   */
  persistMany(coupons: readonly CouponToPersist[]): Promise<PersistOutcome[]> {
    return guarded(this.breaker, 'recording coupons', async () => {
      if (coupons.length === 1) return [await this.persistInTransaction(coupons[0] as CouponToPersist)];
      try {
        await this.retryingLockConflicts(() => this.persistAllOrNothing(coupons));
        return coupons.map(() => 'persisted' as const);
      } catch (error) {
        if (!(error instanceof Refused) && violatedUniqueKey(error) === undefined) throw error;
        return Promise.all(coupons.map((coupon) => this.persistInTransaction(coupon)));
      }
    });
  }

  private async persistAllOrNothing(coupons: readonly CouponToPersist[]): Promise<void> {
    const counts = new Map<string, number>();
    for (const coupon of coupons) counts.set(coupon.campaignId, (counts.get(coupon.campaignId) ?? 0) + 1);
    // Every transaction of every instance locks its campaign rows in one order, by id (any fixed
    // order would do). In arrival order, a batch that raised A and then asked for B deadlocked
    // with one that raised B and then asked for A, and InnoDB failed one of them; in one order
    // the second batch waits for the first row they share, holding nothing the first one needs.
    const perCampaign = [...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    await this.db.em.fork().transactional(async (em) => {
      for (const [campaignId, count] of perCampaign) {
        const raised = await em.execute<QueryResult>(
          'update campaign set issued_count = issued_count + ? where id = ? and issued_count + ? <= amount',
          [count, campaignId, count],
          'run',
        );
        if (raised.affectedRows === 0) throw new Refused('campaign-full');
      }
      // The rows go in in arrival order (their ids follow first come, first served); sorting them
      // by (campaign_id, user_id) would buy nothing. Every transaction that inserts coupons holds
      // the rows of all its campaigns first, so two INSERTs running at once never share a
      // campaign: their keys in coupon_campaign_user_unique never meet, and a duplicate there is a
      // committed coupon, which fails this batch without waiting for anyone. Only the global
      // coupon_code_unique can be shared, on a code collision (~2^-127 a pair); the insert that
      // collides waits for the other transaction, and if InnoDB then finds a cycle, the retry
      // around this transaction runs it again.
      await em.execute(
        `insert into coupon (campaign_id, user_id, code, issued_at, valid_until) values ${coupons.map(() => `(?, ?, ?, ?, ${VALID_UNTIL})`).join(', ')}`,
        coupons.flatMap((c) => [c.campaignId, c.userId, c.code, c.issuedAt, c.issuedAt, c.campaignId]),
        'run',
      );
    });
  }

  private async persistInTransaction(coupon: CouponToPersist): Promise<PersistOutcome> {
    try {
      await this.retryingLockConflicts(() => this.insertOne(coupon));
      return 'persisted';
    } catch (error) {
      if (!(error instanceof Refused)) throw error;
      if (error.outcome === 'user-has-coupon' && !(await this.holdsExactly(coupon)))
        return 'user-id-collides';
      return error.outcome;
    }
  }

  /** One coupon in a transaction of its own; a refusal ends it with `Refused`. */
  private insertOne(coupon: CouponToPersist): Promise<void> {
    return this.db.em.fork().transactional(async (em) => {
      // The guard makes MySQL enforce the cap by itself: affectedRows is 0 once the campaign is full.
      const raised = await em.execute<QueryResult>(
        'update campaign set issued_count = issued_count + 1 where id = ? and issued_count < amount',
        [coupon.campaignId],
        'run',
      );
      if (raised.affectedRows === 0) throw new Refused('campaign-full');
      try {
        await em.execute(
          `insert into coupon (campaign_id, user_id, code, issued_at, valid_until) values (?, ?, ?, ?, ${VALID_UNTIL})`,
          [
            coupon.campaignId,
            coupon.userId,
            coupon.code,
            coupon.issuedAt,
            coupon.issuedAt,
            coupon.campaignId,
          ],
          'run',
        );
      } catch (error) {
        const key = violatedUniqueKey(error);
        if (key === 'coupon_code_unique') throw new Refused('code-taken');
        if (key === 'coupon_campaign_user_unique') throw new Refused('user-has-coupon');
        throw error;
      }
    });
  }

  /**
   * InnoDB rolls back a transaction it chose as a deadlock victim (one of ours against an
   * instance still locking in arrival order during a rolling deploy, or a code collision) or
   * that waited too long for a lock: nothing was written, so it runs again.
   */
  private retryingLockConflicts(transaction: () => Promise<void>): Promise<void> {
    return retryingLockConflicts(transaction, {
      onRetry: this.options.onRetry,
      withinMs: this.options.retryWithinMs,
    });
  }

  /**
   * Whether the coupon the unique key found is held by this very user id. The gate compares ids
   * byte for byte; a key that compared them more loosely (a PAD SPACE collation) would otherwise
   * make "alice " look like the holder "alice" and cost a slot no row stands behind.
   */
  private async holdsExactly(coupon: CouponToPersist): Promise<boolean> {
    const rows = await this.db.em
      .fork()
      .execute<{ user_id: string }[]>('select user_id from coupon where campaign_id = ? and user_id = ?', [
        coupon.campaignId,
        coupon.userId,
      ]);
    return rows.some((row) => row.user_id === coupon.userId);
  }
}
