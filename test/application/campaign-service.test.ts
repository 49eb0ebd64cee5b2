import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../src/app.ts';
import { CampaignNotFoundError, InvalidArgumentError } from '../../src/domain/errors.ts';
import { openWindow, startServices, uniqueName } from '../support/services.ts';

let env: Awaited<ReturnType<typeof startServices>>;
let services: Services;

beforeAll(async () => {
  env = await startServices();
  services = env.services;
});
afterAll(async () => {
  await env?.stop();
});

describe('reading a campaign', () => {
  it('returns issued_count and every code in issue order', async () => {
    const name = uniqueName('read');
    const campaign = await services.campaigns.createCampaign({ name, amount: 5n, ...openWindow() });
    const codes: string[] = [];
    for (const user of ['u1', 'u2', 'u3'])
      codes.push((await services.issuer.issueCoupon(campaign.id, user)).code);
    const read = await services.campaigns.getCampaign(name);
    expect(read.campaign).toEqual({ ...campaign, issuedCount: 3 });
    expect(read.couponCodes).toEqual(codes);
  });

  it('refuses an unknown or empty name', async () => {
    await expect(services.campaigns.getCampaign(uniqueName('missing'))).rejects.toBeInstanceOf(
      CampaignNotFoundError,
    );
    await expect(services.campaigns.getCampaign('')).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('is exact about names: case and spacing matter', async () => {
    const name = uniqueName('Case');
    await services.campaigns.createCampaign({ name, amount: 1n, ...openWindow() });
    await expect(services.campaigns.getCampaign(name.toLowerCase())).rejects.toBeInstanceOf(
      CampaignNotFoundError,
    );
    await expect(
      services.campaigns.createCampaign({ name: name.toLowerCase(), amount: 1n, ...openWindow() }),
    ).resolves.toMatchObject({ name: name.toLowerCase() });
  });

  it('keeps milliseconds of the window', async () => {
    const name = uniqueName('millis');
    const issuedAt = new Date(Date.now() - 1_234);
    const expiresAt = new Date(Date.now() + 3_600_567);
    await services.campaigns.createCampaign({ name, amount: 1n, issuedAt, expiresAt });
    const read = await services.campaigns.getCampaign(name);
    expect(read.campaign.issuedAt).toEqual(issuedAt);
    expect(read.campaign.expiresAt).toEqual(expiresAt);
  });
});
