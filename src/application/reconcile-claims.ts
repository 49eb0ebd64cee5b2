import type { Campaign } from '../domain/campaign.ts';
import type {
  ActiveCampaigns,
  CampaignActivity,
  CampaignRepository,
  CouponRepository,
  SlotGate,
  SlotInspection,
} from './ports.ts';

/** Gate keys outlive a campaign by a day; claims of campaigns closed longer ago are gone with them. */
const CAMPAIGN_KEYS_KEPT_MS = 24 * 60 * 60 * 1000;
const CLAIMS_PER_ROUND = 500;
/** Campaigns inspected at once: their reads go to Redis together, in one pipeline. */
const INSPECTED_AT_ONCE = 100;

export interface ReconcileReport {
  /** Slots counted as taken with no row and no pending claim behind them, given back. */
  readonly leaked: number;
  /** Coupon holders the gate had lost (rebuilt from a read that missed their write), added back. */
  readonly adopted: number;
  /** Pending claims whose coupon row exists: the claim is final. */
  readonly confirmed: number;
  /** Pending claims without a coupon row: the slot went back and the user is free again. */
  readonly released: number;
  /** Campaigns marked active after this pass (marked lately, or with claims pending). */
  readonly active: number;
  /** Campaigns looked at: every active one, and one page of the sweep over all live ones. */
  readonly visited: number;
  /** Active campaigns forgotten: no claim pending and no mark for the idle margin. */
  readonly forgotten: number;
  /** Campaigns that could not be reconciled this pass (see `onCampaignFailed`); tried again next pass. */
  readonly failed: number;
}

type Tally = { -readonly [K in keyof ReconcileReport]: number };

/** A campaign of the active set as a pass read it: its row, and its gate before settling. */
export interface InspectedCampaign {
  readonly campaign: Campaign;
  readonly inspection: SlotInspection;
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
 *
 * A pass costs what the activity does, not what the number of campaigns is. Claims are only made
 * in campaigns marked active (CampaignActivity, marked before each claim is sent), so each pass
 * visits the active campaigns, and forgets one that has had no claim pending and no mark for
 * `idleAfterMs`. The repairs against a Redis that lost data (holders to adopt, leaked slots, a
 * claim whose mark was lost with it) need every live campaign looked at eventually: each pass
 * also takes the next `sweepPerPass` of them in id order, so every live campaign is visited
 * within ceil(live / sweepPerPass) passes.
 */
export class ClaimReconciler {
  private readonly gate: SlotGate;
  private readonly campaigns: CampaignRepository;
  private readonly coupons: CouponRepository;
  private readonly activity: CampaignActivity;
  private readonly staleAfterMs: number;
  private readonly idleAfterMs: number;
  private readonly sweepPerPass: number;
  private readonly onCampaignFailed: (campaignId: string, error: unknown) => void;
  private readonly onActiveSetFailed: (error: unknown) => void;
  private readonly onActiveInspected: (campaigns: readonly InspectedCampaign[]) => void;
  /** The last campaign id the sweep visited; '' starts over. */
  private sweptUpTo = '';

  constructor(deps: {
    gate: SlotGate;
    campaigns: CampaignRepository;
    coupons: CouponRepository;
    activity: CampaignActivity;
    staleAfterMs: number;
    /**
     * How long an active campaign must have had no mark before it is forgotten (default twice
     * `staleAfterMs`). It must exceed the mark spacing (a second) plus the longest a claim can take
     * to reach Redis after its mark, so a claim still on its way always finds its campaign listed.
     */
    idleAfterMs?: number;
    /** Live campaigns the sweep visits per pass. */
    sweepPerPass: number;
    /** Told of each campaign that failed this pass; the pass goes on with the others. */
    onCampaignFailed?: (campaignId: string, error: unknown) => void;
    /** Told when the active set could not be read; the pass goes on with the sweep alone. */
    onActiveSetFailed?: (error: unknown) => void;
    /** Told each pass what it read of the active campaigns it could inspect (for metrics). */
    onActiveInspected?: (campaigns: readonly InspectedCampaign[]) => void;
  }) {
    this.gate = deps.gate;
    this.campaigns = deps.campaigns;
    this.coupons = deps.coupons;
    this.activity = deps.activity;
    this.staleAfterMs = deps.staleAfterMs;
    this.idleAfterMs = deps.idleAfterMs ?? 2 * deps.staleAfterMs;
    this.sweepPerPass = deps.sweepPerPass;
    this.onCampaignFailed = deps.onCampaignFailed ?? (() => undefined);
    this.onActiveSetFailed = deps.onActiveSetFailed ?? (() => undefined);
    this.onActiveInspected = deps.onActiveInspected ?? (() => undefined);
  }

