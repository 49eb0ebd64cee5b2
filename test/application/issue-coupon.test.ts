import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../src/app.ts';
import { CampaignDirectory } from '../../src/application/campaign-directory.ts';
import { CouponIssuer } from '../../src/application/issue-coupon.ts';
import type { Campaign } from '../../src/domain/campaign.ts';
import { isValidCouponCode } from '../../src/domain/coupon-code.ts';
import {
  AlreadyIssuedError,
  CampaignNameTakenError,
  CampaignNotFoundError,
  CampaignNotOpenError,
  ClaimPendingError,
  InvalidArgumentError,
  SoldOutError,
} from '../../src/domain/errors.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from '../support/services.ts';

let env: Awaited<ReturnType<typeof startServices>>;
let services: Services;

beforeAll(async () => {
  // These tests judge claims; the per-user rate limit has its own (test/api/rate-limit.test.ts).
  env = await startServices(isolatedConfig({ ISSUE_RATE_LIMIT_PER_USER: '0' }));
  services = env.services;
});
afterAll(async () => {
  await env?.stop();
});

async function createCampaign(amount: number, window = openWindow()): Promise<Campaign> {
  return services.campaigns.createCampaign({
    name: uniqueName('campaign'),
    amount: BigInt(amount),
    ...window,
  });
}

/** MySQL rows, the campaign's issued_count, and the Redis gate's counter and user set. */
async function storedState(campaignId: string) {
  const em = services.db.em.fork();
  const rows = await em.execute<{ user_id: string; code: string }[]>(
    'select user_id, code from coupon where campaign_id = ?',
    [campaignId],
  );
  const [campaign] = await em.execute<{ issued_count: number; amount: number }[]>(
    'select issued_count, amount from campaign where id = ?',
    [campaignId],
  );
  const keys = services.redisGate.keys(campaignId);
  return {
    rows,
    issuedCount: Number(campaign?.issued_count),
    remaining: Number(await services.redis.get(keys.remaining)),
    users: await services.redis.smembers(keys.users),
    pending: await services.redis.zcard(keys.pending),
  };
}

/** Counts the campaign reads the issuer makes when the gate does not know a campaign. */
function countGateStateReads() {
  const repository = services.repositories.campaigns;
  const load = repository.loadGateState.bind(repository);
  const reads = {
    count: 0,
    restore: () => {
      repository.loadGateState = load;
    },
  };
  repository.loadGateState = (campaignId) => {
    reads.count++;
    return load(campaignId);
  };
  return reads;
}

async function settle<T>(calls: Promise<T>[]) {
  const results = await Promise.allSettled(calls);
  const issued = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  return { issued, errors };
}

