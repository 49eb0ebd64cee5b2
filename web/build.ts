/**
 * Builds the console into web/dist when it is missing or older than its sources, so that
 * `npm ci && npm start` on a fresh clone serves it (`prestart` runs this file). "Older" is judged
 * by a hash of the inputs' contents, not by mtimes, which a checkout or a copy rewrites.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const WEB = fileURLToPath(new URL('.', import.meta.url));
const REPO = path.dirname(WEB);
const THIS_FILE = fileURLToPath(import.meta.url);
export const CONSOLE_DIST = path.join(WEB, 'dist');
const STAMP = path.join(CONSOLE_DIST, '.inputs-sha256');

/** What the bundle is made of: the console's sources, the generated clients, the locked versions. */
const INPUTS = ['web/index.html', 'web/vite.config.ts', 'web/src', 'src/gen', 'package-lock.json'];

function filesUnder(relative: string): string[] {
  const full = path.join(REPO, relative);
  if (!existsSync(full)) return [];
  if (!statSync(full).isDirectory()) return [relative];
  return readdirSync(full)
    .sort()
    .flatMap((entry) => filesUnder(path.join(relative, entry)));
}

function inputsHash(): string {
  const hash = createHash('sha256');
  for (const file of INPUTS.flatMap(filesUnder)) {
    hash
      .update(file.split(path.sep).join('/'))
      .update('\0')
      .update(readFileSync(path.join(REPO, file)));
  }
  return hash.digest('hex');
}

export function consoleIsCurrent(): boolean {
  return existsSync(STAMP) && readFileSync(STAMP, 'utf8').trim() === inputsHash();
}

/** Runs Vite in this process; NODE_ENV must already be `production`. */
async function buildHere(log: (line: string) => void): Promise<void> {
  const { build } = await import('vite');
  const started = performance.now();
  log('building the web console (web/ -> web/dist) ...');
  const hash = inputsHash();
  await build({ configFile: path.join(WEB, 'vite.config.ts'), logLevel: 'warn' });
  writeFileSync(STAMP, `${hash}\n`);
  log(`web console built in ${Math.round(performance.now() - started)} ms`);
}

/**
 * Builds web/dist unless it is current; says which it did. The build runs in a process of its own
 * with NODE_ENV=production: Vite and the React plugin pick React's development build and its
 * jsxDEV transform from NODE_ENV, which vitest sets to `test`.
 */
export async function ensureConsoleBuilt(
  log: (line: string) => void = console.log,
): Promise<'built' | 'current'> {
  if (consoleIsCurrent()) return 'current';
  const { stdout } = await promisify(execFile)(process.execPath, [THIS_FILE, '--force'], {
    env: { ...process.env, NODE_ENV: 'production' },
  });
  for (const line of stdout.trim().split('\n')) log(line);
  return 'built';
}

if (process.argv[1] && path.resolve(process.argv[1]) === THIS_FILE) {
  process.env.NODE_ENV = 'production';
  const viteInstalled = await import('vite').then(
    () => true,
    () => false,
  );
  if (!viteInstalled) {
    // `npm ci --omit=dev` leaves the build tools out: the API still starts, `/` says how to build it.
    if (!existsSync(path.join(CONSOLE_DIST, 'index.html'))) {
      console.warn(
        'vite is not installed (npm ci --omit=dev?): the web console is not built; npm ci installs it',
      );
    }
  } else if (process.argv.includes('--force') || !consoleIsCurrent()) {
    await buildHere(console.log);
  }
}
