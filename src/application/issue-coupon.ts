import { couldBeCampaignId, validateCampaignId, validateUserId } from '../domain/campaign.ts';
import { generateCouponCode } from '../domain/coupon-code.ts';
import {
  AlreadyIssuedError,
  CampaignNotFoundError,
  CampaignNotOpenError,
  ClaimPendingError,
  DomainError,
  InvalidArgumentError,
  ListedTwiceError,
  RateLimitedError,
  SoldOutError,
} from '../domain/errors.ts';
import type { CampaignDirectory } from './campaign-directory.ts';
import {
  type CampaignActivity,
  type CampaignRepository,
  type ClaimOutcome,
  type CouponRepository,
  type CouponToPersist,
  DependencyUnavailableError,
  type SlotGate,
} from './ports.ts';

export interface IssuedCoupon {
  readonly code: string;
  readonly campaignId: string;
  readonly userId: string;
  readonly issuedAt: Date;
  /** issuedAt plus the campaign's coupon validity; absent when coupons never expire (or it could not be read). */
  readonly validUntil?: Date;
}

/** Campaigns whose coupon validity an instance remembers; past it the memory starts again. */
const VALIDITIES_MAX = 10_000;

/** A fresh code collides with probability ~2^-100; more than a few in a row means something else is wrong. */
const MAX_CODE_ATTEMPTS = 5;

/**
 * Until the campaign directory is first read (the database was down at start), an id the database
 * did not know is answered NOT_FOUND from memory for this long. Safe because ids are made by
 * CreateCampaign, not chosen by clients: nobody can ask for an id before the campaign it names
 * exists. Bounded, so a flood of made-up ids cannot grow it without end.
 */
const UNKNOWN_CAMPAIGN_TTL_MS = 10_000;
const UNKNOWN_CAMPAIGNS_MAX = 10_000;

/**
 * Issues a coupon: claim a slot at the gate, record the coupon in the database, and give the slot
 * back if the database cannot take it, so a failure never costs the campaign a coupon.
 */
export class CouponIssuer {
  private readonly gate: SlotGate;
  private readonly campaigns: CampaignRepository;
  private readonly coupons: CouponRepository;
  private readonly directory: CampaignDirectory;
  private readonly activity: CampaignActivity;
  private readonly loading = new Map<string, Promise<void>>();
  /**
   * Each campaign's coupon validity (null: none), fixed at creation, so read once per instance;
   * only to put valid_until in the answer (the row gets it from the database itself).
   */
  private readonly validities = new Map<string, Promise<number | null>>();
  /** Ids the database said name no campaign, until when (local clock, ms). */
  private readonly unknownCampaigns = new Map<string, number>();

  private readonly settling: { readonly writeMs: number; readonly settleAfterMs: number };

  /**
   * `settling`: how long a coupon write may take (the dependency timeout, twice: the claim and
   * the write) and after how long the reconciler settles a claim left pending (its threshold
   * plus one interval); only used to tell a retry when to come back.
   */
  constructor(deps: {
    gate: SlotGate;
    campaigns: CampaignRepository;
    coupons: CouponRepository;
    directory: CampaignDirectory;
    activity: CampaignActivity;
    settling?: { writeMs: number; settleAfterMs: number };
  }) {
    this.settling = deps.settling ?? { writeMs: 6_000, settleAfterMs: 35_000 };
    this.gate = deps.gate;
    this.campaigns = deps.campaigns;
    this.coupons = deps.coupons;
    this.directory = deps.directory;
    this.activity = deps.activity;
  }

  async issueCoupon(campaignId: string, userId: string): Promise<IssuedCoupon> {
    const refusal = this.refusalFromMemory(campaignId, userId);
    if (refusal) throw refusal;
    if (!this.coupons.isAvailable()) {
      // The slot would only be given back: refuse before touching the gate.
      throw new DependencyUnavailableError(
        'database',
        'the database is unavailable (circuit open after repeated failures); retry shortly',
      );
    }
    // Made a moment ago, perhaps on another instance whose announcement is still on its way.
    if (this.directory.lookup(campaignId) === 'recent' && !(await this.directory.confirm(campaignId))) {
      throw new CampaignNotFoundError('id', campaignId);
    }

    // Marked before the claim is sent, so the reconciler finds the claim even if we die after it.
    await this.activity.markActive(campaignId);
    let claim = await this.gate.claimSlot(campaignId, userId);
    if (claim.status === 'not-loaded') {
      await this.loadCampaign(campaignId);
      claim = await this.gate.claimSlot(campaignId, userId);
    }
    const claimedAt = this.claimedAtOrThrow(campaignId, userId, claim);
    const validity = this.validityOf(campaignId);
    return this.withValidity(await this.persistCoupon({ campaignId, userId, issuedAt: claimedAt }), validity);
  }

