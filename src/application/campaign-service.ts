import {
  type Campaign,
  type NewCampaignInput,
  validateCampaignNameLength,
  validateNewCampaign,
} from '../domain/campaign.ts';
import { CampaignNotFoundError, InvalidArgumentError, TooManyReadsError } from '../domain/errors.ts';
import type { CampaignDirectory } from './campaign-directory.ts';
import type { CampaignRepository, SlotGate } from './ports.ts';

export interface CampaignWithCodes {
  readonly campaign: Campaign;
  readonly couponCodes: string[];
}

export class CampaignService {
  private readonly campaigns: CampaignRepository;
  private readonly gate: SlotGate;
  private readonly directory: CampaignDirectory;
  private readonly codeReads: { readonly max: number; inFlight: number };
  private readonly plainReads: { readonly max: number; inFlight: number };

  /**
   * `maxConcurrentCodeReads` bounds the reads of a campaign with all its codes (megabytes for a
   * big campaign) running at once, and four times as many reads without codes: past it a read is
   * refused at once, so a crowd of them (made-up names included) can neither take every database
   * connection nor time out into an open breaker.
   */
  constructor(deps: {
    campaigns: CampaignRepository;
    gate: SlotGate;
    directory: CampaignDirectory;
    maxConcurrentCodeReads?: number;
  }) {
    this.campaigns = deps.campaigns;
    this.gate = deps.gate;
    this.directory = deps.directory;
    const codeReads = deps.maxConcurrentCodeReads ?? Number.POSITIVE_INFINITY;
    this.codeReads = { max: codeReads, inFlight: 0 };
    // A read without codes is one indexed row; a few times as many may run, but never so many
    // that made-up names could take the issue path's connections.
    this.plainReads = { max: 4 * codeReads, inFlight: 0 };
  }

  async createCampaign(input: NewCampaignInput): Promise<Campaign> {
    const campaign = await this.campaigns.create(validateNewCampaign(input, await this.gate.now()));
    // Every instance knows the id before the caller does, so none refuses it as unknown. Loading
    // the gate now spares the first claimers a trip to the database; if it fails, the first claim
    // loads it instead, so the campaign is usable either way.
    await Promise.all([
      this.directory.created(campaign),
      this.gate.loadCampaign({ campaign, userIds: [] }).catch(() => undefined),
    ]);
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
    // Whoever reads a campaign may issue from it next: a campaign this instance missed (created
    // by a write that timed out, say) becomes known here by its name.
    if (!options.withCodes) {
      const campaign = await this.boundedRead(this.plainReads, 'GetCampaign reads', () =>
        this.campaigns.findByName(name),
      );
      if (!campaign) throw new CampaignNotFoundError('name', name);
      this.directory.add(campaign);
      return { campaign, couponCodes: [] };
    }
    const found = await this.boundedRead(this.codeReads, 'GetCampaign reads with codes', () =>
      this.campaigns.findByNameWithCodes(name),
    );
    if (!found) throw new CampaignNotFoundError('name', name);
    this.directory.add(found.campaign);
    return found;
  }

  /** Runs a read if fewer than its limit are in flight, else refuses it at once. */
  private async boundedRead<T>(
    limit: { max: number; inFlight: number },
    what: string,
    read: () => Promise<T>,
  ) {
    if (limit.inFlight >= limit.max) throw new TooManyReadsError(what, limit.max);
    limit.inFlight++;
    try {
      return await read();
    } finally {
      limit.inFlight--;
    }
  }
}
