import { timestampDate } from '@bufbuild/protobuf/wkt';
import { type Campaign, CampaignState } from '../../src/gen/coupon/v1/coupon_pb.js';

/** The state's short name, as in the proto without its prefix: OPEN, SOLD_OUT, ... */
export type StateName = 'UNSPECIFIED' | 'SCHEDULED' | 'OPEN' | 'SOLD_OUT' | 'ENDED';

export function stateName(state: CampaignState): StateName {
  return (CampaignState[state] ?? 'UNSPECIFIED') as StateName;
}

/** A campaign as the pages show it: numbers as numbers, times as Dates (opensAt/closesAt inside). */
export interface CampaignView {
  readonly id: string;
  readonly name: string;
  readonly amount: number;
  readonly issued: number;
  readonly opensAt: Date | undefined;
  readonly closesAt: Date | undefined;
  readonly state: StateName;
}

export function viewOf(campaign: Campaign): CampaignView {
  return {
    id: campaign.id,
    name: campaign.name,
    amount: Number(campaign.amount),
    issued: Number(campaign.issuedCount),
    opensAt: campaign.issuedAt && timestampDate(campaign.issuedAt),
    closesAt: campaign.expiresAt && timestampDate(campaign.expiresAt),
    state: stateName(campaign.state),
  };
}
