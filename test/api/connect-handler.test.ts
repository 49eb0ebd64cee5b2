import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectJsonRequest, Http1Connection } from '../../loadtest/driver/http1-client.ts';
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

const target = () => `127.0.0.1:${port}`;
const small = { campaignId: 'c', userId: 'u' };

/** Sends requests one after the other on one keep-alive connection; the status of each answer. */
async function statusesOf(...requests: Buffer[]): Promise<number[]> {
  const connection = await Http1Connection.open('127.0.0.1', port);
  try {
    const statuses: number[] = [];
    for (const request of requests) statuses.push((await connection.send(request)).status);
    return statuses;
  } finally {
    connection.close();
  }
}

describe('the connect handler', () => {
  it('answers an HTTP/1.0 request without a Host header 400, and keeps serving', async () => {
    const body = JSON.stringify(small);
    const withoutHost = Buffer.from(
      `POST ${ISSUE_PATH} HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    );
    expect(await statusesOf(withoutHost)).toEqual([400]);
    expect(await statusesOf(connectJsonRequest(target(), 'IssueCoupon', small))).toEqual([200]);
  });

  it('drains a body read in part when connect answers without reading the rest, so keep-alive goes on', async () => {
    // connect refuses the malformed timeout before it reads the body.
    const refused = connectJsonRequest(
      target(),
      'IssueCoupon',
      { campaignId: 'c', userId: 'u'.repeat(200_000) },
      ['x-read-in-part: 1', 'connect-timeout-ms: bogus'],
    );
    expect(await statusesOf(refused, connectJsonRequest(target(), 'IssueCoupon', small))).toEqual([400, 200]);
    expect(handlerErrors).toEqual([]);
  });
});
