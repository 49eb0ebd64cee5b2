import type { Campaign, CampaignState, NewCampaign } from '../domain/campaign.ts';
import type { Coupon } from '../domain/coupon.ts';

/**
 * The interfaces the use cases need from the outside world. Infrastructure implements them;
 * the composition root (src/app.ts) picks the implementations.
 */

/** A store or cache could not be reached in time. The caller may retry later. */
export class DependencyUnavailableError extends Error {
  readonly dependency: 'redis' | 'database' | 'user-keys';
  /**
   * The call timed out rather than failed: it may still complete. A write with an unknown
   * outcome must not be compensated blindly; the claim reconciler settles it from the database.
   */
  readonly outcomeUnknown: boolean;
  constructor(
    dependency: 'redis' | 'database' | 'user-keys',
    message: string,
    options?: { cause?: unknown; outcomeUnknown?: boolean },
  ) {
    super(message, { cause: options?.cause });
    this.dependency = dependency;
    this.outcomeUnknown = options?.outcomeUnknown ?? false;
  }
}

/** What the slot gate decided for one claim, judged atomically on the gate's own clock. */
/** A claim the gate still holds as pending: its coupon row was not confirmed yet. */
export interface PendingClaim {
  readonly userId: string;
  /** The claim time on the gate's clock, which also identifies this claim of this user. */
  readonly claimedAtMs: number;
}

export type ClaimOutcome =
  | { readonly status: 'claimed'; readonly claimedAt: Date; readonly remaining: number }
  /** `now`: Redis' clock when it judged the claim, when the script says. */
  | { readonly status: 'not-started'; readonly opensAt: Date; readonly now?: Date }
  | { readonly status: 'ended'; readonly closedAt: Date }
  | { readonly status: 'duplicate' }
  | { readonly status: 'sold-out' }
  | { readonly status: 'not-loaded' }
  /**
   * The user was served, but that claim is still pending: its coupon is being written, or its
   * process died and the reconciler will settle it. `now` is the gate's clock at this answer.
   */
  | { readonly status: 'pending'; readonly claimedAt: Date; readonly now: Date }
  /** The user called more often than the gate's per-user limit allows in this second. */
  | { readonly status: 'rate-limited'; readonly limitPerSecond: number; readonly retryAfterMs: number };

/** What the reconciler reads of one campaign's gate to tell whether anything needs settling. */
export interface SlotInspection {
  readonly remaining: number;
  /** Users marked served: holders and pending claimers. */
  readonly users: number;
  readonly pending: number;
  /** Pending claims made before `claimedBefore`: old enough to settle. */
  readonly stale: number;
  /** The cut-off for settling, on the campaign's own clock: its now minus the age asked for. */
  readonly claimedBefore: Date;
}

export interface ActiveCampaigns {
  readonly marks: readonly ActiveCampaign[];
  /** Now, on the clock that stamps the marks (epoch ms). */
  readonly nowMs: number;
}

/** A campaign marked as having claims, with its latest mark. */
export interface ActiveCampaign {
  readonly campaignId: string;
  /** When it was last marked, on the gate's clock (ms). */
  readonly markedAtMs: number;
}

/**
 * Which campaigns have had claims lately, shared by every instance, so the reconciler visits
 * those every pass instead of every live campaign. A campaign is marked before a claim of it is
 * sent, so a process that dies after its claim has left the mark behind.
 */
export interface CampaignActivity {
  /**
   * Marks the campaign as having claims now. Resolves once the campaign is listed for certain (a
   * mark stored lately still stands, or the new one is stored) or the mark failed: never rejects,
   * since the reconciler's sweep finds a claim without a mark too, only later.
   */
  markActive(campaignId: string): Promise<void>;
  /** Every campaign marked and not forgotten since, and the clock the marks were stamped by. */
  listActive(): Promise<ActiveCampaigns>;
  /** Forgets the campaign unless it was marked again after `mark`; true when forgotten. */
  forgetUnlessMarkedSince(mark: ActiveCampaign): Promise<boolean>;
}

/** Everything the gate needs to judge claims of one campaign, as recorded in the database. */
export interface CampaignGateState {
  readonly campaign: Campaign;
  /** Users that already hold a coupon of the campaign. */
  readonly userIds: readonly string[];
}

/**
 * The fast first-come-first-served gate (Redis). It decides who gets a slot; the database then
 * records the coupon. Every method throws DependencyUnavailableError when the gate is unreachable.
 */
