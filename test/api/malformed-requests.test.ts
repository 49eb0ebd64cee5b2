import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp } from '../support/services.ts';

let env: Awaited<ReturnType<typeof startApp>>;
beforeAll(async () => {
  env = await startApp();
});
afterAll(async () => {
  await env?.stop();
});

const ISSUE = '/coupon.v1.CouponService/IssueCoupon';
const HEALTH_WATCH = '/grpc.health.v1.Health/Watch';

/** Request bodies no IssueCouponRequest decodes from. */
const MALFORMED: Record<string, Buffer> = {
  'invalid UTF-8 in a string': Buffer.from([0x0a, 0x02, 0xff, 0xfe]),
  'a truncated field': Buffer.from([0x0a, 0x05, 0x61]),
  'an illegal tag': Buffer.from([0x00, 0x01]),
  'groups nested past the recursion limit': Buffer.concat(
    Array.from({ length: 1_000 }, () => Buffer.from([0x9b, 0x06])),
  ),
};

function enveloped(message: Buffer, flags = 0): Buffer {
  const header = Buffer.alloc(5);
  header[0] = flags;
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

async function grpcStatus(path: string, body: Buffer): Promise<{ status?: string; message?: string }> {
  const session = http2.connect(env.baseUrl);
  try {
    const stream = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    stream.end(enveloped(body));
    return await new Promise((resolve, reject) => {
      let headers: http2.IncomingHttpHeaders = {};
      stream.on('response', (h) => {
        headers = h;
      });
      const settle = (t: http2.IncomingHttpHeaders) =>
        resolve({
          status: String(t['grpc-status'] ?? headers['grpc-status']),
          message: decodeURIComponent(String(t['grpc-message'] ?? headers['grpc-message'] ?? '')),
        });
      stream.on('trailers', settle);
      stream.on('end', () => settle({}));
      stream.on('error', reject);
      stream.resume();
    });
  } finally {
    session.close();
  }
}

/** The last envelope of a streamed body: gRPC-Web trailers, or a Connect end-of-stream message. */
function lastEnvelope(body: Buffer): { flags: number; text: string } {
  let offset = 0;
  let last = { flags: -1, text: '' };
  while (offset + 5 <= body.length) {
    const length = body.readUInt32BE(offset + 1);
    last = { flags: body[offset] as number, text: body.subarray(offset + 5, offset + 5 + length).toString() };
    offset += 5 + length;
  }
  return last;
}

describe.each(Object.entries(MALFORMED))('a request message with %s', (_label, message) => {
  it('is INVALID_ARGUMENT over Connect binary (HTTP 400), never INTERNAL', async () => {
    const answer = await fetch(`${env.baseUrl}${ISSUE}`, {
      method: 'POST',
      headers: { 'content-type': 'application/proto' },
      body: message,
    });
    const error = (await answer.json()) as { code: string; message: string };
    expect([answer.status, error.code]).toEqual([400, 'invalid_argument']);
    expect(error.message).toMatch(/^parse binary: /);
  });

  it('is INVALID_ARGUMENT over gRPC', async () => {
    expect((await grpcStatus(ISSUE, message)).status).toBe('3');
  });

  it('is INVALID_ARGUMENT over gRPC-Web', async () => {
    const answer = await fetch(`${env.baseUrl}${ISSUE}`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto' },
      body: enveloped(message),
    });
    const trailer = lastEnvelope(Buffer.from(await answer.arrayBuffer()));
    expect(trailer.flags).toBe(0x80);
    expect(trailer.text).toMatch(/^grpc-status: 3\r$/m);
  });

  it('is INVALID_ARGUMENT on a Connect server stream', async () => {
    const answer = await fetch(`${env.baseUrl}${HEALTH_WATCH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/connect+proto' },
      body: enveloped(message),
    });
    const end = lastEnvelope(Buffer.from(await answer.arrayBuffer()));
    expect(end.flags).toBe(0x02);
    expect((JSON.parse(end.text) as { error: { code: string } }).error.code).toBe('invalid_argument');
  });
});

describe('errors that are not parse failures', () => {
  it('keep their own codes on every protocol', async () => {
    // A well-formed message for an id no campaign has.
    const notFound = Buffer.concat([
      Buffer.from([0x0a, 0x07]),
      Buffer.from('missing'),
      Buffer.from([0x12, 0x01, 0x75]),
    ]);
    expect((await grpcStatus(ISSUE, notFound)).status).toBe('5');
    const answer = await fetch(`${env.baseUrl}${ISSUE}`, {
      method: 'POST',
      headers: { 'content-type': 'application/proto' },
      body: notFound,
    });
    expect(answer.status).toBe(404);
  });
});
