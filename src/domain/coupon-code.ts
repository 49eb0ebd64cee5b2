import { getRandomValues } from 'node:crypto';

/** Every precomposed Hangul syllable, 가 (U+AC00) to 힣 (U+D7A3). */
const HANGUL_FIRST = 0xac00;
const HANGUL_COUNT = 11_172;
const DIGITS = '0123456789';

export const COUPON_CODE_LENGTH = 10;

/**
 * A code is nine Hangul syllables and one digit at a random position, each drawn uniformly from a
 * CSPRNG: 11172^9 * 10 * 10 ≈ 2^127.7 codes, so a code cannot be guessed and a collision is
 * astronomically rare (the database still rejects one, and the issuer retries with a new code).
 */
export const COUPON_CODE_ENTROPY_BITS =
  (COUPON_CODE_LENGTH - 1) * Math.log2(HANGUL_COUNT) +
  Math.log2(DIGITS.length) +
  Math.log2(COUPON_CODE_LENGTH);

const COUPON_CODE_PATTERN = /^[가-힣0-9]{1,10}$/u;

export function isValidCouponCode(code: string): boolean {
  return COUPON_CODE_PATTERN.test(code) && /[0-9]/.test(code) && /[가-힣]/u.test(code);
}

// Rejection sampling keeps every value uniform: 16-bit draws at or above the largest multiple of
// the range are thrown away instead of being folded back in with `%`.
const UINT16_RANGE = 0x1_0000;
const HANGUL_LIMIT = UINT16_RANGE - (UINT16_RANGE % HANGUL_COUNT);
const DIGIT_LIMIT = UINT16_RANGE - (UINT16_RANGE % DIGITS.length);
const POSITION_LIMIT = UINT16_RANGE - (UINT16_RANGE % COUPON_CODE_LENGTH);

class RandomSource {
  private readonly buffer = new Uint16Array(256);
  private next = this.buffer.length;

  uniform(range: number, limit: number): number {
    for (;;) {
      if (this.next === this.buffer.length) {
        getRandomValues(this.buffer);
        this.next = 0;
      }
      const value = this.buffer[this.next++] as number;
      if (value < limit) return value % range;
    }
  }
}

const random = new RandomSource();

export function generateCouponCode(): string {
  const digitPosition = random.uniform(COUPON_CODE_LENGTH, POSITION_LIMIT);
  let code = '';
  for (let i = 0; i < COUPON_CODE_LENGTH; i++) {
    code +=
      i === digitPosition
        ? DIGITS[random.uniform(DIGITS.length, DIGIT_LIMIT)]
        : String.fromCharCode(HANGUL_FIRST + random.uniform(HANGUL_COUNT, HANGUL_LIMIT));
  }
  return code;
}
