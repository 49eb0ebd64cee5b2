import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import { describe, expect, it } from 'vitest';
import { CouponService, CreateCampaignRequestSchema } from '../src/gen/coupon/v1/coupon_pb.js';
import { childEnv, startChildService } from './support/child-service.ts';
import { eventually } from './support/invariants.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from './support/services.ts';
import { TcpProxy } from './support/tcp-proxy.ts';

function target(url: string) {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port) };
}

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));

describe('the process', () => {
  it.each([
    ['PORT', 'eighty'],
    ['DATABASE_URL', 'postgres://localhost/coupon'],
  ])('stops with one clear line and exit code 1 on a bad %s', (variable, value) => {
    const result = spawnSync(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH ?? '', [variable]: value },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(result.status).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^invalid configuration: ${variable}: `));
  });
});

describe('two deployments on one Redis keyspace', () => {
  it('the second one to start stops with one clear line and exit code 1', async () => {
    const first = await startServices();
    try {
      // Another database (another deployment) with the same Redis db and key prefix.
      const second = isolatedConfig({ REDIS_KEY_PREFIX: first.config.redisKeyPrefix });
      const result = spawnSync(process.execPath, [MAIN], {
        env: { PATH: process.env.PATH ?? '', ...childEnv(second) },
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(result.status).toBe(1);
      const lines = result.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        /^invalid configuration: REDIS_KEY_PREFIX: ".+" on redis:.* belongs to another deployment/,
      );
      // The same deployment (its own database) starts beside itself, as every instance of it does.
      const again = await startServices(first.config);
      await again.services.close();
      const secondDatabase = new URL(second.databaseUrl).pathname.slice(1);
      await first.services.db.em.fork().execute(`drop database if exists \`${secondDatabase}\``);
    } finally {
      await first.stop();
    }
  });
});

describe('another deployment found on the keyspace once Redis comes back', () => {
  it('stops the instance that started while Redis was away, with one line and exit code 1', async () => {
    const config = isolatedConfig();
    const marker = new Redis(config.redisUrl);
    const proxy = await TcpProxy.start(target(config.redisUrl));
    proxy.cut();
    try {
      await marker.set(`${config.redisKeyPrefix}deployment`, 'another-deployment');
      const child = await startChildService(
        childEnv(config, {
          REDIS_URL: proxy.route(config.redisUrl),
          DEPENDENCY_TIMEOUT_MS: '500',
          RECONCILE_AFTER_MS: '1500',
        }),
      );
      proxy.restore();
      expect(await child.exited()).toBe(1);
      expect(child.logs.join('\n')).toMatch(
        /invalid configuration: REDIS_KEY_PREFIX: .* belongs to another deployment/,
      );
    } finally {
      await proxy.close();
      await marker.del(`${config.redisKeyPrefix}deployment`);
      marker.disconnect();
      await dropDatabaseOf(config);
    }
  });
});

describe('WORKERS=2', () => {
  it('serves from two processes on one port and exits 0 on SIGTERM once both drained', async () => {
    const config = isolatedConfig();
    const child = await startChildService(childEnv(config, { WORKERS: '2' }));
    try {
      const client = createClient(
        CouponService,
        createConnectTransport({ baseUrl: child.baseUrl, httpVersion: '1.1' }),
      );
      const window = openWindow();
      const { campaign } = await client.createCampaign(
        create(CreateCampaignRequestSchema, {
          name: uniqueName('workers'),
          amount: 10n,
          issuedAt: timestampFromDate(window.issuedAt),
          expiresAt: timestampFromDate(window.expiresAt),
        }),
      );
      const issued = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          client.issueCoupon({ campaignId: campaign?.id ?? '', userId: `w-${i}` }),
        ),
      );
      expect(new Set(issued.map((r) => r.coupon?.code)).size).toBe(10);
      expect(
        await eventually(async () => {
          const listening = child.logs.filter((line) => line.includes('coupon-service listening')).length;
          return listening === 2 ? [] : [`${listening} workers listening`];
        }, 10_000),
      ).toEqual([]);
      child.process.kill('SIGTERM');
      expect(await child.exited()).toBe(0);
    } finally {
      child.process.kill('SIGKILL');
      await dropDatabaseOf(config);
    }
  });
});

/** The file's databases are the child's, made by its migrations: dropped here, once it is gone. */
async function dropDatabaseOf(config: { databaseUrl: string }): Promise<void> {
  const server = await mysql.createConnection(new URL('/', config.databaseUrl).toString());
  await server.query(`drop database if exists \`${new URL(config.databaseUrl).pathname.slice(1)}\``);
  await server.end();
}
