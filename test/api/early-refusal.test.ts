import { gzipSync } from 'node:zlib';
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConnectHandler, createConnectHandler } from '../../src/api/connect-handler.ts';
import { earlyRefusalHandler } from '../../src/api/early-refusal.ts';
import { CallObserver, observabilityInterceptor } from '../../src/api/observability.ts';
import { createPolyglotServer, type PolyglotServer } from '../../src/api/server.ts';
import type { VerifiedCall } from '../../src/api/user-tokens.ts';
import {
  AlreadyIssuedError,
  CampaignNotFoundError,
  type DomainError,
  InvalidArgumentError,
  RateLimitedError,
  SoldOutError,
} from '../../src/domain/errors.ts';
import {
  CouponService,
  IssueCouponRequestSchema,
  IssueCouponResponseSchema,
} from '../../src/gen/coupon/v1/coupon_pb.js';
import { Metrics } from '../../src/infrastructure/metrics.ts';
import { silentLogger } from '../support/services.ts';

/**
 * The issuer's answers by campaign id, so each test picks the refusal it needs; any other id is
 * issued a coupon. The stand-in replaces the application only: the HTTP servers, connect and the
 * early refusal are the real ones.
 */
const REFUSALS: Record<string, (userId: string) => DomainError> = {
  'sold-out': () => new SoldOutError('sold-out'),
  'held-by-user': (userId) => new AlreadyIssuedError('held-by-user', userId),
  'no-such-campaign': () => new CampaignNotFoundError('id', 'no-such-campaign'),
  'bad-input': () => new InvalidArgumentError('user_id', 'user_id must not be empty'),
  // With a detail that differs per call (when to retry).
  'rate-limited': (userId) => new RateLimitedError('user', 20, userId.length * 100),
};
const issuer = {
  refusalFromMemory: (campaignId: string, userId: string) => REFUSALS[campaignId]?.(userId),
};

function serveWith(handler: (...args: Parameters<ConnectHandler>) => void): PolyglotServer {
  return createPolyglotServer((request, response) => handler(request, response));
}

interface Side {
  server: PolyglotServer;
  url: string;
  metrics: Metrics;
  /** Requests the early refusal handed on to connect. */
  handedToConnect: number;
}

async function startSide(early: boolean): Promise<Side> {
  const metrics = new Metrics();
  const observer = new CallObserver(metrics, silentLogger);
  const connect = createConnectHandler<VerifiedCall>({
    routes: (router) =>
      router.service(CouponService, {
        issueCoupon(request) {
          const refusal = issuer.refusalFromMemory(request.campaignId, request.userId);
          if (refusal) throw refusal;
          return create(IssueCouponResponseSchema, {
            coupon: {
              code: 'CODE',
              campaignId: request.campaignId,
              userId: request.userId,
              issuedAt: timestampFromDate(new Date(0)),
            },
          });
        },
      }),
    interceptors: [observabilityInterceptor(observer)],
    onHandlerError: (method, error) => {
      throw new Error(`answering ${method} failed`, { cause: error });
    },
  });
  const side: Side = { server: serveWith(connect), url: '', metrics, handedToConnect: 0 };
  if (early) {
    const counted: ConnectHandler<VerifiedCall> = (request, response, body, earlier) => {
      side.handedToConnect++;
      connect(request, response, body, earlier);
    };
    side.server = serveWith(earlyRefusalHandler({ issuer, observer, connect: counted }));
  }
  const address = await side.server.listen(0, '127.0.0.1');
  side.url = `http://127.0.0.1:${address.port}`;
  return side;
}

let early: Side;
let plain: Side;
beforeAll(async () => {
  [early, plain] = await Promise.all([startSide(true), startSide(false)]);
});
afterAll(async () => {
  await Promise.all([early?.server.close(100), plain?.server.close(100)]);
});

const ISSUE_PATH = '/coupon.v1.CouponService/IssueCoupon';

/** Everything a client can see of an answer but its date. */
async function post(side: Side, body: RequestInit['body'], headers: Record<string, string>) {
  // duplex: a stream body (sent chunked, of unknown length) needs it.
  const response = await fetch(`${side.url}${ISSUE_PATH}`, { method: 'POST', body, headers, duplex: 'half' });
  const seen = Object.fromEntries([...response.headers].filter(([name]) => name !== 'date'));
  return { status: response.status, headers: seen, body: await response.text() };
}

/** Sends the same request to both servers: what the early refusal answered, what connect alone did, and whether connect was asked. */
async function both(body: () => RequestInit['body'], headers: Record<string, string>) {
  const before = early.handedToConnect;
  const answered = await post(early, body(), headers);
  const handedOn = early.handedToConnect - before;
  return { answered, expected: await post(plain, body(), headers), handedOn };
}

/** A body fetch sends chunked, without a content-length. */
function streamOf(text: string): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      controller.close();
    },
  });
}

const json = { 'content-type': 'application/json' };
const proto = { 'content-type': 'application/proto' };
const binaryRequest = (campaignId: string, userId: string) =>
  toBinary(IssueCouponRequestSchema, create(IssueCouponRequestSchema, { campaignId, userId }));

