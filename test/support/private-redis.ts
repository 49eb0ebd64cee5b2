import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A redis-server of the test's own (no persistence), so INFO commandstats counts the commands of
 * that test alone. Needs `redis-server` and `redis-cli` on PATH (Debian's redis-server package).
 */
export async function startPrivateRedis(): Promise<{
  url: string;
  /** Commands Redis has run so far, INFO itself left out. */
  commandsRun(): Promise<number>;
  stop(): Promise<void>;
}> {
  const port = await freePort();
  await run('redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'yes',
    '--pidfile',
    `/tmp/coupon-test-redis-${port}.pid`,
  ]);
  const cli = async (...args: string[]) =>
    (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args])).stdout;
  for (let attempt = 0; !(await cli('ping').catch(() => '')).includes('PONG'); attempt++) {
    if (attempt > 50) throw new Error(`redis-server on port ${port} did not start`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url: `redis://127.0.0.1:${port}/0`,
    async commandsRun() {
      let calls = 0;
      for (const [, command, count] of (await cli('info', 'commandstats')).matchAll(
        /cmdstat_([^:]+):calls=(\d+)/g,
      )) {
        if (command !== 'info') calls += Number(count);
      }
      return calls;
    },
    async stop() {
      await cli('shutdown', 'nosave').catch(() => undefined);
    },
  };
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
