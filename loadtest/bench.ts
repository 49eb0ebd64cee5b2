/**
 * `npm run bench`: measures the service on this machine and checks its counts.
 *
 *   npm run bench                          every scenario, service and no-op baseline started here
 *   npm run bench -- --quick               small sizes, about a minute
 *   npm run bench -- --workers 2           the service as a cluster of two processes
 *   npm run bench -- --scenarios issue,noop --connections 64 --duration 15 --rounds 3
 *
 * --duration is each compared scenario's total (noop, issue, storm), run in --rounds interleaved
 * rounds so that a slow moment of the machine weighs on all of them alike.
 *   npm run bench -- --url http://host:8080 --database-url mysql://...   an already running service
 *   npm run bench -- --warmup 0            no warm-up load before the measured runs (default 4 s)
 *
 * Scaled out (each flag alone or both):
 *   npm run bench -- --instances 4          four service instances (WORKERS=1 each), the driver's
 *                                          connections spread over them round-robin
 *   npm run bench -- --redis-cluster        on a Redis Cluster of 3 masters + 3 replicas started here
 *                                          from redis-server; each scenario's campaigns one per master
 * Both also check Redis against MySQL for every campaign (remaining + rows == amount, the served
 * users are the holders, no claim left pending). On a machine of 2 cores they show correctness and
 * overhead, not speed-up.
 *   npm run bench -- --haproxy              the instances behind HAProxy (round-robin per request)
 *   npm run bench -- --scenarios capacity   the capacity model's figures (see capacity.ts)
 *   npm run bench -- --service-logs         the services' warnings and errors on stderr
 *
 * Without --database-url it uses a database of its own, coupon_bench_<run>, dropped at the end
 * (kept when a check failed), so benches run side by side do not drop each other's.
 *
 * Prints a table and writes JSON to loadtest/results/. Exits 1 if any count does not verify.
 */

import { spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import { type RedisClusterHarness, startRedisCluster } from '../test/support/redis-cluster.ts';
import { type BurstResult, printBurst, runBurst } from './burst.ts';
import {
  cpuSecondsOf,
  type DurabilitySettings,
  findMysqlPid,
  type GroupCommitResult,
  measureGroupCommit,
  measureShardClaims,
  printCapacity,
  type ShardClaimsResult,
} from './capacity.ts';
import { type Haproxy, haproxyAvailable, startHaproxy } from './driver/haproxy.ts';
import { connectJsonRequest } from './driver/http1-client.ts';
import {
  callOnce,
  type LoadResult,
  type LoadRun,
  measureLoad,
  runLoad,
  summarize,
  type Target,
} from './driver/load.ts';
import { startOwnRedis } from './driver/own-redis.ts';
import { type Started, startProcess } from './driver/processes.ts';
import { RedisBackend, type ShardSample } from './driver/redis-backend.ts';
import { combineWrk, runWrk, type WrkRun, wrkAvailable } from './driver/wrk.ts';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    'noop-url': { type: 'string' },
    // Absent: a database of this run's own (coupon_bench_<run>), dropped at the end unless a check
    // failed, so that two benches on one machine never drop each other's.
    'database-url': { type: 'string' },
    scenarios: {
      type: 'string',
      default:
        'noop,issue,issue-jwt,rush,storm,preopen,burst,rush200k,arrival1000,arrival3000,get100k,bulk1000',
    },
    // wrk runs the compared scenarios too when it is on PATH; --drivers bench alone skips it.
    drivers: { type: 'string', default: 'bench,wrk' },
    'burst-users': { type: 'string' },
    'burst-coupons': { type: 'string' },
    'burst-connections': { type: 'string', default: '256' },
    connections: { type: 'string', default: '64' },
    duration: { type: 'string', default: '15' },
    rounds: { type: 'string' },
    workers: { type: 'string', default: '1' },
    warmup: { type: 'string' },
    quick: { type: 'boolean', default: false },
    // No defaults: absent, the run (and its JSON) is exactly the single-instance bench.
    instances: { type: 'string' },
    'redis-cluster': { type: 'boolean' },
    haproxy: { type: 'boolean' },
    'service-logs': { type: 'boolean' },
    // Node options of the service's processes, instead of `npm start`'s (e.g. "" for Node's defaults).
    'service-node-options': { type: 'string' },
  },
});

const quick = args.quick;
const connections = Number(args.connections);
const durationMs = Number(args.duration) * 1000 * (quick ? 0.3 : 1);
const rounds = Math.max(1, Number(args.rounds ?? (quick ? 1 : 3)));
const warmUpMs = args.warmup !== undefined ? Number(args.warmup) * 1000 : quick ? 1_000 : 4_000;
const arrivalMs = quick ? 5_000 : 30_000;
const rushUsers = quick ? 10_000 : 50_000;
const rushAmount = quick ? 2_000 : 10_000;
const bigCampaign = quick ? 20_000 : 100_000;
/** The opening instant: users arriving over T-2 s..T+1 s for a campaign of burstCoupons. */
const burstUsers = Number(args['burst-users'] ?? (quick ? 5_000 : 20_000));
const burstCoupons = Number(args['burst-coupons'] ?? (quick ? 500 : 2_000));
const burstConnections = Number(args['burst-connections']);
/** The rush whose resident memory is checked against RSS_LIMIT_MB. */
const bigRushUsers = quick ? 40_000 : 200_000;
const RSS_LIMIT_MB = 300;
const scenarios = new Set(args.scenarios.split(','));
const drivers = new Set(args.drivers.split(','));
// The capacity model's first figure is the issue scenario's server CPU per issue.
if (scenarios.has('capacity')) scenarios.add('issue');
const run = randomBytes(3).toString('hex');
/** With --url the service's database cannot be known: the old shared name stays the default. */
const databaseUrl =
  args['database-url'] ?? `mysql://root@127.0.0.1:3306/${args.url ? 'coupon_bench' : `coupon_bench_${run}`}`;
const ownDatabase = args['database-url'] === undefined && !args.url;
async function dropOwnDatabase(): Promise<void> {
  if (!ownDatabase) return;
  const db = await mysql.createConnection(new URL('/', databaseUrl).toString());
  const name = new URL(databaseUrl).pathname.slice(1);
  // The capacity scenario's database too, left behind if the run was interrupted during it.
  await db.query(`drop database if exists \`${name}\``);
  await db.query(`drop database if exists \`${name}_capacity\``);
  await db.end();
}
const instanceCount = Number(args.instances ?? 1);
const onRedisCluster = args['redis-cluster'] === true;
const behindHaproxy = args.haproxy === true;
/** Scaled out: several instances, a Redis Cluster or HAProxy; Redis is then checked against MySQL too. */
const scaledOut = instanceCount > 1 || onRedisCluster || behindHaproxy;
if (!Number.isInteger(instanceCount) || instanceCount < 1 || instanceCount > 64) {
  throw new Error(`--instances must be a whole number from 1 to 64, got ${args.instances}`);
}
if (args.url && (args.instances !== undefined || onRedisCluster || behindHaproxy)) {
  throw new Error(
    '--instances, --redis-cluster and --haproxy start the topology here; with --url, list the instances (--url http://a:8080,http://b:8080)',
  );
}
if (behindHaproxy && !haproxyAvailable())
  throw new Error('--haproxy needs haproxy on PATH (Debian package haproxy)');
