import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Cluster, type Result } from 'ioredis';
import {
  type AmountChange,
  type CampaignGateState,
  type ClaimOutcome,
  DependencyUnavailableError,
  type LiveGateCounts,
  type PendingClaim,
  type SlotGate,
  type SlotInspection,
  type WindowClose,
} from '../../application/ports.ts';
import type { DependencyBreaker } from '../dependency-breaker.ts';
import type { RedisClient } from './client.ts';
import { ItemFailure, TickBatcher } from './tick-batcher.ts';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** The number of keys comes first: 4 campaign keys and one call counter per user. */
    claimSlots(numberOfKeys: number, ...keysThenArgs: (string | number)[]): Result<number[], Context>;
    releaseSlot(
      window: string,
      remaining: string,
      users: string,
      pending: string,
      userId: string,
      claimedAtMs: string,
    ): Result<number, Context>;
    closeSlots(
      window: string,
      remaining: string,
      users: string,
      pending: string,
      userId: string,
    ): Result<number, Context>;
    adoptHolders(remaining: string, users: string, ...userIds: string[]): Result<number, Context>;
    returnLeakedSlots(
      remaining: string,
      users: string,
      pending: string,
      lock: string,
      slots: number,
      lockMs: number,
      ...userIds: string[]
    ): Result<number, Context>;
    readClock(anyKeyOfTheShard: string): Result<number, Context>;
    inspectSlots(
      remaining: string,
      users: string,
      pending: string,
      staleAfterMs: number,
    ): Result<number[], Context>;
    publishCampaign(
      window: string,
      remaining: string,
      users: string,
      pending: string,
      staged: string,
      opensAt: number,
      closesAt: number,
      remainingCount: number,
      expireAt: number,
    ): Result<number, Context>;
    closeWindow(window: string, remaining: string): Result<number[], Context>;
    changeAmount(
      window: string,
      remaining: string,
      repairLock: string,
      difference: number,
      amount: number,
      repairPauseMs: number,
    ): Result<number[], Context>;
    readLive(window: string, remaining: string, pending: string): Result<number[], Context>;
  }
}

/** Each script's number of keys; undefined when the caller passes it (a key per user). */
const SCRIPTS: Record<string, number | undefined> = {
  claimSlots: undefined,
  releaseSlot: 4,
  closeSlots: 4,
  adoptHolders: 2,
  returnLeakedSlots: 4,
  publishCampaign: 5,
  readClock: 1,
  inspectSlots: 3,
  closeWindow: 2,
  changeAmount: 3,
  readLive: 3,
};

/** Scripts called with their key count as the first argument (see `connectRedis` for why it matters). */
export const SCRIPTS_WITH_KEY_COUNT: readonly string[] = Object.keys(SCRIPTS).filter(
  (name) => SCRIPTS[name] === undefined,
);

const CLAIM_STATUS = {
  claimed: 0,
  notStarted: 1,
  ended: 2,
  duplicate: 3,
  soldOut: 4,
  notLoaded: 5,
  rateLimited: 6,
  pending: 7,
} as const;

/**
 * After an amount change, the reconciler gives back no "leaked" slots of the campaign for this
 * long: one that read the database's amount before the change would count the difference as a
 * leak. Far longer than any reconciler's reads take; a real leak waits that much longer.
 */
const AMOUNT_CHANGE_REPAIR_PAUSE_MS = 30_000;

/** Claims (and confirms) of one campaign per Redis call at most; bounds how long one script runs. */
const MAX_BATCH = 256;

/** Keys outlive the campaign by a day, so late callers still hear "ended" without a database read. */
const KEEP_AFTER_CLOSE_MS = 24 * 60 * 60 * 1000;
const STAGE_CHUNK = 5_000;

/**
 * The keys of one campaign. The `{campaignId}` hash tag puts them in one Redis Cluster slot, so
 * each script touches keys of a single slot and runs unchanged on a cluster.
 */
export interface SlotCounts {
  readonly remaining: number;
  /** Users marked served: holders and pending claimers. */
  readonly users: number;
  /** Claims not yet confirmed. */
  readonly pending: number;
}

