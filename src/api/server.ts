import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';

export type RequestHandler = (
  request: http.IncomingMessage | http2.Http2ServerRequest,
  response: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/** How long a connection may keep the server waiting, and how many it may hold open. */
export interface ConnectionLimits {
  /**
   * The first bytes of a connection must arrive within this; then an HTTP/1.1 request's headers
   * must be complete within this of its first byte (Node answers 408), and an HTTP/2 connection
   * must open its first stream within this of its first bytes.
   */
  readonly headersTimeoutMs: number;
  /**
   * A whole request, headers and body, must be received within this (HTTP/1.1: 408; HTTP/2: the
   * stream is reset). It never limits the response: a server stream may run for as long as it likes.
   */
  readonly requestTimeoutMs: number;
  /** A connection with no request in flight (HTTP/2: no open stream) is closed after this. */
  readonly idleTimeoutMs: number;
  /** Connections this process holds at most; beyond it new ones are closed at once. */
  readonly maxConnections: number;
}

export interface PolyglotServerOptions {
  readonly limits?: ConnectionLimits;
  /**
   * Told how many connections were refused over `maxConnections` (or could not be accepted): at
   * once for the first, then at most once per 10 s with the count since, so a flood is one line.
   */
  readonly onConnectionsRefused?: (refused: number, cause: string) => void;
}

/** The defaults of src/config.ts, for servers built without a config (tests, the load-test baseline). */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 60_000,
  maxConnections: 10_000,
};

const REFUSALS_REPORTED_EVERY_MS = 10_000;

/** The largest stream id: a GOAWAY naming it announces shutdown without refusing any stream yet. */
const ANY_STREAM = 2 ** 31 - 1;
const GOAWAY_ROUND_TRIP_LIMIT_MS = 1_000;

/**
 * The two-step HTTP/2 shutdown: a first GOAWAY tells the client to open no new streams here, a
 * PING round trip proves it heard that, and only then the final GOAWAY. Closing at once would
 * refuse (REFUSED_STREAM) the streams the client had already sent.
 */
async function closeSessionGracefully(session: http2.ServerHttp2Session): Promise<void> {
  if (session.closed || session.destroyed) return;
  session.goaway(http2.constants.NGHTTP2_NO_ERROR, ANY_STREAM);
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      session.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, GOAWAY_ROUND_TRIP_LIMIT_MS);
    // A client with nothing in flight may hang up on the GOAWAY instead of answering the PING.
    session.once('close', done);
    if (!session.ping(done)) done();
  });
  if (!session.closed && !session.destroyed) session.close();
}

/**
 * Ends a session that has no open stream: GOAWAY (the client retries elsewhere whatever it was
 * about to send), then the socket is cut if the client does not hang up within a round trip.
 */
function closeIdleSession(session: http2.ServerHttp2Session): void {
  if (session.closed || session.destroyed) return;
  session.close();
  setTimeout(() => session.destroy(), GOAWAY_ROUND_TRIP_LIMIT_MS).unref();
}

/** What the server knows of one HTTP/2 session. */
interface SessionState {
  /** The client's preface and SETTINGS arrived; until then there is nobody to say GOAWAY to. */
  established: boolean;
}

/**
 * Node has no headers, request or idle timeout for HTTP/2 streams; these are ours. Until the
 * first stream opens the session has `headersTimeoutMs`; whenever no stream is open, it has
 * `idleTimeoutMs` (frames without a stream, such as PINGs, do not keep it); each stream must have
 * received its whole request within `requestTimeoutMs` of its headers, or it is reset.
 */
function superviseSession(session: http2.ServerHttp2Session, state: SessionState, limits: ConnectionLimits) {
  session.once('remoteSettings', () => {
    state.established = true;
  });
  const end = () => (state.established ? closeIdleSession(session) : session.destroy());
  let openStreams = 0;
  let quiet = setTimeout(end, limits.headersTimeoutMs);
  session.on('stream', (stream) => {
    openStreams += 1;
    clearTimeout(quiet);
    const deadline = setTimeout(() => {
      // `remoteClose` is the client's END_STREAM, whether or not the handler has read the body yet.
      if (!stream.closed && stream.state.remoteClose !== 1) stream.close(http2.constants.NGHTTP2_CANCEL);
    }, limits.requestTimeoutMs);
    stream.once('close', () => {
      clearTimeout(deadline);
      openStreams -= 1;
      if (openStreams === 0 && !session.closed && !session.destroyed) {
        quiet = setTimeout(end, limits.idleTimeoutMs);
      }
    });
  });
  session.once('close', () => clearTimeout(quiet));
}

