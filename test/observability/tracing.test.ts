import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { type Client, Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type App, buildApp, loggerFor } from '../../src/app.ts';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { readBuildInfo } from '../../src/infrastructure/build-info.ts';
import { Tracing } from '../../src/infrastructure/tracing.ts';
import { eventually } from '../support/invariants.ts';
import { campaignRequest } from '../support/rpc.ts';
import { dropIsolatedStores, isolatedConfig } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

const ISSUE = 'coupon.v1.CouponService/IssueCoupon';

const exporter = new InMemorySpanExporter();
const tracing = new Tracing({
  spanProcessors: [new SimpleSpanProcessor({ exporter })],
  build: readBuildInfo(),
});
/** Every log line the app wrote, parsed. */
const logLines: Record<string, unknown>[] = [];

let mysqlProxy: TcpProxy;
let app: App;
let grpc: Client<typeof CouponService>;
let connectJson: Client<typeof CouponService>;

beforeAll(async () => {
  const direct = isolatedConfig({
    LOG_LEVEL: 'debug',
    DEPENDENCY_TIMEOUT_MS: '1000',
    RECONCILE_AFTER_MS: '2500',
    // Nothing but the test's own calls reaches MySQL, so the cut fails exactly one write.
    RECONCILE_INTERVAL_MS: '3600000',
    CAMPAIGN_REFRESH_MS: '3600000',
  });
  const database = new URL(direct.databaseUrl);
  mysqlProxy = await TcpProxy.start({ host: database.hostname, port: Number(database.port) });
  const config = { ...direct, databaseUrl: mysqlProxy.route(direct.databaseUrl) };
  const logs = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  });
  app = await buildApp(config, loggerFor(config, tracing, {}, logs), {}, tracing);
  const { port } = await app.listen();
  const baseUrl = `http://127.0.0.1:${port}`;
  grpc = createClient(CouponService, createGrpcTransport({ baseUrl }));
  connectJson = createClient(CouponService, createConnectTransport({ baseUrl, httpVersion: '1.1' }));
});
afterAll(async () => {
  mysqlProxy?.restore();
  if (app) {
    await dropIsolatedStores(app.services, app.config);
    await app.close();
  }
  await mysqlProxy?.close();
});
beforeEach(() => {
  mysqlProxy?.restore();
  exporter.reset();
});

/** A W3C traceparent of a caller's span, and its ids. */
function callerSpan() {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, headers: { traceparent: `00-${traceId}-${spanId}-01` } };
}

/**
 * The call's server span of this trace, and its children in the order they ended (the exporter's
 * order: span clocks are anchored to Date.now() per span, too coarse to order spans that follow
 * each other within a millisecond).
 */
function spanTree(traceId: string): { call: ReadableSpan; children: ReadableSpan[] } {
  const spans = exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
  const calls = spans.filter((span) => span.kind === SpanKind.SERVER);
  expect(calls).toHaveLength(1);
  const call = calls[0] as ReadableSpan;
  // Children end before the call does: nothing of it runs on after its answer.
  expect(spans.at(-1)).toBe(call);
  const children = spans.slice(0, -1);
  for (const child of children) expect(child.parentSpanContext?.spanId).toBe(call.spanContext().spanId);
  return { call, children };
}

async function openCampaign(amount: number): Promise<string> {
  const { campaign } = await grpc.createCampaign(campaignRequest({ amount: BigInt(amount) }));
  return campaign?.id ?? '';
}

