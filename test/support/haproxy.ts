import { execFile, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { REDIS_PROCESS_TESTS_REQUIRED } from './redis-processes.ts';

const run = promisify(execFile);

/** The committed configuration: the tests run this very file, never a copy. */
export const HAPROXY_CONFIG = fileURLToPath(new URL('../../deploy/haproxy.cfg', import.meta.url));

/**
 * Whether `haproxy` is on PATH (Debian's haproxy package; `.ci/run` installs it). Without it the
 * HAProxy tests skip, saying why, unless CI requires them (COUPON_TEST_REQUIRE_REDIS_CLUSTER=1,
 * the variable that already makes CI run the tests on real processes it starts itself).
 */
export function haproxyAvailable(): boolean {
  const found = spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status === 0;
  if (!found && REDIS_PROCESS_TESTS_REQUIRED) {
    throw new Error(
      'COUPON_TEST_REQUIRE_REDIS_CLUSTER=1 but haproxy is not on PATH (apt-get install haproxy)',
    );
  }
  if (!found)
    console.warn('skipping the HAProxy tests: haproxy is not on PATH (install the haproxy package)');
  return found;
}

/** The environment deploy/haproxy.cfg reads: one `host:port` per instance, and its own ports. */
export function haproxyEnv(
  instances: readonly string[],
  ports: { readonly port: number; readonly statsPort: number },
): Record<string, string> {
  return {
    ...Object.fromEntries(instances.map((address, i) => [`COUPON_APP${i + 1}`, address])),
    COUPON_HAPROXY_BIND: `127.0.0.1:${ports.port}`,
    COUPON_HAPROXY_STATS: `127.0.0.1:${ports.statsPort}`,
  };
}

/** `haproxy -c`: whether the configuration is valid with this environment, and what HAProxy said. */
export async function checkHaproxyConfig(
  env: Record<string, string>,
): Promise<{ valid: boolean; output: string }> {
  try {
    const { stdout, stderr } = await run('haproxy', ['-c', '-f', HAPROXY_CONFIG], {
      env: { PATH: process.env.PATH ?? '', ...env },
      timeout: 10_000,
    });
    return { valid: true, output: `${stdout}${stderr}` };
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    return { valid: false, output: `${stdout}${stderr}` };
  }
}

/** One row of HAProxy's CSV statistics for a server. */
export interface HaproxyServerStats {
  /** UP, DOWN, "UP 1/2" (going down), "DOWN 1/2" (coming up), MAINT, ... */
  readonly status: string;
  /** Sessions (calls) sent to it so far. */
  readonly sessions: number;
  /** Responses by class (HAProxy's hrsp_5xx counts the 502s it answered itself too). */
  readonly responses5xx: number;
}

export interface HaproxyHarness {
  /** The one address clients call. */
  readonly baseUrl: string;
  /** Log lines HAProxy printed (one per call with `option httplog`, plus server state changes). */
  readonly logs: string[];
  /** Server name (app1, app2, ...) -> its statistics now. */
  servers(): Promise<Map<string, HaproxyServerStats>>;
  /** Resolves once every server is UP (checks passed `rise` times). */
  waitUntilAllUp(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs `haproxy -f deploy/haproxy.cfg` in front of `instances` (host:port each) on free loopback
 * ports. HAProxy runs under a shell that kills it when its pipe from this process closes, so it
 * never outlives the test process, however that ends (as the Redis Cluster harness does).
 */
export async function startHaproxy(instances: readonly string[]): Promise<HaproxyHarness> {
  const [port, statsPort] = [await freePort(), await freePort()] as [number, number];
  const env = haproxyEnv(instances, { port, statsPort });
  const checked = await checkHaproxyConfig(env);
  if (!checked.valid) throw new Error(`haproxy -c refused ${HAPROXY_CONFIG}:\n${checked.output}`);
  const child = spawn(
    'sh',
    [
      '-c',
      'haproxy -db -f "$1" 2>&1 & proxy=$!; read -r _; kill "$proxy"; wait "$proxy"',
      'haproxy',
      HAPROXY_CONFIG,
    ],
    { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['pipe', 'pipe', 'ignore'] },
  );
  child.on('error', () => undefined);
  const exited = once(child, 'exit');
  const logs: string[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => logs.push(line));
  const statsUrl = `http://127.0.0.1:${statsPort}/stats;csv`;

  const servers = async () => {
    const csv = await (await fetch(statsUrl)).text();
    const [header = '', ...rows] = csv.trim().split('\n');
    const columns = header.replace(/^# /, '').split(',');
    const at = (name: string) => columns.indexOf(name);
    const result = new Map<string, HaproxyServerStats>();
    for (const row of rows) {
      const cells = row.split(',');
      if (cells[at('pxname')] !== 'coupon' || ['FRONTEND', 'BACKEND'].includes(cells[at('svname')] ?? '')) {
        continue;
      }
      result.set(cells[at('svname')] as string, {
        status: cells[at('status')] ?? '',
        sessions: Number(cells[at('stot')]),
        responses5xx: Number(cells[at('hrsp_5xx')]),
      });
    }
    return result;
  };

  const stop = async () => {
    child.stdin?.end();
    await exited;
  };

  try {
    await waitFor(async () => {
      try {
        return (await servers()).size === instances.length;
      } catch {
        return false;
      }
    }, 'haproxy serves its statistics');
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${logs.join('\n')}`);
  }

  return {
    baseUrl: `http://127.0.0.1:${port}`,
    logs,
    servers,
    async waitUntilAllUp(timeoutMs = 15_000) {
      await waitFor(
        async () => [...(await servers()).values()].every((server) => server.status === 'UP'),
        'every server is UP',
        timeoutMs,
      );
    },
    stop,
  };
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`haproxy: timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A loopback port free now, for HAProxy to bind a moment later (a port taken in between fails the start, loudly). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
