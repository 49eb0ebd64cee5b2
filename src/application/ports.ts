import type { Campaign, NewCampaign } from '../domain/campaign.ts';

/**
 * The interfaces the use cases need from the outside world. Infrastructure implements them;
 * the composition root (src/app.ts) picks the implementations.
 */

/** A store or cache could not be reached in time. The caller may retry later. */
export class DependencyUnavailableError extends Error {
  readonly dependency: 'redis' | 'database';
  constructor(dependency: 'redis' | 'database', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.dependency = dependency;
  }
}

/** What the slot gate decided for one claim, judged atomically on the gate's own clock. */
export type ClaimOutcome =
  | { readonly status: 'claimed'; readonly claimedAt: Date; readonly remaining: number }
  | { readonly status: 'not-started'; readonly opensAt: Date }
  | { readonly status: 'ended'; readonly closedAt: Date }
  | { readonly status: 'duplicate' }
  | { readonly status: 'sold-out' }
  | { readonly status: 'not-loaded' };

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
  /** The shared clock every instance judges campaign windows by. */
  now(): Promise<Date>;
  claimSlot(campaignId: string, userId: string): Promise<ClaimOutcome>;
  /** The coupon is recorded: the claim is final. */
  confirmSlot(campaignId: string, userId: string): Promise<void>;
  /** The coupon could not be recorded: give the slot back and free the user. Idempotent. */
  releaseSlot(campaignId: string, userId: string): Promise<boolean>;
  /** The database refused the claim because the campaign is full: no slot is left anywhere. */
  closeSlots(campaignId: string, userId: string): Promise<void>;
  /** Loads a campaign from the database; a no-op when it is already loaded. */
  loadCampaign(state: CampaignGateState): Promise<void>;
}

export interface CampaignRepository {
  /** Throws CampaignNameTakenError when the name exists. */
  create(campaign: NewCampaign): Promise<Campaign>;
  /** The campaign and every code issued so far (in issue order), read from one snapshot. */
  findByNameWithCodes(name: string): Promise<{ campaign: Campaign; couponCodes: string[] } | undefined>;
  loadGateState(campaignId: string): Promise<CampaignGateState | undefined>;
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
  /** The user already holds a coupon of this campaign. */
  | 'user-has-coupon'
  /** The campaign's issued count has reached its amount. */
  | 'campaign-full';

export interface CouponRepository {
  /** Records the coupon and raises the campaign's issued count in one transaction. */
  persist(coupon: CouponToPersist): Promise<PersistOutcome>;
}
