import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';
import { REDIS_PROCESS_TESTS_REQUIRED } from './redis-processes.ts';

/** Debian's chromium package; `npx playwright install` cannot download a browser here. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Whether Chromium is installed (`.ci/run` installs Debian's chromium). Without it the browser
 * tests skip, saying why, unless CI requires them (COUPON_TEST_REQUIRE_REDIS_CLUSTER=1, the
 * variable that makes CI run every test that needs a program of its own).
 */
export function chromiumAvailable(): boolean {
  const found = existsSync(CHROMIUM);
  if (!found && REDIS_PROCESS_TESTS_REQUIRED) {
    throw new Error(
      `COUPON_TEST_REQUIRE_REDIS_CLUSTER=1 but ${CHROMIUM} is missing (apt-get install chromium fonts-noto-cjk)`,
    );
  }
  if (!found)
    console.warn(`skipping the browser tests: ${CHROMIUM} is missing (install the chromium package)`);
  return found;
}

/**
 * Headless Chromium as the machine allows it: no sandbox (tests run as root), no GPU, and no
 * background networking (its calls to Google are refused by the closed network, many at a time).
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
    ],
  });
}
