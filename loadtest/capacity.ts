/**
 * The capacity model's two back-end figures, measured on this machine (`npm run bench --
 * --scenarios capacity`; the per-instance figure comes from the bench's issue scenario):
 *
 * - claims/s one Redis shard's claim script judges: the real script through
 *   `RedisSlotGate.claimSlot`, against a redis-server of its own, with B claims of one campaign
 *   per script call (the per-turn batching) and many calls pipelined;
 * - rows/s one MySQL primary takes with group commit: `persistMany` (the guarded `issued_count`
 *   raise and one multi-row INSERT in one transaction) with batches of 100-500 rows and several
 *   writers at once, on one campaign and on a campaign per writer.
 *
 * Every configuration runs once per round, rounds interleaved, so a busy moment of the shared
 * machine weighs on all of them; the figures are reported as ranges over the rounds.
 */
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import mysql from 'mysql2/promise';
import { pino } from 'pino';
import type { ClaimOutcome, CouponToPersist } from '../src/application/ports.ts';
import { generateCouponCode } from '../src/domain/coupon-code.ts';
import { MikroOrmCampaignRepository } from '../src/infrastructure/db/campaign-repository.ts';
import { MikroOrmCouponRepository } from '../src/infrastructure/db/coupon-repository.ts';
import { openDatabase } from '../src/infrastructure/db/orm.ts';
import { connectRedis, type RedisClient } from '../src/infrastructure/redis/client.ts';
import { RedisSlotGate } from '../src/infrastructure/redis/slot-gate.ts';
import { startOwnRedis } from './driver/own-redis.ts';

/** min-max of a few measurements, as printed. */
export function range(values: readonly number[], digits = 0): string {
  const round = (value: number) => value.toLocaleString('en-US', { maximumFractionDigits: digits });
  const low = Math.min(...values);
  const high = Math.max(...values);
  return low === high ? round(low) : `${round(low)}-${round(high)}`;
}

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
};

export interface ShardClaimsResult {
  /** Claims of one campaign per script call. */
  readonly batch: number;
  /** Script calls sent together (auto-pipelined into one write), two such waves in flight. */
  readonly callsPerWave: number;
  /** Per round: claims judged per second of wall time. */
  readonly perSecond: number[];
  /** Per round: redis-server CPU (user + sys) per claim, µs. */
  readonly redisCpuUs: number[];
  /** Per round: the script's own time per claim (commandstats usec_per_call / batch), µs. */
  readonly scriptUs: number[];
  /** Per round: the bench process's own CPU share (it encodes and decodes every call). */
  readonly driverCpu: number[];
}

/**
 * The claim script judged by one redis-server started here (so nothing else runs on it and its
 * CPU and commandstats are this measurement's alone). Every claim is a new user of a campaign with
 * stock to spare, the costliest verdict (rate-limit count, SADD, DECR, ZADD), with the
 * production per-user rate limit on.
 */
