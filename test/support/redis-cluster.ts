import { execFile, spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Set by `.ci/run`: a machine without redis-server fails the cluster tests instead of skipping them. */
export const CLUSTER_TESTS_REQUIRED = process.env.COUPON_TEST_REQUIRE_REDIS_CLUSTER === '1';

/**
 * Whether `redis-server` and `redis-cli` are on PATH (Debian's redis-server package); without
 * them the cluster tests skip, saying why, unless CI requires them.
 */
export function redisClusterToolsAvailable(): boolean {
  const found = ['redis-server', 'redis-cli'].every(
    (tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0,
  );
  if (!found && CLUSTER_TESTS_REQUIRED) {
    throw new Error('COUPON_TEST_REQUIRE_REDIS_CLUSTER=1 but redis-server or redis-cli is not on PATH');
  }
  if (!found) {
    console.warn(
      'skipping the Redis Cluster tests: redis-server and redis-cli are not on PATH (install the redis-server package)',
    );
  }
  return found;
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
  const dir = await mkdtemp(join(tmpdir(), 'coupon-redis-cluster-'));
  const ports = await freeClusterPorts(6);
  const cli = async (port: number, ...args: string[]) =>
    (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 })).stdout;
  /** pid -> port of each node started. */
  const pids = new Map<number, number>();
  // Synchronous, so that it also works on the way out of a dying process.
  const readPids = () => {
    for (const port of ports) {
      let pid = 0;
      try {
        pid = Number(readFileSync(join(dir, `redis-${port}.pid`), 'utf8'));
      } catch {
        // not written (yet)
      }
      if (pid > 0) pids.set(pid, port);
    }
  };
  const killNodes = (only?: number) => {
    for (const [pid, port] of pids) {
      if (only !== undefined && port !== only) continue;
      // Only our node: a pid freed by a node that shut down may already name another process.
      const command = (() => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        } catch {
          return '';
        }
      })();
      if (!command.startsWith('redis-server') || !command.includes(`:${port}`)) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  // Daemonized nodes outlive the test process: if it ends without stop() (a crash, a failed
  // hook), they are killed on its way out.
  const onExit = () => {
    readPids();
    killNodes();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  // Killed by a signal, the process never reaches 'exit' by itself: clean up, then end as the
  // signal would have (its default action is gone once a listener exists).
  const onSignal = (signal: NodeJS.Signals) => {
    onExit();
    process.kill(process.pid, signal);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const stop = async () => {
    await Promise.allSettled(ports.map((port) => cli(port, 'shutdown', 'nosave')));
    // A node that did not answer SHUTDOWN (still starting, hung) is killed by its pid file.
    readPids();
    killNodes();
    for (const node of nodes) node.stdin?.end();
    process.off('exit', onExit);
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await rm(dir, { recursive: true, force: true });
  };
  const nodeArgs = (port: number) => [
    '--port',
    String(port),
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    join(dir, `nodes-${port}.conf`),
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
    '--dir',
    dir,
    '--pidfile',
    join(dir, `redis-${port}.pid`),
    '--logfile',
    join(dir, `redis-${port}.log`),
  ];
  const nodes: ReturnType<typeof spawn>[] = [];
  try {
    for (const port of ports) {
      // Not daemonized: each node runs under a shell that holds a pipe from this process and
      // kills the node when the pipe closes, which it does however this process ends (SIGKILL
      // of a test worker included), so no node outlives its test file.
      const node = spawn(
        'sh',
        ['-c', 'redis-server "$@" & node=$!; read -r _; kill -9 "$node"', 'redis-node', ...nodeArgs(port)],
        { stdio: ['pipe', 'ignore', 'ignore'] },
      );
      node.on('error', () => undefined);
      // Neither the shell nor its pipe keeps this process alive.
      node.unref();
      (node.stdin as unknown as net.Socket | null)?.unref();
      nodes.push(node);
    }
    await waitFor(async () => {
      const answers = await Promise.all(ports.map((port) => cli(port, 'ping').catch(() => '')));
      return answers.every((answer) => answer.includes('PONG'));
    }, 'every node answers PING');
    readPids();
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
      const synced = infos.filter((info) => info.includes('master_link_status:up'));
      return synced.length === 3;
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
      readPids();
      killNodes(port);
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

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`redis cluster: timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Ports P that are free on loopback together with P + 10000, the cluster bus port Redis takes
 * for a node on P; picked at random from 11000-21999, so that both stay below the ephemeral ports
 * the OS hands out to outgoing connections (32768 and up here: /proc/sys/net/ipv4/ip_local_port_range),
 * which could otherwise take a bus port between this check and the node's bind.
 */
async function freeClusterPorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < count) {
    const port = 11_000 + Math.floor(Math.random() * 11_000);
    if (ports.includes(port)) continue;
    if ((await canListen(port)) && (await canListen(port + 10_000))) ports.push(port);
  }
  return ports;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
