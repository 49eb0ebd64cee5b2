import { createHash, timingSafeEqual } from 'node:crypto';
import { Code, ConnectError, createContextKey, type Interceptor } from '@connectrpc/connect';
import { bearerCredential } from './bearer.ts';

/** Methods that change what the service offers; the rest stay open to every client. */
const ADMIN_METHODS = new Set(['CreateCampaign']);

/**
 * Whether the caller may see what only admins see (coupon codes in GetCampaign). True when no
 * ADMIN_TOKEN is configured (a developer machine), else only for a caller that presented it.
 */
export const callerIsAdminKey = createContextKey<boolean>(true, { description: 'caller is an admin' });

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/**
 * With ADMIN_TOKEN set, CreateCampaign requires `authorization: Bearer <token>`, and every other
 * call is marked admin or not (`callerIsAdminKey`) by the same check. The tokens are
 * compared as SHA-256 digests in constant time, so neither their content nor their length leaks
 * through timing.
 */
export function adminAuthInterceptor(adminToken: string): Interceptor {
  const expected = digest(adminToken);
  const presentsToken = (header: string | null) =>
    header !== null && timingSafeEqual(digest(bearerCredential(header) ?? ''), expected);
  return (next) => async (request) => {
    if (!ADMIN_METHODS.has(request.method.name)) {
      // Open to everyone; what only admins may see is decided by the handler from this mark.
      request.contextValues.set(callerIsAdminKey, presentsToken(request.header.get('authorization')));
    } else {
      const header = request.header.get('authorization');
      if (!header) {
        throw new ConnectError(
          `${request.method.name} needs an admin token: send "authorization: Bearer <ADMIN_TOKEN>"`,
          Code.Unauthenticated,
        );
      }
      if (!presentsToken(header)) {
        throw new ConnectError(`${request.method.name}: the admin token is not valid`, Code.Unauthenticated);
      }
    }
    return next(request);
  };
}
