import type { QueryResult } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/mariadb';
import { v7 as uuidv7 } from 'uuid';
import type {
  CampaignEventInput,
  CampaignEventRecord,
  CampaignGateState,
  CampaignRepository,
  CouponRecord,
  LiveCampaign,
  LockedDecision,
} from '../../application/ports.ts';
import type { Campaign, CampaignState, NewCampaign } from '../../domain/campaign.ts';
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
  coupon_valid_for_ms: number | string | null;
}

/** Ids in one `in (...)` list; more are read in several queries. */
const IDS_PER_QUERY = 500;

const SELECT_CAMPAIGN =
  'select id, name, amount, issued_count, issued_at, expires_at, coupon_valid_for_ms from campaign';

/**
 * Each state as a condition on the window and counts at an instant `?` (the gate's clock), exactly
 * as `campaignState` decides it.
 */
const STATE_CONDITION: Record<CampaignState, { sql: string; instants: number }> = {
  ended: { sql: 'expires_at <= ?', instants: 1 },
  scheduled: { sql: 'expires_at > ? and issued_at > ?', instants: 2 },
  'sold-out': { sql: 'expires_at > ? and issued_at <= ? and issued_count >= amount', instants: 2 },
  open: { sql: 'expires_at > ? and issued_at <= ? and issued_count < amount', instants: 2 },
};

function toCampaign(row: CampaignRow): Campaign {
  return {
    id: row.id,
    name: row.name,
    amount: Number(row.amount),
    issuedCount: Number(row.issued_count),
    issuedAt: utcDate(row.issued_at),
    expiresAt: utcDate(row.expires_at),
    ...(row.coupon_valid_for_ms !== null ? { couponValidForMs: Number(row.coupon_valid_for_ms) } : {}),
  };
}