  private validityOf(campaignId: string): Promise<number | null> {
    let validity = this.validities.get(campaignId);
    if (!validity) {
      if (this.validities.size >= VALIDITIES_MAX) this.validities.clear();
      validity = this.campaigns.findById(campaignId).then((campaign) => campaign?.couponValidForMs ?? null);
      this.validities.set(campaignId, validity);
      // A failed read is tried again by a later call, not remembered.
      validity.catch(() => this.validities.delete(campaignId));
    }
    return validity;
  }

  /** The coupon with its valid_until, when the campaign's validity can be told; the coupon is issued either way. */
  private async withValidity(coupon: IssuedCoupon, validity: Promise<number | null>): Promise<IssuedCoupon> {
    const ms = await validity.catch(() => null);
    return ms === null ? coupon : { ...coupon, validUntil: new Date(coupon.issuedAt.getTime() + ms) };
  }

  /**
   * Issues one coupon to each user, exactly as `issueCoupon` would one after another in this
   * order: the claims go to the gate in one turn of the event loop, so the claim script judges
   * them in order (256 a call), and the coupons go to the group commit together. Each entry gets
   * its coupon or its refusal; a user listed twice is refused at the later entry.
   */
  async issueMany(campaignId: string, userIds: readonly string[]): Promise<(IssuedCoupon | Error)[]> {
    validateCampaignId(campaignId);
    if (!couldBeCampaignId(campaignId)) throw new CampaignNotFoundError('id', campaignId);
    if (!this.coupons.isAvailable()) {
      throw new DependencyUnavailableError(
        'database',
        'the database is unavailable (circuit open after repeated failures); retry shortly',
      );
    }
    if (this.directory.lookup(campaignId) === 'recent' && !(await this.directory.confirm(campaignId))) {
      throw new CampaignNotFoundError('id', campaignId);
    }
    const results: (IssuedCoupon | Error | undefined)[] = new Array(userIds.length);
    const firstEntry = new Map<string, number>();
    const toClaim: number[] = [];
    for (const [i, userId] of userIds.entries()) {
      const first = firstEntry.get(userId);
      if (first !== undefined) {
        results[i] = new ListedTwiceError(userId, first);
        continue;
      }
      firstEntry.set(userId, i);
      const refusal = this.refusalFromMemory(campaignId, userId);
      if (refusal) results[i] = refusal;
      else toClaim.push(i);
    }
    await this.activity.markActive(campaignId);
    const claimAll = (entries: number[]) =>
      Promise.all(
        entries.map((i) =>
          this.gate.claimSlot(campaignId, userIds[i] as string).catch((error: unknown) => error as Error),
        ),
      );
    const claims = await claimAll(toClaim);
    const notLoaded = toClaim.filter((_, k) => {
      const claim = claims[k];
      return !(claim instanceof Error) && claim?.status === 'not-loaded';
    });
    if (notLoaded.length > 0) {
      await this.loadCampaign(campaignId);
      const again = await claimAll(notLoaded);
      for (const [k, i] of notLoaded.entries()) claims[toClaim.indexOf(i)] = again[k] as ClaimOutcome | Error;
    }
    await Promise.all(
      toClaim.map(async (i, k) => {
        const userId = userIds[i] as string;
        try {
          const claim = claims[k] as ClaimOutcome | Error;
          if (claim instanceof Error) throw claim;
          const claimedAt = this.claimedAtOrThrow(campaignId, userId, claim);
          results[i] = await this.persistCoupon({ campaignId, userId, issuedAt: claimedAt });
        } catch (error) {
          results[i] = error instanceof Error ? error : new Error(String(error));
        }
      }),
    );
    return results as (IssuedCoupon | Error)[];
  }

  /**
   * The refusal `issueCoupon` would end in, when this process already knows it without a store
   * (bad input, an id no campaign has, a campaign known to be sold out), so a storm of late or
   * made-up calls can be answered before any I/O; undefined when only the stores can tell.
   */
  refusalFromMemory(campaignId: string, userId: string): DomainError | undefined {
    try {
      validateCampaignId(campaignId);
      validateUserId(userId);
    } catch (error) {
      if (error instanceof DomainError) return error;
      throw error;
    }
    if (
      !couldBeCampaignId(campaignId) ||
      this.directory.lookup(campaignId) === 'unknown' ||
      this.isKnownUnknown(campaignId)
    ) {
      return new CampaignNotFoundError('id', campaignId);
    }
    const known = this.gate.knownOutcome(campaignId, userId);
    if (known?.status === 'not-started')
      return new CampaignNotOpenError(campaignId, 'not-started', known.opensAt);
    if (known?.status === 'sold-out') return new SoldOutError(campaignId);
    if (known?.status === 'duplicate') return new AlreadyIssuedError(campaignId, userId);
    return undefined;
  }

