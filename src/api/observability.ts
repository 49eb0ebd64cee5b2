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
};

/** Code names as Prometheus label values, computed once rather than per call. */
const CODE_NAME: Record<number, string> = Object.fromEntries(
  Object.entries(Code).flatMap(([name, value]) => (typeof value === 'number' ? [[value, name]] : [])),
);

/**
 * The outermost interceptor: maps what the application throws to the Connect error a client can
 * act on (see errors.ts), times every call and counts issue outcomes. Logs one line per failed
 * call (warn for UNAVAILABLE, error for anything unexpected) and none per successful call or
 * refusal unless at debug level: a rush must not turn into a log storm.
 */
export function observabilityInterceptor(metrics: Metrics, logger: Logger): Interceptor {
  return (next) => async (request) => {
    const started = performance.now();
    const method = request.method.name;
    try {
      const response = await next(request);
      metrics.rpcDuration.observe({ method, code: 'ok' }, (performance.now() - started) / 1000);
      if (method === 'IssueCoupon') metrics.issueOutcomes.inc({ outcome: 'issued' });
      return response;
    } catch (thrown) {
      const error = toConnectError(thrown);
      // A non-Connect error reaches connect as is, which answers INTERNAL without its message.
      const code = error instanceof ConnectError ? error.code : Code.Internal;
      if (thrown instanceof DomainError) {
        if (logger.isLevelEnabled('debug')) {
          logger.debug({ method, code: CODE_NAME[code], message: thrown.message }, 'call refused');
        }
      } else if (thrown instanceof DependencyUnavailableError || code === Code.Unavailable) {
        logger.warn({ method, message: (thrown as Error).message }, 'call failed: dependency unavailable');
      } else if (!(error instanceof ConnectError) || code === Code.Internal || code === Code.Unknown) {
        logger.error({ method, code: CODE_NAME[code], err: thrown }, 'call failed');
      } else {
        logger.debug({ method, code: CODE_NAME[code], message: error.rawMessage }, 'call refused');
      }
      metrics.rpcDuration.observe(
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
        metrics.issueOutcomes.inc({ outcome });
      }
      throw error;
    }
  };
}
