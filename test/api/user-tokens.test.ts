import { createHmac, generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CouponService } from '../../src/gen/coupon/v1/coupon_pb.js';
import { isolatedConfig, openWindow, startApp, uniqueName } from '../support/services.ts';

const SECRET = 'user-token-secret-0123456789abcdef';
const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const secretKey = new TextEncoder().encode(SECRET);
let env: Awaited<ReturnType<typeof startApp>>;

beforeAll(async () => {
  env = await startApp(
    isolatedConfig({
      USER_JWT_SECRET: SECRET,
      USER_JWT_ISSUER: 'shop',
      USER_JWT_AUDIENCE: 'coupons',
      ADMIN_TOKEN,
    }),
  );
});
afterAll(async () => {
  await env?.stop();
});

function token(sub: string, change: (jwt: SignJWT) => SignJWT = (jwt) => jwt, key: Uint8Array = secretKey) {
  return change(
    new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(sub)
      .setIssuer('shop')
      .setAudience('coupons')
      .setExpirationTime('5m'),
  ).sign(key);
}

function validClaims(sub: string) {
  return { sub, iss: 'shop', aud: 'coupons', exp: Math.floor(Date.now() / 1000) + 300 };
}

/** A token signed with the secret but shaped by hand, for what jose's SignJWT will not write. */
function handMadeToken(header: object, claims: object, hash: 'sha256' | 'sha384' = 'sha256'): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part(header)}.${part(claims)}`;
  return `${unsigned}.${createHmac(hash, SECRET).update(unsigned).digest('base64url')}`;
}

const clients = {
  'Connect JSON (answered before connect when it can)': (baseUrl: string) =>
    createClient(CouponService, createConnectTransport({ baseUrl, httpVersion: '1.1' })),
  gRPC: (baseUrl: string) => createClient(CouponService, createGrpcTransport({ baseUrl })),
};

async function outcome(call: Promise<{ coupon?: { userId: string } }>): Promise<string> {
  try {
    return `ok:${(await call).coupon?.userId}`;
  } catch (error) {
    return Code[ConnectError.from(error).code] as string;
  }
}

async function campaign(amount = 10n): Promise<string> {
  const client = clients.gRPC(env.baseUrl);
  const { campaign } = await client.createCampaign(
    {
      name: uniqueName('jwt'),
      amount,
      issuedAt: { seconds: BigInt(Math.floor(openWindow().issuedAt.getTime() / 1000)) },
      expiresAt: { seconds: BigInt(Math.floor(openWindow().expiresAt.getTime() / 1000)) },
    },
    { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } },
  );
  return campaign?.id as string;
}

describe.each(Object.entries(clients))('IssueCoupon with user tokens over %s', (_label, makeClient) => {
  const issue = async (campaignId: string, userId: string, authorization?: string) =>
    outcome(
      makeClient(env.baseUrl).issueCoupon(
        { campaignId, userId },
        authorization ? { headers: { authorization } } : {},
      ),
    );

  it("acts for the token's sub: an empty user_id means it, another one is PERMISSION_DENIED", async () => {
    const id = await campaign();
    const alice = `Bearer ${await token('alice')}`;
    expect(await issue(id, 'mallory', alice)).toBe('PermissionDenied');
    expect(await issue(id, '', alice)).toBe('ok:alice');
    expect(await issue(id, 'alice', alice)).toBe('AlreadyExists');
  });

  it('remembers a verified HS256 token once its call is refused, not when the call got its coupon', async () => {
    const remembered = async () =>
      Number(
        /^coupon_user_tokens_remembered (\d+)$/m.exec(
          await (await fetch(`${env.baseUrl}/metrics`)).text(),
        )?.[1],
      );
    const id = await campaign();
    const user = uniqueName('carol');
    const carol = `Bearer ${await token(user)}`;
    const before = await remembered();
    expect(before).toBeGreaterThanOrEqual(0);
    expect(await issue(id, '', carol)).toBe(`ok:${user}`);
    // Winners seldom come back; holding every new token made each issue dearer.
    expect(await remembered()).toBe(before);
    expect(await issue(id, '', carol)).toBe('AlreadyExists');
    // Refused users try again: their next calls find the token verified.
    expect(await remembered()).toBe(before + 1);
    expect(await issue(id, '', carol)).toBe('AlreadyExists');
    expect(await remembered()).toBe(before + 1);
  });

  it.each([
    ['no token', async () => undefined],
    ['not a bearer token', async () => 'Basic YWxpY2U6cHc='],
    ['the admin token', async () => `Bearer ${ADMIN_TOKEN}`],
    [
      'an expired token',
      async () =>
        `Bearer ${await token('bob', (j) => j.setExpirationTime(Math.floor(Date.now() / 1000) - 10))}`,
    ],
    ['a token not valid yet', async () => `Bearer ${await token('bob', (j) => j.setNotBefore('10m'))}`],
    ['another issuer', async () => `Bearer ${await token('bob', (j) => j.setIssuer('elsewhere'))}`],
    ['another audience', async () => `Bearer ${await token('bob', (j) => j.setAudience('other'))}`],
    [
      'another key',
      async () => `Bearer ${await token('bob', (j) => j, new TextEncoder().encode('x'.repeat(32)))}`,
    ],
    [
      'an HS384 token signed with the same secret (only HS256 is accepted)',
      async () => `Bearer ${handMadeToken({ alg: 'HS384' }, validClaims('bob'), 'sha384')}`,
    ],
    [
      'a token with a critical header extension nobody here understands',
      async () =>
        `Bearer ${handMadeToken({ alg: 'HS256', crit: ['x-shop'], 'x-shop': 1 }, validClaims('bob'))}`,
    ],
    [
      'a token whose exp is not a number',
      async () => `Bearer ${handMadeToken({ alg: 'HS256' }, { ...validClaims('bob'), exp: 'never' })}`,
    ],
    [
      'an unsigned token',
      async () =>
        `Bearer ${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"bob","iss":"shop","aud":"coupons"}').toString('base64url')}.`,
    ],
  ])('refuses %s as UNAUTHENTICATED', async (_case, authorization) => {
    expect(await issue(await campaign(), 'bob', await authorization())).toBe('Unauthenticated');
  });

  it('refuses an unauthenticated call to a sold-out campaign as UNAUTHENTICATED, not from memory', async () => {
    const id = await campaign(1n);
    const winner = `Bearer ${await token('winner')}`;
    expect(await issue(id, '', winner)).toBe('ok:winner');
    expect(await issue(id, '', `Bearer ${await token('late')}`)).toBe('ResourceExhausted');
    expect(await issue(id, 'late')).toBe('Unauthenticated');
    expect(await issue(id, 'winner')).toBe('Unauthenticated');
    expect(await issue(id, '', winner)).toBe('AlreadyExists');
  });
});

