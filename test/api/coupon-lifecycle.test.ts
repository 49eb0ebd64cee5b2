import { create } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCouponCode } from '../../src/domain/coupon-code.ts';
import { CouponService, CouponState } from '../../src/gen/coupon/v1/coupon_pb.js';
import { MikroOrmCouponLedger } from '../../src/infrastructure/db/coupon-lifecycle-repository.ts';
import { campaignRequest, codeOf } from '../support/rpc.ts';
import { fillCampaign, isolatedConfig, startApp } from '../support/services.ts';

const ADMIN_TOKEN = 'test-admin-token-for-coupon-lifecycle';
const admin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
const config = isolatedConfig({ ADMIN_TOKEN, ISSUE_RATE_LIMIT_PER_USER: '0' });
let env: Awaited<ReturnType<typeof startApp>>;

beforeAll(async () => {
  env = await startApp(config);
});
afterAll(async () => {
  await env?.stop();
});

const grpc = () => createClient(CouponService, createGrpcTransport({ baseUrl: env.baseUrl }));
const connect = () =>
  createClient(CouponService, createConnectTransport({ baseUrl: env.baseUrl, httpVersion: '1.1' }));
const protocols = [
  ['Connect', connect],
  ['gRPC', grpc],
] as const;

const validFor = (ms: number) =>
  create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });

async function createCampaign(overrides: Parameters<typeof campaignRequest>[0] = {}) {
  const { campaign } = await grpc().createCampaign(campaignRequest(overrides), admin);
  if (!campaign) throw new Error('no campaign');
  return campaign;
}

async function issue(campaignId: string, userId: string) {
  const { coupon } = await grpc().issueCoupon({ campaignId, userId });
  if (!coupon) throw new Error('no coupon');
  return coupon;
}

const ms = (timestamp: { seconds: bigint; nanos: number } | undefined) =>
  timestamp ? Number(timestamp.seconds) * 1000 + timestamp.nanos / 1_000_000 : undefined;

describe.each(protocols)('GetCoupon over %s', (_, client) => {
  it('reads a coupon by its code', async () => {
    const campaign = await createCampaign();
    const issued = await issue(campaign.id, 'reader');
    const { coupon } = await client().getCoupon({ code: issued.code });
    expect(coupon).toMatchObject({
      code: issued.code,
      campaignId: campaign.id,
      userId: 'reader',
      state: CouponState.ISSUED,
      orderId: '',
    });
    expect(ms(coupon?.issuedAt)).toBe(ms(issued.issuedAt));
    expect(coupon?.validUntil).toBeUndefined();
    expect(coupon?.redeemedAt).toBeUndefined();
  });

  it('answers NOT_FOUND for an unknown code and INVALID_ARGUMENT for what cannot be a code', async () => {
    expect(await codeOf(client().getCoupon({ code: '가나다라마바사아자1' }))).toBe(Code.NotFound);
    for (const code of ['', 'abc', '가나다라마바사아자차', '가나다라마바사아자1x', '가'.repeat(5000)]) {
      expect(await codeOf(client().getCoupon({ code }))).toBe(Code.InvalidArgument);
    }
  });
});

