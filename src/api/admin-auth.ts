import { createHash, timingSafeEqual } from 'node:crypto';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';

/** Methods that change what the service offers; the rest stay open to every client. */
const ADMIN_METHODS = new Set(['CreateCampaign']);

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/**
 * With ADMIN_TOKEN set, CreateCampaign requires `authorization: Bearer <token>`. The tokens are
 * compared as SHA-256 digests in constant time, so neither their content nor their length leaks
 * through timing.
 */
export function adminAuthInterceptor(adminToken: string): Interceptor {
  const expected = digest(adminToken);
  return (next) => async (request) => {
    if (ADMIN_METHODS.has(request.method.name)) {
      const header = request.header.get('authorization');
      if (!header) {
        throw new ConnectError(
          `${request.method.name} needs an admin token: send "authorization: Bearer <ADMIN_TOKEN>"`,
          Code.Unauthenticated,
        );
      }
      const presented = /^Bearer\s+(.+)$/i.exec(header)?.[1] ?? '';
      if (!timingSafeEqual(digest(presented), expected)) {
        throw new ConnectError(`${request.method.name}: the admin token is not valid`, Code.Unauthenticated);
      }
    }
    return next(request);
  };
}
