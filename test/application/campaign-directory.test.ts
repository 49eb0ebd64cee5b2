import { describe, expect, it } from 'vitest';
import { CampaignDirectory, uuidV7Time } from '../../src/application/campaign-directory.ts';
import type { LiveCampaign } from '../../src/application/ports.ts';

const DAY = 24 * 60 * 60 * 1000;

/** A well-formed UUIDv7 made at `ms`, the rest random-looking. */
function idMadeAt(ms: number, tail = Math.floor(Math.random() * 2 ** 48)): string {
  const time = ms.toString(16).padStart(12, '0');
  const rest = tail.toString(16).padStart(12, '0');
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7abc-8def-${rest}`;
}

/**
 * The database's campaigns, in memory, with every read recorded. `hold()` keeps the next reads
 * from answering until `release()`, to catch the directory with a read in flight.
 */
class InMemoryCampaigns {
  readonly rows: LiveCampaign[] = [];
  readonly reads: { closingAfter: Date; createdSince: Date | undefined; startedAt: number }[] = [];
  private held: (() => void)[] | undefined;

  async listLiveCampaigns(closingAfter: Date, createdSince?: Date): Promise<LiveCampaign[]> {
    this.reads.push({ closingAfter, createdSince, startedAt: Date.now() });
    // The snapshot is taken when the read starts, as a database read would.
    const snapshot = this.rows.filter(
      (row) =>
        row.expiresAt > closingAfter &&
        (createdSince === undefined || (uuidV7Time(row.id) ?? 0) >= createdSince.getTime()),
    );
    if (this.held) await new Promise<void>((resolve) => this.held?.push(resolve));
    return snapshot;
  }

  hold(): void {
    this.held = [];
  }

  /** Lets the held reads answer; later reads answer at once. */
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const resolve of held) resolve();
  }
}

function directoryOver(campaigns: InMemoryCampaigns, options: { minReadGapMs?: number } = {}) {
  const announced: LiveCampaign[] = [];
  const directory = new CampaignDirectory({
    campaigns,
    announcer: { announce: async (campaign) => void announced.push(campaign) },
    ...options,
  });
  return { directory, announced };
}

const open = (id = idMadeAt(Date.now())) => ({ id, expiresAt: new Date(Date.now() + 60 * 60_000) });

describe('the campaign directory', () => {
  it('knows nothing until read, then tells live, unknown and recent ids apart', async () => {
    const campaigns = new InMemoryCampaigns();
    const live = open(idMadeAt(Date.now() - 60 * 60_000));
    campaigns.rows.push(live);
    const { directory } = directoryOver(campaigns);
    expect(directory.lookup(live.id)).toBe('not-loaded');

    await directory.load();
    expect(directory.lookup(live.id)).toBe('live');
    expect(directory.lookup(idMadeAt(Date.now() - 60 * 60_000))).toBe('unknown');
    expect(directory.lookup(idMadeAt(Date.now() - 1_000))).toBe('recent');
    // Made by a clock a little ahead of ours.
    expect(directory.lookup(idMadeAt(Date.now() + 5_000))).toBe('recent');
    expect(directory.lookup(idMadeAt(Date.now() + 10 * 60_000))).toBe('unknown');
    // Not a version 7 id: none of ours, however recent its first digits.
    expect(directory.lookup(idMadeAt(Date.now()).replace('-7abc-', '-4abc-'))).toBe('unknown');
  });

  it('reads only campaigns that close after a day ago, and forgets those that no longer do', async () => {
    const campaigns = new InMemoryCampaigns();
    const closed = { id: idMadeAt(Date.now() - 3 * DAY), expiresAt: new Date(Date.now() - 2 * DAY) };
    const closing = { id: idMadeAt(Date.now() - 3 * DAY), expiresAt: new Date(Date.now() - DAY + 50) };
    campaigns.rows.push(closed, closing);
    const { directory } = directoryOver(campaigns);
    await directory.load();
    expect(directory.lookup(closed.id)).toBe('unknown');
    expect(directory.lookup(closing.id)).toBe('live');
    await new Promise((resolve) => setTimeout(resolve, 60));
    await directory.refresh();
    expect(directory.lookup(closing.id)).toBe('unknown');
  });

  it('knows a campaign created here at once and announces it', async () => {
    const { directory, announced } = directoryOver(new InMemoryCampaigns());
    await directory.load();
    const campaign = open();
    await directory.created(campaign);
    expect(directory.lookup(campaign.id)).toBe('live');
    expect(announced).toEqual([campaign]);
  });

  it('reads again from shortly before its previous read, for campaigns committed out of order', async () => {
    const campaigns = new InMemoryCampaigns();
    const { directory } = directoryOver(campaigns);
    await directory.load();
    // Its id was made before the first read started, its row committed after that read.
    const late = open(idMadeAt(Date.now() - 20_000));
    campaigns.rows.push(late);
    await directory.refresh();
    expect(directory.lookup(late.id)).toBe('live');
    const [first, second] = campaigns.reads;
    expect(first?.createdSince).toBeUndefined();
    expect(second?.createdSince?.getTime()).toBeLessThanOrEqual((first?.startedAt ?? 0) - 60_000);
  });

  it('confirms a recent id with one read that started after the call, shared by every caller', async () => {
    const campaigns = new InMemoryCampaigns();
    const { directory } = directoryOver(campaigns, { minReadGapMs: 0 });
    await directory.load();
    const reads = campaigns.reads.length;

    // A read is in flight when the campaign commits and its id reaches us: that read cannot see it.
    campaigns.hold();
    const forged = Array.from({ length: 1_000 }, () => idMadeAt(Date.now()));
    const early = directory.confirm(forged[0] as string);
    await new Promise((resolve) => setImmediate(resolve));
    const created = open();
    campaigns.rows.push(created);
    const confirmations = [directory.confirm(created.id), ...forged.map((id) => directory.confirm(id))];
    campaigns.release();
    expect(await early).toBe(false);
    const [createdKnown, ...forgedKnown] = await Promise.all(confirmations);
    expect(createdKnown).toBe(true);
    expect(forgedKnown.every((known) => !known)).toBe(true);
    // The read in flight and the one after it, for a thousand and one callers.
    expect(campaigns.reads.length - reads).toBe(2);
  });

  it('starts reads for recent ids no more often than the gap allows, however many callers', async () => {
    const campaigns = new InMemoryCampaigns();
    const { directory } = directoryOver(campaigns, { minReadGapMs: 50 });
    await directory.load();
    const reads = campaigns.reads.length;
    const started = Date.now();
    const waiting: Promise<boolean>[] = [];
    while (Date.now() - started < 500) {
      for (let i = 0; i < 20; i++) waiting.push(directory.confirm(idMadeAt(Date.now())));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await Promise.all(waiting);
    const elapsed = Date.now() - started;
    expect(waiting.length).toBeGreaterThan(1_000);
    expect(campaigns.reads.length - reads).toBeLessThanOrEqual(Math.ceil(elapsed / 50) + 1);
  });

  it('fails the callers of a read that fails, and the next read goes ahead', async () => {
    const campaigns = new InMemoryCampaigns();
    const { directory } = directoryOver(campaigns, { minReadGapMs: 0 });
    await directory.load();
    const list = campaigns.listLiveCampaigns.bind(campaigns);
    campaigns.listLiveCampaigns = async () => {
      throw new Error('database down');
    };
    await expect(directory.confirm(idMadeAt(Date.now()))).rejects.toThrow('database down');
    campaigns.listLiveCampaigns = list;
    const created = open();
    campaigns.rows.push(created);
    await expect(directory.confirm(created.id)).resolves.toBe(true);
  });
});
