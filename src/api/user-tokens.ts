import { createPublicKey, type webcrypto } from 'node:crypto';
import { createContextKey, type Interceptor } from '@connectrpc/connect';
import { createRemoteJWKSet, type errors, type JWTVerifyGetKey, jwtVerify } from 'jose';
import { DependencyUnavailableError } from '../application/ports.ts';
import { validateUserId } from '../domain/campaign.ts';
import { DomainError, PermissionDeniedError, quoted, UnauthenticatedError } from '../domain/errors.ts';
import type { IssueCouponRequest } from '../gen/coupon/v1/coupon_pb.js';

/** How IssueCoupon callers prove who the user is; see the USER_JWT_* settings. */
export type UserTokenKey =
  | { readonly kind: 'secret'; readonly secret: string }
  | { readonly kind: 'public-key'; readonly pem: string }
  | { readonly kind: 'jwks'; readonly url: string };

export interface UserTokenOptions {
  readonly key: UserTokenKey;
  readonly issuer?: string;
  readonly audience?: string;
}

/** Verified tokens kept so a user's repeated calls verify once; bounded, and never past a token's exp. */
const VERIFIED_MAX = 50_000;
const VERIFIED_FOR_MS = 5 * 60_000;

/**
 * The algorithm a PEM public key signs with: RS256 for RSA, ES256 for EC on P-256. Throws a line
 * saying what is wrong, for the configuration to report.
 */
export function algorithmOfPublicKey(pem: string): 'RS256' | 'ES256' {
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  throw new Error(
    `an RSA or P-256 EC public key is needed, got ${key.asymmetricKeyType ?? 'an unknown key'}`,
  );
}

/**
 * Verifies user JWTs with jose (signature, exp, nbf, and iss/aud when configured) and says which
 * user a call acts for: the token's `sub`. Keys are imported once (importing per call would cost
 * more than verifying).
 */
export class UserTokens {
  private readonly key: webcrypto.CryptoKey | JWTVerifyGetKey;
  private readonly options: { algorithms: string[]; issuer?: string; audience?: string };
  private readonly verified = new Map<string, { readonly sub: string; readonly expiresAtMs: number }>();

  private constructor(
    key: webcrypto.CryptoKey | JWTVerifyGetKey,
    algorithms: string[],
    options: UserTokenOptions,
  ) {
    this.key = key;
    this.options = {
      algorithms,
      ...(options.issuer ? { issuer: options.issuer } : {}),
      ...(options.audience ? { audience: options.audience } : {}),
    };
  }

  static async create(options: UserTokenOptions): Promise<UserTokens> {
    const { key } = options;
    switch (key.kind) {
      case 'secret': {
        const raw = new TextEncoder().encode(key.secret);
        const cryptoKey = await crypto.subtle.importKey(
          'raw',
          raw,
          { name: 'HMAC', hash: 'SHA-256' },
          false,
          ['verify'],
        );
        return new UserTokens(cryptoKey, ['HS256'], options);
      }
      case 'public-key': {
        const algorithm = algorithmOfPublicKey(key.pem);
        const cryptoKey = createPublicKey(key.pem).toCryptoKey(
          algorithm === 'RS256'
            ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }
            : { name: 'ECDSA', namedCurve: 'P-256' },
          false,
          ['verify'],
        );
        return new UserTokens(cryptoKey, [algorithm], options);
      }
      case 'jwks':
        return new UserTokens(createRemoteJWKSet(new URL(key.url)), ['RS256', 'ES256'], options);
    }
  }

  /**
   * The user a call acts for: the `sub` of the bearer token in `authorization`. A requested
   * user id must be empty (meaning the token's user) or that same user.
   */
  async userOf(authorization: string | null | undefined, requestedUserId: string): Promise<string> {
    const token = authorization ? /^Bearer\s+(\S+)$/i.exec(authorization)?.[1] : undefined;
    if (!token) {
      throw new UnauthenticatedError('IssueCoupon needs a user token: send "authorization: Bearer <jwt>"');
    }
    const sub = await this.subjectOf(token);
    if (requestedUserId !== '' && requestedUserId !== sub) {
      throw new PermissionDeniedError(
        `the user token is for ${quoted(sub)}, not for user_id ${quoted(requestedUserId)}: leave user_id empty or send the token's own`,
      );
    }
    return sub;
  }

  private async subjectOf(token: string): Promise<string> {
    const now = Date.now();
    const known = this.verified.get(token);
    if (known && known.expiresAtMs > now) return known.sub;
    let payload: { sub?: string; exp?: number };
    try {
      // jose's overloads differ only in the key's type; one call serves all three.
      ({ payload } = await jwtVerify(token, this.key as webcrypto.CryptoKey, this.options));
    } catch (error) {
      throw tokenRefusal(error, typeof this.key === 'function');
    }
    if (typeof payload.sub !== 'string')
      throw new UnauthenticatedError('the user token has no sub (the user id)');
    try {
      validateUserId(payload.sub);
    } catch (error) {
      if (error instanceof DomainError) {
        throw new UnauthenticatedError(`the user token's sub is not a usable user id: ${error.message}`);
      }
      throw error;
    }
    if (this.verified.size >= VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value as string);
    // Remembered until its exp, but never more than a few minutes: a key rotated away (JWKS)
    // stops being believed soon after, as it would without this memory.
    this.verified.set(token, {
      sub: payload.sub,
      expiresAtMs: Math.min(
        payload.exp ? payload.exp * 1000 : Number.POSITIVE_INFINITY,
        now + VERIFIED_FOR_MS,
      ),
    });
    return payload.sub;
  }
}

/** What a client is told of a token jose refused; never the token itself. */
function tokenRefusal(error: unknown, fetchesKeys: boolean): Error {
  const code = (error as Partial<errors.JOSEError> | undefined)?.code;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return new UnauthenticatedError('the user token has expired; get a new one');
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const claim = (error as errors.JWTClaimValidationFailed).claim;
      return new UnauthenticatedError(
        `the user token is not valid: its "${claim}" claim is not accepted here`,
      );
    }
    case 'ERR_JWKS_TIMEOUT':
      return keysUnavailable(error);
    default:
      // jose names every fault of a token; anything else while keys are fetched (a refused
      // connection, a bad answer) is the key server's, not the user's: no reason to log in again.
      if (fetchesKeys && (code === undefined || code === 'ERR_JOSE_GENERIC')) return keysUnavailable(error);
      return new UnauthenticatedError('the user token is not valid (signature, algorithm or format)');
  }
}

function keysUnavailable(cause: unknown): DependencyUnavailableError {
  return new DependencyUnavailableError(
    'user-keys',
    'the keys to verify user tokens (USER_JWT_JWKS_URL) could not be fetched; retry shortly',
    { cause },
  );
}

/** The user an earlier step (the early refusal) already verified for this call, if any. */
export const verifiedUserKey = createContextKey<string | undefined>(undefined, {
  description: 'verified user',
});

/**
 * With user tokens configured, IssueCoupon acts for the token's user: the request's user_id is
 * replaced by the token's `sub` (it may be empty, or must equal it).
 */
export function userAuthInterceptor(tokens: UserTokens): Interceptor {
  return (next) => async (request) => {
    if (request.method.name === 'IssueCoupon' && !request.stream) {
      const message = request.message as IssueCouponRequest;
      message.userId =
        request.contextValues.get(verifiedUserKey) ??
        (await tokens.userOf(request.header.get('authorization'), message.userId));
    }
    return next(request);
  };
}