/** Counts refusals and reports them at once, then at most once per interval. */
function refusalReporter(report: (refused: number, cause: string) => void) {
  let unreported = 0;
  let cause = '';
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    if (unreported === 0) return;
    report(unreported, cause);
    unreported = 0;
    timer = setTimeout(flush, REFUSALS_REPORTED_EVERY_MS).unref();
  };
  return {
    refused(why: string) {
      unreported += 1;
      cause = why;
      if (!timer) flush();
    },
    /** Stops the interval, reporting what it had not said yet. */
    stop() {
      clearTimeout(timer);
      if (unreported > 0) report(unreported, cause);
      unreported = 0;
    },
  };
}

/** Concurrent streams per HTTP/2 connection (a gRPC client multiplexes its calls within this). */
export const MAX_STREAMS_PER_CONNECTION = 100;

/** Every HTTP/2 connection opens with this preface; no HTTP/1.1 request line starts with "PRI ". */
const HTTP2_PREFACE_START = Buffer.from('PRI ');

/** What each open connection is, so a drain knows which ones it may cut at once. */
interface Connection {
  protocol: 'unknown' | 'http1' | 'http2';
  /** HTTP/1.1 requests whose response has not finished. */
  requestsInFlight: number;
  /** Since when it has had no request in flight (and, before it is handed over, no bytes). */
  quietSince: number;
}

/**
 * A drain cuts a connection with no request in flight only once it has been quiet this long: a
 * keep-alive client may have just sent its next request on it, and cutting that in flight would
 * leave the client not knowing whether the call ran. A live client's next request arrives well
 * within this; a silent one is cut a moment later instead of at the end of the grace.
 */
const QUIET_BEFORE_DRAIN_CUT_MS = 250;

export interface PolyglotServer {
  listen(port: number, host: string): Promise<net.AddressInfo>;
  /**
   * Stops accepting, cuts the connections with no call in flight as soon as they are quiet, lets
   * in-flight calls finish for up to `graceMs`, then cuts what is left.
   */
  close(graceMs: number): Promise<void>;
}

/**
 * One cleartext port for HTTP/1.1 (browsers, Connect, gRPC-Web) and HTTP/2 with prior knowledge
 * (gRPC). Node's h2c server refuses HTTP/1.1, so each connection's first bytes decide which
 * server gets it.
 */
