import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../../src/app.ts';
import type { CouponToPersist } from '../../../src/application/ports.ts';
import { generateCouponCode } from '../../../src/domain/coupon-code.ts';
import { MikroOrmCampaignRepository } from '../../../src/infrastructure/db/campaign-repository.ts';
import { MikroOrmCouponRepository } from '../../../src/infrastructure/db/coupon-repository.ts';
import { openWindow, startServices, uniqueName } from '../../support/services.ts';

let env: Awaited<ReturnType<typeof startServices>>;
let services: Services;
let coupons: MikroOrmCouponRepository;
let campaigns: MikroOrmCampaignRepository;

beforeAll(async () => {
  env = await startServices();
  services = env.services;
  coupons = new MikroOrmCouponRepository(services.db);
  campaigns = new MikroOrmCampaignRepository(services.db);
});
afterAll(async () => {
  await env?.stop();
});

function coupon(campaignId: string, userId: string): CouponToPersist {
  return { campaignId, userId, code: generateCouponCode(), issuedAt: new Date() };
}

async function newCampaign(name = uniqueName('exact')) {
  return campaigns.create({ name, amount: 10, ...openWindow() });
}

describe('the database compares what clients name byte for byte, as Redis does', () => {
  it('keeps "alice" and "alice " apart as users, as the gate does', async () => {
    const campaign = await newCampaign();
    expect(await coupons.persist(coupon(campaign.id, 'alice'))).toBe('persisted');
    expect(await coupons.persist(coupon(campaign.id, 'alice '))).toBe('persisted');
    expect(await coupons.persist(coupon(campaign.id, 'alice'))).toBe('user-has-coupon');
    expect(await coupons.findHolders(campaign.id, ['alice', 'alice  '])).toEqual(new Set(['alice']));
  });

  it('keeps campaign names apart that differ only in trailing spaces', async () => {
    const name = uniqueName('sanity');
    await newCampaign(name);
    expect(await campaigns.findByNameWithCodes(`${name}   `)).toBeUndefined();
    const padded = await newCampaign(`${name} `);
    expect((await campaigns.findByNameWithCodes(`${name} `))?.campaign.id).toBe(padded.id);
  });

  it('uses a NO PAD collation for every column a client names', async () => {
    const rows = await services.db.em.fork().execute<{ column_name: string; collation_name: string }[]>(
      `select column_name, collation_name from information_schema.columns
       where table_schema = database() and table_name in ('campaign', 'coupon')
         and column_name in ('name', 'user_id', 'code')`,
    );
    expect(rows).toHaveLength(3);
    for (const row of rows) expect(['utf8mb4_nopad_bin', 'utf8mb4_0900_bin']).toContain(row.collation_name);
  });
});

describe('on a database whose unique key pads spaces', () => {
  it('never reports a look-alike id as the holder, so its slot can be given back', async () => {
    const em = services.db.em.fork();
    // This file's own database; the earlier tests' "alice" and "alice " could not share a PAD SPACE key.
    await em.execute('delete from coupon');
    // What the first migration made (and a server without a NO PAD collation would keep).
    await em.execute('alter table coupon modify user_id varchar(128) collate utf8mb4_bin not null');
    try {
      const campaign = await newCampaign();
      expect(await coupons.persist(coupon(campaign.id, 'bob'))).toBe('persisted');
      expect(await coupons.persist(coupon(campaign.id, 'bob '))).toBe('user-id-collides');
      expect(await coupons.persist(coupon(campaign.id, 'bob'))).toBe('user-has-coupon');
    } finally {
      await em.execute('alter table coupon modify user_id varchar(128) collate utf8mb4_nopad_bin not null');
    }
  });
});