describe('a refused user token is told why, without the token', () => {
  it.each([
    [
      'expired',
      (j: SignJWT) => j.setExpirationTime(Math.floor(Date.now() / 1000) - 10),
      'the user token has expired; get a new one',
    ],
    ['not valid yet', (j: SignJWT) => j.setNotBefore('10m'), 'its "nbf" claim is not accepted here'],
    ['another issuer', (j: SignJWT) => j.setIssuer('elsewhere'), 'its "iss" claim is not accepted here'],
    ['another audience', (j: SignJWT) => j.setAudience('other'), 'its "aud" claim is not accepted here'],
  ])('%s', async (_case, change, message) => {
    const signed = await token('bob', change);
    const refused = await clients
      .gRPC(env.baseUrl)
      .issueCoupon(
        { campaignId: await campaign(), userId: '' },
        { headers: { authorization: `Bearer ${signed}` } },
      )
      .catch((error: unknown) => ConnectError.from(error));
    expect((refused as ConnectError).code).toBe(Code.Unauthenticated);
    expect((refused as ConnectError).rawMessage).toContain(message);
    expect((refused as ConnectError).rawMessage).not.toContain(signed.slice(0, 20));
  });
});

describe('the admin token and user tokens never mix', () => {
  it('a user token does not create a campaign', async () => {
    const refused = await clients
      .gRPC(env.baseUrl)
      .createCampaign(
        { name: uniqueName('x'), amount: 1n },
        { headers: { authorization: `Bearer ${await token('alice')}` } },
      )
      .catch((error: unknown) => ConnectError.from(error));
    expect((refused as ConnectError).code).toBe(Code.Unauthenticated);
  });
});

