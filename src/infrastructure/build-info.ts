import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** What this process runs: `coupon_build_info` and the first log line say it. */
export interface BuildInfo {
  /** package.json's version. */
  readonly version: string;
  /** The git commit of the code, `unknown` when neither BUILD_COMMIT nor a git checkout tells. */
  readonly commit: string;
  /** The Node.js version, e.g. v24.22.3. */
  readonly node: string;
}

const PROJECT_ROOT = new URL('../../', import.meta.url);

let commitOfCheckout: string | undefined;

/**
 * `commit` (from BUILD_COMMIT) wins: an image has no .git. Else the checkout's HEAD, asked of git
 * once per process (a few ms at start); no git, or not a checkout: `unknown`.
 */
export function readBuildInfo(commit?: string): BuildInfo {
  const { version } = JSON.parse(readFileSync(new URL('package.json', PROJECT_ROOT), 'utf8')) as {
    version: string;
  };
  commitOfCheckout ??= gitHead();
  return { version, commit: commit ?? commitOfCheckout, node: process.version };
}

function gitHead(): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 2_000,
    }).trim();
  } catch {
    return 'unknown';
  }
}