function insertEvent(em: EntityManager, campaignId: string, event: CampaignEventInput) {
  return em.execute(
    'insert into campaign_event (campaign_id, kind, detail, actor, at) values (?, ?, ?, ?, ?)',
    [campaignId, event.kind, event.detail, event.actor, event.at],
    'run',
  );
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

  async create(
    campaign: NewCampaign,
    created: { actor: string; at: Date } = { actor: 'anonymous', at: new Date() },
  ): Promise<Campaign> {
    // UUIDv7 ids are unguessable enough for a public id and sort by creation, which keeps the
    // primary key index append-only.
    const id = uuidv7();
    await guarded(this.breaker, 'creating a campaign', async () => {
      try {
        await this.db.em.fork().transactional(async (em) => {
          await em.execute(
            `insert into campaign (id, name, amount, issued_count, issued_at, expires_at, created_at, coupon_valid_for_ms)
             values (?, ?, ?, 0, ?, ?, ?, ?)`,
            [
              id,
              campaign.name,
              campaign.amount,
              campaign.issuedAt,
              campaign.expiresAt,
              new Date(),
              campaign.couponValidForMs ?? null,
            ],
            'run',
          );
          await insertEvent(em as EntityManager, id, {
            kind: 'created',
            detail: `amount ${campaign.amount}, ${campaign.issuedAt.toISOString()} to ${campaign.expiresAt.toISOString()}`,
            actor: created.actor,
            at: created.at,
          });
        });
      } catch (error) {
        if (violatedUniqueKey(error) === 'campaign_name_unique')
          throw new CampaignNameTakenError(campaign.name);
        throw error;
      }
    });
    return { id, issuedCount: 0, ...campaign };
  }

  async recordEvent(campaignId: string, event: CampaignEventInput): Promise<void> {
    await guarded(this.breaker, 'recording a campaign event', () =>
      insertEvent(this.db.em.fork() as EntityManager, campaignId, event),
    );
  }

  async findById(campaignId: string): Promise<Campaign | undefined> {
    return guarded(this.readsBreaker, 'reading a campaign', async () => {
      const [row] = await this.db.em
        .fork()
        .execute<CampaignRow[]>(`${SELECT_CAMPAIGN} where id = ?`, [campaignId]);
      return row && toCampaign(row);
    });
  }

  async listCampaigns(query: {
    now: Date;
    state?: CampaignState;
    beforeId?: string;
    limit: number;
  }): Promise<Campaign[]> {
    const conditions: string[] = [];
    const params: unknown[] = [];
    if (query.beforeId !== undefined) {
      conditions.push('id < ?');
      params.push(query.beforeId);
    }
    if (query.state) {
      const { sql, instants } = STATE_CONDITION[query.state];
      conditions.push(sql);
      for (let i = 0; i < instants; i++) params.push(query.now);
    }
    const where = conditions.length > 0 ? ` where ${conditions.join(' and ')}` : '';
    // The primary key read backwards: newest first, a page at a time from where the last one ended.
    return guarded(this.readsBreaker, 'listing campaigns', async () => {
      const rows = await this.db.em
        .fork()
        .execute<CampaignRow[]>(`${SELECT_CAMPAIGN}${where} order by id desc limit ?`, [
          ...params,
          query.limit,
        ]);
      return rows.map(toCampaign);
    });
  }

  /**
   * Keyset pagination on (campaign_id, id): each page is a range of coupon_campaign_order_index,
   * O(page size) however many coupons the campaign has. Stable while issuing goes on: every
   * transaction inserting a campaign's coupons holds the campaign's row first (it raises
   * issued_count), so the campaign's coupon ids are allocated and committed in increasing order,
   * and a page never sees a later id before an earlier one is committed. New coupons appear on
   * later pages; none is skipped or shown twice.
   */
  async listCoupons(campaignId: string, afterId: number, limit: number): Promise<CouponRecord[]> {
    return guarded(this.readsBreaker, 'listing coupons', async () => {
      const rows = await this.db.em
        .fork()
        .execute<{ id: number | string; code: string; user_id: string; issued_at: string }[]>(
          'select id, code, user_id, issued_at from coupon where campaign_id = ? and id > ? order by id limit ?',
          [campaignId, afterId, limit],
        );
      return rows.map((row) => ({
        id: Number(row.id),
        code: row.code,
        campaignId,
        userId: row.user_id,
        issuedAt: utcDate(row.issued_at),
      }));
    });
  }

  /** Keyset pagination as for coupons: events are written holding the campaign's row, so in id order. */
  async listEvents(campaignId: string, afterId: number, limit: number): Promise<CampaignEventRecord[]> {
    return guarded(this.readsBreaker, 'listing campaign events', async () => {
      const rows = await this.db.em
        .fork()
        .execute<{ id: number | string; kind: string; detail: string; actor: string; at: string }[]>(
          'select id, kind, detail, actor, at from campaign_event where campaign_id = ? and id > ? order by id limit ?',
          [campaignId, afterId, limit],
        );
      return rows.map((row) => ({
        id: Number(row.id),
        kind: row.kind,
        detail: row.detail,
        actor: row.actor,
        at: utcDate(row.at),
      }));
    });
  }

  async changeLocked<T>(
    campaignId: string,
    decide: (current: Campaign) => Promise<LockedDecision<T>>,
  ): Promise<{ result: T; campaign: Campaign } | undefined> {
    return guarded(this.breaker, 'changing a campaign', () =>
      this.db.em.fork().transactional(async (transaction) => {
        const em = transaction as EntityManager;
        const [row] = await em.execute<CampaignRow[]>(`${SELECT_CAMPAIGN} where id = ? for update`, [
          campaignId,
        ]);
        if (!row) return undefined;
        const current = toCampaign(row);
        const { result, change } = await decide(current);
        if (!change) return { result, campaign: current };
        const campaign: Campaign = {
          ...current,
          amount: change.amount ?? current.amount,
          issuedAt: change.issuedAt ?? current.issuedAt,
          expiresAt: change.expiresAt ?? current.expiresAt,
        };
        // The guard restates what the gate checked: the database never holds more coupons than its amount.
        const updated = await em.execute<QueryResult>(
          'update campaign set amount = ?, issued_at = ?, expires_at = ? where id = ? and issued_count <= ?',
          [campaign.amount, campaign.issuedAt, campaign.expiresAt, campaignId, campaign.amount],
          'run',
        );
        if (updated.affectedRows === 0) {
          throw new Error(`campaign ${campaignId} holds more coupons than the amount ${campaign.amount}`);
        }
        await insertEvent(em, campaignId, change.event);
        return { result, campaign };
      }),
    );
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
