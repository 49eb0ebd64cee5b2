import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  freeLoopbackPorts,
  RedisProcesses,
  redisCli,
  redisToolsAvailable,
  waitFor,
} from './redis-processes.ts';

/**
 * Whether the Sentinel tests can run (redis-server on PATH); they skip with a message otherwise,
 * unless CI requires them (COUPON_TEST_REQUIRE_REDIS_CLUSTER=1, as for the cluster tests).
 */
export function redisSentinelToolsAvailable(): boolean {
  return redisToolsAvailable('Redis Sentinel');
}

/** A primary with two replicas watched by three sentinels, all of the test file's own, on loopback. */
export interface RedisSentinelHarness {
  /** The master group name the sentinels monitor (REDIS_SENTINEL_NAME). */
  readonly name: string;
  /** `127.0.0.1:port,...` of the three sentinels, as REDIS_SENTINELS takes them. */
  readonly sentinels: string;
  /** The primary, then the two replicas, as started (roles change with a failover). */
  readonly dataPorts: readonly number[];
  readonly sentinelPorts: readonly number[];
  /** Runs redis-cli against one server or sentinel; resolves its stdout. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** The primary's port as the first sentinel that answers tells it (SENTINEL get-master-addr-by-name). */
  primary(): Promise<number>;
  /** Kills the current primary with SIGKILL (no shutdown, no last write); resolves its port. */
  killPrimary(): Promise<number>;
  /**
   * A planned failover (SENTINEL FAILOVER): the sentinels promote a replica and turn the primary,
   * still running, into its replica. Resolves the port of the primary it started from, once a
   * sentinel accepted it (after the replicas are in sync again, if a failover just happened).
   */
  switchOver(): Promise<number>;
  /**
   * Resolves once the sentinels name a primary other than `former` and that server says it is
   * one (`role:master`), with its port and how long the wait took; rejects after `timeoutMs`.
   */
  promotedFrom(former: number, timeoutMs?: number): Promise<{ port: number; waitedMs: number }>;
  stop(): Promise<void>;
}

/**
 * Sentinel timings: a primary is judged down after 2 s without an answer (the default 30 s would
 * make a failover test slow), low enough to fail over within a few seconds, high enough that a
 * stall of a loaded 2-core machine does not make the sentinels fail a live primary over.
 */
const DOWN_AFTER_MS = 2_000;
const FAILOVER_TIMEOUT_MS = 10_000;

/**
 * Starts one primary and two replicas (`redis-server --replicaof`) and three sentinels
 * (`redis-server sentinel.conf --sentinel`, quorum 2) on free loopback ports, and resolves once
 * both replicas are in sync and every sentinel knows both replicas and the other two sentinels.
 * `stop()` shuts them down and removes their files.
 */
export async function startRedisSentinel(name = 'coupon'): Promise<RedisSentinelHarness> {
  const processes = await RedisProcesses.create('redis-sentinel');
  const ports = await freeLoopbackPorts(6);
  const dataPorts = ports.slice(0, 3);
  const sentinelPorts = ports.slice(3);
  const [primaryPort] = dataPorts as [number];
  const dataArgs = (port: number) => [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    // The first sync starts at once instead of after Redis' 5 s wait for more replicas.
    '--repl-diskless-sync-delay',
    '0',
    ...(port === primaryPort ? [] : ['--replicaof', '127.0.0.1', String(primaryPort)]),
  ];
  try {
    for (const port of dataPorts) processes.start(port, dataArgs(port));
    await waitFor(async () => {
      const answers = await Promise.all(dataPorts.slice(1).map((port) => info(port).catch(() => '')));
      return answers.every((answer) => answer.includes('master_link_status:up'));
    }, 'both replicas are in sync with the primary');
    for (const port of sentinelPorts) {
      // A sentinel rewrites its configuration file (what it learns, its id): one file each.
      const file = join(processes.dir, `sentinel-${port}.conf`);
      await writeFile(
        file,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `sentinel monitor ${name} 127.0.0.1 ${primaryPort} 2`,
          `sentinel down-after-milliseconds ${name} ${DOWN_AFTER_MS}`,
          `sentinel failover-timeout ${name} ${FAILOVER_TIMEOUT_MS}`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      processes.start(port, [file, '--sentinel']);
    }
    await waitFor(async () => {
      const views = await Promise.all(
        sentinelPorts.map((port) => sentinelMaster(port, name).catch(() => new Map<string, string>())),
      );
      return views.every((view) => view.get('num-slaves') === '2' && view.get('num-other-sentinels') === '2');
    }, 'every sentinel knows both replicas and the other two sentinels');
  } catch (error) {
    await processes.stop();
    throw error;
  }

  const primary = async () => {
    for (const port of sentinelPorts) {
      const answer = await redisCli(port, 'sentinel', 'get-master-addr-by-name', name).catch(() => '');
      const [, masterPort] = answer.trim().split('\n');
      if (masterPort) return Number(masterPort);
    }
    throw new Error('no sentinel names a primary');
  };
  return {
    name,
    sentinels: sentinelPorts.map((port) => `127.0.0.1:${port}`).join(','),
    dataPorts,
    sentinelPorts,
    cli: redisCli,
    primary,
    async killPrimary() {
      const port = await primary();
      if (!processes.kill(port)) throw new Error(`could not kill the primary on port ${port}`);
      return port;
    },
    async switchOver() {
      const former = await primary();
      const [port] = sentinelPorts as [number];
      await waitFor(
        async () => (await redisCli(port, 'sentinel', 'failover', name).catch(() => '')).trim() === 'OK',
        'a sentinel accepts SENTINEL FAILOVER (a replica in sync, no failover in progress)',
      );
      return former;
    },
    async promotedFrom(former, timeoutMs = 30_000) {
      const started = Date.now();
      let promoted = former;
      await waitFor(
        async () => {
          promoted = await primary().catch(() => former);
          return promoted !== former && (await info(promoted).catch(() => '')).includes('role:master');
        },
        `the sentinels promote a replica of ${former}`,
        timeoutMs,
      );
      return { port: promoted, waitedMs: Date.now() - started };
    },
    stop: () => processes.stop(),
  };
}

function info(port: number): Promise<string> {
  return redisCli(port, 'info', 'replication');
}

/** SENTINEL MASTER as field -> value. */
async function sentinelMaster(port: number, name: string): Promise<Map<string, string>> {
  const lines = (await redisCli(port, 'sentinel', 'master', name)).trim().split('\n');
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) fields.set(lines[i] as string, lines[i + 1] as string);
  return fields;
}