describe('the early refusal of IssueCoupon', () => {
  it.each(Object.keys(REFUSALS))(
    'answers "%s" before connect, exactly as connect would (JSON)',
    async (id) => {
      const { answered, expected, handedOn } = await both(
        () => JSON.stringify({ campaignId: id, userId: 'u1' }),
        json,
      );
      expect(handedOn).toBe(0);
      expect(answered).toEqual(expected);
      expect(answered.status).toBeGreaterThanOrEqual(400);
    },
  );

  it.each(Object.keys(REFUSALS))(
    'answers "%s" before connect, exactly as connect would (binary)',
    async (id) => {
      const { answered, expected, handedOn } = await both(() => binaryRequest(id, 'u1'), proto);
      expect(handedOn).toBe(0);
      expect(answered).toEqual(expected);
    },
  );

  it('answers repeated refusals exactly as connect would, each with its own message and details', async () => {
    // Answers are encoded once per code and message: a second user must still hear their own.
    const calls = [
      ['sold-out', 'u1'],
      ['sold-out', 'u2'],
      ['held-by-user', 'u1'],
      ['held-by-user', 'u2'],
      ['rate-limited', 'u1'],
      ['rate-limited', 'user-22'],
      ['rate-limited', 'u3'],
    ];
    for (const [campaignId, userId] of calls) {
      const { answered, expected, handedOn } = await both(() => JSON.stringify({ campaignId, userId }), json);
      expect(handedOn).toBe(0);
      expect(answered).toEqual(expected);
    }
  });

  it('judges a body of unknown length (sent chunked) too', async () => {
    const { answered, expected, handedOn } = await both(
      () => streamOf(JSON.stringify({ campaignId: 'sold-out', userId: 'u1' })),
      json,
    );
    expect(handedOn).toBe(0);
    expect(answered).toEqual(expected);
  });

  it('hands a call it cannot refuse to connect with the body it read, which serves it', async () => {
    for (const [body, headers] of [
      [() => JSON.stringify({ campaignId: 'open', userId: 'u2' }), json],
      [() => binaryRequest('open', 'u2'), proto],
    ] as const) {
      const { answered, expected, handedOn } = await both(body, headers);
      expect(handedOn).toBe(1);
      expect(answered).toEqual(expected);
      expect(answered.status).toBe(200);
      expect(answered.body).toContain(headers === json ? '"userId":"u2"' : 'u2');
    }
  });

  it('leaves to connect what it cannot read cheaply or strictly, and connect answers as usual', async () => {
    const soldOut = JSON.stringify({ campaignId: 'sold-out', userId: 'u3' });
    const cases: [string, () => RequestInit['body'], Record<string, string>][] = [
      ['compressed', () => gzipSync(soldOut), { ...json, 'content-encoding': 'gzip' }],
      [
        'too large to be worth reading, of unknown length',
        () => streamOf(soldOut.replace('u3', 'u'.repeat(20_000))),
        json,
      ],
      [
        'with a malformed timeout, which connect refuses first',
        () => soldOut,
        { ...json, 'connect-timeout-ms': 'soon' },
      ],
      ['with a field the schema does not know', () => soldOut.replace('{', '{"extra":1,'), json],
      ['not JSON at all', () => '{"campaignId":', json],
      ['not a Connect unary content type', () => soldOut, { 'content-type': 'text/plain' }],
      ['too large to be worth reading twice', () => soldOut.replace('u3', 'u'.repeat(20_000)), json],
    ];
    for (const [label, body, headers] of cases) {
      const { answered, expected, handedOn } = await both(body, headers);
      expect({ label, answered }).toEqual({ label, answered: expected });
      expect({ label, handedOn }).toEqual({ label, handedOn: 1 });
    }
  });

  it('counts an early refusal in the metrics like any other call', async () => {
    const counted = async () => {
      const outcomes = (await early.metrics.issueOutcomes.get()).values;
      const durations = (await early.metrics.rpcDuration.get()).values;
      return {
        soldOut: outcomes.find((value) => value.labels.outcome === 'sold_out')?.value ?? 0,
        timed:
          durations.find(
            (value) =>
              value.labels.code === 'ResourceExhausted' &&
              value.labels.method === 'IssueCoupon' &&
              'le' in value.labels &&
              value.labels.le === '+Inf',
          )?.value ?? 0,
      };
    };
    const before = await counted();
    const handedBefore = early.handedToConnect;
    await post(early, JSON.stringify({ campaignId: 'sold-out', userId: 'u4' }), json);
    expect(early.handedToConnect).toBe(handedBefore);
    expect(await counted()).toEqual({ soldOut: before.soldOut + 1, timed: before.timed + 1 });
  });

  it('gives Connect clients over HTTP/2 the same refusal, and leaves gRPC to connect', async () => {
    for (const [transport, handedOn] of [
      [createConnectTransport({ baseUrl: early.url, httpVersion: '2', useBinaryFormat: true }), 0],
      [createGrpcTransport({ baseUrl: early.url }), 1],
    ] as const) {
      const client = createClient(CouponService, transport);
      const before = early.handedToConnect;
      const refused = await client.issueCoupon({ campaignId: 'sold-out', userId: 'u5' }).catch((e) => e);
      expect(ConnectError.from(refused)).toMatchObject({
        code: Code.ResourceExhausted,
        rawMessage: 'campaign sold-out is sold out: every coupon has been issued',
      });
      expect(early.handedToConnect - before).toBe(handedOn);
    }
  });
});