export async function measureShardClaims(options: {
  readonly batches: readonly number[];
  readonly durationMs: number;
  readonly rounds: number;
}): Promise<ShardClaimsResult[]> {
  const server = await startOwnRedis();
  const redis = connectRedis({
    url: server.url,
    clusterNodes: [],
    timeoutMs: 10_000,
    logger: pino({ level: 'silent' }),
  });
  try {
    // The service's options send nothing before the connection is up (no offline queue).
    if (redis.status !== 'ready') await once(redis, 'ready');
    const gate = new RedisSlotGate(redis, { keyPrefix: 'capacity:', claimsPerUserPerSecond: 20 });
    const results = options.batches.map((batch) => ({
      batch,
      // About 512 claims per wave whatever the batch: small batches need many calls to fill it.
      callsPerWave: Math.max(1, Math.round(512 / batch)),
      perSecond: [] as number[],
      redisCpuUs: [] as number[],
      scriptUs: [] as number[],
      driverCpu: [] as number[],
    }));
    for (let round = 0; round < options.rounds; round++) {
      for (const result of results) {
        await redis.flushall();
        const waves = [0, 1].map((wave) =>
          Array.from({ length: result.callsPerWave }, (_, i) => `r${round}-b${result.batch}-w${wave}-${i}`),
        );
        const now = Date.now();
        await Promise.all(
          waves.flat().map((id) =>
            gate.loadCampaign({
              campaign: {
                id,
                name: id,
                amount: 10_000_000,
                issuedCount: 0,
                issuedAt: new Date(now - 60_000),
                expiresAt: new Date(now + 3_600_000),
              },
              userIds: [],
            }),
          ),
        );
        await redis.config('RESETSTAT');
        const before = await redisCpuSeconds(redis);
        const cpuBefore = process.cpuUsage();
        const started = performance.now();
        const deadline = started + options.durationMs;
        let judged = 0;
        let refused = 0;
        // Two waves in flight, each on campaigns of its own: a wave's calls of one campaign are
        // never merged with the other's by the gate's per-turn batching.
        await Promise.all(
          waves.map(async (campaigns, wave) => {
            let user = 0;
            while (performance.now() < deadline) {
              const claims: Promise<ClaimOutcome>[] = [];
              for (const campaign of campaigns) {
                for (let j = 0; j < result.batch; j++)
                  claims.push(gate.claimSlot(campaign, `u${wave}-${user++}`));
              }
              for (const outcome of await Promise.all(claims)) {
                judged++;
                if (outcome.status !== 'claimed') refused++;
              }
            }
          }),
        );
        const seconds = (performance.now() - started) / 1000;
        const cpu = process.cpuUsage(cpuBefore);
        const redisCpu = (await redisCpuSeconds(redis)) - before;
        const stats = String(await redis.info('commandstats'));
        const usecPerCall = Number(
          /cmdstat_evalsha:calls=\d+,usec=\d+,usec_per_call=([\d.]+)/.exec(stats)?.[1],
        );
        if (refused > 0)
          throw new Error(`capacity: ${refused} of ${judged} claims were refused; expected none`);
        result.perSecond.push(judged / seconds);
        result.redisCpuUs.push((redisCpu / judged) * 1e6);
        result.scriptUs.push(usecPerCall / result.batch);
        result.driverCpu.push((cpu.user + cpu.system) / 1e6 / seconds);
      }
    }
    return results;
  } finally {
    redis.disconnect();
    await server.stop();
  }
}

async function redisCpuSeconds(redis: RedisClient): Promise<number> {
  const info = String(await redis.info('cpu'));
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return field('used_cpu_user') + field('used_cpu_sys');
}

export interface GroupCommitResult {
  /** 'one': every writer on the same campaign; 'own': a campaign per writer. */
  readonly campaigns: 'one' | 'own';
  readonly batch: number;
  /** Transactions in flight at once. */
  readonly writers: number;
  /** Per round: rows committed per second. */
  readonly perSecond: number[];
  /** Per round: MariaDB server CPU per row, µs (whole server: other work on it counts too). */
  readonly mysqlCpuUs: number[];
}

/** The database server's settings that decide what a commit costs. */
export interface DurabilitySettings {
  readonly flushLogAtTrxCommit: number;
  readonly syncBinlog: number;
  readonly logBin: number;
  readonly version: string;
}

/**
 * Group-commit writes to a database of its own on the bench's MySQL: `persistMany` with
 * `batch` rows per transaction and `writers` transactions in flight (the service runs two per
 * instance), each writer on the same campaign or on one of its own. The coupon table is emptied
 * between configurations so each starts from the same size.
 */
