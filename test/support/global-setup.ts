import net from 'node:net';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A MySQL/MariaDB server URL without a database; each test file creates its own. */
    databaseServerUrl: string;
    /** A Redis URL; each test file uses its own key prefix. */
    redisUrl: string;
  }
}

function answers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: 1_000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

function serverUrl(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  url.pathname = '/';
  return url.toString();
}

/**
 * Finds the real services the tests run against: the TEST_* URLs when set, else the local
 * services when they answer, else containers started with testcontainers (needs Docker).
 */
export default async function setup(project: TestProject) {
  const stops: (() => Promise<unknown>)[] = [];

  let databaseUrl = process.env.TEST_DATABASE_URL;
  if (!databaseUrl && (await answers('127.0.0.1', 3306))) databaseUrl = 'mysql://root@127.0.0.1:3306/';
  if (!databaseUrl) {
    const { MySqlContainer } = await import('@testcontainers/mysql');
    const mysql = await new MySqlContainer('mysql:8.4').withRootPassword('test').start();
    stops.push(() => mysql.stop());
    databaseUrl = `mysql://root:test@${mysql.getHost()}:${mysql.getPort()}/`;
  }

  let redisUrl = process.env.TEST_REDIS_URL;
  if (!redisUrl && (await answers('127.0.0.1', 6379))) redisUrl = 'redis://127.0.0.1:6379/0';
  if (!redisUrl) {
    const { RedisContainer } = await import('@testcontainers/redis');
    const redis = await new RedisContainer('redis:7').start();
    stops.push(() => redis.stop());
    redisUrl = redis.getConnectionUrl();
  }

  project.provide('databaseServerUrl', serverUrl(databaseUrl));
  project.provide('redisUrl', redisUrl);
  return async () => {
    await Promise.all(stops.map((stop) => stop()));
  };
}
