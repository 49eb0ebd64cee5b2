import type http from 'node:http';
import type http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import { CouponService } from '../gen/coupon/v1/coupon_pb.js';
import {
  type Health,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from '../gen/grpc/health/v1/health_pb.js';

/**
 * What health checks ask the running app. `dependenciesReady` names each dependency and says
 * whether it answers, e.g. `{ redis: true, database: false }`, so /readyz can say which one failed.
 */
export interface HealthProbe {
  /** True once shutdown has begun: the instance finishes what it has but should get no new work. */
  isDraining(): boolean;
  dependenciesReady(): Promise<Readonly<Record<string, boolean>> | DependencyReport>;
}

/**
 * A dependency check that also names parts which do not answer while the instance still serves
 * (a Redis Cluster master: only the campaigns on it fail). Taking every instance out of the load
 * balancer for those would turn a partial outage into a total one, so they leave it ready.
 */
export interface DependencyReport {
  /** Each dependency the instance cannot serve without, and whether it answers. */
  readonly ready: Readonly<Record<string, boolean>>;
  /** What does not answer but the instance serves without, e.g. `redis 127.0.0.1:7003`. */
  readonly degraded: readonly string[];
}

export interface HealthOptions {
  /** Longest wait for `dependenciesReady`; a probe still hanging then reads as not ready. */
  readonly timeoutMs?: number;
  /** How often a Watch call looks at the probe again. */
  readonly watchIntervalMs?: number;
  /** Services that report a status besides "" (the whole server). */
  readonly services?: readonly string[];
}

const DEFAULT_TIMEOUT_MS = 1_000;
const DEFAULT_WATCH_INTERVAL_MS = 1_000;
const DEFAULT_SERVICES = [CouponService.typeName];

/**
 * Runs one check per dependency, each bounded by `timeoutMs`: a check that resolves is ready; one
 * that rejects, resolves `false` or hangs is not. Bounding each one (below the handlers'
 * `timeoutMs`) lets /readyz name the dependency that hangs instead of timing out as a whole.
 */
export async function checkDependencies(
  checks: Readonly<Record<string, () => Promise<unknown>>>,
  timeoutMs: number,
): Promise<Record<string, boolean>> {
  const results = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      const answered = check().then(
        (result) => result !== false,
        () => false,
      );
      return [name, await within(answered, timeoutMs, false)] as const;
    }),
  );
  return Object.fromEntries(results);
}

/** The promise's value, or `fallback` when it has not settled within `ms`. */
async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  const stopTimer = new AbortController();
  const timedOut = sleep(ms, fallback, { signal: stopTimer.signal }).catch(() => fallback);
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    stopTimer.abort();
  }
}

type Readiness =
  | {
      readonly state: 'ready';
      readonly dependencies: Readonly<Record<string, boolean>>;
      readonly degraded: readonly string[];
    }
  | { readonly state: 'draining' }
  | {
      readonly state: 'not_ready';
      readonly failed: readonly string[];
      readonly dependencies?: Readonly<Record<string, boolean>>;
      readonly reason: string;
    };

/**
 * Asks the probe once, bounded by `timeoutMs`. Concurrent callers share one probe call, so a burst
 * of health checks costs the dependencies one round trip, never one each; nothing is cached past
 * that call, so a check always reflects the moment it was asked.
 */
