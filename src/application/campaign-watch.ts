import { type Campaign, type CampaignView, campaignIdOrThrow, viewOf } from '../domain/campaign.ts';
import { CampaignNotFoundError } from '../domain/errors.ts';
import type { CampaignGateControls, CampaignRepository, LiveGateCounts } from './ports.ts';

export interface CampaignWatchOptions {
  /** How often a watched campaign is read (once per campaign, whatever the number of watchers). */
  readonly pollMs?: number;
  /** Least time between two messages of one stream: at most 1000 / this messages a second. */
  readonly minGapMs?: number;
  /**
   * Messages a second this instance sends to all its watchers at most: with many watchers, each
   * stream's gap grows past `minGapMs` (10,000 watchers at 2,000/s: one message every 5 s each),
   * so a crowd of watchers cannot take the CPU the issue path needs.
   */
  readonly messagesPerSecond?: number;
  /** A stream ends after this long (the client reconnects): no stream holds a connection forever. */
  readonly maxLifetimeMs: number;
  /** Once a campaign ends, how long the last message may wait for claims still being written. */
  readonly settleMs?: number;
  /** How often the database's row is read again (name, amount, window) while a campaign is watched. */
  readonly rowEveryMs?: number;
}

/** One watched campaign on this instance: one reader, shared by all its watchers. */
interface Feed {
  readonly campaignId: string;
  watchers: number;
  latest: CampaignView;
  /** Raised on every change worth a message; each stream remembers the one it sent last. */
  version: number;
  /** The campaign ended and `latest` is its final state: streams send it and end. */
  ended: boolean;
  /** Streams waiting for the next change: each is woken once, then waits again if it likes. */
  readonly waiting: Set<() => void>;
  row: Campaign;
  rowReadAt: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/**
 * Live views of campaigns for WatchCampaign. Each watched campaign has one feed per instance: one
 * read of its gate (one Redis script call) every `pollMs` and of its row every `rowEveryMs`,
 * however many streams watch it; each stream takes the feed's latest view at its own pace, at most
 * one message per `minGapMs` (more apart when the instance's `messagesPerSecond` would be passed),
 * so a slow client skips views rather than queueing them.
 *
 * The issued count shown is the larger of the database's count (read every `rowEveryMs`) and the
 * gate's confirmed claims (amount - remaining - pending: slots handed out whose coupon row is
 * written). Both only count coupons that exist, so the count never runs ahead of the rows and
 * never falls, except when the reconciler gives back a slot it found leaked. When the campaign
 * ends, the last message waits (at most `settleMs`) for the claims still being written and shows
 * the database's final count.
 */
export class CampaignWatch {
  private readonly campaigns: Pick<CampaignRepository, 'findById'>;
  private readonly gate: Pick<CampaignGateControls, 'readLive'>;
  private readonly pollMs: number;
  private readonly minGapMs: number;
  private readonly messagesPerSecond: number;
  private readonly maxLifetimeMs: number;
  /** Streams open on this instance, over every campaign. */
  private watchers = 0;
  private readonly settleMs: number;
  private readonly rowEveryMs: number;
  private readonly feeds = new Map<string, Feed>();
  private readonly starting = new Map<string, Promise<Feed>>();
  private readonly closing = new AbortController();

  constructor(deps: {
    campaigns: Pick<CampaignRepository, 'findById'>;
    gate: Pick<CampaignGateControls, 'readLive'>;
    options: CampaignWatchOptions;
  }) {
    this.campaigns = deps.campaigns;
    this.gate = deps.gate;
    this.pollMs = deps.options.pollMs ?? 100;
    this.minGapMs = deps.options.minGapMs ?? 100;
    this.messagesPerSecond = deps.options.messagesPerSecond ?? Number.POSITIVE_INFINITY;
    this.maxLifetimeMs = deps.options.maxLifetimeMs;
    this.settleMs = deps.options.settleMs ?? 5_000;
    this.rowEveryMs = deps.options.rowEveryMs ?? 1_000;
  }