export function createPolyglotServer(
  handler: RequestHandler,
  options: PolyglotServerOptions = {},
): PolyglotServer {
  const limits = options.limits ?? DEFAULT_CONNECTION_LIMITS;
  const connections = new Map<net.Socket, Connection>();
  let draining = false;
  const serve: RequestHandler = (request, response) => {
    if (request.httpVersionMajor === 1) {
      const connection = connections.get(request.socket as net.Socket);
      if (connection) {
        connection.requestsInFlight += 1;
        response.once('close', () => {
          connection.requestsInFlight -= 1;
          if (connection.requestsInFlight === 0) connection.quietSince = Date.now();
        });
      }
      // While draining, HTTP/1.1 responses end their connection so keep-alive clients move on.
      if (draining) response.setHeader('connection', 'close');
    }
    handler(request, response);
  };

  const http1 = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      // Node waits this much beyond the Keep-Alive timeout it announces; ours is the setting itself.
      keepAliveTimeoutBuffer: 0,
      // Node checks the two timeouts above on this interval: a tenth of the shorter, at most 1 s.
      connectionsCheckingInterval: Math.min(1_000, Math.ceil(limits.headersTimeoutMs / 10)),
    },
    serve,
  );
  // Node 24 (lib/_http_server.js, setupConnectionsTracking) starts tracking connections and
  // checking headersTimeout/requestTimeout in a 'listening' handler, so a server that is handed
  // its sockets with emit('connection') and never listens has neither. This server never
  // listens; saying it does starts both. The two 408 tests of test/api/slow-clients.test.ts fail
  // if a Node upgrade moves that start elsewhere.
  http1.emit('listening');

  // Streams one HTTP/2 connection may hold open at once: Node's default is unbounded, and every
  // stream whose body never ends is buffered until the request timeout, so one connection could
  // otherwise hold any amount of memory. 100 is what RFC 9113 recommends as the least to allow.
  const h2c = http2.createServer({ settings: { maxConcurrentStreams: MAX_STREAMS_PER_CONNECTION } }, serve);
  const sessions = new Map<http2.ServerHttp2Session, SessionState>();
  h2c.on('session', (session) => {
    const state: SessionState = { established: false };
    sessions.set(session, state);
    session.once('close', () => sessions.delete(session));
    superviseSession(session, state, limits);
  });

  const refusals = refusalReporter(options.onConnectionsRefused ?? (() => undefined));
  const tcp = net.createServer((socket) => {
    const connection: Connection = { protocol: 'unknown', requestsInFlight: 0, quietSince: Date.now() };
    connections.set(socket, connection);
    socket.on('error', () => socket.destroy());
    // A client that never says which protocol it speaks, or says "PRI" and stops, goes here.
    const firstBytes = setTimeout(() => socket.destroy(), limits.headersTimeoutMs);
    socket.once('close', () => {
      clearTimeout(firstBytes);
      connections.delete(socket);
    });
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const compared = Math.min(head.length, HTTP2_PREFACE_START.length);
      const isHttp2 = head.subarray(0, compared).equals(HTTP2_PREFACE_START.subarray(0, compared));
      if (isHttp2 && head.length < HTTP2_PREFACE_START.length) return;
      clearTimeout(firstBytes);
      connection.quietSince = Date.now();
      socket.off('data', onData);
      socket.pause();
      socket.unshift(head);
      // The http2 session drains the socket's buffer into itself by hand and then reads natively;
      // the HTTP/1.1 parser reads through stream events, so its socket must flow again.
      if (isHttp2) {
        connection.protocol = 'http2';
        h2c.emit('connection', socket);
      } else {
        connection.protocol = 'http1';
        http1.emit('connection', socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
  });
  // Node closes connections over this count as they are accepted, and says so with 'drop'.
  tcp.maxConnections = limits.maxConnections;
  tcp.on('drop', () => refusals.refused('max connections reached'));

  /** Connections that are not yet a request, or sit between requests: nothing is lost by cutting them. */
  const dropConnectionsWithoutCalls = () => {
    const quietSince = Date.now() - QUIET_BEFORE_DRAIN_CUT_MS;
    for (const [socket, connection] of connections) {
      const withoutCall =
        connection.protocol === 'unknown' ||
        (connection.protocol === 'http1' && connection.requestsInFlight === 0);
      if (withoutCall && connection.quietSince <= quietSince) socket.destroy();
    }
    for (const [session, state] of sessions) if (!state.established) session.destroy();
  };

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, host, () => {
          tcp.off('error', reject);
          // Out of file descriptors, accept fails; that refuses a client, it must not end the process.
          tcp.on('error', (error: NodeJS.ErrnoException) => refusals.refused(error.code ?? error.message));
          resolve(tcp.address() as net.AddressInfo);
        });
      });
    },

    async close(graceMs) {
      draining = true;
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      dropConnectionsWithoutCalls();
      await Promise.all([...sessions.keys()].map(closeSessionGracefully));
      const deadline = Date.now() + graceMs;
      while (connections.size > 0 && Date.now() < deadline) {
        dropConnectionsWithoutCalls();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      for (const socket of connections.keys()) socket.destroy();
      // Stops Node's timeout checks. Not earlier: it also cuts every connection Node sees between
      // requests, with no regard for a request the client may have just sent.
      http1.close();
      refusals.stop();
      await closed;
    },
  };
}
