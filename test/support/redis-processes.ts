import { execFile, spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type net from 'node:net';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * What the Redis Cluster and Sentinel harnesses share: starting `redis-server` processes of a
 * test file's own on free loopback ports, in a temporary directory, and making sure none
 * outlives the file however its process ends.
 */

const run = promisify(execFile);

/** Set by `.ci/run`: a machine without redis-server fails these tests instead of skipping them. */
export const REDIS_PROCESS_TESTS_REQUIRED = process.env.COUPON_TEST_REQUIRE_REDIS_CLUSTER === '1';

/**
 * Whether `redis-server` and `redis-cli` are on PATH (Debian's redis-server package); without
 * them the tests of `what` skip, saying why, unless CI requires them.
 */
export function redisToolsAvailable(what: string): boolean {
  const found = ['redis-server', 'redis-cli'].every(
    (tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0,
  );
  if (!found && REDIS_PROCESS_TESTS_REQUIRED) {
    throw new Error('COUPON_TEST_REQUIRE_REDIS_CLUSTER=1 but redis-server or redis-cli is not on PATH');
  }
  if (!found) {
    console.warn(
      `skipping the ${what} tests: redis-server and redis-cli are not on PATH (install the redis-server package)`,
    );
  }
  return found;
}

/** Runs redis-cli against one local server; resolves its stdout. */
export async function redisCli(port: number, ...args: string[]): Promise<string> {
  return (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 }))
    .stdout;
}

/**
 * `redis-server` processes in one temporary directory. Each runs under a shell that holds a pipe
 * from this process and kills it when the pipe closes, which it does however this process ends
 * (SIGKILL of a test worker included); an exit or a signal also kills them by their pid files.
 */
export class RedisProcesses {
  readonly dir: string;
  private readonly shells: ReturnType<typeof spawn>[] = [];
  /** Port of every server started, whether or not it is still running. */
  private readonly ports: number[] = [];
  private readonly onExit = () => {
    this.killAll();
    rmSync(this.dir, { recursive: true, force: true });
  };
  // Killed by a signal, the process never reaches 'exit' by itself: clean up, then end as the
  // signal would have (its default action is gone once a listener exists).
  private readonly onSignal = (signal: NodeJS.Signals) => {
    this.onExit();
    process.kill(process.pid, signal);
  };

  private constructor(dir: string) {
    this.dir = dir;
    process.once('exit', this.onExit);
    process.once('SIGTERM', this.onSignal);
    process.once('SIGINT', this.onSignal);
  }

  /** A group with a fresh temporary directory named after `label`. */
  static async create(label: string): Promise<RedisProcesses> {
    return new RedisProcesses(await mkdtemp(join(tmpdir(), `coupon-${label}-`)));
  }

  /**
   * Starts `redis-server ...args` for `port` (args must make it listen there), with its pid file,
   * log file and working directory in this group's directory.
   */
  start(port: number, args: readonly string[]): void {
    this.ports.push(port);
    const shell = spawn(
      'sh',
      [
        '-c',
        'redis-server "$@" & server=$!; read -r _; kill -9 "$server"',
        'redis-server',
        ...args,
        '--dir',
        this.dir,
        '--pidfile',
        this.pidFile(port),
        '--logfile',
        join(this.dir, `redis-${port}.log`),
      ],
      { stdio: ['pipe', 'ignore', 'ignore'] },
    );
    shell.on('error', () => undefined);
    // Neither the shell nor its pipe keeps this process alive.
    shell.unref();
    (shell.stdin as unknown as net.Socket | null)?.unref();
    this.shells.push(shell);
  }

  /**
   * Kills the server on `port` with SIGKILL, as a crash would: no shutdown, no last write. Only
   * our server: a pid freed by one that ended may already name another process.
   */
  kill(port: number): boolean {
    const pid = this.pidOf(port);
    if (pid === undefined) return false;
    const command = (() => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        return '';
      }
    })();
    if (!command.startsWith('redis-server') || !command.includes(`:${port}`)) return false;
    try {
      process.kill(pid, 'SIGKILL');
      return true;
    } catch {
      return false;
    }
  }

  /** Shuts every server down, kills those that did not answer, and removes the directory. */
  async stop(): Promise<void> {
    await Promise.allSettled(this.ports.map((port) => redisCli(port, 'shutdown', 'nosave')));
    this.killAll();
    for (const shell of this.shells) shell.stdin?.end();
    process.off('exit', this.onExit);
    process.off('SIGTERM', this.onSignal);
    process.off('SIGINT', this.onSignal);
    await rm(this.dir, { recursive: true, force: true });
  }

  private pidFile(port: number): string {
    return join(this.dir, `redis-${port}.pid`);
  }

  // Synchronous, so that it also works on the way out of a dying process.
  private pidOf(port: number): number | undefined {
    try {
      const pid = Number(readFileSync(this.pidFile(port), 'utf8'));
      return pid > 0 ? pid : undefined;
    } catch {
      return undefined; // not written (yet), or removed by a clean shutdown
    }
  }

  private killAll(): void {
    for (const port of this.ports) this.kill(port);
  }
}

export async function waitFor(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * `count` distinct ports free on loopback, each with `port + offset` free too for every offset in
 * `alsoFree` (a cluster node takes its bus port at +10000); picked at random from 11000-21999, so
 * that all stay below the ephemeral ports the OS hands out to outgoing connections (32768 and up
 * here: /proc/sys/net/ipv4/ip_local_port_range), which could otherwise take one between this
 * check and the server's bind.
 */
export async function freeLoopbackPorts(count: number, alsoFree: readonly number[] = []): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < count) {
    const port = 11_000 + Math.floor(Math.random() * 11_000);
    if (ports.includes(port)) continue;
    let free = await canListen(port);
    for (const offset of alsoFree) free = free && (await canListen(port + offset));
    if (free) ports.push(port);
  }
  return ports;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
