import { afterAll, describe, expect, it } from 'vitest';
import { AlreadyIssuedError } from '../../src/domain/errors.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from '../support/services.ts';

const config = isolatedConfig();
let last: Awaited<ReturnType<typeof startServices>> | undefined;

afterAll(async () => {
  await last?.stop();
});

describe('a restart', () => {
  it('keeps campaigns, coupons and the gate, and issuing goes on where it stopped', async () => {
    const first = await startServices(config);
    const name = uniqueName('restart');
    const campaign = await first.services.campaigns.createCampaign({ name, amount: 3n, ...openWindow() });
    const before = await first.services.issuer.issueCoupon(campaign.id, 'early-bird');
    await first.services.close();

    last = await startServices(config);
    const { services } = last;
    const read = await services.campaigns.getCampaign(name);
    expect(read.campaign).toEqual({ ...campaign, issuedCount: 1 });
    expect(read.couponCodes).toEqual([before.code]);
    await expect(services.issuer.issueCoupon(campaign.id, 'early-bird')).rejects.toBeInstanceOf(
      AlreadyIssuedError,
    );
    await services.issuer.issueCoupon(campaign.id, 'second');
    await services.issuer.issueCoupon(campaign.id, 'third');
    expect((await services.campaigns.getCampaign(name)).campaign.issuedCount).toBe(3);
  });
});
