import type {
  ActiveCampaign,
  ActiveCampaigns,
  CampaignActivity,
  CampaignGateState,
  ClaimOutcome,
  PendingClaim,
  SlotGate,
  SlotInspection,
} from '../application/ports.ts';
import type { Tracing } from './tracing.ts';

const CAMPAIGN = 'coupon.campaign_id';

/**
 * The issuer's gate with a child span per store call of a call in progress (claim, confirm,
 * release, close, load), so a trace shows where an issue waited. Wired in only when tracing is
 * on; the gate itself knows nothing of tracing. A claim's span covers its wait for the claim
 * script too: claims of one event-loop turn share one script call (TickBatcher).
 */
export class TracedSlotGate implements SlotGate {
  private readonly gate: SlotGate;
  private readonly tracing: Tracing;

  constructor(gate: SlotGate, tracing: Tracing) {
    this.gate = gate;
    this.tracing = tracing;
  }

  claimSlot(campaignId: string, userId: string): Promise<ClaimOutcome> {
    return this.tracing.inChild(
      'gate.claim_slot',
      { [CAMPAIGN]: campaignId },
      () => this.gate.claimSlot(campaignId, userId),
      (span, outcome) => span.setAttribute('coupon.claim', outcome.status),
    );
  }

  confirmSlot(campaignId: string, userId: string): Promise<void> {
    return this.tracing.inChild('gate.confirm_slot', { [CAMPAIGN]: campaignId }, () =>
      this.gate.confirmSlot(campaignId, userId),
    );
  }

  releaseSlot(campaignId: string, userId: string, claimedAtMs?: number): Promise<boolean> {
    return this.tracing.inChild(
      'gate.release_slot',
      { [CAMPAIGN]: campaignId },
      () => this.gate.releaseSlot(campaignId, userId, claimedAtMs),
      (span, released) => span.setAttribute('coupon.released', released),
    );
  }

  closeSlots(campaignId: string, userId: string): Promise<void> {
    return this.tracing.inChild('gate.close_slots', { [CAMPAIGN]: campaignId }, () =>
      this.gate.closeSlots(campaignId, userId),
    );
  }

  loadCampaign(state: CampaignGateState): Promise<void> {
    return this.tracing.inChild('gate.load_campaign', { [CAMPAIGN]: state.campaign.id }, () =>
      this.gate.loadCampaign(state),
    );
  }

  knownOutcome(campaignId: string, userId: string): ClaimOutcome | undefined {
    return this.gate.knownOutcome(campaignId, userId);
  }

  now(campaignId?: string): Promise<Date> {
    return this.gate.now(campaignId);
  }

  countSlots(campaignId: string) {
    return this.gate.countSlots(campaignId);
  }

  inspectSlots(campaignId: string, staleAfterMs: number): Promise<SlotInspection | undefined> {
    return this.gate.inspectSlots(campaignId, staleAfterMs);
  }

  returnLeakedSlots(campaignId: string, slots: number, holders: readonly string[]): Promise<number> {
    return this.gate.returnLeakedSlots(campaignId, slots, holders);
  }

  adoptHolders(campaignId: string, userIds: readonly string[]): Promise<number> {
    return this.gate.adoptHolders(campaignId, userIds);
  }

  listPendingClaims(campaignId: string, before: Date, limit: number): Promise<PendingClaim[]> {
    return this.gate.listPendingClaims(campaignId, before, limit);
  }
}

/** The issuer's campaign activity with a child span for the mark made before each claim. */
export class TracedCampaignActivity implements CampaignActivity {
  private readonly activity: CampaignActivity;
  private readonly tracing: Tracing;

  constructor(activity: CampaignActivity, tracing: Tracing) {
    this.activity = activity;
    this.tracing = tracing;
  }

  markActive(campaignId: string): Promise<void> {
    return this.tracing.inChild('activity.mark_active', { [CAMPAIGN]: campaignId }, () =>
      this.activity.markActive(campaignId),
    );
  }

  listActive(): Promise<ActiveCampaigns> {
    return this.activity.listActive();
  }

  forgetUnlessMarkedSince(mark: ActiveCampaign): Promise<boolean> {
    return this.activity.forgetUnlessMarkedSince(mark);
  }
}
