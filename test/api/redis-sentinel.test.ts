import net from 'node:net';
import { type Client, Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServices } from '../../src/app.ts';
import type { Config } from '../../src/config.ts';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { KeyspaceTakenError } from '../../src/infrastructure/keyspace-owner.ts';
import { eventually, settledProblems, snapshot } from '../support/invariants.ts';
import {
  type RedisSentinelHarness,
  redisSentinelToolsAvailable,
  startRedisSentinel,
} from '../support/redis-sentinel.ts';
import { campaignRequest } from '../support/rpc.ts';
import { rush, users } from '../support/rush.ts';
import { isolatedConfig, silentLogger, startApp } from '../support/services.ts';

/**
 * Issue 12, Sentinel mode: one primary, two replicas and three sentinels of the file's own
 * (real `redis-server` processes). The primary is killed with SIGKILL in the middle of a rush;
 * calls are answered UNAVAILABLE (never INTERNAL, never a hang) until the sentinels promote a
 * replica, then the same app issues again, with no restart, and the end state is exact. Then a
 * planned failover (SENTINEL FAILOVER), whose old primary stays up and must be left.
 */

const DEPENDENCY_TIMEOUT_MS = 500;
const RECONCILE_AFTER_MS = 1_500;
/**
 * One call: a few Redis steps each bounded by the dependency timeout (a command sent to the
 * primary as it died is failed by its timeout, never sent again), plus the time to answer on a
 * loaded 2-core machine.
 */
const LONGEST_CALL_MS = 2 * DEPENDENCY_TIMEOUT_MS + 1_000;
/** A db other than 0: the sentinels' primary is an ordinary server and REDIS_URL's db applies. */
const DB = 2;

let sentinel: RedisSentinelHarness;
let config: Config;
let service: Awaited<ReturnType<typeof startApp>>;
type CouponClient = Client<typeof CouponService>;
let clients: CouponClient[];

/** A loopback port nothing listens on. */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const available = redisSentinelToolsAvailable();

beforeAll(async () => {
  if (!available) return;
  sentinel = await startRedisSentinel();
  config = isolatedConfig({
    // Nothing listens at REDIS_URL's address: a client that did not ask the sentinels would fail.
    REDIS_URL: `redis://127.0.0.1:${await deadPort()}/${DB}`,
    // One sentinel is down at start: any one that answers is enough.
    REDIS_SENTINELS: `127.0.0.1:${await deadPort()},${sentinel.sentinels}`,
    REDIS_SENTINEL_NAME: sentinel.name,
    DEPENDENCY_TIMEOUT_MS: String(DEPENDENCY_TIMEOUT_MS),
    BREAKER_RESET_MS: '300',
    RECONCILE_AFTER_MS: String(RECONCILE_AFTER_MS),
    RECONCILE_INTERVAL_MS: '500',
  });
  service = await startApp(config);
  clients = [
    createClient(CouponService, createConnectTransport({ baseUrl: service.baseUrl, httpVersion: '1.1' })),
    createClient(CouponService, createGrpcTransport({ baseUrl: service.baseUrl })),
  ];
});
afterAll(async () => {
  try {
    await service?.stop();
  } finally {
    await sentinel?.stop();
  }
});

interface Attempt {
  readonly at: number;
  readonly ms: number;
  readonly outcome: string;
}

/**
 * A rush of 3 x `amount` distinct users over Connect and gRPC, by clients that retry UNAVAILABLE
 * after 100 ms (what the status asks) for up to 20 s; `fault` runs once 200 coupons are issued and
 * resolves the primary it took away. Until half a second after the promotion each caller pauses
 * 10 ms between users, so the campaign is still selling when the new primary takes over (a planned
 * failover takes about a second); then it sells out at full speed. /readyz is probed every 100 ms
 * meanwhile. Checks what must hold through any failover, then that the app follows the new
 * primary, and logs a one-line account of the run.
 */