const keyPrefix = `bench:${run}:`;
let redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

function targetOf(url: string): Target {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port || 80) };
}

/** A server under test: one or more instances sharing the driver's connections; started here, its CPU use can be read. */
interface Server {
  readonly instances: readonly Target[];
  readonly cpuSeconds?: () => number | undefined;
  /** Resident memory of every instance now, bytes (started here, on Linux). */
  readonly rssBytes?: () => number | undefined;
  /** With --haproxy: the proxy's own CPU, apart from the instances'. */
  readonly proxyCpuSeconds?: () => number | undefined;
}

function serverOf(urls: string): Server {
  return { instances: urls.split(',').map(targetOf) };
}

/** The first instance: where setup calls (create a campaign, read one) go. */
const first = (server: Server) => server.instances[0] as Target;

const started: Started[] = [];
let cluster: RedisClusterHarness | undefined;
/** A redis-server of the bench's own (capacity figures), so that its CPU and calls are the services' alone. */
let ownRedis: Awaited<ReturnType<typeof startOwnRedis>> | undefined;
/** The bench's own connection to the services' Redis, when it checks Redis or reads its CPU. */
let redis: RedisBackend | undefined;
let stopping: Promise<void> | undefined;
/** Further redis-servers of the bench's own (the burst's). */
const extraRedis: Awaited<ReturnType<typeof startOwnRedis>>[] = [];
let burst: BurstResult | undefined;
const proxies: Haproxy[] = [];

/** Stops every process the bench started: the proxies and services first (they drain), then Redis. */
function stopEverything(): Promise<void> {
  stopping ??= (async () => {
    await Promise.allSettled(proxies.map((proxy) => proxy.stop()));
    await Promise.allSettled(started.map((process) => process.stop()));
    await redis?.close();
    await cluster?.stop();
    await ownRedis?.stop();
    await Promise.allSettled(extraRedis.map((server) => server.stop()));
  })();
  return stopping;
}
let exiting = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (exiting) return;
    exiting = true;
    console.error(`\n${signal}: stopping every process the bench started`);
    void stopEverything()
      .then(dropOwnDatabase)
      .catch(() => undefined)
      .finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  });
}

/**
 * `count` instances of an entry point; the first alone, so that it applies the migrations. With
 * --haproxy, the server is the proxy in front of them.
 */
/** The service runs with `npm start`'s Node options (its heap settings), as the image does. */
const serviceNodeOptions = (
  args['service-node-options'] ??
  (
    JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      scripts: { start: string };
    }
  ).scripts.start
)
  .split(' ')
  .filter((word) => word.startsWith('--'));

async function startInstances(
  entry: string,
  env: Record<string, string>,
  count: number,
  readiness = true,
  nodeOptions: readonly string[] = [],
): Promise<Server> {
  const startOne = async () => {
    const instance = await startProcess(entry, env, {
      echoWarnings: args['service-logs'] === true,
      nodeOptions,
    });
    started.push(instance);
    return instance;
  };
  const instances = [await startOne()];
  instances.push(...(await Promise.all(Array.from({ length: count - 1 }, startOne))));
  const addresses = instances.map((instance) => ({ host: '127.0.0.1', port: instance.port }));
  const proxy = behindHaproxy ? await startHaproxy(addresses, readiness) : undefined;
  if (proxy) proxies.push(proxy);
  return {
    instances: proxy ? [{ host: '127.0.0.1', port: proxy.port }] : addresses,
    ...(proxy && { proxyCpuSeconds: proxy.cpuSeconds }),
    rssBytes: () => {
      let total = 0;
      for (const instance of instances) {
        const bytes = instance.rssBytes();
        if (bytes === undefined) return undefined;
        total += bytes;
      }
      return total;
    },
    cpuSeconds: () => {
      let total = 0;
      for (const instance of instances) {
        const seconds = instance.cpuSeconds();
        if (seconds === undefined) return undefined;
        total += seconds;
      }
      return total;
    },
  };
}

/** The service; a second set of instances (same database and keys) may be started with more settings. */
async function serviceTarget(extraEnv: Record<string, string> = {}): Promise<Server> {
  if (args.url) return serverOf(args.url);
  if (Object.keys(extraEnv).length === 0) {
    const db = await mysql.createConnection(new URL('/', databaseUrl).toString());
    await db.query(`drop database if exists \`${new URL(databaseUrl).pathname.slice(1)}\``);
    await db.end();
  }
  return startInstances(
    '../../src/main.ts',
    {
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl,
      REDIS_KEY_PREFIX: keyPrefix,
      LOG_LEVEL: 'info',
      WORKERS: args.workers,
      ...(cluster && { REDIS_CLUSTER_NODES: cluster.seeds }),
      ...(ownRedis && { REDIS_URL: ownRedis.url }),
      ...extraEnv,
    },
    instanceCount,
    true,
    serviceNodeOptions,
  );
}
/** connect-node alone (connectNodeAdapter on http.createServer): the plain baseline. */
async function plainNoopTarget(): Promise<Server | undefined> {
  if (args.url) return undefined;
  return startInstances('../plain-noop-server.ts', { PORT: '0' }, instanceCount, false);
}
/** The no-op baseline on our server stack, as many instances as the service so that both see the same topology. */
async function noopTarget(): Promise<Server | undefined> {
  if (args['noop-url']) return serverOf(args['noop-url']);
  if (args.url) return undefined;
  return startInstances('../noop-server.ts', { PORT: '0' }, instanceCount, false);
}

interface BenchCampaign {
  readonly id: string;
  readonly name: string;
  readonly amount: number;
  /** The Redis master owning its slot (scaled out only). */
  readonly master?: string;
}

/**
 * A scenario's campaigns: one; on a Redis Cluster one per master (created until every master
 * owns one), so that every shard takes its share of the scenario.
 */
async function createCampaigns(server: Server, amount: number, opensAt?: number): Promise<BenchCampaign[]> {
  if (!redis?.isCluster) {
    const campaign = await createCampaign(first(server), amount, opensAt);
    return [{ ...campaign, amount, ...(redis && { master: redis.masterOf(campaign.id) }) }];
  }
  const masters = redis.masters();
  const byMaster = new Map<string, BenchCampaign>();
  for (let attempt = 0; byMaster.size < masters.length; attempt++) {
    if (attempt > 40 * masters.length) throw new Error(`no campaign landed on some of ${masters.join(', ')}`);
    const campaign = await createCampaign(first(server), amount, opensAt);
    const master = redis.masterOf(campaign.id);
    if (!byMaster.has(master)) byMaster.set(master, { ...campaign, amount, master });
  }
  return masters.map((master) => byMaster.get(master) as BenchCampaign);
}

/** Outcomes per campaign of a scenario whose user i goes to campaign i modulo their number. */
function tallyOf(campaigns: readonly BenchCampaign[]) {
  const counts = campaigns.map(() => ({}) as Record<string, number>);
  return {
    counts,
    onOutcome(i: number, outcome: string) {
      const count = counts[i % campaigns.length] as Record<string, number>;
      count[outcome] = (count[outcome] ?? 0) + 1;
    },
  };
}
type Tally = ReturnType<typeof tallyOf>;

