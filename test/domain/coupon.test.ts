import { describe, expect, it } from 'vitest';
import { couponCodeOrThrow, couponState, validateOrderId } from '../../src/domain/coupon.ts';
import { generateCouponCode } from '../../src/domain/coupon-code.ts';

describe('couponState', () => {
  const validUntil = new Date(1_000_000);
  it('is issued until the millisecond before valid_until, expired from it', () => {
    expect(couponState({ validUntil }, new Date(999_999))).toBe('issued');
    expect(couponState({ validUntil }, new Date(1_000_000))).toBe('expired');
  });
  it('stays redeemed after valid_until, and never expires without one', () => {
    expect(couponState({ validUntil, orderId: 'o' }, new Date(2_000_000))).toBe('redeemed');
    expect(couponState({}, new Date(8.64e15))).toBe('issued');
  });
});

describe('couponCodeOrThrow and validateOrderId', () => {
  it('take what the service hands out and refuse the rest', () => {
    const code = generateCouponCode();
    expect(couponCodeOrThrow(code)).toBe(code);
    for (const bad of ['', 'abcdefghij', '가나다라마바사아자차', `${code}1`]) {
      expect(() => couponCodeOrThrow(bad)).toThrow(/code/);
    }
    expect(validateOrderId('order-1')).toBe('order-1');
    for (const bad of ['', ' order', 'order\n', 'x'.repeat(129), '\ud800']) {
      expect(() => validateOrderId(bad)).toThrow(/order_id/);
    }
    expect(validateOrderId('😀'.repeat(128))).toBe('😀'.repeat(128));
  });
});
