/**
 * The no-op baseline: the same server stack as the service (one port, HTTP/1.1 + h2c sniffing,
 * connect-node adapter, CORS), with handlers that do no I/O. The gap between this and the real
 * service is what issuing itself costs. IssueCoupon for the campaign id "sold-out" refuses with
 * RESOURCE_EXHAUSTED instead: the framework's own cost of a refusal, the floor of a sold-out storm.
 */
import type http from 'node:http';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { createConnectHandler } from '../src/api/connect-handler.ts';
import { corsMiddleware } from '../src/api/cors.ts';
import { refusal } from '../src/api/errors.ts';
import { createPolyglotServer } from '../src/api/server.ts';
import {
  CampaignSchema,
  CouponSchema,
  CouponService,
  CreateCampaignResponseSchema,
  GetCampaignResponseSchema,
  IssueCouponResponseSchema,
} from '../src/gen/coupon/v1/coupon_pb.js';

const issuedAt = timestampFromDate(new Date());
const campaign = create(CampaignSchema, {
  id: 'noop',
  name: 'noop',
  amount: 1n,
  issuedAt,
  expiresAt: issuedAt,
});

const rpc = createConnectHandler({
  onHandlerError: (method, error) => console.error(`answering ${method} failed`, error),
  routes: (router) =>
    router.service(CouponService, {
      createCampaign: () => create(CreateCampaignResponseSchema, { campaign }),
      getCampaign: () => create(GetCampaignResponseSchema, { campaign }),
      issueCoupon: (request) => {
        if (request.campaignId === 'sold-out') {
          // Refused as the service refuses: the same ConnectError, built the same way.
          throw refusal(
            'campaign sold-out is sold out: every coupon has been issued',
            Code.ResourceExhausted,
          );
        }
        return create(IssueCouponResponseSchema, {
          coupon: create(CouponSchema, {
            code: '가나다라마바사아자1',
            campaignId: request.campaignId,
            userId: request.userId,
            issuedAt,
          }),
        });
      },
    }),
});
const cors = corsMiddleware([]);
const server = createPolyglotServer((request, response) =>
  cors(request as http.IncomingMessage, response as http.ServerResponse, () => rpc(request, response)),
);
const address = await server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
console.log(JSON.stringify({ msg: 'coupon-service listening', port: address.port }));
process.once('SIGTERM', () => server.close(1_000).then(() => process.exit(0)));