/** Open from a second ago for an hour, unless `opensAt` (epoch ms) says when it opens. */
async function createCampaign(
  target: Target,
  amount: number,
  opensAt?: number,
): Promise<{ id: string; name: string }> {
  const name = `bench-${run}-${amount}-${randomBytes(2).toString('hex')}`;
  const from = opensAt ?? Date.now() - 1_000;
  const reply = await callOnce(target, 'CreateCampaign', {
    name,
    amount: String(amount),
    issuedAt: new Date(from).toISOString(),
    expiresAt: new Date(from + 3_600_000).toISOString(),
  });
  if (reply.status !== 200) throw new Error(`CreateCampaign failed: ${JSON.stringify(reply.json)}`);
  return { id: (reply.json as { campaign: { id: string } }).campaign.id, name };
}

/** The user-token secret of the HS256 scenario's service instance. */
const userTokenSecret = `bench-user-tokens-${randomBytes(16).toString('hex')}`;

/** An HS256 JWT for one user. */
function userToken(sub: string): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${unsigned}.${createHmac('sha256', userTokenSecret).update(unsigned).digest('base64url')}`;
}

/**
 * Requests for new users `${prefix}-0`, `${prefix}-1`, ... `signed`: each with its user's HS256
 * token, the first `presign` of them signed before the load starts. Users get their tokens from
 * an identity service, not from the machine that serves them: signing during the round would put
 * the driver's HMAC (a few µs a request) on the two cores the service is measured on.
 */
function issueRequests(
  target: Server,
  campaigns: string | readonly BenchCampaign[],
  prefix: string,
  limit = Number.POSITIVE_INFINITY,
  signed = false,
  presign = 0,
) {
  const { host: hostName, port } = first(target);
  const host = `${hostName}:${port}`;
  const campaignIds = typeof campaigns === 'string' ? [campaigns] : campaigns.map((campaign) => campaign.id);
  const tokens = signed ? Array.from({ length: presign }, (_, i) => userToken(`${prefix}-${i}`)) : [];
  // The body is re-encoded per request only for the user id; everything else is fixed.
  return (i: number) => {
    if (i >= limit) return undefined;
    const userId = `${prefix}-${i}`;
    return connectJsonRequest(
      host,
      'IssueCoupon',
      { campaignId: campaignIds[i % campaignIds.length], userId },
      signed ? [`Authorization: Bearer ${tokens[i] ?? userToken(userId)}`] : [],
    );
  };
}

interface Verification {
  readonly ok: boolean;
  readonly detail: string;
  readonly rows: number;
}

/**
 * `inFlightAllowed`: rows beyond the successes counted that a driver may have caused without
 * seeing the answer (wrk stops with calls in flight and never counts them).
 */
async function verify(
  campaignId: string,
  successes: number,
  expectedRows?: number,
  inFlightAllowed = 0,
): Promise<Verification> {
  const db = await mysql.createConnection(databaseUrl);
  try {
    const [[counts]] = (await db.query(
      `select count(*) as rows_, count(distinct code) as codes, count(distinct user_id) as users,
              (select issued_count from campaign where id = ?) as issued, (select amount from campaign where id = ?) as amount
         from coupon where campaign_id = ?`,
      [campaignId, campaignId, campaignId],
    )) as unknown as [{ rows_: number; codes: number; users: number; issued: number; amount: number }[]];
    const rows = Number(counts?.rows_);
    const problems: string[] = [];
    if (rows < successes || rows > successes + inFlightAllowed)
      problems.push(
        inFlightAllowed > 0
          ? `rows ${rows} not within successes ${successes} + ${inFlightAllowed} in flight`
          : `rows ${rows} != successes ${successes}`,
      );
    if (Number(counts?.issued) !== rows) problems.push(`issued_count ${counts?.issued} != rows`);
    if (Number(counts?.codes) !== rows) problems.push('duplicate codes');
    if (Number(counts?.users) !== rows) problems.push('a user with two coupons');
    if (rows > Number(counts?.amount)) problems.push('over the amount');
    if (expectedRows !== undefined && rows !== expectedRows)
      problems.push(`rows ${rows} != expected ${expectedRows}`);
    return {
      ok: problems.length === 0,
      detail:
        problems.length === 0
          ? `PASS (${rows} rows${inFlightAllowed > 0 ? `, ${rows - successes} answered after wrk stopped` : ''})`
          : `FAIL: ${problems.join('; ')}`,
      rows,
    };
  } finally {
    await db.end();
  }
}

/**
 * Redis against MySQL for one campaign, once its claims are settled (a claim's confirmation may
 * follow its answer by a moment): remaining + rows == amount, and the users Redis marks served
 * are exactly the holders.
 */
async function verifyGate(campaign: BenchCampaign): Promise<string[]> {
  const gate = redis as RedisBackend;
  const db = await mysql.createConnection(databaseUrl);
  try {
    const deadline = Date.now() + 10_000;
    let counts = await gate.gateCounts(campaign.id);
    while (counts.pending > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      counts = await gate.gateCounts(campaign.id);
    }
    const [holderRows] = (await db.query('select user_id from coupon where campaign_id = ?', [
      campaign.id,
    ])) as unknown as [{ user_id: string }[]];
    const holders = new Set(holderRows.map((row) => row.user_id));
    const problems: string[] = [];
    if (counts.pending > 0) problems.push(`${counts.pending} claims still pending in Redis`);
    if (counts.remaining === null) {
      if (holders.size > 0) problems.push('no gate state in Redis');
      return problems;
    }
    if (counts.remaining + holders.size !== campaign.amount)
      problems.push(
        `redis remaining ${counts.remaining} + rows ${holders.size} != amount ${campaign.amount}`,
      );
    const served = new Set(counts.users);
    const blocked = counts.users.filter((user) => !holders.has(user)).length;
    const unknown = [...holders].filter((user) => !served.has(user)).length;
    if (blocked > 0) problems.push(`${blocked} users marked served in Redis hold no coupon`);
    if (unknown > 0) problems.push(`${unknown} holders not marked served in Redis`);
    return problems;
  } finally {
    await db.end();
  }
}

/**
 * A scenario's counts: in MySQL (as `verify`); scaled out, for each campaign against its own
 * successes, and Redis against MySQL.
 */
async function verifyScenario(
  campaigns: readonly BenchCampaign[],
  tally: Tally,
  result: LoadResult,
  expectedRowsEach?: number,
  /** Single instance only: successes another driver counted, and its calls possibly in flight when it stopped. */
  other?: { extraSuccesses: number; inFlightAllowed: number },
): Promise<Verification> {
  if (!scaledOut)
    return verify(
      (campaigns[0] as BenchCampaign).id,
      (result.outcomes.ok ?? 0) + (other?.extraSuccesses ?? 0),
      expectedRowsEach,
      other?.inFlightAllowed,
    );
  const problems: string[] = [];
  const rowsEach: number[] = [];
  for (const [i, campaign] of campaigns.entries()) {
    const label = campaigns.length > 1 ? `${campaign.master}: ` : '';
    const check = await verify(campaign.id, tally.counts[i]?.ok ?? 0, expectedRowsEach);
    rowsEach.push(check.rows);
    if (!check.ok) problems.push(label + check.detail.replace(/^FAIL: /, ''));
    for (const problem of await verifyGate(campaign)) problems.push(label + problem);
  }
  const rows = rowsEach.reduce((sum, each) => sum + each, 0);
  const where =
    campaigns.length > 1
      ? `: ${rowsEach.join(' + ')} on ${campaigns.map((campaign) => campaign.master).join(', ')}`
      : '';
  return {
    ok: problems.length === 0,
    detail:
      problems.length === 0 ? `PASS (${rows} rows${where}; redis agrees)` : `FAIL: ${problems.join('; ')}`,
    rows,
  };
}

/** What a scenario cost each Redis master (and MariaDB) while it ran, for per-shard figures. */
interface BackendUse {
  /** By master, `host:port`. */
  readonly shards: Record<string, ShardSample>;
  mysqlCpuSeconds?: number;
}
const mysqlPid = findMysqlPid();

async function sampleBackends(): Promise<BackendUse | undefined> {
  if (!redis) return undefined;
  const mysqlCpuSeconds = mysqlPid === undefined ? undefined : cpuSecondsOf(mysqlPid);
  return {
    shards: Object.fromEntries(await redis.sample()),
    ...(mysqlCpuSeconds !== undefined && { mysqlCpuSeconds }),
  };
}

/** Adds what happened between two samples to `total`. */
function addUse(
  total: BackendUse | undefined,
  before: BackendUse | undefined,
  after: BackendUse | undefined,
) {
  if (!before || !after) return total;
  const sum: BackendUse = total ?? { shards: {} };
  for (const [address, end] of Object.entries(after.shards)) {
    const start = before.shards[address];
    if (!start) continue;
    const so = sum.shards[address] ?? { cpuSeconds: 0, scriptCalls: 0, commands: 0 };
    sum.shards[address] = {
      cpuSeconds: so.cpuSeconds + end.cpuSeconds - start.cpuSeconds,
      scriptCalls: so.scriptCalls + end.scriptCalls - start.scriptCalls,
      commands: so.commands + end.commands - start.commands,
    };
  }
  if (before.mysqlCpuSeconds !== undefined && after.mysqlCpuSeconds !== undefined)
    sum.mysqlCpuSeconds = (sum.mysqlCpuSeconds ?? 0) + after.mysqlCpuSeconds - before.mysqlCpuSeconds;
  return sum;
}

async function fillCampaign(campaignId: string, coupons: number): Promise<void> {
  const db = await mysql.createConnection(databaseUrl);
  try {
    const { generateCouponCode } = await import('../src/domain/coupon-code.ts');
    for (let start = 0; start < coupons; start += 5_000) {
      const rows = Array.from({ length: Math.min(5_000, coupons - start) }, (_, i) => [
        campaignId,
        `filled-${start + i}`,
        generateCouponCode(),
        new Date(),
      ]);
      await db.query('insert into coupon (campaign_id, user_id, code, issued_at) values ?', [rows]);
    }
    await db.query('update campaign set issued_count = ? where id = ?', [coupons, campaignId]);
  } finally {
    await db.end();
  }
}

interface Row {
  scenario: string;
  /** Which load driver measured it (the bench's own when absent). */
  driver?: 'wrk';
  /** The service's resident memory at its highest during the scenario (sampled every 100 ms). */
  peakRssMb?: number;
  result?: LoadResult;
  /** Server CPU per request, in microseconds (servers started here, on Linux). */
  serverCpuUs?: number;
  /** With --haproxy: the proxy's CPU per request, µs. */
  proxyCpuUs?: number;
  verify?: string;
  note?: string;
  /** Scaled out: what each Redis master (and MariaDB) spent, and the requests of each master's campaigns. */
  backends?: BackendUse;
  requestsByMaster?: Record<string, number>;
}
const rows: Row[] = [];
let failed = false;
let capacity: {
  shard: ShardClaimsResult[];
  commit?: { results: GroupCommitResult[]; settings: DurabilitySettings };
} = { shard: [] };

/** Requests of a scenario per master, from its campaigns' tallies. */
function requestsByMaster(campaigns: readonly BenchCampaign[], tally: Tally): Record<string, number> {
  const byMaster: Record<string, number> = {};
  for (const [i, campaign] of campaigns.entries()) {
    if (!campaign.master) continue;
    const requests = Object.values(tally.counts[i] ?? {}).reduce((sum, count) => sum + count, 0);
    byMaster[campaign.master] = (byMaster[campaign.master] ?? 0) + requests;
  }
  return byMaster;
}

const topologyNote = () =>
  `${instanceCount} service instance${instanceCount > 1 ? 's' : ''} (WORKERS=${args.workers} each${
    behindHaproxy
      ? ', behind HAProxy: round-robin per request; its CPU is not in server us/req'
      : instanceCount > 1
        ? ", the driver's connections spread over them round-robin"
        : ''
  }) on ${
    cluster
      ? `a Redis Cluster of 3 masters + 3 replicas started here (${cluster.seeds}), each scenario's campaigns one per master`
      : `the Redis at ${redisUrl}`
  }. On ${os.cpus().length} cores shared by every instance, Redis node, MariaDB and the driver, this shows correctness and overhead, not speed-up.`;

try {
  if (onRedisCluster) {
    const missing = ['redis-server', 'redis-cli'].filter(
      (tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status !== 0,
    );
    if (missing.length > 0)
      throw new Error(
        `--redis-cluster starts its nodes from redis-server: ${missing.join(' and ')} not on PATH`,
      );
    cluster = await startRedisCluster();
  }
  if (scenarios.has('capacity') && !cluster && !args.url) {
    ownRedis = await startOwnRedis();
    redisUrl = ownRedis.url;
  }
  if ((scaledOut || scenarios.has('capacity')) && !args.url) {
    redis = await RedisBackend.connect({ url: redisUrl, clusterSeeds: cluster?.seeds, keyPrefix });
  }
  if (scaledOut) console.log(`scaled out: ${topologyNote()}`);
  const service = await serviceTarget();
  const noop = scenarios.has('noop') ? await noopTarget() : undefined;
  const plainNoop = scenarios.has('noop') ? await plainNoopTarget() : undefined;
  // A second instance that verifies HS256 user tokens, to compare issuing with and without them.
  const jwtService =
    scenarios.has('issue-jwt') && !args.url
      ? await serviceTarget({ USER_JWT_SECRET: userTokenSecret })
      : undefined;

  // Warm both servers up (JIT, pools, scripts) before anything is measured.
  if (warmUpMs > 0) {
    const warmUp = await createCampaigns(service, 10_000_000);
    await runLoad(service.instances, {
      connections,
      durationMs: warmUpMs,
      request: issueRequests(service, warmUp, `warm-${run}`),
    });
    if (jwtService) {
      await runLoad(jwtService.instances, {
        connections,
        durationMs: warmUpMs,
        request: issueRequests(jwtService, warmUp, `warm-jwt-${run}`, Number.POSITIVE_INFINITY, true),
      });
    }
    for (const baseline of [noop, plainNoop]) {
      if (!baseline) continue;
      await runLoad(baseline.instances, {
        connections,
        durationMs: warmUpMs,
        request: issueRequests(baseline, 'noop', `warm-${run}`),
      });
    }
  }

  let soldOut: BenchCampaign[] | undefined;
  if (scenarios.has('rush') || scenarios.has('storm')) {
    // On a cluster the stock is split evenly over one campaign per master.
    const shards = redis?.isCluster ? redis.masters().length : 1;
    const amountEach = Math.floor(rushAmount / shards);
    const campaigns = await createCampaigns(service, amountEach);
    soldOut = campaigns;
    const tally = tallyOf(campaigns);
    const before = await sampleBackends();
    const result = await runLoad(service.instances, {
      connections,
      request: issueRequests(service, campaigns, `rush-${run}`, rushUsers),
      onOutcome: tally.onOutcome,
    });
    const backends = addUse(undefined, before, await sampleBackends());
    const check = await verifyScenario(campaigns, tally, result, amountEach);
    failed ||= !check.ok;
    rows.push({
      scenario: `rush (${rushUsers} users, ${shards > 1 ? `${shards} x ${amountEach}` : rushAmount} coupons)`,
      result,
      verify: check.detail,
      ...(backends && { backends, requestsByMaster: requestsByMaster(campaigns, tally) }),
    });
  }

  // The scenarios compared with the baseline run in interleaved rounds (noop, issue, storm,
  // noop, ...), so a slow moment of the shared machine weighs on all of them alike.
  const issueCampaigns = scenarios.has('issue') ? await createCampaigns(service, 10_000_000) : undefined;
  const compared: {
    name: string;
    target: Server;
    campaigns: string | BenchCampaign[];
    tally?: Tally;
    runs: LoadRun[];
    cpuSeconds?: number;
    proxyCpuSeconds?: number;
    backends?: BackendUse;
    signed?: boolean;
    /** The same scenario driven by wrk, in the same rounds. */
    wrkRuns: WrkRun[];
    wrkCpuSeconds?: number;
    peakRss?: number;
  }[] = [];
  if (plainNoop)
    compared.push({ name: 'noop-plain', target: plainNoop, campaigns: 'noop', runs: [], wrkRuns: [] });
  if (noop) compared.push({ name: 'noop', target: noop, campaigns: 'noop', runs: [], wrkRuns: [] });
  if (noop && scenarios.has('storm'))
    compared.push({ name: 'noop-refusal', target: noop, campaigns: 'sold-out', runs: [], wrkRuns: [] });
  if (issueCampaigns)
    compared.push({
      name: 'issue',
      target: service,
      campaigns: issueCampaigns,
      tally: tallyOf(issueCampaigns),
      runs: [],
      wrkRuns: [],
    });
  if (jwtService) {
    const jwtCampaigns = await createCampaigns(service, 10_000_000);
    compared.push({
      name: 'issue-jwt',
      target: jwtService,
      campaigns: jwtCampaigns,
      tally: tallyOf(jwtCampaigns),
      runs: [],
      wrkRuns: [],
      signed: true,
    });
  }
  if (scenarios.has('storm') && soldOut)
    compared.push({
      name: 'storm',
      target: service,
      campaigns: soldOut,
      tally: tallyOf(soldOut),
      runs: [],
      wrkRuns: [],
    });
  if (scenarios.has('preopen')) {
    // Opens in an hour: every call is early, answered "opens at ..." (from memory once Redis said so).
    const early = await createCampaigns(service, 1_000, Date.now() + 3_600_000);
    compared.push({
      name: 'preopen',
      target: service,
      campaigns: early,
      tally: tallyOf(early),
      runs: [],
      wrkRuns: [],
    });
  }
  // wrk drives the same scenarios in the same rounds (single instance: it has one target).
  const wrkScenarios = new Set(['noop-plain', 'noop', 'noop-refusal', 'issue', 'storm', 'preopen']);
  const useWrk = drivers.has('wrk') && wrkAvailable() && instanceCount === 1;
  if (drivers.has('wrk') && !useWrk)
    console.log(
      instanceCount > 1
        ? 'wrk: not used with --instances (it drives one target)'
        : 'wrk: not on PATH (Debian package wrk), the cross-check is skipped',
    );
  const measured = (server: Server) => ({
    cpu: server.cpuSeconds?.(),
    proxy: server.proxyCpuSeconds?.(),
  });
  const peakRssDuring = async <T>(server: Server, work: () => Promise<T>): Promise<[T, number]> => {
    let peak = server.rssBytes?.() ?? 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, server.rssBytes?.() ?? 0);
    }, 100);
    try {
      return [await work(), peak];
    } finally {
      clearInterval(sampler);
    }
  };
  for (let round = 0; round < rounds; round++) {
    for (const scenario of compared) {
      const start = measured(scenario.target);
      const before = scenario.tally ? await sampleBackends() : undefined;
      const [loadRun, peak] = await peakRssDuring(scenario.target, () =>
        measureLoad(scenario.target.instances, {
          connections,
          durationMs: durationMs / rounds,
          request: issueRequests(
            scenario.target,
            scenario.campaigns,
            `${scenario.name}-${run}-${round}`,
            Number.POSITIVE_INFINITY,
            scenario.signed,
            // More than a round can use here (the fastest issuing seen: ~9,000 a second).
            Math.ceil((durationMs / rounds / 1000) * 20_000),
          ),
          ...(scenario.tally && { onOutcome: scenario.tally.onOutcome }),
        }),
      );
      scenario.runs.push(loadRun);
      scenario.peakRss = Math.max(scenario.peakRss ?? 0, peak);
      const end = measured(scenario.target);
      if (start.cpu !== undefined && end.cpu !== undefined)
        scenario.cpuSeconds = (scenario.cpuSeconds ?? 0) + end.cpu - start.cpu;
      if (start.proxy !== undefined && end.proxy !== undefined)
        scenario.proxyCpuSeconds = (scenario.proxyCpuSeconds ?? 0) + end.proxy - start.proxy;
      if (before) scenario.backends = addUse(scenario.backends, before, await sampleBackends());
      if (useWrk && wrkScenarios.has(scenario.name)) {
        const campaign =
          typeof scenario.campaigns === 'string'
            ? scenario.campaigns
            : (scenario.campaigns[0] as BenchCampaign).id;
        const wrkStart = measured(scenario.target);
        scenario.wrkRuns.push(
          await runWrk(first(scenario.target), {
            campaignId: campaign,
            userPrefix: `wrk-${scenario.name}-${run}-${round}`,
            connections,
            durationMs: durationMs / rounds,
          }),
        );
        const wrkEnd = measured(scenario.target);
        if (wrkStart.cpu !== undefined && wrkEnd.cpu !== undefined)
          scenario.wrkCpuSeconds = (scenario.wrkCpuSeconds ?? 0) + wrkEnd.cpu - wrkStart.cpu;
      }
    }
  }
  const labels: Record<string, string> = {
    'noop-plain': 'noop, plain connect-node (baseline)',
    noop: 'noop on our server stack',
    'noop-refusal': 'noop refusal (storm floor)',
    issue: 'issue (new user each, big campaign)',
    'issue-jwt': 'issue with HS256 user tokens (new user each)',
    storm: 'sold-out storm',
    preopen: 'pre-open storm (opens in 1 h)',
  };
  /** The answer every call of a refusal scenario must get. */
  const expectedRefusal: Record<string, string> = {
    storm: 'resource_exhausted',
    preopen: 'failed_precondition',
  };
  for (const scenario of compared) {
    const result = summarize(scenario.runs);
    const perRequest = (seconds: number | undefined, requests: number) =>
      seconds === undefined || requests === 0 ? undefined : Math.round((seconds / requests) * 1e6);
    const serverCpuUs = perRequest(scenario.cpuSeconds, result.requests);
    const proxyCpuUs = perRequest(scenario.proxyCpuSeconds, result.requests);
    const wrk = scenario.wrkRuns.length > 0 ? combineWrk(scenario.wrkRuns) : undefined;
    const wrkOk = wrk ? wrk.requests - wrk.non2xx : 0;
    const perShard =
      scenario.backends && scenario.tally && typeof scenario.campaigns !== 'string'
        ? {
            backends: scenario.backends,
            requestsByMaster: requestsByMaster(scenario.campaigns, scenario.tally),
          }
        : {};
    const label = labels[scenario.name] ?? scenario.name;
    let verdict: string | undefined;
    let wrkVerdict: string | undefined;
    if (scenario.name === 'issue' || scenario.name === 'issue-jwt') {
      // wrk stops with calls in flight and never counts their answers: those may still be issued.
      const check = await verifyScenario(
        scenario.campaigns as BenchCampaign[],
        scenario.tally as Tally,
        result,
        undefined,
        wrk ? { extraSuccesses: wrkOk, inFlightAllowed: connections * scenario.wrkRuns.length } : undefined,
      );
      failed ||= !check.ok;
      verdict = check.detail;
      wrkVerdict = wrk
        ? `${wrkOk} ok; ${wrk.non2xx} not 2xx, ${wrk.errors} errors; rows checked with the bench's`
        : undefined;
      if (wrk && (wrk.non2xx > 0 || wrk.errors > 0)) failed = true;
    } else if (expectedRefusal[scenario.name]) {
      const expected = expectedRefusal[scenario.name] as string;
      const unexpected = Object.keys(result.outcomes).filter((o) => o !== expected);
      failed ||= unexpected.length > 0;
      verdict = unexpected.length === 0 ? `PASS (all ${expected})` : `FAIL: ${unexpected.join(',')}`;
      if (wrk) {
        const ok = wrk.non2xx === wrk.requests && wrk.errors === 0;
        failed ||= !ok;
        wrkVerdict = ok ? 'PASS (all refused: not 2xx)' : `FAIL: ${wrkOk} answered 2xx, ${wrk.errors} errors`;
      }
    }
    rows.push({
      scenario: label,
      result,
      serverCpuUs,
      ...(verdict && { verify: verdict }),
      ...(scenario.peakRss && { peakRssMb: Math.round(scenario.peakRss / 1e6) }),
      ...perShard,
      ...(proxyCpuUs !== undefined && { proxyCpuUs }),
    });
    if (wrk) {
      rows.push({
        scenario: `${label} [wrk]`,
        driver: 'wrk',
        result: {
          requests: wrk.requests,
          seconds: 0,
          perSecond: wrk.perSecond,
          p50: wrk.p50,
          p90: Number.NaN,
          p99: wrk.p99,
          max: wrk.max,
          outcomes: { ok: wrkOk, not_2xx: wrk.non2xx, ...(wrk.errors > 0 && { errors: wrk.errors }) },
          late: 0,
          driverCpu: wrk.driverCpu,
          rounds: wrk.rounds,
        },
        serverCpuUs: perRequest(scenario.wrkCpuSeconds, wrk.requests),
        ...(wrkVerdict && { verify: wrkVerdict }),
      });
    }
  }
  for (const rate of [1000, 3000]) {
    if (!scenarios.has(`arrival${rate}`)) continue;
    const campaigns = await createCampaigns(service, 10_000_000);
    const tally = tallyOf(campaigns);
    const before = await sampleBackends();
    const result = await runLoad(service.instances, {
      connections: Math.max(connections, 128),
      durationMs: arrivalMs,
      ratePerSecond: rate,
      request: issueRequests(service, campaigns, `arrival${rate}-${run}`),
      onOutcome: tally.onOutcome,
    });
    const backends = addUse(undefined, before, await sampleBackends());
    const check = await verifyScenario(campaigns, tally, result);
    failed ||= !check.ok;
    rows.push({
      scenario: `constant arrival ${rate}/s`,
      result,
      verify: check.detail,
      ...(backends && { backends, requestsByMaster: requestsByMaster(campaigns, tally) }),
    });
  }
  if (scenarios.has('rush200k')) {
    // The rush scaled up, with the service's resident memory sampled throughout.
    const campaigns = await createCampaigns(service, rushAmount);
    const tally = tallyOf(campaigns);
    let peak = service.rssBytes?.() ?? 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, service.rssBytes?.() ?? 0);
    }, 100);
    const result = await runLoad(service.instances, {
      connections,
      request: issueRequests(service, campaigns, `bigrush-${run}`, bigRushUsers),
      onOutcome: tally.onOutcome,
    }).finally(() => clearInterval(sampler));
    const check = await verifyScenario(campaigns, tally, result, Math.floor(rushAmount / campaigns.length));
    const peakRssMb = peak > 0 ? Math.round(peak / 1e6) : undefined;
    failed ||= !check.ok;
    rows.push({
      scenario: `rush (${bigRushUsers} users, ${rushAmount} coupons)`,
      result,
      verify: check.detail,
      ...(peakRssMb && { peakRssMb }),
    });
  }
  if (scenarios.has('burst')) {
    // Single instance: a service on a redis-server of the bench's own, so INFO commandstats
    // counts its commands alone (the shared Redis serves other users too). Scaled out, or with
    // --url, the services' own Redis.
    const ownBurstRedis = !scaledOut && !args.url ? await startOwnRedis() : undefined;
    if (ownBurstRedis) extraRedis.push(ownBurstRedis);
    const burstRedis = await RedisBackend.connect({
      url: ownBurstRedis?.url ?? redisUrl,
      clusterSeeds: cluster?.seeds,
      keyPrefix,
    });
    try {
      const burstService = ownBurstRedis ? await serviceTarget({ REDIS_URL: ownBurstRedis.url }) : service;
      if (ownBurstRedis && warmUpMs > 0) {
        const warmUp = await createCampaigns(burstService, 10_000_000);
        await runLoad(burstService.instances, {
          connections,
          durationMs: warmUpMs,
          request: issueRequests(burstService, warmUp, `warm-burst-${run}`),
        });
      }
      burst = await runBurst({
        instances: burstService.instances,
        redis: burstRedis,
        redisIsOwn: ownBurstRedis !== undefined || cluster !== undefined,
        databaseUrl,
        users: burstUsers,
        coupons: burstCoupons,
        connections: burstConnections,
        userPrefix: `burst-${run}`,
        createCampaign: async (opensAt, amount) =>
          (await createCampaign(first(burstService), amount, opensAt.getTime())).id,
        ...(burstService.rssBytes && { rssBytes: burstService.rssBytes }),
      });
      failed ||= burst.problems.length > 0;
    } finally {
      await burstRedis.close();
    }
  }
  if (scenarios.has('get100k')) {
    const campaign = await createCampaign(first(service), bigCampaign);
    await fillCampaign(campaign.id, bigCampaign);
    const timings: number[] = [];
    let bytes = 0;
    let codes = 0;
    for (let i = 0; i < 5; i++) {
      // Scaled out, each read from another instance.
      const instance = service.instances[i % service.instances.length] as Target;
      const reply = await callOnce(instance, 'GetCampaign', { name: campaign.name });
      timings.push(reply.ms);
      bytes = reply.bytes;
      codes = (reply.json as { couponCodes: string[] }).couponCodes.length;
    }
    timings.sort((a, b) => a - b);
    const ok = codes === bigCampaign;
    failed ||= !ok;
    rows.push({
      scenario: `GetCampaign of ${bigCampaign} coupons`,
      note: `median ${timings[2]?.toFixed(0)} ms, max ${timings[4]?.toFixed(0)} ms, ${(bytes / 1e6).toFixed(1)} MB JSON`,
      verify: ok ? `PASS (${codes} codes)` : `FAIL: ${codes} codes`,
    });
  }
  if (scenarios.has('bulk1000')) rows.push(await benchBulkIssue(service));
  // The services are stopped first: the back-end figures are measured with nothing else of ours running.
  await stopEverything();
  if (scenarios.has('capacity')) {
    const capacityRounds = quick ? 1 : Math.max(rounds, 3);
    const shard = await measureShardClaims({
      batches: [1, 4, 16, 64, 256],
      durationMs: quick ? 1_000 : 2_000,
      rounds: capacityRounds,
    });
    const commit = await measureGroupCommit({
      databaseUrl,
      batches: quick ? [500] : [100, 500],
      writers: quick ? [1, 4] : [1, 2, 4, 8, 16],
      durationMs: quick ? 1_000 : 2_000,
      rounds: capacityRounds,
    });
    capacity = { shard, commit };
  }
} finally {
  await stopEverything();
}

