/**
 * Business failures a caller can act on. The API layer maps each kind to one Connect code;
 * nothing here knows about Connect.
 */
export abstract class DomainError extends Error {
  abstract readonly kind: DomainErrorKind;

  /**
   * A refusal is an answer, not a bug: it carries no stack trace. Capturing one cost more than the
   * rest of a sold-out answer, and a storm of late requests is made of nothing else.
   */
  constructor(message: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(message);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}

/** Input echoed in a message is cut to this many characters: an error must not grow with the request. */
const QUOTED_MAX = 40;

/** A value as an error message shows it: JSON-quoted (control characters visible), at most a short prefix. */
export function quoted(value: string): string {
  const chars = [...value.slice(0, 2 * QUOTED_MAX)];
  return chars.length > QUOTED_MAX || value.length > 2 * QUOTED_MAX
    ? `${JSON.stringify(chars.slice(0, QUOTED_MAX).join(''))}…`
    : JSON.stringify(value);
}

export type DomainErrorKind =
  | 'invalid-argument'
  | 'campaign-not-found'
  | 'campaign-name-taken'
  | 'already-issued'
  | 'campaign-not-open'
  | 'sold-out'
  | 'rate-limited'
  | 'too-many-reads'
  | 'unauthenticated'
  | 'permission-denied'
  | 'claim-pending'
  | 'amount-below-claimed'
  | 'coupon-not-found'
  | 'coupon-unusable';

export class InvalidArgumentError extends DomainError {
  readonly kind = 'invalid-argument';
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

export class CampaignNotFoundError extends DomainError {
  readonly kind = 'campaign-not-found';
  constructor(by: 'id' | 'name', value: string) {
    super(`campaign with ${by} ${quoted(value)} does not exist`);
  }
}

export class CampaignNameTakenError extends DomainError {
  readonly kind = 'campaign-name-taken';
  constructor(name: string) {
    super(`a campaign named ${quoted(name)} already exists; pick another name`);
  }
}

export class AlreadyIssuedError extends DomainError {
  readonly kind = 'already-issued';
  constructor(campaignId: string, userId: string) {
    super(`user ${quoted(userId)} already holds a coupon of campaign ${campaignId}`);
  }
}

export class CampaignNotOpenError extends DomainError {
  readonly kind = 'campaign-not-open';
  readonly reason: 'not-started' | 'ended';
  constructor(campaignId: string, reason: 'not-started' | 'ended', boundary: Date) {
    super(
      reason === 'not-started'
        ? `campaign ${campaignId} opens at ${boundary.toISOString()}; try again then`
        : `campaign ${campaignId} closed at ${boundary.toISOString()}`,
    );
    this.reason = reason;
  }
}

export class SoldOutError extends DomainError {
  readonly kind = 'sold-out';
  constructor(campaignId: string) {
    super(`campaign ${campaignId} is sold out: every coupon has been issued`);
  }
}

/** Too many calls in the current second; says who was limited and when a call will pass again. */
export class RateLimitedError extends DomainError {
  readonly kind = 'rate-limited';
  readonly scope: 'user' | 'ip';
  readonly limitPerSecond: number;
  readonly retryAfterMs: number;
  constructor(scope: 'user' | 'ip', limitPerSecond: number, retryAfterMs: number) {
    const per = scope === 'user' ? 'this user on this campaign' : 'this address';
    // Whole milliseconds, never 0: "retry in 0 ms" would invite an immediate, refused retry.
    const retryMs = Math.max(1, Math.ceil(retryAfterMs));
    super(
      `rate limited: more than ${limitPerSecond} IssueCoupon calls per second for ${per}; retry in ${retryMs} ms`,
    );
    this.scope = scope;
    this.limitPerSecond = limitPerSecond;
    this.retryAfterMs = retryMs;
  }
}

/** Too many large reads in progress in this process: the issue path keeps its database connections. */
export class TooManyReadsError extends DomainError {
  readonly kind = 'too-many-reads';
  constructor(what: string, limit: number) {
    super(`too many ${what} in progress (at most ${limit} at once per instance); retry in a moment`);
  }
}

/** The call needs to say who the user is, and did not (or not believably). */
export class UnauthenticatedError extends DomainError {
  readonly kind = 'unauthenticated';
}

/** The caller is known, and may not do this: e.g. claim a coupon for another user. */
export class PermissionDeniedError extends DomainError {
  readonly kind = 'permission-denied';
}

/**
 * The user's earlier claim on this campaign is not settled yet: its coupon is still being written,
 * or its process died and the claim is settled later (into this user's coupon, or back to the
 * campaign). Not "already issued": the user may hold nothing yet. Retry after `retryAfterMs`.
 */
export class ClaimPendingError extends DomainError {
  readonly kind = 'claim-pending';
  readonly retryAfterMs: number;
  constructor(campaignId: string, userId: string, retryAfterMs: number) {
    const retryMs = Math.max(1, Math.ceil(retryAfterMs));
    super(
      `user ${quoted(userId)}'s earlier request for campaign ${campaignId} is still being settled: it ends as this user's coupon or goes back to the campaign; retry in ${retryMs} ms`,
    );
    this.retryAfterMs = retryMs;
  }
}

/** A new amount below what the gate has already handed out (coupons issued and claims under way). */
export class AmountBelowClaimedError extends DomainError {
  readonly kind = 'amount-below-claimed';
  constructor(campaignId: string, amount: number, claimed: number) {
    super(
      `campaign ${campaignId} cannot have ${amount} coupons: ${claimed} are already issued or being issued; ask for at least ${claimed}`,
    );
  }
}

export class CouponNotFoundError extends DomainError {
  readonly kind = 'coupon-not-found';
  constructor(code: string) {
    super(`no coupon has the code ${quoted(code)}`);
  }
}

/** The coupon exists but cannot do what was asked: used by another order, or expired. */
export class CouponUnusableError extends DomainError {
  readonly kind = 'coupon-unusable';
  readonly reason: 'redeemed-by-another-order' | 'expired' | 'not-redeemed-by-this-order';
  constructor(code: string, reason: CouponUnusableError['reason'], detail: string) {
    super(`coupon ${quoted(code)} ${detail}`);
    this.reason = reason;
  }
}

/** A user listed again in one IssueCoupons call: only the first entry is judged. */
export class ListedTwiceError extends DomainError {
  readonly kind = 'already-issued';
  constructor(userId: string, firstIndex: number) {
    super(
      `user ${quoted(userId)} is already listed at user_ids[${firstIndex}] of this call; only that entry is judged`,
    );
  }
}
