import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { DependencyUnavailableError } from '../application/ports.ts';
import { DomainError, type DomainErrorKind } from '../domain/errors.ts';

const CODE_OF: Record<DomainErrorKind, Code> = {
  'invalid-argument': Code.InvalidArgument,
  'campaign-not-found': Code.NotFound,
  'campaign-name-taken': Code.AlreadyExists,
  'already-issued': Code.AlreadyExists,
  'campaign-not-open': Code.FailedPrecondition,
  'sold-out': Code.ResourceExhausted,
};

/** Turns what the application throws into the Connect error a client can act on. */
export function toConnectError(error: unknown): unknown {
  if (error instanceof DomainError) return new ConnectError(error.message, CODE_OF[error.kind]);
  if (error instanceof DependencyUnavailableError) return new ConnectError(error.message, Code.Unavailable);
  return error;
}

export const domainErrorInterceptor: Interceptor = (next) => async (request) => {
  try {
    return await next(request);
  } catch (error) {
    throw toConnectError(error);
  }
};
