import { readFileSync } from 'node:fs';
import type { Result } from 'ioredis';
import {
  type ActiveCampaign,
  type ActiveCampaigns,
  type CampaignActivity,
  DependencyUnavailableError,
} from '../../application/ports.ts';
import type { DependencyBreaker } from '../dependency-breaker.ts';
import type { RedisClient } from './client.ts';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    markActive(active: string, campaignId: string): Result<number, Context>;
    forgetActive(active: string, campaignId: string, markedAtMs: number): Result<number, Context>;
    listActive(active: string): Result<(string | number)[], Context>;
  }
}

/** Each instance writes a campaign's mark at most this often; the reconciler's margin allows for it. */
export const MARK_EVERY_MS = 1_000;
/** Past this many campaigns remembered, the ones whose marks no longer stand are dropped. */
const REMEMBERED_MAX = 10_000;

export interface RedisCampaignActivityOptions {
  /** Prepended to the key, as for the gate's keys. */
  readonly keyPrefix: string;
  /** The breaker for the set's key (on a cluster: its master's, see ShardBreakers). */
  readonly breaker?: (key: string) => DependencyBreaker;
  /**
   * How long a stored mark keeps a campaign listed for certain: under the reconciler's idle
   * margin (it forgets a campaign only after that long without a mark), less the longest a
   * pass takes. Claims within it go on without waiting for the next mark.
   */
  readonly markStandsForMs: number;
  /** Told of a mark that could not be stored; the claim went on without it. */
  readonly onMarkFailed?: (campaignId: string, error: unknown) => void;
  /** The local clock (ms), for spacing the marks. */
  readonly now?: () => number;
}

interface Mark {
  /** When (local clock) the latest mark that was stored was sent. */
  storedAt: number;
  /** When (local clock) the latest mark was sent. */
  sentAt: number;
  /** The mark on its way; resolves stored or not. */
  writing: Promise<void> | undefined;
}

const DONE = Promise.resolve();

/**
 * The campaigns with claims lately, as one sorted set in Redis (`<prefix>active-campaigns`: id ->
 * time of the latest mark on Redis' clock), shared by every instance. Its scripts touch that one
 * key only, never a campaign's `{id}` keys: on Redis Cluster the set lives on one shard.
 *
 * The set only speeds up settling: the reconciler's sweep visits every live campaign anyway
 * (within ceil(live / sweep size) passes). So a mark that cannot be stored, because the shard
 * holding the set is failing, never fails a claim: the claim goes on, and if its instance dies
 * the sweep finds it. One shard's failure thus never stops the campaigns on the others.
 */
export class RedisCampaignActivity implements CampaignActivity {
  private readonly redis: RedisClient;
  private readonly key: string;
  private readonly breaker: ((key: string) => DependencyBreaker) | undefined;
  private readonly markStandsForMs: number;
  private readonly onMarkFailed: (campaignId: string, error: unknown) => void;
  private readonly now: () => number;
  private readonly marks = new Map<string, Mark>();

  constructor(redis: RedisClient, options: RedisCampaignActivityOptions) {
    this.redis = redis;
    this.key = `${options.keyPrefix}active-campaigns`;
    this.breaker = options.breaker;
    this.markStandsForMs = options.markStandsForMs;
    this.onMarkFailed = options.onMarkFailed ?? (() => undefined);
    this.now = options.now ?? Date.now;
    for (const [name, file] of [
      ['markActive', 'mark-active.lua'],
      ['forgetActive', 'forget-active.lua'],
      ['listActive', 'list-active.lua'],
    ] as const) {
      redis.defineCommand(name, {
        numberOfKeys: 1,
        lua: readFileSync(new URL(file, import.meta.url), 'utf8'),
      });
    }
  }

  /**
   * Resolves at once while a mark this instance stored lately still stands; otherwise once the
   * mark on its way is stored or has failed. Never rejects. Sends at most one mark a second per
   * campaign.
   */
  markActive(campaignId: string): Promise<void> {
    const now = this.now();
    let mark = this.marks.get(campaignId);
    if (mark === undefined) {
      if (this.marks.size >= REMEMBERED_MAX) this.forgetOldMarks(now);
      mark = { storedAt: Number.NEGATIVE_INFINITY, sentAt: Number.NEGATIVE_INFINITY, writing: undefined };
      this.marks.set(campaignId, mark);
    }
    if (mark.writing === undefined && now - mark.sentAt >= MARK_EVERY_MS)
      this.sendMark(campaignId, mark, now);
    if (now - mark.storedAt < this.markStandsForMs) return DONE;
    return mark.writing ?? DONE;
  }

  private sendMark(campaignId: string, mark: Mark, now: number): void {
    mark.sentAt = now;
    const writing = this.call('marking a campaign active', () =>
      this.redis.markActive(this.key, campaignId),
    ).then(
      () => {
        mark.storedAt = now;
      },
      (error: unknown) => this.onMarkFailed(campaignId, error),
    );
    mark.writing = writing;
    void writing.finally(() => {
      if (mark.writing === writing) mark.writing = undefined;
    });
  }

  private forgetOldMarks(now: number): void {
    for (const [id, mark] of this.marks) {
      if (mark.writing === undefined && now - mark.sentAt >= this.markStandsForMs) this.marks.delete(id);
    }
  }

  async listActive(): Promise<ActiveCampaigns> {
    const [now, ...flat] = await this.call('listing active campaigns', () => this.redis.listActive(this.key));
    const marks: ActiveCampaign[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      marks.push({ campaignId: String(flat[i]), markedAtMs: Number(flat[i + 1]) });
    }
    return { marks, nowMs: Number(now) };
  }

  async forgetUnlessMarkedSince(mark: ActiveCampaign): Promise<boolean> {
    const forgotten = await this.call('forgetting an idle campaign', () =>
      this.redis.forgetActive(this.key, mark.campaignId, mark.markedAtMs),
    );
    return forgotten === 1;
  }

  private async call<T>(operation: string, command: () => Promise<T>): Promise<T> {
    if (this.breaker) return this.breaker(this.key).run(operation, command);
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
