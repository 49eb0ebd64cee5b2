import type { IncomingHttpHeaders } from 'node:http';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import type { Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { DependencyUnavailableError } from '../application/ports.ts';
import { DomainError, type DomainErrorKind } from '../domain/errors.ts';
import { CouponService } from '../gen/coupon/v1/coupon_pb.js';
import type { Metrics } from '../infrastructure/metrics.ts';
import { endFailed, type Tracing } from '../infrastructure/tracing.ts';
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
    if (method === 'IssueCoupon')
      this.metrics.issueOutcomes.inc({ outcome: outcomeOf(method, thrown, code) });
  }
}

/**
 * What a call ended in, in one word: for IssueCoupon the outcome counted in
 * coupon_issue_outcomes_total; for the others ok, the refusal (campaign_name_taken, ...),
 * unavailable or error.
 */
function outcomeOf(method: string, thrown: unknown, code: Code | undefined): string {
  if (code === undefined) return method === 'IssueCoupon' ? 'issued' : 'ok';
  if (thrown instanceof DomainError) {
    return method === 'IssueCoupon' ? ISSUE_OUTCOME_OF[thrown.kind] : thrown.kind.replaceAll('-', '_');
  }
  return code === Code.Unavailable ? 'unavailable' : 'error';
}

/**
 * The outermost interceptor: every call connect runs is settled by the observer. With tracing
 * on, each call is also a server span (see `tracedCalls`); off, the interceptor is the same as
 * before tracing existed.
 */
export function observabilityInterceptor(observer: CallObserver, tracing?: Tracing): Interceptor {
  if (tracing) return tracedCalls(observer, tracing);
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

/**
 * A server span per call, named `coupon.v1.CouponService/IssueCoupon` as OpenTelemetry's RPC
 * conventions name spans, with the campaign id and outcome. The call runs inside it, so the
 * spans of its store calls are its children and its log lines carry its trace id.
 */
function tracedCalls(observer: CallObserver, tracing: Tracing): Interceptor {
  return (next) => async (request) => {
    const started = performance.now();
    const method = request.method.name;
    const span = tracing.startCall(`${request.service.typeName}/${method}`, request.header, {
      'rpc.system': request.header.get('content-type')?.startsWith('application/grpc')
        ? 'grpc'
        : 'connect_rpc',
      'rpc.service': request.service.typeName,
      'rpc.method': method,
    });
    if (!request.stream) setCampaignId(span, request.message);
    return tracing.within(span, async () => {
      try {
        const response = await next(request);
        observer.succeeded(method, started);
        if (!response.stream) setCampaignId(span, response.message);
        endCall(span, method, undefined, undefined);
        return response;
      } catch (thrown) {
        const error = observer.failed(method, thrown, started);
        endCall(span, method, thrown, error);
        throw error;
      }
    });
  };
}

/**
 * An IssueCoupon refusal answered before connect (early-refusal.ts), traced as a call of its own
 * that started when the request arrived; returns the error to answer with, as `refused` does.
 */
export function traceEarlyRefusal(
  tracing: Tracing,
  observer: CallObserver,
  call: { headers: IncomingHttpHeaders; campaignId: string | undefined; started: number },
  refusal: DomainError,
): ConnectError {
  const method = CouponService.method.issueCoupon.name;
  const span = tracing.startCall(
    `${CouponService.typeName}/${method}`,
    call.headers,
    {
      'rpc.system': 'connect_rpc',
      'rpc.service': CouponService.typeName,
      'rpc.method': method,
      'coupon.answered_from': 'memory',
    },
    call.started,
  );
  if (call.campaignId) span.setAttribute('coupon.campaign_id', call.campaignId);
  const error = tracing.within(span, () => observer.refused(method, refusal, call.started));
  endCall(span, method, refusal, error);
  return error;
}

function setCampaignId(span: Span, message: unknown): void {
  const { campaignId, campaign } = message as { campaignId?: unknown; campaign?: { id?: unknown } };
  const id = typeof campaignId === 'string' ? campaignId : campaign?.id;
  if (typeof id === 'string' && id !== '') span.setAttribute('coupon.campaign_id', id);
}

/** The codes OpenTelemetry's gRPC conventions count as the server's failure rather than the caller's. */
const SERVER_FAILURES: ReadonlySet<Code> = new Set([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

/** A refusal is a right answer: only failures (a store down, a bug) mark the span as an error. */
function endCall(span: Span, method: string, thrown: unknown, error: unknown): void {
  const code = thrown === undefined ? undefined : error instanceof ConnectError ? error.code : Code.Internal;
  span.setAttribute('coupon.outcome', outcomeOf(method, thrown, code));
  span.setAttribute('rpc.grpc.status_code', code ?? 0);
  if (code === undefined || !SERVER_FAILURES.has(code)) {
    span.end();
    return;
  }
  span.setAttribute('error.type', CODE_NAME[code] ?? 'Unknown');
  endFailed(span, thrown);
}
