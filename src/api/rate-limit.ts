import { createContextKey, type Interceptor } from '@connectrpc/connect';
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { RateLimitedError } from '../domain/errors.ts';

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

export interface IpRateLimitOptions {
  readonly redis: Redis;
  readonly keyPrefix: string;
  /** IssueCoupon requests per second per client address; 0 turns the limit off. */
  readonly perIp: number;
}

/**
 * The per-address limit on IssueCoupon, shared by every instance through Redis
 * (rate-limiter-flexible). Refusals are RateLimitedError, mapped by the observability interceptor. The per-user limit is not here: the claim script counts it in the same
 * Redis call that judges the claim, so it costs no round trip of its own.
 */
export function ipRateLimitInterceptor(options: IpRateLimitOptions): Interceptor {
  if (options.perIp <= 0) return (next) => next;
  const perIp = new RateLimiterRedis({
    storeClient: options.redis,
    keyPrefix: `${options.keyPrefix}rate:ip`,
    points: options.perIp,
    duration: 1,
    // Once an address is over its limit, refuse it from memory until the second is up: a flood
    // from one address costs no Redis round trips.
    inMemoryBlockOnConsumed: options.perIp,
    // Redis away: limit per process rather than not at all (issuing fails anyway without Redis).
    insuranceLimiter: new RateLimiterMemory({ points: options.perIp, duration: 1 }),
  });
  return (next) => async (request) => {
    if (request.method.name === 'IssueCoupon') {
      try {
        await perIp.consume(request.contextValues.get(clientAddressKey));
      } catch (error) {
        if (!(error instanceof RateLimiterRes)) throw error;
        throw new RateLimitedError('ip', options.perIp, error.msBeforeNext);
      }
    }
    return next(request);
  };
}
