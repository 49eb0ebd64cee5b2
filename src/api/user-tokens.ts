import { createPublicKey, type webcrypto } from 'node:crypto';
import { createContextKey, type Interceptor } from '@connectrpc/connect';
import { createDecoder, createVerifier, TokenError } from 'fast-jwt';
import { createRemoteJWKSet, type errors, type JWTVerifyGetKey, jwtVerify } from 'jose';
import { DependencyUnavailableError } from '../application/ports.ts';
import { validateUserId } from '../domain/campaign.ts';
import { DomainError, PermissionDeniedError, quoted, UnauthenticatedError } from '../domain/errors.ts';
import type { IssueCouponRequest, ListUserCouponsRequest } from '../gen/coupon/v1/coupon_pb.js';
import { bearerCredential } from './bearer.ts';

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

interface VerifiedToken {
  readonly sub: string;
  readonly expiresAtMs: number;
}

/** The claims we read of a verified token. */
type VerifiedClaims = { readonly sub?: unknown; readonly exp?: unknown };

/** Checks a token's signature, algorithm, exp, nbf and (when configured) iss and aud. */
type VerifyToken = (token: string) => VerifiedClaims | Promise<VerifiedClaims>;

/** Reads a token's claims without checking anything: only for a token verified a moment ago. */
const claimsOf: (token: string) => VerifiedClaims = createDecoder();

/**
 * Verifies user JWTs and says which user a call acts for: the token's `sub`. HS256 tokens are
 * checked by fast-jwt, synchronously with node:crypto (~5 µs); jose checks them with WebCrypto,
 * an asynchronous job that cost ~34 µs of CPU per token here, a sixth of a whole IssueCoupon.
 * Public keys and JWKS stay with jose (key sets fetched, cached and rotated; the RSA/EC math
 * costs the same either way). Keys are imported once (importing per call would cost more than
 * verifying).
 */
export class UserTokens {
  private readonly verify: VerifyToken;
  private readonly fetchesKeys: boolean;
  /**
   * Whether every verified token is remembered, or (HS256) only one whose call was refused. An
   * HS256 check costs a few µs, remembering a token more in garbage collection: 50,000 tokens
   * held through the old generation made each issue with a new token ~3% dearer (0.87 -> 0.91
   * of issuing without tokens, bench). Who comes back is who was refused (not open yet, sold
   * out, rate limited); a user who got the coupon has no reason to.
   */
  private readonly remembersEveryToken: boolean;
  /**
   * Verified tokens in two generations of at most VERIFIED_MAX / 2 each: when the newer is full
   * it becomes the older and the older is dropped. (Evicting the oldest entry of one Map, with
   * `keys().next()`, walks the holes its earlier deletions left: 11 µs a call measured here at
   * 50,000 entries, against 0.3 µs.)
   */
  private verified = new Map<string, VerifiedToken>();
  private verifiedBefore = new Map<string, VerifiedToken>();

  private constructor(verify: VerifyToken, fetchesKeys: boolean, remembersEveryToken: boolean) {
    this.verify = verify;
    this.fetchesKeys = fetchesKeys;
    this.remembersEveryToken = remembersEveryToken;
  }

