import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface Started {
  readonly port: number;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts a TypeScript entry point with Node and waits for its "listening" log line. */
export async function startProcess(entry: string, env: Record<string, string>): Promise<Started> {
  const file = fileURLToPath(new URL(entry, import.meta.url));
  const child = spawn(process.execPath, [file], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === 'coupon-service listening' && entry.port) resolve(entry.port);
      } catch {
        // not JSON
      }
    });
    exited.then(([code]) => reject(new Error(`${entry} exited with ${code} before listening`)));
  });
  return {
    port,
    process: child,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
