import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFingerprint } from '../../src/api/admin-auth.ts';
import { type App, buildApp } from '../../src/app.ts';
import { CampaignState, CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { campaignRequest, codeOf } from '../support/rpc.ts';
import { fillCampaign, isolatedConfig, silentLogger, startApp } from '../support/services.ts';

const ADMIN_TOKEN = 'test-admin-token-for-operations';
const admin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
const config = isolatedConfig({ ADMIN_TOKEN, ISSUE_RATE_LIMIT_PER_USER: '0' });
let env: Awaited<ReturnType<typeof startApp>>;
/** A second instance on the same database and Redis. */
let other: { app: App; baseUrl: string };

beforeAll(async () => {
  env = await startApp(config);
  const app = await buildApp(config, silentLogger);
  other = { app, baseUrl: `http://127.0.0.1:${(await app.listen()).port}` };
});
afterAll(async () => {
  await other?.app.close();
  await env?.stop();
});

const grpc = () => createClient(CouponService, createGrpcTransport({ baseUrl: env.baseUrl }));
const connect = (baseUrl = env.baseUrl) =>
  createClient(CouponService, createConnectTransport({ baseUrl, httpVersion: '1.1' }));

async function createCampaign(overrides: Parameters<typeof campaignRequest>[0] = {}) {
  const { campaign } = await grpc().createCampaign(campaignRequest(overrides), admin);
  if (!campaign) throw new Error('no campaign');
  return campaign;
}

describe('Campaign.state', () => {
  it('is computed from the window, the gate clock and the counts', async () => {
    const now = Date.now();
    const scheduled = await createCampaign({
      issuedAt: timestampFromDate(new Date(now + 60_000)),
      expiresAt: timestampFromDate(new Date(now + 120_000)),
    });
    expect(scheduled.state).toBe(CampaignState.SCHEDULED);
    const open = await createCampaign({ amount: 1n });
    expect(open.state).toBe(CampaignState.OPEN);
    await grpc().issueCoupon({ campaignId: open.id, userId: 'the-only-one' });
    const read = await grpc().getCampaign({ name: open.name });
    expect(read.campaign?.state).toBe(CampaignState.SOLD_OUT);
  });
});

describe('ListCampaigns', () => {
  it('lists newest first, 50 by default, and pages without repeats across campaigns created between pages', async () => {
    const created: string[] = [];
    for (let i = 0; i < 55; i++) created.push((await createCampaign()).id);
    const first = await connect().listCampaigns({});
    expect(first.campaigns).toHaveLength(50);
    const ids = first.campaigns.map((c) => c.id);
    expect([...ids].sort().reverse()).toEqual(ids);
    expect(ids[0]).toBe(created.at(-1));
    // Created between pages: newer than the first page, so never on a later one.
    const between = (await createCampaign()).id;
    const seen = [...ids];
    let token = first.nextPageToken;
    while (token !== '') {
      const page = await connect().listCampaigns({ pageSize: 7, pageToken: token });
      seen.push(...page.campaigns.map((c) => c.id));
      token = page.nextPageToken;
    }
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).not.toContain(between);
    for (const id of created) expect(seen).toContain(id);
    expect((await connect().listCampaigns({ pageSize: 1 })).campaigns[0]?.id).toBe(between);
  });

  it('filters by state', async () => {
    const ended = await createCampaign();
    await grpc().closeCampaign({ campaignId: ended.id }, admin);
    const soldOut = await createCampaign({ amount: 1n });
    await grpc().issueCoupon({ campaignId: soldOut.id, userId: 'u' });
    const listed = async (state: CampaignState) => {
      const ids: string[] = [];
      let token = '';
      do {
        const page = await grpc().listCampaigns({ state, pageSize: 500, pageToken: token });
        for (const campaign of page.campaigns) {
          expect(campaign.state).toBe(state);
          ids.push(campaign.id);
        }
        token = page.nextPageToken;
      } while (token !== '');
      return ids;
    };
    expect(await listed(CampaignState.ENDED)).toContain(ended.id);
    expect(await listed(CampaignState.SOLD_OUT)).toContain(soldOut.id);
    expect(await listed(CampaignState.OPEN)).not.toContain(soldOut.id);
  });

  it('refuses a bad page size, a state the enum lacks, and a token altered or from another query', async () => {
    await createCampaign();
    await createCampaign();
    expect(await codeOf(grpc().listCampaigns({ pageSize: 501 }))).toBe(Code.InvalidArgument);
    expect(await codeOf(grpc().listCampaigns({ pageSize: -1 }))).toBe(Code.InvalidArgument);
    expect(await codeOf(grpc().listCampaigns({ pageSize: 500 }))).toBe('ok');
    expect(await codeOf(grpc().listCampaigns({ state: 9 as CampaignState }))).toBe(Code.InvalidArgument);
    const { nextPageToken } = await grpc().listCampaigns({ pageSize: 1 });
    expect(nextPageToken).not.toBe('');
    expect(await codeOf(grpc().listCampaigns({ pageSize: 1, pageToken: nextPageToken }))).toBe('ok');
    const altered = `${nextPageToken.slice(0, 3)}${nextPageToken[3] === 'A' ? 'B' : 'A'}${nextPageToken.slice(4)}`;
    expect(await codeOf(grpc().listCampaigns({ pageToken: altered }))).toBe(Code.InvalidArgument);
    expect(await codeOf(grpc().listCampaigns({ pageToken: 'not-a-token' }))).toBe(Code.InvalidArgument);
    expect(await codeOf(grpc().listCampaigns({ pageToken: nextPageToken, state: CampaignState.OPEN }))).toBe(
      Code.InvalidArgument,
    );
    // Honoured by every instance of the deployment.
    expect(await codeOf(connect(other.baseUrl).listCampaigns({ pageToken: nextPageToken }))).toBe('ok');
  });
});

