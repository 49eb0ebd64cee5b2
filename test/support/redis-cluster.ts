import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  freeLoopbackPorts,
  RedisProcesses,
  redisCli,
  redisToolsAvailable,
  waitFor,
} from './redis-processes.ts';

const run = promisify(execFile);

/**
 * Whether `redis-server` and `redis-cli` are on PATH (Debian's redis-server package); without
 * them the cluster tests skip, saying why, unless CI requires them.
 */
export function redisClusterToolsAvailable(): boolean {
  return redisToolsAvailable('Redis Cluster');
}

export interface ClusterNodeAddress {
  readonly host: string;
  readonly port: number;
}

/** A real Redis Cluster of the test file's own: 3 masters with one replica each, on loopback. */
export interface RedisClusterHarness {
  /** Every node, masters first as created (replicas may swap roles later). */
  readonly nodes: readonly ClusterNodeAddress[];
  /** `host:port,host:port,...` of every node, as REDIS_CLUSTER_NODES takes them. */
  readonly seeds: string;
  /** Runs redis-cli against one node; resolves its stdout. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** The port of the master serving the slot of `key` now, and the slot. */
  ownerOf(key: string): Promise<{ port: number; slot: number }>;
  /** Ports of the nodes that are masters now. */
  masters(): Promise<number[]>;
  /** Kills one node at once (SIGKILL), as a crash would: it writes nothing more, says nothing. */
  kill(port: number): void;
  stop(): Promise<void>;
}

/**
 * Node timeout: below the default 15 s, so a failover test (next) need not wait long, but not so
 * low that a stall of a loaded CI machine makes the cluster fail a master over by itself.
 */
const NODE_TIMEOUT_MS = 5_000;

/**
 * Starts six `redis-server --cluster-enabled yes` processes on free loopback ports, joins them
 * with `redis-cli --cluster create --cluster-replicas 1`, and resolves once every node says
 * cluster_state:ok and knows the other five. `stop()` shuts them down and removes their files.
 */
export interface RedisClusterOptions {
  /**
   * `cluster-require-full-coverage`: Redis' default, yes, makes every node refuse every query
   * (CLUSTERDOWN) while any slot has no master, so a failing master stops every shard until its
   * replica takes over. Off by default here, as the README recommends.
   */
  readonly requireFullCoverage?: boolean;
}

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisClusterHarness> {
  const processes = await RedisProcesses.create('redis-cluster');
  // A node on P also takes its cluster bus port, P + 10000.
  const ports = await freeLoopbackPorts(6, [10_000]);
  const cli = redisCli;
  const stop = () => processes.stop();
  const nodeArgs = (port: number) => [
    '--port',
    String(port),
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    join(processes.dir, `nodes-${port}.conf`),
    '--cluster-node-timeout',
    String(NODE_TIMEOUT_MS),
    '--cluster-require-full-coverage',
    options.requireFullCoverage ? 'yes' : 'no',
    // Redis waits 5 s by default before a diskless full sync, to batch replicas: a master killed
    // before its replica synced has no replica that may take over.
    '--repl-diskless-sync-delay',
    '0',
    '--save',
    '',
    '--appendonly',
    'no',
    '--bind',
    '127.0.0.1',
  ];
  try {
    for (const port of ports) processes.start(port, nodeArgs(port));
    await waitFor(async () => {
      const answers = await Promise.all(ports.map((port) => cli(port, 'ping').catch(() => '')));
      return answers.every((answer) => answer.includes('PONG'));
    }, 'every node answers PING');
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...ports.map((port) => `127.0.0.1:${port}`),
        '--cluster-replicas',
        '1',
        '--cluster-yes',
      ],
      { timeout: 30_000 },
    );
    await waitFor(async () => {
      const infos = await Promise.all(ports.map((port) => cli(port, 'cluster', 'info').catch(() => '')));
      return infos.every(
        (info) =>
          info.includes('cluster_state:ok') &&
          info.includes('cluster_slots_ok:16384') &&
          info.includes('cluster_known_nodes:6'),
      );
    }, 'cluster_state:ok on every node');
    // CLUSTER CREATE makes six masters, then turns three into replicas: wait until every node
    // has heard of all three.
    await waitFor(async () => {
      const views = await Promise.all(ports.map((port) => cli(port, 'cluster', 'nodes').catch(() => '')));
      return views.every(
        (view) => view.split('\n').filter((line) => / (myself,)?slave /.test(line)).length === 3,
      );
    }, 'every node knows the three replicas');
    await waitFor(async () => {
      const infos = await Promise.all(ports.map((port) => cli(port, 'info', 'replication').catch(() => '')));
      return infos.filter((info) => info.includes('master_link_status:up')).length === 3;
    }, 'every replica has synced with its master');
  } catch (error) {
    await stop();
    throw error;
  }

  /** CLUSTER NODES as one node sees it: each master that is not failing, and its slot ranges. */
  /** The first node that answers (one may have been killed). */
  const anyNode = async (...args: string[]) => {
    let failure: unknown;
    for (const port of ports) {
      try {
        return await cli(port, ...args);
      } catch (error) {
        failure = error;
      }
    }
    throw failure;
  };
  const liveMasters = async () =>
    (await anyNode('cluster', 'nodes'))
      .split('\n')
      .map((line) => line.trim().split(' '))
      .filter(([, , flags]) => {
        const set = flags?.split(',') ?? [];
        return set.includes('master') && !set.includes('fail') && !set.includes('fail?');
      })
      .map(([, address, , , , , , , ...ranges]) => ({
        port: Number(address?.split('@')[0]?.split(':').at(-1)),
        ranges: ranges.map((range) => range.split('-').map(Number) as [number, number?]),
      }));
  return {
    nodes: ports.map((port) => ({ host: '127.0.0.1', port })),
    seeds: ports.map((port) => `127.0.0.1:${port}`).join(','),
    cli,
    masters: async () => (await liveMasters()).map((master) => master.port),
    kill(port) {
      processes.kill(port);
    },
    async ownerOf(key) {
      const slot = Number((await anyNode('cluster', 'keyslot', key)).trim());
      for (const master of await liveMasters()) {
        if (master.ranges.some(([from, to = from]) => slot >= from && slot <= to)) {
          return { port: master.port, slot };
        }
      }
      throw new Error(`no master owns slot ${slot}`);
    },
    stop,
  };
}
