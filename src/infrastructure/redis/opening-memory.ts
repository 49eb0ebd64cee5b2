/**
 * What this process can prove about campaigns that have not opened yet, so a crowd that arrives
 * early is answered "opens at ..." without a Redis round trip each.
 *
 * A claim answered "not started" carries the time Redis' clock read when it judged the claim (R),
 * and the claim was sent at local time S (monotonic, before the send: the judgement came after).
 * At a later local time L, Redis' clock can read at most R + (L - S), stretched by a drift allowance:
 * while that bound plus a margin is before the opening, the campaign is provably not open on the
 * clock that judges it, and refusing cannot be late. A sample is believed for `trustMs` at most
 * (a stepped clock, a changed window), and never within the margin of the opening: those calls
 * go to Redis, which alone decides the first claim.
 */
export interface OpeningMemoryOptions {
  /** How long one "not started" answer is believed. */
  readonly trustMs: number;
  /** How far before the opening calls go to Redis again, whatever the bound says. */
  readonly marginMs: number;
  /** Campaigns remembered at most; past it the oldest sample is dropped. */
  readonly maxCampaigns?: number;
  /** A monotonic clock in ms (performance.now by default). */
  readonly now?: () => number;
}

/** Far above what a crystal drifts (tens of ppm): a thousandth of the time since the sample. */
const DRIFT_ALLOWANCE = 1e-3;

interface Opening {
  readonly opensAtMs: number;
  /** Redis' clock when it judged the claim. */
  readonly redisNowMs: number;
  /** Local monotonic time the claim was sent (before it reached Redis). */
  readonly sentAtMs: number;
}

/** The latest Redis' clock can read at local time `now`, by one sample. */
function latestRedisNow(opening: Opening, now: number): number {
  return opening.redisNowMs + (now - opening.sentAtMs) * (1 + DRIFT_ALLOWANCE);
}

export class OpeningMemory {
  private readonly trustMs: number;
  private readonly marginMs: number;
  private readonly maxCampaigns: number;
  readonly now: () => number;
  private readonly openings = new Map<string, Opening>();

  constructor(options: OpeningMemoryOptions) {
    this.trustMs = options.trustMs;
    this.marginMs = options.marginMs;
    this.maxCampaigns = options.maxCampaigns ?? 10_000;
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * A claim sent at `sentAtMs` (this clock) was judged "not started" with Redis' clock at `redisNow`.
   * Of two samples of one opening, the one that bounds Redis' clock lower now is kept: every
   * sample is a true bound, and the tightest lets this process prove "early" closest to the
   * opening. The answers of a busy moment (a claim batch waiting a turn, a slow round trip) bound
   * loosely; calls that reach Redis in the last few ms before the opening are judged only when
   * their claim gets there, after the opening if the service is behind, so a loose bound lets
   * calls that arrived before the opening win over calls that arrived after it.
   */
  learn(campaignId: string, opensAt: Date, redisNow: Date, sentAtMs: number): void {
    const sample: Opening = { opensAtMs: opensAt.getTime(), redisNowMs: redisNow.getTime(), sentAtMs };
    const held = this.openings.get(campaignId);
    if (held !== undefined) {
      const now = this.now();
      if (
        held.opensAtMs === sample.opensAtMs &&
        now - held.sentAtMs <= this.trustMs &&
        latestRedisNow(held, now) <= latestRedisNow(sample, now)
      )
        return;
    } else if (this.openings.size >= this.maxCampaigns) {
      this.openings.delete(this.openings.keys().next().value as string);
    }
    this.openings.set(campaignId, sample);
  }

  /** When the campaign opens, if this process can prove it has not opened yet; else undefined. */
  provenNotOpen(campaignId: string): Date | undefined {
    const opening = this.openings.get(campaignId);
    if (opening === undefined) return undefined;
    const now = this.now();
    if (
      now - opening.sentAtMs > this.trustMs ||
      latestRedisNow(opening, now) + this.marginMs >= opening.opensAtMs
    ) {
      this.openings.delete(campaignId);
      return undefined;
    }
    return new Date(opening.opensAtMs);
  }

  forget(campaignId: string): void {
    this.openings.delete(campaignId);
  }
}