function readinessChecker(probe: HealthProbe, timeoutMs: number): () => Promise<Readiness> {
  let inFlight: Promise<Readiness> | undefined;
  const check = async (): Promise<Readiness> => {
    try {
      const report = await within(probe.dependenciesReady(), timeoutMs, undefined);
      if (report === undefined) {
        return {
          state: 'not_ready',
          failed: [],
          reason: `dependency check did not answer within ${timeoutMs} ms`,
        };
      }
      const { ready: dependencies, degraded } = isReport(report) ? report : { ready: report, degraded: [] };
      const failed = Object.keys(dependencies).filter((name) => !dependencies[name]);
      if (failed.length > 0) {
        return { state: 'not_ready', failed, dependencies, reason: `not answering: ${failed.join(', ')}` };
      }
      return { state: 'ready', dependencies, degraded };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return { state: 'not_ready', failed: [], reason: `dependency check failed: ${message}` };
    }
  };
  return () => {
    // Draining is known without asking anyone, and wins over whatever the dependencies say.
    if (probe.isDraining()) return Promise.resolve({ state: 'draining' });
    inFlight ??= check().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
}

function isReport(report: Readonly<Record<string, boolean>> | DependencyReport): report is DependencyReport {
  return Array.isArray((report as { degraded?: unknown }).degraded);
}

function response(status: ServingStatus): HealthCheckResponse {
  return create(HealthCheckResponseSchema, { status });
}

/**
 * grpc.health.v1.Health (https://github.com/grpc/grpc/blob/master/doc/health-checking.md):
 * SERVING for "" and the listed services while the dependencies answer and the instance is not
 * draining, NOT_SERVING otherwise, NOT_FOUND for a service this server does not have.
 */
export function healthServiceImpl(
  probe: HealthProbe,
  options: HealthOptions = {},
): ServiceImpl<typeof Health> {
  const readiness = readinessChecker(probe, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const watchIntervalMs = options.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS;
  const services = new Set(['', ...(options.services ?? DEFAULT_SERVICES)]);
  const servingStatus = async () =>
    (await readiness()).state === 'ready' ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;

  return {
    async check(request) {
      if (!services.has(request.service)) {
        throw new ConnectError(`unknown service "${request.service}"`, Code.NotFound);
      }
      return response(await servingStatus());
    },

    async list() {
      const status = await servingStatus();
      return create(HealthListResponseSchema, {
        statuses: Object.fromEntries([...services].map((service) => [service, response(status)])),
      });
    },

    async *watch(request, context) {
      const { signal } = context;
      const pause = () => sleep(watchIntervalMs, undefined, { signal }).catch(() => undefined);
      // A draining server must not wait for watchers to hang up: once it has said NOT_SERVING it
      // ends the call (OK), and the client's retry finds another instance.
      if (!services.has(request.service)) {
        // The spec: say SERVICE_UNKNOWN and keep the call open. Our services never change, so
        // there is nothing more to say until the client goes away or the server drains.
        yield response(ServingStatus.SERVICE_UNKNOWN);
        while (!signal.aborted && !probe.isDraining()) await pause();
        return;
      }
      let last: ServingStatus | undefined;
      while (!signal.aborted) {
        const status = await servingStatus();
        if (status !== last) {
          last = status;
          yield response(status);
        }
        if (probe.isDraining()) return;
        await pause();
      }
    },
  };
}

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

function sendJson(request: Request, response: Response, status: number, body: unknown): void {
  response.statusCode = status;
  response.setHeader('content-type', 'application/json');
  response.setHeader('cache-control', 'no-store');
  response.end(request.method === 'HEAD' ? '' : JSON.stringify(body));
}

/**
 * Plain HTTP probes for orchestrators: `GET /healthz` is 200 while the process runs (liveness);
 * `GET /readyz` is 200 while the dependencies answer and the instance is not draining (naming
 * degraded parts, if any, in its body), else 503 with a body naming what is wrong (readiness). Returns false for any other request.
 */
export function httpHealthHandler(
  probe: HealthProbe,
  options: Pick<HealthOptions, 'timeoutMs'> = {},
): (request: Request, response: Response) => boolean {
  const readiness = readinessChecker(probe, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  return (request, response) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return false;
    const path = request.url?.split('?', 1)[0];
    if (path === '/healthz') {
      sendJson(request, response, 200, { status: 'ok' });
      return true;
    }
    if (path !== '/readyz') return false;
    readiness().then(
      (result) => {
        if (result.state === 'ready' && result.degraded.length > 0) {
          // Still serving: the load balancer keeps it, a person reading the body sees what is down.
          const { dependencies, degraded } = result;
          const reason = `ready; degraded: ${degraded.join(', ')}`;
          sendJson(request, response, 200, { status: 'ready', reason, degraded, dependencies });
        } else if (result.state === 'ready') {
          sendJson(request, response, 200, { status: 'ready', dependencies: result.dependencies });
        } else if (result.state === 'draining') {
          sendJson(request, response, 503, { status: 'draining' });
        } else {
          const { reason, failed, dependencies } = result;
          sendJson(request, response, 503, { status: 'not_ready', reason, failed, dependencies });
        }
      },
      () => sendJson(request, response, 500, { status: 'error' }),
    );
    return true;
  };
}