function dateOfTime([seconds, micros]: readonly (string | number | undefined)[]): Date {
  return new Date(Number(seconds) * 1000 + Math.floor(Number(micros) / 1000));
}

export function campaignKeys(prefix: string, campaignId: string) {
  const base = `${prefix}campaign:{${campaignId}}`;
  return {
    window: `${base}:window`,
    remaining: `${base}:remaining`,
    users: `${base}:users`,
    pending: `${base}:pending`,
    /** Followed by a user id: that user's claim attempts in the current second. */
    userCalls: `${base}:calls:`,
  };
}

export interface RedisSlotGateOptions {
  /** Prepended to every key, so several deployments (or test files) can share one Redis. */
  readonly keyPrefix: string;
  /** Fails calls at once while Redis is known to be down. */
  readonly breaker?: DependencyBreaker;
  /**
   * The breaker for a campaign's calls, from one of its keys (on a cluster: its master's, see
   * ShardBreakers); absent: `breaker`. Calls without a campaign (TIME) always use `breaker`.
   */
  readonly campaignBreaker?: (key: string) => DependencyBreaker;
  /** Claims one user may attempt per campaign per second, counted by the claim script; 0 or absent: no limit. */
  readonly claimsPerUserPerSecond?: number;
}

/** The slot gate on Redis: one Lua script per decision, each atomic, loaded once and called by SHA. */
export class RedisSlotGate implements SlotGate {
  private readonly redis: RedisClient;
  private readonly keyPrefix: string;
  private readonly breaker: DependencyBreaker | undefined;
  private readonly campaignBreaker: ((key: string) => DependencyBreaker) | undefined;
  private readonly claimsPerUserPerSecond: number;
  private readonly claims: TickBatcher<string, ClaimOutcome>;
  private readonly confirms: TickBatcher<string, void>;

  constructor(redis: RedisClient, options: RedisSlotGateOptions) {
    this.redis = redis;
    this.keyPrefix = options.keyPrefix;
    this.breaker = options.breaker;
    this.campaignBreaker = options.campaignBreaker;
    this.claimsPerUserPerSecond = options.claimsPerUserPerSecond ?? 0;
    this.claims = new TickBatcher((campaignId, userIds) => this.claimBatch(campaignId, userIds), MAX_BATCH);
    this.confirms = new TickBatcher(async (campaignId, userIds) => {
      await this.call(campaignId, 'confirming claims', () =>
        this.redis.zrem(this.keys(campaignId).pending, ...userIds),
      );
      return [];
    }, MAX_BATCH);
    for (const [name, numberOfKeys] of Object.entries(SCRIPTS)) {
      const file = `${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}.lua`;
      const lua = readFileSync(new URL(file, import.meta.url), 'utf8');
      redis.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
    }
  }

  keys(campaignId: string) {
    return campaignKeys(this.keyPrefix, campaignId);
  }

  /**
   * The gate's clock: with a campaign, its own shard's (the clock its windows and claims are
   * judged by); without one, any master's that answers (on a cluster, tried in turn, so one
   * failing master does not stop what only needs the time of day).
   */
  async now(campaignId?: string): Promise<Date> {
    if (campaignId !== undefined) {
      const ms = await this.call(campaignId, 'reading the clock', () =>
        this.redis.readClock(this.keys(campaignId).window),
      );
      return new Date(Number(ms));
    }
    if (!(this.redis instanceof Cluster)) {
      return dateOfTime(await this.call(undefined, 'reading the clock', () => this.redis.time()));
    }
    // Not behind the shared breaker: one failing master must not make the others look down.
    let failure: unknown;
    for (const node of this.redis.nodes('master')) {
      try {
        return dateOfTime(await node.time());
      } catch (error) {
        failure = error;
      }
    }
    throw new DependencyUnavailableError('redis', 'no Redis master answered for the time; retry shortly', {
      cause: failure,
    });
  }

