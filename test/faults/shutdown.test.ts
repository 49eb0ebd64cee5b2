import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Services } from '../../src/app.ts';
import { CouponService, CreateCampaignRequestSchema } from '../../src/gen/coupon/v1/coupon_pb.js';
import { type ChildService, childEnv, startChildService } from '../support/child-service.ts';
import { settledProblems, snapshot } from '../support/invariants.ts';
import { rush, users } from '../support/rush.ts';
import { isolatedConfig, openWindow, startServices, uniqueName } from '../support/services.ts';

const config = isolatedConfig({ RECONCILE_INTERVAL_MS: '3600000' });
let inspector: Awaited<ReturnType<typeof startServices>>;
let services: Services;
let child: ChildService | undefined;

beforeAll(async () => {
  inspector = await startServices(config);
  services = inspector.services;
});
afterAll(async () => {
  child?.process.kill('SIGKILL');
  await inspector?.stop();
});

describe('SIGTERM during a rush', () => {
  it.each([
    ['Connect over HTTP/1.1', (baseUrl: string) => createConnectTransport({ baseUrl, httpVersion: '1.1' })],
    ['gRPC over HTTP/2', (baseUrl: string) => createGrpcTransport({ baseUrl })],
  ])(
    'over %s ends every call OK or UNAVAILABLE, leaves nothing pending, and exits 0',
    async (_label, transport) => {
      const amount = 5_000;
      child = await startChildService(childEnv(config));
      const client = createClient(CouponService, transport(child.baseUrl));
      const window = openWindow();
      const { campaign } = await client.createCampaign(
        create(CreateCampaignRequestSchema, {
          name: uniqueName('sigterm'),
          amount: BigInt(amount),
          issuedAt: timestampFromDate(window.issuedAt),
          expiresAt: timestampFromDate(window.expiresAt),
        }),
      );
      const campaignId = campaign?.id ?? '';
      const running = child;
      let signalled = false;
      const result = await rush(
        async (userId) => (await client.issueCoupon({ campaignId, userId })).coupon ?? { code: '', userId },
        users('drain', 2_000),
        {
          concurrency: 64,
          onIssued: (count) => {
            if (count === 100 && !signalled) {
              signalled = true;
              running.process.kill('SIGTERM');
            }
          },
        },
      );
      expect(signalled).toBe(true);
      expect(await running.exited()).toBe(0);
      child = undefined;

      // Only OK and UNAVAILABLE (a refused HTTP/2 stream is UNAVAILABLE in gRPC terms); and the
      // rows below equal the OK calls, so no refused or failed call issued anything.
      expect(
        Object.keys(result.outcomes).filter((o) => !['ok', 'Unavailable', 'RefusedStream'].includes(o)),
      ).toEqual([]);
      expect(result.outcomes.ok).toBeGreaterThanOrEqual(100);
      // Drained, not abandoned: every claim made before the exit was settled by its own request.
      const state = await snapshot(services, campaignId);
      expect(settledProblems(state)).toEqual([]);
      expect(state.rows).toHaveLength(result.issued.length);
      const stored = new Map(state.rows.map((row) => [row.code, row.user_id]));
      for (const coupon of result.issued) expect(stored.get(coupon.code)).toBe(coupon.userId);
      console.info(
        `SIGTERM (${_label}): outcomes ${JSON.stringify(result.outcomes)}, rows ${state.rows.length}, pending ${state.pending}, exit 0`,
      );
    },
  );
});
