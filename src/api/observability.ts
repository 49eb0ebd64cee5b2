import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import type { Logger } from 'pino';
import { DependencyUnavailableError } from '../application/ports.ts';
import { DomainError, type DomainErrorKind } from '../domain/errors.ts';
import type { Metrics } from '../infrastructure/metrics.ts';
import { toConnectError } from './errors.ts';

const ISSUE_OUTCOME_OF: Record<DomainErrorKind, string> = {
  'invalid-argument': 'invalid',
  'campaign-not-found': 'not_found',
  'campaign-name-taken': 'invalid',
  'already-issued': 'duplicate',
  'campaign-not-open': 'not_open',
  'sold-out': 'sold_out',
  'rate-limited': 'rate_limited',
  'too-many-reads': 'busy',
  unauthenticated: 'unauthenticated',
  'permission-denied': 'permission_denied',
  'claim-pending': 'pending',
  'amount-below-claimed': 'invalid',
  'coupon-not-found': 'not_found',
  'coupon-unusable': 'invalid',
};

/** Code names as Prometheus label values, computed once rather than per call. */
const CODE_NAME: Record<number, string> = Object.fromEntries(
  Object.entries(Code).flatMap(([name, value]) => (typeof value === 'number' ? [[value, name]] : [])),
);

/**
 * Settles every call the same way, whichever path answered it (the interceptor below, or the
 * early refusal in early-refusal.ts): maps what the application threw to the Connect error a
 * client can act on (see errors.ts), times the call and counts issue outcomes. Logs one line per
 * failed call (warn for UNAVAILABLE, error for anything unexpected) and none per successful call
 * or refusal unless at debug level: a rush must not turn into a log storm.
 */
export class CallObserver {
  private readonly metrics: Metrics;
  private readonly logger: Logger;

  constructor(metrics: Metrics, logger: Logger) {
    this.metrics = metrics;
    this.logger = logger;
  }

  /** `started` is the call's `performance.now()` when it arrived. */
  succeeded(method: string, started: number): void {
    this.metrics.rpcDuration.observe({ method, code: 'ok' }, (performance.now() - started) / 1000);
    if (method === 'IssueCoupon') this.metrics.issueOutcomes.inc({ outcome: 'issued' });
  }

  /** Records a refused call and returns the ConnectError to answer with. */
  refused(method: string, refusal: DomainError, started: number): ConnectError {
    const error = toConnectError(refusal);
    this.record(method, refusal, error, started);
    return error;
  }

  /** Records a failed call and returns what to answer with: a ConnectError, or a bug as is. */
  failed(method: string, thrown: unknown, started: number): unknown {
    const error = toConnectError(thrown);
    this.record(method, thrown, error, started);
    return error;
  }

  private record(method: string, thrown: unknown, error: unknown, started: number): void {
    // A non-Connect error reaches connect as is, which answers INTERNAL without its message.
    const code = error instanceof ConnectError ? error.code : Code.Internal;
    if (thrown instanceof DomainError) {
      if (this.logger.isLevelEnabled('debug')) {
        this.logger.debug({ method, code: CODE_NAME[code], message: thrown.message }, 'call refused');
      }
    } else if (thrown instanceof DependencyUnavailableError || code === Code.Unavailable) {
      // The cause carries what the driver said; the client was only told to retry.
      const cause = (thrown as Error).cause;
      this.logger.warn(
        { method, message: (thrown as Error).message, cause: cause instanceof Error ? cause.message : cause },
        'call failed: dependency unavailable',
      );
    } else if (!(error instanceof ConnectError) || code === Code.Internal || code === Code.Unknown) {
      this.logger.error({ method, code: CODE_NAME[code], err: thrown }, 'call failed');
    } else {
      this.logger.debug({ method, code: CODE_NAME[code], message: error.rawMessage }, 'call refused');
    }
    this.metrics.rpcDuration.observe(
      { method, code: CODE_NAME[code] ?? 'Unknown' },
      (performance.now() - started) / 1000,
    );
    if (method === 'IssueCoupon') {
      const outcome =
        thrown instanceof DomainError
          ? ISSUE_OUTCOME_OF[thrown.kind]
          : code === Code.Unavailable
            ? 'unavailable'
            : 'error';
      this.metrics.issueOutcomes.inc({ outcome });
    }
  }
}

/** The outermost interceptor: every call connect runs is settled by the observer. */
export function observabilityInterceptor(observer: CallObserver): Interceptor {
  return (next) => async (request) => {
    const started = performance.now();
    try {
      const response = await next(request);
      observer.succeeded(request.method.name, started);
      return response;
    } catch (thrown) {
      throw observer.failed(request.method.name, thrown, started);
    }
  };
}