describe('coupon_valid_for', () => {
  it('is kept by the campaign and gives each coupon issued_at plus it as valid_until', async () => {
    const campaign = await createCampaign({ couponValidFor: validFor(86_400_123) });
    expect(ms(campaign.couponValidFor as never)).toBe(86_400_123);
    const read = await connect().getCampaign({ name: campaign.name });
    expect(ms(read.campaign?.couponValidFor as never)).toBe(86_400_123);
    const issued = await issue(campaign.id, 'holder');
    const { coupon } = await grpc().getCoupon({ code: issued.code });
    expect(ms(coupon?.validUntil)).toBe((ms(issued.issuedAt) as number) + 86_400_123);
    // IssueCoupon's own answer says it too, over both protocols.
    expect(ms(issued.validUntil)).toBe(ms(coupon?.validUntil));
    const viaConnect = (await connect().issueCoupon({ campaignId: campaign.id, userId: 'holder-2' })).coupon;
    expect(ms(viaConnect?.validUntil)).toBe((ms(viaConnect?.issuedAt) as number) + 86_400_123);
    expect(viaConnect?.state).toBe(CouponState.ISSUED);
    expect(coupon?.state).toBe(CouponState.ISSUED);
  });

  it('refuses a validity that is not whole positive milliseconds, or longer than 36,500 days', async () => {
    for (const couponValidFor of [
      create(DurationSchema, { seconds: 0n, nanos: 0 }),
      create(DurationSchema, { seconds: -1n, nanos: 0 }),
      create(DurationSchema, { seconds: 1n, nanos: 500 }),
      create(DurationSchema, { seconds: 1n, nanos: -1_000_000 }),
      create(DurationSchema, { seconds: 36_501n * 86_400n, nanos: 0 }),
      create(DurationSchema, { seconds: 1n << 60n, nanos: 0 }),
    ]) {
      for (const [, client] of protocols) {
        expect(await codeOf(client().createCampaign(campaignRequest({ couponValidFor }), admin))).toBe(
          Code.InvalidArgument,
        );
      }
    }
  });

  it("expires a coupon at valid_until to the millisecond, on the campaign's gate clock", async () => {
    const campaign = await createCampaign({ couponValidFor: validFor(60_000) });
    const early = await issue(campaign.id, 'early');
    const late = await issue(campaign.id, 'late');
    const ledger = new MikroOrmCouponLedger(env.app.services.db);
    const until = (await ledger.findByCode(early.code))?.validUntil as Date;
    expect(until.getTime()).toBe((ms(early.issuedAt) as number) + 60_000);
    // The same conditional write the service runs, at instants of our choosing on either side.
    expect(await ledger.redeem(early.code, 'order-a', new Date(until.getTime() - 1))).toBe(true);
    const lateUntil = (await ledger.findByCode(late.code))?.validUntil as Date;
    expect(await ledger.redeem(late.code, 'order-b', lateUntil)).toBe(false);
    expect((await ledger.findByCode(late.code))?.orderId).toBeUndefined();
  });

  it('answers EXPIRED and refuses to redeem once the gate clock has passed valid_until', async () => {
    const campaign = await createCampaign({ couponValidFor: validFor(300) });
    const issued = await issue(campaign.id, 'short-lived');
    const validUntil = (ms(issued.issuedAt) as number) + 300;
    // Watch the very clock the service judges by (Redis TIME of the campaign's shard).
    const gate = env.app.services.gate;
    while ((await gate.now(campaign.id)).getTime() < validUntil) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const [, client] of protocols) {
      const { coupon } = await client().getCoupon({ code: issued.code });
      expect(coupon?.state).toBe(CouponState.EXPIRED);
      const refused = await client()
        .redeemCoupon({ code: issued.code, orderId: 'too-late' }, admin)
        .catch((error: unknown) => ConnectError.from(error));
      expect(refused).toBeInstanceOf(ConnectError);
      expect((refused as ConnectError).code).toBe(Code.FailedPrecondition);
      expect((refused as ConnectError).rawMessage).toMatch(/expired/);
    }
  });
});