const pad = (value: string | number, width: number) => String(value).padEnd(width);
console.log(
  `\ncoupon-service bench: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), driver on the same machine, ` +
    `${connections} connections, service WORKERS=${args.workers} node ${serviceNodeOptions.join(' ') || '(defaults)'}${quick ? ', quick sizes' : ''}\n`,
);
if (scaledOut) console.log(`${topologyNote()}\n`);
console.log(
  `${pad('scenario', 50)}${pad('requests', 10)}${pad('req/s', 8)}${pad('p50', 8)}${pad('p90', 8)}${pad('p99', 8)}${pad('max ms', 9)}${pad('driver cpu', 11)}${pad('server us/req', 14)}outcomes / verify`,
);
for (const row of rows) {
  const r = row.result;
  console.log(
    r
      ? `${pad(row.scenario, 50)}${pad(r.requests, 10)}${pad(r.perSecond, 8)}${pad(r.p50, 8)}${pad(Number.isNaN(r.p90) ? '-' : r.p90, 8)}${pad(r.p99, 8)}${pad(r.max, 9)}${pad(r.driverCpu, 11)}${pad(row.serverCpuUs ?? '', 14)}${JSON.stringify(r.outcomes)}${r.late ? ` late ${r.late}` : ''}${r.rounds ? ` rounds ${r.rounds.join('/')}/s` : ''}${row.peakRssMb ? ` RSS peak ${row.peakRssMb} MB` : ''} ${row.verify ?? ''}`
      : `${pad(row.scenario, 50)}${row.note ?? ''} ${row.verify ?? ''}`,
  );
}
if (burst) printBurst(burst);
const rowOf = (scenario: string, driver?: 'wrk') =>
  rows.find((candidate) => candidate.scenario === (driver ? `${scenario} [wrk]` : scenario));
