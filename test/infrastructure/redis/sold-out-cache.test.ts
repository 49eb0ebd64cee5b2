import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../../src/app.ts';
import {
  AlreadyIssuedError,
  CampaignNotFoundError,
  ClaimPendingError,
  InvalidArgumentError,
  SoldOutError,
} from '../../../src/domain/errors.ts';
import { subscriberFor } from '../../../src/infrastructure/redis/client.ts';
import { SoldOutCachingGate } from '../../../src/infrastructure/redis/sold-out-cache.ts';
import { eventually } from '../../support/invariants.ts';
import { openWindow, startServices, uniqueName } from '../../support/services.ts';

let env: Awaited<ReturnType<typeof startServices>>;
let services: Services;

beforeAll(async () => {
  env = await startServices();
  services = env.services;
});
afterAll(async () => {
  await env?.stop();
});

async function soldOutCampaign(holders: string[]) {
  const campaign = await services.campaigns.createCampaign({
    name: uniqueName('sold-out'),
    amount: BigInt(holders.length),
    ...openWindow(),
  });
  for (const user of holders) await services.issuer.issueCoupon(campaign.id, user);
  await expect(services.gate.claimSlot(campaign.id, 'late')).resolves.toEqual({ status: 'sold-out' });
  return campaign;
}

describe('the sold-out cache', () => {
  it('answers a sold-out campaign from memory, holders with "duplicate" and everyone else "sold out"', async () => {
    const campaign = await soldOutCampaign(['h1', 'h2']);
    expect(
      await eventually(
        async () => (services.gate.isKnownSoldOut(campaign.id) ? [] : ['not marked yet']),
        2_000,
      ),
    ).toEqual([]);
    // Take the campaign away from Redis: an answer that still comes must come from memory.
    const keys = services.redisGate.keys(campaign.id);
    const aside = `${keys.window}:aside`;
    await services.redis.rename(keys.window, aside);
    try {
      await expect(services.gate.claimSlot(campaign.id, 'someone-new')).resolves.toEqual({
        status: 'sold-out',
      });
      await expect(services.gate.claimSlot(campaign.id, 'h1')).resolves.toEqual({ status: 'duplicate' });
      await expect(services.redisGate.claimSlot(campaign.id, 'someone-new')).resolves.toEqual({
        status: 'not-loaded',
      });
    } finally {
      await services.redis.rename(aside, keys.window);
    }
  });

  it('lets the issuer refuse from memory exactly what the mark knows, and nothing else', async () => {
    // m0's coupon is confirmed before the last slot is claimed; m1's claim may still be pending
    // when the mark is read, and a pending claim is left to Redis.
    const campaign = await soldOutCampaign(['m0', 'm1']);
    const open = await services.campaigns.createCampaign({
      name: uniqueName('open'),
      amount: 5n,
      ...openWindow(),
    });
    expect(
      await eventually(
        async () => (services.gate.isKnownSoldOut(campaign.id) ? [] : ['not marked yet']),
        2_000,
      ),
    ).toEqual([]);
    expect(services.issuer.refusalFromMemory(campaign.id, 'late')).toBeInstanceOf(SoldOutError);
    expect(services.issuer.refusalFromMemory(campaign.id, 'm0')).toBeInstanceOf(AlreadyIssuedError);
    expect(services.issuer.refusalFromMemory(campaign.id, 'm1')).not.toBeInstanceOf(SoldOutError);
    expect(services.issuer.refusalFromMemory(open.id, 'late')).toBeUndefined();
    expect(services.issuer.refusalFromMemory('not-an-id', 'late')).toBeInstanceOf(CampaignNotFoundError);
    expect(services.issuer.refusalFromMemory(open.id, '')).toBeInstanceOf(InvalidArgumentError);
  });

  it('never answers a user whose claim is still pending from memory: Redis tells "still being settled"', async () => {
    const campaign = await services.campaigns.createCampaign({
      name: uniqueName('ghost'),
      amount: 1n,
      ...openWindow(),
    });
    // A claim whose process died before writing its coupon: served, pending, no row.
    await expect(services.gate.claimSlot(campaign.id, 'ghost')).resolves.toMatchObject({ status: 'claimed' });
    await expect(services.gate.claimSlot(campaign.id, 'late')).resolves.toEqual({ status: 'sold-out' });
    expect(
      await eventually(
        async () => (services.gate.isKnownSoldOut(campaign.id) ? [] : ['not marked yet']),
        2_000,
      ),
    ).toEqual([]);
    expect(services.issuer.refusalFromMemory(campaign.id, 'late')).toBeInstanceOf(SoldOutError);
    expect(services.issuer.refusalFromMemory(campaign.id, 'ghost')).toBeUndefined();
    await expect(services.issuer.issueCoupon(campaign.id, 'ghost')).rejects.toBeInstanceOf(ClaimPendingError);
  });

  it('forgets the mark in every instance when a slot comes back', async () => {
    const campaign = await soldOutCampaign(['k1', 'k2']);
    const other = subscriberFor(services.redis);
    const otherSubscriber = subscriberFor(services.redis);
    const otherInstance = await SoldOutCachingGate.create(services.redisGate, other, otherSubscriber, {
      channel: `${env.config.redisKeyPrefix}slots-returned`,
      trustMs: 60_000,
      maxUsers: 1_000,
    });
    try {
      await otherInstance.claimSlot(campaign.id, 'late-2');
      expect(
        await eventually(
          async () => (otherInstance.isKnownSoldOut(campaign.id) ? [] : ['not marked']),
          2_000,
        ),
      ).toEqual([]);
      // A claim that never got its row is given back by this instance...
      const claimTaker = (
        await services.redisGate.listPendingClaims(campaign.id, new Date(Date.now() + 60_000), 10)
      ).length;
      expect(claimTaker).toBe(0);
      await services.redis.zadd(services.redisGate.keys(campaign.id).pending, Date.now(), 'k2');
      await services.db.em
        .fork()
        .execute('delete from coupon where campaign_id = ? and user_id = ?', [campaign.id, 'k2']);
      await services.db.em
        .fork()
        .execute('update campaign set issued_count = issued_count - 1 where id = ?', [campaign.id]);
      expect(await services.gate.releaseSlot(campaign.id, 'k2')).toBe(true);
      // ...and the other instance hears of it and asks Redis again, where the slot is free.
      expect(
        await eventually(
          async () => (otherInstance.isKnownSoldOut(campaign.id) ? ['still marked'] : []),
          2_000,
        ),
      ).toEqual([]);
      await expect(otherInstance.claimSlot(campaign.id, 'lucky')).resolves.toMatchObject({
        status: 'claimed',
      });
    } finally {
      other.disconnect();
      otherSubscriber.disconnect();
    }
  });
});
