import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { type Code, ConnectError } from '@connectrpc/connect';
import { CreateCampaignRequestSchema } from '../../src/gen/coupon/v1/coupon_pb.js';
import { openWindow, uniqueName } from './services.ts';

/** The Connect code a call ended with, or 'ok'. */
export async function codeOf(call: Promise<unknown>): Promise<Code | 'ok'> {
  try {
    await call;
    return 'ok';
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

/** A CreateCampaign request for a campaign open now and for the next hour: 5 coupons unless told. */
export function campaignRequest(
  overrides: Partial<MessageInitShape<typeof CreateCampaignRequestSchema>> = {},
) {
  const window = openWindow();
  return create(CreateCampaignRequestSchema, {
    name: uniqueName('campaign'),
    amount: 5n,
    issuedAt: timestampFromDate(window.issuedAt),
    expiresAt: timestampFromDate(window.expiresAt),
    ...overrides,
  });
}
