import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuSecondsOf } from '../capacity.ts';
import type { Target } from './load.ts';

export function haproxyAvailable(): boolean {
  return spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status === 0;
}

export interface Haproxy {
  readonly port: number;
  cpuSeconds(): number | undefined;
  stop(): Promise<void>;
}

/**
 * HAProxy in front of some instances, on a free loopback port: HTTP mode, round-robin per
 * request over kept-alive server connections, as a deployment's balancer would. `readiness`
 * checks each instance's /readyz (the no-op servers have none). Runs in the foreground (`-db`),
 * so it ends with this process; its config lives in a temporary directory removed at stop.
 */
export async function startHaproxy(instances: readonly Target[], readiness: boolean): Promise<Haproxy> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'coupon-bench-haproxy-'));
  const config = join(dir, 'haproxy.cfg');
  const check = readiness ? ' check inter 1s' : '';
  writeFileSync(
    config,
    [
      'global',
      '  maxconn 4096',
      'defaults',
      '  mode http',
      '  timeout connect 3s',
      '  timeout client 60s',
      '  timeout server 60s',
      '  option http-keep-alive',
      'frontend bench',
      `  bind 127.0.0.1:${port}`,
      '  default_backend coupon',
      'backend coupon',
      '  balance roundrobin',
      '  http-reuse always',
      ...(readiness ? ['  option httpchk GET /readyz'] : []),
      ...instances.map(({ host, port: instancePort }, i) => `  server s${i} ${host}:${instancePort}${check}`),
      '',
    ].join('\n'),
  );
  const child = spawn('haproxy', ['-db', '-f', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = once(child, 'exit');
  // Ends with the bench even when it crashes (the services' children are handled alike).
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  const stop = async () => {
    process.off('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  while (!(await readyThrough(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error('haproxy did not come up (see its messages above)');
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { port, cpuSeconds: () => (child.pid === undefined ? undefined : cpuSecondsOf(child.pid)), stop };
}

/** Whether a request through the proxy reaches an instance (any answer but HAProxy's own 503). */
function readyThrough(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.write('GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n');
    });
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
    });
    socket.on('close', () => resolve(/^HTTP\/1\.1 (?!503)\d{3}/.test(head)));
    socket.on('error', () => resolve(false));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
