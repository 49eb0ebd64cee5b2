import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
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
  stop(): Promise<void>;
}

/** Node timeout: low, so a later failover test need not wait 15 s. */
const NODE_TIMEOUT_MS = 2_000;

/**
 * Starts six `redis-server --cluster-enabled yes` processes on free loopback ports, joins them
 * with `redis-cli --cluster create --cluster-replicas 1`, and resolves once every node says
 * cluster_state:ok and knows the other five. `stop()` shuts them down and removes their files.
 */
export async function startRedisCluster(): Promise<RedisClusterHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'coupon-redis-cluster-'));
  const ports = await freeClusterPorts(6);
  const cli = async (port: number, ...args: string[]) =>
    (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 })).stdout;
  /** pid -> port of each node started. */
  const pids = new Map<number, number>();
  const readPids = async () => {
    for (const port of ports) {
      const pid = Number(await readFile(join(dir, `redis-${port}.pid`), 'utf8').catch(() => ''));
      if (pid > 0) pids.set(pid, port);
    }
  };
  const killAll = () => {
    for (const [pid, port] of pids) {
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
    killAll();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  const stop = async () => {
    await Promise.allSettled(ports.map((port) => cli(port, 'shutdown', 'nosave')));
    // A node that did not answer SHUTDOWN (still starting, hung) is killed by its pid file.
    await readPids();
    killAll();
    process.off('exit', onExit);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(
      ports.map((port) =>
        run('redis-server', [
          '--port',
          String(port),
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          String(NODE_TIMEOUT_MS),
          '--save',
          '',
          '--appendonly',
          'no',
          '--daemonize',
          'yes',
          '--bind',
          '127.0.0.1',
          '--dir',
          dir,
          '--pidfile',
          join(dir, `redis-${port}.pid`),
          '--logfile',
          join(dir, `redis-${port}.log`),
        ]),
      ),
    );
    await waitFor(async () => {
      const answers = await Promise.all(ports.map((port) => cli(port, 'ping').catch(() => '')));
      return answers.every((answer) => answer.includes('PONG'));
    }, 'every node answers PING');
    await readPids();
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
  } catch (error) {
    await stop();
    throw error;
  }

  /** CLUSTER NODES as one node sees it: each master that is not failing, and its slot ranges. */
  const liveMasters = async () =>
    (await cli(ports[0] as number, 'cluster', 'nodes'))
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
    async ownerOf(key) {
      const slot = Number((await cli(ports[0] as number, 'cluster', 'keyslot', key)).trim());
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
 * for a node on P; picked at random below 30000 so the bus port stays in range and outside the
 * ephemeral ports the OS hands out.
 */
async function freeClusterPorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < count) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
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
