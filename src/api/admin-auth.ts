import { createHash, timingSafeEqual } from 'node:crypto';
import { Code, ConnectError, createContextKey, type Interceptor } from '@connectrpc/connect';
import { bearerCredential } from './bearer.ts';

/**
 * Methods that change what the service offers, or show coupon codes (bearer secrets) or the audit
 * trail; the rest stay open to every client.
 */
const ADMIN_METHODS = new Set([
  'CreateCampaign',
  'CloseCampaign',
  'UpdateCampaignAmount',
  'ListCoupons',
  'ListCampaignEvents',
  'RedeemCoupon',
  'CancelRedemption',
  'IssueCoupons',
]);

/**
 * Whether the caller may see what only admins see (coupon codes in GetCampaign). True when no
 * ADMIN_TOKEN is configured (a developer machine), else only for a caller that presented it.
 */
export const callerIsAdminKey = createContextKey<boolean>(true, { description: 'caller is an admin' });

/**
 * Who made an admin change, as the audit trail records it: a fingerprint of the admin token
 * ("admin-" and 12 hex digits of a SHA-256), never the token. Without ADMIN_TOKEN there is no
 * credential to name: "anonymous".
 */
export const adminActorKey = createContextKey<string>('anonymous', { description: 'admin actor' });

/** The fingerprint an admin token is recorded by; a rotated token shows as another actor. */
export function adminFingerprint(adminToken: string): string {
  return `admin-${createHash('sha256').update(`coupon-service admin actor\n${adminToken}`).digest('hex').slice(0, 12)}`;
}

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
  const actor = adminFingerprint(adminToken);
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
      request.contextValues.set(adminActorKey, actor);
    }
    return next(request);
  };
}