export interface SlotGate {
  /**
   * The clock every instance judges campaign windows by: with a campaign id, that campaign's own
   * (on a cluster, its shard's); without, any shard's (for what only needs the time of day).
   */
  now(campaignId?: string): Promise<Date>;
  claimSlot(campaignId: string, userId: string): Promise<ClaimOutcome>;
  /**
   * What `claimSlot` would answer, when this process already knows it without asking the store
   * (a campaign known to be sold out); undefined when only the store can tell.
   */
  knownOutcome(campaignId: string, userId: string): ClaimOutcome | undefined;
  /** The coupon is recorded: the claim is final. */
  confirmSlot(campaignId: string, userId: string): Promise<void>;
  /**
   * The coupon could not be recorded: give the slot back and free the user. Idempotent: only a
   * pending claim is released, and with `claimedAtMs` only that very claim.
   */
  releaseSlot(campaignId: string, userId: string, claimedAtMs?: number): Promise<boolean>;
  /** Slots left, users marked served (holders and pending claimers) and pending claims, at one instant; undefined when not loaded. */
  countSlots(campaignId: string): Promise<{ remaining: number; users: number; pending: number } | undefined>;
  /**
   * `countSlots`, and how many pending claims are older than `staleAfterMs` on the campaign's own
   * clock; undefined when not loaded.
   */
  inspectSlots(campaignId: string, staleAfterMs: number): Promise<SlotInspection | undefined>;
  /**
   * Gives back `slots` taken slots that no row or pending claim accounts for, and frees served
   * users that are neither `holders` nor pending. At most one instance at a time; returns the
   * slots given back.
   */
  returnLeakedSlots(campaignId: string, slots: number, holders: readonly string[]): Promise<number>;
  /** Marks users that hold a coupon but are unknown to the gate as served; returns how many were missing. */
  adoptHolders(campaignId: string, userIds: readonly string[]): Promise<number>;
  /** Claims still pending that were made before `before` (gate clock), at most `limit`. */
  listPendingClaims(campaignId: string, before: Date, limit: number): Promise<PendingClaim[]>;
  /** The database refused the claim because the campaign is full: no slot is left anywhere. */
  closeSlots(campaignId: string, userId: string): Promise<void>;
  /** Loads a campaign from the database; a no-op when it is already loaded. */
  loadCampaign(state: CampaignGateState): Promise<void>;
}

export type WindowClose =
  /** Closed by this call, at `closedAt` on the gate's clock. */
  | { readonly status: 'closed'; readonly closedAt: Date }
  /** Closed before (by a close or by its window): nothing changed. */
  | { readonly status: 'already-closed'; readonly closedAt: Date }
  | { readonly status: 'not-loaded' };

export type AmountChange =
  | { readonly status: 'changed'; readonly remaining: number }
  /** The new amount is below what the gate has handed out; `remaining` is what it has left. */
  | { readonly status: 'below-claimed'; readonly remaining: number }
  | { readonly status: 'not-loaded' };

/** What a watcher shows of a campaign's gate, at `now` on the gate's clock. */
export interface LiveGateCounts {
  readonly now: Date;
  /** Absent when the campaign is not loaded in the gate. */
  readonly gate?: {
    readonly opensAt: Date;
    readonly closesAt: Date;
    /** Set once an amount change reached the gate; else the database's amount holds. */
    readonly amount: number | undefined;
    readonly remaining: number;
    readonly pending: number;
  };
}

/** What admin changes and watchers need of the gate beyond claims. */
export interface CampaignGateControls {
  /** Closes issuing now on the gate's clock: every claim judged after it is refused as ended. */
  closeWindow(campaignId: string): Promise<WindowClose>;
  /** Adds `difference` slots (negative: removes), never below what was handed out. */
  changeAmount(campaignId: string, difference: number, amount: number): Promise<AmountChange>;
  readLive(campaignId: string): Promise<LiveGateCounts>;
  /** Tells every instance to stop answering "sold out" from memory for the campaign. */
  forgetSoldOut(campaignId: string): Promise<void>;
}

/** A campaign's id and when it closes: what each instance keeps to tell live ids from made-up ones. */
export interface LiveCampaign {
  readonly id: string;
  readonly expiresAt: Date;
}

/**
 * Tells every instance at once of a campaign just created, so that none refuses its id as unknown.
 * Best effort: an announcement that is lost is made up for by the directory's periodic read.
 */
export interface CampaignAnnouncer {
  announce(campaign: LiveCampaign): Promise<void>;
}

/** One admin change of a campaign, as recorded. */
export interface CampaignEventInput {
  /** 'created', 'closed', 'amount_changed'. */
  readonly kind: string;
  readonly detail: string;
  /** A fingerprint of the admin credential (see admin-auth.ts), never the credential. */
  readonly actor: string;
  readonly at: Date;
}

export interface CampaignEventRecord extends CampaignEventInput {
  /** The event's place in the campaign's history (increasing), for paging. */
  readonly id: number;
}

export interface CouponRecord {
  /** The coupon's place in issue order (increasing), for paging. */
  readonly id: number;
  readonly code: string;
  readonly campaignId: string;
  readonly userId: string;
  readonly issuedAt: Date;
}

/** What an admin change decided while holding the campaign's row; `change` absent: nothing written. */
export interface LockedDecision<T> {
  readonly result: T;
  readonly change?: {
    readonly amount?: number;
    readonly issuedAt?: Date;
    readonly expiresAt?: Date;
    readonly event: CampaignEventInput;
  };
}

