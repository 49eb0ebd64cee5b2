import { describe, expect, it } from 'vitest';
import { DEFAULT_CONNECTION_LIMITS } from '../src/api/server.ts';
import { ConfigError, loadConfig } from '../src/config.ts';

describe('configuration', () => {
  it('has defaults that work on a developer machine', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      databaseUrl: 'mysql://root@127.0.0.1:3306/coupon',
      redisUrl: 'redis://127.0.0.1:6379/0',
      corsOrigins: [],
    });
  });

  it('gives a server built without a config the same connection limits as the defaults', () => {
    const config = loadConfig({});
    expect({
      headersTimeoutMs: config.httpHeadersTimeoutMs,
      requestTimeoutMs: config.httpRequestTimeoutMs,
      idleTimeoutMs: config.httpIdleTimeoutMs,
      maxConnections: config.maxConnections,
    }).toEqual(DEFAULT_CONNECTION_LIMITS);
  });

  it('refuses a headers timeout longer than the request timeout it is part of', () => {
    expect(() => loadConfig({ HTTP_HEADERS_TIMEOUT_MS: '20000', HTTP_REQUEST_TIMEOUT_MS: '10000' })).toThrow(
      /^invalid configuration: HTTP_HEADERS_TIMEOUT_MS: [^\n]+$/,
    );
  });

  it('splits CORS_ORIGINS on commas', () => {
    expect(loadConfig({ CORS_ORIGINS: 'https://a.example, https://b.example' }).corsOrigins).toEqual([
      'https://a.example',
      'https://b.example',
    ]);
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['DATABASE_URL', 'postgres://localhost/coupon'],
    ['REDIS_URL', 'not a url'],
    ['LOG_LEVEL', 'loud'],
    ['TRUST_PROXY', 'true'],
    ['TRUST_PROXY', '10.0.0.0/99'],
    ['TRUST_PROXY', 'loopback, my-proxy'],
    ['MAX_CONNECTIONS', '0'],
    ['HTTP_IDLE_TIMEOUT_MS', '-1'],
  ])('rejects a bad %s with one line naming it', (variable, value) => {
    expect(() => loadConfig({ [variable]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [variable]: value })).toThrow(
      new RegExp(`^invalid configuration: ${variable}: [^\\n]+$`),
    );
  });

  it('trusts no proxy by default, a number of hops, or proxies by address, CIDR and name', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: '2' }).trustProxy).toEqual({ hops: 2 });
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8, 192.0.2.7' }).trustProxy).toEqual({
      addresses: ['loopback', '10.0.0.0/8', '192.0.2.7'],
    });
  });

  it('takes one way of verifying user tokens, and refuses mixing them up', () => {
    expect(loadConfig({}).userTokens).toBeUndefined();
    expect(loadConfig({ USER_JWT_SECRET: 's'.repeat(32), USER_JWT_ISSUER: 'shop' }).userTokens).toEqual({
      key: { kind: 'secret', secret: 's'.repeat(32) },
      issuer: 'shop',
    });
    for (const env of [
      { USER_JWT_SECRET: 'short' },
      { USER_JWT_SECRET: 's'.repeat(32), USER_JWT_JWKS_URL: 'https://idp.example/jwks' },
      { USER_JWT_AUDIENCE: 'coupons' },
      { USER_JWT_SECRET: 's'.repeat(32), ADMIN_TOKEN: 's'.repeat(32) },
      { USER_JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\\nnot a key\\n-----END PUBLIC KEY-----' },
      { USER_JWT_JWKS_URL: 'ftp://idp.example/jwks' },
    ]) {
      expect(() => loadConfig(env), JSON.stringify(env)).toThrow(
        /^invalid configuration: USER_JWT_[A-Z_]+: [^\n]+$/,
      );
    }
  });

  it('takes the seed nodes of a Redis Cluster, IPv6 in brackets; none means one server at REDIS_URL', () => {
    expect(loadConfig({}).redisClusterNodes).toEqual([]);
    expect(
      loadConfig({ REDIS_CLUSTER_NODES: 'redis-a:7000, 10.0.0.2:7001,[::1]:7002,' }).redisClusterNodes,
    ).toEqual([
      { host: 'redis-a', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
      { host: '::1', port: 7002 },
    ]);
    // db 0 spelled out, with credentials, is fine on a cluster; another db is fine on one server.
    expect(
      loadConfig({ REDIS_URL: 'redis://:secret@127.0.0.1:6379/0', REDIS_CLUSTER_NODES: 'a:7000' }).redisUrl,
    ).toBe('redis://:secret@127.0.0.1:6379/0');
    expect(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379/3' }).redisUrl).toBe('redis://127.0.0.1:6379/3');
  });

  it.each([
    'redis-a',
    'redis-a:',
    ':7000',
    'redis-a:seventy',
    'redis-a:70000',
    'redis-a:0',
    '::1:7000',
    'a b:7000',
  ])('refuses REDIS_CLUSTER_NODES %j with one line naming it', (nodes) => {
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: `127.0.0.1:7000,${nodes}` })).toThrow(
      /^invalid configuration: REDIS_CLUSTER_NODES: [^\n]+$/,
    );
  });

  it.each(['redis://127.0.0.1:6379/3', 'redis://127.0.0.1:6379?db=2', 'rediss://u:p@cache.example/1'])(
    'refuses the db index of %s on a cluster, which has db 0 only',
    (url) => {
      expect(() => loadConfig({ REDIS_URL: url, REDIS_CLUSTER_NODES: '127.0.0.1:7000' })).toThrow(
        /^invalid configuration: REDIS_URL: a Redis Cluster has only db 0[^\n]+$/,
      );
    },
  );

  it('takes the sentinels of one primary and its name; REDIS_URL still gives its credentials and db', () => {
    expect(loadConfig({}).redisSentinel).toBeUndefined();
    const config = loadConfig({
      REDIS_URL: 'redis://:secret@ignored-host:6379/3',
      REDIS_SENTINELS: 'sentinel-a:26379, [::1]:26380,',
      REDIS_SENTINEL_NAME: 'coupon',
      REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
    });
    expect(config.redisSentinel).toEqual({
      sentinels: [
        { host: 'sentinel-a', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'coupon',
      password: 'sentinel-secret',
    });
    // The primary is an ordinary server: a db index other than 0 is honoured there.
    expect(config.redisUrl).toBe('redis://:secret@ignored-host:6379/3');
    expect(config.redisClusterNodes).toEqual([]);
    expect(
      loadConfig({ REDIS_SENTINELS: '127.0.0.1:26379', REDIS_SENTINEL_NAME: 'coupon' }).redisSentinel
        ?.password,
    ).toBeUndefined();
  });

  it.each([
    [
      { REDIS_SENTINELS: '127.0.0.1:26379:1', REDIS_SENTINEL_NAME: 'coupon' },
      /^invalid configuration: REDIS_SENTINELS: "127.0.0.1:26379:1" is not host:port/,
    ],
    [
      {
        REDIS_SENTINELS: '127.0.0.1:26379',
        REDIS_SENTINEL_NAME: 'coupon',
        REDIS_CLUSTER_NODES: '127.0.0.1:7000',
      },
      /^invalid configuration: REDIS_SENTINELS: set REDIS_SENTINELS \(one primary with replicas, found through sentinels\) or REDIS_CLUSTER_NODES \(a Redis Cluster\), not both$/,
    ],
    [
      { REDIS_SENTINELS: '127.0.0.1:26379' },
      /^invalid configuration: REDIS_SENTINEL_NAME: required with REDIS_SENTINELS: [^\n]+$/,
    ],
    [
      { REDIS_SENTINEL_NAME: 'coupon' },
      /^invalid configuration: REDIS_SENTINEL_NAME: set without REDIS_SENTINELS; [^\n]+$/,
    ],
    [
      { REDIS_SENTINEL_PASSWORD: 'secret' },
      /^invalid configuration: REDIS_SENTINEL_PASSWORD: set without REDIS_SENTINELS; [^\n]+$/,
    ],
  ])('refuses the sentinel settings %j with one line naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it.each(['coupon:{eu}:', '{coupon}', 'coupon}:'])(
    'refuses a REDIS_KEY_PREFIX %j with a brace, on one server and on a cluster',
    (prefix) => {
      for (const env of [{}, { REDIS_CLUSTER_NODES: '127.0.0.1:7000' }]) {
        expect(() => loadConfig({ ...env, REDIS_KEY_PREFIX: prefix })).toThrow(
          /^invalid configuration: REDIS_KEY_PREFIX: must not contain \{ or \}[^\n]+$/,
        );
      }
    },
  );

  it('refuses a reconcile threshold that could judge a write still in flight', () => {
    expect(() => loadConfig({ DEPENDENCY_TIMEOUT_MS: '3000', RECONCILE_AFTER_MS: '5000' })).toThrow(
      /^invalid configuration: RECONCILE_AFTER_MS: /,
    );
    expect(loadConfig({ DEPENDENCY_TIMEOUT_MS: '1000', RECONCILE_AFTER_MS: '2500' }).reconcileAfterMs).toBe(
      2500,
    );
  });
});
