import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface Started {
  readonly port: number;
  readonly process: ChildProcess;
  /** CPU seconds used so far by the process and its children (cluster workers); undefined off Linux. */
  cpuSeconds(): number | undefined;
  /** Resident memory now of the process and its children, bytes; undefined off Linux. */
  rssBytes(): number | undefined;
  stop(): Promise<void>;
}

/** Children still running, killed outright if the bench exits without stopping them (a crash). */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** How long a child may drain after SIGTERM before it is killed. */
const STOP_GRACE_MS = 15_000;

/** CPU seconds of a process and its live descendants, from /proc (Linux only). */
function cpuSecondsOfTree(pid: number): number | undefined {
  try {
    // Fields after the command name: utime and stime are the 12th and 13th (clock ticks, 100/s).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    let seconds = (Number(fields[11]) + Number(fields[12])) / 100;
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    for (const child of children ? children.split(' ') : []) seconds += cpuSecondsOfTree(Number(child)) ?? 0;
    return seconds;
  } catch {
    return undefined;
  }
}

/** Resident memory of a process and its live descendants, from /proc (Linux only). */
function rssBytesOfTree(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    let bytes = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    for (const child of children ? children.split(' ') : []) bytes += rssBytesOfTree(Number(child)) ?? 0;
    return bytes;
  } catch {
    return undefined;
  }
}

/**
 * Starts a TypeScript entry point with Node and waits for its "listening" log line; with
 * `echoWarnings`, its log lines of level warn and above go on to stderr.
 */
export async function startProcess(
  entry: string,
  env: Record<string, string>,
  options: { readonly echoWarnings?: boolean; readonly nodeOptions?: readonly string[] } = {},
): Promise<Started> {
  const file = fileURLToPath(new URL(entry, import.meta.url));
  const child = spawn(process.execPath, [...(options.nodeOptions ?? []), file], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  running.add(child);
  const exited = once(child, 'exit');
  void exited.then(() => running.delete(child));
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number; level?: number };
        if (options.echoWarnings && (entry.level ?? 0) >= 40) console.error(line);
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
    cpuSeconds: () => (child.pid === undefined ? undefined : cpuSecondsOfTree(child.pid)),
    rssBytes: () => (child.pid === undefined ? undefined : rssBytesOfTree(child.pid)),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const drained = await Promise.race([
        exited.then(() => true),
        new Promise<false>((resolve) => setTimeout(resolve, STOP_GRACE_MS, false).unref()),
      ]);
      if (!drained) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
