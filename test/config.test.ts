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
    ['MAX_CONNECTIONS', '0'],
    ['HTTP_IDLE_TIMEOUT_MS', '-1'],
  ])('rejects a bad %s with one line naming it', (variable, value) => {
    expect(() => loadConfig({ [variable]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [variable]: value })).toThrow(
      new RegExp(`^invalid configuration: ${variable}: [^\\n]+$`),
    );
  });

  it('refuses a reconcile threshold that could judge a write still in flight', () => {
    expect(() => loadConfig({ DEPENDENCY_TIMEOUT_MS: '3000', RECONCILE_AFTER_MS: '5000' })).toThrow(
      /^invalid configuration: RECONCILE_AFTER_MS: /,
    );
    expect(loadConfig({ DEPENDENCY_TIMEOUT_MS: '1000', RECONCILE_AFTER_MS: '2500' }).reconcileAfterMs).toBe(
      2500,
    );
  });
});
