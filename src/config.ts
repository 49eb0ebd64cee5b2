import { z } from 'zod';
import { compileTrustedProxies, type TrustedProxies } from './api/client-address.ts';
import { algorithmOfPublicKey, type UserTokenOptions } from './api/user-tokens.ts';
import { TRACE_SAMPLERS, type TracingSettings } from './infrastructure/tracing.ts';

/** A Redis Cluster seed node, or a Redis Sentinel. */
export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

/** The sentinels that tell where the one Redis primary is. */
export interface RedisSentinelSettings {
  readonly sentinels: readonly RedisNode[];
  /** The master group name they monitor. */
  readonly name: string;
  readonly password: string | undefined;
}

const port = z.coerce.number().int().min(0).max(65_535);
const positiveInt = z.coerce.number().int().positive();

/** `host:port,host:port,...` (IPv6 as `[address]:port`); empty: none. */
const hostPortList = z
  .string()
  .default('')
  .transform((value, context): RedisNode[] => {
    const nodes: RedisNode[] = [];
    for (const entry of value
      .split(',')
      .map((node) => node.trim())
      .filter((node) => node.length > 0)) {
      const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(entry);
      const port = Number(match?.[3]);
      if (!match || port < 1 || port > 65_535) {
        context.addIssue({
          code: 'custom',
          message: `${JSON.stringify(entry)} is not host:port; expected host:port,host:port,... (IPv6 as [address]:port)`,
        });
        return z.NEVER;
      }
      nodes.push({ host: match[1] ?? match[2] ?? '', port });
    }
    return nodes;
  });

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
  /**
   * REDIS_URL: Redis 6.2+; the db index in the path is honoured. With REDIS_CLUSTER_NODES only its
   * user, password and `rediss://` (TLS) are used, and its db index must be 0; with REDIS_SENTINELS
   * its host and port are not used (the sentinels name the primary), the rest is.
   */
  REDIS_URL: z
    .url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' })
    .default('redis://127.0.0.1:6379/0'),
  /**
   * REDIS_CLUSTER_NODES: `host:port,host:port,...`, seed nodes of a Redis Cluster (any of them may
   * be down at start; the rest of the cluster is discovered from the first that answers). Set, it
   * replaces REDIS_URL's single server; empty (default): one server at REDIS_URL.
   */
  REDIS_CLUSTER_NODES: hostPortList,
  /**
   * REDIS_SENTINELS: `host:port,host:port,...` of Redis Sentinels watching one primary with
   * replicas; the primary is asked of them (and asked again after every failover). Set, it
   * replaces REDIS_URL's server; REDIS_URL's user, password, db index and `rediss://` still apply
   * to the primary. Not together with REDIS_CLUSTER_NODES.
   */
  REDIS_SENTINELS: hostPortList,
  /** REDIS_SENTINEL_NAME: the master group name the sentinels monitor (`sentinel monitor <name> ...`). */
  REDIS_SENTINEL_NAME: z.string().optional(),
  /** REDIS_SENTINEL_PASSWORD: the sentinels' own password (their `requirepass`), when they have one. */
  REDIS_SENTINEL_PASSWORD: z.string().optional(),
  /**
   * REDIS_KEY_PREFIX: prepended to every Redis key, so deployments can share one Redis. No `{` or
   * `}`: a campaign's keys share the hash tag `{campaignId}`, which braces in the prefix would replace.
   */
  REDIS_KEY_PREFIX: z
    .string()
    .regex(
      /^[^{}]*$/,
      "must not contain { or }: a campaign's keys are kept in one Redis Cluster slot by the hash tag {campaignId}, and braces in the prefix would become the tag instead (every campaign on one slot, or keys of one campaign on several)",
    )
    .default('coupon:'),
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
  /** HTTP_HEADERS_TIMEOUT_MS: a connection's first bytes, then each request's headers, must arrive within this, or it is dropped (HTTP/1.1: 408). */
  HTTP_HEADERS_TIMEOUT_MS: positiveInt.default(10_000),
  /** HTTP_REQUEST_TIMEOUT_MS: a whole request, headers and body, must arrive within this (HTTP/1.1: 408, HTTP/2: stream reset); never limits the response. */
  HTTP_REQUEST_TIMEOUT_MS: positiveInt.default(30_000),
  /** HTTP_IDLE_TIMEOUT_MS: a connection with no request in flight (HTTP/2: no open stream) is closed after this. */
  HTTP_IDLE_TIMEOUT_MS: positiveInt.default(60_000),
  /** MAX_CONNECTIONS: open connections per process; beyond it new ones are closed at once (logged at most every 10 s). */
  MAX_CONNECTIONS: positiveInt.default(10_000),
  /** ISSUE_RATE_LIMIT_PER_USER: IssueCoupon calls per second per user id and campaign, counted by the claim script in Redis (shared by every instance); 0 is off. */
  ISSUE_RATE_LIMIT_PER_USER: z.coerce.number().int().min(0).default(20),
  /** ISSUE_RATE_LIMIT_PER_IP: IssueCoupon calls per second per client address; 0 (default) is off. */
  ISSUE_RATE_LIMIT_PER_IP: z.coerce.number().int().min(0).default(0),
  /**
   * TRUST_PROXY: which proxies may tell the client address in X-Forwarded-For: `false` (none),
   * a number of hops (the nearest proxies), or a comma list of addresses, CIDRs and the names
   * loopback, linklocal, uniquelocal (proxy-addr's semantics).
   */
  TRUST_PROXY: z
    .string()
    .default('false')
    .transform((value, context): TrustedProxies => {
      const setting = value.trim();
      if (setting === 'false' || setting === '0') return false;
      if (/^\d+$/.test(setting)) return { hops: Number(setting) };
      if (setting === 'true') {
        context.addIssue({
          code: 'custom',
          message:
            'true would believe the hop a client writes itself; give the number of proxies in front of the service (e.g. 1) or their addresses',
        });
        return z.NEVER;
      }
      const addresses = setting.split(',').map((entry) => entry.trim());
      try {
        compileTrustedProxies({ addresses });
      } catch (error) {
        context.addIssue({
          code: 'custom',
          message: `${(error as Error).message}; expected addresses, CIDRs or loopback, linklocal, uniquelocal`,
        });
        return z.NEVER;
      }
      return { addresses };
    }),
  /** ADMIN_TOKEN: when set, CreateCampaign requires `authorization: Bearer <token>`. */
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /** CAMPAIGN_CODE_READS_MAX: GetCampaign calls returning codes that may read the database at once per process; more are RESOURCE_EXHAUSTED. */
  CAMPAIGN_CODE_READS_MAX: positiveInt.default(4),
  /** USER_JWT_SECRET: with it, IssueCoupon requires a user JWT signed HS256 with this secret; the user is its `sub`. */
  USER_JWT_SECRET: z.string().min(32, 'must be at least 32 characters (256 bits for HS256)').optional(),
  /** USER_JWT_PUBLIC_KEY: instead, a PEM public key (RSA: RS256, P-256: ES256); "\n" may stand for newlines. */
  USER_JWT_PUBLIC_KEY: z
    .string()
    .optional()
    .transform((value, context) => {
      if (value === undefined) return undefined;
      const pem = value.replaceAll('\\n', '\n');
      try {
        algorithmOfPublicKey(pem);
      } catch (error) {
        context.addIssue({
          code: 'custom',
          message: `not a usable PEM public key: ${(error as Error).message}`,
        });
        return z.NEVER;
      }
      return pem;
    }),
  /** USER_JWT_JWKS_URL: instead, keys fetched (and cached) from this JWKS URL, RS256 or ES256. */
  USER_JWT_JWKS_URL: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
  /** USER_JWT_ISSUER: when set, a user token's `iss` must equal it. */
  USER_JWT_ISSUER: z.string().optional(),
  /** USER_JWT_AUDIENCE: when set, a user token's `aud` must contain it. */
  USER_JWT_AUDIENCE: z.string().optional(),
  // Campaign operations (issue 13).
  /** WATCH_LIFETIME_MS: a WatchCampaign stream ends after this long (the client reconnects), so none holds a connection forever. */
  WATCH_LIFETIME_MS: positiveInt
    .min(1_000)
    .max(24 * 60 * 60 * 1000)
    .default(5 * 60_000),
  /** WATCH_MESSAGES_PER_SECOND: WatchCampaign messages a second per process at most, over all streams (each stream still at most 10 a second). */
  WATCH_MESSAGES_PER_SECOND: positiveInt.default(2_000),
  /** LOG_LEVEL: pino level (fatal, error, warn, info, debug, trace, silent). */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** BUILD_COMMIT: the commit the code was built from, for coupon_build_info (an image has no .git); absent: the checkout's HEAD. */
  BUILD_COMMIT: z
    .string()
    .regex(/^[\w.+-]{1,64}$/, 'must be a commit id or version tag (letters, digits, . _ + -)')
    .optional(),
  /** OTEL_EXPORTER_OTLP_ENDPOINT: the OTLP/HTTP collector (traces go to <it>/v1/traces); set, tracing is on. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
  /** OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the traces URL as is, instead of the endpoint's /v1/traces. */
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
    .optional(),
  /** OTEL_SDK_DISABLED: true turns tracing off even with an endpoint. */
  OTEL_SDK_DISABLED: z.enum(['true', 'false'], 'must be true or false').default('false'),
  /** OTEL_SERVICE_NAME: service.name of every span. */
  OTEL_SERVICE_NAME: z.string().min(1).default('coupon-service'),
  /** OTEL_TRACES_SAMPLER: which calls are traced (the OpenTelemetry names). */
  OTEL_TRACES_SAMPLER: z.enum(TRACE_SAMPLERS).default('parentbased_always_on'),
  /** OTEL_TRACES_SAMPLER_ARG: the ratio of the traceidratio samplers, 0 to 1. */
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).default(1),
});

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly databaseUrl: string;
  readonly redisUrl: string;
  /** Seeds of a Redis Cluster; empty: the single server at `redisUrl` (or the sentinels' primary). */
  readonly redisClusterNodes: readonly RedisNode[];
  /** Set: the primary the sentinels name, instead of the server at `redisUrl`. */
  readonly redisSentinel: RedisSentinelSettings | undefined;
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
  readonly httpHeadersTimeoutMs: number;
  readonly httpRequestTimeoutMs: number;
  readonly httpIdleTimeoutMs: number;
  readonly maxConnections: number;
  readonly logLevel: string;
  readonly adminToken: string | undefined;
  readonly issueRateLimitPerUser: number;
  readonly issueRateLimitPerIp: number;
  readonly trustProxy: TrustedProxies;
  readonly campaignCodeReadsMax: number;
  readonly watchLifetimeMs: number;
  readonly watchMessagesPerSecond: number;
  /** How IssueCoupon callers prove who the user is; undefined: they do not (a gateway does). */
  readonly userTokens: UserTokenOptions | undefined;
  readonly buildCommit: string | undefined;
  /** Where spans go and which calls are traced; undefined: tracing is off (the default). */
  readonly tracing: TracingSettings | undefined;
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
  const keys = [
    c.USER_JWT_SECRET && { kind: 'secret' as const, secret: c.USER_JWT_SECRET },
    c.USER_JWT_PUBLIC_KEY && { kind: 'public-key' as const, pem: c.USER_JWT_PUBLIC_KEY },
    c.USER_JWT_JWKS_URL && { kind: 'jwks' as const, url: c.USER_JWT_JWKS_URL },
  ].filter((key) => !!key);
  if (keys.length > 1) {
    throw new ConfigError(
      'invalid configuration: USER_JWT_SECRET: set one of USER_JWT_SECRET, USER_JWT_PUBLIC_KEY and USER_JWT_JWKS_URL, not several',
    );
  }
  if (keys.length === 0 && (c.USER_JWT_ISSUER || c.USER_JWT_AUDIENCE)) {
    throw new ConfigError(
      'invalid configuration: USER_JWT_ISSUER: an issuer or audience needs a key to verify tokens with (USER_JWT_SECRET, USER_JWT_PUBLIC_KEY or USER_JWT_JWKS_URL)',
    );
  }
  if (c.USER_JWT_SECRET && c.USER_JWT_SECRET === c.ADMIN_TOKEN) {
    // Anyone holding a user token's key could then act as an admin, and the reverse.
    throw new ConfigError('invalid configuration: USER_JWT_SECRET: must differ from ADMIN_TOKEN');
  }
  const key = keys[0];
  const redisDb = redisDbIndex(c.REDIS_URL);
  if (c.REDIS_CLUSTER_NODES.length > 0 && Number(redisDb) !== 0) {
    // A cluster has db 0 only and ioredis goes on in it after "SELECT is not allowed": two
    // deployments told apart by their db would share one keyspace.
    throw new ConfigError(
      `invalid configuration: REDIS_URL: a Redis Cluster has only db 0, got db ${redisDb} with REDIS_CLUSTER_NODES set; drop the db index and give each deployment its own REDIS_KEY_PREFIX`,
    );
  }
  if (c.REDIS_SENTINELS.length > 0 && c.REDIS_CLUSTER_NODES.length > 0) {
    throw new ConfigError(
      'invalid configuration: REDIS_SENTINELS: set REDIS_SENTINELS (one primary with replicas, found through sentinels) or REDIS_CLUSTER_NODES (a Redis Cluster), not both',
    );
  }
  if (c.REDIS_SENTINELS.length > 0 && !c.REDIS_SENTINEL_NAME) {
    throw new ConfigError(
      'invalid configuration: REDIS_SENTINEL_NAME: required with REDIS_SENTINELS: the master group name the sentinels monitor (their `sentinel monitor <name> ...` line)',
    );
  }
  for (const [variable, value] of [
    ['REDIS_SENTINEL_NAME', c.REDIS_SENTINEL_NAME],
    ['REDIS_SENTINEL_PASSWORD', c.REDIS_SENTINEL_PASSWORD],
  ] as const) {
    if (value !== undefined && c.REDIS_SENTINELS.length === 0) {
      // Ignored, it would leave the service on REDIS_URL's server while the operator meant sentinels.
      throw new ConfigError(
        `invalid configuration: ${variable}: set without REDIS_SENTINELS; give the sentinels' addresses too, or drop it`,
      );
    }
  }
  if (c.HTTP_HEADERS_TIMEOUT_MS > c.HTTP_REQUEST_TIMEOUT_MS) {
    // The headers are part of the request; Node refuses such a server too.
    throw new ConfigError(
      `invalid configuration: HTTP_HEADERS_TIMEOUT_MS: must not be more than HTTP_REQUEST_TIMEOUT_MS (${c.HTTP_REQUEST_TIMEOUT_MS}), got ${c.HTTP_HEADERS_TIMEOUT_MS}`,
    );
  }
  return {
    port: c.PORT,
    host: c.HOST,
    databaseUrl: c.DATABASE_URL,
    redisUrl: c.REDIS_URL,
    redisClusterNodes: c.REDIS_CLUSTER_NODES,
    redisSentinel:
      c.REDIS_SENTINELS.length > 0 && c.REDIS_SENTINEL_NAME
        ? { sentinels: c.REDIS_SENTINELS, name: c.REDIS_SENTINEL_NAME, password: c.REDIS_SENTINEL_PASSWORD }
        : undefined,
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
    httpHeadersTimeoutMs: c.HTTP_HEADERS_TIMEOUT_MS,
    httpRequestTimeoutMs: c.HTTP_REQUEST_TIMEOUT_MS,
    httpIdleTimeoutMs: c.HTTP_IDLE_TIMEOUT_MS,
    maxConnections: c.MAX_CONNECTIONS,
    logLevel: c.LOG_LEVEL,
    adminToken: c.ADMIN_TOKEN,
    issueRateLimitPerUser: c.ISSUE_RATE_LIMIT_PER_USER,
    issueRateLimitPerIp: c.ISSUE_RATE_LIMIT_PER_IP,
    trustProxy: c.TRUST_PROXY,
    campaignCodeReadsMax: c.CAMPAIGN_CODE_READS_MAX,
    watchLifetimeMs: c.WATCH_LIFETIME_MS,
    watchMessagesPerSecond: c.WATCH_MESSAGES_PER_SECOND,
    userTokens: key
      ? {
          key,
          ...(c.USER_JWT_ISSUER ? { issuer: c.USER_JWT_ISSUER } : {}),
          ...(c.USER_JWT_AUDIENCE ? { audience: c.USER_JWT_AUDIENCE } : {}),
        }
      : undefined,
    buildCommit: c.BUILD_COMMIT,
    tracing: tracingSettings(c),
  };
}

/** On only with a collector to send to, as the OpenTelemetry SDKs read these variables. */
function tracingSettings(c: z.infer<typeof schema>): TracingSettings | undefined {
  if (c.OTEL_SDK_DISABLED === 'true') return undefined;
  const tracesUrl =
    c.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
    (c.OTEL_EXPORTER_OTLP_ENDPOINT && `${c.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, '')}/v1/traces`);
  if (!tracesUrl) return undefined;
  return {
    tracesUrl,
    serviceName: c.OTEL_SERVICE_NAME,
    sampler: c.OTEL_TRACES_SAMPLER,
    samplerRatio: c.OTEL_TRACES_SAMPLER_ARG,
  };
}

/** The db index a Redis URL selects (its path, else a `db` query parameter, as ioredis reads it). */
export function redisDbIndex(url: string): string {
  const parsed = new URL(url);
  return parsed.pathname.slice(1) || parsed.searchParams.get('db') || '0';
}
