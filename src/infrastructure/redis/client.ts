import { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { type RedisNode, type RedisSentinelSettings, redisDbIndex } from '../../config.ts';
import { SCRIPTS_WITH_KEY_COUNT } from './slot-gate.ts';

/**
 * One Redis server (given by its URL, or the primary that Redis Sentinels name) or a Redis
 * Cluster. Every command the service sends works on either: each script and MULTI touches the
 * keys of one campaign (one `{campaignId}` hash tag, one slot) or one key of its own, and pub/sub
 * is classic PUBLISH, which a cluster hands to every node.
 */
export type RedisClient = Redis | Cluster;

export interface RedisConnectionOptions {
  /** REDIS_URL. With cluster nodes only its user, password and `rediss:` (TLS) are used. */
  readonly url: string;
  /** REDIS_CLUSTER_NODES, the seeds of a Redis Cluster; empty: the single server at `url`. */
  readonly clusterNodes: readonly RedisNode[];
  /**
   * REDIS_SENTINELS and co.: the single server is the primary these sentinels name, not `url`'s
   * host (whose user, password, db index and TLS still apply).
   */
  readonly sentinel?: RedisSentinelSettings | undefined;
  /** Bounds every command and every connection attempt. */
  readonly timeoutMs: number;
  readonly logger: Logger;
}

/** Reconnect soon after a loss, then once a second for as long as it takes. */
const retryStrategy = (attempt: number) => Math.min(attempt * 100, 1_000);

/**
 * The service's Redis connection. Either kind fails commands at once while disconnected instead
 * of queueing them (the caller gets UNAVAILABLE within the timeout, never a hang), never sends a
 * command again after a reconnect when its answer was lost (ioredis would by default; the claim
 * script is not idempotent: run twice, it would find its own claim pending and refuse the user
 * it had just served, so such a claim is left to the reconciler instead), bounds each
 * command and connection attempt, reconnects by itself, and batches the commands of one
 * event-loop turn into one write (auto-pipelining; on a cluster, one batch per shard).
 */
export function connectRedis(options: RedisConnectionOptions): RedisClient {
  const { logger, timeoutMs } = options;
  const single = {
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 1,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
    retryStrategy,
    enableAutoPipelining: true,
  } as const;
  const url = new URL(options.url);
  if (options.sentinel) {
    const redis = new Redis({
      ...single,
      ...sentinelOptions(options.sentinel, timeoutMs),
      ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
      ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
      db: Number(redisDbIndex(options.url)),
      ...(url.protocol === 'rediss:' ? { tls: {}, enableTLSForSentinelMode: true } : {}),
    });
    redis.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
    return redis;
  }
  if (options.clusterNodes.length === 0) {
    const redis = new Redis(options.url, single);
    redis.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
    return redis;
  }
  const cluster = new Cluster(
    options.clusterNodes.map(({ host, port }) => ({ host, port })),
    {
      enableOfflineQueue: false,
      clusterRetryStrategy: retryStrategy,
      enableAutoPipelining: true,
      // Auto-pipelining on a cluster groups a command by the slot of its first argument. For a
      // script whose key count is an argument, that is the count, not a key: its calls were
      // batched with whatever shard the number hashes to and refused ("All keys in the pipeline
      // should belong to the same slots allocation group"). Such calls are sent on their own; the
      // slot gate still makes one call per campaign per event-loop turn (TickBatcher).
      autoPipeliningIgnoredCommands: [...SCRIPTS_WITH_KEY_COUNT],
      redisOptions: {
        autoResendUnfulfilledCommands: false,
        maxRetriesPerRequest: 1,
        commandTimeout: timeoutMs,
        connectTimeout: timeoutMs,
        ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
        ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
        ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
      },
    },
  );
  cluster.on('error', (error) => logger.warn({ err: error }, 'redis cluster error'));
  cluster.on('node error', (error: unknown, node: string) =>
    logger.warn({ err: error, node }, 'redis cluster node connection error'),
  );
  return cluster;
}

/**
 * How the single connection finds the primary through the sentinels, and follows it when they
 * promote a replica. At each (re)connection ioredis asks the sentinels in turn where the primary
 * is, then checks that the server it reaches says `role:master` (a replica is left, and the next
 * sentinel asked). While the primary is gone every command fails at once (no offline queue), so
 * calls are UNAVAILABLE during a promotion, and the reconnects, at most a second apart, find the
 * new primary within about a second of its promotion.
 *
 * A planned failover (SENTINEL FAILOVER) leaves the old primary running, and taking writes, after
 * a replica is promoted: the sentinels turn it into a replica only about 10 s later (measured
 * here: promoted 1.1 s after the command, old primary a replica at 11 s), and every write it takes
 * meanwhile is lost when it resyncs. ioredis' `failoverDetector` listens to the sentinels'
 * `+switch-master` (published at 2.2 s) and reconnects at once, which leaves about a second of
 * writes to be lost (the reconciler repairs what they leave: see README, Scaling out). Its
 * sentinel connections have no error listener: a sentinel that is down prints an ioredis
 * "Unhandled error event" at each of their reconnects (ioredis' default: once a minute).
 */
function sentinelOptions(sentinel: RedisSentinelSettings, timeoutMs: number) {
  return {
    sentinels: sentinel.sentinels.map(({ host, port }) => ({ host, port })),
    name: sentinel.name,
    ...(sentinel.password ? { sentinelPassword: sentinel.password } : {}),
    // A sentinel that hangs must not hold a reconnection longer than a command may take.
    sentinelCommandTimeout: timeoutMs,
    // None of the sentinels answers: ask them all again soon, as for the primary itself.
    sentinelRetryStrategy: retryStrategy,
    failoverDetector: true,
    // Should a demoted primary keep our connection after all, its first READONLY refusal makes us
    // reconnect and ask the sentinels again. The refused command itself fails (1); it is never
    // sent again (2): nothing is resent, whatever it was.
    reconnectOnError: (error: Error) => (error.message.startsWith('READONLY') ? 1 : false),
  } as const;
}

/**
 * A connection of its own for SUBSCRIBE (a subscribed connection can do nothing else), with the
 * offline queue on so the subscription is made once it connects, and made again after every
 * reconnect. (On a cluster, `duplicate()` takes seed nodes first: an options object there would
 * be taken for the seed list and its options silently dropped.)
 */
export function subscriberFor(client: RedisClient): RedisClient {
  const subscriber =
    client instanceof Cluster
      ? // Sharded subscribers: one subscriber connection per master for SSUBSCRIBE, following
        // failovers (the sold-out memory's per-campaign channels).
        client.duplicate([], { enableOfflineQueue: true, shardedSubscribers: true })
      : client.duplicate({ enableOfflineQueue: true });
  subscriber.on('error', () => undefined);
  if (subscriber instanceof Cluster) subscriber.on('node error', () => undefined);
  return subscriber;
}

/**
 * Where the keys live, for messages: the URL without credentials, the cluster's seeds, or the
 * sentinels' primary and its db.
 */
export function describeRedis(
  options: Pick<RedisConnectionOptions, 'url' | 'clusterNodes' | 'sentinel'>,
): string {
  const addresses = (nodes: readonly RedisNode[]) =>
    nodes.map(({ host, port }) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`)).join(',');
  if (options.clusterNodes.length > 0) return `the Redis Cluster at ${addresses(options.clusterNodes)}`;
  if (options.sentinel) {
    return `db ${redisDbIndex(options.url)} of the Redis primary "${options.sentinel.name}" of the sentinels at ${addresses(options.sentinel.sentinels)}`;
  }
  const where = new URL(options.url);
  where.password = '';
  where.username = '';
  return where.toString();
}
