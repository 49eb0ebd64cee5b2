import { create } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import type { CampaignService } from '../application/campaign-service.ts';
import type { CouponIssuer } from '../application/issue-coupon.ts';
import type { Campaign } from '../domain/campaign.ts';
import {
  type Campaign as CampaignMessage,
  CampaignSchema,
  CouponSchema,
  type CouponService,
  CreateCampaignResponseSchema,
  GetCampaignResponseSchema,
  IssueCouponResponseSchema,
} from '../gen/coupon/v1/coupon_pb.js';

function toCampaignMessage(campaign: Campaign): CampaignMessage {
  return create(CampaignSchema, {
    id: campaign.id,
    name: campaign.name,
    amount: BigInt(campaign.amount),
    issuedCount: BigInt(campaign.issuedCount),
    issuedAt: timestampFromDate(campaign.issuedAt),
    expiresAt: timestampFromDate(campaign.expiresAt),
  });
}

/** The generated service's face: proto messages in, application calls, proto messages out. */
export function couponServiceImpl(deps: {
  campaigns: CampaignService;
  issuer: CouponIssuer;
}): ServiceImpl<typeof CouponService> {
  return {
    async createCampaign(request) {
      const campaign = await deps.campaigns.createCampaign({
        name: request.name,
        amount: request.amount,
        issuedAt: request.issuedAt && timestampDate(request.issuedAt),
        expiresAt: request.expiresAt && timestampDate(request.expiresAt),
      });
      return create(CreateCampaignResponseSchema, { campaign: toCampaignMessage(campaign) });
    },

    async getCampaign(request) {
      const { campaign, couponCodes } = await deps.campaigns.getCampaign(request.name);
      return create(GetCampaignResponseSchema, { campaign: toCampaignMessage(campaign), couponCodes });
    },

    async issueCoupon(request) {
      const coupon = await deps.issuer.issueCoupon(request.campaignId, request.userId);
      return create(IssueCouponResponseSchema, {
        coupon: create(CouponSchema, { ...coupon, issuedAt: timestampFromDate(coupon.issuedAt) }),
      });
    },
  };
}
