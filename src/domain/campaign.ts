import { CampaignNotFoundError, InvalidArgumentError } from './errors.ts';

export const CAMPAIGN_NAME_MAX_LENGTH = 200;
export const CAMPAIGN_AMOUNT_MAX = 10_000_000;
export const USER_ID_MAX_LENGTH = 128;

export interface Campaign {
  readonly id: string;
  readonly name: string;
  readonly amount: number;
  readonly issuedCount: number;
  /** Issuing opens at this instant (inclusive). */
  readonly issuedAt: Date;
  /** Issuing closes at this instant (exclusive). */
  readonly expiresAt: Date;
  /** A coupon is valid until its issue time plus this; absent: coupons never expire. */
  readonly couponValidForMs?: number;
}

export interface NewCampaign {
  readonly name: string;
  readonly amount: number;
  readonly issuedAt: Date;
  readonly expiresAt: Date;
  readonly couponValidForMs?: number;
}

export interface NewCampaignInput {
  readonly name: string;
  readonly amount: bigint;
  readonly issuedAt: Date | undefined;
  readonly expiresAt: Date | undefined;
  /** Whole milliseconds; absent: no expiry. */
  readonly couponValidForMs?: number;
}

/** 100 years: far longer than any coupon lives, and issue time plus it stays a storable instant. */
export const COUPON_VALID_FOR_MAX_MS = 36_500 * 24 * 3_600_000;

export function validateCouponValidFor(ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < 1 || ms > COUPON_VALID_FOR_MAX_MS) {
    throw new InvalidArgumentError(
      'coupon_valid_for',
      'coupon_valid_for must be whole milliseconds, from 1 ms to 36,500 days; leave it unset for coupons that never expire',
    );
  }
  return ms;
}

/**
 * Checks a campaign request against the rules. `now` comes from the shared clock so that every
 * instance agrees on whether `expiresAt` has already passed. Dates are cut to whole milliseconds,
 * the precision both stores keep.
 */
export function validateNewCampaign(input: NewCampaignInput, now: Date): NewCampaign {
  const name = input.name;
  if (name.trim().length === 0) {
    throw new InvalidArgumentError('name', 'name must not be empty');
  }
  validateCampaignNameLength(name);
  refuseAmbiguousText('name', name);
  if (input.amount <= 0n || input.amount > BigInt(CAMPAIGN_AMOUNT_MAX)) {
    throw new InvalidArgumentError(
      'amount',
      `amount must be between 1 and ${CAMPAIGN_AMOUNT_MAX}, got ${input.amount}`,
    );
  }
  if (!input.issuedAt) {
    throw new InvalidArgumentError('issued_at', 'issued_at is required');
  }
  if (!input.expiresAt) {
    throw new InvalidArgumentError('expires_at', 'expires_at is required');
  }
  const issuedAt = storableInstant('issued_at', input.issuedAt);
  const expiresAt = storableInstant('expires_at', input.expiresAt);
  if (expiresAt.getTime() <= issuedAt.getTime()) {
    throw new InvalidArgumentError(
      'expires_at',
      `expires_at (${expiresAt.toISOString()}) must be after issued_at (${issuedAt.toISOString()})`,
    );
  }
  if (expiresAt.getTime() <= now.getTime()) {
    throw new InvalidArgumentError(
      'expires_at',
      `expires_at (${expiresAt.toISOString()}) has already passed (now ${now.toISOString()})`,
    );
  }
  return {
    name,
    amount: Number(input.amount),
    issuedAt,
    expiresAt,
    ...(input.couponValidForMs !== undefined
      ? { couponValidForMs: validateCouponValidFor(input.couponValidForMs) }
      : {}),
  };
}

/** The instants a DATETIME column holds: years 1 to 9999 (proto Timestamps span the same range). */
export const EARLIEST_INSTANT = new Date('0001-01-01T00:00:00.000Z');
export const LATEST_INSTANT = new Date('9999-12-31T23:59:59.999Z');

function storableInstant(field: string, instant: Date): Date {
  const ms = instant.getTime();
  if (Number.isNaN(ms) || ms < EARLIEST_INSTANT.getTime() || ms > LATEST_INSTANT.getTime()) {
    throw new InvalidArgumentError(
      field,
      `${field} must be between ${EARLIEST_INSTANT.toISOString()} and ${LATEST_INSTANT.toISOString()}`,
    );
  }
  return new Date(ms);
}

/** Ids we hand out are 36-character UUIDs; anything far longer cannot name a campaign. */
export const CAMPAIGN_ID_MAX_LENGTH = 64;

