import { Code, createClient } from '@connectrpc/connect';
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Campaign, CampaignState, CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { startPrivateRedis } from '../support/private-redis.ts';
import { campaignRequest, codeOf } from '../support/rpc.ts';
import { rush, users } from '../support/rush.ts';
import { isolatedConfig, startApp } from '../support/services.ts';

let env: Awaited<ReturnType<typeof startApp>>;
let redis: Awaited<ReturnType<typeof startPrivateRedis>>;

beforeAll(async () => {
  // A Redis of its own, so the test can count the commands the watchers cost.
  redis = await startPrivateRedis();
  env = await startApp(
    isolatedConfig({
      REDIS_URL: redis.url,
      ISSUE_RATE_LIMIT_PER_USER: '0',
      RECONCILE_INTERVAL_MS: '3600000',
      CAMPAIGN_REFRESH_MS: '3600000',
    }),
  );
});
afterAll(async () => {
  await env?.stop();
  await redis?.stop();
});

const grpc = () => createClient(CouponService, createGrpcTransport({ baseUrl: env.baseUrl }));
const connectJson = () =>
  createClient(CouponService, createConnectTransport({ baseUrl: env.baseUrl, httpVersion: '1.1' }));
const grpcWeb = () =>
  createClient(CouponService, createGrpcWebTransport({ baseUrl: env.baseUrl, httpVersion: '1.1' }));

async function createCampaign(amount: bigint) {
  const { campaign } = await grpc().createCampaign(campaignRequest({ amount }));
  if (!campaign) throw new Error('no campaign');
  return campaign;
}

interface Seen {
  readonly at: number;
  readonly campaign: Campaign;
}

/** Reads a stream to its end, keeping each message with when it arrived. */
async function collect(stream: AsyncIterable<{ campaign?: Campaign }>, into: Seen[] = []): Promise<Seen[]> {
  for await (const message of stream) {
    if (message.campaign) into.push({ at: performance.now(), campaign: message.campaign });
  }
  return into;
}

/**
 * The most messages that arrived within any one second, give or take 50 ms of delivery jitter (the
 * server spaces a stream's messages by 100 ms; the network and this event loop may bunch them).
 */
function mostInOneSecond(seen: readonly Seen[]): number {
  let most = 0;
  for (let i = 0, j = 0; j < seen.length; j++) {
    while ((seen[j]?.at ?? 0) - (seen[i]?.at ?? 0) >= 950) i++;
    most = Math.max(most, j - i + 1);
  }
  return most;
}

describe('WatchCampaign', () => {
  it('during a rush, over Connect JSON and gRPC: counts never fall, at most 10 a second, the final count last', async () => {
    const campaign = await createCampaign(1_000n);
    const started = performance.now();
    const streams = [connectJson(), grpc()].map((client) => {
      const seen: Seen[] = [];
      return { seen, done: collect(client.watchCampaign({ campaignId: campaign.id }), seen) };
    });
    await expect.poll(() => streams.every((s) => s.seen.length > 0), { interval: 5 }).toBe(true);
    for (const { seen } of streams) {
      expect((seen[0]?.at ?? 0) - started).toBeLessThan(1_000);
      expect(seen[0]?.campaign.issuedCount).toBe(0n);
      expect(seen[0]?.campaign.state).toBe(CampaignState.OPEN);
    }
    const result = await rush(
      async (userId) => {
        const { coupon } = await grpc().issueCoupon({ campaignId: campaign.id, userId });
        return { code: coupon?.code ?? '', userId };
      },
      users('watched', 1_500),
      { concurrency: 32 },
    );
    expect(result.issued).toHaveLength(1_000);
    // Sold out is not the end (a returned or added coupon opens it again): the close is.
    await expect
      .poll(() => streams.every((s) => s.seen.at(-1)?.campaign.state === CampaignState.SOLD_OUT), {
        timeout: 5_000,
      })
      .toBe(true);
    await grpc().closeCampaign({ campaignId: campaign.id });
    const finalCount = BigInt(
      (await env.app.services.repositories.campaigns.findById(campaign.id))?.issuedCount ?? -1,
    );
    expect(finalCount).toBe(1_000n);
    for (const { seen, done } of streams) {
      await done;
      const counts = seen.map((s) => s.campaign.issuedCount);
      for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeGreaterThanOrEqual(counts[i - 1] ?? 0n);
      expect(seen.at(-1)?.campaign.issuedCount).toBe(finalCount);
      expect(seen.at(-1)?.campaign.state).toBe(CampaignState.ENDED);
      expect(seen.length).toBeGreaterThan(3);
      expect(mostInOneSecond(seen)).toBeLessThanOrEqual(10);
    }
  });

  it('works over gRPC-Web, and a watch of an ended campaign is its final state, then the end', async () => {
    const campaign = await createCampaign(3n);
    await grpc().issueCoupon({ campaignId: campaign.id, userId: 'one' });
    await grpc().closeCampaign({ campaignId: campaign.id });
    const seen = await collect(grpcWeb().watchCampaign({ campaignId: campaign.id }));
    expect(seen.map((s) => [s.campaign.issuedCount, s.campaign.state])).toEqual([[1n, CampaignState.ENDED]]);
  });

  it('refuses an empty id (INVALID_ARGUMENT) and an unknown one (NOT_FOUND), on every protocol', async () => {
    for (const client of [grpc(), connectJson(), grpcWeb()]) {
      expect(await codeOf(collect(client.watchCampaign({ campaignId: '' })))).toBe(Code.InvalidArgument);
      expect(
        await codeOf(collect(client.watchCampaign({ campaignId: '01900000-0000-7000-8000-000000000000' }))),
      ).toBe(Code.NotFound);
      expect(await codeOf(collect(client.watchCampaign({ campaignId: 'x{y}' })))).toBe(Code.NotFound);
    }
  });

  it('1,000 watchers of one campaign cost what one does: one reader per campaign per instance', async () => {
    const campaign = await createCampaign(10n);
    // At most 100 streams per HTTP/2 connection (MAX_STREAMS_PER_CONNECTION): one connection per 100 watchers.
    const clients = Array.from({ length: 11 }, () => grpc());
    const aborts = new AbortController();
    const watchers = async (count: number) => {
      const firsts: Promise<unknown>[] = [];
      for (let i = 0; i < count; i++) {
        const stream = (clients[i % clients.length] ?? grpc()).watchCampaign(
          { campaignId: campaign.id },
          { signal: aborts.signal },
        );
        firsts.push(stream[Symbol.asyncIterator]().next());
      }
      await Promise.all(firsts);
    };
    const commandsIn = async (ms: number) => {
      const before = await redis.commandsRun();
      await new Promise((resolve) => setTimeout(resolve, ms));
      return (await redis.commandsRun()) - before;
    };
    await watchers(1);
    const one = await commandsIn(2_000);
    await watchers(999);
    expect(env.app.services.watch.watchedCampaigns).toBe(1);
    const thousand = await commandsIn(2_000);
    // One script call per 100 ms poll (INFO counts it and the 4 commands it runs) either way.
    expect(one).toBeGreaterThan(0);
    expect(one).toBeLessThanOrEqual(20 * 5 * 1.2);
    expect(thousand).toBeLessThanOrEqual(one * 1.2 + 10);
    aborts.abort();
    await expect.poll(() => env.app.services.watch.watchedCampaigns, { timeout: 2_000 }).toBe(0);
  });
});

