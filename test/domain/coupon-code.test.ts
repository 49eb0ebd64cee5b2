import { describe, expect, it } from 'vitest';
import {
  COUPON_CODE_ENTROPY_BITS,
  COUPON_CODE_LENGTH,
  generateCouponCode,
  isValidCouponCode,
} from '../../src/domain/coupon-code.ts';

describe('coupon codes', () => {
  it('are ten characters of Hangul syllables and digits, with at least one of each', () => {
    for (let i = 0; i < 10_000; i++) {
      const code = generateCouponCode();
      expect([...code]).toHaveLength(COUPON_CODE_LENGTH);
      expect(code).toMatch(/^[가-힣0-9]+$/u);
      expect(code).toMatch(/[0-9]/);
      expect(code).toMatch(/[가-힣]/u);
      expect(isValidCouponCode(code)).toBe(true);
    }
  });

  it('carry at least 80 bits of entropy', () => {
    expect(COUPON_CODE_ENTROPY_BITS).toBeGreaterThanOrEqual(80);
  });

  it('use the whole alphabet: every digit and both ends of the Hangul range appear', () => {
    const digits = new Set<string>();
    const positions = new Set<number>();
    let low = 0xffff;
    let high = 0;
    for (let i = 0; i < 20_000; i++) {
      const code = generateCouponCode();
      const position = code.search(/[0-9]/);
      positions.add(position);
      digits.add(code[position] as string);
      for (const char of code.replace(/[0-9]/g, '')) {
        const point = char.codePointAt(0) as number;
        low = Math.min(low, point);
        high = Math.max(high, point);
      }
    }
    expect(digits.size).toBe(10);
    expect(positions.size).toBe(COUPON_CODE_LENGTH);
    // 180,000 draws from 11,172 syllables: the extremes are within a few dozen of the range ends.
    expect(low).toBeLessThan(0xac00 + 100);
    expect(high).toBeGreaterThan(0xd7a3 - 100);
  });

  it('do not repeat in 1,000,000 draws', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1_000_000; i++) seen.add(generateCouponCode());
    expect(seen.size).toBe(1_000_000);
  });

  it('are recognised as invalid when they break the format', () => {
    expect(isValidCouponCode('가나다라마바사아자차')).toBe(false);
    expect(isValidCouponCode('1234567890')).toBe(false);
    expect(isValidCouponCode('가나다라마바사아자차1')).toBe(false);
    expect(isValidCouponCode('ABC가1')).toBe(false);
    expect(isValidCouponCode('가1')).toBe(true);
  });
});
