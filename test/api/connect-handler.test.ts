import net from 'node:net';
import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConnectHandler } from '../../src/api/connect-handler.ts';
import { createPolyglotServer, type PolyglotServer } from '../../src/api/server.ts';
import { CouponService, IssueCouponResponseSchema } from '../../src/gen/coupon/v1/coupon_pb.js';

const ISSUE_PATH = '/coupon.v1.CouponService/IssueCoupon';
const handlerErrors: unknown[] = [];
const connect = createConnectHandler({
  routes: (router) =>
    router.service(CouponService, {
      issueCoupon: (request) =>
        create(IssueCouponResponseSchema, { coupon: { campaignId: request.campaignId, userId: 'x' } }),
    }),
  onHandlerError: (_method, error) => handlerErrors.push(error),
});

let server: PolyglotServer;
let port: number;
beforeAll(async () => {
  server = createPolyglotServer((request, response) => {
    if (request.headers['x-read-in-part'] === undefined) {
      connect(request, response);
      return;
    }
    // As the early refusal does with a body too large to judge: read a part, hand the rest on.
    const onData = (first: Buffer) => {
      request.off('data', onData);
      request.pause();
      connect(
        request,
        response,
        (async function* () {
          yield first;
          yield* request;
        })(),
      );
    };
    request.on('data', onData);
  });
  port = (await server.listen(0, '127.0.0.1')).port;
});
afterAll(async () => {
  await server.close(100);
});

/** Writes raw bytes on one connection and returns the status of each answer, in order. */
function statusesOf(raw: string, answers: number): Promise<string[]> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    const done = () => {
      socket.destroy();
      resolve([...received.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => match[1] ?? ''));
    };
    socket.on('data', (chunk) => {
      received += chunk;
      if ((received.match(/HTTP\/1\.1 /g) ?? []).length >= answers) setTimeout(done, 20);
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.setTimeout(5_000, done);
    socket.write(raw);
  });
}

const body = JSON.stringify({ campaignId: 'c', userId: 'u' });
const request = (extraHeaders = '', text = body) =>
  `POST ${ISSUE_PATH} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n${extraHeaders}\r\n${text}`;

describe('the connect handler', () => {
  it('answers an HTTP/1.0 request without a Host header 400, and keeps serving', async () => {
    expect(
      await statusesOf(
        `POST ${ISSUE_PATH} HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        1,
      ),
    ).toEqual(['400']);
    expect(await statusesOf(request(), 1)).toEqual(['200']);
  });

  it('drains a body read in part when connect answers without reading the rest, so keep-alive goes on', async () => {
    const large = JSON.stringify({ campaignId: 'c', userId: 'u'.repeat(200_000) });
    // connect refuses the malformed timeout before it reads the body.
    const refused = request('x-read-in-part: 1\r\nconnect-timeout-ms: bogus\r\n', large);
    expect(await statusesOf(refused + request(), 2)).toEqual(['400', '200']);
    expect(handlerErrors).toEqual([]);
  });
});
