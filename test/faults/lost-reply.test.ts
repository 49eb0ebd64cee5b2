import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClaimPendingError } from '../../src/domain/errors.ts';
import { eventually } from '../support/invariants.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

let direct: Awaited<ReturnType<typeof startServices>>;
let service: Awaited<ReturnType<typeof startServices>>;
let proxy: TcpProxy;

beforeAll(async () => {
  direct = await startServices();
  const redisUrl = new URL(direct.config.redisUrl);
  proxy = await TcpProxy.start({ host: redisUrl.hostname, port: Number(redisUrl.port) });
  service = await startServices(
    isolatedConfig({
      REDIS_URL: proxy.route(direct.config.redisUrl),
      REDIS_KEY_PREFIX: direct.config.redisKeyPrefix,
      DATABASE_URL: direct.config.databaseUrl,
      RECONCILE_INTERVAL_MS: '3600000',
    }),
  );
});
afterAll(async () => {
  await service?.services.close();
  await proxy?.close();
  await direct?.stop();
});

describe('a claim whose answer from Redis was lost', () => {
  it('is not sent again after the reconnect, where it would find its own claim and refuse its user', async () => {
    const campaign = await direct.services.campaigns.createCampaign({
      name: uniqueName('lost-reply'),
      amount: 5n,
      ...openWindow(),
    });
    // Load the campaign into the gate and its directory entry before the reply is held.
    await service.services.issuer.issueCoupon(campaign.id, 'warm-up');
    proxy.holdReplies();
    const claim = service.services.issuer
      .issueCoupon(campaign.id, 'unlucky')
      .catch((error: unknown) => error);
    const keys = direct.services.redisGate.keys(campaign.id);
    // The script ran in Redis: the claim is pending there, its answer held at the proxy.
    expect(
      await eventually(
        async () =>
          (await direct.services.redis.zscore(keys.pending, 'unlucky')) ? [] : ['not claimed yet'],
        5_000,
      ),
    ).toEqual([]);
    // The connection drops with the answer still held; the reconnect goes through.
    proxy.cut();
    proxy.releaseReplies();
    proxy.restore();
    const outcome = await claim;
    // Sent again, the script would answer "still being settled" for the claim it had just made.
    expect(outcome).not.toBeInstanceOf(ClaimPendingError);
    expect((outcome as { dependency?: string }).dependency).toBe('redis');
  });
});
