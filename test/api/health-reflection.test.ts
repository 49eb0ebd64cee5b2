import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { connectNodeAdapter, createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  checkDependencies,
  type DependencyReport,
  type HealthProbe,
  healthServiceImpl,
  httpHealthHandler,
} from '../../src/api/health.ts';
import { registerReflection } from '../../src/api/reflection.ts';
import { createPolyglotServer, type PolyglotServer } from '../../src/api/server.ts';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { file_coupon_v1_errors } from '../../src/gen/coupon/v1/errors_pb.js';
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from '../../src/gen/grpc/health/v1/health_pb.js';
import { ServerReflection } from '../../src/gen/grpc/reflection/v1/reflection_pb.js';
import { ServerReflection as ServerReflectionV1Alpha } from '../../src/gen/grpc/reflection/v1alpha/reflection_pb.js';
import { codeOf } from '../support/rpc.ts';

const PROBE_TIMEOUT_MS = 200;

/** What the probe reports; the tests flip it. */
const state = {
  draining: false,
  hang: false,
  dependencies: { redis: true, database: true },
  /** Set: the probe answers as on a Redis Cluster, naming the masters that do not answer. */
  degraded: undefined as string[] | undefined,
};
const probe: HealthProbe = {
  isDraining: () => state.draining,
  dependenciesReady: async (): Promise<Record<string, boolean> | DependencyReport> => {
    if (state.hang) return new Promise<never>(() => undefined);
    if (state.degraded) return { ready: { ...state.dependencies }, degraded: state.degraded };
    return { ...state.dependencies };
  },
};

let server: PolyglotServer;
let baseUrl: string;

beforeAll(async () => {
  const rpc = connectNodeAdapter({
    routes: (router) => {
      router
        .service(Health, healthServiceImpl(probe, { timeoutMs: PROBE_TIMEOUT_MS, watchIntervalMs: 20 }))
        .service(CouponService, {
          getCampaign() {
            throw new ConnectError('no campaigns in this test', Code.NotFound);
          },
        });
      registerReflection(router, [file_coupon_v1_errors]);
    },
  });
  const health = httpHealthHandler(probe, { timeoutMs: PROBE_TIMEOUT_MS });
  server = createPolyglotServer((request, response) => {
    if (!health(request, response)) rpc(request, response);
  });
  const address = await server.listen(0, '127.0.0.1');
  baseUrl = `http://127.0.0.1:${address.port}`;
});
afterAll(async () => {
  await server?.close(1_000);
});
afterEach(() => {
  state.draining = false;
  state.hang = false;
  state.dependencies = { redis: true, database: true };
  state.degraded = undefined;
});

