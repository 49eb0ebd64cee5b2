import {
  type Campaign,
  type CampaignView,
  campaignIdOrThrow,
  validateAmount,
  viewOf,
} from '../domain/campaign.ts';
import { AmountBelowClaimedError, CampaignNotFoundError } from '../domain/errors.ts';
import type { CampaignDirectory } from './campaign-directory.ts';
import {
  type AmountChange,
  type CampaignGateControls,
  type CampaignRepository,
  DependencyUnavailableError,
  type LockedDecision,
  type SlotGate,
  type WindowClose,
} from './ports.ts';

function earlier(a: Date, b: Date): Date {
  return new Date(Math.min(a.getTime(), b.getTime()));
}

/** A gate answer, or what the gate threw: kept as a value so the database transaction ends cleanly. */
type Attempt<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

async function attempt<T>(call: () => Promise<T>): Promise<Attempt<T>> {
  try {
    return { ok: true, value: await call() };
  } catch (error) {
    return { ok: false, error };
  }
}

/**
 * The admin changes of a running campaign: close it now, change its amount. Each is decided by the
 * gate (Redis, atomically with the claims, on its clock) while the campaign's database row is held,
 * and recorded with its event in that same transaction:
 *
 *   lock the row -> change the gate -> write the row and the event -> commit -> tell every instance
 *
 * Coupon writes of the campaign wait for the row meanwhile, so MySQL judges them against the
 * changed amount, never the old one. Redis is changed first because it alone knows what was
 * claimed at that instant; what happens when the process dies between the two is in the README
 * ("Consistency and failures").
 */
export class CampaignOperations {
  private readonly campaigns: CampaignRepository;
  private readonly gate: CampaignGateControls & Pick<SlotGate, 'now' | 'loadCampaign'>;
  private readonly directory: CampaignDirectory;

  constructor(deps: {
    campaigns: CampaignRepository;
    gate: CampaignGateControls & Pick<SlotGate, 'now' | 'loadCampaign'>;
    directory: CampaignDirectory;
  }) {
    this.campaigns = deps.campaigns;
    this.gate = deps.gate;
    this.directory = deps.directory;
  }

  /**
   * Closes issuing now, on the gate's clock; idempotent. A close the gate took but the database did
   * not record (the process died, the database failed) is recorded by the next call.
   */
  async closeCampaign(campaignId: string, actor: string): Promise<CampaignView> {
    campaignIdOrThrow(campaignId);
    for (let loaded = false; ; loaded = true) {
      const changed = await this.changeLocked(campaignId, async (current) => {
        // Long ended (its gate keys may be gone): nothing to close. Redis down: the close fails below.
        const now = await this.clock(campaignId);
        if (current.expiresAt <= now) return { result: { closed: false, now } };
        const closing = await attempt(() => this.gate.closeWindow(campaignId));
        if (!closing.ok) return { result: { error: closing.error } };
        return this.recordClose(current, actor, closing.value);
      });
      const { result, campaign } = changed;
      if ('error' in result) throw result.error;
      if ('notLoaded' in result) {
        if (loaded) {
          throw new DependencyUnavailableError(
            'redis',
            `campaign ${campaignId} could not be loaded into the gate`,
          );
        }
        await this.loadIntoGate(campaignId);
        continue;
      }
      if (result.closed) {
        // Every instance learns the new close time (live ids, a day after it) and drops its
        // sold-out mark, so late callers hear "ended" from the gate.
        await Promise.all([this.directory.closed(campaign), this.gate.forgetSoldOut(campaignId)]);
      }
      return viewOf(campaign, result.now);
    }
  }