export async function measureGroupCommit(options: {
  readonly databaseUrl: string;
  readonly batches: readonly number[];
  readonly writers: readonly number[];
  readonly durationMs: number;
  readonly rounds: number;
}): Promise<{ results: GroupCommitResult[]; settings: DurabilitySettings }> {
  const url = new URL(options.databaseUrl);
  url.pathname = `/${url.pathname.slice(1)}_capacity`;
  const dropDatabase = async () => {
    const admin = await mysql.createConnection(new URL('/', url).toString());
    await admin.query(`drop database if exists \`${url.pathname.slice(1)}\``);
    await admin.end();
  };
  await dropDatabase();
  const db = await openDatabase({
    url: url.toString(),
    poolSize: 2 * Math.max(...options.writers),
    timeoutMs: 10_000,
  });
  try {
    const em = db.em.fork();
    const [settings] = await em.execute<Record<string, unknown>[]>(
      'select @@innodb_flush_log_at_trx_commit as flush, @@sync_binlog as sync_binlog, @@log_bin as log_bin, version() as version',
    );
    const campaignRepository = new MikroOrmCampaignRepository(db);
    const coupons = new MikroOrmCouponRepository(db);
    const now = Date.now();
    const campaignIds: string[] = [];
    for (let i = 0; i < Math.max(...options.writers); i++) {
      const campaign = await campaignRepository.create({
        name: `capacity-${now}-${i}`,
        amount: 10_000_000,
        issuedAt: new Date(now - 60_000),
        expiresAt: new Date(now + 3_600_000),
      });
      campaignIds.push(campaign.id);
    }
    const results: GroupCommitResult[] = [];
    for (const campaigns of ['one', 'own'] as const) {
      for (const batch of options.batches) {
        for (const writers of options.writers) {
          if (campaigns === 'own' && writers === 1) continue;
          results.push({ campaigns, batch, writers, perSecond: [], mysqlCpuUs: [] });
        }
      }
    }
    const mysqlPid = findMysqlPid();
    let user = 0;
    for (let round = 0; round < options.rounds; round++) {
      for (const result of results) {
        await em.execute('truncate table coupon');
        await em.execute('update campaign set issued_count = 0');
        const cpuBefore = mysqlPid === undefined ? undefined : cpuSecondsOf(mysqlPid);
        const started = performance.now();
        const deadline = started + options.durationMs;
        let rows = 0;
        await Promise.all(
          Array.from({ length: result.writers }, async (_, writer) => {
            const campaignId = campaignIds[result.campaigns === 'one' ? 0 : writer] as string;
            while (performance.now() < deadline) {
              const issuedAt = new Date();
              const batch: CouponToPersist[] = Array.from({ length: result.batch }, () => ({
                campaignId,
                userId: `user-${user++}`,
                code: generateCouponCode(),
                issuedAt,
              }));
              const outcomes = await coupons.persistMany(batch);
              const persisted = outcomes.filter((outcome) => outcome === 'persisted').length;
              if (persisted !== batch.length)
                throw new Error(`capacity: ${batch.length - persisted} rows refused`);
              rows += persisted;
            }
          }),
        );
        const seconds = (performance.now() - started) / 1000;
        const cpuAfter = mysqlPid === undefined ? undefined : cpuSecondsOf(mysqlPid);
        result.perSecond.push(rows / seconds);
        if (cpuBefore !== undefined && cpuAfter !== undefined)
          result.mysqlCpuUs.push(((cpuAfter - cpuBefore) / rows) * 1e6);
      }
    }
    return {
      results,
      settings: {
        flushLogAtTrxCommit: Number(settings?.flush),
        syncBinlog: Number(settings?.sync_binlog),
        logBin: Number(settings?.log_bin),
        version: String(settings?.version),
      },
    };
  } finally {
    await db.close();
    await dropDatabase();
  }
}

/** The local MySQL or MariaDB server's pid, to read its CPU time; undefined if none runs here. */
export function findMysqlPid(): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (comm === 'mariadbd' || comm === 'mysqld') return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** CPU seconds (user + system) of one process so far, from /proc. */
export function cpuSecondsOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

export interface IssueCost {
  /** Per issue, µs of CPU: the service instances, Redis, MySQL (servers shared with other work count it too). */
  readonly serviceUs: number;
  readonly redisUs?: number;
  readonly mysqlUs?: number;
  /** Instances the issue scenario ran on (the model is meant for one, loaded). */
  readonly instances: number;
  /** Claims per script call the instance sent (its per-turn batching at that load). */
  readonly claimsPerCall?: number;
  readonly perSecond: number;
}