export interface CampaignRepository {
  /** Records the campaign and its 'created' event in one transaction; CampaignNameTakenError when the name exists. */
  create(campaign: NewCampaign, created?: { readonly actor: string; readonly at: Date }): Promise<Campaign>;
  findById(campaignId: string): Promise<Campaign | undefined>;
  /**
   * Newest first (ids are UUIDv7), those before `beforeId` when given, at most `limit`, only
   * those in `state` at `now` when given.
   */
  listCampaigns(query: {
    readonly now: Date;
    readonly state?: CampaignState;
    readonly beforeId?: string;
    readonly limit: number;
  }): Promise<Campaign[]>;
  /** The campaign's coupons in issue order after the one `afterId` names, at most `limit`. */
  listCoupons(campaignId: string, afterId: number, limit: number): Promise<CouponRecord[]>;
  /** The campaign's events in the order they happened after `afterId`, at most `limit`. */
  listEvents(campaignId: string, afterId: number, limit: number): Promise<CampaignEventRecord[]>;
  /**
   * Runs `decide` while holding the campaign's row (SELECT ... FOR UPDATE), then writes its change
   * and event in the same transaction. Coupon writes of the campaign wait meanwhile, so they are
   * judged against the amount as changed. Undefined when no campaign has the id.
   */
  changeLocked<T>(
    campaignId: string,
    decide: (current: Campaign) => Promise<LockedDecision<T>>,
  ): Promise<{ readonly result: T; readonly campaign: Campaign } | undefined>;
  /** Records an event that changes nothing of the campaign's row (a bulk issue). */
  recordEvent(campaignId: string, event: CampaignEventInput): Promise<void>;
  findByName(name: string): Promise<Campaign | undefined>;
  /** The campaign and every code issued so far (in issue order), read from one snapshot. */
  findByNameWithCodes(name: string): Promise<{ campaign: Campaign; couponCodes: string[] } | undefined>;
  loadGateState(campaignId: string): Promise<CampaignGateState | undefined>;
  /**
   * Campaigns that close after `closingAfter`; with `createdSince`, only those whose id was made
   * since then (ids are UUIDv7, so this is a range of the primary key).
   */
  listLiveCampaigns(closingAfter: Date, createdSince?: Date): Promise<LiveCampaign[]>;
  /**
   * Campaigns that close after `closingAfter` (the ones whose gate state may still hold claims),
   * in id order after `afterId`, at most `limit`: one page of a cursor over all of them.
   */
  listCampaignsClosingAfter(
    closingAfter: Date,
    page: { afterId: string; limit: number },
  ): Promise<Campaign[]>;
  /** The campaigns among these ids (any number of them). */
  findCampaigns(ids: readonly string[]): Promise<Campaign[]>;
}

export interface CouponToPersist {
  readonly code: string;
  readonly campaignId: string;
  readonly userId: string;
  readonly issuedAt: Date;
}

export type PersistOutcome =
  | 'persisted'
  /** Another coupon already has this code; retry with a new one. */
  | 'code-taken'
  /** The user already holds a coupon of this campaign (the stored holder equals it byte for byte). */
  | 'user-has-coupon'
  /**
   * The database's unique key took this user id for another one it cannot tell apart (a
   * collation that is not byte-exact): nobody holds a coupon under this exact id.
   */
  | 'user-id-collides'
  /** The campaign's issued count has reached its amount. */
  | 'campaign-full';

export interface CouponRepository {
  /** Records the coupon and raises the campaign's issued count in one transaction. */
  persist(coupon: CouponToPersist): Promise<PersistOutcome>;
  /** Which of these users hold a coupon of the campaign. */
  findHolders(campaignId: string, userIds: readonly string[]): Promise<Set<string>>;
  /** False while the database is known to be down: claiming a slot now would only be given back. */
  isAvailable(): boolean;
}

export interface UserCouponQuery {
  readonly userId: string;
  readonly campaignId?: string;
  /** Only coupons issued before the one with this id (the previous page's last). */
  readonly beforeId?: number;
  readonly limit: number;
}

/** A coupon's life after issue: look it up, list a user's, redeem it, cancel a redemption. */
export interface CouponLedger {
  findByCode(code: string): Promise<Coupon | undefined>;
  /** Newest first. */
  listByUser(query: UserCouponQuery): Promise<Coupon[]>;
  /**
   * Marks the coupon used by `orderId` at `now`, in one conditional write: only if no order holds
   * it and it is still valid at `now`. False when it changed nothing (then read why).
   */
  redeem(code: string, orderId: string, now: Date): Promise<boolean>;
  /** Frees the coupon if `orderId` holds it, in one conditional write; false when it changed nothing. */
  cancelRedemption(code: string, orderId: string): Promise<boolean>;
}