  /**
   * Sets the campaign's amount, never below what the gate has handed out (issued coupons and
   * claims being written) and at most 10,000,000. A raise reaches every instance's sold-out
   * memory before the answer.
   */
  async updateAmount(campaignId: string, requested: bigint, actor: string): Promise<CampaignView> {
    campaignIdOrThrow(campaignId);
    const amount = validateAmount(requested);
    for (let loaded = false; ; loaded = true) {
      let applied: { difference: number; previous: number } | undefined;
      let changed: Changed<AmountResult>;
      try {
        changed = await this.changeLocked<AmountResult>(campaignId, async (current) => {
          const now = await this.clock(campaignId);
          if (amount === current.amount) return { result: { now } };
          const difference = amount - current.amount;
          const change = await attempt(() => this.gate.changeAmount(campaignId, difference, amount));
          if (!change.ok) return { result: { now, error: change.error } };
          return this.decideAmount(current, amount, change.value, actor, now, loaded, () => {
            applied = { difference, previous: current.amount };
          });
        });
      } catch (error) {
        // The gate took the change but the database did not: take it back, unless the database may
        // still commit it (a timeout). If this fails too, the reconciler converges on the database.
        if (applied && !(error instanceof DependencyUnavailableError && error.outcomeUnknown)) {
          const { difference, previous } = applied;
          await this.gate.changeAmount(campaignId, -difference, previous).catch(() => undefined);
        }
        throw error;
      }
      const { result, campaign } = changed;
      if (result.error) throw result.error;
      if (result.notLoaded) {
        await this.loadIntoGate(campaignId);
        continue;
      }
      if (result.raised) await this.gate.forgetSoldOut(campaignId);
      return viewOf(campaign, result.now ?? new Date());
    }
  }

  private decideAmount(
    current: Campaign,
    amount: number,
    change: AmountChange,
    actor: string,
    now: Date,
    loadedOnce: boolean,
    onApplied: () => void,
  ): LockedDecision<AmountResult> {
    const record = {
      amount,
      event: { kind: 'amount_changed', detail: `amount ${current.amount} -> ${amount}`, actor, at: now },
    };
    switch (change.status) {
      case 'changed':
        onApplied();
        return { result: { now, raised: amount > current.amount }, change: record };
      case 'below-claimed':
        return {
          result: {
            now,
            error: new AmountBelowClaimedError(current.id, amount, current.amount - change.remaining),
          },
        };
      case 'not-loaded':
        if (!loadedOnce) return { result: { now, notLoaded: true } };
        // Still not in the gate after a load: its keys are gone (ended over a day ago), no claim
        // can be under way, and the database's count is the whole truth.
        if (current.issuedCount > amount) {
          return {
            result: { now, error: new AmountBelowClaimedError(current.id, amount, current.issuedCount) },
          };
        }
        return { result: { now }, change: record };
    }
  }

  private recordClose(current: Campaign, actor: string, closing: WindowClose): LockedDecision<CloseResult> {
    if (closing.status === 'not-loaded') return { result: { notLoaded: true } };
    const { closedAt } = closing;
    // Already closed at the gate, and recorded: nothing to do. Closed at the gate but not recorded
    // (an earlier close whose transaction failed): record it now.
    if (closing.status === 'already-closed' && current.expiresAt <= closedAt) {
      return { result: { closed: false, now: closedAt } };
    }
    return {
      result: { closed: true, now: closedAt },
      change: {
        expiresAt: closedAt,
        // Closed before it opened: an empty window, as the gate has it.
        issuedAt: earlier(current.issuedAt, closedAt),
        event: {
          kind: 'closed',
          detail: `expires_at ${closedAt.toISOString()} (was ${current.expiresAt.toISOString()})`,
          actor,
          at: closedAt,
        },
      },
    };
  }

  /**
   * The campaign's clock (its shard's on a cluster: the one its claims are judged by), or this
   * process's when Redis cannot say (then the gate call fails anyway).
   */
  private clock(campaignId: string): Promise<Date> {
    return this.gate.now(campaignId).catch(() => new Date());
  }

  private async changeLocked<T>(
    campaignId: string,
    decide: (current: Campaign) => Promise<LockedDecision<T>>,
  ): Promise<Changed<T>> {
    const changed = await this.campaigns.changeLocked(campaignId, decide);
    if (!changed) throw new CampaignNotFoundError('id', campaignId);
    return changed;
  }

  private async loadIntoGate(campaignId: string): Promise<void> {
    const state = await this.campaigns.loadGateState(campaignId);
    if (!state) throw new CampaignNotFoundError('id', campaignId);
    this.directory.add(state.campaign);
    await this.gate.loadCampaign(state);
  }
}

/** What a locked change decided, and the campaign as it stands after it. */
interface Changed<T> {
  readonly result: T;
  readonly campaign: Campaign;
}

type CloseResult =
  | { readonly closed: boolean; readonly now: Date }
  | { readonly notLoaded: true }
  | { readonly error: unknown };

interface AmountResult {
  readonly now?: Date;
  readonly raised?: boolean;
  readonly notLoaded?: boolean;
  readonly error?: unknown;
}