  /** Every answer of this gate comes from Redis; SoldOutCachingGate remembers some. */
  knownOutcome(): ClaimOutcome | undefined {
    return undefined;
  }

  /**
   * Claims arriving in the same turn of the event loop go to Redis as one script call per
   * campaign, judged in arrival order exactly as one by one; each caller gets its own outcome.
   */
  claimSlot(campaignId: string, userId: string): Promise<ClaimOutcome> {
    return this.claims.add(campaignId, userId);
  }

  private async claimBatch(campaignId: string, userIds: string[]): Promise<(ClaimOutcome | ItemFailure)[]> {
    const k = this.keys(campaignId);
    const replies = await this.call(campaignId, 'claiming slots', () =>
      this.redis.claimSlots(
        4 + userIds.length,
        k.window,
        k.remaining,
        k.users,
        k.pending,
        ...userIds.map((userId) => `${k.userCalls}${userId}`),
        this.claimsPerUserPerSecond,
        ...userIds,
      ),
    );
    return userIds.map((_, i) => {
      try {
        return this.claimOutcome(replies[3 * i], replies[3 * i + 1], replies[3 * i + 2]);
      } catch (error) {
        // One answer the gate cannot read fails that claim alone, not the batch around it.
        return new ItemFailure(error);
      }
    });
  }

  private claimOutcome(status: unknown, value: unknown, remaining: unknown): ClaimOutcome {
    switch (status) {
      case CLAIM_STATUS.claimed:
        return { status: 'claimed', claimedAt: new Date(Number(value)), remaining: Number(remaining) };
      case CLAIM_STATUS.notStarted:
        return Number(remaining) > 0
          ? { status: 'not-started', opensAt: new Date(Number(value)), now: new Date(Number(remaining)) }
          : { status: 'not-started', opensAt: new Date(Number(value)) };
      case CLAIM_STATUS.ended:
        return { status: 'ended', closedAt: new Date(Number(value)) };
      case CLAIM_STATUS.duplicate:
        return { status: 'duplicate' };
      case CLAIM_STATUS.soldOut:
        return { status: 'sold-out' };
      case CLAIM_STATUS.rateLimited:
        return {
          status: 'rate-limited',
          limitPerSecond: this.claimsPerUserPerSecond,
          retryAfterMs: Number(value),
        };
      case CLAIM_STATUS.pending:
        return { status: 'pending', claimedAt: new Date(Number(value)), now: new Date(Number(remaining)) };
      case CLAIM_STATUS.notLoaded:
        return { status: 'not-loaded' };
      default:
        // A script and its caller out of step (a deploy mid-way?): never guess an answer.
        throw new DependencyUnavailableError(
          'redis',
          `the claim script answered an unknown status ${String(status)}`,
        );
    }
  }

  /**
   * Confirms arriving in the same turn of the event loop (a group-commit batch resolves all its
   * callers at once) go to Redis as one ZREM per campaign instead of one command each.
   */
  confirmSlot(campaignId: string, userId: string): Promise<void> {
    return this.confirms.add(campaignId, userId);
  }

  async releaseSlot(campaignId: string, userId: string, claimedAtMs?: number): Promise<boolean> {
    const k = this.keys(campaignId);
    const released = await this.call(campaignId, 'releasing a slot', () =>
      this.redis.releaseSlot(
        k.window,
        k.remaining,
        k.users,
        k.pending,
        userId,
        claimedAtMs?.toString() ?? '',
      ),
    );
    return released === 1;
  }

  async countSlots(campaignId: string): Promise<SlotCounts | undefined> {
    const k = this.keys(campaignId);
    // One MULTI: the three counts describe the same instant.
    const replies = await this.call(campaignId, 'counting slots', async () =>
      this.redis.multi().get(k.remaining).scard(k.users).zcard(k.pending).exec(),
    );
    const [remaining, users, pending] = (replies ?? []).map(([, value]) => value);
    if (remaining === null || remaining === undefined) return undefined;
    return { remaining: Number(remaining), users: Number(users), pending: Number(pending) };
  }

