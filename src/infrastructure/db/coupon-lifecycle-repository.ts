import type { QueryResult } from '@mikro-orm/core';
import type { CouponLedger, UserCouponQuery } from '../../application/ports.ts';
import type { Coupon } from '../../domain/coupon.ts';
import type { DependencyBreaker } from '../dependency-breaker.ts';
import { guarded, utcDate } from './errors.ts';
import type { Database } from './orm.ts';

interface CouponRow {
  id: number | string;
  code: string;
  campaign_id: string;
  user_id: string;
  issued_at: string;
  valid_until: string | null;
  redeemed_at: string | null;
  order_id: string | null;
}

const SELECT_COUPON =
  'select id, code, campaign_id, user_id, issued_at, valid_until, redeemed_at, order_id from coupon';

function toCoupon(row: CouponRow): Coupon {
  return {
    id: Number(row.id),
    code: row.code,
    campaignId: row.campaign_id,
    userId: row.user_id,
    issuedAt: utcDate(row.issued_at),
    ...(row.valid_until !== null ? { validUntil: utcDate(row.valid_until) } : {}),
    ...(row.redeemed_at !== null ? { redeemedAt: utcDate(row.redeemed_at) } : {}),
    ...(row.order_id !== null ? { orderId: row.order_id } : {}),
  };
}

/**
 * What happens to a coupon after it is issued. Every change is one conditional UPDATE of one row
 * found by `coupon_code_unique`: MySQL decides it under that row's lock, so two orders redeeming
 * one code at once cannot both win, and no read of ours comes between the check and the write.
 * Guarded by the reads breaker, so their failures never open the issue path's circuit.
 */
export class MikroOrmCouponLedger implements CouponLedger {
  private readonly db: Database;
  private readonly breaker: DependencyBreaker | undefined;

  constructor(db: Database, breaker?: DependencyBreaker) {
    this.db = db;
    this.breaker = breaker;
  }

  findByCode(code: string): Promise<Coupon | undefined> {
    return guarded(this.breaker, 'reading a coupon', async () => {
      const [row] = await this.db.em.fork().execute<CouponRow[]>(`${SELECT_COUPON} where code = ?`, [code]);
      return row && toCoupon(row);
    });
  }

  /**
   * Newest first, as a range of `coupon_user_order_index` (user_id, id) read backwards; with a
   * campaign, the one row `coupon_campaign_user_unique` names.
   */
  listByUser(query: UserCouponQuery): Promise<Coupon[]> {
    return guarded(this.breaker, "listing a user's coupons", async () => {
      const conditions = ['user_id = ?'];
      const params: unknown[] = [query.userId];
      if (query.campaignId !== undefined) {
        conditions.push('campaign_id = ?');
        params.push(query.campaignId);
      }
      if (query.beforeId !== undefined) {
        conditions.push('id < ?');
        params.push(query.beforeId);
      }
      const rows = await this.db.em
        .fork()
        .execute<CouponRow[]>(`${SELECT_COUPON} where ${conditions.join(' and ')} order by id desc limit ?`, [
          ...params,
          query.limit,
        ]);
      return rows.map(toCoupon);
    });
  }

  redeem(code: string, orderId: string, now: Date): Promise<boolean> {
    return guarded(this.breaker, 'redeeming a coupon', async () => {
      const changed = await this.db.em.fork().execute<QueryResult>(
        `update coupon set order_id = ?, redeemed_at = ?
         where code = ? and order_id is null and (valid_until is null or valid_until > ?)`,
        [orderId, now, code, now],
        'run',
      );
      return changed.affectedRows === 1;
    });
  }

  cancelRedemption(code: string, orderId: string): Promise<boolean> {
    return guarded(this.breaker, 'cancelling a redemption', async () => {
      const changed = await this.db.em
        .fork()
        .execute<QueryResult>(
          'update coupon set order_id = null, redeemed_at = null where code = ? and order_id = ?',
          [code, orderId],
          'run',
        );
      return changed.affectedRows === 1;
    });
  }
}