  private claimedAtOrThrow(campaignId: string, userId: string, claim: ClaimOutcome): Date {
    switch (claim.status) {
      case 'claimed':
        return claim.claimedAt;
      case 'not-started':
        throw new CampaignNotOpenError(campaignId, 'not-started', claim.opensAt);
      case 'ended':
        throw new CampaignNotOpenError(campaignId, 'ended', claim.closedAt);
      case 'duplicate':
        throw new AlreadyIssuedError(campaignId, userId);
      case 'sold-out':
        throw new SoldOutError(campaignId);
      case 'rate-limited':
        throw new RateLimitedError('user', claim.limitPerSecond, claim.retryAfterMs);
      case 'pending':
        throw new ClaimPendingError(campaignId, userId, this.settlingIn(claim.claimedAt, claim.now));
      case 'not-loaded':
        throw new DependencyUnavailableError(
          'redis',
          `campaign ${campaignId} could not be loaded into the gate`,
        );
    }
  }

  /**
   * When a retry of a pending claim can expect an answer. A young claim is a write in flight (a
   * double click): a second will do. An older one lost its process; the reconciler settles it
   * once it is `claimsSettleAfterMs` old (into this user's coupon, or back to the campaign).
   */
  private settlingIn(claimedAt: Date, now: Date): number {
    const age = now.getTime() - claimedAt.getTime();
    if (age < this.settling.writeMs) return 1_000;
    return Math.max(1_000, this.settling.settleAfterMs - age);
  }

  private async persistCoupon(claim: Omit<CouponToPersist, 'code'>): Promise<IssuedCoupon> {
    const { campaignId, userId } = claim;
    for (let attempt = 1; attempt <= MAX_CODE_ATTEMPTS; attempt++) {
      const coupon: CouponToPersist = { ...claim, code: generateCouponCode() };
      let outcome: Awaited<ReturnType<CouponRepository['persist']>>;
      try {
        outcome = await this.coupons.persist(coupon);
      } catch (error) {
        // A write that timed out may still commit: leave its claim pending for the reconciler,
        // which settles it from the database. A write that failed is compensated now.
        if (!(error instanceof DependencyUnavailableError && error.outcomeUnknown)) {
          await this.releaseQuietly(claim);
        }
        throw error;
      }
      switch (outcome) {
        case 'persisted':
          // If this fails the claim stays pending, and the reconciler confirms it from the row.
          await this.gate.confirmSlot(campaignId, userId).catch(() => undefined);
          return coupon;
        case 'code-taken':
          continue;
        case 'user-has-coupon':
          // The gate was rebuilt from a read that missed this user's coupon, so it counted one
          // slot too many and did not know the user: this claim corrected both. Keep it.
          await this.gate.confirmSlot(campaignId, userId).catch(() => undefined);
          throw new AlreadyIssuedError(campaignId, userId);
        case 'user-id-collides':
          await this.releaseQuietly(claim);
          throw new InvalidArgumentError(
            'user_id',
            'user_id cannot be told apart from another user id by the database; use an id that differs from it in more than padding',
          );
        case 'campaign-full':
          await this.gate.closeSlots(campaignId, userId).catch(() => undefined);
          throw new SoldOutError(campaignId);
      }
    }
    await this.releaseQuietly(claim);
    throw new DependencyUnavailableError(
      'database',
      `could not find a free coupon code in ${MAX_CODE_ATTEMPTS} attempts; try again`,
    );
  }

  /** A release that fails leaves the claim pending; the reconciler gives the slot back later. */
  private async releaseQuietly(claim: Omit<CouponToPersist, 'code'>) {
    await this.gate
      .releaseSlot(claim.campaignId, claim.userId, claim.issuedAt.getTime())
      .catch(() => undefined);
  }

  private isKnownUnknown(campaignId: string): boolean {
    const until = this.unknownCampaigns.get(campaignId);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.unknownCampaigns.delete(campaignId);
    return false;
  }

  private rememberUnknown(campaignId: string): void {
    if (this.unknownCampaigns.size >= UNKNOWN_CAMPAIGNS_MAX) this.unknownCampaigns.clear();
    this.unknownCampaigns.set(campaignId, Date.now() + UNKNOWN_CAMPAIGN_TTL_MS);
  }

  /** Concurrent first claims of one campaign share a single database read. */
  private loadCampaign(campaignId: string): Promise<void> {
    let pending = this.loading.get(campaignId);
    if (!pending) {
      pending = (async () => {
        const state = await this.campaigns.loadGateState(campaignId);
        if (!state) {
          this.rememberUnknown(campaignId);
          throw new CampaignNotFoundError('id', campaignId);
        }
        this.directory.add(state.campaign);
        await this.gate.loadCampaign(state);
      })().finally(() => this.loading.delete(campaignId));
      this.loading.set(campaignId, pending);
    }
    return pending;
  }
}