describe('WatchCampaign budget', () => {
  it('spreads WATCH_MESSAGES_PER_SECOND over the open streams', async () => {
    const small = await startApp(
      isolatedConfig({ WATCH_MESSAGES_PER_SECOND: '20', ISSUE_RATE_LIMIT_PER_USER: '0' }),
    );
    try {
      const client = createClient(CouponService, createGrpcTransport({ baseUrl: small.baseUrl }));
      const { campaign } = await client.createCampaign(campaignRequest({ amount: 1_000n }));
      const campaignId = campaign?.id ?? '';
      const aborts = new AbortController();
      // 10 streams at 20 messages a second in all: one message per 500 ms each.
      const streams = Array.from({ length: 10 }, () => {
        const seen: Seen[] = [];
        collect(client.watchCampaign({ campaignId }, { signal: aborts.signal }), seen).catch(() => undefined);
        return seen;
      });
      await expect.poll(() => streams.every((seen) => seen.length > 0)).toBe(true);
      const from = performance.now();
      const until = from + 2_500;
      for (let i = 0; performance.now() < until; i++) {
        await client.issueCoupon({ campaignId, userId: `budget-${i}` });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      aborts.abort();
      const lasted = performance.now() - from;
      for (const seen of streams) {
        expect(seen.length).toBeGreaterThan(2);
        // Two a second each, as the budget spreads them; a message delivered late (a loaded
        // machine) may fall into the next second with the one after it, so one over, at most.
        expect(mostInOneSecond(seen)).toBeLessThanOrEqual(3);
        // And over the whole run no more than the budget allows (10 a second unbounded).
        const during = seen.filter((message) => message.at >= from).length;
        expect(during).toBeLessThanOrEqual(Math.ceil((lasted / 1000) * 2) + 1);
      }
    } finally {
      await small.stop();
    }
  });
});

describe('WatchCampaign lifetime', () => {
  it('ends a stream after WATCH_LIFETIME_MS, the campaign still open', async () => {
    const short = await startApp(isolatedConfig({ WATCH_LIFETIME_MS: '1000' }));
    try {
      const client = createClient(CouponService, createGrpcTransport({ baseUrl: short.baseUrl }));
      const { campaign } = await client.createCampaign(campaignRequest());
      const started = performance.now();
      const seen = await collect(client.watchCampaign({ campaignId: campaign?.id ?? '' }));
      const lasted = performance.now() - started;
      expect(seen).toHaveLength(1);
      expect(lasted).toBeGreaterThanOrEqual(950);
      expect(lasted).toBeLessThan(3_000);
    } finally {
      await short.stop();
    }
  });
});
