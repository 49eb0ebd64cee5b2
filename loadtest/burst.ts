/**
 * The opening instant (`npm run bench -- --scenarios burst`): a campaign of M coupons opens at T
 * on Redis' clock, and N users arrive in an open loop (arrival times drawn before the run,
 * uniformly over T-2 s..T+1 s), whatever the service answers meanwhile.
 *
 * Reported: time from T to sold out (the last coupon's issued_at in MySQL, which is Redis' clock
 * when its claim was judged), latency of winners and of refusals (from each arrival time, so
 * queueing is not hidden), Redis commands per call (INFO commandstats deltas, before the opening
 * and in all), that nothing was issued before T (min(issued_at) in MySQL), and fairness: the share
 * of winners among the first M (and 1.05 M) arrivals at or after T, in the order the driver wrote
 * them to their connections, on Redis' clock.
 *
 * The driver's clock is tied to Redis' by the TIME round trip with the shortest wait before the
 * run: its error, half that round trip, is reported, and so are the arrivals within that error of
 * T (they could fall on either side). What else limits the measure is printed with it.
 */
import * as hdr from 'hdr-histogram-js';
import mysql from 'mysql2/promise';
import { connectJsonRequest } from './driver/http1-client.ts';
import { measureArrivals, type Target } from './driver/load.ts';
import type { RedisBackend } from './driver/redis-backend.ts';

export interface BurstOptions {
  readonly instances: readonly Target[];
  readonly redis: RedisBackend;
  /** Whether `redis` serves this service alone (commands per call are then the service's own). */
  readonly redisIsOwn: boolean;
  readonly databaseUrl: string;
  readonly users: number;
  readonly coupons: number;
  readonly connections: number;
  readonly userPrefix: string;
  readonly createCampaign: (opensAt: Date, amount: number) => Promise<string>;
  readonly rssBytes?: () => number | undefined;
}

export interface BurstResult {
  readonly users: number;
  readonly coupons: number;
  readonly connections: number;
  readonly campaignId: string;
  readonly opensAt: string;
  readonly clock: {
    readonly offsetMs: number;
    readonly errorMs: number;
    readonly arrivalsWithinError: number;
  };
  readonly outcomes: Record<string, number>;
  /** Rows in MySQL; issued_at before T; the last issued_at minus T. */
  readonly rows: number;
  readonly issuedBeforeOpening: number;
  readonly firstIssuedAfterMs: number | undefined;
  readonly soldOutAfterMs: number | undefined;
  readonly latency: Record<string, { count: number; p50: number; p99: number; max: number }>;
  readonly redis: {
    readonly shared: boolean;
    readonly commandsPerCall: number;
    readonly scriptCallsPerCall: number;
    readonly beforeOpening: { calls: number; claimScripts: number; commands: number };
    readonly byCommand: Record<string, number>;
  };
  readonly fairness: {
    /** Winners among the first M arrivals at or after T, and among the first 1.05 M. */
    readonly firstM: number;
    readonly first105M: number;
    readonly winners: number;
    readonly sentBeforeOpening: number;
    /** The latest arrival rank (0-based, at or after T) among the winners. */
    readonly lastWinnerRank: number;
    /** Arrivals among the first M after T that were not served, by outcome. */
    readonly passedOver: Record<string, number>;
    /** How long before T the earliest winner written before T was written (ms). */
    readonly earliestWinnerBeforeMs: number;
    /** From a winner's write to Redis' judgement of its claim (its issued_at), p50/p99 ms. */
    readonly writeToJudgement: { p50: number; p99: number; max: number };
    /** Share of requests written more than 1 ms after their arrival time, and the p99 of that lag (ms). */
    readonly late: number;
    readonly lagP99Ms: number;
  };
  readonly peakRssMb: number | undefined;
  readonly problems: string[];
}

const LEAD_MS = 3_000;
const BEFORE_MS = 2_000;
const AFTER_MS = 1_000;

