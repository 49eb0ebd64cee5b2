import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { quoted, RateLimitedError } from '../domain/errors.ts';
import type { RedisClient } from '../infrastructure/redis/client.ts';
import { clientAddressKey } from './client-address.ts';

export interface IpRateLimitOptions {
  readonly redis: RedisClient;
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
        const client = request.contextValues.get(clientAddressKey)();
        if ('invalid' in client) {
          // A trusted proxy writes addresses; anything else means the trust setting or a proxy is wrong.
          throw new ConnectError(
            `X-Forwarded-For names ${quoted(client.invalid)} where a trusted proxy would name an IP address`,
            Code.InvalidArgument,
          );
        }
        await perIp.consume(client.address);
      } catch (error) {
        if (!(error instanceof RateLimiterRes)) throw error;
        throw new RateLimitedError('ip', options.perIp, error.msBeforeNext);
      }
    }
    return next(request);
  };
}
