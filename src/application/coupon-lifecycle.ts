import {
  campaignIdOrThrow,
  couldBeCampaignId,
  pageSizeOf,
  validateCampaignId,
  validateUserId,
} from '../domain/campaign.ts';
import {
  type Coupon,
  type CouponView,
  couponCodeOrThrow,
  couponViewOf,
  validateOrderId,
} from '../domain/coupon.ts';
import {
  CampaignNotFoundError,
  CouponNotFoundError,
  CouponUnusableError,
  InvalidArgumentError,
} from '../domain/errors.ts';
import type { Page, PageRequest } from './campaign-service.ts';
import type { CouponIssuer } from './issue-coupon.ts';
import type { PageTokens } from './page-tokens.ts';
import type { CampaignRepository, CouponLedger, SlotGate } from './ports.ts';

export const ISSUE_MANY_MAX_USERS = 1_000;

/** A redemption that lost a race to a cancel retries; more than a few rounds means a fight. */
const MAX_REDEEM_ROUNDS = 3;

export interface IssueEntry {
  readonly userId: string;
  readonly coupon?: CouponView;
  /** Why the entry was refused (a domain or dependency error); absent when issued. */
  readonly refusal?: Error;
}

/**
 * A coupon after it is issued: a shop checks and redeems it, an order cancel gives it back, a user
 * lists their wallet; and an admin issues to many users at once.
 *
 * Validity is judged on the gate's clock, the one that stamped the coupon's issued_at (with a
 * campaign, its own shard's): valid_until is issued_at plus the campaign's validity on that very
 * clock, so "valid for 24 h" means 24 h to the millisecond, whatever the skew between the
 * database server, this process and Redis. The database clock would mix two clocks in one
 * comparison; a process clock differs per instance.
 */
export class CouponLifecycle {
  private readonly ledger: CouponLedger;
  private readonly campaigns: CampaignRepository;
  private readonly gate: Pick<SlotGate, 'now'>;
  private readonly issuer: CouponIssuer;
  private readonly pageTokens: PageTokens;

  constructor(deps: {
    ledger: CouponLedger;
    campaigns: CampaignRepository;
    gate: Pick<SlotGate, 'now'>;
    issuer: CouponIssuer;
    pageTokens: PageTokens;
  }) {
    this.ledger = deps.ledger;
    this.campaigns = deps.campaigns;
    this.gate = deps.gate;
    this.issuer = deps.issuer;
    this.pageTokens = deps.pageTokens;
  }

  async getCoupon(code: string): Promise<CouponView> {
    const coupon = await this.find(couponCodeOrThrow(code));
    return couponViewOf(coupon, await this.clockFor([coupon]));
  }

  /** Newest first, across campaigns or of one; keyset pages, stable while coupons are issued. */
  async listUserCoupons(
    userId: string,
    request: PageRequest & { readonly campaignId: string },
  ): Promise<Page<CouponView>> {
    validateUserId(userId);
    const campaignId = request.campaignId === '' ? undefined : validateCampaignId(request.campaignId);
    const limit = pageSizeOf(request.pageSize);
    const query = `ListUserCoupons user=${JSON.stringify(userId)} campaign=${campaignId ?? ''}`;
    let beforeId: number | undefined;
    if (request.pageToken !== '') {
      const position = this.pageTokens.read(query, request.pageToken);
      if (!/^\d{1,19}$/.test(position))
        throw new InvalidArgumentError('page_token', 'page_token is not valid');
      beforeId = Number(position);
    }
    // An id no campaign can have holds no coupon: nothing to read.
    if (campaignId !== undefined && !couldBeCampaignId(campaignId)) return { items: [], nextPageToken: '' };
    const found = await this.ledger.listByUser({
      userId,
      limit: limit + 1,
      ...(campaignId !== undefined ? { campaignId } : {}),
      ...(beforeId !== undefined ? { beforeId } : {}),
    });
    const page = found.slice(0, limit);
    const now = await this.clockFor(page);
    const last = page.at(-1);
    return {
      items: page.map((coupon) => couponViewOf(coupon, now)),
      nextPageToken: found.length > limit && last ? this.pageTokens.issue(query, String(last.id)) : '',
    };
  }