function percentiles(values: number[]) {
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });
  for (const value of values) histogram.recordValue(Math.max(1, Math.round(value * 1000)));
  const ms = (us: number) => Math.round(us / 10) / 100;
  return {
    count: values.length,
    p50: ms(histogram.getValueAtPercentile(50)),
    p99: ms(histogram.getValueAtPercentile(99)),
    max: ms(histogram.maxValue),
  };
}

const delta = (after: Record<string, number>, before: Record<string, number>) =>
  Object.fromEntries(
    Object.entries(after)
      .map(([command, calls]) => [command, calls - (before[command] ?? 0)] as const)
      .filter(([command, calls]) => calls > 0 && command !== 'info'),
  );
const sum = (calls: Record<string, number>) => Object.values(calls).reduce((total, n) => total + n, 0);
const scripts = (calls: Record<string, number>) => (calls.evalsha ?? 0) + (calls.eval ?? 0);

export async function runBurst(options: BurstOptions): Promise<BurstResult> {
  const { users, coupons, redis } = options;
  const problems: string[] = [];
  const redisNow = async () => {
    const { offsetMs } = await redis.clockOffset(undefined, 10);
    return performance.timeOrigin + performance.now() + offsetMs;
  };
  const opensAtMs = Math.ceil((await redisNow()) + LEAD_MS);
  const campaignId = await options.createCampaign(new Date(opensAtMs), coupons);
  // Measured after the campaign exists: on a cluster, the clock of the master that judges it.
  const clock = await redis.clockOffset(campaignId);
  const toLocal = (redisMs: number) => redisMs - clock.offsetMs - performance.timeOrigin;
  const toRedis = (localMs: number) => localMs + performance.timeOrigin + clock.offsetMs;

  const arrivals = Array.from(
    { length: users },
    () => opensAtMs - BEFORE_MS + Math.random() * (BEFORE_MS + AFTER_MS),
  ).sort((a, b) => a - b);
  const dueAt = Float64Array.from(arrivals, toLocal);
  const { host, port } = options.instances[0] as Target;
  const userOf = (i: number) => `${options.userPrefix}-${i}`;

  const before = await redis.commandCalls();
  let atOpening: Record<string, number> | undefined;
  const openingSample = setTimeout(
    () => {
      void redis.commandCalls().then((calls) => {
        atOpening = calls;
      });
    },
    Math.max(0, toLocal(opensAtMs) - performance.now()),
  );
  let peakRss = 0;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, options.rssBytes?.() ?? 0);
  }, 50);
  const run = await measureArrivals(options.instances, {
    connections: options.connections,
    dueAt,
    request: (i) => connectJsonRequest(`${host}:${port}`, 'IssueCoupon', { campaignId, userId: userOf(i) }),
  }).finally(() => {
    clearInterval(sampler);
    clearTimeout(openingSample);
  });
  // The confirms of the last claims follow their answers by a moment: count them too.
  const settleBy = Date.now() + 10_000;
  while ((await redis.gateCounts(campaignId)).pending > 0 && Date.now() < settleBy)
    await new Promise((resolve) => setTimeout(resolve, 100));
  const commands = delta(await redis.commandCalls(), before);
  const early = atOpening ? delta(atOpening, before) : {};

  const outcomes: Record<string, number> = {};
  for (const outcome of run.outcomes) outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  const callsBeforeOpening = arrivals.filter((at) => at < opensAtMs).length;

  // MySQL: who got a coupon, and when Redis judged their claims.
  const db = await mysql.createConnection({ uri: options.databaseUrl, timezone: 'Z' });
  let issued: { user_id: string; issued_at: Date }[];
  try {
    [issued] = (await db.query('select user_id, issued_at from coupon where campaign_id = ?', [
      campaignId,
    ])) as unknown as [{ user_id: string; issued_at: Date }[]];
  } finally {
    await db.end();
  }
  const issuedTimes = issued.map((row) => row.issued_at.getTime());
  const issuedBeforeOpening = issuedTimes.filter((at) => at < opensAtMs).length;
  const winners = new Set(issued.map((row) => row.user_id));
  const ok = run.outcomes.filter((outcome) => outcome === 'ok').length;
  if (issued.length !== ok) problems.push(`rows ${issued.length} != successes ${ok}`);
  if (issued.length !== coupons) problems.push(`rows ${issued.length} != coupons ${coupons}`);
  if (issuedBeforeOpening > 0) problems.push(`${issuedBeforeOpening} issued before the opening`);
  for (let i = 0; i < users; i++) {
    if ((run.outcomes[i] === 'ok') !== winners.has(userOf(i))) {
      problems.push('the users answered ok are not the holders in MySQL');
      break;
    }
  }

  // Latency from each arrival time, by what the call was answered.
  const byKind: Record<string, number[]> = {
    winners: [],
    'refused before the opening': [],
    'refused after it': [],
  };
  for (let i = 0; i < users; i++) {
    const latency = (run.answeredAt[i] as number) - (dueAt[i] as number);
    const kind =
      run.outcomes[i] === 'ok'
        ? 'winners'
        : run.outcomes[i] === 'failed_precondition'
          ? 'refused before the opening'
          : 'refused after it';
    byKind[kind]?.push(latency);
  }
  const latency = Object.fromEntries(
    Object.entries(byKind).map(([kind, values]) => [kind, percentiles(values)]),
  );

  // Fairness: the order requests were written in, on Redis' clock.
  const sentRedis = Array.from(run.sentAt, toRedis);
  const afterOpening = [...sentRedis.keys()]
    .filter((i) => (sentRedis[i] as number) >= opensAtMs)
    .sort((a, b) => (sentRedis[a] as number) - (sentRedis[b] as number));
  const rank = new Map(afterOpening.map((i, position) => [i, position]));
  const windowOf = Math.ceil(1.05 * coupons);
  let firstM = 0;
  let first105M = 0;
  let sentBeforeOpening = 0;
  let lastWinnerRank = -1;
  for (let i = 0; i < users; i++) {
    if (run.outcomes[i] !== 'ok') continue;
    const position = rank.get(i);
    if (position === undefined) {
      sentBeforeOpening++;
      continue;
    }
    if (position < coupons) firstM++;
    if (position < windowOf) first105M++;
    lastWinnerRank = Math.max(lastWinnerRank, position);
  }
  const passedOver: Record<string, number> = {};
  for (const i of afterOpening.slice(0, coupons)) {
    const outcome = run.outcomes[i] as string;
    if (outcome !== 'ok') passedOver[outcome] = (passedOver[outcome] ?? 0) + 1;
  }
  const issuedAtOf = new Map(issued.map((row) => [row.user_id, row.issued_at.getTime()]));
  const judgementDelays: number[] = [];
  let earliestWinnerBeforeMs = 0;
  for (let i = 0; i < users; i++) {
    const judgedAt = issuedAtOf.get(userOf(i));
    if (judgedAt === undefined) continue;
    // issued_at has millisecond resolution: a delay under 1 ms reads as 0 to 1.
    judgementDelays.push(Math.max(0.001, judgedAt - (sentRedis[i] as number)));
    earliestWinnerBeforeMs = Math.max(earliestWinnerBeforeMs, opensAtMs - (sentRedis[i] as number));
  }
  const { count: _count, ...writeToJudgement } = percentiles(judgementDelays);
  const lags = [...run.sentAt.keys()].map((i) => (run.sentAt[i] as number) - (dueAt[i] as number));
  const served = ok || 1;

  return {
    users,
    coupons,
    connections: options.connections,
    campaignId,
    opensAt: new Date(opensAtMs).toISOString(),
    clock: {
      offsetMs: Math.round(clock.offsetMs * 1000) / 1000,
      errorMs: Math.round(clock.errorMs * 1000) / 1000,
      arrivalsWithinError: sentRedis.filter((at) => Math.abs(at - opensAtMs) <= clock.errorMs).length,
    },
    outcomes,
    rows: issued.length,
    issuedBeforeOpening,
    firstIssuedAfterMs: issuedTimes.length > 0 ? Math.min(...issuedTimes) - opensAtMs : undefined,
    soldOutAfterMs: issued.length === coupons ? Math.max(...issuedTimes) - opensAtMs : undefined,
    latency,
    redis: {
      shared: !options.redisIsOwn,
      commandsPerCall: Math.round((sum(commands) / users) * 100) / 100,
      scriptCallsPerCall: Math.round((scripts(commands) / users) * 1000) / 1000,
      beforeOpening: { calls: callsBeforeOpening, claimScripts: scripts(early), commands: sum(early) },
      byCommand: commands,
    },
    fairness: {
      firstM: Math.round((firstM / served) * 10_000) / 10_000,
      first105M: Math.round((first105M / served) * 10_000) / 10_000,
      winners: ok,
      sentBeforeOpening,
      lastWinnerRank,
      passedOver,
      earliestWinnerBeforeMs: Math.round(earliestWinnerBeforeMs * 100) / 100,
      writeToJudgement,
      late: Math.round((run.late / users) * 1000) / 1000,
      lagP99Ms: percentiles(lags.filter((lag) => lag > 0)).p99,
    },
    peakRssMb: peakRss > 0 ? Math.round(peakRss / 1e6) : undefined,
    problems,
  };
}

