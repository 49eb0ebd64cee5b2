import http2 from 'node:http2';
import net from 'node:net';
import { Writable } from 'node:stream';
import { Code, ConnectError, createClient, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, buildApp } from '../../src/app.ts';
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from '../../src/gen/grpc/health/v1/health_pb.js';
import { dropIsolatedStores, isolatedConfig, startApp } from '../support/services.ts';

// Short limits, so every timeout is seen within a second or two; the bounds below are generous
// because these tests share two cores with MySQL, Redis and other test files.
const HEADERS_TIMEOUT_MS = 500;
const REQUEST_TIMEOUT_MS = 1_000;
const IDLE_TIMEOUT_MS = 800;
const SLACK_MS = 5_000;
/** Timers never fire early, but the client's clock starts a little before the server's. */
const EARLY_MS = 50;

/** Rejects when `promise` has not settled within `ms`: a test waits on events, never forever. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** A raw TCP client: what it received, and when the server closed it. */
interface RawClient {
  readonly socket: net.Socket;
  readonly received: () => string;
  /** Resolves once `text` has arrived `times` times in all, with the time it did. */
  readonly until: (text: string, times?: number) => Promise<number>;
  /** Resolves when the socket closes, with milliseconds since connecting and everything received. */
  readonly closed: Promise<{ afterMs: number; received: string }>;
}

async function connectRaw(port: number, send = ''): Promise<RawClient> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  let received = '';
  const count = (text: string) => received.split(text).length - 1;
  const waiting: Array<{ text: string; times: number; resolve: (at: number) => void }> = [];
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
    for (const wait of waiting) if (count(wait.text) >= wait.times) wait.resolve(Date.now());
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const connectedAt = Date.now();
  const closed = new Promise<{ afterMs: number; received: string }>((resolve) =>
    socket.once('close', () => resolve({ afterMs: Date.now() - connectedAt, received })),
  );
  if (send) socket.write(send);
  return {
    socket,
    received: () => received,
    until: (text, times = 1) =>
      count(text) >= times
        ? Promise.resolve(Date.now())
        : new Promise((resolve) => waiting.push({ text, times, resolve })),
    closed,
  };
}

const HEALTHZ = 'GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n';
const HEALTHZ_BODY = '{"status":"ok"}';
const portOf = (baseUrl: string) => Number(new URL(baseUrl).port);

