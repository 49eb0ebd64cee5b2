import { create } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createContextKey, type Interceptor } from '@connectrpc/connect';
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { RateLimitedSchema } from '../gen/coupon/v1/errors_pb.js';

/** The caller's address, as the HTTP layer saw it (see `clientAddress`). */
export const clientAddressKey = createContextKey<string>('', { description: 'client address' });

/** The client address of a request: the socket's, or the first X-Forwarded-For hop behind a trusted proxy. */
export function clientAddress(
  request: { headers: Record<string, string | string[] | undefined>; socket: { remoteAddress?: string } },
  trustProxy: boolean,
): string {
  if (trustProxy) {
    const forwarded = request.headers['x-forwarded-for'];
    const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim();
    if (first) return first;
  }
  return request.socket.remoteAddress ?? 'unknown';
}

export interface RateLimitOptions {
  readonly redis: Redis;
  readonly keyPrefix: string;
  /** IssueCoupon requests per second per user id. */
  readonly perUser: number;
  /** IssueCoupon requests per second per client address; 0 turns it off. */
  readonly perIp: number;
}

function limiter(options: RateLimitOptions, scope: string, points: number): RateLimiterRedis {
  return new RateLimiterRedis({
    storeClient: options.redis,
    keyPrefix: `${options.keyPrefix}rate:${scope}`,
    points,
    duration: 1,
    // Once a key is over its limit, refuse it from memory until the second is up: a flood from
    // one user costs no Redis round trips.
    inMemoryBlockOnConsumed: points,
    // Redis away: limit per process rather than not at all (issuing fails anyway without Redis).
    insuranceLimiter: new RateLimiterMemory({ points, duration: 1 }),
  });
}

/**
 * Rate limits on IssueCoupon, shared by every instance through Redis (rate-limiter-flexible).
 * A limited call is RESOURCE_EXHAUSTED with a message starting "rate limited" and a
 * coupon.v1.RateLimited detail saying when to retry, so it is never mistaken for "sold out".
 */
export function rateLimitInterceptor(options: RateLimitOptions): Interceptor {
  const perUser = options.perUser > 0 ? limiter(options, 'user', options.perUser) : undefined;
  const perIp = options.perIp > 0 ? limiter(options, 'ip', options.perIp) : undefined;
  const consume = async (rateLimiter: RateLimiterRedis, scope: string, limit: number, key: string) => {
    try {
      await rateLimiter.consume(key);
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error;
      const retryMs = Math.max(1, error.msBeforeNext);
      const limited = new ConnectError(
        `rate limited: more than ${limit} IssueCoupon calls per second for this ${scope}; retry in ${retryMs} ms`,
        Code.ResourceExhausted,
      );
      limited.details.push({
        desc: RateLimitedSchema,
        value: create(RateLimitedSchema, {
          scope,
          limitPerSecond: BigInt(limit),
          retryAfter: create(DurationSchema, {
            seconds: BigInt(Math.floor(retryMs / 1000)),
            nanos: (retryMs % 1000) * 1_000_000,
          }),
        }),
      });
      throw limited;
    }
  };
  return (next) => async (request) => {
    if (request.method.name === 'IssueCoupon') {
      if (perIp) await consume(perIp, 'ip', options.perIp, request.contextValues.get(clientAddressKey));
      const userId = (request.message as { userId?: unknown }).userId;
      if (perUser && typeof userId === 'string' && userId.length > 0) {
        await consume(perUser, 'user', options.perUser, userId);
      }
    }
    return next(request);
  };
}
