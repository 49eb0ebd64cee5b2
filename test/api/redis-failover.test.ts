import { type Client, Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, buildApp } from '../../src/app.ts';
import type { Config } from '../../src/config.ts';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { subscriberFor } from '../../src/infrastructure/redis/client.ts';
import { mastersRequiringFullCoverage } from '../../src/infrastructure/redis/cluster-settings.ts';
import { SoldOutCachingGate } from '../../src/infrastructure/redis/sold-out-cache.ts';
import { eventually, settledProblems, snapshot } from '../support/invariants.ts';
import {
  type RedisClusterHarness,
  redisClusterToolsAvailable,
  startRedisCluster,
} from '../support/redis-cluster.ts';
import { campaignRequest } from '../support/rpc.ts';
import { isolatedConfig, silentLogger, startApp, uniqueName } from '../support/services.ts';

/**
 * Issue 12, a master's failover: `kill -9` of the master that owns a campaign's slot while two
 * instances issue to it and to a control campaign on another master. The control campaign sees
 * no error; the affected one answers UNAVAILABLE (never INTERNAL, never a hang) until its replica
 * takes over, then issues again without a restart; /readyz of both instances stays 200 and names
 * the degraded master; at the end MySQL and Redis agree exactly. Both instances write batches of
 * both campaigns, in whatever order calls arrive, so a group-commit deadlock would show as an
 * error of the control campaign. The cluster runs with `cluster-require-full-coverage no`, as the
 * README asks: with Redis' default (yes), 1-2 calls of the control campaign failed at the
 * takeover in each of two runs (every node answers CLUSTERDOWN until the replica is promoted).
 */

// Not lower: in a full suite on 2 cores a healthy shard's call once took 617 ms and failed at 500.
const DEPENDENCY_TIMEOUT_MS = 1_000;
const RECONCILE_AFTER_MS = 2_500;
/** A call may take the dependency timeout, plus the time to answer it on a loaded 2-core machine. */
const LONGEST_CALL_MS = DEPENDENCY_TIMEOUT_MS + 1_000;
/** Node timeout (5 s) + the election, with room for a loaded machine. */
const FAILOVER_WITHIN_MS = 30_000;

type CouponClient = Client<typeof CouponService>;

let cluster: RedisClusterHarness;
let config: Config;
let a: Awaited<ReturnType<typeof startApp>>;
let b: { app: App; baseUrl: string };
/** Both instances, each over Connect (HTTP/1.1) and gRPC (HTTP/2). */
let clients: { label: string; baseUrl: string; client: CouponClient }[];

const available = redisClusterToolsAvailable();

beforeAll(async () => {
  if (!available) return;
  cluster = await startRedisCluster();
  config = isolatedConfig({
    REDIS_CLUSTER_NODES: cluster.seeds,
    DEPENDENCY_TIMEOUT_MS: String(DEPENDENCY_TIMEOUT_MS),
    BREAKER_RESET_MS: '300',
    RECONCILE_AFTER_MS: String(RECONCILE_AFTER_MS),
    RECONCILE_INTERVAL_MS: '500',
  });
  a = await startApp(config);
  const app = await buildApp(config, silentLogger);
  b = { app, baseUrl: `http://127.0.0.1:${(await app.listen()).port}` };
  clients = [a.baseUrl, b.baseUrl].flatMap((baseUrl, i) => [
    {
      label: `${'ab'[i]} connect`,
      baseUrl,
      client: createClient(CouponService, createConnectTransport({ baseUrl, httpVersion: '1.1' })),
    },
    {
      label: `${'ab'[i]} grpc`,
      baseUrl,
      client: createClient(CouponService, createGrpcTransport({ baseUrl })),
    },
  ]);
});
afterAll(async () => {
  try {
    await b?.app.close();
    await a?.stop();
  } finally {
    await cluster?.stop();
  }
});

async function createCampaign(amount: number): Promise<string> {
  const { campaign } = await (clients[0] as { client: CouponClient }).client.createCampaign(
    campaignRequest({ name: uniqueName('failover'), amount: BigInt(amount) }),
  );
  return campaign?.id ?? '';
}

