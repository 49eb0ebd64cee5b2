import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClaimPendingError } from '../../src/domain/errors.ts';
import { eventually } from '../support/invariants.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from '../support/services.ts';

/**
 * A proxy in front of Redis that can hold back Redis' replies, then cut every connection: the
 * service's command ran, but its answer never arrived.
 */
class ReplyHoldingProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private holding = false;

  constructor(target: { host: string; port: number }) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(target);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.once('close', () => this.sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.on('data', (chunk: Buffer) => {
        if (!this.holding) client.write(chunk);
      });
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve) =>
      this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as net.AddressInfo).port)),
    );
  }

  hold(): void {
    this.holding = true;
  }

  cutAndRelease(): void {
    for (const socket of this.sockets) socket.destroy();
    this.holding = false;
  }

  close(): Promise<void> {
    this.cutAndRelease();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

let direct: Awaited<ReturnType<typeof startServices>>;
let service: Awaited<ReturnType<typeof startServices>>;
let proxy: ReplyHoldingProxy;

beforeAll(async () => {
  direct = await startServices();
  const redisUrl = new URL(direct.config.redisUrl);
  proxy = new ReplyHoldingProxy({ host: redisUrl.hostname, port: Number(redisUrl.port) });
  redisUrl.port = String(await proxy.listen());
  service = await startServices(
    isolatedConfig({
      REDIS_URL: redisUrl.toString(),
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
    proxy.hold();
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
    proxy.cutAndRelease();
    const outcome = await claim;
    // Sent again, the script would answer "still being settled" for the claim it had just made.
    expect(outcome).not.toBeInstanceOf(ClaimPendingError);
    expect((outcome as { dependency?: string }).dependency).toBe('redis');
  });
});
