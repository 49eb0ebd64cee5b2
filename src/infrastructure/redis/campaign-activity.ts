import { readFileSync } from 'node:fs';
import type { Result } from 'ioredis';
import {
  type ActiveCampaign,
  type CampaignActivity,
  DependencyUnavailableError,
} from '../../application/ports.ts';
import type { DependencyBreaker } from '../dependency-breaker.ts';
import type { RedisClient } from './client.ts';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    markActive(active: string, campaignId: string): Result<number, Context>;
    forgetActive(active: string, campaignId: string, markedAtMs: number): Result<number, Context>;
  }
}

/** Each instance writes a campaign's mark at most this often; the reconciler's margin allows for it. */
export const MARK_EVERY_MS = 1_000;
/** Past this many campaigns remembered, the ones marked over a second ago are dropped. */
const REMEMBERED_MAX = 10_000;

export interface RedisCampaignActivityOptions {
  /** Prepended to the key, as for the gate's keys. */
  readonly keyPrefix: string;
  readonly breaker?: DependencyBreaker;
  /** The local clock (ms), for spacing the marks. */
  readonly now?: () => number;
}

/**
 * The campaigns with claims lately, as one sorted set in Redis (`<prefix>active-campaigns`: id ->
 * time of the latest mark on Redis' clock), shared by every instance. Its scripts touch that one
 * key only, never a campaign's `{id}` keys: on Redis Cluster the set lives on one shard.
 */
export class RedisCampaignActivity implements CampaignActivity {
  private readonly redis: RedisClient;
  private readonly key: string;
  private readonly breaker: DependencyBreaker | undefined;
  private readonly now: () => number;
  /** Per campaign: the latest mark this instance wrote (or is writing), and until when it stands in. */
  private readonly marks = new Map<string, { until: number; stored: Promise<void> }>();

  constructor(redis: RedisClient, options: RedisCampaignActivityOptions) {
    this.redis = redis;
    this.key = `${options.keyPrefix}active-campaigns`;
    this.breaker = options.breaker;
    this.now = options.now ?? Date.now;
    for (const [name, file] of [
      ['markActive', 'mark-active.lua'],
      ['forgetActive', 'forget-active.lua'],
    ] as const) {
      redis.defineCommand(name, {
        numberOfKeys: 1,
        lua: readFileSync(new URL(file, import.meta.url), 'utf8'),
      });
    }
  }

  markActive(campaignId: string): Promise<void> {
    const now = this.now();
    const mark = this.marks.get(campaignId);
    if (mark && mark.until > now) return mark.stored;
    if (this.marks.size >= REMEMBERED_MAX) {
      for (const [id, { until }] of this.marks) if (until <= now) this.marks.delete(id);
    }
    const stored = this.call('marking a campaign active', () =>
      this.redis.markActive(this.key, campaignId),
    ).then(
      () => undefined,
      (error: unknown) => {
        // Not stored: the next claim tries again instead of trusting this one.
        if (this.marks.get(campaignId)?.stored === stored) this.marks.delete(campaignId);
        throw error;
      },
    );
    this.marks.set(campaignId, { until: now + MARK_EVERY_MS, stored });
    return stored;
  }

  async listActive(): Promise<ActiveCampaign[]> {
    const flat: unknown = await this.call('listing active campaigns', () =>
      this.redis.zrange(this.key, '0', '-1', 'WITHSCORES'),
    );
    // RESP3 answers [member, score] pairs, RESP2 one flat list; accept both.
    const items = flat as unknown[];
    const active: ActiveCampaign[] = [];
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (Array.isArray(item)) active.push({ campaignId: String(item[0]), markedAtMs: Number(item[1]) });
      else active.push({ campaignId: String(item), markedAtMs: Number(items[++i]) });
    }
    return active;
  }

  async forgetUnlessMarkedSince(mark: ActiveCampaign): Promise<boolean> {
    const forgotten = await this.call('forgetting an idle campaign', () =>
      this.redis.forgetActive(this.key, mark.campaignId, mark.markedAtMs),
    );
    return forgotten === 1;
  }

  private async call<T>(operation: string, command: () => Promise<T>): Promise<T> {
    if (this.breaker) return this.breaker.run(operation, command);
    try {
      return await command();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new DependencyUnavailableError('redis', `redis unavailable while ${operation}: ${reason}`, {
        cause: error,
      });
    }
  }
}