const row = (name: string) => rows.find((candidate) => candidate.scenario.startsWith(name));
const ratios: Record<string, number> = {};
const plain = 'noop, plain connect-node (baseline)';
const round2 = (value: number) => Math.round(value * 100) / 100;
for (const driver of [undefined, 'wrk'] as const) {
  const suffix = driver ? ' [wrk]' : '';
  for (const [label, name, baselineName] of [
    ['issue / plain noop', 'issue (new user each, big campaign)', plain],
    ['our-stack noop / plain noop', 'noop on our server stack', plain],
    ['issue / our-stack noop', 'issue (new user each, big campaign)', 'noop on our server stack'],
    [
      'issue with user tokens / issue',
      'issue with HS256 user tokens (new user each)',
      'issue (new user each, big campaign)',
    ],
    ['sold-out storm / plain noop', 'sold-out storm', plain],
    ['sold-out storm / noop refusal', 'sold-out storm', 'noop refusal (storm floor)'],
    ['pre-open storm / plain noop', 'pre-open storm (opens in 1 h)', plain],
  ] as const) {
    const value = rowOf(name, driver);
    const baseline = rowOf(baselineName, driver);
    if (value?.result?.perSecond && baseline?.result?.perSecond)
      ratios[label + suffix] = round2(value.result.perSecond / baseline.result.perSecond);
    // Server CPU per request of the baseline over the scenario's: the throughput ratio a server
    // with a core of its own would reach, whatever else the machine was doing meanwhile.
    if (value?.serverCpuUs && baseline?.serverCpuUs)
      ratios[`${label}, by server cpu${suffix}`] = round2(baseline.serverCpuUs / value.serverCpuUs);
  }
  const issueP99 = rowOf('issue (new user each, big campaign)', driver)?.result?.p99;
  const plainP99 = rowOf(plain, driver)?.result?.p99;
  if (issueP99 && plainP99) ratios[`issue p99 / plain noop p99${suffix}`] = round2(issueP99 / plainP99);
}
if (Object.keys(ratios).length > 0) {
  console.log(
    `\nratios (bench driver, then wrk; wrk's p99 is the median of its rounds'):\n${Object.entries(ratios)
      .map(([k, v]) => `  ${k} = ${v}`)
      .join('\n')}`,
  );
}
/** The issue's targets, each with what this run measured; absent when the run did not measure it. */
const targets: { target: string; measured: string; holds: boolean }[] = [];
const against = (target: string, value: number | undefined, holds: (value: number) => boolean) => {
  if (value !== undefined && Number.isFinite(value))
    targets.push({ target, measured: String(value), holds: holds(value) });
};
for (const suffix of ['', ' [wrk]']) {
  against(`issue >= 0.9 x plain noop${suffix}`, ratios[`issue / plain noop${suffix}`], (v) => v >= 0.9);
  against(
    `issue p99 <= 2 x plain noop p99${suffix}`,
    ratios[`issue p99 / plain noop p99${suffix}`],
    (v) => v <= 2,
  );
  against(
    `sold-out storm >= 2 x plain noop${suffix}`,
    ratios[`sold-out storm / plain noop${suffix}`],
    (v) => v >= 2,
  );
  against(
    `pre-open storm >= 2 x plain noop${suffix}`,
    ratios[`pre-open storm / plain noop${suffix}`],
    (v) => v >= 2,
  );
}
if (burst) {
  against(
    'burst: >= 99% of winners among the first 1.05 M arrivals after T',
    burst.fairness.first105M,
    (v) => v >= 0.99,
  );
  against('burst: 0 issued before T (MySQL)', burst.issuedBeforeOpening, (v) => v === 0);
}
const bigRush = rows.find((candidate) => candidate.scenario.startsWith(`rush (${bigRushUsers} users`));
against(
  `service RSS <= ${RSS_LIMIT_MB} MB during the ${bigRushUsers}-request rush (MB)`,
  bigRush?.peakRssMb,
  (v) => v <= RSS_LIMIT_MB,
);
if (targets.length > 0) {
  console.log('\ntargets (issue 17; one run, interleaved rounds, on a shared machine):');
  for (const t of targets) console.log(`  ${t.holds ? 'HOLDS' : 'MISSED'}  ${t.target}: ${t.measured}`);
}
// Per shard: what each master's redis-server spent per request of the campaign it owns, and how
// many claims one script call carried (the per-turn batching, thinner when load is spread).
const shardRows = rows.filter((candidate) => candidate.backends && candidate.requestsByMaster);
if (scaledOut && shardRows.length > 0) {
  console.log(
    `\nper shard (${cluster ? 'each master' : 'the one Redis'}: its CPU per request of its campaigns, requests per script call${
      cluster ? '' : '; shared with whatever else uses that Redis'
    }; MariaDB CPU per request):`,
  );
  for (const candidate of shardRows) {
    const use = candidate.backends as BackendUse;
    const requests = candidate.requestsByMaster as Record<string, number>;
    const cells = Object.entries(requests).map(([master, count]) => {
      const shard = use.shards[master];
      if (!shard || count === 0) return `${master} -`;
      const perCall = shard.scriptCalls > 0 ? (count / shard.scriptCalls).toFixed(1) : '-';
      return `${master} ${Math.round((shard.cpuSeconds / count) * 1e6)} µs/req, ${count} req / ${shard.scriptCalls} script calls (${perCall}/call)`;
    });
    const total = Object.values(requests).reduce((sum, count) => sum + count, 0);
    const mysqlUs =
      use.mysqlCpuSeconds !== undefined && total > 0
        ? `; MariaDB ${Math.round((use.mysqlCpuSeconds / total) * 1e6)} µs/req`
        : '';
    console.log(`  ${pad(candidate.scenario, 40)}${cells.join(' | ')}${mysqlUs}`);
  }
}
const proxied = rows.filter((candidate) => candidate.proxyCpuUs !== undefined);
if (proxied.length > 0) {
  console.log(
    `\nHAProxy CPU per request: ${proxied.map((candidate) => `${candidate.scenario} ${candidate.proxyCpuUs} µs`).join(', ')}`,
  );
}
let capacityModel: Record<string, unknown> | undefined;
if (scenarios.has('capacity')) {
  const issue = row('issue (');
  const use = issue?.backends;
  const requests = issue?.result?.requests ?? 0;
  const redisSeconds = use
    ? Object.values(use.shards).reduce((sum, shard) => sum + shard.cpuSeconds, 0)
    : undefined;
  const scriptCalls = use
    ? Object.values(use.shards).reduce((sum, shard) => sum + shard.scriptCalls, 0)
    : undefined;
  capacityModel = printCapacity(
    issue?.serverCpuUs !== undefined && issue.result
      ? {
          serviceUs: issue.serverCpuUs,
          instances: instanceCount,
          perSecond: issue.result.perSecond,
          ...(redisSeconds !== undefined &&
            requests > 0 && { redisUs: Math.round((redisSeconds / requests) * 1e6) }),
          ...(scriptCalls !== undefined && scriptCalls > 0 && { claimsPerCall: requests / scriptCalls }),
          ...(use?.mysqlCpuSeconds !== undefined &&
            requests > 0 && { mysqlUs: Math.round((use.mysqlCpuSeconds / requests) * 1e6) }),
        }
      : undefined,
    capacity.shard,
    capacity.commit,
    quick ? 1 : Math.max(rounds, 3),
  );
}
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
writeFileSync(
  file,
  JSON.stringify(
    {
      machine: { cores: os.cpus().length, model: os.cpus()[0]?.model },
      args,
      rows,
      ratios,
      targets,
      ...(burst && { burst }),
      ...(scaledOut && { topology: topologyNote() }),
      ...(capacityModel && { capacity: capacityModel }),
    },
    null,
    2,
  ),
);
if (ownDatabase && failed) console.log(`\ndatabase kept for inspection: ${databaseUrl}`);
else await dropOwnDatabase();
console.log(`\nresults: ${file.pathname}${failed ? '\nVERIFY FAILED' : ''}`);
process.exitCode = failed ? 1 : 0;

