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
 * Prints a table and writes JSON to loadtest/results/. Exits 1 if any count does not verify.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
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
import { type Started, startProcess } from './driver/processes.ts';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    'noop-url': { type: 'string' },
    'database-url': { type: 'string', default: 'mysql://root@127.0.0.1:3306/coupon_bench' },
    scenarios: { type: 'string', default: 'noop,issue,issue-jwt,rush,storm,arrival1000,arrival3000,get100k' },
    connections: { type: 'string', default: '64' },
    duration: { type: 'string', default: '15' },
    rounds: { type: 'string' },
    workers: { type: 'string', default: '1' },
    warmup: { type: 'string' },
    quick: { type: 'boolean', default: false },
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
const scenarios = new Set(args.scenarios.split(','));
const run = randomBytes(3).toString('hex');
const databaseUrl = args['database-url'];

function targetOf(url: string): Target {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port || 80) };
}

/** A server under test; started here, its CPU use can be read. */
interface Server extends Target {
  readonly cpuSeconds?: () => number | undefined;
}

const started: Started[] = [];
/** The service; a second instance (same database and keys) may be started with more settings. */
async function serviceTarget(extraEnv: Record<string, string> = {}): Promise<Server> {
  if (args.url) return targetOf(args.url);
  if (Object.keys(extraEnv).length === 0) {
    const db = await mysql.createConnection(new URL('/', databaseUrl).toString());
    await db.query(`drop database if exists \`${new URL(databaseUrl).pathname.slice(1)}\``);
    await db.end();
  }
  const service = await startProcess('../../src/main.ts', {
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    REDIS_KEY_PREFIX: `bench:${run}:`,
    LOG_LEVEL: 'info',
    WORKERS: args.workers,
    ...extraEnv,
  });
  started.push(service);
  return { host: '127.0.0.1', port: service.port, cpuSeconds: service.cpuSeconds };
}
async function noopTarget(): Promise<Server | undefined> {
  if (args['noop-url']) return targetOf(args['noop-url']);
  if (args.url) return undefined;
  const noop = await startProcess('../noop-server.ts', { PORT: '0' });
  started.push(noop);
  return { host: '127.0.0.1', port: noop.port, cpuSeconds: noop.cpuSeconds };
}

async function createCampaign(target: Target, amount: number): Promise<{ id: string; name: string }> {
  const name = `bench-${run}-${amount}-${randomBytes(2).toString('hex')}`;
  const now = Date.now();
  const reply = await callOnce(target, 'CreateCampaign', {
    name,
    amount: String(amount),
    issuedAt: new Date(now - 1_000).toISOString(),
    expiresAt: new Date(now + 3_600_000).toISOString(),
  });
  if (reply.status !== 200) throw new Error(`CreateCampaign failed: ${JSON.stringify(reply.json)}`);
  return { id: (reply.json as { campaign: { id: string } }).campaign.id, name };
}

/** The user-token secret of the HS256 scenario's service instance. */
const userTokenSecret = `bench-user-tokens-${randomBytes(16).toString('hex')}`;