  async reconcile(): Promise<ReconcileReport> {
    const tally: Tally = {
      adopted: 0,
      confirmed: 0,
      released: 0,
      leaked: 0,
      active: 0,
      visited: 0,
      forgotten: 0,
      failed: 0,
    };

    // Campaigns with claims lately, every pass; without the set (its shard failing), the sweep
    // alone. Claims are judged stale by each campaign's own clock (inspectSlots), marks idle by
    // the clock that stamped them; the local clock only picks which campaigns may still hold
    // keys, a day's margin.
    let listed: ActiveCampaigns = { marks: [], nowMs: Date.now() };
    try {
      listed = await this.activity.listActive();
    } catch (error) {
      this.onActiveSetFailed(error);
    }
    const { marks, nowMs } = listed;
    const closingAfter = new Date(nowMs - CAMPAIGN_KEYS_KEPT_MS);
    const active = (await this.campaigns.findCampaigns(marks.map((mark) => mark.campaignId))).filter(
      (campaign) => campaign.expiresAt > closingAfter,
    );
    const inspected: InspectedCampaign[] = [];
    const pending = await this.reconcileCampaigns(active, tally, inspected);
    this.onActiveInspected(inspected);
    const live = new Set(active.map((campaign) => campaign.id));
    for (const mark of marks) {
      // Not live: nothing left to settle. Live: no claim pending when looked at, no mark lately.
      // A campaign that failed this pass is not in `pending`, and stays.
      const idle =
        !live.has(mark.campaignId) ||
        (pending.get(mark.campaignId) === 0 && mark.markedAtMs < nowMs - this.idleAfterMs);
      if (!idle) continue;
      try {
        if (await this.activity.forgetUnlessMarkedSince(mark)) tally.forgotten++;
      } catch (error) {
        tally.failed++;
        this.onCampaignFailed(mark.campaignId, error);
      }
    }

    // One page of every live campaign, for what only lost Redis data causes.
    const page = await this.campaigns.listCampaignsClosingAfter(closingAfter, {
      afterId: this.sweptUpTo,
      limit: this.sweepPerPass,
    });
    this.sweptUpTo = page.length < this.sweepPerPass ? '' : (page.at(-1)?.id ?? '');
    const swept = page.filter((campaign) => !live.has(campaign.id));
    for (const [campaignId, left] of await this.reconcileCampaigns(swept, tally)) {
      // Claims pending in a campaign nobody marked (its mark lost with Redis data): visit it every
      // pass from now on, rather than once a sweep.
      if (left > 0) await this.activity.markActive(campaignId).catch(() => undefined);
    }
    tally.active = marks.length - tally.forgotten;
    return tally;
  }

  /**
   * Inspects the campaigns (one pipelined read each) and settles the few that need it. Returns the
   * claims each had pending when inspected (0 when its gate keys are gone); a campaign that failed
   * is counted, reported and left out.
   */
  private async reconcileCampaigns(
    campaigns: readonly Campaign[],
    tally: Tally,
    inspected?: InspectedCampaign[],
  ): Promise<Map<string, number>> {
    const pending = new Map<string, number>();
    for (let i = 0; i < campaigns.length; i += INSPECTED_AT_ONCE) {
      const chunk = campaigns.slice(i, i + INSPECTED_AT_ONCE);
      const inspections = await Promise.allSettled(
        chunk.map((campaign) => this.gate.inspectSlots(campaign.id, this.staleAfterMs)),
      );
      for (const [j, inspection] of inspections.entries()) {
        const campaign = chunk[j] as Campaign;
        tally.visited++;
        try {
          if (inspection.status === 'rejected') throw inspection.reason;
          await this.settle(campaign, inspection.value, tally);
          pending.set(campaign.id, inspection.value?.pending ?? 0);
          if (inspection.value) inspected?.push({ campaign, inspection: inspection.value });
        } catch (error) {
          tally.failed++;
          this.onCampaignFailed(campaign.id, error);
        }
      }
    }
    return pending;
  }

  /** Settles what the inspection shows may need it; most campaigns need nothing. */
  private async settle(campaign: Campaign, look: SlotInspection | undefined, tally: Tally): Promise<void> {
    // No gate keys: nothing to settle; the next claim rebuilds the campaign from MySQL.
    if (!look) return;
    if (look.stale > 0) {
      const settled = await this.reconcileCampaign(campaign.id, look.claimedBefore);
      tally.confirmed += settled.confirmed;
      tally.released += settled.released;
    }
    const handedOut = campaign.amount - look.remaining;
    if (campaign.issuedCount > handedOut || campaign.issuedCount > look.users) {
      tally.adopted += await this.adoptLostHolders(campaign);
    }
    if (handedOut - look.pending > campaign.issuedCount) {
      tally.leaked += await this.returnLeakedSlots(campaign);
    }
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
    // The amount read with the rows, not the one of the pass's first read: an amount changed in
    // between would otherwise look like leaked slots (change-amount.lua also pauses this repair).
    const leaked = state.campaign.amount - counts.remaining - counts.pending - state.campaign.issuedCount;
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