  /**
   * Marks the coupon used by the order, once. The same order again gets the same answer; another
   * order is refused, and so is an expired coupon. The decision is the conditional UPDATE alone;
   * the reads around it only find the campaign's clock and explain a refusal.
   */
  async redeemCoupon(code: string, orderId: string): Promise<CouponView> {
    couponCodeOrThrow(code);
    validateOrderId(orderId);
    for (let round = 1; ; round++) {
      const coupon = await this.find(code);
      if (coupon.orderId === orderId) return couponViewOf(coupon, await this.clockFor([coupon]));
      const now = await this.gate.now(coupon.campaignId);
      if (coupon.orderId === undefined && (await this.ledger.redeem(code, orderId, now))) {
        return couponViewOf({ ...coupon, orderId, redeemedAt: now }, now);
      }
      const current = await this.find(code);
      if (current.orderId === orderId) return couponViewOf(current, now);
      if (current.orderId !== undefined) {
        throw new CouponUnusableError(
          code,
          'redeemed-by-another-order',
          'is already used by another order; cancel that redemption first',
        );
      }
      if (current.validUntil && current.validUntil.getTime() <= now.getTime()) {
        throw new CouponUnusableError(code, 'expired', `expired at ${current.validUntil.toISOString()}`);
      }
      // Freed by a cancel between the write and this read: try again.
      if (round >= MAX_REDEEM_ROUNDS) {
        throw new CouponUnusableError(
          code,
          'redeemed-by-another-order',
          'is being redeemed and cancelled by other calls at this moment; retry',
        );
      }
    }
  }

  /**
   * The order was cancelled: the coupon is usable again. Only the order that redeemed it can free
   * it; a cancel repeated (the coupon already free) gets the same answer.
   */
  async cancelRedemption(code: string, orderId: string): Promise<CouponView> {
    couponCodeOrThrow(code);
    validateOrderId(orderId);
    const cancelled = await this.ledger.cancelRedemption(code, orderId);
    const coupon = await this.find(code);
    if (!cancelled && coupon.orderId !== undefined) {
      throw new CouponUnusableError(
        code,
        'not-redeemed-by-this-order',
        'is used by another order: only the order that redeemed it can cancel the redemption',
      );
    }
    return couponViewOf(coupon, await this.clockFor([coupon]));
  }

  /**
   * One coupon for each of up to 1,000 users, judged in order through the gate exactly like
   * IssueCoupon; recorded as one 'coupons_issued' event of the campaign.
   */
  async issueCoupons(campaignId: string, userIds: readonly string[], actor: string): Promise<IssueEntry[]> {
    campaignIdOrThrow(campaignId);
    if (userIds.length === 0 || userIds.length > ISSUE_MANY_MAX_USERS) {
      throw new InvalidArgumentError(
        'user_ids',
        `user_ids must list 1 to ${ISSUE_MANY_MAX_USERS} users, got ${userIds.length}; split larger lists into several calls`,
      );
    }
    const campaign = await this.campaigns.findById(campaignId);
    if (!campaign) throw new CampaignNotFoundError('id', campaignId);
    const outcomes = await this.issuer.issueMany(campaignId, userIds);
    const entries = outcomes.map((outcome, i): IssueEntry => {
      const userId = userIds[i] as string;
      if (outcome instanceof Error) return { userId, refusal: outcome };
      const validUntil =
        campaign.couponValidForMs !== undefined
          ? new Date(outcome.issuedAt.getTime() + campaign.couponValidForMs)
          : undefined;
      return {
        userId,
        coupon: { id: 0, ...outcome, ...(validUntil ? { validUntil } : {}), state: 'issued' },
      };
    });
    const issued = entries.filter((entry) => entry.coupon).length;
    if (issued > 0) {
      // The coupons are recorded already: an event that cannot be written must not turn a bulk
      // issue that happened into a failed call (a retry would only be refused entry by entry).
      const at = await this.gate.now(campaignId).catch(() => undefined);
      if (at) {
        await this.campaigns
          .recordEvent(campaignId, {
            kind: 'coupons_issued',
            detail: `issued ${issued} of ${userIds.length} users in one call (${userIds.length - issued} refused)`,
            actor,
            at,
          })
          .catch(() => undefined);
      }
    }
    return entries;
  }

  private async find(code: string): Promise<Coupon> {
    const coupon = await this.ledger.findByCode(code);
    if (!coupon) throw new CouponNotFoundError(code);
    return coupon;
  }

  /**
   * The instant the coupons' states are judged at: their campaign's clock (any shard's for
   * several campaigns, all kept by NTP within milliseconds). Coupons that never expire need no
   * clock, so they read without Redis.
   */
  private async clockFor(coupons: readonly Coupon[]): Promise<Date> {
    const expiring = coupons.filter(
      (coupon) => coupon.validUntil !== undefined && coupon.orderId === undefined,
    );
    if (expiring.length === 0) return new Date(0);
    const campaigns = new Set(expiring.map((coupon) => coupon.campaignId));
    return campaigns.size === 1 ? this.gate.now(expiring[0]?.campaignId) : this.gate.now();
  }
}
