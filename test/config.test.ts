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

  it.each(['coupon:{eu}:', '{coupon}', 'coupon}:'])(
    'refuses a REDIS_KEY_PREFIX %j with a brace',
    (prefix) => {
      expect(() => loadConfig({ REDIS_KEY_PREFIX: prefix })).toThrow(
        /^invalid configuration: REDIS_KEY_PREFIX: must not contain \{ or \}[^\n]+$/,
      );
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
