import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65_535);
const positiveInt = z.coerce.number().int().positive();

/** Every setting, its environment variable, its default and what it means. */
const schema = z.object({
  /** PORT: the one port serving gRPC, gRPC-Web and Connect over HTTP/1.1 and HTTP/2. */
  PORT: port.default(8080),
  /** HOST: the address to bind. */
  HOST: z.string().min(1).default('0.0.0.0'),
  /** DATABASE_URL: MySQL 8 or MariaDB; the database is created at start when missing. */
  DATABASE_URL: z
    .url({ protocol: /^(mysql|mariadb)$/, error: 'must be a mysql:// or mariadb:// URL' })
    .default('mysql://root@127.0.0.1:3306/coupon'),
  /** REDIS_URL: Redis 6.2+; the db index in the path is honoured. */
  REDIS_URL: z
    .url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' })
    .default('redis://127.0.0.1:6379/0'),
  /** REDIS_KEY_PREFIX: prepended to every Redis key, so deployments can share one Redis. */
  REDIS_KEY_PREFIX: z.string().default('coupon:'),
  /** CORS_ORIGINS: comma-separated origins allowed to call from a browser; `*` allows any. */
  CORS_ORIGINS: z
    .string()
    .default('')
    .transform((value) =>
      value
        .split(',')
        .map((origin) => origin.trim())
        .filter((origin) => origin.length > 0),
    ),
  /** WORKERS: processes serving the port (Node cluster); 1 runs everything in this process. */
  WORKERS: positiveInt.max(64).default(1),
  /** DB_POOL_SIZE: database connections per process. */
  DB_POOL_SIZE: positiveInt.default(20),
  /** DEPENDENCY_TIMEOUT_MS: longest wait for Redis or the database before a call fails UNAVAILABLE. */
  DEPENDENCY_TIMEOUT_MS: positiveInt.default(3_000),
  /** BREAKER_RESET_MS: after repeated failures a dependency is left alone this long before a trial call. */
  BREAKER_RESET_MS: positiveInt.default(2_000),
  /** RECONCILE_AFTER_MS: a claim still pending after this long is settled from the database. */
  RECONCILE_AFTER_MS: positiveInt.default(30_000),
  /** RECONCILE_INTERVAL_MS: how often each instance looks for such claims. */
  RECONCILE_INTERVAL_MS: positiveInt.default(5_000),
  /** RECONCILE_SWEEP_SIZE: live campaigns each reconcile pass also checks for what only lost Redis data causes. */
  RECONCILE_SWEEP_SIZE: positiveInt.default(100),
  /** CAMPAIGN_REFRESH_MS: how often each instance re-reads the campaigns created lately (in case it missed an announcement). */
  CAMPAIGN_REFRESH_MS: positiveInt.default(10_000),
  /** SHUTDOWN_GRACE_MS: how long SIGTERM waits for in-flight calls before closing connections. */
  SHUTDOWN_GRACE_MS: positiveInt.default(10_000),
  /** ISSUE_RATE_LIMIT_PER_USER: IssueCoupon calls per second per user id and campaign, counted by the claim script in Redis (shared by every instance); 0 is off. */
  ISSUE_RATE_LIMIT_PER_USER: z.coerce.number().int().min(0).default(20),
  /** ISSUE_RATE_LIMIT_PER_IP: IssueCoupon calls per second per client address; 0 (default) is off. */
  ISSUE_RATE_LIMIT_PER_IP: z.coerce.number().int().min(0).default(0),
  /** TRUST_PROXY: take the client address from X-Forwarded-For (only behind a proxy you run). */
  TRUST_PROXY: z
    .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
    .default('false')
    .transform((value) => value === 'true' || value === '1'),
  /** ADMIN_TOKEN: when set, CreateCampaign requires `authorization: Bearer <token>`. */
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /** LOG_LEVEL: pino level (fatal, error, warn, info, debug, trace, silent). */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly databaseUrl: string;
  readonly redisUrl: string;
  readonly redisKeyPrefix: string;
  readonly corsOrigins: readonly string[];
  readonly workers: number;
  readonly dbPoolSize: number;
  readonly dependencyTimeoutMs: number;
  readonly breakerResetMs: number;
  readonly reconcileAfterMs: number;
  readonly reconcileIntervalMs: number;
  readonly reconcileSweepSize: number;
  readonly campaignRefreshMs: number;
  readonly shutdownGraceMs: number;
  readonly logLevel: string;
  readonly adminToken: string | undefined;
  readonly issueRateLimitPerUser: number;
  readonly issueRateLimitPerIp: number;
  readonly trustProxy: boolean;
}

export class ConfigError extends Error {}

/** Reads the configuration; a bad value throws one line naming the variable and what is wrong. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value !== ''),
  );
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = issue?.path.join('.') ?? 'environment';
    throw new ConfigError(
      `invalid configuration: ${variable}: ${issue?.message ?? 'invalid value'} (got "${env[variable] ?? ''}")`,
    );
  }
  const c = parsed.data;
  if (c.RECONCILE_AFTER_MS <= 2 * c.DEPENDENCY_TIMEOUT_MS) {
    // A claim must never be judged while its own database write may still be running.
    throw new ConfigError(
      `invalid configuration: RECONCILE_AFTER_MS: must be more than twice DEPENDENCY_TIMEOUT_MS (${c.DEPENDENCY_TIMEOUT_MS}), got ${c.RECONCILE_AFTER_MS}`,
    );
  }
  return {
    port: c.PORT,
    host: c.HOST,
    databaseUrl: c.DATABASE_URL,
    redisUrl: c.REDIS_URL,
    redisKeyPrefix: c.REDIS_KEY_PREFIX,
    corsOrigins: c.CORS_ORIGINS,
    workers: c.WORKERS,
    dbPoolSize: c.DB_POOL_SIZE,
    dependencyTimeoutMs: c.DEPENDENCY_TIMEOUT_MS,
    breakerResetMs: c.BREAKER_RESET_MS,
    reconcileAfterMs: c.RECONCILE_AFTER_MS,
    reconcileIntervalMs: c.RECONCILE_INTERVAL_MS,
    reconcileSweepSize: c.RECONCILE_SWEEP_SIZE,
    campaignRefreshMs: c.CAMPAIGN_REFRESH_MS,
    shutdownGraceMs: c.SHUTDOWN_GRACE_MS,
    logLevel: c.LOG_LEVEL,
    adminToken: c.ADMIN_TOKEN,
    issueRateLimitPerUser: c.ISSUE_RATE_LIMIT_PER_USER,
    issueRateLimitPerIp: c.ISSUE_RATE_LIMIT_PER_IP,
    trustProxy: c.TRUST_PROXY,
  };
}
