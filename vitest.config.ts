import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // Integration tests share two cores with MySQL and Redis; allow for a slow machine.
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
