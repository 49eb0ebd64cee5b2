import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectJsonRequest, Http1Connection, outcomeOf } from '../../loadtest/driver/http1-client.ts';
import { type App, buildApp } from '../../src/app.ts';
import { eventually } from '../support/invariants.ts';
import { isolatedConfig, openWindow, silentLogger, startApp, uniqueName } from '../support/services.ts';

// No background reads while a test counts queries: only what the calls themselves cost shows.
const config = isolatedConfig({
  RECONCILE_INTERVAL_MS: '3600000',
  CAMPAIGN_REFRESH_MS: '3600000',
  ISSUE_RATE_LIMIT_PER_USER: '0',
});
let a: Awaited<ReturnType<typeof startApp>>;
/** A second instance on the same database and Redis (same DATABASE_URL and REDIS_KEY_PREFIX). */
let b: { app: App; port: number };

beforeAll(async () => {
  a = await startApp(config);
  const app = await buildApp(config, silentLogger);
  b = { app, port: (await app.listen()).port };
});
afterAll(async () => {
  await b?.app.close();
  await a?.stop();
});

const portOf = (baseUrl: string) => Number(new URL(baseUrl).port);

/** A well-formed UUIDv7 made at `ms`, with a random tail: what a forger can produce. */
function idMadeAt(ms: number): string {
  const time = Math.floor(ms).toString(16).padStart(12, '0');
  const tail = Math.floor(Math.random() * 2 ** 48)
    .toString(16)
    .padStart(12, '0');
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${tail.slice(0, 3)}-8${tail.slice(3, 6)}-${tail.slice(0, 12)}`;
}

/** SQL statements an app sends, seen by a hook of the test's own in front of the app's. */
function watchQueries(app: App) {
  const config = app.services.db.config;
  const original = config.get('onQuery');
  const seen = { count: 0, stop: () => config.set('onQuery', original) };
  config.set('onQuery', (sql, params) => {
    seen.count++;
    return original(sql, params);
  });
  return seen;
}

async function queriesCounted(baseUrl: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('coupon_db_queries_total '));
  return line ? Number(line.split(' ').at(-1)) : Number.NaN;
}

/** Sends every message as IssueCoupon over `connections` keep-alive connections; outcome counts. */
async function issueAll(port: number, messages: (() => object)[], connections = 16) {
  const outcomes: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const connection = await Http1Connection.open('127.0.0.1', port);
      try {
        while (next < messages.length) {
          const message = (messages[next++] as () => object)();
          const reply = await connection.send(
            connectJsonRequest(`127.0.0.1:${port}`, 'IssueCoupon', message),
          );
          const outcome = outcomeOf(reply);
          outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        }
      } finally {
        connection.close();
      }
    }),
  );
  return outcomes;
}

async function createCampaignOver(port: number): Promise<string> {
  const connection = await Http1Connection.open('127.0.0.1', port);
  try {
    const window = openWindow();
    const reply = await connection.send(
      connectJsonRequest(`127.0.0.1:${port}`, 'CreateCampaign', {
        name: uniqueName('directory'),
        amount: '5',
        issuedAt: window.issuedAt.toISOString(),
        expiresAt: window.expiresAt.toISOString(),
      }),
    );
    expect(reply.status).toBe(200);
    return (JSON.parse(reply.body.toString()) as { campaign: { id: string } }).campaign.id;
  } finally {
    connection.close();
  }
}

describe('made-up campaign ids', () => {
  it('10,000 distinct well-formed v7 ids are all NOT_FOUND without a single database query', async () => {
    await createCampaignOver(portOf(a.baseUrl));
    const counted = await queriesCounted(a.baseUrl);
    const seen = watchQueries(a.app);
    try {
      const year = 365 * 24 * 60 * 60 * 1000;
      const ids = Array.from({ length: 10_000 }, (_, i) =>
        idMadeAt(Date.now() - 60_000 - (i * year) / 10_000),
      );
      expect(new Set(ids).size).toBe(10_000);
      const outcomes = await issueAll(
        portOf(a.baseUrl),
        ids.map((campaignId) => () => ({ campaignId, userId: 'mallory' })),
      );
      expect(outcomes).toEqual({ not_found: 10_000 });
      expect(seen.count).toBe(0);
      expect(await queriesCounted(a.baseUrl)).toBe(counted);
    } finally {
      seen.stop();
    }
  });

  it('forged ids that look just made cost a bounded number of queries per second, not one each', async () => {
    const seen = watchQueries(a.app);
    const started = Date.now();
    try {
      const outcomes = await issueAll(
        portOf(a.baseUrl),
        Array.from({ length: 1_000 }, () => () => ({ campaignId: idMadeAt(Date.now()), userId: 'mallory' })),
        64,
      );
      const seconds = (Date.now() - started) / 1000;
      expect(outcomes).toEqual({ not_found: 1_000 });
      // One shared read at a time, at most five a second.
      expect(seen.count).toBeLessThanOrEqual(Math.ceil(seconds * 5) + 2);
    } finally {
      seen.stop();
    }
  });
});

describe('two instances', () => {
  it('a campaign created on one is issued on the other at once', async () => {
    for (let i = 0; i < 5; i++) {
      const campaignId = await createCampaignOver(portOf(a.baseUrl));
      expect(await issueAll(b.port, [() => ({ campaignId, userId: `first-${i}` })], 1)).toEqual({ ok: 1 });
    }
  });

  it('hears of a campaign created on the other through its announcement, with no read of its own', async () => {
    // Periodic reads are an hour apart here; an issue would answer through the read a miss for a
    // recent id waits for, so only the directory shows whether the announcement arrived.
    const campaignId = await createCampaignOver(portOf(a.baseUrl));
    const problems = await eventually(
      async () => (b.app.services.directory.lookup(campaignId) === 'live' ? [] : ['not announced']),
      5_000,
    );
    expect(problems).toEqual([]);
  });

  it('a campaign whose announcement was lost is issued too: a miss for a recent id waits for a read', async () => {
    const campaign = await b.app.services.repositories.campaigns.create({
      name: uniqueName('unannounced'),
      amount: 3,
      ...openWindow(),
    });
    expect(b.app.services.directory.lookup(campaign.id)).toBe('recent');
    const outcomes = await issueAll(
      b.port,
      Array.from({ length: 20 }, (_, i) => () => ({ campaignId: campaign.id, userId: `user-${i}` })),
      20,
    );
    expect(outcomes).toEqual({ ok: 3, resource_exhausted: 17 });
  });
});