describe('slow and silent clients', () => {
  let env: Awaited<ReturnType<typeof startApp>>;
  let port: number;
  beforeAll(async () => {
    env = await startApp(
      isolatedConfig({
        HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
        HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
        HTTP_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
      }),
    );
    port = portOf(env.baseUrl);
  });
  afterAll(async () => {
    await env?.stop();
  });

  it.each([
    ['nothing', ''],
    ['one byte of an HTTP/1.1 request line', 'P'],
    ['"PRI " only', 'PRI '],
    ['half the HTTP/2 preface', 'PRI * HTTP/2.0\r\n'],
  ])('drops a connection that sends %s after the headers timeout', async (_label, send) => {
    const client = await connectRaw(port, send);
    const { afterMs } = await within(client.closed, HEADERS_TIMEOUT_MS + SLACK_MS, 'close');
    expect(afterMs).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - EARLY_MS);
  });

  it('answers 408 and drops a client that dribbles its headers, although it keeps sending', async () => {
    const client = await connectRaw(port, 'GET /healthz HTTP/1.1\r\nHost: test\r\n');
    let sent = 0;
    const dribble = setInterval(() => {
      if (client.socket.writable) client.socket.write('X-Slow: 1\r\n'.charAt(sent++ % 11));
    }, 20);
    try {
      const { afterMs, received } = await within(client.closed, HEADERS_TIMEOUT_MS + SLACK_MS, 'close');
      expect(received).toMatch(/^HTTP\/1\.1 408 /);
      expect(afterMs).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - EARLY_MS);
      // It was still sending when it was dropped: one byte per 20 ms for the whole time.
      expect(sent).toBeGreaterThan(HEADERS_TIMEOUT_MS / 20 / 2);
    } finally {
      clearInterval(dribble);
    }
  });

  it('answers 408 and drops a request whose body never ends, after the request timeout', async () => {
    const client = await connectRaw(
      port,
      'POST /coupon.v1.CouponService/IssueCoupon HTTP/1.1\r\nHost: test\r\n' +
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"campaignId":',
    );
    const { afterMs, received } = await within(client.closed, REQUEST_TIMEOUT_MS + SLACK_MS, 'close');
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
    expect(afterMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - EARLY_MS);
  });

  it('closes an idle keep-alive HTTP/1.1 connection after the idle timeout, and serves it until then', async () => {
    const client = await connectRaw(port, HEALTHZ);
    await within(client.until(HEALTHZ_BODY), SLACK_MS, 'first response');
    client.socket.write(HEALTHZ);
    const answeredAt = await within(client.until(HEALTHZ_BODY, 2), SLACK_MS, 'second response');
    const { received } = await within(client.closed, IDLE_TIMEOUT_MS + SLACK_MS, 'close');
    expect(Date.now() - answeredAt).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - EARLY_MS);
    expect(received.match(/HTTP\/1\.1 200 /g)).toHaveLength(2);
  });

  it('resets an HTTP/2 stream whose body never ends after the request timeout, and keeps the session', async () => {
    const session = http2.connect(env.baseUrl);
    session.on('error', () => undefined);
    try {
      const startedAt = Date.now();
      const stream = session.request({
        ':method': 'POST',
        ':path': '/coupon.v1.CouponService/IssueCoupon',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      stream.on('error', () => undefined);
      stream.resume();
      stream.write(Buffer.from([0, 0, 0, 0, 100])); // a gRPC frame of 100 bytes, none of which follow
      await within(
        new Promise((resolve) => stream.once('close', resolve)),
        REQUEST_TIMEOUT_MS + SLACK_MS,
        'reset',
      );
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - EARLY_MS);

      const next = session.request({ ':path': '/healthz' });
      const status = await within(
        new Promise((resolve) => next.once('response', (headers) => resolve(headers[':status']))),
        SLACK_MS,
        'second stream',
      );
      next.resume();
      expect(status).toBe(200);
    } finally {
      session.destroy();
    }
  });

  it('says GOAWAY to an HTTP/2 session that opens no stream within the headers timeout', async () => {
    const session = http2.connect(env.baseUrl);
    session.on('error', () => undefined);
    const startedAt = Date.now();
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code) => resolve(code)));
    await within(
      new Promise((resolve) => session.once('close', resolve)),
      HEADERS_TIMEOUT_MS + SLACK_MS,
      'close',
    );
    expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - EARLY_MS);
  });

  it('says GOAWAY to an HTTP/2 session with no open stream after the idle timeout', async () => {
    const session = http2.connect(env.baseUrl);
    session.on('error', () => undefined);
    const stream = session.request({ ':path': '/healthz' });
    stream.resume();
    await within(new Promise((resolve) => stream.once('close', resolve)), SLACK_MS, 'response');
    const answeredAt = Date.now();
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code) => resolve(code)));
    await within(
      new Promise((resolve) => session.once('close', resolve)),
      IDLE_TIMEOUT_MS + SLACK_MS,
      'close',
    );
    expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expect(Date.now() - answeredAt).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - EARLY_MS);
  });

  const transports: Array<[string, () => Transport]> = [
    ['gRPC over h2c', () => createGrpcTransport({ baseUrl: env.baseUrl })],
    [
      'Connect JSON over HTTP/1.1',
      () => createConnectTransport({ baseUrl: env.baseUrl, httpVersion: '1.1' }),
    ],
  ];

  it.each(transports)('answers a normal call over %s', async (_label, transport) => {
    const health = createClient(Health, transport());
    expect((await health.check({ service: '' })).status).toBe(ServingStatus.SERVING);
  });

  it.each(transports)(
    'lets a server stream over %s run past the request and idle timeouts',
    async (_label, transport) => {
      const health = createClient(Health, transport());
      const runFor = 3 * REQUEST_TIMEOUT_MS;
      const startedAt = Date.now();
      const statuses: ServingStatus[] = [];
      let ending: unknown;
      try {
        for await (const { status } of health.watch(
          { service: '' },
          { signal: AbortSignal.timeout(runFor) },
        )) {
          statuses.push(status);
        }
      } catch (error) {
        ending = error;
      }
      // Only our own abort ended it: the server neither reset nor ended the call.
      expect(ConnectError.from(ending).code).toBe(Code.Canceled);
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(runFor - EARLY_MS);
      expect(statuses[0]).toBe(ServingStatus.SERVING);
    },
  );
});

