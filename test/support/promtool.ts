import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { REDIS_PROCESS_TESTS_REQUIRED } from './redis-processes.ts';

const run = promisify(execFile);

/**
 * Whether `promtool` is on PATH (Debian's prometheus package; `.ci/run` installs it). Without it
 * the rule tests skip, saying why, unless CI requires them (COUPON_TEST_REQUIRE_REDIS_CLUSTER=1,
 * the variable that already makes CI run the tests on the tools it installs).
 */
export function promtoolAvailable(): boolean {
  const found = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!found && REDIS_PROCESS_TESTS_REQUIRED) {
    throw new Error(
      'COUPON_TEST_REQUIRE_REDIS_CLUSTER=1 but promtool is not on PATH (apt-get install prometheus)',
    );
  }
  if (!found)
    console.warn('skipping the promtool checks: promtool is not on PATH (install the prometheus package)');
  return found;
}

/** Runs promtool; resolves with what it printed, rejects with it when it exits non-zero. */
export async function promtool(args: readonly string[], cwd: string): Promise<string> {
  try {
    const { stdout, stderr } = await run('promtool', [...args], { cwd, timeout: 60_000 });
    return `${stdout}${stderr}`;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`promtool ${args.join(' ')} failed:\n${stdout ?? ''}${stderr ?? ''}`);
  }
}
