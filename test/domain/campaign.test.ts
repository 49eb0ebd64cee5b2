import { describe, expect, it, vi } from 'vitest';
import {
  CAMPAIGN_AMOUNT_MAX,
  couldBeCampaignId,
  validateCampaignId,
  validateNewCampaign,
  validateUserId,
} from '../../src/domain/campaign.ts';
import { InvalidArgumentError, RateLimitedError } from '../../src/domain/errors.ts';

const now = new Date('2026-11-25T00:00:00.000Z');
const valid = {
  name: 'black friday',
  amount: 100n,
  issuedAt: new Date('2026-11-25T01:00:00.000Z'),
  expiresAt: new Date('2026-11-26T00:00:00.000Z'),
};

function rejection(run: () => unknown): InvalidArgumentError {
  try {
    run();
  } catch (error) {
    if (error instanceof InvalidArgumentError) return error;
    throw error;
  }
  throw new Error('expected an InvalidArgumentError');
}

describe('a new campaign', () => {
  it('accepts a valid request and keeps its values', () => {
    expect(validateNewCampaign(valid, now)).toEqual({ ...valid, amount: 100 });
  });

  it('may open in the past (it is open at once)', () => {
    const campaign = validateNewCampaign({ ...valid, issuedAt: new Date('2020-01-01T00:00:00Z') }, now);
    expect(campaign.issuedAt.toISOString()).toBe('2020-01-01T00:00:00.000Z');
  });

  it.each([
    ['an empty name', { name: '' }, 'name'],
    ['a blank name', { name: '   ' }, 'name'],
    ['a name over 200 characters', { name: '가'.repeat(201) }, 'name'],
    ['a zero amount', { amount: 0n }, 'amount'],
    ['a negative amount', { amount: -5n }, 'amount'],
    ['an amount over the maximum', { amount: BigInt(CAMPAIGN_AMOUNT_MAX) + 1n }, 'amount'],
    ['a missing issued_at', { issuedAt: undefined }, 'issued_at'],
    ['a missing expires_at', { expiresAt: undefined }, 'expires_at'],
    ['expires_at equal to issued_at', { expiresAt: valid.issuedAt }, 'expires_at'],
    ['expires_at before issued_at', { expiresAt: new Date('2026-11-25T00:30:00Z') }, 'expires_at'],
    [
      'expires_at already past',
      { issuedAt: new Date('2026-11-24T00:00:00Z'), expiresAt: new Date('2026-11-24T23:59:59.999Z') },
      'expires_at',
    ],
    ['expires_at exactly now', { issuedAt: new Date('2026-11-24T00:00:00Z'), expiresAt: now }, 'expires_at'],
  ])('rejects %s', (_label, change, field) => {
    expect(rejection(() => validateNewCampaign({ ...valid, ...change }, now)).field).toBe(field);
  });

  it('accepts exactly 200 characters and the maximum amount', () => {
    const campaign = validateNewCampaign(
      { ...valid, name: '가'.repeat(200), amount: BigInt(CAMPAIGN_AMOUNT_MAX) },
      now,
    );
    expect(campaign.amount).toBe(CAMPAIGN_AMOUNT_MAX);
  });
});

describe('issue arguments', () => {
  it('rejects an empty campaign id or user id, and a user id over 128 characters', () => {
    expect(rejection(() => validateCampaignId('')).field).toBe('campaign_id');
    expect(rejection(() => validateUserId('')).field).toBe('user_id');
    expect(rejection(() => validateUserId('u'.repeat(129))).field).toBe('user_id');
    expect(validateUserId('u'.repeat(128))).toHaveLength(128);
  });
});

describe('ids and names that only look like others', () => {
  it.each([
    ['a trailing space', 'alice '],
    ['a leading space', ' alice'],
    ['a trailing no-break space', 'alice\u00a0'],
    ['a tab', 'alice\t'],
    ['a NUL inside', 'al\u0000ice'],
    ['a C1 control character', 'alice\u0085x'],
    ['a lone surrogate', 'al\ud800ice'],
  ])('refuses a user id with %s', (_label, userId) => {
    expect(rejection(() => validateUserId(userId)).field).toBe('user_id');
    expect(rejection(() => validateNewCampaign({ ...valid, name: userId }, now)).field).toBe('name');
  });

  it('accepts inner spaces, Hangul and astral characters', () => {
    for (const id of ['alice smith', '김철수', '🎟️ holder', '𠀀'.repeat(128)])
      expect(validateUserId(id)).toBe(id);
    expect(rejection(() => validateUserId('𠀀'.repeat(129))).field).toBe('user_id');
  });

  it('refuses a huge id by its length alone, without walking it', () => {
    const huge = 'u'.repeat(60 * 1024 * 1024);
    const iterate = vi.spyOn(String.prototype, Symbol.iterator);
    try {
      expect(rejection(() => validateUserId(huge)).field).toBe('user_id');
      expect(iterate).not.toHaveBeenCalled();
    } finally {
      iterate.mockRestore();
    }
  });
});

describe('campaign ids', () => {
  it('could be a campaign only when shaped like the lowercase UUIDs CreateCampaign hands out', () => {
    expect(couldBeCampaignId('0193a3c0-5b2e-7c41-9d3e-2f1a4b6c8d90')).toBe(true);
    for (const id of [
      'missing',
      '{0193a3c0-5b2e-7c41-9d3e-2f1a4b6c8d90}',
      '0193a3c0-5b2e-7c41-9d3e-2f1a4b6c8d9',
      // MySQL would find the campaign by this spelling, but Redis would open a second gate for it.
      '0193A3C0-5B2E-7C41-9D3E-2F1A4B6C8D90',
    ]) {
      expect(couldBeCampaignId(id)).toBe(false);
    }
  });
});

describe('rate limited refusals', () => {
  it('say a whole number of milliseconds to wait, never 0, in the message and the field alike', () => {
    const limited = new RateLimitedError('ip', 8, 0.2);
    expect(limited.retryAfterMs).toBe(1);
    expect(limited.message).toContain('retry in 1 ms');
    expect(new RateLimitedError('user', 20, 412.3).retryAfterMs).toBe(413);
  });
});
