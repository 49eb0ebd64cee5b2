import type { CampaignAnnouncer, CampaignRepository, LiveCampaign } from './ports.ts';

/** Gate keys outlive a campaign by a day: a campaign closed longer ago is no longer live. */
const LIVE_AFTER_CLOSE_MS = 24 * 60 * 60 * 1000;
/**
 * A miss for an id made this close to now (either way: instances' clocks differ) may be a campaign
 * just created on another instance whose announcement has not arrived: it waits for a read.
 */
const RECENT_ID_MS = 30_000;
/**
 * The periodic read goes back this far before the previous one started: instances commit out of
 * order, so a campaign whose id was made before that read may have been committed after it.
 */
const OVERLAP_MS = 2 * 60_000;
/** Every this many periodic reads, read every live campaign (a commit slower than the overlap). */
const FULL_READ_EVERY = 30;
/** On-demand reads (misses for recent ids) start at most this often, shared by every caller. */
const MIN_READ_GAP_MS = 200;

export type CampaignLookup =
  /** A campaign this instance knows of. */
  | 'live'
  /** No campaign has this id: NOT_FOUND without asking a store. */
  | 'unknown'
  /** Unknown here, but made a moment ago: only a read can tell (see `confirm`). */
  | 'recent'
  /** The directory has not been read yet (the database was down): only the stores can tell. */
  | 'not-loaded';

export interface CampaignDirectoryOptions {
  readonly campaigns: Pick<CampaignRepository, 'listLiveCampaigns'>;
  readonly announcer: CampaignAnnouncer;
  /** The local clock (ms); a test can pass its own. */
  readonly now?: () => number;
  readonly minReadGapMs?: number;
}

/**
 * The ids of every live campaign (closing after now minus a day), kept by each instance so that an
 * id outside it is NOT_FOUND from memory: a flood of made-up ids costs no store round trip.
 *
 * Campaigns are created rarely and never deleted, so the set is cheap to keep current: it is read
 * whole at start, told of each campaign created here at once and of those created elsewhere
 * through an announcement (Redis pub/sub), and read again periodically from where the last read
 * started (with an overlap), which makes up for a lost announcement. The one race left (a
 * campaign created elsewhere a moment ago, its announcement not yet here) is closed by `confirm`:
 * a miss for a recent id waits for one read, shared by every caller and rate-limited, so forged
 * recent ids cost a bounded number of queries per second however many there are.
 */
export class CampaignDirectory {
  private readonly campaigns: Pick<CampaignRepository, 'listLiveCampaigns'>;
  private readonly announcer: CampaignAnnouncer;
  private readonly now: () => number;
  private readonly minReadGapMs: number;
  /** Live campaign id -> when it closes (ms). */
  private readonly closesAt = new Map<string, number>();
  private loaded = false;
  /** When the last successful periodic or full read started (local clock). */
  private readSince = 0;
  private periodicReads = 0;
  /** The on-demand read under way, and the next one, which every caller arriving meanwhile shares. */
  private reading: Promise<void> | undefined;
  private nextRead: Promise<void> | undefined;
  private lastReadStartedAt = Number.NEGATIVE_INFINITY;

  constructor(options: CampaignDirectoryOptions) {
    this.campaigns = options.campaigns;
    this.announcer = options.announcer;
    this.now = options.now ?? Date.now;
    this.minReadGapMs = options.minReadGapMs ?? MIN_READ_GAP_MS;
  }

  get isLoaded(): boolean {
    return this.loaded;
  }

  get size(): number {
    return this.closesAt.size;
  }

  /** What this instance knows of a well-formed campaign id, without any I/O. */
  lookup(campaignId: string): CampaignLookup {
    if (this.closesAt.has(campaignId)) return 'live';
    if (!this.loaded) return 'not-loaded';
    return this.isRecent(campaignId) ? 'recent' : 'unknown';
  }