/** The capacity section of the bench's output: the measurements, then what follows from them. */
export function printCapacity(
  issue: IssueCost | undefined,
  shard: readonly ShardClaimsResult[],
  commit: { results: readonly GroupCommitResult[]; settings: DurabilitySettings } | undefined,
  rounds: number,
): Record<string, unknown> {
  const pad = (value: string | number, width: number) => String(value).padEnd(width);
  const lines: string[] = [];
  lines.push(
    `\ncapacity model (measured here; ${rounds} interleaved rounds each, ranges over the rounds: other work shares this machine's cores, so the spread is the machine's)`,
  );
  const model: Record<string, unknown> = {};
  if (issue) {
    const perCore = 1e6 / issue.serviceUs;
    model.issuesPerSecondPerCore = Math.round(perCore);
    lines.push(
      `(a) ${issue.instances === 1 ? 'one instance' : `${issue.instances} instances, each less loaded than one alone would be`} (WORKERS=1): ${issue.serviceUs} µs of service CPU per issue -> ${Math.round(perCore).toLocaleString('en-US')} issues/s per core` +
        ` (measured ${issue.perSecond.toLocaleString('en-US')}/s on this shared machine)` +
        `${issue.redisUs !== undefined ? `; redis-server ${issue.redisUs} µs` : ''}${issue.mysqlUs !== undefined ? `, MariaDB ${issue.mysqlUs} µs per issue` : ''}` +
        (issue.claimsPerCall !== undefined
          ? `; ${issue.claimsPerCall.toFixed(1)} claims per script call`
          : ''),
    );
  }
  if (shard.length > 0) {
    lines.push(
      '(b) one Redis shard, the claim script via RedisSlotGate.claimSlot (new user each, per-user rate limit on), calls pipelined:',
    );
    lines.push(
      `    ${pad('claims/call', 13)}${pad('calls/wave', 12)}${pad('claims/s judged', 18)}${pad('redis cpu µs/claim', 20)}${pad('script µs/claim', 17)}${pad('claims per redis cpu-s', 24)}${pad('driver cpu', 12)}${issue ? 'instance-cores one shard feeds' : ''}`,
    );
    for (const result of shard) {
      const ceilings = result.redisCpuUs.map((us) => 1e6 / us);
      lines.push(
        `    ${pad(result.batch, 13)}${pad(result.callsPerWave, 12)}${pad(range(result.perSecond), 18)}${pad(range(result.redisCpuUs, 2), 20)}${pad(range(result.scriptUs, 2), 17)}${pad(range(ceilings), 24)}${pad(range(result.driverCpu, 2), 12)}${issue ? range(ceilings.map((ceiling) => ceiling / (1e6 / issue.serviceUs))) : ''}`,
      );
    }
    model.shard = shard;
  }
  if (commit) {
    const { settings } = commit;
    lines.push(
      `(c) one MySQL primary (${settings.version}, innodb_flush_log_at_trx_commit=${settings.flushLogAtTrxCommit}, log_bin=${settings.logBin}, sync_binlog=${settings.syncBinlog}), persistMany: guarded issued_count raise + multi-row INSERT per transaction:`,
    );
    lines.push(
      `    ${pad('campaigns', 24)}${pad('rows/tx', 9)}${pad('writers', 9)}${pad('rows/s', 18)}MariaDB cpu µs/row`,
    );
    for (const result of commit.results) {
      lines.push(
        `    ${pad(result.campaigns === 'one' ? 'one (all writers)' : 'a campaign per writer', 24)}${pad(result.batch, 9)}${pad(result.writers, 9)}${pad(range(result.perSecond), 18)}${result.mysqlCpuUs.length > 0 ? range(result.mysqlCpuUs, 1) : ''}`,
      );
    }
    model.groupCommit = commit;
  }
  // What follows: one campaign's shard and MySQL row against what one instance-core sends them.
  const perCore = issue ? 1e6 / issue.serviceUs : undefined;
  const best = (results: readonly { perSecond: number[] }[]) =>
    Math.max(0, ...results.map((result) => median(result.perSecond)));
  if (perCore !== undefined) {
    // Each instance batches what it receives in one turn, so however many instances feed a
    // campaign, each call carries about what one loaded instance sends: the batch to read at.
    const sent = issue?.claimsPerCall;
    const atBatching =
      sent === undefined
        ? undefined
        : [...shard].sort(
            (a, b) => Math.abs(Math.log(a.batch / sent)) - Math.abs(Math.log(b.batch / sent)),
          )[0];
    if (atBatching) {
      const ceiling = 1e6 / median(atBatching.redisCpuUs);
      lines.push(
        `    -> one shard (a core of its own) at the batching one loaded instance sent (${sent?.toFixed(1)} claims a call; read at the nearest measured, ${atBatching.batch}): ~${Math.round(ceiling).toLocaleString('en-US')} claims/s = ${(ceiling / perCore).toFixed(0)} instance-cores of one campaign`,
      );
      model.shardClaimsPerSecondAtBatching = Math.round(ceiling);
    }
    if (issue?.redisUs) {
      // Everything an issue asks of Redis, not the claim alone: the confirmation, the activity mark.
      const ceiling = 1e6 / issue.redisUs;
      lines.push(
        `    -> one shard (a core of its own) at the service's whole Redis cost of an issue (${issue.redisUs} µs: claim, confirm, activity mark): ~${Math.round(ceiling).toLocaleString('en-US')} issues/s = ${(ceiling / perCore).toFixed(0)} instance-cores of one campaign`,
      );
      model.shardIssuesPerSecond = Math.round(ceiling);
    }
    if (commit) {
      const oneCampaign = best(commit.results.filter((result) => result.campaigns === 'one'));
      const primary = best(commit.results);
      lines.push(
        `    -> MySQL: one campaign's rows ~${Math.round(oneCampaign).toLocaleString('en-US')}/s = ${(oneCampaign / perCore).toFixed(1)} instance-cores; the primary over several campaigns ~${Math.round(primary).toLocaleString('en-US')}/s = ${(primary / perCore).toFixed(1)} instance-cores (medians of the best configuration)`,
      );
      model.oneCampaignRowsPerSecond = Math.round(oneCampaign);
      model.primaryRowsPerSecond = Math.round(primary);
    }
  }
  console.log(lines.join('\n'));
  return model;
}