  static async create(options: UserTokenOptions): Promise<UserTokens> {
    const { key } = options;
    const claims = {
      ...(options.issuer ? { issuer: options.issuer } : {}),
      ...(options.audience ? { audience: options.audience } : {}),
    };
    const withJose = (joseKey: webcrypto.CryptoKey | JWTVerifyGetKey, algorithms: string[]) => {
      const joseOptions = { algorithms, ...claims };
      // jose's overloads differ only in the key's type; one call serves all three.
      return async (token: string) =>
        (await jwtVerify(token, joseKey as webcrypto.CryptoKey, joseOptions)).payload;
    };
    switch (key.kind) {
      case 'secret':
        return new UserTokens(
          createVerifier({
            key: key.secret,
            algorithms: ['HS256'],
            ...(options.issuer ? { allowedIss: options.issuer } : {}),
            ...(options.audience ? { allowedAud: options.audience } : {}),
            // Our own memory of verified tokens (below) serves both kinds of key.
            cache: false,
          }),
          false,
          false,
        );
      case 'public-key': {
        const algorithm = algorithmOfPublicKey(key.pem);
        const cryptoKey = createPublicKey(key.pem).toCryptoKey(
          algorithm === 'RS256'
            ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }
            : { name: 'ECDSA', namedCurve: 'P-256' },
          false,
          ['verify'],
        );
        return new UserTokens(withJose(cryptoKey, [algorithm]), false, true);
      }
      case 'jwks':
        return new UserTokens(withJose(createRemoteJWKSet(new URL(key.url)), ['RS256', 'ES256']), true, true);
    }
  }

  /**
   * The user a call acts for: the `sub` of the bearer token in `authorization`. A requested
   * user id must be empty (meaning the token's user) or that same user. Answers (or throws)
   * synchronously when it can, for HS256 and for tokens verified before: on the issue path a
   * promise costs about as much as the check itself.
   */
  userOf(authorization: string | null | undefined, requestedUserId: string): string | Promise<string> {
    const token = bearerCredential(authorization);
    if (!token) {
      throw new UnauthenticatedError(
        'IssueCoupon and ListUserCoupons need a user token: send "authorization: Bearer <jwt>"',
      );
    }
    const sub = this.subjectOf(token);
    return typeof sub === 'string'
      ? actingUser(sub, requestedUserId)
      : sub.then((verified) => actingUser(verified, requestedUserId));
  }

  /** How many verified tokens are remembered now. */
  get rememberedCount(): number {
    return this.verified.size + this.verifiedBefore.size;
  }

  /**
   * Tells that a call whose token `userOf` accepted was refused, so that the user's next calls,
   * likely soon, find the token verified. (Tokens that are always remembered already are.)
   */
  refused(authorization: string | null | undefined): void {
    if (this.remembersEveryToken) return;
    const token = bearerCredential(authorization);
    const now = Date.now();
    if (!token || this.known(token, now)) return;
    try {
      this.remember(token, claimsOf(token), now);
    } catch {
      // Verified a moment ago, so it decodes; should it not, it is simply not remembered (this
      // runs in request listeners, where a throw would take the process down).
    }
  }

  private known(token: string, now: number): VerifiedToken | undefined {
    const known = this.verified.get(token) ?? this.verifiedBefore.get(token);
    return known && known.expiresAtMs > now ? known : undefined;
  }

  private subjectOf(token: string): string | Promise<string> {
    const now = Date.now();
    const known = this.known(token, now);
    if (known) return known.sub;
    let claims: VerifiedClaims | Promise<VerifiedClaims>;
    try {
      claims = this.verify(token);
    } catch (error) {
      throw tokenRefusal(error, this.fetchesKeys);
    }
    return claims instanceof Promise
      ? claims.then(
          (verified) => this.remember(token, verified, now),
          (error: unknown) => {
            throw tokenRefusal(error, this.fetchesKeys);
          },
        )
      : this.remembersEveryToken
        ? this.remember(token, claims, now)
        : userOfClaims(claims);
  }

  private remember(token: string, claims: VerifiedClaims, now: number): string {
    const sub = userOfClaims(claims);
    const { exp } = claims;
    if (this.verified.size >= VERIFIED_MAX / 2) {
      this.verifiedBefore = this.verified;
      this.verified = new Map();
    }
    // Remembered until its exp, but never more than a few minutes: a key rotated away (JWKS)
    // stops being believed soon after, as it would without this memory.
    this.verified.set(token, {
      sub,
      expiresAtMs: Math.min(
        typeof exp === 'number' ? exp * 1000 : Number.POSITIVE_INFINITY,
        now + VERIFIED_FOR_MS,
      ),
    });
    return sub;
  }
}

/** A verified token's user: its `sub`, which must be a usable user id. */
function userOfClaims(claims: VerifiedClaims): string {
  const { sub } = claims;
  if (typeof sub !== 'string') throw new UnauthenticatedError('the user token has no sub (the user id)');
  try {
    validateUserId(sub);
  } catch (error) {
    if (error instanceof DomainError) {
      throw new UnauthenticatedError(`the user token's sub is not a usable user id: ${error.message}`);
    }
    throw error;
  }
  return sub;
}

