import { create } from '@bufbuild/protobuf';
import { type Timestamp, timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import type { CampaignService } from '../application/campaign-service.ts';
import type { CouponIssuer } from '../application/issue-coupon.ts';
import type { Campaign } from '../domain/campaign.ts';
import { InvalidArgumentError } from '../domain/errors.ts';
import {
  type Campaign as CampaignMessage,
  CampaignSchema,
  CouponSchema,
  type CouponService,
  CreateCampaignResponseSchema,
  GetCampaignResponseSchema,
  IssueCouponResponseSchema,
} from '../gen/coupon/v1/coupon_pb.js';
import { callerIsAdminKey } from './admin-auth.ts';

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

/**
 * A Timestamp as the instant it names, refusing what the well-known type forbids (nanos outside
 * 0..999,999,999) rather than folding it into a neighbouring second; the domain checks the range.
 */
function instantOf(field: string, timestamp: Timestamp | undefined): Date | undefined {
  if (!timestamp) return undefined;
  if (timestamp.nanos < 0 || timestamp.nanos > 999_999_999) {
    throw new InvalidArgumentError(field, `${field}.nanos must be between 0 and 999999999`);
  }
  // Far outside any storable year: refused by the domain, without a float that overflows Date.
  if (timestamp.seconds < -1n << 40n || timestamp.seconds > 1n << 40n) return new Date(Number.NaN);
  return timestampDate(timestamp);
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
        issuedAt: instantOf('issued_at', request.issuedAt),
        expiresAt: instantOf('expires_at', request.expiresAt),
      });
      return create(CreateCampaignResponseSchema, { campaign: toCampaignMessage(campaign) });
    },

    async getCampaign(request, context) {
      // Codes are bearer secrets: with an admin token configured, only admins see them.
      const { campaign, couponCodes } = await deps.campaigns.getCampaign(request.name, {
        withCodes: context.values.get(callerIsAdminKey),
      });
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