describe('grpc.health.v1.Health', () => {
  const health = () => createClient(Health, createGrpcTransport({ baseUrl }));

  it('is SERVING for the server and the coupon service while ready', async () => {
    expect((await health().check({ service: '' })).status).toBe(ServingStatus.SERVING);
    expect((await health().check({ service: 'coupon.v1.CouponService' })).status).toBe(ServingStatus.SERVING);
  });

  it('is NOT_SERVING when a dependency fails, hangs, or the server drains', async () => {
    state.dependencies.database = false;
    expect((await health().check({ service: '' })).status).toBe(ServingStatus.NOT_SERVING);
    state.dependencies.database = true;
    state.hang = true;
    expect((await health().check({ service: 'coupon.v1.CouponService' })).status).toBe(
      ServingStatus.NOT_SERVING,
    );
    state.hang = false;
    state.draining = true;
    expect((await health().check({ service: '' })).status).toBe(ServingStatus.NOT_SERVING);
  });

  it('answers NOT_FOUND for a service it does not have', async () => {
    expect(await codeOf(health().check({ service: 'no.such.Service' }))).toBe(Code.NotFound);
  });

  it('lists the status of every service', async () => {
    const { statuses } = await health().list({});
    expect(Object.keys(statuses).sort()).toEqual(['', 'coupon.v1.CouponService']);
    expect(statuses['']?.status).toBe(ServingStatus.SERVING);
  });

  it('answers over Connect JSON on HTTP/1.1 too', async () => {
    const client = createClient(Health, createConnectTransport({ baseUrl, httpVersion: '1.1' }));
    expect((await client.check({ service: '' })).status).toBe(ServingStatus.SERVING);
  });

  it('Watch sends the current status, then each change, until the client hangs up', async () => {
    const abort = new AbortController();
    const stream = health().watch({ service: '' }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVING);
    state.dependencies.redis = false;
    expect((await stream.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    state.dependencies.redis = true;
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVING);
    abort.abort();
    expect(await codeOf(stream.next())).toBe(Code.Canceled);
  });

  it('Watch says NOT_SERVING and ends the call once the server drains', async () => {
    const statuses: ServingStatus[] = [];
    const watching = (async () => {
      for await (const { status } of health().watch({ service: 'coupon.v1.CouponService' })) {
        statuses.push(status);
        state.draining = true;
      }
    })();
    await watching;
    expect(statuses).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  });

  it('Watch of an unknown service says SERVICE_UNKNOWN and keeps the call open', async () => {
    const abort = new AbortController();
    const stream = health()
      .watch({ service: 'no.such.Service' }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    const next = stream.next();
    const stillOpen = await Promise.race([next.then(() => false), sleep(100).then(() => true)]);
    expect(stillOpen).toBe(true);
    abort.abort();
    expect(await codeOf(next)).toBe(Code.Canceled);
  });
});

function sleep(ms: number) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('HTTP probes', () => {
  it('/healthz is 200 while the process runs, whatever the dependencies say', async () => {
    state.dependencies.database = false;
    const response = await fetch(`${baseUrl}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  it('/readyz is 200 when ready and 503 naming the failed dependency otherwise', async () => {
    const ready = await fetch(`${baseUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', dependencies: { redis: true, database: true } });

    state.dependencies.database = false;
    const notReady = await fetch(`${baseUrl}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({ status: 'not_ready', failed: ['database'] });
  });

  it('/readyz stays 200 with a degraded part, naming it, and is 503 when a needed dependency fails', async () => {
    state.degraded = ['redis 127.0.0.1:7003'];
    const degraded = await fetch(`${baseUrl}/readyz`);
    expect(degraded.status).toBe(200);
    expect(await degraded.json()).toEqual({
      status: 'ready',
      reason: 'ready; degraded: redis 127.0.0.1:7003',
      degraded: ['redis 127.0.0.1:7003'],
      dependencies: { redis: true, database: true },
    });

    state.dependencies.redis = false;
    const notReady = await fetch(`${baseUrl}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({ status: 'not_ready', failed: ['redis'] });
  });

  it('/readyz is 503 when the probe hangs, after the time limit and not later', async () => {
    state.hang = true;
    const started = performance.now();
    const response = await fetch(`${baseUrl}/readyz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({
      status: 'not_ready',
      reason: expect.stringContaining('within'),
    });
    expect(performance.now() - started).toBeLessThan(PROBE_TIMEOUT_MS + 1_000);
  });

  it('/readyz is 503 while draining', async () => {
    state.draining = true;
    const response = await fetch(`${baseUrl}/readyz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ status: 'draining' });
  });

  it('leaves other paths to the RPC handler', async () => {
    const response = await fetch(`${baseUrl}/coupon.v1.CouponService/GetCampaign`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"name":"x"}',
    });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ code: 'not_found' });
  });
});

