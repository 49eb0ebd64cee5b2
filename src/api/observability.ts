import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import type { Logger } from 'pino';
import type { Metrics } from '../infrastructure/metrics.ts';

const ISSUE_OUTCOME_OF: Partial<Record<Code, string>> = {
  [Code.ResourceExhausted]: 'sold_out',
  [Code.AlreadyExists]: 'duplicate',
  [Code.FailedPrecondition]: 'not_open',
  [Code.NotFound]: 'not_found',
  [Code.InvalidArgument]: 'invalid',
  [Code.Unavailable]: 'unavailable',
};

/** A refusal the caller caused and can act on: logged at debug, not as a failure of ours. */
const EXPECTED_CODES = new Set<Code>([
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.FailedPrecondition,
  Code.ResourceExhausted,
  Code.Unauthenticated,
  Code.PermissionDenied,
]);

/**
 * Times every call and counts issue outcomes. Logs one line per failed call (warn for
 * UNAVAILABLE, error for anything unexpected) and none per successful call unless at debug level:
 * a rush must not turn into a log storm.
 */
export function observabilityInterceptor(metrics: Metrics, logger: Logger): Interceptor {
  return (next) => async (request) => {
    const started = performance.now();
    const method = request.method.name;
    let code: Code | undefined;
    try {
      const response = await next(request);
      return response;
    } catch (error) {
      const connectError = ConnectError.from(error);
      code = connectError.code;
      const rateLimited = connectError.rawMessage.startsWith('rate limited');
      if (EXPECTED_CODES.has(code)) {
        logger.debug({ method, code: Code[code], message: connectError.rawMessage }, 'call refused');
      } else if (code === Code.Unavailable) {
        logger.warn({ method, message: connectError.rawMessage }, 'call failed: dependency unavailable');
      } else {
        logger.error({ method, code: Code[code], err: error }, 'call failed');
      }
      if (method === 'IssueCoupon') {
        metrics.issueOutcomes.inc({
          outcome: rateLimited ? 'rate_limited' : (ISSUE_OUTCOME_OF[code] ?? 'error'),
        });
      }
      throw error;
    } finally {
      const codeName = code === undefined ? 'ok' : Code[code];
      metrics.rpcDuration.observe({ method, code: codeName }, (performance.now() - started) / 1000);
      if (code === undefined && method === 'IssueCoupon') metrics.issueOutcomes.inc({ outcome: 'issued' });
    }
  };
}
