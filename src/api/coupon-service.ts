import { create } from '@bufbuild/protobuf';
import { type Timestamp, timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import type { CampaignOperations } from '../application/campaign-operations.ts';
import type { CampaignService } from '../application/campaign-service.ts';
import type { CampaignWatch } from '../application/campaign-watch.ts';
import type { CouponIssuer } from '../application/issue-coupon.ts';
import type { CampaignState, CampaignView } from '../domain/campaign.ts';
import { InvalidArgumentError } from '../domain/errors.ts';
import {
  CampaignEventSchema,
  type Campaign as CampaignMessage,
  CampaignSchema,
  CampaignState as CampaignStateMessage,
  CloseCampaignResponseSchema,
  CouponSchema,
  type CouponService,
  CreateCampaignResponseSchema,
  GetCampaignResponseSchema,
  IssueCouponResponseSchema,
  ListCampaignEventsResponseSchema,
  ListCampaignsResponseSchema,
  ListCouponsResponseSchema,
  UpdateCampaignAmountResponseSchema,
  WatchCampaignResponseSchema,
} from '../gen/coupon/v1/coupon_pb.js';
import { adminActorKey, callerIsAdminKey } from './admin-auth.ts';
import { toConnectError } from './errors.ts';

const STATE_MESSAGE: Record<CampaignState, CampaignStateMessage> = {
  scheduled: CampaignStateMessage.SCHEDULED,
  open: CampaignStateMessage.OPEN,
  'sold-out': CampaignStateMessage.SOLD_OUT,
  ended: CampaignStateMessage.ENDED,
};

const STATE_OF_MESSAGE = new Map<CampaignStateMessage, CampaignState>(
  Object.entries(STATE_MESSAGE).map(([state, message]) => [message, state as CampaignState]),
);

function toCampaignMessage(campaign: CampaignView): CampaignMessage {
  return create(CampaignSchema, {
    id: campaign.id,
    name: campaign.name,
    amount: BigInt(campaign.amount),
    issuedCount: BigInt(campaign.issuedCount),
    issuedAt: timestampFromDate(campaign.issuedAt),
    expiresAt: timestampFromDate(campaign.expiresAt),
    state: STATE_MESSAGE[campaign.state],
  });
}

/** The state filter of ListCampaigns: unset lists all; a number the enum does not name is refused. */
function stateFilterOf(state: CampaignStateMessage): CampaignState | undefined {
  if (state === CampaignStateMessage.UNSPECIFIED) return undefined;
  const known = STATE_OF_MESSAGE.get(state);
  if (!known) throw new InvalidArgumentError('state', `state ${state} is not a CampaignState`);
  return known;
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
  operations: CampaignOperations;
  watch: CampaignWatch;
}): ServiceImpl<typeof CouponService> {
  return {
    async createCampaign(request, context) {
      const campaign = await deps.campaigns.createCampaign(
        {
          name: request.name,
          amount: request.amount,
          issuedAt: instantOf('issued_at', request.issuedAt),
          expiresAt: instantOf('expires_at', request.expiresAt),
        },
        context.values.get(adminActorKey),
      );
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

    async listCampaigns(request) {
      const state = stateFilterOf(request.state);
      const page = await deps.campaigns.listCampaigns({
        pageSize: request.pageSize,
        pageToken: request.pageToken,
        ...(state ? { state } : {}),
      });
      return create(ListCampaignsResponseSchema, {
        campaigns: page.items.map(toCampaignMessage),
        nextPageToken: page.nextPageToken,
      });
    },

    async *watchCampaign(request, context) {
      // A stream's errors surface while it is read, after the interceptors have returned: map them here.
      try {
        for await (const campaign of deps.watch.watch(request.campaignId, context.signal)) {
          yield create(WatchCampaignResponseSchema, { campaign: toCampaignMessage(campaign) });
        }
      } catch (error) {
        throw toConnectError(error);
      }
    },

    async closeCampaign(request, context) {
      const campaign = await deps.operations.closeCampaign(
        request.campaignId,
        context.values.get(adminActorKey),
      );
      return create(CloseCampaignResponseSchema, { campaign: toCampaignMessage(campaign) });
    },

    async updateCampaignAmount(request, context) {
      const campaign = await deps.operations.updateAmount(
        request.campaignId,
        request.amount,
        context.values.get(adminActorKey),
      );
      return create(UpdateCampaignAmountResponseSchema, { campaign: toCampaignMessage(campaign) });
    },

    async listCoupons(request) {
      const page = await deps.campaigns.listCoupons(request.campaignId, request);
      return create(ListCouponsResponseSchema, {
        coupons: page.items.map((coupon) =>
          create(CouponSchema, {
            code: coupon.code,
            campaignId: coupon.campaignId,
            userId: coupon.userId,
            issuedAt: timestampFromDate(coupon.issuedAt),
          }),
        ),
        nextPageToken: page.nextPageToken,
      });
    },

    async listCampaignEvents(request) {
      const page = await deps.campaigns.listEvents(request.campaignId, request);
      return create(ListCampaignEventsResponseSchema, {
        events: page.items.map((event) =>
          create(CampaignEventSchema, {
            kind: event.kind,
            detail: event.detail,
            actor: event.actor,
            at: timestampFromDate(event.at),
          }),
        ),
        nextPageToken: page.nextPageToken,
      });
    },
  };
}