describe('MAX_CONNECTIONS', () => {
  const config = isolatedConfig({ MAX_CONNECTIONS: '3' });
  const logs: Array<{ msg: string; refused?: number }> = [];
  let app: App;
  let port: number;
  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logs.push(JSON.parse(chunk.toString()));
        done();
      },
    });
    app = await buildApp(config, pino({ level: 'warn' }, sink));
    port = (await app.listen()).port;
  });
  afterAll(async () => {
    await dropIsolatedStores(app.services, config);
    await app.close();
  });

  it('closes new connections beyond it at once, keeps serving the others, and takes one again when they go', async () => {
    const first = await connectRaw(port, HEALTHZ);
    const held = [first, ...(await Promise.all([2, 3].map(() => connectRaw(port, HEALTHZ))))];
    await Promise.all(held.map((client) => within(client.until(HEALTHZ_BODY), SLACK_MS, 'response')));

    for (const _ of [1, 2]) {
      const refused = await connectRaw(port, HEALTHZ);
      const { afterMs, received } = await within(refused.closed, SLACK_MS, 'refusal');
      expect(received).toBe('');
      expect(afterMs).toBeLessThan(1_000);
    }
    // Logged once, not once per refusal.
    expect(logs.filter((line) => line.msg === 'refused new connections')).toEqual([
      expect.objectContaining({ refused: 1 }),
    ]);

    first.socket.write(HEALTHZ);
    await within(first.until(HEALTHZ_BODY, 2), SLACK_MS, 'a held connection answers');

    for (const client of held) client.socket.destroy();
    // The server counts a connection off when its own side has closed, a moment after ours.
    const deadline = Date.now() + SLACK_MS;
    let answered = '';
    while (!answered.includes('200 OK') && Date.now() < deadline) {
      const client = await connectRaw(port, HEALTHZ);
      await within(Promise.race([client.until(HEALTHZ_BODY), client.closed]), SLACK_MS, 'answer or close');
      answered = client.received();
      client.socket.destroy();
    }
    expect(answered).toMatch(/^HTTP\/1\.1 200 /);
  });
});

describe('drain', () => {
  it('cuts at once connections with no call in flight, far below the grace', async () => {
    const graceMs = 30_000;
    const config = isolatedConfig({ SHUTDOWN_GRACE_MS: String(graceMs) });
    const app = await buildApp(config, pino({ level: 'silent' }));
    const { port } = await app.listen();
    await dropIsolatedStores(app.services, config);

    const silent = await connectRaw(port);
    const preface = await connectRaw(port, 'PRI ');
    const halfHeaders = await connectRaw(port, 'GET /healthz HTTP/1.1\r\nHost: te');
    const idle = await connectRaw(port, HEALTHZ);
    await within(idle.until(HEALTHZ_BODY), SLACK_MS, 'response');
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    const stream = session.request({ ':path': '/healthz' });
    stream.resume();
    await within(new Promise((resolve) => stream.once('close', resolve)), SLACK_MS, 'h2 response');

    const startedAt = Date.now();
    await within(app.close(), graceMs, 'close');
    const tookMs = Date.now() - startedAt;
    await Promise.all([silent, preface, halfHeaders, idle].map((client) => client.closed));
    expect(session.closed || session.destroyed).toBe(true);
    console.info(`drain with idle connections open took ${tookMs} ms (grace ${graceMs} ms)`);
    expect(tookMs).toBeLessThan(3_000);
  });
});
