import type { EntityManager } from '@mikro-orm/mariadb';
import { v7 as uuidv7 } from 'uuid';
import type { CampaignGateState, CampaignRepository, LiveCampaign } from '../../application/ports.ts';
import type { Campaign, NewCampaign } from '../../domain/campaign.ts';
import { CampaignNameTakenError } from '../../domain/errors.ts';
import type { DependencyBreaker } from '../dependency-breaker.ts';
import { guarded, utcDate, violatedUniqueKey } from './errors.ts';
import type { Database } from './orm.ts';

interface CampaignRow {
  id: string;
  name: string;
  amount: number;
  issued_count: number;
  issued_at: string;
  expires_at: string;
}

/** Ids in one `in (...)` list; more are read in several queries. */
const IDS_PER_QUERY = 500;

const SELECT_CAMPAIGN = 'select id, name, amount, issued_count, issued_at, expires_at from campaign';

function toCampaign(row: CampaignRow): Campaign {
  return {
    id: row.id,
    name: row.name,
    amount: Number(row.amount),
    issuedCount: Number(row.issued_count),
    issuedAt: utcDate(row.issued_at),
    expiresAt: utcDate(row.expires_at),
  };
}

/**
 * The smallest UUIDv7 made at `instant`: a v7 id starts with its 48-bit millisecond timestamp in
 * hex, so every id made since then sorts at or after this one.
 */
function firstIdMadeAt(instant: Date): string {
  const hex = Math.max(0, instant.getTime()).toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

export class MikroOrmCampaignRepository implements CampaignRepository {
  private readonly db: Database;
  private readonly breaker: DependencyBreaker | undefined;
  private readonly readsBreaker: DependencyBreaker | undefined;

  /** `readsBreaker` guards the large reads (a campaign with every code), apart from the issue path. */
  constructor(db: Database, breaker?: DependencyBreaker, readsBreaker = breaker) {
    this.db = db;
    this.breaker = breaker;
    this.readsBreaker = readsBreaker;
  }

  async create(campaign: NewCampaign): Promise<Campaign> {
    // UUIDv7 ids are unguessable enough for a public id and sort by creation, which keeps the
    // primary key index append-only.
    const id = uuidv7();
    await guarded(this.breaker, 'creating a campaign', async () => {
      try {
        await this.db.em.fork().execute(
          `insert into campaign (id, name, amount, issued_count, issued_at, expires_at, created_at)
           values (?, ?, ?, 0, ?, ?, ?)`,
          [id, campaign.name, campaign.amount, campaign.issuedAt, campaign.expiresAt, new Date()],
          'run',
        );
      } catch (error) {
        if (violatedUniqueKey(error) === 'campaign_name_unique')
          throw new CampaignNameTakenError(campaign.name);
        throw error;
      }
    });
    return { id, issuedCount: 0, ...campaign };
  }

  async findByName(name: string): Promise<Campaign | undefined> {
    return guarded(this.readsBreaker, 'reading a campaign', async () => {
      const [row] = await this.db.em
        .fork()
        .execute<CampaignRow[]>(`${SELECT_CAMPAIGN} where name = ?`, [name]);
      return row && toCampaign(row);
    });
  }

  async findByNameWithCodes(
    name: string,
  ): Promise<{ campaign: Campaign; couponCodes: string[] } | undefined> {
    // One transaction is one InnoDB snapshot: issued_count and the codes agree even mid-rush.
    return this.inSnapshot(this.readsBreaker, 'reading a campaign and its codes', async (em) => {
      const [row] = await em.execute<CampaignRow[]>(`${SELECT_CAMPAIGN} where name = ?`, [name]);
      if (!row) return undefined;
      const codes = await em.execute<{ code: string }[]>(
        'select code from coupon where campaign_id = ? order by id',
        [row.id],
      );
      return { campaign: toCampaign(row), couponCodes: codes.map((c) => c.code) };
    });
  }

  async loadGateState(campaignId: string): Promise<CampaignGateState | undefined> {
    return this.inSnapshot(this.breaker, 'loading a campaign', async (em) => {
      const [row] = await em.execute<CampaignRow[]>(`${SELECT_CAMPAIGN} where id = ?`, [campaignId]);
      if (!row) return undefined;
      const users = await em.execute<{ user_id: string }[]>(
        'select user_id from coupon where campaign_id = ?',
        [row.id],
      );
      return { campaign: toCampaign(row), userIds: users.map((u) => u.user_id) };
    });
  }

  async listLiveCampaigns(closingAfter: Date, createdSince?: Date): Promise<LiveCampaign[]> {
    return guarded(this.breaker, 'listing live campaigns', async () => {
      const rows = await this.db.em
        .fork()
        .execute<Pick<CampaignRow, 'id' | 'expires_at'>[]>(
          createdSince
            ? 'select id, expires_at from campaign where id >= ? and expires_at > ?'
            : 'select id, expires_at from campaign where expires_at > ?',
          createdSince ? [firstIdMadeAt(createdSince), closingAfter] : [closingAfter],
        );
      return rows.map((row) => ({ id: row.id, expiresAt: utcDate(row.expires_at) }));
    });
  }

  async listCampaignsClosingAfter(
    closingAfter: Date,
    page: { afterId: string; limit: number },
  ): Promise<Campaign[]> {
    return guarded(this.breaker, 'listing campaigns', async () => {
      const rows = await this.db.em
        .fork()
        .execute<CampaignRow[]>(`${SELECT_CAMPAIGN} where id > ? and expires_at > ? order by id limit ?`, [
          page.afterId,
          closingAfter,
          page.limit,
        ]);
      return rows.map(toCampaign);
    });
  }

  async findCampaigns(ids: readonly string[]): Promise<Campaign[]> {
    const found: Campaign[] = [];
    for (let i = 0; i < ids.length; i += IDS_PER_QUERY) {
      const chunk = ids.slice(i, i + IDS_PER_QUERY);
      const rows = await guarded(this.breaker, 'reading campaigns', () =>
        this.db.em
          .fork()
          .execute<CampaignRow[]>(
            `${SELECT_CAMPAIGN} where id in (${chunk.map(() => '?').join(', ')})`,
            chunk,
          ),
      );
      found.push(...rows.map(toCampaign));
    }
    return found;
  }

  private inSnapshot<T>(
    breaker: DependencyBreaker | undefined,
    operation: string,
    read: (em: EntityManager) => Promise<T>,
  ): Promise<T> {
    return guarded(breaker, operation, () =>
      this.db.em.fork().transactional((em) => read(em as EntityManager), { readOnly: true }),
    );
  }
}
