import { randomUUID } from 'node:crypto';
import { ConfigError } from '../config.ts';
import type { Database } from './db/orm.ts';
import type { RedisClient } from './redis/client.ts';

/** The Redis keyspace (db and key prefix) holds another deployment's campaigns. */
export class KeyspaceTakenError extends ConfigError {}

/** This deployment's id: made once, by whichever instance starts first, and kept in its database. */
export async function deploymentId(db: Database): Promise<string> {
  const em = db.em.fork();
  await em.execute('insert ignore into deployment (singleton, id, created_at) values (1, ?, ?)', [
    randomUUID(),
    new Date(),
  ]);
  const [row] = await em.execute<{ id: string }[]>('select id from deployment where singleton = 1');
  if (!row) throw new Error('the deployment row is missing right after it was written');
  return row.id;
}

/**
 * Claims the Redis keyspace for this deployment: a marker under the key prefix names the database
 * that owns it, set if absent. Two deployments on one Redis db with one prefix would otherwise
 * read and overwrite each other's gates silently (campaign ids do not collide, but the channels,
 * rate-limit keys and everything under the prefix are shared); the second one to start stops.
 */
export async function claimKeyspace(options: {
  readonly redis: RedisClient;
  readonly keyPrefix: string;
  readonly deploymentId: string;
  /** Where the keyspace is, for the message (no credentials). */
  readonly where: string;
}): Promise<void> {
  const key = `${options.keyPrefix}deployment`;
  await options.redis.set(key, options.deploymentId, 'NX');
  const owner = await options.redis.get(key);
  if (owner !== null && owner !== options.deploymentId) {
    throw new KeyspaceTakenError(
      `invalid configuration: REDIS_KEY_PREFIX: "${options.keyPrefix}" on ${options.where} belongs to another deployment (database ${owner}, this one is ${options.deploymentId}); give each deployment its own REDIS_KEY_PREFIX or Redis database`,
    );
  }
}
