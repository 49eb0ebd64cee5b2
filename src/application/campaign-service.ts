import {
  type Campaign,
  type NewCampaignInput,
  validateCampaignNameLength,
  validateNewCampaign,
} from '../domain/campaign.ts';
import { CampaignNotFoundError, InvalidArgumentError } from '../domain/errors.ts';
import type { CampaignRepository, SlotGate } from './ports.ts';

export interface CampaignWithCodes {
  readonly campaign: Campaign;
  readonly couponCodes: string[];
}

export class CampaignService {
  private readonly campaigns: CampaignRepository;
  private readonly gate: SlotGate;

  constructor(deps: { campaigns: CampaignRepository; gate: SlotGate }) {
    this.campaigns = deps.campaigns;
    this.gate = deps.gate;
  }

  async createCampaign(input: NewCampaignInput): Promise<Campaign> {
    const campaign = await this.campaigns.create(validateNewCampaign(input, await this.gate.now()));
    // Loading now spares the first claimers a trip to the database; if it fails, the first
    // claim loads it instead, so the campaign is usable either way.
    await this.gate.loadCampaign({ campaign, userIds: [] }).catch(() => undefined);
    return campaign;
  }

  /** With `withCodes` false the codes are neither read nor returned (they are bearer secrets). */
  async getCampaign(
    name: string,
    options: { withCodes: boolean } = { withCodes: true },
  ): Promise<CampaignWithCodes> {
    if (name.length === 0) {
      throw new InvalidArgumentError('name', 'name must not be empty');
    }
    // Looked up exactly as given, white space included: campaigns created before names were
    // checked for it stay readable.
    validateCampaignNameLength(name);
    if (!options.withCodes) {
      const campaign = await this.campaigns.findByName(name);
      if (!campaign) throw new CampaignNotFoundError('name', name);
      return { campaign, couponCodes: [] };
    }
    const found = await this.campaigns.findByNameWithCodes(name);
    if (!found) throw new CampaignNotFoundError('name', name);
    return found;
  }
}