describe.each(protocols)('ListUserCoupons over %s', (_, client) => {
  it('lists a user’s coupons newest first across campaigns and pages, or one campaign’s', async () => {
    const user = `wallet-${Math.random().toString(36).slice(2)}`;
    const issued: string[] = [];
    const campaigns: string[] = [];
    for (let i = 0; i < 7; i++) {
      const campaign = await createCampaign();
      campaigns.push(campaign.id);
      await issue(campaign.id, `someone-else-${i}`);
      issued.push((await issue(campaign.id, user)).code);
    }
    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await client().listUserCoupons({ userId: user, pageSize: 3, pageToken });
      expect(page.coupons.length).toBeLessThanOrEqual(3);
      for (const coupon of page.coupons) expect(coupon.userId).toBe(user);
      seen.push(...page.coupons.map((coupon) => coupon.code));
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    expect(seen).toEqual([...issued].reverse());

    const one = await client().listUserCoupons({ userId: user, campaignId: campaigns[2] as string });
    expect(one.coupons.map((coupon) => coupon.code)).toEqual([issued[2]]);
    expect(one.nextPageToken).toBe('');
    const none = await client().listUserCoupons({ userId: 'nobody-at-all' });
    expect(none.coupons).toEqual([]);
  });

  it('refuses a bad user id, page size or token', async () => {
    expect(await codeOf(client().listUserCoupons({ userId: '' }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client().listUserCoupons({ userId: ' padded' }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client().listUserCoupons({ userId: 'u', pageSize: 501 }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client().listUserCoupons({ userId: 'u', pageToken: 'forged.token' }))).toBe(
      Code.InvalidArgument,
    );
    // A token of another user's list is refused, not honoured.
    const campaign = await createCampaign();
    await issue(campaign.id, 'first-user');
    await issue((await createCampaign()).id, 'first-user');
    const page = await client().listUserCoupons({ userId: 'first-user', pageSize: 1 });
    expect(page.nextPageToken).not.toBe('');
    expect(
      await codeOf(client().listUserCoupons({ userId: 'second-user', pageToken: page.nextPageToken })),
    ).toBe(Code.InvalidArgument);
  });
});

describe('indexes', () => {
  it('find a code and a user’s newest coupons through an index, never a table scan', async () => {
    // A code that exists: for one that does not, MySQL answers from the unique index at plan time
    // ("impossible WHERE") and names no key.
    // Enough rows (20,000, in 20 campaigns) that the optimizer's choice is the one a big table gets.
    for (let c = 0; c < 20; c++) {
      const filled = await createCampaign({ amount: 1_000n });
      await fillCampaign(
        env.app.services,
        filled.id,
        Array.from({ length: 1_000 }, () => generateCouponCode()),
      );
    }
    const campaign = await createCampaign();
    const { code } = await issue(campaign.id, 'explained');
    const em = env.app.services.db.em.fork();
    await em.execute('analyze table coupon');
    const plan = async (sql: string, params: unknown[]) =>
      (await em.execute<{ key: string | null; type: string }[]>(`explain ${sql}`, params)).map((row) => ({
        key: row.key,
        type: row.type,
      }));
    const byCode = await plan('select * from coupon where code = ?', [code]);
    expect(byCode[0]?.key).toBe('coupon_code_unique');
    const byUser = await plan('select * from coupon where user_id = ? and id < ? order by id desc limit 51', [
      'explained',
      Number.MAX_SAFE_INTEGER,
    ]);
    expect(byUser[0]?.key).toBe('coupon_user_order_index');
    expect(byUser[0]?.type).toBe('range');
    const redeem = await plan(
      'update coupon set order_id = ?, redeemed_at = ? where code = ? and order_id is null and (valid_until is null or valid_until > ?)',
      ['o', new Date(), code, new Date()],
    );
    expect(redeem[0]?.key).toBe('coupon_code_unique');
  });
});

async function failure(call: Promise<unknown>): Promise<{ code: Code | 'ok'; message: string }> {
  try {
    await call;
    return { code: 'ok', message: '' };
  } catch (error) {
    const connectError = ConnectError.from(error);
    return { code: connectError.code, message: connectError.rawMessage };
  }
}

describe.each(protocols)('RedeemCoupon and CancelRedemption over %s', (_, client) => {
  it('redeems once: the same order again gets the same answer, another order FAILED_PRECONDITION', async () => {
    const campaign = await createCampaign();
    const { code } = await issue(campaign.id, 'shopper');
    const first = await client().redeemCoupon({ code, orderId: 'order-1' }, admin);
    expect(first.coupon).toMatchObject({ code, state: CouponState.REDEEMED, orderId: 'order-1' });
    expect(first.coupon?.redeemedAt).toBeDefined();
    const again = await client().redeemCoupon({ code, orderId: 'order-1' }, admin);
    expect(again.coupon).toEqual(first.coupon);
    const other = await failure(client().redeemCoupon({ code, orderId: 'order-2' }, admin));
    expect(other.code).toBe(Code.FailedPrecondition);
    expect(other.message).toMatch(/another order/);
    expect((await client().getCoupon({ code })).coupon).toMatchObject({
      state: CouponState.REDEEMED,
      orderId: 'order-1',
    });
  });

  it('cancel gives the coupon back to be redeemed by another order; only the redeeming order may cancel', async () => {
    const campaign = await createCampaign();
    const { code } = await issue(campaign.id, 'returner');
    await client().redeemCoupon({ code, orderId: 'order-a' }, admin);
    const wrong = await failure(client().cancelRedemption({ code, orderId: 'order-b' }, admin));
    expect(wrong.code).toBe(Code.FailedPrecondition);
    const cancelled = await client().cancelRedemption({ code, orderId: 'order-a' }, admin);
    expect(cancelled.coupon).toMatchObject({ state: CouponState.ISSUED, orderId: '' });
    expect(cancelled.coupon?.redeemedAt).toBeUndefined();
    // A repeated cancel (a retry) gets the same answer.
    expect((await client().cancelRedemption({ code, orderId: 'order-a' }, admin)).coupon).toEqual(
      cancelled.coupon,
    );
    const redeemed = await client().redeemCoupon({ code, orderId: 'order-b' }, admin);
    expect(redeemed.coupon).toMatchObject({ state: CouponState.REDEEMED, orderId: 'order-b' });
    // The first order's cancel, retried late, cannot free the second order's coupon.
    expect((await failure(client().cancelRedemption({ code, orderId: 'order-a' }, admin))).code).toBe(
      Code.FailedPrecondition,
    );
  });

  it('refuses unknown codes, bad input and callers without the admin token', async () => {
    const campaign = await createCampaign();
    const { code } = await issue(campaign.id, 'guarded');
    for (const call of [
      (c: string, orderId: string, options = admin) => client().redeemCoupon({ code: c, orderId }, options),
      (c: string, orderId: string, options = admin) =>
        client().cancelRedemption({ code: c, orderId }, options),
    ]) {
      expect(await codeOf(call('가나다라마바사아자1', 'o'))).toBe(Code.NotFound);
      expect(await codeOf(call('nonsense', 'o'))).toBe(Code.InvalidArgument);
      expect(await codeOf(call(code, ''))).toBe(Code.InvalidArgument);
      expect(await codeOf(call(code, ' o'))).toBe(Code.InvalidArgument);
      expect(await codeOf(call(code, 'x'.repeat(129)))).toBe(Code.InvalidArgument);
      expect(await codeOf(call(code, 'o', { headers: {} } as typeof admin))).toBe(Code.Unauthenticated);
      expect(await codeOf(call(code, 'o', { headers: { authorization: 'Bearer wrong' } }))).toBe(
        Code.Unauthenticated,
      );
    }
    expect((await client().getCoupon({ code })).coupon?.state).toBe(CouponState.ISSUED);
  });

  it('lets exactly one of 50 orders redeeming one code at once win', async () => {
    const campaign = await createCampaign();
    const { code } = await issue(campaign.id, 'raced');
    const orders = Array.from({ length: 50 }, (_, i) => `race-order-${i}`);
    const outcomes = await Promise.all(
      orders.map((orderId) =>
        client()
          .redeemCoupon({ code, orderId }, admin)
          .then(
            (response) => ({ orderId, won: response.coupon?.orderId === orderId, code: 'ok' as const }),
            (error: unknown) => ({ orderId, won: false, code: ConnectError.from(error).code }),
          ),
      ),
    );
    const winners = outcomes.filter((outcome) => outcome.won);
    expect(winners).toHaveLength(1);
    expect(outcomes.filter((outcome) => !outcome.won).map((outcome) => outcome.code)).toEqual(
      Array(49).fill(Code.FailedPrecondition),
    );
    const stored = await new MikroOrmCouponLedger(env.app.services.db).findByCode(code);
    expect(stored?.orderId).toBe(winners[0]?.orderId);
  });
});