describe('traces of IssueCoupon', () => {
  it('an issue: a server span under the caller, with the mark, claim, group-commit write and confirm as children', async () => {
    const campaignId = await openCampaign(10);
    // The first claim loads the campaign into the gate; the traced call is a steady one.
    await grpc.issueCoupon({ campaignId, userId: 'first' });
    const caller = callerSpan();

    await grpc.issueCoupon({ campaignId, userId: 'traced' }, { headers: caller.headers });

    const { call, children } = spanTree(caller.traceId);
    expect(call.name).toBe(ISSUE);
    expect(call.parentSpanContext?.spanId).toBe(caller.spanId);
    expect(call.attributes).toMatchObject({
      'rpc.system': 'grpc',
      'rpc.service': 'coupon.v1.CouponService',
      'rpc.method': 'IssueCoupon',
      'coupon.campaign_id': campaignId,
      'coupon.outcome': 'issued',
      'rpc.grpc.status_code': 0,
    });
    expect(call.status.code).toBe(SpanStatusCode.UNSET);
    expect(children.map((span) => span.name)).toEqual([
      'activity.mark_active',
      'gate.claim_slot',
      'db.group_commit',
      'gate.confirm_slot',
    ]);
    const [, claim, write] = children as [ReadableSpan, ReadableSpan, ReadableSpan, ReadableSpan];
    expect(claim.attributes).toMatchObject({ 'coupon.campaign_id': campaignId, 'coupon.claim': 'claimed' });
    expect(write.attributes).toMatchObject({ 'coupon.persist': 'persisted', 'coupon.batch_size': 1 });
    expect(write.events.map((event) => event.name)).toEqual(['batch write started']);
  });

  it('a refusal on the full path: the claim says duplicate, the call is refused, not failed', async () => {
    const campaignId = await openCampaign(10);
    await grpc.issueCoupon({ campaignId, userId: 'twice' });
    const caller = callerSpan();

    const refused = await grpc.issueCoupon({ campaignId, userId: 'twice' }, { headers: caller.headers }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );

    expect(refused?.code).toBe(Code.AlreadyExists);
    const { call, children } = spanTree(caller.traceId);
    expect(call.attributes).toMatchObject({
      'coupon.outcome': 'duplicate',
      'rpc.grpc.status_code': Code.AlreadyExists,
    });
    expect(call.status.code).toBe(SpanStatusCode.UNSET);
    expect(children.map((span) => [span.name, span.attributes['coupon.claim']])).toEqual([
      ['activity.mark_active', undefined],
      ['gate.claim_slot', 'duplicate'],
    ]);
  });

  it('a refusal answered from memory before connect: one span under the caller, its log line carrying its trace id', async () => {
    const campaignId = await openCampaign(1);
    await connectJson.issueCoupon({ campaignId, userId: 'winner' });
    // Refused by the gate, after which this instance knows the campaign is sold out.
    const soldOut = await eventually(async () => {
      const caller = callerSpan();
      const code = await connectJson
        .issueCoupon({ campaignId, userId: `late-${caller.spanId}` }, { headers: caller.headers })
        .then(
          () => 'ok',
          (error: unknown) => ConnectError.from(error).code,
        );
      if (code !== Code.ResourceExhausted) return [`answered ${code}`];
      const { call, children } = spanTree(caller.traceId);
      if (call.attributes['coupon.answered_from'] !== 'memory') return ['answered by the gate'];

      expect(call.name).toBe(ISSUE);
      expect(call.parentSpanContext?.spanId).toBe(caller.spanId);
      expect(call.attributes).toMatchObject({
        'rpc.system': 'connect_rpc',
        'coupon.campaign_id': campaignId,
        'coupon.outcome': 'sold_out',
        'rpc.grpc.status_code': Code.ResourceExhausted,
      });
      expect(call.status.code).toBe(SpanStatusCode.UNSET);
      expect(children).toEqual([]);
      const refusalLogs = logLines.filter((line) => line.trace_id === caller.traceId);
      expect(refusalLogs.map((line) => [line.msg, line.span_id])).toEqual([
        ['call refused', call.spanContext().spanId],
      ]);
      return [];
    }, 10_000);
    expect(soldOut).toEqual([]);
  });

  it('a failure: the write fails, the slot is given back, the call and the write are errors; the warning carries the trace id', async () => {
    const campaignId = await openCampaign(10);
    await grpc.issueCoupon({ campaignId, userId: 'before-the-cut' });
    const caller = callerSpan();
    mysqlProxy.cut();

    const failed = await grpc
      .issueCoupon({ campaignId, userId: 'cut-off' }, { headers: caller.headers })
      .then(
        () => undefined,
        (error: unknown) => ConnectError.from(error),
      );

    expect(failed?.code).toBe(Code.Unavailable);
    const { call, children } = spanTree(caller.traceId);
    expect(call.attributes).toMatchObject({
      'coupon.outcome': 'unavailable',
      'rpc.grpc.status_code': Code.Unavailable,
      'error.type': 'Unavailable',
    });
    expect(call.status.code).toBe(SpanStatusCode.ERROR);
    expect(children.map((span) => span.name)).toEqual([
      'activity.mark_active',
      'gate.claim_slot',
      'db.group_commit',
      'gate.release_slot',
    ]);
    const [, , write, release] = children as [ReadableSpan, ReadableSpan, ReadableSpan, ReadableSpan];
    expect(write.status.code).toBe(SpanStatusCode.ERROR);
    expect(write.events.map((event) => event.name)).toEqual(['batch write started', 'exception']);
    expect(release.attributes['coupon.released']).toBe(true);
    const lines = logLines.filter((line) => line.trace_id === caller.traceId);
    expect(lines.map((line) => line.msg)).toContain('call failed: dependency unavailable');
    // Every line written inside the call carries it, whichever span wrote it.
    const spanIds = new Set([call, ...children].map((span) => span.spanContext().spanId));
    for (const line of lines) expect(spanIds).toContain(line.span_id);
  });

  it('a call without traceparent starts a trace of its own; lines outside any call carry no trace id', async () => {
    const campaignId = await openCampaign(10);
    await grpc.issueCoupon({ campaignId, userId: 'untraced-caller' });
    const calls = exporter.getFinishedSpans().filter((span) => span.kind === SpanKind.SERVER);
    expect(calls.map((span) => [span.name, span.parentSpanContext])).toEqual([
      ['coupon.v1.CouponService/CreateCampaign', undefined],
      [ISSUE, undefined],
    ]);
    expect(calls[0]?.attributes['coupon.campaign_id']).toBe(campaignId);
    app.logger.info('outside any call');
    expect(logLines.at(-1)).not.toHaveProperty('trace_id');
  });
});