describe('a key server that cannot be reached', () => {
  it('is UNAVAILABLE (retry), not an invalid token (log in again)', async () => {
    const app = await startApp(isolatedConfig({ USER_JWT_JWKS_URL: 'http://127.0.0.1:1/jwks.json' }));
    try {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const signed = await new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setSubject('erin')
        .setExpirationTime('5m')
        .sign(privateKey);
      for (const makeClient of Object.values(clients)) {
        expect(
          await outcome(
            makeClient(app.baseUrl).issueCoupon(
              { campaignId: '0193a3c0-5b2e-7c41-9d3e-2f1a4b6c8d90', userId: '' },
              { headers: { authorization: `Bearer ${signed}` } },
            ),
          ),
        ).toBe('Unavailable');
      }
    } finally {
      await app.stop();
    }
  });
});

describe('public keys', () => {
  it.each([
    ['RS256', 'rsa', { modulusLength: 2048 }],
    ['ES256', 'ec', { namedCurve: 'P-256' }],
  ] as const)('verify %s tokens from a PEM key and from a JWKS URL', async (alg, type, options) => {
    const { publicKey, privateKey } = generateKeyPairSync(
      type as 'rsa',
      options as { modulusLength: number },
    );
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg };
    const jwks = http.createServer((_request, response) => {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
    const sign = (sub: string) =>
      new SignJWT({})
        .setProtectedHeader({ alg, kid: 'k1' })
        .setSubject(sub)
        .setExpirationTime('5m')
        .sign(privateKey);
    try {
      for (const setting of [
        {
          USER_JWT_PUBLIC_KEY: publicKey
            .export({ type: 'spki', format: 'pem' })
            .toString()
            .replaceAll('\n', '\\n'),
        },
        { USER_JWT_JWKS_URL: jwksUrl },
      ] as Record<string, string>[]) {
        const app = await startApp(isolatedConfig(setting));
        try {
          const client = clients.gRPC(app.baseUrl);
          const { campaign: created } = await client.createCampaign({
            name: uniqueName('pk'),
            amount: 5n,
            issuedAt: { seconds: BigInt(Math.floor(Date.now() / 1000) - 60) },
            expiresAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600) },
          });
          const id = created?.id as string;
          expect(
            await outcome(
              client.issueCoupon(
                { campaignId: id, userId: '' },
                { headers: { authorization: `Bearer ${await sign('carol')}` } },
              ),
            ),
          ).toBe('ok:carol');
          const forged = await token('dave');
          expect(
            await outcome(
              client.issueCoupon(
                { campaignId: id, userId: '' },
                { headers: { authorization: `Bearer ${forged}` } },
              ),
            ),
          ).toBe('Unauthenticated');
        } finally {
          await app.stop();
        }
      }
    } finally {
      jwks.close();
    }
  });
});

describe.each(Object.entries(clients))('ListUserCoupons with user tokens over %s', (_label, makeClient) => {
  it("lists only the token's own coupons", async () => {
    const id = await campaign();
    const [bobId, carolId] = [uniqueName('bob'), uniqueName('carol')];
    const bob = `Bearer ${await token(bobId)}`;
    const carol = `Bearer ${await token(carolId)}`;
    const client = makeClient(env.baseUrl);
    await client.issueCoupon({ campaignId: id, userId: '' }, { headers: { authorization: bob } });
    await client.issueCoupon({ campaignId: id, userId: '' }, { headers: { authorization: carol } });
    const own = await client.listUserCoupons({ userId: '' }, { headers: { authorization: bob } });
    expect(own.coupons.map((coupon) => coupon.userId)).toEqual([bobId]);
    const refused = async (userId: string, authorization?: string) =>
      client.listUserCoupons({ userId }, authorization ? { headers: { authorization } } : {}).then(
        () => 'ok',
        (error: unknown) => Code[ConnectError.from(error).code],
      );
    expect(await refused(carolId, bob)).toBe('PermissionDenied');
    expect(await refused(carolId)).toBe('Unauthenticated');
  });
});