  add(campaign: LiveCampaign): void {
    this.closesAt.set(campaign.id, campaign.expiresAt.getTime());
  }

  /** A campaign was just created here: known here at once, and announced to every other instance. */
  async created(campaign: LiveCampaign): Promise<void> {
    this.add(campaign);
    await this.announcer.announce(campaign);
  }

  /**
   * A campaign was closed early here: its new close time is kept here and announced like a new
   * campaign (the announcement carries the id and close time), so every instance forgets the id
   * a day after the close rather than a day after the original end.
   */
  async closed(campaign: LiveCampaign): Promise<void> {
    this.add(campaign);
    await this.announcer.announce(campaign);
  }

  /**
   * For a 'recent' id: whether it names a live campaign according to a read that started after
   * this call (so it sees any campaign committed before the caller heard of its id).
   */
  async confirm(campaignId: string): Promise<boolean> {
    if (this.closesAt.has(campaignId)) return true;
    await this.readRecent();
    return this.closesAt.has(campaignId);
  }

  /** Reads every live campaign; until the first read succeeds, lookups answer 'not-loaded'. */
  async load(): Promise<void> {
    const startedAt = this.now();
    this.addAll(await this.campaigns.listLiveCampaigns(new Date(startedAt - LIVE_AFTER_CLOSE_MS)));
    this.loaded = true;
    this.readSince = Math.max(this.readSince, startedAt);
  }

  /**
   * The periodic read: campaigns created since shortly before the previous read, every so often
   * all of them; and forgets campaigns that are no longer live.
   */
  async refresh(): Promise<void> {
    this.periodicReads++;
    if (!this.loaded || this.periodicReads % FULL_READ_EVERY === 0) {
      await this.load();
    } else {
      const startedAt = this.now();
      this.addAll(
        await this.campaigns.listLiveCampaigns(
          new Date(startedAt - LIVE_AFTER_CLOSE_MS),
          new Date(this.readSince - OVERLAP_MS),
        ),
      );
      this.readSince = Math.max(this.readSince, startedAt);
    }
    const liveAfter = this.now() - LIVE_AFTER_CLOSE_MS;
    for (const [id, closesAt] of this.closesAt) if (closesAt <= liveAfter) this.closesAt.delete(id);
  }

  /**
   * One read of the campaigns made lately, started after this call. Callers arriving while a read
   * runs share the next one, which starts when it ends and no sooner than `minReadGapMs` after it
   * started: at most one query in flight, at a bounded rate, however many callers.
   */
  private readRecent(): Promise<void> {
    if (this.nextRead) return this.nextRead;
    const next = (async () => {
      await this.reading?.catch(() => undefined);
      const wait = this.lastReadStartedAt + this.minReadGapMs - this.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      // From here on, a new caller needs a read that starts after it: the one after this.
      this.nextRead = undefined;
      const startedAt = this.now();
      this.lastReadStartedAt = startedAt;
      const reading = this.campaigns
        .listLiveCampaigns(new Date(startedAt - LIVE_AFTER_CLOSE_MS), new Date(startedAt - 2 * RECENT_ID_MS))
        .then((campaigns) => this.addAll(campaigns));
      this.reading = reading;
      try {
        await reading;
      } finally {
        if (this.reading === reading) this.reading = undefined;
      }
    })();
    this.nextRead = next;
    return next;
  }

  private addAll(campaigns: readonly LiveCampaign[]): void {
    for (const campaign of campaigns) this.add(campaign);
  }

  private isRecent(campaignId: string): boolean {
    const madeAt = uuidV7Time(campaignId);
    return madeAt !== undefined && Math.abs(this.now() - madeAt) <= RECENT_ID_MS;
  }
}

/** The millisecond timestamp a lowercase UUIDv7 starts with; undefined for another version. */
export function uuidV7Time(id: string): number | undefined {
  if (id[14] !== '7') return undefined;
  const time = Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
  return Number.isNaN(time) ? undefined : time;
}
