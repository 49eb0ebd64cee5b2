import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../../src/app.ts';
import { subscriberFor } from '../../../src/infrastructure/redis/client.ts';
import { ItemFailure, TickBatcher } from '../../../src/infrastructure/redis/tick-batcher.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from '../../support/services.ts';

let env: Awaited<ReturnType<typeof startServices>>;
let services: Services;

beforeAll(async () => {
  env = await startServices(isolatedConfig({ ISSUE_RATE_LIMIT_PER_USER: '2' }));
  services = env.services;
});
afterAll(async () => {
  await env?.stop();
});

async function loadedCampaign(amount: number) {
  const campaign = await services.campaigns.createCampaign({
    name: uniqueName('batch'),
    amount: BigInt(amount),
    ...openWindow(),
  });
  const state = await services.repositories.campaigns.loadGateState(campaign.id);
  if (!state) throw new Error('campaign not found');
  await services.redisGate.loadCampaign(state);
  return campaign;
}

/** Watches the real Redis (MONITOR) for script calls that name one of these campaigns' keys. */
async function watchScriptCalls(campaignIds: string[]): Promise<{ calls(): Promise<number>; stop(): void }> {
  const connection = subscriberFor(services.redis);
  if (!(connection instanceof Redis)) throw new Error('MONITOR needs a single Redis server, not a cluster');
  const monitor = await connection.monitor();
  let calls = 0;
  const markers = new Map<string, () => void>();
  monitor.on('monitor', (_time: string, args: string[]) => {
    const [command, ...rest] = args;
    const name = command?.toLowerCase();
    if (name === 'echo') markers.get(rest[0] ?? '')?.();
    const isScript = name === 'evalsha' || name === 'eval';
    if (isScript && campaignIds.some((id) => rest.some((arg) => arg.includes(`{${id}}:window`)))) calls++;
  });
  return {
    // Redis runs commands one at a time and MONITOR reports them in that order: once it
    // reports an ECHO sent now, it has reported every command before it.
    async calls() {
      const marker = `marker-${Math.random()}`;
      const seen = new Promise<void>((resolve) => markers.set(marker, resolve));
      await services.redis.echo(marker);
      await seen;
      return calls;
    },
    stop: () => {
      monitor.disconnect();
      connection.disconnect();
    },
  };
}

describe('claims of one moment, in one script call', () => {
  it('judges them in arrival order exactly as one by one', async () => {
    const campaign = await loadedCampaign(3);
    const watch = await watchScriptCalls([campaign.id]);
    try {
      const outcomes = await Promise.all(
        ['a', 'b', 'a', 'c', 'd', 'a'].map((user) => services.redisGate.claimSlot(campaign.id, user)),
      );
      expect(outcomes.map((outcome) => outcome.status)).toEqual([
        'claimed',
        'claimed',
        // Served, but its first claim is still pending (no coupon written yet).
        'pending',
        'claimed',
        'sold-out',
        // The user's third call in this second: over the limit of 2.
        'rate-limited',
      ]);
      expect(
        outcomes.map((outcome) => (outcome.status === 'claimed' ? outcome.remaining : undefined)),
      ).toEqual([2, 1, undefined, 0, undefined, undefined]);
      expect(await watch.calls()).toBe(1);
    } finally {
      watch.stop();
    }
    await expect(services.redisGate.countSlots(campaign.id)).resolves.toEqual({
      remaining: 0,
      users: 3,
      pending: 3,
    });
  });

  it('keeps campaigns apart: one call per campaign, each with its own outcome', async () => {
    const [first, second] = await Promise.all([loadedCampaign(1), loadedCampaign(1)]);
    const watch = await watchScriptCalls([first?.id ?? '', second?.id ?? '']);
    try {
      const outcomes = await Promise.all([
        services.redisGate.claimSlot(first?.id ?? '', 'x'),
        services.redisGate.claimSlot(second?.id ?? '', 'x'),
        services.redisGate.claimSlot(first?.id ?? '', 'y'),
      ]);
      expect(outcomes.map((outcome) => outcome.status)).toEqual(['claimed', 'claimed', 'sold-out']);
      expect(await watch.calls()).toBe(2);
    } finally {
      watch.stop();
    }
  });
});

describe('TickBatcher', () => {
  it('splits a turn into calls of at most maxBatch items, in order', async () => {
    const calls: number[][] = [];
    const batcher = new TickBatcher<number, number>(async (_key, items) => {
      calls.push(items);
      return items.map((item) => item * 10);
    }, 2);
    await expect(Promise.all([1, 2, 3, 4, 5].map((item) => batcher.add('k', item)))).resolves.toEqual([
      10, 20, 30, 40, 50,
    ]);
    expect(calls).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('fails every caller of a failed call, and only those', async () => {
    const batcher = new TickBatcher<string, string>(async (key, items) => {
      if (key === 'down') throw new Error('store unavailable');
      return items;
    }, 10);
    const results = await Promise.allSettled([
      batcher.add('down', 'a'),
      batcher.add('up', 'b'),
      batcher.add('down', 'c'),
    ]);
    expect(results.map((result) => result.status)).toEqual(['rejected', 'fulfilled', 'rejected']);
  });

  it('fails only the caller of an item that failed on its own', async () => {
    const batcher = new TickBatcher<string, string>(
      async (_key, items) =>
        items.map((item) => (item === 'bad' ? new ItemFailure(new Error('unreadable')) : item)),
      10,
    );
    const results = await Promise.allSettled(['a', 'bad', 'c'].map((item) => batcher.add('k', item)));
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toEqual(new Error('unreadable'));
  });
});
