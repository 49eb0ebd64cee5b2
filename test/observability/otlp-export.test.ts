import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { readBuildInfo } from '../../src/infrastructure/build-info.ts';
import { childEnv, startChildService } from '../support/child-service.ts';
import { campaignRequest } from '../support/rpc.ts';
import { isolatedConfig, startServices } from '../support/services.ts';

/** What a collector received: each POST's path, content type and body. */
interface Export {
  readonly path: string;
  readonly contentType: string | undefined;
  readonly body: Buffer;
}

let collector: http.Server;
const exports: Export[] = [];
let stores: Awaited<ReturnType<typeof startServices>>;

beforeAll(async () => {
  collector = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      exports.push({
        path: request.url ?? '',
        contentType: request.headers['content-type'],
        body: Buffer.concat(chunks),
      });
      // An empty ExportTraceServiceResponse: everything accepted.
      response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  collector.listen(0, '127.0.0.1');
  await once(collector, 'listening');
  // The child process uses the same isolated database and keys; this makes and drops them.
  stores = await startServices(isolatedConfig());
});
afterAll(async () => {
  collector?.close();
  await stores?.stop();
});

describe('the service as a process', () => {
  it('logs its version, commit and Node.js version at start, and sends OTLP/HTTP protobuf spans to OTEL_EXPORTER_OTLP_ENDPOINT', async () => {
    const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
    const service = await startChildService(
      childEnv(stores.config, {
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
        OTEL_SERVICE_NAME: 'coupon-under-test',
      }),
    );
    try {
      const first = JSON.parse(service.logs[0] ?? '{}') as Record<string, unknown>;
      expect(first).toMatchObject({
        msg: 'coupon-service starting',
        ...readBuildInfo(),
        tracing: `${endpoint}/v1/traces`,
      });
      const client = createClient(CouponService, createGrpcTransport({ baseUrl: service.baseUrl }));
      const { campaign } = await client.createCampaign(campaignRequest());
      await client.issueCoupon({ campaignId: campaign?.id ?? '', userId: 'exported' });
    } finally {
      // SIGTERM drains and sends the spans still batched before the process exits.
      service.process.kill('SIGTERM');
      expect(await service.exited()).toBe(0);
    }
    expect(exports.length).toBeGreaterThan(0);
    for (const sent of exports) {
      expect(sent.path).toBe('/v1/traces');
      expect(sent.contentType).toBe('application/x-protobuf');
    }
    // Protobuf keeps strings as UTF-8 bytes: the span names and attributes are in the bodies.
    const bodies = Buffer.concat(exports.map((sent) => sent.body)).toString('latin1');
    for (const text of [
      'coupon-under-test',
      'coupon.v1.CouponService/CreateCampaign',
      'coupon.v1.CouponService/IssueCoupon',
      'gate.claim_slot',
      'db.group_commit',
      'gate.confirm_slot',
    ]) {
      expect(bodies).toContain(text);
    }
  });
});

describe('tracing settings', () => {
  it('are off unless an OTLP endpoint is set', () => {
    expect(loadConfig({}).tracing).toBeUndefined();
  });

  it('send to <endpoint>/v1/traces, or to the traces endpoint as is', () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing).toEqual({
      tracesUrl: 'http://collector:4318/v1/traces',
      serviceName: 'coupon-service',
      sampler: 'parentbased_always_on',
      samplerRatio: 1,
    });
    expect(
      loadConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example/otlp',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.1',
      }).tracing,
    ).toMatchObject({
      tracesUrl: 'https://traces.example/otlp',
      sampler: 'parentbased_traceidratio',
      samplerRatio: 0.1,
    });
  });

  it('are off with OTEL_SDK_DISABLED=true', () => {
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }).tracing,
    ).toBeUndefined();
  });

  it.each([
    ['OTEL_EXPORTER_OTLP_ENDPOINT', 'collector:4318'],
    ['OTEL_TRACES_SAMPLER', 'sometimes'],
    ['OTEL_TRACES_SAMPLER_ARG', '2'],
    ['OTEL_SDK_DISABLED', 'yes'],
    ['BUILD_COMMIT', 'a commit'],
  ])('refuse a bad %s with one line naming it', (variable, value) => {
    expect(() => loadConfig({ [variable]: value })).toThrow(
      new RegExp(`^invalid configuration: ${variable}: [^\\n]+$`),
    );
  });
});
