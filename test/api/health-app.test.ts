import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, buildApp } from '../../src/app.ts';
import { Health, HealthCheckResponse_ServingStatus } from '../../src/gen/grpc/health/v1/health_pb.js';
import { ServerReflection } from '../../src/gen/grpc/reflection/v1/reflection_pb.js';
import { eventually } from '../support/invariants.ts';
import { dropIsolatedStores, isolatedConfig, silentLogger } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

let redisProxy: TcpProxy;
let app: App;
let baseUrl: string;
const config = isolatedConfig({
  DEPENDENCY_TIMEOUT_MS: '500',
  RECONCILE_AFTER_MS: '1500',
  SHUTDOWN_GRACE_MS: '3000',
});

beforeAll(async () => {
  const redis = new URL(config.redisUrl);
  redisProxy = await TcpProxy.start({ host: redis.hostname, port: Number(redis.port) });
  app = await buildApp({ ...config, redisUrl: redisProxy.route(config.redisUrl) }, silentLogger);
  baseUrl = `http://127.0.0.1:${(await app.listen()).port}`;
});
afterAll(async () => {
  redisProxy?.restore();
  if (app) {
    await dropIsolatedStores(app.services, config).catch(() => undefined);
    await app.close().catch(() => undefined);
  }
  await redisProxy?.close();
});

const health = () => createClient(Health, createGrpcTransport({ baseUrl }));
const ready = async () => (await fetch(`${baseUrl}/readyz`)).status;

describe('health and readiness of the app', () => {
  it('report SERVING and ready while Redis and MySQL answer, and /healthz always answers', async () => {
    expect((await health().check({ service: '' })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await health().check({ service: 'coupon.v1.CouponService' })).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );
    expect(await ready()).toBe(200);
    expect((await fetch(`${baseUrl}/healthz`)).status).toBe(200);
  });

  it('flip to NOT_SERVING and 503 naming redis when Redis is cut, and back when it returns', async () => {
    redisProxy.cut();
    expect(await eventually(async () => ((await ready()) === 503 ? [] : ['still ready']), 5_000)).toEqual([]);
    const body = (await (await fetch(`${baseUrl}/readyz`)).json()) as { failed?: string[] };
    expect(body.failed).toEqual(['redis']);
    expect((await health().check({ service: '' })).status).toBe(
      HealthCheckResponse_ServingStatus.NOT_SERVING,
    );
    expect((await fetch(`${baseUrl}/healthz`)).status).toBe(200);

    redisProxy.restore();
    expect(await eventually(async () => ((await ready()) === 200 ? [] : ['not ready yet']), 10_000)).toEqual(
      [],
    );
  });

  it('lists the services through reflection', async () => {
    const reflection = createClient(ServerReflection, createGrpcTransport({ baseUrl }));
    async function* ask() {
      yield { host: 'localhost', messageRequest: { case: 'listServices' as const, value: '' } };
    }
    const names: string[] = [];
    for await (const response of reflection.serverReflectionInfo(ask())) {
      if (response.messageResponse.case === 'listServicesResponse') {
        names.push(...response.messageResponse.value.service.map((service) => service.name));
      }
    }
    expect(names).toEqual(expect.arrayContaining(['coupon.v1.CouponService', 'grpc.health.v1.Health']));
  });
});
