import { COUPON_CODE_LENGTH, isValidCouponCode } from './coupon-code.ts';
import { InvalidArgumentError } from './errors.ts';

export const ORDER_ID_MAX_LENGTH = 128;

/** A coupon as stored: who holds it, until when it is valid, and which order used it. */
export interface Coupon {
  /** The coupon's place in issue order (increasing), for paging. */
  readonly id: number;
  readonly code: string;
  readonly campaignId: string;
  readonly userId: string;
  /** On the gate's clock. */
  readonly issuedAt: Date;
  /** issuedAt plus the campaign's coupon validity (exclusive); absent: never expires. */
  readonly validUntil?: Date;
  readonly redeemedAt?: Date;
  readonly orderId?: string;
}

export type CouponState = 'issued' | 'redeemed' | 'expired';

/**
 * Where a coupon stands at `now` on the gate's clock. A redeemed coupon stays redeemed after its
 * validity ends (the order used it in time); an unused one expires at `validUntil` exactly.
 */
export function couponState(coupon: Pick<Coupon, 'validUntil' | 'orderId'>, now: Date): CouponState {
  if (coupon.orderId !== undefined) return 'redeemed';
  if (coupon.validUntil && now.getTime() >= coupon.validUntil.getTime()) return 'expired';
  return 'issued';
}

export interface CouponView extends Coupon {
  readonly state: CouponState;
}

export function couponViewOf(coupon: Coupon, now: Date): CouponView {
  return { ...coupon, state: couponState(coupon, now) };
}

/** A code as typed at a checkout: anything that cannot be one is refused before a store is asked. */
export function couponCodeOrThrow(code: string): string {
  if (code.length === 0) throw new InvalidArgumentError('code', 'code must not be empty');
  if (code.length !== COUPON_CODE_LENGTH || !isValidCouponCode(code)) {
    throw new InvalidArgumentError(
      'code',
      `code is not a coupon code: ${COUPON_CODE_LENGTH} characters, Hangul syllables and a digit`,
    );
  }
  return code;
}

/** Order ids are compared byte for byte, as user ids are; the same look-alikes are refused. */
export function validateOrderId(orderId: string): string {
  if (orderId.length === 0) throw new InvalidArgumentError('order_id', 'order_id must not be empty');
  if ([...orderId.slice(0, 2 * ORDER_ID_MAX_LENGTH + 1)].length > ORDER_ID_MAX_LENGTH) {
    throw new InvalidArgumentError('order_id', `order_id must be at most ${ORDER_ID_MAX_LENGTH} characters`);
  }
  if (!orderId.isWellFormed() || /\p{Cc}/u.test(orderId) || /^\s|\s$/u.test(orderId)) {
    throw new InvalidArgumentError(
      'order_id',
      'order_id must be valid Unicode without control characters or white space at either end',
    );
  }
  return orderId;
}