describe('checkDependencies', () => {
  it('reads a check that resolves as ready, one that rejects, returns false or hangs as not', async () => {
    const started = performance.now();
    const result = await checkDependencies(
      {
        up: () => Promise.resolve('PONG'),
        down: () => Promise.reject(new Error('connection refused')),
        refused: () => Promise.resolve(false),
        hung: () => new Promise(() => undefined),
      },
      100,
    );
    expect(result).toEqual({ up: true, down: false, refused: false, hung: false });
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});

/** A reflection query, written once for both protocol versions. */
type Query =
  | {
      case: 'listServices' | 'fileByFilename' | 'fileContainingSymbol' | 'allExtensionNumbersOfType';
      value: string;
    }
  | { case: 'fileContainingExtension'; value: { containingType: string; extensionNumber: number } };

/** The part of a reflection response the tests read; v1 and v1alpha responses both fit it. */
type Answer =
  | { case: 'fileDescriptorResponse'; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: 'listServicesResponse'; value: { service: { name: string }[] } }
  | { case: 'allExtensionNumbersResponse'; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: 'errorResponse'; value: { errorCode: number; errorMessage: string } }
  | { case: undefined; value?: undefined };

type ReflectionCall = (
  requests: AsyncIterable<{ host: string; messageRequest: Query }>,
) => AsyncIterable<{ validHost: string; messageResponse: Answer }>;

const reflectionVersions: Record<string, ReflectionCall> = {
  'grpc.reflection.v1': (requests) =>
    createClient(ServerReflection, createGrpcTransport({ baseUrl })).serverReflectionInfo(requests),
  'grpc.reflection.v1alpha': (requests) =>
    createClient(ServerReflectionV1Alpha, createGrpcTransport({ baseUrl })).serverReflectionInfo(requests),
};

describe.each(Object.entries(reflectionVersions))('%s', (version, call) => {
  /** Sends the queries on one stream and collects the answers, in order. */
  async function reflect(queries: Query[]): Promise<Answer[]> {
    async function* send() {
      for (const messageRequest of queries) yield { host: 'localhost', messageRequest };
    }
    const answers: Answer[] = [];
    for await (const response of call(send())) {
      expect(response.validHost).toBe('localhost');
      answers.push(response.messageResponse);
    }
    return answers;
  }

  function fileNames(answer: Answer | undefined): string[] {
    if (answer?.case !== 'fileDescriptorResponse') throw new Error(`expected files, got ${answer?.case}`);
    return answer.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
  }

  it('lists the coupon, health and reflection services', async () => {
    const [listed] = await reflect([{ case: 'listServices', value: '' }]);
    expect(listed?.case).toBe('listServicesResponse');
    const names = listed?.case === 'listServicesResponse' ? listed.value.service.map((s) => s.name) : [];
    expect(names).toEqual(
      expect.arrayContaining([
        'coupon.v1.CouponService',
        'grpc.health.v1.Health',
        'grpc.reflection.v1.ServerReflection',
        'grpc.reflection.v1alpha.ServerReflection',
      ]),
    );
    expect(names).toContain(`${version}.ServerReflection`);
  });

  it('describes a symbol with its file and imports, each file once per stream', async () => {
    const [service, message, method] = await reflect([
      { case: 'fileContainingSymbol', value: 'coupon.v1.CouponService' },
      { case: 'fileContainingSymbol', value: 'coupon.v1.Campaign' },
      { case: 'fileContainingSymbol', value: 'coupon.v1.CouponService.IssueCoupon' },
    ]);
    expect(fileNames(service)).toEqual([
      'coupon/v1/coupon.proto',
      'google/protobuf/duration.proto',
      'google/protobuf/timestamp.proto',
    ]);
    expect(fileNames(message)).toEqual(['coupon/v1/coupon.proto']);
    expect(fileNames(method)).toEqual(['coupon/v1/coupon.proto']);
  });

  it('describes files by name, including extra files no service names', async () => {
    const [health, errors] = await reflect([
      { case: 'fileByFilename', value: 'grpc/health/v1/health.proto' },
      { case: 'fileByFilename', value: 'coupon/v1/errors.proto' },
    ]);
    expect(fileNames(health)).toEqual(['grpc/health/v1/health.proto']);
    expect(fileNames(errors)[0]).toBe('coupon/v1/errors.proto');
  });

  it('answers NOT_FOUND for unknown symbols, files and extensions, and no extension numbers', async () => {
    const [symbol, file, extension, numbers] = await reflect([
      { case: 'fileContainingSymbol', value: 'coupon.v1.Nothing' },
      { case: 'fileByFilename', value: 'nothing.proto' },
      {
        case: 'fileContainingExtension',
        value: { containingType: 'coupon.v1.Campaign', extensionNumber: 100 },
      },
      { case: 'allExtensionNumbersOfType', value: 'coupon.v1.Campaign' },
    ]);
    for (const response of [symbol, file, extension]) {
      expect(response?.case).toBe('errorResponse');
      expect(response?.value).toMatchObject({ errorCode: Code.NotFound });
    }
    expect(numbers).toMatchObject({
      case: 'allExtensionNumbersResponse',
      value: { baseTypeName: 'coupon.v1.Campaign', extensionNumber: [] },
    });
  });
});
