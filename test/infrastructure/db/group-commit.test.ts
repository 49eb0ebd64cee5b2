import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../../src/app.ts';
import type { CouponToPersist, PersistOutcome } from '../../../src/application/ports.ts';
import { generateCouponCode } from '../../../src/domain/coupon-code.ts';
import { MikroOrmCouponRepository } from '../../../src/infrastructure/db/coupon-repository.ts';
import { GroupCommitCouponRepository } from '../../../src/infrastructure/db/group-commit.ts';
import { openWindow, startServices, uniqueName } from '../../support/services.ts';

let env: Awaited<ReturnType<typeof startServices>>;
let services: Services;
let repository: MikroOrmCouponRepository;

beforeAll(async () => {
  env = await startServices();
  services = env.services;
  repository = new MikroOrmCouponRepository(services.db);
});
afterAll(async () => {
  await env?.stop();
});

async function campaignOf(amount: number) {
  return services.campaigns.createCampaign({
    name: uniqueName('batch'),
    amount: BigInt(amount),
    ...openWindow(),
  });
}

function coupon(campaignId: string, userId: string, code = generateCouponCode()): CouponToPersist {
  return { campaignId, userId, code, issuedAt: new Date() };
}

async function stored(campaignId: string) {
  const em = services.db.em.fork();
  const rows = await em.execute<{ user_id: string }[]>(
    'select user_id from coupon where campaign_id = ? order by id',
    [campaignId],
  );
  const [campaign] = await em.execute<{ issued_count: number }[]>(
    'select issued_count from campaign where id = ?',
    [campaignId],
  );
  return { users: rows.map((r) => r.user_id), issuedCount: Number(campaign?.issued_count) };
}

describe('a batch of coupons', () => {
  it('is written in one go when every row is fine', async () => {
    const campaign = await campaignOf(10);
    const batch = ['a', 'b', 'c'].map((user) => coupon(campaign.id, user));
    expect(await repository.persistMany(batch)).toEqual(['persisted', 'persisted', 'persisted']);
    expect(await stored(campaign.id)).toEqual({ users: ['a', 'b', 'c'], issuedCount: 3 });
  });

  it('falls back row by row so one bad row never fails its neighbours', async () => {
    const campaign = await campaignOf(10);
    const taken = coupon(campaign.id, 'holder');
    await repository.persist(taken);
    const outcomes = await repository.persistMany([
      coupon(campaign.id, 'fine-1'),
      coupon(campaign.id, 'someone', taken.code),
      coupon(campaign.id, 'holder'),
      coupon(campaign.id, 'fine-2'),
    ]);
    expect(outcomes).toEqual(['persisted', 'code-taken', 'user-has-coupon', 'persisted']);
    expect(await stored(campaign.id)).toEqual({ users: ['holder', 'fine-1', 'fine-2'], issuedCount: 3 });
  });

  it('never passes the amount, even when the batch is bigger than what is left', async () => {
    const campaign = await campaignOf(3);
    await repository.persist(coupon(campaign.id, 'first'));
    const outcomes = await repository.persistMany(['x', 'y', 'z'].map((user) => coupon(campaign.id, user)));
    expect(outcomes.filter((o) => o === 'persisted')).toHaveLength(2);
    expect(outcomes.filter((o) => o === 'campaign-full')).toHaveLength(1);
    expect((await stored(campaign.id)).issuedCount).toBe(3);
  });
});

describe('group commit', () => {
  it('gathers concurrent coupons into few transactions, each caller with its own outcome', async () => {
    const campaign = await campaignOf(1_000);
    const batchSizes: number[] = [];
    const counting = Object.assign(Object.create(repository) as MikroOrmCouponRepository, {
      persistMany: (coupons: readonly CouponToPersist[]): Promise<PersistOutcome[]> => {
        batchSizes.push(coupons.length);
        return repository.persistMany(coupons);
      },
    });
    const committer = new GroupCommitCouponRepository(counting, { maxBatch: 100, maxInFlight: 2 });
    const holder = coupon(campaign.id, 'user-0');
    await repository.persist(holder);

    const outcomes = await Promise.all(
      Array.from({ length: 300 }, (_, i) => committer.persist(coupon(campaign.id, `user-${i}`))),
    );
    expect(outcomes[0]).toBe('user-has-coupon');
    expect(outcomes.slice(1).every((o) => o === 'persisted')).toBe(true);
    expect(batchSizes.reduce((sum, size) => sum + size, 0)).toBe(300);
    expect(Math.max(...batchSizes)).toBeLessThanOrEqual(100);
    expect(batchSizes.length).toBeLessThanOrEqual(6);
    expect((await stored(campaign.id)).issuedCount).toBe(300);
  });
});
