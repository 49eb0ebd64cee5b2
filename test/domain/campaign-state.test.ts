import { describe, expect, it } from 'vitest';
import { campaignState, pageSizeOf, validateAmount } from '../../src/domain/campaign.ts';
import { InvalidArgumentError } from '../../src/domain/errors.ts';

const window = { issuedAt: new Date(1_000), expiresAt: new Date(2_000) };

describe('campaignState', () => {
  it('is scheduled before issued_at, open within the window, ended from expires_at on', () => {
    const campaign = { ...window, amount: 10, issuedCount: 3 };
    expect(campaignState(campaign, new Date(999))).toBe('scheduled');
    expect(campaignState(campaign, new Date(1_000))).toBe('open');
    expect(campaignState(campaign, new Date(1_999))).toBe('open');
    expect(campaignState(campaign, new Date(2_000))).toBe('ended');
  });

  it('is sold out within the window once every coupon is issued, and ended after it', () => {
    const campaign = { ...window, amount: 10, issuedCount: 10 };
    expect(campaignState(campaign, new Date(1_500))).toBe('sold-out');
    expect(campaignState(campaign, new Date(2_000))).toBe('ended');
  });

  it('calls a campaign closed before it opened (an empty window) ended', () => {
    const closed = { issuedAt: new Date(1_500), expiresAt: new Date(1_500), amount: 10, issuedCount: 0 };
    expect(campaignState(closed, new Date(1_500))).toBe('ended');
  });
});

describe('pageSizeOf and validateAmount', () => {
  it('takes 0 as 50 and refuses what is out of range', () => {
    expect(pageSizeOf(0)).toBe(50);
    expect(pageSizeOf(500)).toBe(500);
    expect(() => pageSizeOf(501)).toThrow(InvalidArgumentError);
    expect(() => pageSizeOf(-1)).toThrow(InvalidArgumentError);
    expect(validateAmount(10_000_000n)).toBe(10_000_000);
    expect(() => validateAmount(0n)).toThrow(InvalidArgumentError);
    expect(() => validateAmount(10_000_001n)).toThrow(InvalidArgumentError);
  });
});