async function rushThrough(
  label: string,
  fault: () => Promise<number>,
  options: { mustSeeUnavailable: boolean },
): Promise<void> {
  const amount = 1_500;
  const { campaign } = await (clients[0] as CouponClient).createCampaign(
    campaignRequest({ amount: BigInt(amount) }),
  );
  const campaignId = campaign?.id ?? '';
  const attempts: Attempt[] = [];
  const unavailableReasons: Record<string, number> = {};
  const readiness: { at: number; status: number }[] = [];
  let faultAt = 0;
  let promotion: Promise<{ port: number; waitedMs: number }> | undefined;
  let promotedAt: number | undefined;
  let calls = 0;
  let rushing = true;

  const issue = async (userId: string) => {
    if (promotedAt === undefined || Date.now() < promotedAt + 500) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const client = clients[calls++ % clients.length] as CouponClient;
    const giveUpAt = Date.now() + 20_000;
    for (;;) {
      const started = Date.now();
      try {
        const { coupon } = await client.issueCoupon({ campaignId, userId });
        attempts.push({ at: started, ms: Date.now() - started, outcome: 'ok' });
        return { code: coupon?.code ?? '', userId: coupon?.userId ?? '' };
      } catch (error) {
        const { code, rawMessage } = ConnectError.from(error);
        attempts.push({ at: started, ms: Date.now() - started, outcome: Code[code] ?? 'Unknown' });
        if (code === Code.Unavailable) {
          // "redis unavailable while ...", "... is still being settled ...": ids and numbers cut.
          const reason = rawMessage.replace(/[0-9a-f]{8,}|\d+|user "[^"]*"/g, '#').slice(0, 70);
          unavailableReasons[reason] = (unavailableReasons[reason] ?? 0) + 1;
        }
        if (code !== Code.Unavailable || Date.now() > giveUpAt) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };
  const probing = (async () => {
    while (rushing) {
      const response = await fetch(`${service.baseUrl}/readyz`).catch(() => undefined);
      readiness.push({ at: Date.now(), status: response?.status ?? 0 });
      await response?.arrayBuffer();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  const result = await rush(issue, users(label, 3 * amount), {
    concurrency: 16,
    onIssued: (count) => {
      if (count !== 200) return;
      faultAt = Date.now();
      promotion = fault().then(async (former) => {
        faultAt = Date.now();
        const promoted = await sentinel.promotedFrom(former);
        promotedAt = Date.now();
        return promoted;
      });
    },
  });
  rushing = false;
  await probing;
  expect(promotion).toBeDefined();
  const promoted = await (promotion as NonNullable<typeof promotion>);
  const right = await snapshot(service.app.services, campaignId);

  // From here on faultAt is when the fault was done (the kill sent, the failover accepted).
  const afterFault = attempts.filter((attempt) => attempt.at >= faultAt);
  const unavailable = afterFault.filter((attempt) => attempt.outcome === 'Unavailable');
  const firstIssuedAfter = (at: number) =>
    Math.min(
      ...afterFault.filter((attempt) => attempt.outcome === 'ok' && attempt.at >= at).map((a) => a.at),
    );
  const notReady = readiness.filter((probe) => probe.status !== 200);
  const since = (at: number | undefined) => (at ?? faultAt) - faultAt;

  console.info(
    `${label}: promoted ${promoted.port} ${promoted.waitedMs} ms after the fault; ` +
      `first coupon issued ${since(firstIssuedAfter(faultAt))} ms after it ` +
      `(and ${firstIssuedAfter(promotedAt ?? 0) - (promotedAt ?? 0)} ms after the promotion was seen); ` +
      `${unavailable.length} UNAVAILABLE of ${afterFault.length} calls after it ` +
      `(last ${since(Math.max(...unavailable.map((a) => a.at)))} ms after it); ` +
      `slowest call ${Math.max(...attempts.map((a) => a.ms))} ms; final answers ${JSON.stringify(result.outcomes)}; ` +
      `/readyz not 200 on ${notReady.length} of ${readiness.length} probes ` +
      `(${since(notReady[0]?.at)}-${since(notReady.at(-1)?.at)} ms after the fault); ` +
      `right after: rows ${right.rows.length}, remaining ${right.remaining}, pending ${right.pending}, ` +
      `users ${right.users.length}; UNAVAILABLE for ${JSON.stringify(unavailableReasons)}`,
  );

  // Nothing but UNAVAILABLE went wrong, and nothing hung.
  const outcomes = new Set(attempts.map((attempt) => attempt.outcome));
  expect(
    [...outcomes].filter((o) => !['ok', 'Unavailable', 'ResourceExhausted', 'AlreadyExists'].includes(o)),
  ).toEqual([]);
  expect(Math.max(...attempts.map((a) => a.ms))).toBeLessThan(LONGEST_CALL_MS);
  if (options.mustSeeUnavailable) expect(unavailable.length).toBeGreaterThan(0);
  // The same app issued again after the promotion, and every user ended with an answer.
  expect(firstIssuedAfter(promotedAt ?? Number.POSITIVE_INFINITY)).toBeLessThan(Number.POSITIVE_INFINITY);
  expect(result.outcomes.Unavailable ?? 0).toBe(0);
  expect(readiness.at(-1)?.status).toBe(200);

  expect(right.rows.length).toBeLessThanOrEqual(amount);
  expect(new Set(right.rows.map((row) => row.user_id)).size).toBe(right.rows.length);
  // Every coupon a client was told about is in MySQL, under its user.
  const rows = new Map(right.rows.map((row) => [row.code, row.user_id]));
  expect(result.issued.filter((coupon) => rows.get(coupon.code) !== coupon.userId)).toEqual([]);
  // Once the reconciler has settled what the failover cut off or lost, Redis and MySQL agree.
  const settledAfter = Date.now();
  const problems = await eventually(
    async () => settledProblems(await snapshot(service.app.services, campaignId)),
    RECONCILE_AFTER_MS + 5_000,
  );
  expect(problems).toEqual([]);
  const settled = await snapshot(service.app.services, campaignId);
  expect(settled.rows.length + (settled.remaining ?? 0)).toBe(amount);

  // The app's gate is on the promoted primary (in REDIS_URL's db), not on the server it left.
  const keys = service.app.services.redisGate.keys(campaignId);
  expect(await sentinel.cli(promoted.port, '-n', String(DB), 'get', keys.remaining)).toBe(
    `${settled.remaining}\n`,
  );
  // Pub/sub followed the promotion: the app is subscribed on the new primary again.
  const channels = ['slots-returned', 'campaign-created'].map((name) => `${config.redisKeyPrefix}${name}`);
  const subscribed = await eventually(async () => {
    const answer = (await sentinel.cli(promoted.port, 'pubsub', 'numsub', ...channels)).trim().split('\n');
    return answer[1] === '1' && answer[3] === '1' ? [] : [`numsub ${answer.join(' ')}`];
  }, 5_000);
  expect(subscribed).toEqual([]);
  console.info(`${label}: settled ${Date.now() - settledAfter} ms after the rush`);
}

describe.skipIf(!available)('the service on a Redis primary found through sentinels', () => {
  it('keeps its keys in the db of REDIS_URL on the primary the sentinels name', async () => {
    const primary = await sentinel.primary();
    const marker = `${config.redisKeyPrefix}deployment`;
    expect(await sentinel.cli(primary, '-n', String(DB), 'exists', marker)).toBe('1\n');
    expect(await sentinel.cli(primary, '-n', '0', 'exists', marker)).toBe('0\n');
  });

  it('refuses another deployment on its prefix, naming the sentinels', async () => {
    const other = isolatedConfig({
      REDIS_URL: config.redisUrl,
      REDIS_SENTINELS: sentinel.sentinels,
      REDIS_SENTINEL_NAME: sentinel.name,
      REDIS_KEY_PREFIX: config.redisKeyPrefix,
    });
    try {
      const started = buildServices(other, silentLogger);
      await expect(started).rejects.toBeInstanceOf(KeyspaceTakenError);
      await expect(started).rejects.toThrow(
        `on db ${DB} of the Redis primary "${sentinel.name}" of the sentinels at ${sentinel.sentinels} belongs to another deployment`,
      );
    } finally {
      const database = new URL(other.databaseUrl).pathname.slice(1);
      await service.app.services.db.em.fork().execute(`drop database if exists \`${database}\``);
    }
  });

  it('survives a kill -9 of the primary mid-rush: UNAVAILABLE until a replica is promoted, then issues again, exact', async () => {
    await rushThrough('kill -9 of the primary', () => sentinel.killPrimary(), { mustSeeUnavailable: true });
  });

  it('follows a planned failover (SENTINEL FAILOVER) mid-rush: the old primary, demoted, is left', async () => {
    await rushThrough('SENTINEL FAILOVER', () => sentinel.switchOver(), { mustSeeUnavailable: false });
  });
});