  async inspectSlots(campaignId: string, staleAfterMs: number): Promise<SlotInspection | undefined> {
    const k = this.keys(campaignId);
    const [remaining, users, pending, stale, now] = (
      await this.call(campaignId, 'inspecting slots', () =>
        this.redis.inspectSlots(k.remaining, k.users, k.pending, staleAfterMs),
      )
    ).map(Number) as [number, number, number, number, number];
    if (remaining < 0) return undefined;
    return { remaining, users, pending, stale, claimedBefore: new Date(now - staleAfterMs) };
  }

  async returnLeakedSlots(campaignId: string, slots: number, holders: readonly string[]): Promise<number> {
    const k = this.keys(campaignId);
    const held = new Set(holders);
    const [served, pending] = await this.call(campaignId, 'reading served users', () =>
      Promise.all([this.redis.smembers(k.users), this.redis.zrange(k.pending, '0', '-1')]),
    );
    const waiting = new Set(pending);
    const stale = served.filter((user) => !held.has(user) && !waiting.has(user));
    const returned = await this.call(campaignId, 'returning leaked slots', () =>
      this.redis.returnLeakedSlots(
        k.remaining,
        k.users,
        k.pending,
        `${k.users}:repair`,
        slots,
        30_000,
        ...stale,
      ),
    );
    return Math.max(0, returned);
  }

  /**
   * Users marked served, split into holders and those whose claim is still pending, and the slots
   * left, or undefined when there are more than `limit` users. One MULTI, so all describe the
   * same instant.
   */
  async servedUsers(
    campaignId: string,
    limit: number,
  ): Promise<{ holders: string[]; pending: string[]; remaining: number } | undefined> {
    const k = this.keys(campaignId);
    const count = await this.call(campaignId, 'counting served users', () => this.redis.scard(k.users));
    if (count > limit) return undefined;
    const replies = await this.call(campaignId, 'reading served users', async () =>
      this.redis.multi().smembers(k.users).zrange(k.pending, '0', '-1').get(k.remaining).exec(),
    );
    const [served, pending, remaining] = (replies ?? []).map(([, value]) => value);
    const waiting = new Set((pending ?? []) as string[]);
    return {
      holders: ((served ?? []) as string[]).filter((user) => !waiting.has(user)),
      pending: [...waiting],
      remaining: remaining === null || remaining === undefined ? Number.NaN : Number(remaining),
    };
  }

  async adoptHolders(campaignId: string, userIds: readonly string[]): Promise<number> {
    const k = this.keys(campaignId);
    let adopted = 0;
    for (let i = 0; i < userIds.length; i += STAGE_CHUNK) {
      const chunk = userIds.slice(i, i + STAGE_CHUNK);
      adopted += await this.call(campaignId, 'adopting coupon holders', () =>
        this.redis.adoptHolders(k.remaining, k.users, ...chunk),
      );
    }
    return adopted;
  }

