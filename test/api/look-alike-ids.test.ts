import { Code, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { eventually } from '../support/invariants.ts';
import { campaignRequest, codeOf } from '../support/rpc.ts';
import { isolatedConfig, startApp, uniqueName } from '../support/services.ts';

let env: Awaited<ReturnType<typeof startApp>>;
let client: ReturnType<typeof createClient<typeof CouponService>>;

beforeAll(async () => {
  // The reconciler every 100 ms, so its repair of a leaked slot shows within a test.
  env = await startApp(isolatedConfig({ RECONCILE_INTERVAL_MS: '100' }));
  client = createClient(CouponService, createConnectTransport({ baseUrl: env.baseUrl, httpVersion: '1.1' }));
});
afterAll(async () => {
  await env?.stop();
});

async function remaining(campaignId: string): Promise<number> {
  return Number(await env.app.services.redis.get(env.app.services.redisGate.keys(campaignId).remaining));
}

describe('user ids that only look alike', () => {
  it('cannot take slots: padded, control and broken ids are refused before the gate', async () => {
    const { campaign } = await client.createCampaign(
      campaignRequest({ name: uniqueName('pad'), amount: 3n }),
    );
    const id = campaign?.id as string;
    await client.issueCoupon({ campaignId: id, userId: 'alice' });
    for (const userId of [
      'alice ',
      'alice  ',
      ' alice',
      'alice\t',
      'alice\u00a0',
      'al\u0000ice',
      'alice\n',
    ]) {
      expect(await codeOf(client.issueCoupon({ campaignId: id, userId })), JSON.stringify(userId)).toBe(
        Code.InvalidArgument,
      );
    }
    // A lone surrogate cannot travel in binary (the encoder makes it U+FFFD), only in JSON.
    const broken = await fetch(`${env.baseUrl}/coupon.v1.CouponService/IssueCoupon`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `{"campaignId":"${id}","userId":"al\\ud800ice"}`,
    });
    expect([broken.status, ((await broken.json()) as { code: string }).code]).toEqual([
      400,
      'invalid_argument',
    ]);
    expect(await codeOf(client.issueCoupon({ campaignId: id, userId: 'alice' }))).toBe(Code.AlreadyExists);
    // Every look-alike was refused without a slot: the two real users still get the last two.
    expect(await remaining(id)).toBe(2);
    await client.issueCoupon({ campaignId: id, userId: 'bob' });
    await client.issueCoupon({ campaignId: id, userId: 'alice-2' });
    const read = await client.getCampaign({ name: campaign?.name as string });
    expect(read.couponCodes).toHaveLength(3);
  });

  it('inner spaces and other scripts are ordinary ids', async () => {
    const { campaign } = await client.createCampaign(
      campaignRequest({ name: uniqueName('inner'), amount: 3n }),
    );
    const id = campaign?.id as string;
    for (const userId of ['alice smith', '김철수', 'alice  smith']) {
      expect((await client.issueCoupon({ campaignId: id, userId })).coupon?.userId).toBe(userId);
    }
  });
});

describe('campaign names that only look alike', () => {
  it('are different names: a padded name finds nothing, and new names may not be padded', async () => {
    const name = uniqueName('sanity');
    await client.createCampaign(campaignRequest({ name: name, amount: 1n }));
    expect(await codeOf(client.getCampaign({ name: `${name}   ` }))).toBe(Code.NotFound);
    for (const padded of [` ${name}`, `${name} `, `${name}\n`, `${name}\u0007`]) {
      expect(await codeOf(client.createCampaign(campaignRequest({ name: padded, amount: 1n })))).toBe(
        Code.InvalidArgument,
      );
    }
  });
});

describe('a slot taken with no coupon behind it', () => {
  it('is given back by the reconciler, logged and counted as leaked_returned', async () => {
    const { campaign } = await client.createCampaign(
      campaignRequest({ name: uniqueName('leak'), amount: 5n }),
    );
    const id = campaign?.id as string;
    await client.issueCoupon({ campaignId: id, userId: 'alice' });
    // What a padded id did before ids and collations were exact: a user marked served and a
    // slot taken, its claim confirmed, and no row.
    const keys = env.app.services.redisGate.keys(id);
    await env.app.services.redis.multi().sadd(keys.users, 'alice ').decr(keys.remaining).exec();
    const problems = await eventually(async () => {
      const metrics = await (await fetch(`${env.baseUrl}/metrics`)).text();
      const leaked = metrics
        .split('\n')
        .find((l) => l.startsWith('coupon_claims_settled_total{how="leaked_returned"} '));
      const users = await env.app.services.redis.smembers(keys.users);
      const problems: string[] = [];
      if (Number(leaked?.split(' ').at(-1)) !== 1) problems.push(`leaked_returned is ${leaked}`);
      if ((await remaining(id)) !== 4) problems.push(`remaining ${await remaining(id)}`);
      if (users.length !== 1 || users[0] !== 'alice') problems.push(`users ${JSON.stringify(users)}`);
      return problems;
    }, 10_000);
    expect(problems).toEqual([]);
  });
});