/**
 * IssueCoupons of 1,000 users against 1,000 IssueCoupon calls (over `connections` keep-alive
 * connections): wall time and service CPU for the same 1,000 coupons, each way, best of 3.
 */
async function benchBulkIssue(service: Server): Promise<Row> {
  const bulk: { ms: number; cpuMs: number | undefined }[] = [];
  const single: { ms: number; cpuMs: number | undefined }[] = [];
  let ok = true;
  const cpuMsSince = (before: number | undefined) => {
    const after = service.cpuSeconds?.();
    return before === undefined || after === undefined ? undefined : (after - before) * 1000;
  };
  for (let round = 0; round < 3; round++) {
    const [bulkCampaign] = await createCampaigns(service, 1_000);
    const userIds = Array.from({ length: 1_000 }, (_, i) => `bulk-${run}-${round}-${i}`);
    let cpu = service.cpuSeconds?.();
    const reply = await callOnce(first(service), 'IssueCoupons', {
      campaignId: (bulkCampaign as BenchCampaign).id,
      userIds,
    });
    bulk.push({ ms: reply.ms, cpuMs: cpuMsSince(cpu) });
    const results = (reply.json as { results?: { coupon?: unknown }[] }).results ?? [];
    ok &&= reply.status === 200 && results.filter((result) => result.coupon).length === 1_000;

    const [singleCampaign] = await createCampaigns(service, 1_000);
    cpu = service.cpuSeconds?.();
    const started = performance.now();
    const result = await runLoad(service.instances, {
      connections,
      request: issueRequests(service, [singleCampaign as BenchCampaign], `single-${run}-${round}`, 1_000),
    });
    single.push({ ms: performance.now() - started, cpuMs: cpuMsSince(cpu) });
    ok &&= (result.outcomes.ok ?? 0) === 1_000;
  }
  const best = (runs: { ms: number; cpuMs: number | undefined }[]) =>
    runs.reduce((a, b) => (b.ms < a.ms ? b : a));
  const [b, s] = [best(bulk), best(single)];
  const cpu = (run: { cpuMs: number | undefined }) =>
    run.cpuMs === undefined ? '' : `, service CPU ${run.cpuMs.toFixed(0)} ms`;
  return {
    scenario: 'IssueCoupons x1,000 users',
    note: `one call ${b.ms.toFixed(0)} ms${cpu(b)}; 1,000 calls over ${connections} connections ${s.ms.toFixed(0)} ms${cpu(s)}`,
    verify: ok ? 'PASS (1,000 coupons each way)' : 'FAIL: not every coupon issued',
  };
}