export function printBurst(result: BurstResult): void {
  const f = result.fairness;
  const r = result.redis;
  const percent = (share: number) => `${(share * 100).toFixed(1)}%`;
  console.log(
    `\nburst: ${result.users} users over T-2 s..T+1 s (open loop, ${result.connections} connections) for ${result.coupons} coupons, T = ${result.opensAt} on Redis' clock`,
  );
  console.log(
    `  outcomes ${JSON.stringify(result.outcomes)}; MySQL: ${result.rows} rows, ${result.issuedBeforeOpening} issued before T (first ${result.firstIssuedAfterMs} ms after T), sold out ${result.soldOutAfterMs ?? '-'} ms after T`,
  );
  for (const [kind, l] of Object.entries(result.latency))
    if (l.count > 0) console.log(`  ${kind}: ${l.count}, p50 ${l.p50} ms, p99 ${l.p99} ms, max ${l.max} ms`);
  console.log(
    `  Redis${r.shared ? ' (shared with other users: counts include theirs)' : ''}: ${r.commandsPerCall} commands per call (scripts' inner calls included), ${r.scriptCallsPerCall} script calls per call; before T: ${r.beforeOpening.claimScripts} claim scripts, ${r.beforeOpening.commands} commands for ${r.beforeOpening.calls} calls`,
  );
  console.log(
    `  fairness: ${percent(f.first105M)} of ${f.winners} winners among the first 1.05 M arrivals at or after T, ${percent(f.firstM)} among the first M; ${f.sentBeforeOpening} winners written before T, the earliest ${f.earliestWinnerBeforeMs} ms before T; the last winner ${f.lastWinnerRank + 1}th after T; first M not served: ${JSON.stringify(f.passedOver)}; a winner's write to Redis' judgement p50 ${f.writeToJudgement.p50} ms, p99 ${f.writeToJudgement.p99} ms`,
  );
  console.log(
    `  driver: clock offset to Redis ${result.clock.offsetMs} ms ± ${result.clock.errorMs} ms (${result.clock.arrivalsWithinError} arrivals within it of T); ${percent(f.late)} of requests written > 1 ms after their arrival time (p99 lag ${f.lagP99Ms} ms)${result.peakRssMb ? `; service RSS peak ${result.peakRssMb} MB` : ''}`,
  );
  console.log(
    '  limits of the measure: one driver process writes the requests (a turn of its event loop writes all that are due, in order); the service reads its sockets in the order the kernel reports them and judges one turn of claims per script call in that order; with several instances each batches its own claims',
  );
  if (result.problems.length > 0) console.log(`  FAIL: ${result.problems.join('; ')}`);
}