async function ownerOf(campaignId: string): Promise<number> {
  return (await cluster.ownerOf(a.app.services.redisGate.keys(campaignId).remaining)).port;
}

interface Answer {
  readonly userId: string;
  readonly at: number;
  readonly ms: number;
  readonly outcome: string;
}

describe.skipIf(!available)('cluster-require-full-coverage', () => {
  it("is found where a master runs with it (Redis' default), so the service can warn at start", async () => {
    const redis = a.app.services.redis as Cluster;
    expect(await mastersRequiringFullCoverage(redis)).toEqual([]);
    const [master] = await cluster.masters();
    await cluster.cli(master as number, 'config', 'set', 'cluster-require-full-coverage', 'yes');
    try {
      expect(await mastersRequiringFullCoverage(redis)).toEqual([`127.0.0.1:${master}`]);
    } finally {
      await cluster.cli(master as number, 'config', 'set', 'cluster-require-full-coverage', 'no');
    }
  });
});

describe.skipIf(!available)('a Redis Cluster master killed mid-rush', () => {
  it('fails only its own campaign, UNAVAILABLE, until its replica takes over; the end state is exact', async () => {
    // Sells out during the run if the load outpaces the failover: the end state is exact either way.
    const affected = await createCampaign(4_000);
    const master = await ownerOf(affected);
    let control = '';
    for (let attempt = 0; !control; attempt++) {
      if (attempt > 60) throw new Error('60 campaigns and none on another master');
      const id = await createCampaign(100_000);
      if ((await ownerOf(id)) !== master) control = id;
    }

    // A sold-out campaign on the same master, remembered by a sold-out memory that trusts its
    // mark for ten minutes: losing the subscription with the master must drop the mark.
    let soldOut = '';
    for (let attempt = 0; !soldOut; attempt++) {
      if (attempt > 60) throw new Error('60 campaigns and none on the master to kill');
      const id = await createCampaign(1);
      if ((await ownerOf(id)) === master) soldOut = id;
    }
    await b.app.services.issuer.issueCoupon(soldOut, 'only-winner');
    const publisher = subscriberFor(b.app.services.redis);
    const subscriber = subscriberFor(b.app.services.redis);
    const memory = await SoldOutCachingGate.create(b.app.services.redisGate, publisher, subscriber, {
      channel: `${config.redisKeyPrefix}slots-returned`,
      trustMs: 600_000,
      maxUsers: 1_000,
    });
    await expect(memory.claimSlot(soldOut, 'late')).resolves.toEqual({ status: 'sold-out' });
    expect(
      await eventually(async () => (memory.isKnownSoldOut(soldOut) ? [] : ['not marked']), 5_000),
    ).toEqual([]);

    const answers = new Map<string, Answer[]>([
      [affected, []],
      [control, []],
    ]);
    let calls = 0;
    let stopped = false;
    const load = clients.flatMap(({ client }) =>
      [affected, control].map(async (campaignId) => {
        while (!stopped) {
          const started = Date.now();
          const userId = `u-${calls++}`;
          let outcome = 'ok';
          try {
            await client.issueCoupon({ campaignId, userId });
          } catch (error) {
            outcome = Code[ConnectError.from(error).code] ?? 'unknown';
          }
          answers.get(campaignId)?.push({ userId, at: started, ms: Date.now() - started, outcome });
        }
      }),
    );
    const readiness: { instance: string; status: number; degraded: string[] }[] = [];
    const probing = [a.baseUrl, b.baseUrl].map(async (baseUrl) => {
      while (!stopped) {
        const response = await fetch(`${baseUrl}/readyz`);
        const body = (await response.json()) as { degraded?: string[] };
        readiness.push({ instance: baseUrl, status: response.status, degraded: body.degraded ?? [] });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    });
    const issued = (campaignId: string, after: number) =>
      answers.get(campaignId)?.some((answer) => answer.at > after && answer.outcome === 'ok');
    let killedAt = 0;
    let forgottenAt = 0;
    let promotedAt = 0;
    let issuedAgainAt = 0;
    try {
      expect(await eventually(async () => [affected, control].filter((id) => !issued(id, 0)), 5_000)).toEqual(
        [],
      );
      killedAt = Date.now();
      cluster.kill(master);
      expect(
        await eventually(
          async () =>
            memory.isKnownSoldOut(soldOut) ? ['sold-out mark kept with its subscription gone'] : [],
          FAILOVER_WITHIN_MS,
        ),
      ).toEqual([]);
      forgottenAt = Date.now();
      expect(
        await eventually(
          async () =>
            ((await cluster.ownerOf(a.app.services.redisGate.keys(affected).remaining).catch(() => undefined))
              ?.port ?? master) !== master
              ? []
              : ['not failed over'],
          FAILOVER_WITHIN_MS,
        ),
      ).toEqual([]);
      promotedAt = Date.now();
      expect(
        await eventually(
          async () => (issued(affected, promotedAt) ? [] : ['affected does not issue again']),
          10_000,
        ),
      ).toEqual([]);
      issuedAgainAt = Date.now();
      // A little more load after the recovery, on the new master.
      const more = calls + 200;
      await eventually(async () => (calls >= more ? [] : ['more']), 5_000);
    } finally {
      stopped = true;
      await Promise.all([...load, ...probing]);
      publisher.disconnect();
      subscriber.disconnect();
    }

    const affectedAnswers = answers.get(affected) ?? [];
    const controlAnswers = answers.get(control) ?? [];
    const tally = (list: readonly Answer[]) =>
      list.reduce<Record<string, number>>((counted, answer) => {
        counted[answer.outcome] = (counted[answer.outcome] ?? 0) + 1;
        return counted;
      }, {});
    const slowest = (list: readonly Answer[]) => Math.max(...list.map((answer) => answer.ms));
    const firstOk = affectedAnswers.find((answer) => answer.at > killedAt && answer.outcome === 'ok');
    console.info(
      `failover of master ${master}: sold-out mark dropped ${forgottenAt - killedAt} ms after the kill, promoted after ${promotedAt - killedAt} ms, affected issued again ${(firstOk?.at ?? issuedAgainAt) - killedAt} ms after the kill; affected ${JSON.stringify(tally(affectedAnswers))} (slowest ${slowest(affectedAnswers)} ms), control ${JSON.stringify(tally(controlAnswers))} (slowest ${slowest(controlAnswers)} ms); /readyz ${readiness.length} probes, ${readiness.filter((r) => r.status !== 200).length} not 200, ${readiness.filter((r) => r.degraded.length > 0).length} naming a degraded master`,
    );

    // The control campaign, on a healthy master, never failed, in either instance.
    expect(controlAnswers.filter((answer) => answer.outcome !== 'ok')).toEqual([]);
    // The affected one failed only UNAVAILABLE (or sold out, if it ran out), and no call hung.
    const outcomes = new Set(affectedAnswers.map((answer) => answer.outcome));
    outcomes.delete('ResourceExhausted');
    expect(outcomes).toEqual(new Set(['ok', 'Unavailable']));
    expect(Math.max(slowest(affectedAnswers), slowest(controlAnswers))).toBeLessThanOrEqual(LONGEST_CALL_MS);
    // Readiness never took an instance out of the load balancer, and named the failing master.
    expect(readiness.filter((r) => r.status !== 200)).toEqual([]);
    expect(readiness.some((r) => r.degraded.includes(`redis 127.0.0.1:${master}`))).toBe(true);

    for (const campaignId of [affected, control]) {
      const problems = await eventually(
        async () => settledProblems(await snapshot(a.app.services, campaignId)),
        RECONCILE_AFTER_MS + 10_000,
      );
      expect(problems).toEqual([]);
      const state = await snapshot(a.app.services, campaignId);
      // Every coupon a client was told of is in MySQL.
      const holders = new Set(state.rows.map((row) => row.user_id));
      const acknowledged = (answers.get(campaignId) ?? []).filter((answer) => answer.outcome === 'ok');
      expect(acknowledged.filter((answer) => !holders.has(answer.userId))).toEqual([]);
    }
  });
});
