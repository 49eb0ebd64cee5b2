/**
 * What WatchCampaign's fan-out costs: N watchers of one campaign on one instance, idle and then
 * during issuing. Starts the service (`src/main.ts`) on a Redis of its own (so INFO commandstats
 * counts the service alone) and a database of its own, opens the watchers over gRPC (100 streams
 * per HTTP/2 connection, the server's limit), and reports Redis commands a second, the service's
 * CPU and the messages the watchers received.
 *
 *   node loadtest/watch-fanout.ts [--watchers 10000] [--seconds 10] [--issue-rate 200]
 *                                 [--messages-per-second 2000]
 *
 * The watchers run in this process, on the same cores as the service: its own CPU is reported too.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { parseArgs, promisify } from 'node:util';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import mysql from 'mysql2/promise';
import { CouponService } from '../src/gen/coupon/v1/coupon_pb.js';
import { startProcess } from './driver/processes.ts';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    watchers: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '10' },
    'issue-rate': { type: 'string', default: '200' },
    /** WATCH_MESSAGES_PER_SECOND of the service. */
    'messages-per-second': { type: 'string', default: '2000' },
    'database-server': { type: 'string', default: 'mysql://root@127.0.0.1:3306' },
  },
});
const watchers = Number(values.watchers);
const seconds = Number(values.seconds);
const issueRate = Number(values['issue-rate']);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const redisPort = await freePort();
const redis = spawn(
  'redis-server',
  ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
  {
    stdio: 'ignore',
  },
);
const cli = async (...args: string[]) => (await run('redis-cli', ['-p', String(redisPort), ...args])).stdout;
while (!(await cli('ping').catch(() => '')).includes('PONG')) await new Promise((r) => setTimeout(r, 50));
const commandsRun = async () => {
  let calls = 0;
  for (const [, command, count] of (await cli('info', 'commandstats')).matchAll(
    /cmdstat_([^:]+):calls=(\d+)/g,
  )) {
    if (command !== 'info') calls += Number(count);
  }
  return calls;
};

const database = `coupon_fanout_${randomBytes(4).toString('hex')}`;
const service = await startProcess('../../src/main.ts', {
  PORT: '0',
  HOST: '127.0.0.1',
  DATABASE_URL: `${values['database-server']}/${database}`,
  REDIS_URL: `redis://127.0.0.1:${redisPort}/0`,
  LOG_LEVEL: 'info',
  ISSUE_RATE_LIMIT_PER_USER: '0',
  MAX_CONNECTIONS: String(watchers / 50 + 100),
  WATCH_LIFETIME_MS: String(10 * 60_000),
  WATCH_MESSAGES_PER_SECOND: values['messages-per-second'],
});
const baseUrl = `http://127.0.0.1:${service.port}`;
const connect = createClient(CouponService, createConnectTransport({ baseUrl, httpVersion: '1.1' }));
const now = Date.now();
const { campaign } = await connect.createCampaign({
  name: `fanout-${database}`,
  amount: 10_000_000n,
  issuedAt: { seconds: BigInt(Math.floor(now / 1000) - 60), nanos: 0 },
  expiresAt: { seconds: BigInt(Math.floor(now / 1000) + 3600), nanos: 0 },
});
const campaignId = campaign?.id ?? '';

let received = 0;
const aborts = new AbortController();
const clients = Array.from({ length: Math.ceil(watchers / 100) }, () =>
  createClient(CouponService, createGrpcTransport({ baseUrl })),
);
const firsts: Promise<void>[] = [];
for (let i = 0; i < watchers; i++) {
  const client = clients[Math.floor(i / 100)] ?? clients[0];
  firsts.push(
    new Promise<void>((resolve) => {
      (async () => {
        try {
          for await (const _ of client?.watchCampaign({ campaignId }, { signal: aborts.signal }) ?? []) {
            received++;
            resolve();
          }
        } catch {
          resolve();
        }
      })();
    }),
  );
}
const openedAt = performance.now();
await Promise.all(firsts);
console.log(`${watchers} watchers open in ${((performance.now() - openedAt) / 1000).toFixed(1)} s`);

/** A Prometheus series' value from the service's /metrics. */
async function metric(series: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
const ISSUED = 'coupon_rpc_duration_seconds_{}{method="IssueCoupon",code="ok"}';
const issueSeconds = async () => ({
  sum: await metric(ISSUED.replace('{}', 'sum')),
  count: await metric(ISSUED.replace('{}', 'count')),
});

async function measure(label: string, during?: () => Promise<void>) {
  const issuedBefore = await issueSeconds();
  const commands = await commandsRun();
  const cpu = service.cpuSeconds() ?? 0;
  const own = process.cpuUsage();
  const got = received;
  const started = performance.now();
  await Promise.all([new Promise((r) => setTimeout(r, seconds * 1000)), during?.()]);
  const elapsed = (performance.now() - started) / 1000;
  const row = {
    phase: label,
    'redis commands/s': Math.round(((await commandsRun()) - commands) / elapsed),
    'service CPU %': Math.round((((service.cpuSeconds() ?? 0) - cpu) / elapsed) * 100),
    'watchers (this process) CPU %': Math.round(
      ((process.cpuUsage(own).user + process.cpuUsage(own).system) / 1e6 / elapsed) * 100,
    ),
    'messages/s received': Math.round((received - got) / elapsed),
    'messages/s per watcher': Number(((received - got) / elapsed / watchers).toFixed(2)),
    'IssueCoupon mean ms (server side)': await issueSeconds().then(({ sum, count }) =>
      count > issuedBefore.count
        ? Number((((sum - issuedBefore.sum) / (count - issuedBefore.count)) * 1000).toFixed(1))
        : null,
    ),
  };
  console.log(JSON.stringify(row));
  return row;
}

await measure('idle');
let issued = 0;
const outcomes: Record<string, number> = {};
const latencies: number[] = [];
await measure(`issuing ${issueRate}/s`, async () => {
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    const tick = performance.now();
    await Promise.all(
      Array.from({ length: Math.max(1, Math.round(issueRate / 10)) }, () => {
        const sent = performance.now();
        return connect
          .issueCoupon({ campaignId, userId: `u-${issued++}` })
          .then(
            () => {
              outcomes.ok = (outcomes.ok ?? 0) + 1;
            },
            (error: { code?: number }) => {
              outcomes[String(error.code)] = (outcomes[String(error.code)] ?? 0) + 1;
            },
          )
          .finally(() => latencies.push(performance.now() - sent));
      }),
    );
    await new Promise((r) => setTimeout(r, Math.max(0, 100 - (performance.now() - tick))));
  }
});

console.log(
  'issue outcomes',
  JSON.stringify(outcomes),
  'issue latency seen by this process p50/max ms',
  latencies.sort((a, b) => a - b)[Math.floor(latencies.length / 2)]?.toFixed(1),
  latencies.at(-1)?.toFixed(1),
);
aborts.abort();
await service.stop();
redis.kill();
const db = await mysql.createConnection(values['database-server']);
await db.query(`drop database if exists \`${database}\``);
await db.end();
