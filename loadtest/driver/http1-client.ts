import net from 'node:net';

export interface Reply {
  readonly status: number;
  readonly body: Buffer;
}

/**
 * A minimal HTTP/1.1 keep-alive connection: one request in flight, requests written as
 * pre-built bytes, replies parsed just enough (status, Content-Length or chunked body). Far
 * cheaper per request than a general HTTP client, so the driver does not become the bottleneck.
 */
export class Http1Connection {
  private readonly socket: net.Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private waiting: { resolve(reply: Reply): void; reject(error: Error): void } | undefined;
  private closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.tryParse();
    });
    const fail = (error: Error) => {
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting?.reject(error);
    };
    socket.on('error', fail);
    socket.on('close', () => {
      this.closed = true;
      fail(new Error('connection closed'));
    });
  }

  static open(host: string, port: number): Promise<Http1Connection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port }, () => resolve(new Http1Connection(socket)));
      socket.once('error', reject);
    });
  }

  send(request: Buffer): Promise<Reply> {
    // The server closes keep-alive connections idle for a few seconds: say so instead of waiting forever.
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(request);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private tryParse(): void {
    const headerEnd = this.buffer.indexOf('\r\n\r\n');
    if (headerEnd < 0 || !this.waiting) return;
    const head = this.buffer.subarray(0, headerEnd).toString('latin1');
    const status = Number(head.slice(9, 12));
    const lengthMatch = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let body: Buffer;
    let consumed: number;
    if (lengthMatch) {
      const length = Number(lengthMatch[1]);
      if (this.buffer.length < headerEnd + 4 + length) return;
      body = this.buffer.subarray(headerEnd + 4, headerEnd + 4 + length);
      consumed = headerEnd + 4 + length;
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      const chunks: Buffer[] = [];
      let offset = headerEnd + 4;
      for (;;) {
        const lineEnd = this.buffer.indexOf('\r\n', offset);
        if (lineEnd < 0) return;
        const size = Number.parseInt(this.buffer.subarray(offset, lineEnd).toString('latin1'), 16);
        if (this.buffer.length < lineEnd + 2 + size + 2) return;
        if (size === 0) {
          consumed = lineEnd + 4;
          break;
        }
        chunks.push(this.buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
        offset = lineEnd + 2 + size + 2;
      }
      body = Buffer.concat(chunks);
    } else {
      body = Buffer.alloc(0);
      consumed = headerEnd + 4;
    }
    const waiting = this.waiting;
    this.waiting = undefined;
    this.buffer = this.buffer.subarray(consumed);
    waiting.resolve({ status, body: Buffer.from(body) });
  }
}

/** A Connect JSON unary request as bytes, ready to write. */
export function connectJsonRequest(
  host: string,
  method: string,
  message: unknown,
  headers: string[] = [],
): Buffer {
  const body = Buffer.from(JSON.stringify(message));
  const head =
    `POST /coupon.v1.CouponService/${method} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n` +
    `${headers.map((h) => `${h}\r\n`).join('')}Content-Length: ${body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

/** The outcome of a reply: "ok", or the Connect error code from the JSON error body. */
export function outcomeOf(reply: Reply): string {
  if (reply.status === 200) return 'ok';
  try {
    return (JSON.parse(reply.body.toString('utf8')) as { code?: string }).code ?? `http_${reply.status}`;
  } catch {
    return `http_${reply.status}`;
  }
}
