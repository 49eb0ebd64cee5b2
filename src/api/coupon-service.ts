import { create } from '@bufbuild/protobuf';
import {
  type Duration,
  DurationSchema,
  type Timestamp,
  timestampDate,
  timestampFromDate,
} from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import type { CampaignOperations } from '../application/campaign-operations.ts';
import type { CampaignService } from '../application/campaign-service.ts';
import type { CampaignWatch } from '../application/campaign-watch.ts';
import type { CouponLifecycle } from '../application/coupon-lifecycle.ts';
import type { CouponIssuer } from '../application/issue-coupon.ts';
import type { CampaignState, CampaignView } from '../domain/campaign.ts';
import type { CouponState, CouponView } from '../domain/coupon.ts';
import { InvalidArgumentError } from '../domain/errors.ts';
import {
  CampaignEventSchema,
  type Campaign as CampaignMessage,
  CampaignSchema,
  CampaignState as CampaignStateMessage,
  CancelRedemptionResponseSchema,
  CloseCampaignResponseSchema,
  type Coupon as CouponMessage,
  CouponSchema,
  type CouponService,
  CouponState as CouponStateMessage,
  CreateCampaignResponseSchema,
  GetCampaignResponseSchema,
  GetCouponResponseSchema,
  IssueCouponResponseSchema,
  IssueCouponsResponseSchema,
  IssueResultSchema,
  ListCampaignEventsResponseSchema,
  ListCampaignsResponseSchema,
  ListCouponsResponseSchema,
  ListUserCouponsResponseSchema,
  RedeemCouponResponseSchema,
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

const COUPON_STATE_MESSAGE: Record<CouponState, CouponStateMessage> = {
  issued: CouponStateMessage.ISSUED,
  redeemed: CouponStateMessage.REDEEMED,
  expired: CouponStateMessage.EXPIRED,
};

function toCouponMessage(coupon: CouponView): CouponMessage {
  return create(CouponSchema, {
    code: coupon.code,
    campaignId: coupon.campaignId,
    userId: coupon.userId,
    issuedAt: timestampFromDate(coupon.issuedAt),
    state: COUPON_STATE_MESSAGE[coupon.state],
    ...(coupon.validUntil ? { validUntil: timestampFromDate(coupon.validUntil) } : {}),
    ...(coupon.redeemedAt ? { redeemedAt: timestampFromDate(coupon.redeemedAt) } : {}),
    orderId: coupon.orderId ?? '',
  });
}

function durationOfMs(ms: number): Duration {
  return create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
}

/**
 * A Duration as whole milliseconds, refusing what the well-known type forbids (nanos outside
 * -999,999,999..999,999,999 or of another sign than seconds) and what a coupon's validity cannot
 * hold (a part of a millisecond); the domain checks the range.
 */
function millisecondsOf(field: string, duration: Duration | undefined): number | undefined {
  if (!duration) return undefined;
  const { seconds, nanos } = duration;
  if (
    nanos < -999_999_999 ||
    nanos > 999_999_999 ||
    (seconds > 0n && nanos < 0) ||
    (seconds < 0n && nanos > 0)
  ) {
    throw new InvalidArgumentError(
      field,
      `${field} is not a valid Duration (nanos out of range or of another sign)`,
    );
  }
  if (nanos % 1_000_000 !== 0) {
    throw new InvalidArgumentError(field, `${field} must be whole milliseconds`);
  }
  // Far outside any validity: refused by the domain, without a float that loses precision.
  if (seconds < -1n << 40n || seconds > 1n << 40n) return Number.NaN;
  return Number(seconds) * 1000 + nanos / 1_000_000;
}

/** Connect's name of a code, as the JSON protocol spells it ("resource_exhausted"). */
function codeName(code: Code): string {
  return Code[code].replace(/[A-Z]/g, (c, i: number) => (i === 0 ? c.toLowerCase() : `_${c.toLowerCase()}`));
}

function toCampaignMessage(campaign: CampaignView): CampaignMessage {
  return create(CampaignSchema, {
    ...(campaign.couponValidForMs !== undefined
      ? { couponValidFor: durationOfMs(campaign.couponValidForMs) }
      : {}),
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
  lifecycle: CouponLifecycle;
  /**
   * Told, once per call, of the IssueCoupons entries that failed for a reason no refusal names (a
   * bug): the caller sees only "internal error" for them, the call itself succeeds, so nothing
   * else would log them. `first`: the first such entry and its error.
   */
  onEntryFailures?: (failures: {
    campaignId: string;
    count: number;
    first: { userId: string; error: unknown };
  }) => void;
}): ServiceImpl<typeof CouponService> {
  return {
    async createCampaign(request, context) {
      const campaign = await deps.campaigns.createCampaign(
        {
          name: request.name,
          amount: request.amount,
          issuedAt: instantOf('issued_at', request.issuedAt),
          expiresAt: instantOf('expires_at', request.expiresAt),
          couponValidForMs: millisecondsOf('coupon_valid_for', request.couponValidFor),
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
        coupon: create(CouponSchema, {
          code: coupon.code,
          campaignId: coupon.campaignId,
          userId: coupon.userId,
          issuedAt: timestampFromDate(coupon.issuedAt),
          state: CouponStateMessage.ISSUED,
          ...(coupon.validUntil ? { validUntil: timestampFromDate(coupon.validUntil) } : {}),
        }),
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

    async getCoupon(request) {
      const coupon = await deps.lifecycle.getCoupon(request.code);
      return create(GetCouponResponseSchema, { coupon: toCouponMessage(coupon) });
    },

    async listUserCoupons(request) {
      const page = await deps.lifecycle.listUserCoupons(request.userId, request);
      return create(ListUserCouponsResponseSchema, {
        coupons: page.items.map(toCouponMessage),
        nextPageToken: page.nextPageToken,
      });
    },

    async redeemCoupon(request) {
      const coupon = await deps.lifecycle.redeemCoupon(request.code, request.orderId);
      return create(RedeemCouponResponseSchema, { coupon: toCouponMessage(coupon) });
    },

    async cancelRedemption(request) {
      const coupon = await deps.lifecycle.cancelRedemption(request.code, request.orderId);
      return create(CancelRedemptionResponseSchema, { coupon: toCouponMessage(coupon) });
    },

    async issueCoupons(request, context) {
      const entries = await deps.lifecycle.issueCoupons(
        request.campaignId,
        request.userIds,
        context.values.get(adminActorKey),
      );
      let failed: { count: number; first: { userId: string; error: unknown } } | undefined;
      const response = create(IssueCouponsResponseSchema, {
        results: entries.map((entry) => {
          if (entry.coupon) {
            return create(IssueResultSchema, { userId: entry.userId, coupon: toCouponMessage(entry.coupon) });
          }
          // A bug behind one entry is not shown to the caller, as connect hides an INTERNAL's message.
          const error = toConnectError(entry.refusal);
          if (!(error instanceof ConnectError) || error.code === Code.Internal) {
            failed ??= { count: 0, first: { userId: entry.userId, error: entry.refusal } };
            failed.count += 1;
          }
          const refused =
            error instanceof ConnectError ? error : new ConnectError('internal error', Code.Internal);
          return create(IssueResultSchema, {
            userId: entry.userId,
            refusal: codeName(refused.code),
            message: refused.rawMessage,
          });
        }),
      });
      if (failed) deps.onEntryFailures?.({ campaignId: request.campaignId, ...failed });
      return response;
    },
  };
}