  /** Streams open on this instance now. */
  get openStreams(): number {
    return this.watchers;
  }

  /** Campaigns watched on this instance now (each costs one reader). */
  get watchedCampaigns(): number {
    return this.feeds.size;
  }

  /**
   * The campaign now, then after every change of its issued count, state or amount, at most one
   * message per `minGapMs`, until it ends (its final state last), the lifetime is up, `signal`
   * aborts (the client left) or the watch closes (shutdown).
   */
  async *watch(campaignId: string, signal: AbortSignal): AsyncGenerator<CampaignView> {
    campaignIdOrThrow(campaignId);
    const feed = await this.join(campaignId);
    this.watchers++;
    const stop = AbortSignal.any([signal, this.closing.signal, AbortSignal.timeout(this.maxLifetimeMs)]);
    const stopped = new Promise<void>((resolve) => {
      if (stop.aborted) resolve();
      stop.addEventListener('abort', () => resolve(), { once: true });
    });
    try {
      let sent = feed.version;
      let sentAt = performance.now();
      yield feed.latest;
      while (!(feed.ended && sent === feed.version) && !stop.aborted) {
        if (sent === feed.version) {
          let wake = () => undefined as unknown;
          const changed = new Promise<void>((resolve) => {
            wake = resolve;
          });
          feed.waiting.add(wake);
          await Promise.race([changed, stopped]);
          feed.waiting.delete(wake);
        }
        if (stop.aborted) break;
        const gap = sentAt + this.gapMs() - performance.now();
        if (gap > 0) await Promise.race([sleep(gap), stopped]);
        // A shutdown or the lifetime ends the stream; the final state of an ended campaign is still sent.
        if (stop.aborted && !feed.ended) break;
        sent = feed.version;
        sentAt = performance.now();
        yield feed.latest;
      }
    } finally {
      this.watchers--;
      feed.watchers--;
      // The reader stops by itself once no one watches.
    }
  }

  /** The least time between two messages of a stream now: `minGapMs`, more with many watchers. */
  private gapMs(): number {
    return Math.max(this.minGapMs, (1_000 * this.watchers) / this.messagesPerSecond);
  }

  /** Ends every stream (shutdown). */
  close(): void {
    this.closing.abort();
  }

  /**
   * The campaign's feed, counting one more watcher. A running feed counts it at once, so its reader
   * (which stops when it sees no watcher) cannot stop between the lookup and the count; a feed
   * being started counts it before its reader's first poll.
   */
  private async join(campaignId: string): Promise<Feed> {
    const running = this.feeds.get(campaignId);
    if (running && !running.ended) {
      running.watchers++;
      return running;
    }
    let starting = this.starting.get(campaignId);
    if (!starting) {
      starting = this.startFeed(campaignId).finally(() => this.starting.delete(campaignId));
      this.starting.set(campaignId, starting);
    }
    const feed = await starting;
    feed.watchers++;
    return feed;
  }

  private async startFeed(campaignId: string): Promise<Feed> {
    const row = await this.campaigns.findById(campaignId);
    if (!row) throw new CampaignNotFoundError('id', campaignId);
    const live = await this.gate.readLive(campaignId);
    const feed: Feed = {
      campaignId,
      watchers: 0,
      latest: viewFrom(row, live, row.issuedCount),
      version: 0,
      ended: false,
      waiting: new Set(),
      row,
      rowReadAt: performance.now(),
    };
    if (feed.latest.state === 'ended') {
      feed.ended = true;
      return feed;
    }
    this.feeds.set(campaignId, feed);
    void this.follow(feed);
    return feed;
  }

