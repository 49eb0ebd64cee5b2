import { randomBytes } from 'node:crypto';
import { Cluster } from 'ioredis';
import { pino } from 'pino';
import { inject } from 'vitest';
import { type App, buildApp, buildServices, type Services } from '../../src/app.ts';
import { type Config, loadConfig } from '../../src/config.ts';

/**
 * A configuration of its own for one test file: a fresh database on the shared server and a
 * fresh Redis key prefix, so test files can run in parallel without seeing each other.
 */
export function isolatedConfig(overrides: Record<string, string> = {}): Config {
  const id = randomBytes(4).toString('hex');
  const databaseUrl = new URL(inject('databaseServerUrl'));
  databaseUrl.pathname = `/coupon_test_${id}`;
  return loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl.toString(),
    REDIS_URL: inject('redisUrl'),
    REDIS_KEY_PREFIX: `test:${id}:`,
    LOG_LEVEL: 'silent',
    ...overrides,
  });
}

export const silentLogger = pino({ level: 'silent' });

/** Drops the file's database and Redis keys; call once the services are closed. */
export async function dropIsolatedStores(services: Services, config: Config): Promise<void> {
  const database = new URL(config.databaseUrl).pathname.slice(1);
  await services.db.em.fork().execute(`drop database if exists \`${database}\``);
  // A cluster's keys are spread over its masters: scan each, and delete key by key (one DEL of
  // keys in several slots is refused).
  const nodes = services.redis instanceof Cluster ? services.redis.nodes('master') : [services.redis];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${config.redisKeyPrefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await node.pipeline(keys.map((key) => ['del', key])).exec();
      cursor = next;
    } while (cursor !== '0');
  }
}

export async function startServices(config = isolatedConfig()) {
  const services = await buildServices(config, silentLogger);
  return {
    services,
    config,
    async stop() {
      await dropIsolatedStores(services, config);
      await services.close();
    },
  };
}

export async function startApp(
  config = isolatedConfig(),
): Promise<{ app: App; baseUrl: string; stop(): Promise<void> }> {
  const app = await buildApp(config, silentLogger);
  const address = await app.listen();
  return {
    app,
    baseUrl: `http://127.0.0.1:${address.port}`,
    async stop() {
      await dropIsolatedStores(app.services, config);
      await app.close();
    },
  };
}

/** A campaign window that is open now and for the next hour. */
export function openWindow(now = Date.now()) {
  return { issuedAt: new Date(now - 60_000), expiresAt: new Date(now + 60 * 60_000) };
}

let counter = 0;
export function uniqueName(label: string): string {
  counter += 1;
  return `${label}-${counter}-${randomBytes(3).toString('hex')}`;
}

/**
 * Writes `codes` straight into MySQL as coupons of `campaignId` (users `user-0`, `user-1`, ...)
 * and sets its issued count: for tests about reading a big campaign, not about issuing one.
 */
export async function fillCampaign(services: Services, campaignId: string, codes: readonly string[]) {
  const em = services.db.em.fork();
  for (let start = 0; start < codes.length; start += 10_000) {
    const chunk = codes.slice(start, start + 10_000);
    await em.execute(
      `insert into coupon (campaign_id, user_id, code, issued_at) values ${chunk.map(() => '(?, ?, ?, ?)').join(', ')}`,
      chunk.flatMap((code, i) => [campaignId, `user-${start + i}`, code, new Date()]),
    );
  }
  await em.execute('update campaign set issued_count = ? where id = ?', [codes.length, campaignId]);
}