  async listPendingClaims(campaignId: string, before: Date, limit: number): Promise<PendingClaim[]> {
    const flat: unknown = await this.call(campaignId, 'listing pending claims', () =>
      this.redis.zrangebyscore(
        this.keys(campaignId).pending,
        '-inf',
        `(${before.getTime()}`,
        'WITHSCORES',
        'LIMIT',
        0,
        limit,
      ),
    );
    // RESP3 answers [member, score] pairs, RESP2 one flat list; accept both.
    const items = flat as unknown[];
    const claims: PendingClaim[] = [];
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (Array.isArray(item)) {
        claims.push({ userId: String(item[0]), claimedAtMs: Number(item[1]) });
      } else {
        claims.push({ userId: String(item), claimedAtMs: Number(items[++i]) });
      }
    }
    return claims;
  }

  async closeSlots(campaignId: string, userId: string): Promise<void> {
    const k = this.keys(campaignId);
    await this.call(campaignId, 'closing a campaign', () =>
      this.redis.closeSlots(k.window, k.remaining, k.users, k.pending, userId),
    );
  }

  async loadCampaign({ campaign, userIds }: CampaignGateState): Promise<void> {
    const k = this.keys(campaign.id);
    // A staging key of our own: concurrent loaders never mix their user lists.
    const staged = `${k.users}:staged:${randomUUID()}`;
    await this.call(campaign.id, 'loading a campaign', async () => {
      for (let i = 0; i < userIds.length; i += STAGE_CHUNK) {
        await this.redis
          .multi()
          .sadd(staged, ...userIds.slice(i, i + STAGE_CHUNK))
          .pexpire(staged, 60_000)
          .exec();
      }
      await this.redis.publishCampaign(
        k.window,
        k.remaining,
        k.users,
        k.pending,
        staged,
        campaign.issuedAt.getTime(),
        campaign.expiresAt.getTime(),
        campaign.amount - campaign.issuedCount,
        campaign.expiresAt.getTime() + KEEP_AFTER_CLOSE_MS,
      );
    });
  }

  /**
   * Closes the campaign's window now, on Redis' clock (see close-window.lua). Idempotent: a closed
   * campaign answers when it closed.
   */
  async closeWindow(campaignId: string): Promise<WindowClose> {
    const k = this.keys(campaignId);
    const [status, closesAt] = await this.call(campaignId, 'closing a campaign', () =>
      this.redis.closeWindow(k.window, k.remaining),
    );
    switch (status) {
      case 0:
        return { status: 'closed', closedAt: new Date(Number(closesAt)) };
      case 1:
        return { status: 'already-closed', closedAt: new Date(Number(closesAt)) };
      case 5:
        return { status: 'not-loaded' };
      default:
        throw new DependencyUnavailableError(
          'redis',
          `the close script answered an unknown status ${String(status)}`,
        );
    }
  }

  /** Changes the campaign's slots by `difference`, never below what was handed out (change-amount.lua). */
  async changeAmount(campaignId: string, difference: number, amount: number): Promise<AmountChange> {
    const k = this.keys(campaignId);
    const [status, remaining] = await this.call(campaignId, 'changing the amount of a campaign', () =>
      this.redis.changeAmount(
        k.window,
        k.remaining,
        `${k.users}:repair`,
        difference,
        amount,
        AMOUNT_CHANGE_REPAIR_PAUSE_MS,
      ),
    );
    switch (status) {
      case 0:
        return { status: 'changed', remaining: Number(remaining) };
      case 1:
        return { status: 'below-claimed', remaining: Number(remaining) };
      case 5:
        return { status: 'not-loaded' };
      default:
        throw new DependencyUnavailableError(
          'redis',
          `the amount script answered an unknown status ${String(status)}`,
        );
    }
  }

  /** The window, amount and counts a watcher shows, at one instant of the gate's clock. */
  async readLive(campaignId: string): Promise<LiveGateCounts> {
    const k = this.keys(campaignId);
    const [now, opensAt, closesAt, amount, remaining, pending] = (
      await this.call(campaignId, 'reading a campaign', () =>
        this.redis.readLive(k.window, k.remaining, k.pending),
      )
    ).map(Number) as [number, number, number, number, number, number];
    if (remaining < 0 || opensAt < 0) return { now: new Date(now) };
    return {
      now: new Date(now),
      gate: {
        opensAt: new Date(opensAt),
        closesAt: new Date(closesAt),
        amount: amount < 0 ? undefined : amount,
        remaining,
        pending,
      },
    };
  }

  /** Runs a command through the breaker of its campaign's shard, or the general one without a campaign. */
  private async call<T>(
    campaignId: string | undefined,
    operation: string,
    command: () => Promise<T>,
  ): Promise<T> {
    const breaker =
      campaignId !== undefined && this.campaignBreaker
        ? this.campaignBreaker(this.keys(campaignId).remaining)
        : this.breaker;
    if (breaker) return breaker.run(operation, command);
    try {
      return await command();
    } catch (error) {
      throw new DependencyUnavailableError('redis', `redis unavailable while ${operation}; retry shortly`, {
        cause: error,
      });
    }
  }
}
