import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { type Client, Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, buildApp, buildServices } from '../../src/app.ts';
import type { Config } from '../../src/config.ts';
import { CouponService, CreateCampaignRequestSchema } from '../../src/gen/coupon/v1/coupon_pb.js';
import { KeyspaceTakenError } from '../../src/infrastructure/keyspace-owner.ts';
import { subscriberFor } from '../../src/infrastructure/redis/client.ts';
import { SoldOutCachingGate } from '../../src/infrastructure/redis/sold-out-cache.ts';
import { eventually, settledProblems, snapshot } from '../support/invariants.ts';
import {
  type RedisClusterHarness,
  redisClusterToolsAvailable,
  startRedisCluster,
} from '../support/redis-cluster.ts';
import { rush } from '../support/rush.ts';
import { isolatedConfig, openWindow, silentLogger, startApp, uniqueName } from '../support/services.ts';

type CouponClient = Client<typeof CouponService>;

const CLAIM_SCRIPT_SHA = createHash('sha1')
  .update(readFileSync(new URL('../../src/infrastructure/redis/claim-slots.lua', import.meta.url), 'utf8'))
  .digest('hex');

let cluster: RedisClusterHarness;
let config: Config;
let a: Awaited<ReturnType<typeof startApp>>;
/** A second instance: same database, same key prefix, same cluster. */
let b: { app: App; baseUrl: string };
/** Each instance over Connect (HTTP/1.1) and gRPC (HTTP/2). */
let clients: {
  a: { connect: CouponClient; grpc: CouponClient };
  b: { connect: CouponClient; grpc: CouponClient };
};

/** A loopback port nothing listens on: a seed node that is down at start. */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function clientsOf(baseUrl: string) {
  return {
    connect: createClient(CouponService, createConnectTransport({ baseUrl, httpVersion: '1.1' })),
    grpc: createClient(CouponService, createGrpcTransport({ baseUrl })),
  };
}

async function createCampaign(client: CouponClient, amount: number): Promise<string> {
  const window = openWindow();
  const { campaign } = await answered(() =>
    client.createCampaign(
      create(CreateCampaignRequestSchema, {
        name: uniqueName('cluster'),
        amount: BigInt(amount),
        issuedAt: timestampFromDate(window.issuedAt),
        expiresAt: timestampFromDate(window.expiresAt),
      }),
    ),
  );
  return campaign?.id ?? '';
}

/** The master that owns a campaign's keys (its `{id}` slot). */
async function ownerOf(campaignId: string): Promise<number> {
  return (await cluster.ownerOf(a.app.services.redisGate.keys(campaignId).remaining)).port;
}

/** Creates campaigns through `client` until one lives on each master; one per master. */
async function campaignOnEveryMaster(client: CouponClient, amount: number): Promise<Map<number, string>> {
  const masters = await cluster.masters();
  const byMaster = new Map<number, string>();
  for (let attempt = 0; byMaster.size < masters.length; attempt++) {
    if (attempt > 60) throw new Error(`60 campaigns and still not one on each of ${masters.join(', ')}`);
    const id = await createCampaign(client, amount);
    const owner = await ownerOf(id);
    if (!byMaster.has(owner)) byMaster.set(owner, id);
  }
  return byMaster;
}

/**
 * Every call is answered as a client would see it, with no retry: two instances writing batches
 * of several campaigns once deadlocked in MySQL (group commit now locks rows in one order and
 * runs a deadlock victim again), and any UNAVAILABLE, from the database or from Redis, fails.
 */
function answered<T>(call: () => Promise<T>): Promise<T> {
  return call();
}

const available = redisClusterToolsAvailable();

beforeAll(async () => {
  if (!available) return;
  cluster = await startRedisCluster();
  config = isolatedConfig({
    // REDIS_URL names one node: a client that ignored REDIS_CLUSTER_NODES would talk to that node
    // alone and be answered MOVED for two thirds of the campaigns.
    REDIS_URL: `redis://${cluster.nodes[0]?.host}:${cluster.nodes[0]?.port}/0`,
    // One seed is down at start: any seed that answers is enough.
    REDIS_CLUSTER_NODES: `127.0.0.1:${await deadPort()},${cluster.seeds}`,
    // An hour between reads of new campaigns: only the announcement can tell the other instance.
    CAMPAIGN_REFRESH_MS: '3600000',
    // The per-address limiter (rate-limiter-flexible) runs on the cluster too, without refusing.
    ISSUE_RATE_LIMIT_PER_IP: '1000000',
  });
  a = await startApp(config);
  const app = await buildApp(config, silentLogger);
  b = { app, baseUrl: `http://127.0.0.1:${(await app.listen()).port}` };
  clients = { a: clientsOf(a.baseUrl), b: clientsOf(b.baseUrl) };
});
afterAll(async () => {
  try {
    await b?.app.close();
    await a?.stop();
  } finally {
    await cluster?.stop();
  }
});