describe('creating a campaign', () => {
  it('refuses a name that exists', async () => {
    const campaign = await createCampaign(5);
    await expect(
      services.campaigns.createCampaign({ name: campaign.name, amount: 5n, ...openWindow() }),
    ).rejects.toBeInstanceOf(CampaignNameTakenError);
  });

  it('refuses an expiry that the shared clock says has passed', async () => {
    const past = Date.now() - 1_000;
    await expect(
      services.campaigns.createCampaign({
        name: uniqueName('late'),
        amount: 5n,
        issuedAt: new Date(past - 60_000),
        expiresAt: new Date(past),
      }),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('issuing a coupon', () => {
  it('gives a valid unique code stamped with the claim time', async () => {
    const campaign = await createCampaign(3);
    const before = await services.gate.now();
    const coupon = await services.issuer.issueCoupon(campaign.id, 'alice');
    const after = await services.gate.now();
    expect(isValidCouponCode(coupon.code)).toBe(true);
    expect(coupon).toMatchObject({ campaignId: campaign.id, userId: 'alice' });
    expect(coupon.issuedAt.getTime()).toBeGreaterThanOrEqual(before.getTime());
    expect(coupon.issuedAt.getTime()).toBeLessThanOrEqual(after.getTime());
    const state = await storedState(campaign.id);
    expect(state.rows).toEqual([{ user_id: 'alice', code: coupon.code }]);
    expect(state).toMatchObject({ issuedCount: 1, remaining: 2, users: ['alice'], pending: 0 });
  });

  it('refuses a second coupon to the same user', async () => {
    const campaign = await createCampaign(3);
    await services.issuer.issueCoupon(campaign.id, 'bob');
    await expect(services.issuer.issueCoupon(campaign.id, 'bob')).rejects.toBeInstanceOf(AlreadyIssuedError);
  });

  it('tells "last slot taken" from "sold out"', async () => {
    const campaign = await createCampaign(1);
    await expect(services.gate.claimSlot(campaign.id, 'first')).resolves.toMatchObject({
      status: 'claimed',
      remaining: 0,
    });
    await expect(services.gate.claimSlot(campaign.id, 'second')).resolves.toEqual({ status: 'sold-out' });
    await services.gate.releaseSlot(campaign.id, 'first');
  });

  it('answers ids it never handed out without the stores', async () => {
    const reads = countGateStateReads();
    try {
      // Not a UUID (and a brace would break the hash tag on Redis Cluster): no read at all.
      await expect(services.issuer.issueCoupon('{made-up}', 'dave')).rejects.toBeInstanceOf(
        CampaignNotFoundError,
      );
      // A well-formed id outside the directory of live campaigns: no read either.
      const unknown = '01900000-0000-7000-8000-000000000000';
      for (let i = 0; i < 3; i++) {
        await expect(services.issuer.issueCoupon(unknown, `dave-${i}`)).rejects.toBeInstanceOf(
          CampaignNotFoundError,
        );
      }
      expect(reads.count).toBe(0);
    } finally {
      reads.restore();
    }
  });

  it('before the directory was read, asks the database once per unknown id, then remembers it', async () => {
    const reads = countGateStateReads();
    try {
      // As when the database was down at start: nothing known yet, so nothing refused from memory.
      const directory = new CampaignDirectory({
        campaigns: services.repositories.campaigns,
        announcer: { announce: async () => undefined },
      });
      const issuer = new CouponIssuer({
        ...services.repositories,
        gate: services.gate,
        directory,
        activity: services.activity,
      });
      const unknown = '01900000-0000-7000-8000-000000000001';
      for (let i = 0; i < 3; i++) {
        await expect(issuer.issueCoupon(unknown, `erin-${i}`)).rejects.toBeInstanceOf(CampaignNotFoundError);
      }
      expect(reads.count).toBe(1);
      // A real campaign is still served.
      const campaign = await createCampaign(1);
      await expect(issuer.issueCoupon(campaign.id, 'erin')).resolves.toMatchObject({ userId: 'erin' });
    } finally {
      reads.restore();
    }
  });

  it('refuses an unknown campaign and bad arguments', async () => {
    await expect(services.issuer.issueCoupon('no-such-campaign', 'carol')).rejects.toBeInstanceOf(
      CampaignNotFoundError,
    );
    const campaign = await createCampaign(3);
    await expect(services.issuer.issueCoupon('', 'carol')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(services.issuer.issueCoupon(campaign.id, '')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(services.issuer.issueCoupon(campaign.id, 'x'.repeat(129))).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect((await storedState(campaign.id)).rows).toHaveLength(0);
  });

  it('gives exactly 100 coupons to 1,000 concurrent distinct users, and the stores agree', async () => {
    const campaign = await createCampaign(100);
    const { issued, errors } = await settle(
      Array.from({ length: 1_000 }, (_, i) => services.issuer.issueCoupon(campaign.id, `rush-${i}`)),
    );
    expect(issued).toHaveLength(100);
    expect(errors).toHaveLength(900);
    expect(errors.every((e) => e instanceof SoldOutError)).toBe(true);
    expect(new Set(issued.map((c) => c.code)).size).toBe(100);
    expect(new Set(issued.map((c) => c.userId)).size).toBe(100);

    const state = await storedState(campaign.id);
    expect(state.rows).toHaveLength(100);
    expect(state.issuedCount).toBe(100);
    expect(state.remaining).toBe(0);
    expect(state.pending).toBe(0);
    expect(new Set(state.users)).toEqual(new Set(issued.map((c) => c.userId)));
    expect(new Set(state.rows.map((r) => r.code))).toEqual(new Set(issued.map((c) => c.code)));
  });

  it('gives one coupon to one user calling 50 times at once', async () => {
    const campaign = await createCampaign(10);
    const { issued, errors } = await settle(
      Array.from({ length: 50 }, () => services.issuer.issueCoupon(campaign.id, 'eager')),
    );
    expect(issued).toHaveLength(1);
    // Calls judged while the first claim was still being written hear "still being settled".
    expect(errors.every((e) => e instanceof AlreadyIssuedError || e instanceof ClaimPendingError)).toBe(true);
    const state = await storedState(campaign.id);
    expect(state).toMatchObject({ issuedCount: 1, remaining: 9, users: ['eager'] });
    expect(state.rows).toHaveLength(1);
  });
});

describe("a retry while the user's claim is still pending", () => {
  it('is told the claim is still being settled and when to come back, not that a coupon is held', async () => {
    const campaign = await createCampaign(10);
    // A claim whose process died before its coupon was written: pending, no row.
    await expect(services.gate.claimSlot(campaign.id, 'orphan')).resolves.toMatchObject({
      status: 'claimed',
    });
    const young = await services.issuer.issueCoupon(campaign.id, 'orphan').catch((error: unknown) => error);
    expect(young).toBeInstanceOf(ClaimPendingError);
    expect((young as ClaimPendingError).retryAfterMs).toBe(1_000);
    // The same claim, seen as ten seconds old: its write cannot still be running, so the retry
    // waits for the reconciler (RECONCILE_AFTER_MS + RECONCILE_INTERVAL_MS of this file's config).
    const keys = services.redisGate.keys(campaign.id);
    const [seconds] = await services.redis.time();
    await services.redis.zadd(keys.pending, Number(seconds) * 1000 - 10_000, 'orphan');
    const old = (await services.issuer
      .issueCoupon(campaign.id, 'orphan')
      .catch((error: unknown) => error)) as ClaimPendingError;
    expect(old).toBeInstanceOf(ClaimPendingError);
    const settleAfterMs = env.config.reconcileAfterMs + env.config.reconcileIntervalMs;
    expect(old.retryAfterMs).toBeGreaterThan(settleAfterMs - 12_000);
    expect(old.retryAfterMs).toBeLessThanOrEqual(settleAfterMs - 9_000);
  });
});

describe('the campaign window, on the Redis clock, to the millisecond', () => {
  it('opens exactly at issued_at', async () => {
    const now = (await services.gate.now()).getTime();
    const campaign = await createCampaign(5, {
      issuedAt: new Date(now + 300),
      expiresAt: new Date(now + 60_000),
    });
    const early = await services.gate.claimSlot(campaign.id, 'early');
    expect(early).toEqual({ status: 'not-started', opensAt: campaign.issuedAt, now: expect.any(Date) });
    await expect(services.issuer.issueCoupon(campaign.id, 'early')).rejects.toBeInstanceOf(
      CampaignNotOpenError,
    );

    // Claim until the gate lets us in: the first claim to succeed must be stamped at or after
    // issued_at, and no call that started once the gate's clock had reached it may be refused
    // (exact, whatever the machine's load: the clock is read before each call, and the call is
    // judged after that read, from Redis or from memory).
    let coupon: Awaited<ReturnType<typeof services.issuer.issueCoupon>> | undefined;
    for (let attempt = 0; !coupon; attempt++) {
      const startedAt = (await services.gate.now(campaign.id)).getTime();
      try {
        coupon = await services.issuer.issueCoupon(campaign.id, `edge-${attempt}`);
      } catch (error) {
        expect(error).toBeInstanceOf(CampaignNotOpenError);
        expect(startedAt).toBeLessThan(campaign.issuedAt.getTime());
      }
    }
    expect(coupon.issuedAt.getTime()).toBeGreaterThanOrEqual(campaign.issuedAt.getTime());
    expect(coupon.issuedAt.getTime()).toBeLessThan(campaign.issuedAt.getTime() + 1_000);
  });

  it('closes exactly at expires_at', async () => {
    const now = (await services.gate.now()).getTime();
    const campaign = await createCampaign(1_000, {
      issuedAt: new Date(now - 1_000),
      expiresAt: new Date(now + 300),
    });
    let lastIssuedAt = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        const coupon = await services.issuer.issueCoupon(campaign.id, `late-${attempt}`);
        lastIssuedAt = coupon.issuedAt.getTime();
      } catch (error) {
        expect(error).toBeInstanceOf(CampaignNotOpenError);
        expect((error as CampaignNotOpenError).reason).toBe('ended');
        break;
      }
    }
    expect(lastIssuedAt).toBeGreaterThan(0);
    expect(lastIssuedAt).toBeLessThan(campaign.expiresAt.getTime());
    const ended = await services.gate.claimSlot(campaign.id, 'after');
    expect(ended).toEqual({ status: 'ended', closedAt: campaign.expiresAt });
  });
});

describe('when the database write fails', () => {
  it('gives the slot back, and the user can retry', async () => {
    const campaign = await createCampaign(1);
    const em = services.db.em.fork();
    // A real failure: the coupon table is gone for a moment.
    await em.execute('rename table coupon to coupon_away');
    try {
      await expect(services.issuer.issueCoupon(campaign.id, 'unlucky')).rejects.toMatchObject({
        dependency: 'database',
      });
    } finally {
      await em.execute('rename table coupon_away to coupon');
    }
    expect(await storedState(campaign.id)).toMatchObject({
      rows: [],
      issuedCount: 0,
      remaining: 1,
      users: [],
      pending: 0,
    });
    const coupon = await services.issuer.issueCoupon(campaign.id, 'unlucky');
    expect(coupon.userId).toBe('unlucky');
    expect(await storedState(campaign.id)).toMatchObject({
      issuedCount: 1,
      remaining: 0,
      users: ['unlucky'],
    });
  });
});

describe('when the gate loses a campaign', () => {
  it('rebuilds it from MySQL: earlier winners stay refused and the amount holds', async () => {
    const campaign = await createCampaign(3);
    await services.issuer.issueCoupon(campaign.id, 'winner-1');
    await services.issuer.issueCoupon(campaign.id, 'winner-2');
    const keys = services.redisGate.keys(campaign.id);
    await services.redis.del(keys.window, keys.remaining, keys.users, keys.pending);

    const { issued, errors } = await settle([
      services.issuer.issueCoupon(campaign.id, 'winner-1'),
      ...Array.from({ length: 20 }, (_, i) => services.issuer.issueCoupon(campaign.id, `after-loss-${i}`)),
    ]);
    expect(errors.filter((e) => e instanceof AlreadyIssuedError)).toHaveLength(1);
    expect(issued).toHaveLength(1);
    const state = await storedState(campaign.id);
    expect(state.rows).toHaveLength(3);
    expect(state).toMatchObject({ issuedCount: 3, remaining: 0 });
    expect(state.users).toHaveLength(3);
  });
});
