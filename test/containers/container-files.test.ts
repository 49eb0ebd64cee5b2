import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

// No Docker engine runs on the CI machine: these checks lint the files' structure instead.
const root = new URL('../../', import.meta.url);
const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');
const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8')) as {
  services: Record<
    string,
    {
      build?: unknown;
      image?: string;
      ports?: string[];
      healthcheck?: { test?: unknown };
      depends_on?: Record<string, { condition?: string }>;
      environment?: Record<string, string>;
      profiles?: string[];
    }
  >;
};
/** What `docker compose up` starts: the services of no profile (the cluster profile's are in scale-out-files.test.ts). */
const defaultServices = Object.fromEntries(
  Object.entries(compose.services).filter(([, service]) => service.profiles === undefined),
);

/** Dockerfile instructions, continuation lines joined, comments dropped. */
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line.length > 0 && !line.startsWith('#'));

describe('Dockerfile', () => {
  it('is multi-stage on Node 24', () => {
    const froms = instructions.filter((line) => line.startsWith('FROM '));
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(froms.every((line) => /^FROM node:24[-.\w]*( AS \w+)?$/i.test(line))).toBe(true);
  });

  it('installs production dependencies only, from the lockfile, without the Node binaries for old machines', () => {
    const install = instructions.find((line) => line.startsWith('RUN ') && line.includes('npm ci'));
    expect(install).toContain('--omit=dev');
    expect(install).toContain('--omit=optional');
  });

  it('copies what the app reads at run time: src (code, generated messages, Lua scripts) and package.json', () => {
    expect(instructions).toContain('COPY --chown=node:node src ./src');
    // The web console's bundle, built by a stage of its own.
    expect(instructions).toContain('COPY --from=console --chown=node:node /app/web/dist ./web/dist');
    expect(instructions.some((line) => /^COPY .*package\.json/.test(line))).toBe(true);
  });

  it('runs as a non-root user, with node as PID 1 in exec form so SIGTERM reaches it', () => {
    const user = instructions.findIndex((line) => line.startsWith('USER '));
    const cmd = instructions.findIndex((line) => line.startsWith('CMD '));
    expect(user).toBeGreaterThan(-1);
    expect(instructions[user]).not.toMatch(/USER (root|0)\b/);
    expect(user).toBeLessThan(cmd);
    expect(instructions[cmd]).toMatch(/^CMD \["node", ("--[\w-]+=\w+", )*"src\/main\.ts"\]$/);
    expect(instructions).toContain('STOPSIGNAL SIGTERM');
  });

  it("starts node with npm start's heap settings", () => {
    const cmd = JSON.parse(
      (instructions.find((line) => line.startsWith('CMD ')) as string).slice(4),
    ) as string[];
    const start = (
      JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: { start: string } }
    ).scripts.start;
    expect(cmd.join(' ')).toBe(start);
    expect(cmd).toContain('--max-semi-space-size=16');
  });

  it('takes the commit it was built from as BUILD_COMMIT, for coupon_build_info', () => {
    expect(instructions).toContain('ARG BUILD_COMMIT=unknown');
    expect(instructions).toContain('ENV BUILD_COMMIT=$BUILD_COMMIT');
  });

  it('has a healthcheck on /readyz and fetches nothing remote', () => {
    expect(instructions.some((line) => line.startsWith('HEALTHCHECK') && line.includes('/readyz'))).toBe(
      true,
    );
    expect(instructions.some((line) => /^ADD\s+https?:/i.test(line))).toBe(false);
  });
});

describe('docker-compose.yml', () => {
  it('runs the app, MySQL 8.4 and Redis 7, each with a healthcheck', () => {
    expect(Object.keys(defaultServices).sort()).toEqual(['app', 'mysql', 'redis']);
    expect(defaultServices.mysql?.image).toBe('mysql:8.4');
    expect(defaultServices.redis?.image).toMatch(/^redis:7/);
    for (const service of Object.values(defaultServices)) expect(service.healthcheck?.test).toBeDefined();
  });

  it('starts the app only once MySQL and Redis are healthy, and serves it on 8080', () => {
    const app = defaultServices.app;
    expect(app?.build).toBeDefined();
    expect(app?.depends_on).toEqual({
      mysql: { condition: 'service_healthy' },
      redis: { condition: 'service_healthy' },
    });
    expect(app?.ports).toContain('8080:8080');
    expect(app?.environment?.DATABASE_URL).toBe('mysql://root@mysql:3306/coupon');
    expect(app?.environment?.REDIS_URL).toBe('redis://redis:6379/0');
  });
});
