/**
 * The no-op handlers of both baselines (noop-server.ts on our stack, plain-noop-server.ts on
 * connect-node alone): answers without I/O. IssueCoupon for the campaign id "sold-out" refuses
 * with RESOURCE_EXHAUSTED instead: the framework's own cost of a refusal, the floor of a storm.
 */
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, type ConnectRouter } from '@connectrpc/connect';
import { refusal } from '../src/api/errors.ts';
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

export function noopRoutes(router: ConnectRouter): void {
  router.service(CouponService, {
    createCampaign: () => create(CreateCampaignResponseSchema, { campaign }),
    getCampaign: () => create(GetCampaignResponseSchema, { campaign }),
    issueCoupon: (request) => {
      if (request.campaignId === 'sold-out') {
        // Refused as the service refuses: the same ConnectError, built the same way.
        throw refusal('campaign sold-out is sold out: every coupon has been issued', Code.ResourceExhausted);
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
  });
}
