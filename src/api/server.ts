import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';

type RequestHandler = (
  request: http.IncomingMessage | http2.Http2ServerRequest,
  response: http.ServerResponse | http2.Http2ServerResponse,
) => void;

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
    const timer = setTimeout(resolve, GOAWAY_ROUND_TRIP_LIMIT_MS);
    const sent = session.ping(() => {
      clearTimeout(timer);
      resolve();
    });
    if (!sent) {
      clearTimeout(timer);
      resolve();
    }
  });
  if (!session.closed && !session.destroyed) session.close();
}

/** Every HTTP/2 connection opens with this preface; no HTTP/1.1 request line starts with "PRI ". */
const HTTP2_PREFACE_START = Buffer.from('PRI ');

export interface PolyglotServer {
  listen(port: number, host: string): Promise<net.AddressInfo>;
  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then cuts what is left. */
  close(graceMs: number): Promise<void>;
}

/**
 * One cleartext port for HTTP/1.1 (browsers, Connect, gRPC-Web) and HTTP/2 with prior knowledge
 * (gRPC). Node's h2c server refuses HTTP/1.1, so each connection's first bytes decide which
 * server gets it.
 */
export function createPolyglotServer(handler: RequestHandler): PolyglotServer {
  let draining = false;
  const serve: RequestHandler = (request, response) => {
    // While draining, HTTP/1.1 responses end their connection so keep-alive clients move on.
    if (draining && request.httpVersionMajor === 1) response.setHeader('connection', 'close');
    handler(request, response);
  };
  const http1 = http.createServer(serve);
  const h2c = http2.createServer({}, serve);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2c.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });

  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const compared = Math.min(head.length, HTTP2_PREFACE_START.length);
      const isHttp2 = head.subarray(0, compared).equals(HTTP2_PREFACE_START.subarray(0, compared));
      if (isHttp2 && head.length < HTTP2_PREFACE_START.length) return;
      socket.off('data', onData);
      socket.pause();
      socket.unshift(head);
      // The http2 session drains the socket's buffer into itself by hand and then reads natively;
      // the HTTP/1.1 parser reads through stream events, so its socket must flow again.
      if (isHttp2) {
        h2c.emit('connection', socket);
      } else {
        http1.emit('connection', socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
  });

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, host, () => {
          tcp.off('error', reject);
          resolve(tcp.address() as net.AddressInfo);
        });
      });
    },

    async close(graceMs) {
      draining = true;
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      await Promise.all([...sessions].map(closeSessionGracefully));
      const deadline = Date.now() + graceMs;
      while (sockets.size > 0 && Date.now() < deadline) {
        http1.closeIdleConnections();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