describe('ListCoupons', () => {
  it('pages in issue order, admin only, with coupons issued between pages neither repeated nor skipped', async () => {
    const campaign = await createCampaign({ amount: 40n });
    const issued: string[] = [];
    const issue = async (count: number) => {
      for (let i = 0; i < count; i++) {
        const { coupon } = await grpc().issueCoupon({
          campaignId: campaign.id,
          userId: `user-${issued.length}`,
        });
        issued.push(coupon?.code ?? '');
      }
    };
    await issue(10);
    const seen: string[] = [];
    let page = await grpc().listCoupons({ campaignId: campaign.id, pageSize: 4 }, admin);
    seen.push(...page.coupons.map((c) => c.code));
    await issue(10);
    while (page.nextPageToken !== '') {
      page = await grpc().listCoupons(
        { campaignId: campaign.id, pageSize: 4, pageToken: page.nextPageToken },
        admin,
      );
      seen.push(...page.coupons.map((c) => c.code));
      if (issued.length < 30) await issue(5);
    }
    expect(seen).toEqual(issued);
    expect(page.coupons.every((c) => c.campaignId === campaign.id && c.userId.startsWith('user-'))).toBe(
      true,
    );
  });

  it('refuses without the admin token, an unknown or empty id, and a token of another campaign', async () => {
    const a = await createCampaign();
    const b = await createCampaign();
    for (const id of [a.id, b.id]) {
      for (let i = 0; i < 2; i++) await grpc().issueCoupon({ campaignId: id, userId: `u${i}` });
    }
    expect(await codeOf(grpc().listCoupons({ campaignId: a.id }))).toBe(Code.Unauthenticated);
    expect(
      await codeOf(grpc().listCoupons({ campaignId: a.id }, { headers: { authorization: 'Bearer nope' } })),
    ).toBe(Code.Unauthenticated);
    expect(await codeOf(grpc().listCoupons({ campaignId: '' }, admin))).toBe(Code.InvalidArgument);
    expect(
      await codeOf(grpc().listCoupons({ campaignId: '01900000-0000-7000-8000-000000000000' }, admin)),
    ).toBe(Code.NotFound);
    expect(await codeOf(grpc().listCoupons({ campaignId: 'NOT-A-UUID' }, admin))).toBe(Code.NotFound);
    expect(await codeOf(grpc().listCoupons({ campaignId: a.id, pageSize: 501 }, admin))).toBe(
      Code.InvalidArgument,
    );
    const { nextPageToken } = await grpc().listCoupons({ campaignId: a.id, pageSize: 1 }, admin);
    expect(await codeOf(grpc().listCoupons({ campaignId: b.id, pageToken: nextPageToken }, admin))).toBe(
      Code.InvalidArgument,
    );
    expect(
      await codeOf(grpc().listCampaignEvents({ campaignId: a.id, pageToken: nextPageToken }, admin)),
    ).toBe(Code.InvalidArgument);
  });

  it('reads O(page size) index entries however deep the page, on the (campaign_id, id) index', async () => {
    const campaign = await createCampaign({ amount: 10_000_000n });
    const codes = Array.from({ length: 20_000 }, (_, i) => `코드${String(i).padStart(6, '0')}`);
    await fillCampaign(env.app.services, campaign.id, codes);
    const em = env.app.services.db.em.fork();
    const [{ middle } = { middle: 0 }] = await em.execute<{ middle: number }[]>(
      'select max(id) - 5000 as middle from coupon where campaign_id = ?',
      [campaign.id],
    );
    // Index entries the page read, counted by the server on one connection: a page deep into the
    // campaign reads about as many as the first one.
    const entriesRead = (after: number) =>
      em.transactional(async (tx) => {
        await tx.execute('flush status');
        await tx.execute(
          'select id, code, user_id, issued_at from coupon where campaign_id = ? and id > ? order by id limit ?',
          [campaign.id, after, 51],
        );
        const status = await tx.execute<{ Variable_name: string; Value: string }[]>(
          "show session status like 'Handler_read%'",
        );
        return status.reduce((sum, row) => sum + Number(row.Value), 0);
      });
    const first = await entriesRead(0);
    const deep = await entriesRead(middle);
    expect(first).toBeLessThan(60);
    expect(deep).toBeLessThan(60);
    const plan = await em.execute<{ key: string | null; type: string; Extra?: string }[]>(
      'explain select id, code, user_id, issued_at from coupon where campaign_id = ? and id > ? order by id limit ?',
      [campaign.id, 0, 51],
    );
    expect(plan[0]?.key).toBe('coupon_campaign_order_index');
    expect(plan[0]?.Extra ?? '').not.toContain('filesort');
  });
});

