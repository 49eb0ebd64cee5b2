import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { DependencyBreaker } from '../../../src/infrastructure/dependency-breaker.ts';
import { ShardBreakers } from '../../../src/infrastructure/redis/shard-breakers.ts';

describe('ShardBreakers', () => {
  it('gives every key the one general breaker on a single Redis server, and makes none', () => {
    const redis = new Redis({ lazyConnect: true });
    const general = new DependencyBreaker('redis', { timeoutMs: 100, resetMs: 100 });
    const breakers = new ShardBreakers(redis, general, () => {
      throw new Error('no per-master breaker on a single server');
    });
    try {
      expect(breakers.forKey('coupon:campaign:{a}:remaining')).toBe(general);
      expect(breakers.forKey('coupon:campaign:{b}:remaining')).toBe(general);
      expect(breakers.all()).toEqual([]);
    } finally {
      general.shutdown();
      redis.disconnect();
    }
  });
});
