import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { type Client, Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { startPrivateRedis } from '../support/private-redis.ts';
import { campaignRequest } from '../support/rpc.ts';
import { isolatedConfig, startApp } from '../support/services.ts';

const run = promisify(execFile);

/**
 * Issue 17, the crowd that arrives before the opening: answered "opens at ..." from memory once
 * Redis has said so, without a claim script per call, and never late: the first call after the
 * opening on Redis' clock is served.
 */

let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
let service: Awaited<ReturnType<typeof startApp>>;
let clients: Client<typeof CouponService>[];

beforeAll(async () => {
  // A Redis of its own: its command counts are this file's alone.
  redis = await startPrivateRedis();
  service = await startApp(isolatedConfig({ REDIS_URL: redis.url }));
  clients = [
    createClient(CouponService, createConnectTransport({ baseUrl: service.baseUrl, httpVersion: '1.1' })),
    createClient(CouponService, createGrpcTransport({ baseUrl: service.baseUrl })),
  ];
});
afterAll(async () => {
  await service?.stop();
  await redis?.stop();
});

/** Claim scripts Redis has run: the claim script is the only one that reads a window with HMGET. */
async function claimScriptsRun(): Promise<number> {
  const port = new URL(redis.url).port;
  const { stdout } = await run('redis-cli', ['-p', port, 'info', 'commandstats']);
  return Number(/cmdstat_hmget:calls=(\d+)/.exec(stdout)?.[1] ?? 0);
}

describe('a crowd before the opening', () => {
  it('is answered "opens at" from memory, and the first call after the opening is served', async () => {
    const { services } = service.app;
    const redisNow = (await services.gate.now()).getTime();
    const opensAt = new Date(redisNow + 2_500);
    const { campaign } = await (clients[0] as Client<typeof CouponService>).createCampaign(
      campaignRequest({ amount: 10n, issuedAt: timestampFromDate(opensAt) }),
    );
    const campaignId = campaign?.id as string;

    const before = await claimScriptsRun();
    const answers: string[] = [];
    let user = 0;
    // Six callers over Connect and gRPC until 500 ms before the opening on Redis' clock.
    const stormUntil = opensAt.getTime() - 500;
    const started = Date.now();
    await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const client = clients[i % 2] as Client<typeof CouponService>;
        while ((await services.gate.now(campaignId)).getTime() < stormUntil) {
          try {
            await client.issueCoupon({ campaignId, userId: `early-${user++}` });
            answers.push('ok');
          } catch (error) {
            const refusal = ConnectError.from(error);
            answers.push(
              `${Code[refusal.code]} ${refusal.rawMessage.includes(opensAt.toISOString()) ? 'opens at' : refusal.rawMessage}`,
            );
          }
        }
      }),
    );
    const scripts = (await claimScriptsRun()) - before;
    const seconds = (Date.now() - started) / 1000;
    console.info(
      `pre-open storm: ${answers.length} calls in ${seconds.toFixed(1)} s, ${scripts} claim scripts run in Redis`,
    );
    expect(new Set(answers)).toEqual(new Set(['FailedPrecondition opens at']));
    expect(answers.length).toBeGreaterThan(300);
    // About one claim a second (the memory believes an answer that long) and the first one;
    // when a sample runs out, the callers of the few turns before Redis answers each send one
    // (a loaded machine: 5 in 2 s). Without the memory: one per event-loop turn, 785 in 2 s.
    expect(scripts).toBeLessThanOrEqual(3 * Math.ceil(seconds) + 2);

    // Once Redis' clock has reached the opening, the very next call is served.
    while ((await services.gate.now(campaignId)).getTime() < opensAt.getTime()) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    const first = await (clients[1] as Client<typeof CouponService>).issueCoupon({
      campaignId,
      userId: 'first',
    });
    expect(first.coupon?.userId).toBe('first');
  });
});