describe('CloseCampaign', () => {
  it('closes at once on every instance, idempotently; claims after it are FAILED_PRECONDITION', async () => {
    const campaign = await createCampaign({ amount: 10n });
    await grpc().issueCoupon({ campaignId: campaign.id, userId: 'before' });
    const closed = (await grpc().closeCampaign({ campaignId: campaign.id }, admin)).campaign;
    expect(closed?.state).toBe(CampaignState.ENDED);
    expect(closed?.issuedCount).toBe(1n);
    const closedAt = closed?.expiresAt;
    expect(Number(closedAt?.seconds)).toBeLessThan(Number(campaign.expiresAt?.seconds));
    for (const baseUrl of [env.baseUrl, other.baseUrl]) {
      expect(await codeOf(connect(baseUrl).issueCoupon({ campaignId: campaign.id, userId: 'after' }))).toBe(
        Code.FailedPrecondition,
      );
    }
    const again = (await grpc().closeCampaign({ campaignId: campaign.id }, admin)).campaign;
    expect(again?.expiresAt).toEqual(closedAt);
    const read = await grpc().getCampaign({ name: campaign.name });
    expect(read.campaign?.expiresAt).toEqual(closedAt);
    expect(read.campaign?.state).toBe(CampaignState.ENDED);
    // The other instance learned the new close time (its live ids end a day after it).
    const closesAt = Number(closedAt?.seconds) * 1000 + Math.floor((closedAt?.nanos ?? 0) / 1e6);
    expect(other.app.services.directory.lookup(campaign.id)).toBe('live');
    expect(
      (other.app.services.directory as unknown as { closesAt: Map<string, number> }).closesAt.get(
        campaign.id,
      ),
    ).toBe(closesAt);
  });

  it('closes a scheduled campaign to an empty window', async () => {
    const now = Date.now();
    const campaign = await createCampaign({
      issuedAt: timestampFromDate(new Date(now + 60_000)),
      expiresAt: timestampFromDate(new Date(now + 120_000)),
    });
    const closed = (await grpc().closeCampaign({ campaignId: campaign.id }, admin)).campaign;
    expect(closed?.state).toBe(CampaignState.ENDED);
    expect(closed?.issuedAt).toEqual(closed?.expiresAt);
    expect(await codeOf(grpc().issueCoupon({ campaignId: campaign.id, userId: 'x' }))).toBe(
      Code.FailedPrecondition,
    );
  });

  it('closes a campaign missing from the gate (loaded from MySQL first)', async () => {
    const campaign = await createCampaign();
    const keys = env.app.services.redisGate.keys(campaign.id);
    await env.app.services.redis.del(keys.window, keys.remaining, keys.users, keys.pending);
    expect((await grpc().closeCampaign({ campaignId: campaign.id }, admin)).campaign?.state).toBe(
      CampaignState.ENDED,
    );
    expect(await codeOf(grpc().issueCoupon({ campaignId: campaign.id, userId: 'x' }))).toBe(
      Code.FailedPrecondition,
    );
  });

  it('refuses without the admin token, an empty or unknown id', async () => {
    const campaign = await createCampaign();
    expect(await codeOf(grpc().closeCampaign({ campaignId: campaign.id }))).toBe(Code.Unauthenticated);
    expect(await codeOf(grpc().closeCampaign({ campaignId: '' }, admin))).toBe(Code.InvalidArgument);
    expect(
      await codeOf(grpc().closeCampaign({ campaignId: '01900000-0000-7000-8000-000000000000' }, admin)),
    ).toBe(Code.NotFound);
    expect(await codeOf(grpc().issueCoupon({ campaignId: campaign.id, userId: 'still-open' }))).toBe('ok');
  });
});

