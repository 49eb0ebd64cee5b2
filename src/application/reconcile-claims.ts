import type { Campaign } from '../domain/campaign.ts';
import type { CampaignRepository, CouponRepository, SlotGate } from './ports.ts';

/** Gate keys outlive a campaign by a day; claims of campaigns closed longer ago are gone with them. */
const CAMPAIGN_KEYS_KEPT_MS = 24 * 60 * 60 * 1000;
const CLAIMS_PER_ROUND = 500;

export interface ReconcileReport {
  /** Slots counted as taken with no row and no pending claim behind them, given back. */
  readonly leaked: number;
  /** Coupon holders the gate had lost (rebuilt from a read that missed their write), added back. */
  readonly adopted: number;
  /** Pending claims whose coupon row exists: the claim is final. */
  readonly confirmed: number;
  /** Pending claims without a coupon row: the slot went back and the user is free again. */
  readonly released: number;
}

/**
 * Settles claims a request never settled itself: its process died between the Redis claim and the
 * database write, or the write timed out with an unknown outcome. A claim older than `staleAfterMs`
 * is judged by the database alone: row present -> confirm, row absent -> release.
 *
 * Every instance runs this; it is safe concurrently because confirming is idempotent and a release
 * names the exact claim (user and claim time), so at most one reconciler gives a slot back and a
 * user's newer claim is never touched. `staleAfterMs` must exceed the longest a write can take
 * (the dependency timeout), so no live write is judged while still in flight.
 */
export class ClaimReconciler {
  private readonly gate: SlotGate;
  private readonly campaigns: CampaignRepository;
  private readonly coupons: CouponRepository;
  private readonly staleAfterMs: number;

  constructor(deps: {
    gate: SlotGate;
    campaigns: CampaignRepository;
    coupons: CouponRepository;
    staleAfterMs: number;
  }) {
    this.gate = deps.gate;
    this.campaigns = deps.campaigns;
    this.coupons = deps.coupons;
    this.staleAfterMs = deps.staleAfterMs;
  }

  async reconcile(): Promise<ReconcileReport> {
    const now = (await this.gate.now()).getTime();
    const campaigns = await this.campaigns.listCampaignsClosingAfter(new Date(now - CAMPAIGN_KEYS_KEPT_MS));
    const total = { adopted: 0, confirmed: 0, released: 0, leaked: 0 };
    for (const campaign of campaigns) {
      const settled = await this.reconcileCampaign(campaign.id, new Date(now - this.staleAfterMs));
      total.confirmed += settled.confirmed;
      total.released += settled.released;
      total.adopted += await this.adoptLostHolders(campaign);
      total.leaked += await this.returnLeakedSlots(campaign);
    }
    return total;
  }

  /**
   * The gate hands out a slot per claim, and a claim is either pending or has its row; so
   * amount - remaining - pending can never exceed the rows. When it does, pending marks were lost
   * (a Redis failover) for claims whose rows never came: give those slots back. The counts are
   * read from Redis first and rows after, so anything moving in between only makes the leak look
   * smaller, never bigger.
   */
  async returnLeakedSlots(campaign: Campaign): Promise<number> {
    const first = await this.gate.countSlots(campaign.id);
    // A cheap look with the earlier-read issued count first: no leak, no further reads.
    if (!first || campaign.amount - first.remaining - first.pending <= campaign.issuedCount) return 0;
    const counts = await this.gate.countSlots(campaign.id);
    const state = await this.campaigns.loadGateState(campaign.id);
    if (!counts || !state) return 0;
    const leaked = campaign.amount - counts.remaining - counts.pending - state.campaign.issuedCount;
    return leaked > 0 ? this.gate.returnLeakedSlots(campaign.id, leaked, state.userIds) : 0;
  }

  /**
   * Every coupon row was a claim first, so MySQL can never hold more coupons than the gate has
   * handed out (amount - remaining) or has users marked served. When it does, the gate was rebuilt
   * from a read that missed writes still in flight: add those holders back, so they hear "already
   * issued" rather than "sold out" and their slots count as taken.
   */
  async adoptLostHolders(campaign: Campaign): Promise<number> {
    const counts = await this.gate.countSlots(campaign.id);
    if (!counts) return 0;
    const handedOut = campaign.amount - counts.remaining;
    if (campaign.issuedCount <= handedOut && campaign.issuedCount <= counts.users) return 0;
    const state = await this.campaigns.loadGateState(campaign.id);
    return state ? this.gate.adoptHolders(campaign.id, state.userIds) : 0;
  }

  async reconcileCampaign(
    campaignId: string,
    claimedBefore: Date,
  ): Promise<Pick<ReconcileReport, 'confirmed' | 'released'>> {
    let confirmed = 0;
    let released = 0;
    for (;;) {
      const stale = await this.gate.listPendingClaims(campaignId, claimedBefore, CLAIMS_PER_ROUND);
      if (stale.length === 0) break;
      const holders = await this.coupons.findHolders(
        campaignId,
        stale.map((claim) => claim.userId),
      );
      for (const claim of stale) {
        if (holders.has(claim.userId)) {
          await this.gate.confirmSlot(campaignId, claim.userId);
          confirmed++;
        } else if (await this.gate.releaseSlot(campaignId, claim.userId, claim.claimedAtMs)) {
          released++;
        }
      }
      if (stale.length < CLAIMS_PER_ROUND) break;
    }
    return { confirmed, released };
  }
}
