import {
  type CampaignState,
  type CampaignView,
  campaignIdOrThrow,
  couldBeCampaignId,
  type NewCampaignInput,
  pageSizeOf,
  validateCampaignNameLength,
  validateNewCampaign,
  viewOf,
} from '../domain/campaign.ts';
import { CampaignNotFoundError, InvalidArgumentError, TooManyReadsError } from '../domain/errors.ts';
import type { CampaignDirectory } from './campaign-directory.ts';
import type { PageTokens } from './page-tokens.ts';
import type { CampaignEventRecord, CampaignRepository, CouponRecord, SlotGate } from './ports.ts';

export interface CampaignWithCodes {
  readonly campaign: CampaignView;
  readonly couponCodes: string[];
}

export interface Page<T> {
  readonly items: T[];
  /** Empty on the last page. */
  readonly nextPageToken: string;
}

export interface PageRequest {
  readonly pageSize: number;
  readonly pageToken: string;
}

/** Who made an admin change: "anonymous" when the service runs without ADMIN_TOKEN. */
export const ANONYMOUS_ACTOR = 'anonymous';

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
  private readonly pageTokens: PageTokens;

  constructor(deps: {
    campaigns: CampaignRepository;
    gate: SlotGate;
    directory: CampaignDirectory;
    pageTokens: PageTokens;
    maxConcurrentCodeReads?: number;
  }) {
    this.pageTokens = deps.pageTokens;
    this.campaigns = deps.campaigns;
    this.gate = deps.gate;
    this.directory = deps.directory;
    const codeReads = deps.maxConcurrentCodeReads ?? Number.POSITIVE_INFINITY;
    this.codeReads = { max: codeReads, inFlight: 0 };
    // A read without codes is one indexed row; a few times as many may run, but never so many
    // that made-up names could take the issue path's connections.
    this.plainReads = { max: 4 * codeReads, inFlight: 0 };
  }

  async createCampaign(input: NewCampaignInput, actor = ANONYMOUS_ACTOR): Promise<CampaignView> {
    const now = await this.gate.now();
    const campaign = await this.campaigns.create(validateNewCampaign(input, now), { actor, at: now });
    // Every instance knows the id before the caller does, so none refuses it as unknown. Loading
    // the gate now spares the first claimers a trip to the database; if it fails, the first claim
    // loads it instead, so the campaign is usable either way.
    await Promise.all([
      this.directory.created(campaign),
      this.gate.loadCampaign({ campaign, userIds: [] }).catch(() => undefined),
    ]);
    return viewOf(campaign, now);
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
      return { campaign: viewOf(campaign, await this.readClock(campaign.id)), couponCodes: [] };
    }
    const found = await this.boundedRead(this.codeReads, 'GetCampaign reads with codes', () =>
      this.campaigns.findByNameWithCodes(name),
    );
    if (!found) throw new CampaignNotFoundError('name', name);
    this.directory.add(found.campaign);
    return {
      campaign: viewOf(found.campaign, await this.readClock(found.campaign.id)),
      couponCodes: found.couponCodes,
    };
  }

  /** Newest first; `state` keeps only the campaigns in that state on the gate's clock. */
  async listCampaigns(request: PageRequest & { state?: CampaignState }): Promise<Page<CampaignView>> {
    const limit = pageSizeOf(request.pageSize);
    const query = `ListCampaigns state=${request.state ?? 'any'}`;
    let beforeId: string | undefined;
    if (request.pageToken !== '') {
      beforeId = this.pageTokens.read(query, request.pageToken);
      if (!couldBeCampaignId(beforeId))
        throw new InvalidArgumentError('page_token', 'page_token is not valid');
    }
    // The state is judged at one instant for the whole page, so it agrees with the filter.
    const now = await this.readClock();
    const found = await this.boundedRead(this.plainReads, 'list reads', () =>
      this.campaigns.listCampaigns({
        now,
        limit: limit + 1,
        ...(request.state ? { state: request.state } : {}),
        ...(beforeId !== undefined ? { beforeId } : {}),
      }),
    );
    const page = found.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page.map((campaign) => viewOf(campaign, now)),
      nextPageToken: found.length > limit && last ? this.pageTokens.issue(query, last.id) : '',
    };
  }

  /** A campaign's coupons in issue order (keyset pages, stable while issuing goes on). */
  async listCoupons(campaignId: string, request: PageRequest): Promise<Page<CouponRecord>> {
    return this.pageOf(campaignId, 'ListCoupons', request, (afterId, limit) =>
      this.campaigns.listCoupons(campaignId, afterId, limit),
    );
  }

  /** A campaign's admin changes, oldest first. */
  async listEvents(campaignId: string, request: PageRequest): Promise<Page<CampaignEventRecord>> {
    return this.pageOf(campaignId, 'ListCampaignEvents', request, (afterId, limit) =>
      this.campaigns.listEvents(campaignId, afterId, limit),
    );
  }

  private async pageOf<T extends { id: number }>(
    campaignId: string,
    method: string,
    request: PageRequest,
    read: (afterId: number, limit: number) => Promise<T[]>,
  ): Promise<Page<T>> {
    campaignIdOrThrow(campaignId);
    const limit = pageSizeOf(request.pageSize);
    const query = `${method} campaign=${campaignId}`;
    let afterId = 0;
    if (request.pageToken !== '') {
      const position = this.pageTokens.read(query, request.pageToken);
      if (!/^\d{1,19}$/.test(position))
        throw new InvalidArgumentError('page_token', 'page_token is not valid');
      afterId = Number(position);
    }
    const found = await this.boundedRead(this.plainReads, 'list reads', async () => {
      // The first page says whether the campaign exists; later pages were made by a query of it.
      if (afterId === 0 && !(await this.campaigns.findById(campaignId))) {
        throw new CampaignNotFoundError('id', campaignId);
      }
      return read(afterId, limit + 1);
    });
    const page = found.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page,
      nextPageToken: found.length > limit && last ? this.pageTokens.issue(query, String(last.id)) : '',
    };
  }

  /**
   * The gate's clock, which judges every window (with a campaign, its own shard's); when Redis
   * cannot be reached, a read still answers, with states judged on this process's clock.
   */
  private async readClock(campaignId?: string): Promise<Date> {
    try {
      return await this.gate.now(campaignId);
    } catch {
      return new Date();
    }
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