/** An HS256 JWT for one user, made here (a few µs) so that signing does not load the driver. */
function userToken(sub: string): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${unsigned}.${createHmac('sha256', userTokenSecret).update(unsigned).digest('base64url')}`;
}

function issueRequests(
  target: Target,
  campaignId: string,
  prefix: string,
  limit = Number.POSITIVE_INFINITY,
  signed = false,
) {
  const host = `${target.host}:${target.port}`;
  // The body is re-encoded per request only for the user id; everything else is fixed.
  return (i: number) => {
    if (i >= limit) return undefined;
    const userId = `${prefix}-${i}`;
    return connectJsonRequest(
      host,
      'IssueCoupon',
      { campaignId, userId },
      signed ? [`Authorization: Bearer ${userToken(userId)}`] : [],
    );
  };
}

interface Verification {
  readonly ok: boolean;
  readonly detail: string;
}

async function verify(campaignId: string, successes: number, expectedRows?: number): Promise<Verification> {
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
    if (rows !== successes) problems.push(`rows ${rows} != successes ${successes}`);
    if (Number(counts?.issued) !== rows) problems.push(`issued_count ${counts?.issued} != rows`);
    if (Number(counts?.codes) !== rows) problems.push('duplicate codes');
    if (Number(counts?.users) !== rows) problems.push('a user with two coupons');
    if (rows > Number(counts?.amount)) problems.push('over the amount');
    if (expectedRows !== undefined && rows !== expectedRows)
      problems.push(`rows ${rows} != expected ${expectedRows}`);
    return {
      ok: problems.length === 0,
      detail: problems.length === 0 ? `PASS (${rows} rows)` : `FAIL: ${problems.join('; ')}`,
    };
  } finally {
    await db.end();
  }
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
  result?: LoadResult;
  /** Server CPU per request, in microseconds (servers started here, on Linux). */
  serverCpuUs?: number;
  verify?: string;
  note?: string;
}
const rows: Row[] = [];
let failed = false;

try {
  const service = await serviceTarget();
  const noop = scenarios.has('noop') ? await noopTarget() : undefined;
  // A second instance that verifies HS256 user tokens, to compare issuing with and without them.
  const jwtService =
    scenarios.has('issue-jwt') && !args.url
      ? await serviceTarget({ USER_JWT_SECRET: userTokenSecret })
      : undefined;

  // Warm both servers up (JIT, pools, scripts) before anything is measured.
  if (warmUpMs > 0) {
    const warmUp = await createCampaign(service, 10_000_000);
    await runLoad(service, {
      connections,
      durationMs: warmUpMs,
      request: issueRequests(service, warmUp.id, `warm-${run}`),
    });
    if (jwtService) {
      await runLoad(jwtService, {
        connections,
        durationMs: warmUpMs,
        request: issueRequests(jwtService, warmUp.id, `warm-jwt-${run}`, Number.POSITIVE_INFINITY, true),
      });
    }
    if (noop)
      await runLoad(noop, {
        connections,
        durationMs: warmUpMs,
        request: issueRequests(noop, 'noop', `warm-${run}`),
      });
  }

  let soldOut: { id: string } | undefined;
  if (scenarios.has('rush') || scenarios.has('storm')) {
    const campaign = await createCampaign(service, rushAmount);
    soldOut = campaign;
    const result = await runLoad(service, {
      connections,
      request: issueRequests(service, campaign.id, `rush-${run}`, rushUsers),
    });
    const check = await verify(campaign.id, result.outcomes.ok ?? 0, rushAmount);
    failed ||= !check.ok;
    rows.push({ scenario: `rush (${rushUsers} users, ${rushAmount} coupons)`, result, verify: check.detail });
  }

  // The scenarios compared with the baseline run in interleaved rounds (noop, issue, storm,
  // noop, ...), so a slow moment of the shared machine weighs on all of them alike.
  const issueCampaign = scenarios.has('issue') ? await createCampaign(service, 10_000_000) : undefined;
  const compared: {
    name: string;
    target: Server;
    campaignId: string;
    runs: LoadRun[];
    cpuSeconds?: number;
    signed?: boolean;
  }[] = [];
  if (noop) compared.push({ name: 'noop', target: noop, campaignId: 'noop', runs: [] });
  if (noop && scenarios.has('storm'))
    compared.push({ name: 'noop-refusal', target: noop, campaignId: 'sold-out', runs: [] });
  if (issueCampaign)
    compared.push({ name: 'issue', target: service, campaignId: issueCampaign.id, runs: [] });
  if (jwtService) {
    const jwtCampaign = await createCampaign(service, 10_000_000);
    compared.push({
      name: 'issue-jwt',
      target: jwtService,
      campaignId: jwtCampaign.id,
      runs: [],
      signed: true,
    });
  }
  if (scenarios.has('storm') && soldOut)
    compared.push({ name: 'storm', target: service, campaignId: soldOut.id, runs: [] });
  for (let round = 0; round < rounds; round++) {
    for (const scenario of compared) {
      const cpuBefore = scenario.target.cpuSeconds?.();
      scenario.runs.push(
        await measureLoad(scenario.target, {
          connections,
          durationMs: durationMs / rounds,
          request: issueRequests(
            scenario.target,
            scenario.campaignId,
            `${scenario.name}-${run}-${round}`,
            Number.POSITIVE_INFINITY,
            scenario.signed,
          ),
        }),
      );
      const cpuAfter = scenario.target.cpuSeconds?.();
      if (cpuBefore !== undefined && cpuAfter !== undefined)
        scenario.cpuSeconds = (scenario.cpuSeconds ?? 0) + cpuAfter - cpuBefore;
    }
  }
  for (const scenario of compared) {
    const result = summarize(scenario.runs);
    const serverCpuUs =
      scenario.cpuSeconds === undefined
        ? undefined
        : Math.round((scenario.cpuSeconds / result.requests) * 1e6);
    if (scenario.name === 'noop') {
      rows.push({ scenario: 'noop IssueCoupon (baseline)', result, serverCpuUs });
    } else if (scenario.name === 'noop-refusal') {
      rows.push({ scenario: 'noop refusal (storm floor)', result, serverCpuUs });
    } else if (scenario.name === 'issue' || scenario.name === 'issue-jwt') {
      const check = await verify(scenario.campaignId, result.outcomes.ok ?? 0);
      failed ||= !check.ok;
      rows.push({
        scenario:
          scenario.name === 'issue'
            ? 'issue (new user each, big campaign)'
            : 'issue with HS256 user tokens (new user each)',
        result,
        serverCpuUs,
        verify: check.detail,
      });
    } else {
      const unexpected = Object.keys(result.outcomes).filter((o) => o !== 'resource_exhausted');
      failed ||= unexpected.length > 0;
      rows.push({
        scenario: 'sold-out storm',
        result,
        serverCpuUs,
        verify: unexpected.length === 0 ? 'PASS (all sold out)' : `FAIL: ${unexpected.join(',')}`,
      });
    }
  }
  for (const rate of [1000, 3000]) {
    if (!scenarios.has(`arrival${rate}`)) continue;
    const campaign = await createCampaign(service, 10_000_000);
    const result = await runLoad(service, {
      connections: Math.max(connections, 128),
      durationMs: arrivalMs,
      ratePerSecond: rate,
      request: issueRequests(service, campaign.id, `arrival${rate}-${run}`),
    });
    const check = await verify(campaign.id, result.outcomes.ok ?? 0);
    failed ||= !check.ok;
    rows.push({ scenario: `constant arrival ${rate}/s`, result, verify: check.detail });
  }
  if (scenarios.has('get100k')) {
    const campaign = await createCampaign(service, bigCampaign);
    await fillCampaign(campaign.id, bigCampaign);
    const timings: number[] = [];
    let bytes = 0;
    let codes = 0;
    for (let i = 0; i < 5; i++) {
      const reply = await callOnce(service, 'GetCampaign', { name: campaign.name });
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
} finally {
  await Promise.all(started.map((process) => process.stop()));
}

const pad = (value: string | number, width: number) => String(value).padEnd(width);
console.log(
  `\ncoupon-service bench: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), driver on the same machine, ` +
    `${connections} connections, service WORKERS=${args.workers}${quick ? ', quick sizes' : ''}\n`,
);
console.log(
  `${pad('scenario', 40)}${pad('requests', 10)}${pad('req/s', 8)}${pad('p50', 8)}${pad('p90', 8)}${pad('p99', 8)}${pad('max ms', 9)}${pad('driver cpu', 11)}${pad('server us/req', 14)}outcomes / verify`,
);
for (const row of rows) {
  const r = row.result;
  console.log(
    r
      ? `${pad(row.scenario, 40)}${pad(r.requests, 10)}${pad(r.perSecond, 8)}${pad(r.p50, 8)}${pad(r.p90, 8)}${pad(r.p99, 8)}${pad(r.max, 9)}${pad(r.driverCpu, 11)}${pad(row.serverCpuUs ?? '', 14)}${JSON.stringify(r.outcomes)}${r.late ? ` late ${r.late}` : ''}${r.rounds ? ` rounds ${r.rounds.join('/')}/s` : ''} ${row.verify ?? ''}`
      : `${pad(row.scenario, 40)}${row.note ?? ''} ${row.verify ?? ''}`,
  );
}
const row = (name: string) => rows.find((candidate) => candidate.scenario.startsWith(name));
const ratios: Record<string, number> = {};
for (const [label, name, baselineName] of [
  ['issue / noop', 'issue (', 'noop IssueCoupon'],
  ['issue with user tokens / issue', 'issue with HS256', 'issue ('],
  ['sold-out storm / noop', 'sold-out', 'noop IssueCoupon'],
  ['sold-out storm / noop refusal', 'sold-out', 'noop refusal'],
] as const) {
  const value = row(name)?.result?.perSecond;
  const baseline = row(baselineName)?.result?.perSecond;
  if (value && baseline) ratios[label] = Math.round((value / baseline) * 100) / 100;
  // Server CPU per request of the baseline over the scenario's: the throughput ratio a server
  // with a core of its own would reach, whatever else the machine was doing meanwhile.
  const cpu = row(name)?.serverCpuUs;
  const baselineCpu = row(baselineName)?.serverCpuUs;
  if (cpu && baselineCpu) ratios[`${label}, by server cpu`] = Math.round((baselineCpu / cpu) * 100) / 100;
}
if (Object.keys(ratios).length > 0) {
  console.log(
    `\nratios: ${Object.entries(ratios)
      .map(([k, v]) => `${k} = ${v}`)
      .join(', ')}`,
  );
}
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
writeFileSync(
  file,
  JSON.stringify(
    { machine: { cores: os.cpus().length, model: os.cpus()[0]?.model }, args, rows, ratios },
    null,
    2,
  ),
);
console.log(`\nresults: ${file.pathname}${failed ? '\nVERIFY FAILED' : ''}`);
process.exitCode = failed ? 1 : 0;
