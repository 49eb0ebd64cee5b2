import { spawn } from 'node:child_process';
import net from 'node:net';

/**
 * A redis-server of this run, under a shell that kills it when this process's pipe to it
 * closes, so it never outlives the bench (even one killed with SIGKILL).
 */
export async function startOwnRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const shell = spawn(
    'sh',
    [
      '-c',
      'redis-server "$@" & node=$!; read -r _; kill -9 "$node"',
      'bench-redis',
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
    ],
    { stdio: ['pipe', 'ignore', 'inherit'] },
  );
  shell.on('error', () => undefined);
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(port))) {
    if (Date.now() > deadline) {
      shell.stdin?.end();
      throw new Error('redis-server did not start (is it on PATH?)');
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    async stop() {
      if (shell.exitCode !== null || shell.signalCode !== null) return;
      const exited = new Promise((resolve) => shell.once('exit', resolve));
      shell.stdin?.end();
      await exited;
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
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