describe('UpdateCampaignAmount', () => {
  it('raises and lowers, never below what is issued, and within 1..10,000,000', async () => {
    const campaign = await createCampaign({ amount: 3n });
    for (let i = 0; i < 3; i++) await grpc().issueCoupon({ campaignId: campaign.id, userId: `u${i}` });
    expect(await codeOf(grpc().issueCoupon({ campaignId: campaign.id, userId: 'late' }))).toBe(
      Code.ResourceExhausted,
    );
    const raised = (await grpc().updateCampaignAmount({ campaignId: campaign.id, amount: 5n }, admin))
      .campaign;
    expect(raised?.amount).toBe(5n);
    expect(raised?.state).toBe(CampaignState.OPEN);
    expect(await codeOf(grpc().issueCoupon({ campaignId: campaign.id, userId: 'late' }))).toBe('ok');
    expect(await codeOf(grpc().updateCampaignAmount({ campaignId: campaign.id, amount: 3n }, admin))).toBe(
      Code.FailedPrecondition,
    );
    const lowered = (await grpc().updateCampaignAmount({ campaignId: campaign.id, amount: 4n }, admin))
      .campaign;
    expect(lowered?.amount).toBe(4n);
    expect(lowered?.state).toBe(CampaignState.SOLD_OUT);
    expect(await codeOf(grpc().issueCoupon({ campaignId: campaign.id, userId: 'later' }))).toBe(
      Code.ResourceExhausted,
    );
    for (const amount of [0n, -1n, 10_000_001n]) {
      expect(await codeOf(grpc().updateCampaignAmount({ campaignId: campaign.id, amount }, admin))).toBe(
        Code.InvalidArgument,
      );
    }
    expect(
      await codeOf(grpc().updateCampaignAmount({ campaignId: campaign.id, amount: 10_000_000n }, admin)),
    ).toBe('ok');
    expect(await codeOf(grpc().updateCampaignAmount({ campaignId: campaign.id, amount: 9n }))).toBe(
      Code.Unauthenticated,
    );
    expect(await codeOf(grpc().updateCampaignAmount({ campaignId: '', amount: 9n }, admin))).toBe(
      Code.InvalidArgument,
    );
    expect(
      await codeOf(
        grpc().updateCampaignAmount(
          { campaignId: '01900000-0000-7000-8000-000000000000', amount: 9n },
          admin,
        ),
      ),
    ).toBe(Code.NotFound);
    const row = await env.app.services.repositories.campaigns.findById(campaign.id);
    expect(row?.amount).toBe(10_000_000);
  });

  it("reaches another instance's sold-out memory at once", async () => {
    const campaign = await createCampaign({ amount: 2n });
    const there = connect(other.baseUrl);
    await there.issueCoupon({ campaignId: campaign.id, userId: 'a' });
    await there.issueCoupon({ campaignId: campaign.id, userId: 'b' });
    expect(await codeOf(there.issueCoupon({ campaignId: campaign.id, userId: 'c' }))).toBe(
      Code.ResourceExhausted,
    );
    // The other instance now answers from memory (its mark is trusted for 2 s).
    await expect.poll(() => other.app.services.gate.isKnownSoldOut(campaign.id)).toBe(true);
    await grpc().updateCampaignAmount({ campaignId: campaign.id, amount: 3n }, admin);
    expect(await codeOf(there.issueCoupon({ campaignId: campaign.id, userId: 'c' }))).toBe('ok');
  });
});

