import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
import type { DependencyBreaker } from '../dependency-breaker.ts';
import type { RedisClient } from './client.ts';

/**
 * Picks the breaker for a command on one key. On a single Redis server that is always `general`.
 * On a cluster it is the breaker of the master that owns the key's slot, so a shard that fails
 * opens only its own circuit and campaigns on healthy shards keep issuing. Breakers are made
 * lazily, one per master address (`redis:<host:port>`), so their number stays bounded by the
 * masters the cluster has had. A slot ioredis has not mapped yet (cluster still connecting) falls
 * back to `general`.
 */
export class ShardBreakers {
  private readonly redis: RedisClient;
  private readonly general: DependencyBreaker;
  private readonly create: (label: string) => DependencyBreaker;
  private readonly byMaster = new Map<string, DependencyBreaker>();

  constructor(redis: RedisClient, general: DependencyBreaker, create: (label: string) => DependencyBreaker) {
    this.redis = redis;
    this.general = general;
    this.create = create;
  }

  /** The breaker guarding commands on `key`. */
  forKey(key: string): DependencyBreaker {
    if (!(this.redis instanceof Cluster)) return this.general;
    // `slots[slot]` lists the nodes serving the slot, master first, as `host:port`.
    const master = this.redis.slots[calculateSlot(key)]?.[0];
    if (master === undefined) return this.general;
    let breaker = this.byMaster.get(master);
    if (breaker === undefined) {
      breaker = this.create(`redis:${master}`);
      this.byMaster.set(master, breaker);
    }
    return breaker;
  }

  /** The per-master breakers made so far. */
  all(): DependencyBreaker[] {
    return [...this.byMaster.values()];
  }

  shutdown(): void {
    for (const breaker of this.byMaster.values()) breaker.shutdown();
  }
}
