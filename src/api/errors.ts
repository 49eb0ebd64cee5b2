import { create } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { DependencyUnavailableError } from '../application/ports.ts';
import { DomainError, type DomainErrorKind, RateLimitedError } from '../domain/errors.ts';
import { RateLimitedSchema } from '../gen/coupon/v1/errors_pb.js';

const CODE_OF: Record<DomainErrorKind, Code> = {
  'invalid-argument': Code.InvalidArgument,
  'campaign-not-found': Code.NotFound,
  'campaign-name-taken': Code.AlreadyExists,
  'already-issued': Code.AlreadyExists,
  'campaign-not-open': Code.FailedPrecondition,
  'sold-out': Code.ResourceExhausted,
  'rate-limited': Code.ResourceExhausted,
  'too-many-reads': Code.ResourceExhausted,
  unauthenticated: Code.Unauthenticated,
  'permission-denied': Code.PermissionDenied,
  // Retry this very call later: the canonical code for "try again", carrying when in its message.
  'claim-pending': Code.Unavailable,
  'amount-below-claimed': Code.FailedPrecondition,
  'coupon-not-found': Code.NotFound,
  'coupon-unusable': Code.FailedPrecondition,
};

/** A ConnectError for an expected refusal: without a stack trace, which no one reads and costs more than the answer. */
export function refusal(message: string, code: Code): ConnectError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new ConnectError(message, code);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/**
 * RESOURCE_EXHAUSTED like "sold out", but with a message starting "rate limited" and a
 * coupon.v1.RateLimited detail saying when to retry, so a client never mistakes one for the other.
 */
function rateLimitedError(error: RateLimitedError): ConnectError {
  const retryMs = error.retryAfterMs;
  const limited = refusal(error.message, Code.ResourceExhausted);
  limited.details.push({
    desc: RateLimitedSchema,
    value: create(RateLimitedSchema, {
      scope: error.scope,
      limitPerSecond: BigInt(error.limitPerSecond),
      retryAfter: create(DurationSchema, {
        seconds: BigInt(Math.floor(retryMs / 1000)),
        nanos: (retryMs % 1000) * 1_000_000,
      }),
    }),
  });
  return limited;
}

/**
 * Turns what the application throws into the Connect error a client can act on; anything else
 * (a bug) is returned as is, for connect to answer INTERNAL without leaking its message.
 */
export function toConnectError(error: DomainError): ConnectError;
export function toConnectError(error: unknown): unknown;
export function toConnectError(error: unknown): unknown {
  if (error instanceof RateLimitedError) return rateLimitedError(error);
  if (error instanceof DomainError) return refusal(error.message, CODE_OF[error.kind]);
  if (error instanceof DependencyUnavailableError) return new ConnectError(error.message, Code.Unavailable);
  return error;
}