describe('ListCampaignEvents', () => {
  it('records each admin change once, in order, with its actor', async () => {
    const campaign = await createCampaign({ amount: 5n });
    await grpc().updateCampaignAmount({ campaignId: campaign.id, amount: 8n }, admin);
    await grpc().updateCampaignAmount({ campaignId: campaign.id, amount: 8n }, admin); // no change
    await grpc().updateCampaignAmount({ campaignId: campaign.id, amount: 6n }, admin);
    await grpc().closeCampaign({ campaignId: campaign.id }, admin);
    await grpc().closeCampaign({ campaignId: campaign.id }, admin); // already closed
    const events = [];
    let token = '';
    do {
      const page = await grpc().listCampaignEvents(
        { campaignId: campaign.id, pageSize: 2, pageToken: token },
        admin,
      );
      events.push(...page.events);
      token = page.nextPageToken;
    } while (token !== '');
    expect(events.map((e) => [e.kind, e.detail.split(' (')[0]])).toEqual([
      ['created', expect.stringContaining('amount 5')],
      ['amount_changed', 'amount 5 -> 8'],
      ['amount_changed', 'amount 8 -> 6'],
      ['closed', expect.stringContaining('expires_at ')],
    ]);
    const actor = adminFingerprint(ADMIN_TOKEN);
    expect(actor).toMatch(/^admin-[0-9a-f]{12}$/);
    expect(events.every((e) => e.actor === actor)).toBe(true);
    expect(events.some((e) => `${e.actor} ${e.detail}`.includes(ADMIN_TOKEN))).toBe(false);
    const times = events.map((e) => Number(e.at?.seconds) * 1e3 + (e.at?.nanos ?? 0) / 1e6);
    expect([...times].sort((x, y) => x - y)).toEqual(times);
  });

  it('pages across changes made between pages, none repeated or skipped', async () => {
    const campaign = await createCampaign({ amount: 5n });
    for (let amount = 6; amount <= 9; amount++) {
      await grpc().updateCampaignAmount({ campaignId: campaign.id, amount: BigInt(amount) }, admin);
    }
    let page = await grpc().listCampaignEvents({ campaignId: campaign.id, pageSize: 2 }, admin);
    const details = page.events.map((e) => e.detail);
    await grpc().updateCampaignAmount({ campaignId: campaign.id, amount: 10n }, admin);
    while (page.nextPageToken !== '') {
      page = await grpc().listCampaignEvents(
        { campaignId: campaign.id, pageSize: 2, pageToken: page.nextPageToken },
        admin,
      );
      details.push(...page.events.map((e) => e.detail));
    }
    expect(details[0]).toContain('amount 5, ');
    expect(details.slice(1)).toEqual([6, 7, 8, 9, 10].map((to) => `amount ${to - 1} -> ${to}`));
  });

  it('refuses without the admin token, an unknown id and a bad page size', async () => {
    const campaign = await createCampaign();
    expect(await codeOf(grpc().listCampaignEvents({ campaignId: campaign.id }))).toBe(Code.Unauthenticated);
    expect(await codeOf(grpc().listCampaignEvents({ campaignId: '' }, admin))).toBe(Code.InvalidArgument);
    expect(
      await codeOf(grpc().listCampaignEvents({ campaignId: '01900000-0000-7000-8000-000000000000' }, admin)),
    ).toBe(Code.NotFound);
    expect(await codeOf(grpc().listCampaignEvents({ campaignId: campaign.id, pageSize: 501 }, admin))).toBe(
      Code.InvalidArgument,
    );
  });
});
