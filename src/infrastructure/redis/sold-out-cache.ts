import { Cluster } from 'ioredis';
import type {
  CampaignGateState,
  ClaimOutcome,
  PendingClaim,
  SlotGate,
  SlotInspection,
} from '../../application/ports.ts';
import type { RedisClient } from './client.ts';
import type { OpeningMemory } from './opening-memory.ts';
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
  /** Campaigns proven not open yet (see OpeningMemory); absent: every early call asks Redis. */
  readonly openings?: OpeningMemory;
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

/** How long a sharded subscription may take before a mark is given up (calls keep asking Redis). */
const SUBSCRIBE_WITHIN_MS = 1_000;

/**
 * Remembers, per process, which campaigns have not opened yet (OpeningMemory) and which are sold out (with who was served, which no longer
 * changes), so a storm of late requests is answered without a Redis round trip each, and with the
 * same answer Redis would give: "already issued" for a holder, "sold out" for everyone else. A
 * slot coming back (a release, a reconcile) is announced on Redis pub/sub and drops the mark in
 * every instance; `trustMs` bounds how long a missed announcement could keep refusing.
 *
 * On a single server the announcements share one channel. On a cluster each campaign has a
 * sharded channel in its own slot (`<channel>:{<id>}`, SPUBLISH/SSUBSCRIBE): an announcement goes
 * to that shard's nodes only, where classic PUBLISH is copied to every node, and an instance
 * subscribes only while it holds a mark of that campaign, subscribing before it reads who was
 * served, so nothing announced after the read is missed. A sharded subscription that moves (its
 * master failed over, its slots moved) may have missed announcements: every mark is dropped then.
 */
export class SoldOutCachingGate implements SlotGate {
  private readonly gate: RedisSlotGate;
  private readonly publisher: RedisClient;
  private readonly options: SoldOutCacheOptions;
  private readonly subscriber: RedisClient;
  private readonly sharded: boolean;
  private readonly soldOut = new Map<string, SoldOutMark>();
  /** Marks being made; `dropped` once a slot came back meanwhile, so the mark is not made. */
  private readonly marking = new Map<string, { dropped: boolean }>();

  private constructor(
    gate: RedisSlotGate,
    publisher: RedisClient,
    subscriber: RedisClient,
    options: SoldOutCacheOptions,
  ) {
    this.gate = gate;
    this.publisher = publisher;
    this.subscriber = subscriber;
    this.sharded = subscriber instanceof Cluster;
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
    const cache = new SoldOutCachingGate(gate, publisher, subscriber, options);
    // After a reconnect, announcements may have been missed: forget everything.
    subscriber.on('ready', () => cache.forgetAll());
    if (cache.sharded) {
      subscriber.on('smessage', (channel: string, campaignId: string) => {
        if (channel === cache.channelOf(campaignId)) cache.forget(campaignId);
      });
      // A sharded subscriber lost or replaced (its node gone, slots moved): it may have missed some.
      subscriber.on('-subscriber', () => cache.forgetAll());
      subscriber.on('-node', () => cache.forgetAll());
      return cache;
    }
    subscriber.on('message', (channel: string, campaignId: string) => {
      if (channel === options.channel) cache.forget(campaignId);
    });
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
    const opensAt = this.options.openings?.provenNotOpen(campaignId);
    if (opensAt) return { status: 'not-started', opensAt };
    const mark = this.trustedMark(campaignId);
    if (!mark) return undefined;
    if (mark.pending.has(userId)) return undefined;
    return mark.users.has(userId) ? DUPLICATE : SOLD_OUT;
  }

  async claimSlot(campaignId: string, userId: string): Promise<ClaimOutcome> {
    const known = this.knownOutcome(campaignId, userId);
    if (known) return known;
    const openings = this.options.openings;
    const sentAt = openings?.now();
    const outcome = await this.gate.claimSlot(campaignId, userId);
    if (openings && sentAt !== undefined && outcome.status === 'not-started' && outcome.now) {
      openings.learn(campaignId, outcome.opensAt, outcome.now, sentAt);
    }
    if (outcome.status === 'sold-out' || (outcome.status === 'claimed' && outcome.remaining === 0)) {
      this.markSoldOut(campaignId);
    }
    return outcome;
  }

  private trustedMark(campaignId: string): SoldOutMark | undefined {
    const mark = this.soldOut.get(campaignId);
    if (mark && mark.until <= Date.now()) {
      this.forget(campaignId);
      return undefined;
    }
    return mark;
  }

  /**
   * Reads who was served once, in the background; until then requests still ask Redis. On a
   * cluster it first subscribes to the campaign's channel; a slot back at any time after that
   * drops the mark, or keeps it from being made.
   */
  private markSoldOut(campaignId: string): void {
    if (this.marking.has(campaignId) || this.soldOut.has(campaignId)) return;
    const attempt = { dropped: false };
    this.marking.set(campaignId, attempt);
    const markedAt = Date.now();
    this.listen(campaignId)
      .then(() => this.gate.servedUsers(campaignId, this.options.maxUsers))
      .then((served) => {
        if (served?.remaining !== 0 || attempt.dropped) {
          this.stopListening(campaignId);
          return;
        }
        this.soldOut.set(campaignId, {
          until: markedAt + this.options.trustMs,
          users: new Set(served.holders),
          pending: new Set(served.pending),
        });
      })
      .catch(() => this.stopListening(campaignId))
      .finally(() => {
        if (this.marking.get(campaignId) === attempt) this.marking.delete(campaignId);
      });
  }

  private channelOf(campaignId: string): string {
    return this.sharded ? `${this.options.channel}:{${campaignId}}` : this.options.channel;
  }

  private async listen(campaignId: string): Promise<void> {
    if (!this.sharded) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.subscriber.ssubscribe(this.channelOf(campaignId)),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('not subscribed in time')), SUBSCRIBE_WITHIN_MS);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  private stopListening(campaignId: string): void {
    if (this.sharded) this.subscriber.sunsubscribe(this.channelOf(campaignId)).catch(() => undefined);
  }

  /** A slot came back (or may have): ask Redis again. */
  private forget(campaignId: string): void {
    const attempt = this.marking.get(campaignId);
    if (attempt) attempt.dropped = true;
    if (this.soldOut.delete(campaignId)) this.stopListening(campaignId);
  }

  /**
   * Drops every mark. A mark still being made stays: its read of who was served comes after its
   * subscription, so it already shows whatever was announced while the connection was away.
   */
  private forgetAll(): void {
    for (const campaignId of [...this.soldOut.keys()]) this.forget(campaignId);
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
    this.forget(state.campaign.id);
  }

  now(campaignId?: string): Promise<Date> {
    return this.gate.now(campaignId);
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

  inspectSlots(campaignId: string, staleAfterMs: number): Promise<SlotInspection | undefined> {
    return this.gate.inspectSlots(campaignId, staleAfterMs);
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
    this.forget(campaignId);
    // If the announcement is lost, other instances trust their mark for at most `trustMs`.
    const channel = this.channelOf(campaignId);
    await (this.sharded
      ? this.publisher.spublish(channel, campaignId)
      : this.publisher.publish(channel, campaignId)
    ).catch(() => undefined);
  }
}