export function validateCampaignId(campaignId: string): string {
  if (campaignId.length === 0) {
    throw new InvalidArgumentError('campaign_id', 'campaign_id must not be empty');
  }
  if (campaignId.length > CAMPAIGN_ID_MAX_LENGTH) {
    throw new InvalidArgumentError(
      'campaign_id',
      `campaign_id must be at most ${CAMPAIGN_ID_MAX_LENGTH} characters`,
    );
  }
  return campaignId;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Whether an id could name a campaign at all: every id CreateCampaign hands out is a lowercase
 * UUID. One that is not names no campaign, and never reaches Redis (where a brace would break the
 * campaign's hash tag on Redis Cluster, and an uppercase spelling of a real id would open a second
 * gate for the same campaign, MySQL comparing ids without case) or the database.
 */
export function couldBeCampaignId(campaignId: string): boolean {
  return UUID.test(campaignId);
}

/**
 * An id a campaign could have, or the refusal: empty or overlong is INVALID_ARGUMENT; one that is
 * no lowercase UUID names no campaign (NOT_FOUND), as for IssueCoupon.
 */
export function campaignIdOrThrow(campaignId: string): string {
  validateCampaignId(campaignId);
  if (!couldBeCampaignId(campaignId)) throw new CampaignNotFoundError('id', campaignId);
  return campaignId;
}

/**
 * A user id is compared byte for byte by both stores, so one that only looks like another is a
 * different user. Ids that invite such look-alikes are refused rather than stored: white space at
 * either end ("alice" and "alice "), control characters, and lone surrogates (which every store
 * turns into U+FFFD, making two ids one).
 */
export function validateUserId(userId: string): string {
  if (userId.length === 0) {
    throw new InvalidArgumentError('user_id', 'user_id must not be empty');
  }
  if (!fitsInCodePoints(userId, USER_ID_MAX_LENGTH)) {
    throw new InvalidArgumentError('user_id', `user_id must be at most ${USER_ID_MAX_LENGTH} characters`);
  }
  refuseAmbiguousText('user_id', userId);
  return userId;
}

/** A name longer than any campaign may have names none: refused before any store is asked. */
export function validateCampaignNameLength(name: string): string {
  if (!fitsInCodePoints(name, CAMPAIGN_NAME_MAX_LENGTH)) {
    throw new InvalidArgumentError('name', `name must be at most ${CAMPAIGN_NAME_MAX_LENGTH} characters`);
  }
  return name;
}

/**
 * Whether `text` has at most `max` code points (the characters MySQL counts), deciding from the
 * UTF-16 length alone where it can: counting a megabyte string would cost more than the call.
 */
function fitsInCodePoints(text: string, max: number): boolean {
  if (text.length <= max) return true;
  // A code point takes one or two UTF-16 units.
  if (text.length > 2 * max) return false;
  let codePoints = 0;
  for (const _ of text) codePoints++;
  return codePoints <= max;
}

const WHITE_SPACE_AT_AN_END = /^\s|\s$/u;
const CONTROL_CHARACTER = /\p{Cc}/u;

function refuseAmbiguousText(field: string, text: string): void {
  if (!text.isWellFormed()) {
    throw new InvalidArgumentError(field, `${field} must be valid Unicode: it contains a lone surrogate`);
  }
  if (CONTROL_CHARACTER.test(text)) {
    throw new InvalidArgumentError(field, `${field} must not contain control characters`);
  }
  if (WHITE_SPACE_AT_AN_END.test(text)) {
    throw new InvalidArgumentError(field, `${field} must not start or end with white space`);
  }
}

/** Where a campaign stands at an instant of the gate's clock. */
export type CampaignState = 'scheduled' | 'open' | 'sold-out' | 'ended';

/**
 * The state at `now` (the gate's clock), from the window and the counts. A campaign closed before
 * it opened has an empty window (issued_at = expires_at = the close) and is ended.
 */
export function campaignState(
  campaign: Pick<Campaign, 'amount' | 'issuedCount' | 'issuedAt' | 'expiresAt'>,
  now: Date,
): CampaignState {
  if (now.getTime() >= campaign.expiresAt.getTime()) return 'ended';
  if (now.getTime() < campaign.issuedAt.getTime()) return 'scheduled';
  return campaign.issuedCount >= campaign.amount ? 'sold-out' : 'open';
}

/** A campaign as a client sees it: with its state at the instant it was read. */
export interface CampaignView extends Campaign {
  readonly state: CampaignState;
}

export function viewOf(campaign: Campaign, now: Date): CampaignView {
  return { ...campaign, state: campaignState(campaign, now) };
}

/** A new amount for a campaign: the same bounds as at creation (the floor is the gate's to judge). */
export function validateAmount(amount: bigint): number {
  if (amount <= 0n || amount > BigInt(CAMPAIGN_AMOUNT_MAX)) {
    throw new InvalidArgumentError(
      'amount',
      `amount must be between 1 and ${CAMPAIGN_AMOUNT_MAX}, got ${amount}`,
    );
  }
  return Number(amount);
}

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

/** A list call's page size: 0 means the default; negative or over the maximum is refused. */
export function pageSizeOf(requested: number): number {
  if (requested === 0) return DEFAULT_PAGE_SIZE;
  if (requested < 0 || requested > MAX_PAGE_SIZE) {
    throw new InvalidArgumentError(
      'page_size',
      `page_size must be between 0 and ${MAX_PAGE_SIZE}, got ${requested}`,
    );
  }
  return requested;
}
