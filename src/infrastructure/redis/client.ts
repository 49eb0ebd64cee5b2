import { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisNode } from '../../config.ts';
import { SCRIPTS_WITH_KEY_COUNT } from './slot-gate.ts';

/**
 * One Redis server or a Redis Cluster. Every command the service sends works on either: each
 * script and MULTI touches the keys of one campaign (one `{campaignId}` hash tag, one slot) or one
 * key of its own, and pub/sub is classic PUBLISH, which a cluster hands to every node.
 */
export type RedisClient = Redis | Cluster;

export interface RedisConnectionOptions {
  /** REDIS_URL. With cluster nodes only its user, password and `rediss:` (TLS) are used. */
  readonly url: string;
  /** REDIS_CLUSTER_NODES, the seeds of a Redis Cluster; empty: the single server at `url`. */
  readonly clusterNodes: readonly RedisNode[];
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
  if (options.clusterNodes.length === 0) {
    const redis = new Redis(options.url, {
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 1,
      commandTimeout: timeoutMs,
      connectTimeout: timeoutMs,
      retryStrategy,
      enableAutoPipelining: true,
    });
    redis.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
    return redis;
  }
  const url = new URL(options.url);
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

/** Where the keys live, for messages: the URL without credentials, or the cluster's seeds. */
export function describeRedis(options: Pick<RedisConnectionOptions, 'url' | 'clusterNodes'>): string {
  if (options.clusterNodes.length > 0) {
    const nodes = options.clusterNodes.map(({ host, port }) =>
      host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`,
    );
    return `the Redis Cluster at ${nodes.join(',')}`;
  }
  const where = new URL(options.url);
  where.password = '';
  where.username = '';
  return where.toString();
}