  /** The one reader of a feed: polls while anyone watches, publishes changes, ends with the campaign. */
  private async follow(feed: Feed): Promise<void> {
    try {
      // The first watcher joins right after the start; a feed nobody joined stops after one poll.
      while (!this.closing.signal.aborted) {
        await sleep(this.pollMs);
        if (feed.watchers === 0) return;
        let view: CampaignView;
        try {
          view = await this.read(feed);
        } catch {
          continue; // A store that did not answer: watchers keep the last view; try again.
        }
        if (view.state === 'ended') {
          this.publish(feed, await this.finalView(feed));
          feed.ended = true;
          return;
        }
        const last = feed.latest;
        if (
          view.issuedCount !== last.issuedCount ||
          view.state !== last.state ||
          view.amount !== last.amount
        ) {
          this.publish(feed, view);
        }
      }
    } finally {
      if (this.feeds.get(feed.campaignId) === feed) this.feeds.delete(feed.campaignId);
      wakeInTurns(feed);
    }
  }

  private async read(feed: Feed): Promise<CampaignView> {
    if (performance.now() - feed.rowReadAt >= this.rowEveryMs) {
      const row = await this.campaigns.findById(feed.campaignId);
      if (row) feed.row = row;
      feed.rowReadAt = performance.now();
    }
    const live = await this.gate.readLive(feed.campaignId);
    // Never below what was shown: the row's count is a second old, the gate's may lag a confirm.
    return viewFrom(feed.row, live, Math.max(feed.latest.issuedCount, feed.row.issuedCount));
  }

  /** The final state: once no claim is pending (or `settleMs` has passed), the database's count. */
  private async finalView(feed: Feed): Promise<CampaignView> {
    const deadline = performance.now() + this.settleMs;
    let live = await this.gate.readLive(feed.campaignId).catch(() => undefined);
    while ((live?.gate?.pending ?? 0) > 0 && performance.now() < deadline) {
      await sleep(this.pollMs);
      live = await this.gate.readLive(feed.campaignId).catch(() => undefined);
    }
    const row = (await this.campaigns.findById(feed.campaignId).catch(() => undefined)) ?? feed.row;
    const closesAt = live?.gate?.closesAt ?? row.expiresAt;
    return {
      ...row,
      issuedCount: Math.max(row.issuedCount, feed.latest.issuedCount),
      expiresAt: new Date(Math.min(closesAt.getTime(), row.expiresAt.getTime())),
      state: 'ended',
    };
  }

  private publish(feed: Feed, view: CampaignView): void {
    feed.latest = view;
    feed.version++;
    wakeInTurns(feed);
  }
}

/**
 * Streams woken per turn of the event loop. Every watcher of a campaign wakes on the same change;
 * waking 10,000 in one turn would hold the event loop for the whole fan-out (tens of ms per
 * thousand messages), and every IssueCoupon arriving meanwhile would wait behind it.
 */
const WAKE_PER_TURN = 100;

function wakeInTurns(feed: Feed): void {
  const woken = [...feed.waiting];
  feed.waiting.clear();
  let next = 0;
  const turn = () => {
    const end = Math.min(next + WAKE_PER_TURN, woken.length);
    while (next < end) woken[next++]?.();
    if (next < woken.length) setImmediate(turn);
  };
  turn();
}

/**
 * The campaign as the gate has it now: its window (a close shows at once), its amount (a change
 * shows at once) and its confirmed claims; from the row alone when the gate does not hold it.
 */
function viewFrom(row: Campaign, live: LiveGateCounts, shownAtLeast: number): CampaignView {
  const gate = live.gate;
  if (!gate) return viewOf({ ...row, issuedCount: Math.max(row.issuedCount, shownAtLeast) }, live.now);
  const amount = gate.amount ?? row.amount;
  const confirmed = Math.max(0, Math.min(amount, amount - gate.remaining - gate.pending));
  return viewOf(
    {
      ...row,
      amount,
      issuedCount: Math.max(confirmed, Math.min(shownAtLeast, amount)),
      issuedAt: gate.opensAt,
      expiresAt: gate.closesAt,
    },
    live.now,
  );
}