function actingUser(sub: string, requestedUserId: string): string {
  if (requestedUserId !== '' && requestedUserId !== sub) {
    throw new PermissionDeniedError(
      `the user token is for ${quoted(sub)}, not for user_id ${quoted(requestedUserId)}: leave user_id empty or send the token's own`,
    );
  }
  return sub;
}

/** What a client is told of a token jose or fast-jwt refused; never the token itself. */
function tokenRefusal(error: unknown, fetchesKeys: boolean): Error {
  if (error instanceof TokenError) return fastJwtRefusal(error);
  const code = (error as Partial<errors.JOSEError> | undefined)?.code;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return expired();
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return claimNotAccepted((error as errors.JWTClaimValidationFailed).claim);
    case 'ERR_JWKS_TIMEOUT':
      return keysUnavailable(error);
    default:
      // jose names every fault of a token; anything else while keys are fetched (a refused
      // connection, a bad answer) is the key server's, not the user's: no reason to log in again.
      if (fetchesKeys && (code === undefined || code === 'ERR_JOSE_GENERIC')) return keysUnavailable(error);
      return new UnauthenticatedError('the user token is not valid (signature, algorithm or format)');
  }
}

function fastJwtRefusal(error: TokenError): Error {
  switch (error.code) {
    case TokenError.codes.expired:
      return expired();
    case TokenError.codes.inactive:
      return claimNotAccepted('nbf');
    case TokenError.codes.invalidClaimValue:
    case TokenError.codes.invalidClaimType:
    case TokenError.codes.missingRequiredClaim: {
      // fast-jwt names the claim only in its message ("The iss claim value is not allowed.").
      const claim = /\b(iss|aud|exp|nbf|iat|sub|jti)\b/.exec(error.message)?.[1];
      if (claim) return claimNotAccepted(claim);
      return new UnauthenticatedError('the user token is not valid: a claim is not accepted here');
    }
    default:
      return new UnauthenticatedError('the user token is not valid (signature, algorithm or format)');
  }
}

function expired(): UnauthenticatedError {
  return new UnauthenticatedError('the user token has expired; get a new one');
}

function claimNotAccepted(claim: string): UnauthenticatedError {
  return new UnauthenticatedError(`the user token is not valid: its "${claim}" claim is not accepted here`);
}

function keysUnavailable(cause: unknown): DependencyUnavailableError {
  return new DependencyUnavailableError(
    'user-keys',
    'the keys to verify user tokens (USER_JWT_JWKS_URL) could not be fetched; retry shortly',
    { cause },
  );
}

/** A call whose user token an earlier step (the early refusal) verified: its user, and the header it came in. */
export interface VerifiedCall {
  readonly user: string;
  readonly authorization: string | undefined;
}

/** The call's user as an earlier step (the early refusal) verified it, if any. */
export const verifiedUserKey = createContextKey<VerifiedCall | undefined>(undefined, {
  description: 'verified user',
});

/** The calls that act for one user, whose user_id the token's `sub` decides. */
const USER_METHODS = new Set(['IssueCoupon', 'ListUserCoupons']);

/**
 * With user tokens configured, IssueCoupon and ListUserCoupons act for the token's user: the
 * request's user_id is replaced by the token's `sub` (it may be empty, or must equal it), so a
 * user lists only their own coupons.
 */
export function userAuthInterceptor(tokens: UserTokens): Interceptor {
  return (next) => (request) => {
    if (!USER_METHODS.has(request.method.name) || request.stream) return next(request);
    const message = request.message as IssueCouponRequest | ListUserCouponsRequest;
    const verified = request.contextValues.get(verifiedUserKey);
    // Verified by the early refusal, which took the header out of the request.
    const authorization = verified ? verified.authorization : request.header.get('authorization');
    let user: string | Promise<string>;
    try {
      user = verified ? verified.user : tokens.userOf(authorization, message.userId);
    } catch (error) {
      return Promise.reject(error);
    }
    const callAs = (userId: string) => {
      message.userId = userId;
      return next(request).catch((error: unknown) => {
        tokens.refused(authorization);
        throw error;
      });
    };
    return typeof user === 'string' ? callAs(user) : user.then(callAs);
  };
}
