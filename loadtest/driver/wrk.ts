import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Target } from './load.ts';

/** What one wrk run measured (closed loop, HTTP/1.1 keep-alive, no pipelining). */
export interface WrkRun {
  readonly requests: number;
  readonly seconds: number;
  /** Answers with a status other than 2xx/3xx. */
  readonly non2xx: number;
  /** Connect, read, write errors and timeouts, summed. */
  readonly errors: number;
  /** Latency percentiles in ms, from wrk's own histogram. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  /** CPU seconds wrk itself used (user + system), on the same cores as the servers. */
  readonly cpuSeconds: number;
}

const SCRIPT = fileURLToPath(new URL('../wrk/issue-coupon.lua', import.meta.url));

export function wrkAvailable(): boolean {
  return spawnSync('wrk', ['--version'], { stdio: 'ignore' }).error === undefined;
}

/**
 * IssueCoupon over Connect JSON with wrk (loadtest/wrk/issue-coupon.lua): a new user id per
 * request, `threads` threads sharing `connections`. Run under a shell whose `times` reports
 * wrk's CPU once it has exited.
 */
export function runWrk(
  target: Target,
  options: {
    readonly campaignId: string;
    readonly userPrefix: string;
    readonly connections: number;
    readonly durationMs: number;
    readonly threads?: number;
  },
): Promise<WrkRun> {
  const args = [
    `-t${options.threads ?? 2}`,
    `-c${options.connections}`,
    `-d${Math.max(1, Math.round(options.durationMs / 1000))}s`,
    '--timeout',
    '10s',
    '-s',
    SCRIPT,
    `http://${target.host}:${target.port}`,
  ];
  const child = spawn('bash', ['-c', 'wrk "$@"; status=$?; times; exit $status', 'wrk', ...args], {
    env: { ...process.env, BENCH_CAMPAIGN: options.campaignId, BENCH_USER_PREFIX: options.userPrefix },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      const line = /^BENCH_WRK (.*)$/m.exec(output)?.[1];
      // `times` prints the shell's own user/system time, then its children's: "0m1.234s 0m0.567s".
      const children = [...output.matchAll(/^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/gm)][1];
      if (code !== 0 || !line) {
        reject(new Error(`wrk exited with ${code}: ${output.slice(-500)}`));
        return;
      }
      const run = JSON.parse(line) as Record<string, number>;
      const ms = (us: number | undefined) => Math.round((us ?? 0) / 10) / 100;
      const cpuSeconds = children
        ? Number(children[1]) * 60 + Number(children[2]) + Number(children[3]) * 60 + Number(children[4])
        : Number.NaN;
      resolve({
        requests: run.requests ?? 0,
        seconds: run.seconds ?? 0,
        non2xx: run.non2xx ?? 0,
        errors: (run.connect ?? 0) + (run.read ?? 0) + (run.write ?? 0) + (run.timeout ?? 0),
        p50: ms(run.p50),
        p90: ms(run.p90),
        p99: ms(run.p99),
        max: ms(run.max),
        cpuSeconds,
      });
    });
  });
}

/** Several wrk runs of one scenario as one: totals, and the worst round's percentiles (wrk gives no histogram to merge). */
export function combineWrk(runs: readonly WrkRun[]) {
  const requests = runs.reduce((sum, run) => sum + run.requests, 0);
  const seconds = runs.reduce((sum, run) => sum + run.seconds, 0);
  const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
  return {
    requests,
    perSecond: Math.round(requests / seconds),
    non2xx: runs.reduce((sum, run) => sum + run.non2xx, 0),
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    /** Median over the rounds of each round's percentile. */
    p50: median(runs.map((run) => run.p50)),
    p99: median(runs.map((run) => run.p99)),
    maxP99: Math.max(...runs.map((run) => run.p99)),
    max: Math.max(...runs.map((run) => run.max)),
    driverCpu: Math.round((runs.reduce((sum, run) => sum + run.cpuSeconds, 0) / seconds) * 100) / 100,
    rounds: runs.map((run) => Math.round(run.requests / run.seconds)),
  };
}
