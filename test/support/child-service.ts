import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../src/config.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

/** The service as a real process (`node src/main.ts`), so a test can SIGKILL or SIGTERM it. */
export interface ChildService {
  readonly process: ChildProcess;
  readonly baseUrl: string;
  /** Log lines printed so far (JSON, one object per line). */
  readonly logs: string[];
  exited(): Promise<number | null>;
}

export function childEnv(config: Config, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: config.databaseUrl,
    REDIS_URL: config.redisUrl,
    REDIS_KEY_PREFIX: config.redisKeyPrefix,
    LOG_LEVEL: 'info',
    ...extra,
  };
}

/** Starts the service and resolves once it logs the port it listens on. */
export async function startChildService(env: Record<string, string>): Promise<ChildService> {
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === 'coupon-service listening' && entry.port) resolve(entry.port);
      } catch {
        // not a log line of ours
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => logs.push(chunk.toString()));
    exit.then((code) =>
      reject(new Error(`service exited with ${code} before listening:\n${logs.join('\n')}`)),
    );
  });
  return { process: child, baseUrl: `http://127.0.0.1:${port}`, logs, exited: () => exit };
}