describe.skipIf(!available)('two instances on a Redis Cluster of 3 masters and 3 replicas', () => {
  const amount = 100;
  let campaigns: string[] = [];
  const winners = new Map<string, string>();

  it('issue exactly the amount of each campaign, one on every master, over Connect and gRPC', async () => {
    const byMaster = await campaignOnEveryMaster(clients.a.connect, amount);
    campaigns = [...byMaster.values()];
    // Users of every campaign interleaved, so each event-loop turn claims on several shards at once.
    const perCampaign = 2.5 * amount;
    const calls: { campaignId: string; userId: string; client: CouponClient }[] = [];
    const all = [clients.a.connect, clients.a.grpc, clients.b.connect, clients.b.grpc];
    for (let i = 0; i < perCampaign; i++) {
      for (const [c, campaignId] of campaigns.entries()) {
        calls.push({
          campaignId,
          userId: `rush-${c}-${i}`,
          client: all[(i + c) % all.length] as CouponClient,
        });
      }
    }
    const byUser = new Map(calls.map((call) => [call.userId, call]));
    const result = await rush(
      async (userId) => {
        const call = byUser.get(userId);
        if (!call) throw new Error(`no call for ${userId}`);
        const { coupon } = await answered(() =>
          call.client.issueCoupon({ campaignId: call.campaignId, userId }),
        );
        return { code: coupon?.code ?? '', userId: coupon?.userId ?? '' };
      },
      calls.map((call) => call.userId),
      { concurrency: 48 },
    );
    console.info(
      `cluster rush: ${JSON.stringify(result.outcomes)} over ${campaigns.length} campaigns on masters ${[...byMaster.keys()].join(', ')}`,
    );
    expect(result.outcomes).toEqual({
      ok: campaigns.length * amount,
      ResourceExhausted: calls.length - campaigns.length * amount,
    });

    for (const campaignId of campaigns) {
      const state = await snapshot(a.app.services, campaignId);
      expect(settledProblems(state)).toEqual([]);
      expect(state.rows).toHaveLength(amount);
      expect(state.remaining).toBe(0);
      expect(state.users.sort()).toEqual(state.rows.map((row) => row.user_id).sort());
      for (const row of state.rows) winners.set(row.user_id, campaignId);
      // The keys really are on that master: a plain connection to it finds them.
      const keys = a.app.services.redisGate.keys(campaignId);
      const owner = [...byMaster].find(([, id]) => id === campaignId)?.[0] as number;
      expect(await cluster.cli(owner, 'exists', keys.remaining, keys.users, keys.window)).toBe('3\n');
    }
    // The claim script was loaded (EVAL once per connection, EVALSHA after) on every master.
    for (const master of byMaster.keys()) {
      expect(await cluster.cli(master, 'script', 'exists', CLAIM_SCRIPT_SHA)).toBe('1\n');
    }
  });

  it('answer a sold-out storm on both instances: sold out, or already issued for a winner', async () => {
    expect(campaigns).toHaveLength(3);
    const all = [clients.a.connect, clients.a.grpc, clients.b.connect, clients.b.grpc];
    const late = campaigns.flatMap((campaignId, c) =>
      Array.from({ length: 150 }, (_, i) => ({ campaignId, userId: `late-${c}-${i}` })),
    );
    const again = [...winners].slice(0, 60).map(([userId, campaignId]) => ({ campaignId, userId }));
    const outcomes: Record<string, number> = {};
    let next = 0;
    const storm = [...late, ...again].sort(() => Math.random() - 0.5);
    await Promise.all(
      Array.from({ length: 32 }, async (_, worker) => {
        while (next < storm.length) {
          const call = storm[next++] as { campaignId: string; userId: string };
          try {
            await answered(() => (all[worker % all.length] as CouponClient).issueCoupon(call));
            outcomes.issued = (outcomes.issued ?? 0) + 1;
          } catch (error) {
            const e = ConnectError.from(error);
            const holds = winners.get(call.userId) === call.campaignId;
            const answer =
              e.code === Code.AlreadyExists && holds
                ? 'already issued to a winner'
                : e.code === Code.ResourceExhausted && !holds && e.message.includes('sold out')
                  ? 'sold out'
                  : `${Code[e.code]}: ${e.message}`;
            outcomes[answer] = (outcomes[answer] ?? 0) + 1;
          }
        }
      }),
    );
    expect(outcomes).toEqual({ 'sold out': late.length, 'already issued to a winner': again.length });
    for (const campaignId of campaigns) {
      expect((await snapshot(a.app.services, campaignId)).rows).toHaveLength(amount);
    }
  });

  it('issue on one instance the campaigns created on the other, told by the announcement', async () => {
    const byMaster = await campaignOnEveryMaster(clients.b.grpc, 2);
    for (const campaignId of byMaster.values()) {
      // Periodic reads are an hour apart: only the announcement over the cluster makes it live.
      const problems = await eventually(
        async () => (a.app.services.directory.lookup(campaignId) === 'live' ? [] : ['not announced']),
        5_000,
      );
      expect(problems).toEqual([]);
      const { coupon } = await answered(() => clients.a.grpc.issueCoupon({ campaignId, userId: 'first' }));
      expect(coupon?.campaignId).toBe(campaignId);
      await expect(
        answered(() => clients.a.connect.issueCoupon({ campaignId, userId: 'second' })),
      ).resolves.toBeDefined();
      await expect(
        answered(() => clients.b.connect.issueCoupon({ campaignId, userId: 'third' })),
      ).rejects.toMatchObject({
        code: Code.ResourceExhausted,
      });
    }
  });

  it('forget a sold-out campaign in the other instance when a slot comes back', async () => {
    const services = a.app.services;
    const campaignId = await createCampaign(clients.a.connect, 2);
    for (const user of ['k1', 'k2']) {
      await answered(() => services.issuer.issueCoupon(campaignId, user));
    }
    // Another instance's memory, listening on the cluster with a trust long enough that only the
    // announcement can make it forget.
    const publisher = subscriberFor(b.app.services.redis);
    const subscriber = subscriberFor(b.app.services.redis);
    const other = await SoldOutCachingGate.create(b.app.services.redisGate, publisher, subscriber, {
      channel: `${config.redisKeyPrefix}slots-returned`,
      trustMs: 60_000,
      maxUsers: 1_000,
    });
    try {
      await expect(other.claimSlot(campaignId, 'late')).resolves.toEqual({ status: 'sold-out' });
      expect(
        await eventually(async () => (other.isKnownSoldOut(campaignId) ? [] : ['not marked']), 2_000),
      ).toEqual([]);
      // k2's row is lost and its claim pending again: this instance gives the slot back...
      await services.redis.zadd(services.redisGate.keys(campaignId).pending, Date.now(), 'k2');
      const em = services.db.em.fork();
      await em.execute('delete from coupon where campaign_id = ? and user_id = ?', [campaignId, 'k2']);
      await em.execute('update campaign set issued_count = issued_count - 1 where id = ?', [campaignId]);
      const masters = await cluster.masters();
      await Promise.all(masters.map((port) => cluster.cli(port, 'config', 'resetstat')));
      expect(await services.gate.releaseSlot(campaignId, 'k2')).toBe(true);
      // Announced on the campaign's own sharded channel (its master only), not broadcast to
      // every node with classic PUBLISH.
      const published = async (port: number, command: string) =>
        Number(
          /calls=(\d+)/.exec(
            (await cluster.cli(port, 'info', 'commandstats'))
              .split('\n')
              .find((line) => line.startsWith(`cmdstat_${command}:`)) ?? '',
          )?.[1] ?? 0,
        );
      const owner = await ownerOf(campaignId);
      expect(await published(owner, 'spublish')).toBe(1);
      for (const port of masters) expect(await published(port, 'publish')).toBe(0);
      // ...and the other hears of it over the cluster and asks Redis again, where the slot is free.
      expect(
        await eventually(async () => (other.isKnownSoldOut(campaignId) ? ['still marked'] : []), 2_000),
      ).toEqual([]);
      await expect(other.claimSlot(campaignId, 'lucky')).resolves.toMatchObject({ status: 'claimed' });
    } finally {
      publisher.disconnect();
      subscriber.disconnect();
    }
  });

  it('refuse another deployment on the same key prefix, naming the cluster', async () => {
    const other = isolatedConfig({
      REDIS_URL: config.redisUrl,
      REDIS_CLUSTER_NODES: cluster.seeds,
      REDIS_KEY_PREFIX: config.redisKeyPrefix,
    });
    try {
      const started = buildServices(other, silentLogger);
      await expect(started).rejects.toBeInstanceOf(KeyspaceTakenError);
      await expect(started).rejects.toThrow(
        /^invalid configuration: REDIS_KEY_PREFIX: .* on the Redis Cluster at 127\.0\.0\.1:/,
      );
    } finally {
      const database = new URL(other.databaseUrl).pathname.slice(1);
      await a.app.services.db.em.fork().execute(`drop database if exists \`${database}\``);
    }
  });
});
