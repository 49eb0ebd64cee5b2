import type {
  CampaignGateState,
  ClaimOutcome,
  PendingClaim,
  SlotGate,
  SlotInspection,
} from '../../application/ports.ts';
import type { RedisClient } from './client.ts';
import type { RedisSlotGate } from './slot-gate.ts';

export interface SoldOutCacheOptions {
  /** The pub/sub channel on which every instance announces slots given back. */
  readonly channel: string;
  /** A "sold out" seen here is trusted this long without asking Redis again. */
  readonly trustMs: number;
  /** Campaigns with more served users than this are not cached (their user set stays in Redis). */
  readonly maxUsers: number;
  /** Told of every slot given back. */
  readonly onSlotReturned?: () => void;
}

const DUPLICATE: ClaimOutcome = { status: 'duplicate' };
const SOLD_OUT: ClaimOutcome = { status: 'sold-out' };

interface SoldOutMark {
  /** Until when the mark is trusted (local clock, ms). */
  readonly until: number;
  /**
   * Everyone holding a coupon when the campaign sold out: they hear "already issued". A user whose
   * claim was still pending is left to Redis (it can tell "still being settled"); everyone else
   * hears "sold out".
   */
  readonly users: ReadonlySet<string>;
  /** Users served but not holders then: only Redis can answer them. */
  readonly pending: ReadonlySet<string>;
}

/**
 * Remembers, per process, which campaigns are sold out (with who was served, which no longer
 * changes), so a storm of late requests is answered without a Redis round trip each, and with the
 * same answer Redis would give: "already issued" for a holder, "sold out" for everyone else. A
 * slot coming back (a release, a reconcile) is announced on Redis pub/sub and drops the mark in
 * every instance; `trustMs` bounds how long a missed announcement could keep refusing.
 */
export class SoldOutCachingGate implements SlotGate {
  private readonly gate: RedisSlotGate;
  private readonly publisher: RedisClient;
  private readonly options: SoldOutCacheOptions;
  private readonly soldOut = new Map<string, SoldOutMark>();
  private readonly marking = new Set<string>();

  private constructor(gate: RedisSlotGate, publisher: RedisClient, options: SoldOutCacheOptions) {
    this.gate = gate;
    this.publisher = publisher;
    this.options = options;
  }

  /**
   * `subscriber` must be a connection of its own (a subscribed connection can do nothing else),
   * with the offline queue on, so the subscription is made once it connects.
   */
  static async create(
    gate: RedisSlotGate,
    publisher: RedisClient,
    subscriber: RedisClient,
    options: SoldOutCacheOptions,
  ): Promise<SoldOutCachingGate> {
    const cache = new SoldOutCachingGate(gate, publisher, options);
    subscriber.on('message', (channel: string, campaignId: string) => {
      if (channel === options.channel) cache.soldOut.delete(campaignId);
    });
    // After a reconnect, announcements may have been missed: forget everything.
    subscriber.on('ready', () => cache.soldOut.clear());
    // ioredis subscribes once connected and again after every reconnect; startup waits for it
    // briefly, but never blocks on a Redis that is down (the trust window covers that).
    const subscribed = subscriber.subscribe(options.channel).catch(() => undefined);
    await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
    return cache;
  }

  isKnownSoldOut(campaignId: string): boolean {
    return this.trustedMark(campaignId) !== undefined;
  }

  knownOutcome(campaignId: string, userId: string): ClaimOutcome | undefined {
    const mark = this.trustedMark(campaignId);
    if (!mark) return undefined;
    if (mark.pending.has(userId)) return undefined;
    return mark.users.has(userId) ? DUPLICATE : SOLD_OUT;
  }

  async claimSlot(campaignId: string, userId: string): Promise<ClaimOutcome> {
    const known = this.knownOutcome(campaignId, userId);
    if (known) return known;
    const outcome = await this.gate.claimSlot(campaignId, userId);
    if (outcome.status === 'sold-out' || (outcome.status === 'claimed' && outcome.remaining === 0)) {
      this.markSoldOut(campaignId);
    }
    return outcome;
  }

  private trustedMark(campaignId: string): SoldOutMark | undefined {
    const mark = this.soldOut.get(campaignId);
    if (mark && mark.until <= Date.now()) {
      this.soldOut.delete(campaignId);
      return undefined;
    }
    return mark;
  }

  /** Reads who was served once, in the background; until then requests still ask Redis. */
  private markSoldOut(campaignId: string): void {
    if (this.marking.has(campaignId) || this.soldOut.has(campaignId)) return;
    this.marking.add(campaignId);
    const markedAt = Date.now();
    this.gate
      .servedUsers(campaignId, this.options.maxUsers)
      .then((served) => {
        if (served)
          this.soldOut.set(campaignId, {
            until: markedAt + this.options.trustMs,
            users: new Set(served.holders),
            pending: new Set(served.pending),
          });
      })
      .catch(() => undefined)
      .finally(() => this.marking.delete(campaignId));
  }

  async releaseSlot(campaignId: string, userId: string, claimedAtMs?: number): Promise<boolean> {
    const released = await this.gate.releaseSlot(campaignId, userId, claimedAtMs);
    if (released) {
      this.options.onSlotReturned?.();
      await this.announceSlotBack(campaignId);
    }
    return released;
  }

  async loadCampaign(state: CampaignGateState): Promise<void> {
    await this.gate.loadCampaign(state);
    this.soldOut.delete(state.campaign.id);
  }

  now(): Promise<Date> {
    return this.gate.now();
  }

  confirmSlot(campaignId: string, userId: string): Promise<void> {
    return this.gate.confirmSlot(campaignId, userId);
  }

  closeSlots(campaignId: string, userId: string): Promise<void> {
    return this.gate.closeSlots(campaignId, userId);
  }

  countSlots(campaignId: string): Promise<{ remaining: number; users: number; pending: number } | undefined> {
    return this.gate.countSlots(campaignId);
  }

  inspectSlots(campaignId: string, claimedBefore: Date): Promise<SlotInspection | undefined> {
    return this.gate.inspectSlots(campaignId, claimedBefore);
  }

  async returnLeakedSlots(campaignId: string, slots: number, holders: readonly string[]): Promise<number> {
    const returned = await this.gate.returnLeakedSlots(campaignId, slots, holders);
    if (returned > 0) await this.announceSlotBack(campaignId);
    return returned;
  }

  adoptHolders(campaignId: string, userIds: readonly string[]): Promise<number> {
    return this.gate.adoptHolders(campaignId, userIds);
  }

  listPendingClaims(campaignId: string, before: Date, limit: number): Promise<PendingClaim[]> {
    return this.gate.listPendingClaims(campaignId, before, limit);
  }

  /**
   * Slots were added (an amount raised) or the campaign closed: every instance drops its sold-out
   * mark at once, as for a slot given back, and asks Redis again.
   */
  forgetSoldOut(campaignId: string): Promise<void> {
    return this.announceSlotBack(campaignId);
  }

  private async announceSlotBack(campaignId: string): Promise<void> {
    this.soldOut.delete(campaignId);
    // If the announcement is lost, other instances trust their mark for at most `trustMs`.
    await this.publisher.publish(this.options.channel, campaignId).catch(() => undefined);
  }
}
