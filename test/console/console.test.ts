import { mkdirSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { DurationSchema, timestampDate } from '@bufbuild/protobuf/wkt';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CouponService, CouponState } from '../../src/gen/coupon/v1/coupon_pb.js';
import { ensureConsoleBuilt } from '../../web/build.ts';
import { chromiumAvailable, launchChromium } from '../support/chromium.ts';
import { campaignRequest } from '../support/rpc.ts';
import { rush, users } from '../support/rush.ts';
import { isolatedConfig, startApp, uniqueName } from '../support/services.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

const AXE_SCRIPT = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

const ADMIN_TOKEN = 'console-test-admin-token-0123456789';
const SCREENSHOTS = 'test-results/console';

/** Serves one page that calls the API from its own origin, and tells the test what it got. */
function startForeignPage(): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((request, response) => {
    const api = new URL(request.url ?? '/', 'http://x').searchParams.get('api') ?? '';
    response.setHeader('content-type', 'text/html; charset=utf-8');
    response.end(`<!doctype html><title>foreign</title><script>
      window.outcome = fetch(${JSON.stringify(`${api}/coupon.v1.CouponService/ListCampaigns`)}, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}',
      }).then((answer) => 'status ' + answer.status, (error) => 'refused: ' + error.name);
    </script>`);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port })),
  );
}

const withChromium = chromiumAvailable();

describe('the web console', () => {
  let browser: Browser;
  let service: Awaited<ReturnType<typeof startApp>>;
  let foreign: Awaited<ReturnType<typeof startForeignPage>>;

  beforeAll(async () => {
    await ensureConsoleBuilt(() => undefined);
    mkdirSync(SCREENSHOTS, { recursive: true });
    foreign = await startForeignPage();
    service = await startApp(
      isolatedConfig({
        ADMIN_TOKEN,
        // One origin of the foreign page is allowed, the other is not (same server, two names).
        CORS_ORIGINS: `http://localhost:${foreign.port}`,
        ISSUE_RATE_LIMIT_PER_IP: '0',
      }),
    );
    if (withChromium) browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await service?.stop();
    foreign?.server.close();
  });

  const api = () =>
    createClient(CouponService, createConnectTransport({ baseUrl: service.baseUrl, httpVersion: '1.1' }));
  const asAdmin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };

  describe('over HTTP', () => {
    it('answers index.html at / and at /campaigns/<id>, never cached, and hashed assets cached a year', async () => {
      const root = await fetch(`${service.baseUrl}/`);
      expect(root.status).toBe(200);
      expect(root.headers.get('content-type')).toMatch(/^text\/html/);
      expect(root.headers.get('cache-control')).toBe('no-cache');
      const html = await root.text();
      const page = await fetch(`${service.baseUrl}/campaigns/0190aaaa-0000-7000-8000-000000000000`);
      expect(await page.text()).toBe(html);

      const assets = [...html.matchAll(/\/assets\/([\w.-]+)/g)].map((match) => match[1]);
      expect(assets.length).toBeGreaterThan(0);
      for (const asset of assets) {
        expect(asset).toMatch(/-[\w-]{8,}\.(js|css)$/);
        const answer = await fetch(`${service.baseUrl}/assets/${asset}`);
        expect(answer.status).toBe(200);
        expect(answer.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      }
      expect((await fetch(`${service.baseUrl}/assets/..%2f..%2fpackage.json`)).status).toBe(404);
      expect((await fetch(`${service.baseUrl}/assets/missing-00000000.js`)).status).toBe(404);
    });

    it('serves no console with CONSOLE=off', async () => {
      const bare = await startApp(isolatedConfig({ CONSOLE: 'off' }));
      try {
        const root = await fetch(`${bare.baseUrl}/`);
        expect(root.status).not.toBe(200);
        expect(root.headers.get('content-type') ?? '').not.toMatch(/html/);
      } finally {
        await bare.stop();
      }
    });
  });

  describe.skipIf(!withChromium)('in Chromium', () => {
    async function openPage(
      path: string,
      options: { token?: boolean; bypassCSP?: boolean } = {},
    ): Promise<{ page: Page; context: BrowserContext }> {
      const context = await browser.newContext({
        viewport: { width: 1100, height: 900 },
        timezoneId: 'Asia/Seoul',
        // Only to inject axe: the console's own policy refuses any script it did not ship.
        bypassCSP: options.bypassCSP ?? false,
      });
      const page = await context.newPage();
      page.setDefaultTimeout(20_000);
      await page.goto(`${service.baseUrl}${path}`);
      if (options.token) {
        await page.getByTestId('admin-token').fill(ADMIN_TOKEN);
        await page.getByTestId('admin-token-save').click();
      }
      return { page, context };
    }

    it('creates a campaign through the form, showing a refusal next to its field first', async () => {
      const { page, context } = await openPage('/');
      try {
        const name = uniqueName('콘솔-캠페인');
        await page.getByTestId('campaign-name').fill(name);
        await page.getByTestId('campaign-amount').fill('300');
        // Without the admin token the server refuses, and the form says what is missing.
        await page.getByTestId('create-campaign-submit').click();
        await expect
          .poll(() => page.getByTestId('create-campaign-error').textContent())
          .toContain('관리자 토큰');

        await page.getByTestId('admin-token').fill(ADMIN_TOKEN);
        await page.getByTestId('admin-token-save').click();
        await page.getByTestId('campaign-amount').fill('0');
        await page.getByTestId('create-campaign-submit').click();
        const amountError = page.getByTestId('campaign-amount-error');
        await amountError.waitFor();
        expect(await amountError.textContent()).toMatch(/^amount/);
        await page.screenshot({ path: `${SCREENSHOTS}/create-refused.png`, fullPage: true });

        await page.getByTestId('campaign-amount').fill('300');
        await page.getByTestId('create-campaign-submit').click();
        await page.waitForURL(/\/campaigns\/[0-9a-f-]{36}$/);
        const id = page.url().split('/').pop() as string;
        await expect.poll(() => page.getByTestId('remaining-count').textContent()).toBe('300');
        expect(await page.getByTestId('campaign-state').getAttribute('data-state')).toBe('OPEN');
        const { campaign } = await api().getCampaign({ name }, asAdmin);
        expect(campaign?.id).toBe(id);
        expect(campaign?.amount).toBe(300n);

        await page.getByTestId('language-toggle').click();
        expect(await page.getByTestId('campaign-state').textContent()).toBe('Open');
        await page.goto(`${service.baseUrl}/`);
        const row = page.getByTestId('campaign-row').filter({ hasText: name });
        await row.waitFor();
        expect(await row.textContent()).toContain('0 / 300');
        await page.screenshot({ path: `${SCREENSHOTS}/campaign-list.png`, fullPage: true });
      } finally {
        await context.close();
      }
    });

    it('shows the remaining count fall to 0 and the state turn sold out while 1,000 users rush 300 coupons', async () => {
      const { campaign } = await api().createCampaign(
        campaignRequest({ name: uniqueName('러시'), amount: 300n }),
        asAdmin,
      );
      const id = campaign?.id as string;
      const { page, context } = await openPage(`/campaigns/${id}`);
      try {
        const remaining = page.getByTestId('remaining-count');
        await expect.poll(() => remaining.textContent()).toBe('300');

        const seen: number[] = [];
        let rushing = true;
        const watching = (async () => {
          while (rushing) seen.push(Number(await remaining.textContent()));
        })();
        let midRush: Promise<unknown> | undefined;
        const client = api();
        const result = await rush(
          async (userId) => {
            const { coupon } = await client.issueCoupon({ campaignId: id, userId });
            return { code: coupon?.code ?? '', userId };
          },
          users('rusher', 1000),
          {
            concurrency: 20,
            onIssued: (count) => {
              if (count === 150)
                midRush = page.screenshot({ path: `${SCREENSHOTS}/campaign-rush.png`, fullPage: true });
            },
          },
        );
        expect(result.outcomes).toEqual({ ok: 300, ResourceExhausted: 700 });

        await expect.poll(() => remaining.textContent(), { timeout: 10_000 }).toBe('0');
        await expect
          .poll(() => page.getByTestId('campaign-state').getAttribute('data-state'))
          .toBe('SOLD_OUT');
        rushing = false;
        await watching;
        await midRush;
        expect(await page.getByTestId('campaign-state').textContent()).toBe('매진');
        expect(await page.getByTestId('issued-count').textContent()).toBe('300');
        // The page only ever counted down, and it showed the rush on its way, not only its end.
        expect(seen).toEqual([...seen].sort((a, b) => b - a));
        expect(seen.some((value) => value > 0 && value < 300)).toBe(true);

        const [rows] = (await service.app.services.db.em
          .fork()
          .execute('select count(*) as n from coupon where campaign_id = ?', [id])) as [
          { n: number | string },
        ];
        expect(Number(rows.n)).toBe(300);
        await page.screenshot({ path: `${SCREENSHOTS}/campaign-sold-out.png`, fullPage: true });

        // The chart's time axis is in the page's language, and a chart drawn again for another
        // language keeps the rush's points: what the canvas is given to write, recorded.
        await page.evaluate(`(() => {
          const drawn = (window.drawnTexts = []);
          const fillText = CanvasRenderingContext2D.prototype.fillText;
          CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
            drawn.push(String(text));
            return fillText.call(this, text, ...rest);
          };
        })()`);
        const drawnTimes = async () =>
          ((await page.evaluate('window.drawnTexts.splice(0)')) as string[]).filter((text) =>
            /\d:\d\d/.test(text),
          );
        await page.getByTestId('language-toggle').click();
        await expect.poll(drawnTimes).toContainEqual(expect.stringMatching(/^\d\d:\d\d:\d\d$/));
        await page.getByTestId('language-toggle').click();
        await expect.poll(drawnTimes).toContainEqual(expect.stringMatching(/^오[전후] \d{1,2}:\d\d:\d\d$/));
      } finally {
        await context.close();
      }
    });

    it('issues a code from the try-it panel, then says "already issued" for the same user', async () => {
      const { campaign } = await api().createCampaign(campaignRequest({ amount: 5n }), asAdmin);
      const { page, context } = await openPage(`/campaigns/${campaign?.id}`);
      try {
        await page.getByTestId('issue-user-id').fill('쇼핑객-1');
        await page.getByTestId('issue-button').click();
        const result = page.getByTestId('issue-result');
        await expect.poll(() => result.getAttribute('data-ok')).toBe('true');
        const code = /[가-힣0-9]{10}/.exec((await result.textContent()) ?? '')?.[0];
        const { coupons } = await api().listCoupons({ campaignId: campaign?.id as string }, asAdmin);
        expect(coupons.map((coupon) => [coupon.code, coupon.userId])).toEqual([[code, '쇼핑객-1']]);
        await expect.poll(() => page.getByTestId('remaining-count').textContent()).toBe('4');

        await page.getByTestId('issue-button').click();
        await expect.poll(() => result.textContent()).toBe('이미 발급받았습니다');
        expect(await result.getAttribute('data-ok')).toBe('false');
        await page.screenshot({ path: `${SCREENSHOTS}/try-it.png`, fullPage: true });
      } finally {
        await context.close();
      }
    });

    it('looks a code up, redeems it for an order, and refuses another order, an expired code and no token in words', async () => {
      const week = create(DurationSchema, { seconds: 7n * 86_400n });
      const { campaign } = await api().createCampaign(campaignRequest({ couponValidFor: week }), asAdmin);
      const { coupon: issued } = await api().issueCoupon({
        campaignId: campaign?.id as string,
        userId: '단골-7',
      });
      const code = issued?.code as string;
      const storedRow = async () => {
        const [row] = (await service.app.services.db.em
          .fork()
          .execute('select order_id, redeemed_at from coupon where code = ?', [code])) as [
          { order_id: string | null; redeemed_at: Date | null },
        ];
        return row;
      };
      // How the browser itself writes an instant in its zone (the context runs in Asia/Seoul).
      const browserTime = (page: Page, date: Date) =>
        page.evaluate(
          (ms) => new Intl.DateTimeFormat('ko-KR', { dateStyle: 'medium', timeStyle: 'medium' }).format(ms),
          date.getTime(),
        );

      const anonymous = await openPage('/');
      try {
        const { page } = anonymous;
        await page.getByTestId('coupon-code').fill('가나다라마바사아자1');
        await page.getByTestId('coupon-lookup').click();
        await expect
          .poll(() => page.getByTestId('coupon-lookup-error').textContent())
          .toBe('그런 코드의 쿠폰이 없습니다');
        await page.getByTestId('coupon-code').fill('not-a-code');
        await page.getByTestId('coupon-lookup').click();
        await expect
          .poll(() => page.getByTestId('coupon-lookup-error').textContent())
          .toMatch(/^쿠폰 코드가 아닙니다/);

        await page.getByTestId('coupon-code').fill(code);
        await page.getByTestId('coupon-lookup').click();
        const details = page.getByTestId('coupon-details');
        await expect.poll(() => details.getAttribute('data-state')).toBe('ISSUED');
        expect(await page.getByTestId('coupon-details-code').textContent()).toBe(code);
        expect(await page.getByTestId('coupon-user-id').textContent()).toBe('단골-7');
        expect(await page.getByTestId('coupon-campaign').textContent()).toBe(campaign?.id);
        expect(await page.getByTestId('coupon-state').textContent()).toBe('사용 가능');
        expect(await page.getByTestId('coupon-valid-until').textContent()).toBe(
          await browserTime(page, timestampDate(issued?.validUntil as never)),
        );
        expect(await page.getByTestId('coupon-order-id').textContent()).toBe('–');

        // RedeemCoupon is an admin call: without the token it is refused in words, nothing stored.
        await page.getByTestId('redeem-order-id').fill('order-1001');
        await page.getByTestId('redeem-button').click();
        await expect.poll(() => page.getByTestId('redeem-result').textContent()).toContain('관리자 토큰');
        expect(await page.getByTestId('redeem-result').getAttribute('data-ok')).toBe('false');
        expect(await storedRow()).toEqual({ order_id: null, redeemed_at: null });
        await page.screenshot({ path: `${SCREENSHOTS}/coupon-refused-no-token.png`, fullPage: true });
      } finally {
        await anonymous.context.close();
      }

      const { page, context } = await openPage('/', { token: true });
      try {
        await page.getByTestId('coupon-code').fill(code);
        await page.getByTestId('coupon-lookup').click();
        const details = page.getByTestId('coupon-details');
        await expect.poll(() => details.getAttribute('data-state')).toBe('ISSUED');
        await page.getByTestId('redeem-order-id').fill('order-1001');
        await page.getByTestId('redeem-button').click();
        await expect.poll(() => details.getAttribute('data-state')).toBe('REDEEMED');
        expect(await page.getByTestId('redeem-result').textContent()).toBe('주문 order-1001에 사용했습니다');
        expect(await page.getByTestId('coupon-order-id').textContent()).toBe('order-1001');
        const row = await storedRow();
        expect(row?.order_id).toBe('order-1001');
        expect(await page.getByTestId('coupon-redeemed-at').textContent()).toBe(
          await browserTime(page, new Date(row?.redeemed_at as Date)),
        );
        await page.screenshot({ path: `${SCREENSHOTS}/coupon-redeemed.png`, fullPage: true });

        await page.getByTestId('redeem-order-id').fill('order-2002');
        await page.getByTestId('redeem-button').click();
        await expect
          .poll(() => page.getByTestId('redeem-result').textContent())
          .toBe('이미 다른 주문에 사용된 쿠폰입니다 (그 주문을 먼저 취소해야 합니다)');
        expect(await page.getByTestId('redeem-result').getAttribute('data-ok')).toBe('false');
        // The coupon read again after the refusal: still the first order's.
        expect(await page.getByTestId('coupon-order-id').textContent()).toBe('order-1001');
        expect((await storedRow())?.order_id).toBe('order-1001');
        await page.screenshot({ path: `${SCREENSHOTS}/coupon-other-order.png`, fullPage: true });

        // The order is cancelled: so is its redemption, and the coupon can be used again.
        await page.getByTestId('cancel-redemption-button').click();
        await expect.poll(() => details.getAttribute('data-state')).toBe('ISSUED');
        expect(await page.getByTestId('redeem-result').textContent()).toBe(
          '주문 order-1001의 사용을 취소했습니다: 다시 사용할 수 있습니다',
        );
        expect(await page.getByTestId('coupon-order-id').textContent()).toBe('–');
        expect(await storedRow()).toEqual({ order_id: null, redeemed_at: null });
        expect(await page.getByTestId('cancel-redemption-button').count()).toBe(0);
        await page.getByTestId('redeem-order-id').fill('order-2002');
        await page.getByTestId('redeem-button').click();
        await expect.poll(() => page.getByTestId('coupon-order-id').textContent()).toBe('order-2002');
        expect((await storedRow())?.order_id).toBe('order-2002');

        // An expired coupon: valid 300 ms, redeemed once the gate's own clock has passed that.
        const shortLived = await api().createCampaign(
          campaignRequest({ couponValidFor: create(DurationSchema, { nanos: 300_000_000 }) }),
          asAdmin,
        );
        const { coupon: soon } = await api().issueCoupon({
          campaignId: shortLived.campaign?.id as string,
          userId: '늦은-손님',
        });
        const validUntil = timestampDate(soon?.validUntil as never);
        while ((await service.app.services.gate.now(shortLived.campaign?.id as string)) < validUntil) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        expect((await api().getCoupon({ code: soon?.code as string })).coupon?.state).toBe(
          CouponState.EXPIRED,
        );
        await page.getByTestId('coupon-code').fill(soon?.code as string);
        await page.getByTestId('coupon-lookup').click();
        await expect.poll(() => details.getAttribute('data-state')).toBe('EXPIRED');
        expect(await page.getByTestId('coupon-state').textContent()).toBe('기간 만료');
        await page.getByTestId('redeem-order-id').fill('order-3003');
        await page.getByTestId('redeem-button').click();
        await expect
          .poll(() => page.getByTestId('redeem-result').textContent())
          .toBe(`유효기간이 지난 쿠폰입니다 (${await browserTime(page, validUntil)}까지)`);

        await page.getByTestId('language-toggle').click();
        expect(await page.getByTestId('coupon-state').textContent()).toBe('Expired');
      } finally {
        await context.close();
      }
    });

    it('changes the amount and closes the campaign with the token, and is refused without it', async () => {
      const name = uniqueName('admin');
      const { campaign } = await api().createCampaign(campaignRequest({ name, amount: 10n }), asAdmin);
      const id = campaign?.id as string;
      const stored = async () => (await api().getCampaign({ name }, asAdmin)).campaign;

      const anonymous = await openPage(`/campaigns/${id}`);
      try {
        const { page } = anonymous;
        await page.getByTestId('new-amount').fill('20');
        await page.getByTestId('change-amount').click();
        await page.getByTestId('confirm-yes').click();
        await expect.poll(() => page.getByTestId('admin-result').textContent()).toContain('관리자 토큰');
        await page.getByTestId('close-campaign').click();
        // The confirmation step: cancelling it changes nothing.
        await page.getByTestId('confirm-no').click();
        expect(await page.getByTestId('confirm-dialog').count()).toBe(0);
        await page.getByTestId('close-campaign').click();
        await page.getByTestId('confirm-yes').click();
        await expect.poll(() => page.getByTestId('admin-result').textContent()).toContain('관리자 토큰');
        expect((await stored())?.amount).toBe(10n);
        expect(await page.getByTestId('campaign-state').getAttribute('data-state')).toBe('OPEN');
      } finally {
        await anonymous.context.close();
      }

      const { page, context } = await openPage(`/campaigns/${id}`, { token: true });
      try {
        await page.getByTestId('new-amount').fill('25');
        await page.getByTestId('change-amount').click();
        await page.getByTestId('confirm-yes').click();
        await expect.poll(() => page.getByTestId('remaining-count').textContent()).toBe('25');
        expect((await stored())?.amount).toBe(25n);

        await page.getByTestId('close-campaign').click();
        await page.screenshot({ path: `${SCREENSHOTS}/close-confirm.png`, fullPage: true });
        await page.getByTestId('confirm-yes').click();
        await expect.poll(() => page.getByTestId('campaign-state').getAttribute('data-state')).toBe('ENDED');
        expect(await page.getByTestId('campaign-state').textContent()).toBe('종료됨');
        expect((await stored())?.state).toBe(4);
        // A token never travels in a URL; it stays in this tab's sessionStorage.
        expect(page.url()).not.toContain(ADMIN_TOKEN);
        expect(await page.evaluate<string[]>('Object.values(sessionStorage)')).toContain(ADMIN_TOKEN);
      } finally {
        await context.close();
      }
    });

    it('lets only a page from an origin in CORS_ORIGINS call the API', async () => {
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        const outcomeFrom = async (origin: string) => {
          await page.goto(`${origin}/?api=${encodeURIComponent(service.baseUrl)}`);
          return page.evaluate<string>('window.outcome');
        };
        expect(await outcomeFrom(`http://localhost:${foreign.port}`)).toBe('status 200');
        expect(await outcomeFrom(`http://127.0.0.1:${foreign.port}`)).toBe('refused: TypeError');
      } finally {
        await context.close();
      }
    });

    it('reconnects a dropped stream by itself, saying so, and catches up', async () => {
      const { campaign } = await api().createCampaign(campaignRequest({ amount: 50n }), asAdmin);
      const proxy = await TcpProxy.start({ host: '127.0.0.1', port: Number(new URL(service.baseUrl).port) });
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${proxy.route(service.baseUrl)}campaigns/${campaign?.id}`);
        const status = page.getByTestId('stream-status');
        await expect.poll(() => status.getAttribute('data-status')).toBe('live');
        proxy.cut();
        await expect.poll(() => status.getAttribute('data-status')).toBe('reconnecting');
        expect(await status.textContent()).toMatch(/연결이 끊겼습니다/);
        await api().issueCoupon({ campaignId: campaign?.id as string, userId: 'during-outage' });
        proxy.restore();
        await expect.poll(() => status.getAttribute('data-status'), { timeout: 15_000 }).toBe('live');
        await expect.poll(() => page.getByTestId('remaining-count').textContent()).toBe('49');
      } finally {
        await context.close();
        await proxy.close();
      }
    });

    it('works over gRPC-Web when chosen', async () => {
      const { campaign } = await api().createCampaign(campaignRequest({ amount: 3n }), asAdmin);
      const { page, context } = await openPage(`/campaigns/${campaign?.id}`);
      try {
        await page.getByTestId('protocol').selectOption('grpc-web');
        await page.waitForLoadState('load');
        await expect.poll(() => page.getByTestId('remaining-count').textContent()).toBe('3');
        const grpcWebCalls: string[] = [];
        page.on('request', (request) => {
          const type = request.headers()['content-type'] ?? '';
          if (type.startsWith('application/grpc-web')) grpcWebCalls.push(request.url());
        });
        await page.getByTestId('issue-user-id').fill('grpc-web-user');
        await page.getByTestId('issue-button').click();
        await expect.poll(() => page.getByTestId('issue-result').getAttribute('data-ok')).toBe('true');
        expect(grpcWebCalls.some((url) => url.endsWith('/coupon.v1.CouponService/IssueCoupon'))).toBe(true);
      } finally {
        await context.close();
      }
    });

    it('can be used from the keyboard alone, and axe finds no serious accessibility violation', async () => {
      const { campaign } = await api().createCampaign(campaignRequest({ amount: 3n }), asAdmin);
      for (const path of ['/', `/campaigns/${campaign?.id}`]) {
        const { page, context } = await openPage(path, { bypassCSP: true });
        try {
          await page.getByTestId(path === '/' ? 'create-campaign-form' : 'remaining-count').waitFor();
          await page.addScriptTag({ path: AXE_SCRIPT });
          const focused = () =>
            page.evaluate<string | null>(`document.activeElement?.dataset?.testid ?? null`);
          const violations = await page.evaluate<{ id: string; impact: string; help: string }[]>(
            `axe.run().then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help })))`,
          );
          expect(violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')).toEqual([]);
          if (path === '/') {
            // Tab to the coupon lookup, type a code issued over the API and press Enter; then axe
            // again, over the coupon's details and the redeem form.
            const { coupon } = await api().issueCoupon({
              campaignId: campaign?.id as string,
              userId: 'axe-user',
            });
            for (let presses = 0; presses < 100 && (await focused()) !== 'coupon-code'; presses++) {
              await page.keyboard.press('Tab');
            }
            expect(await focused()).toBe('coupon-code');
            await page.keyboard.type(coupon?.code as string);
            await page.keyboard.press('Enter');
            await page.getByTestId('coupon-details').waitFor();
            await page.keyboard.press('Tab');
            expect(await focused()).toBe('coupon-lookup');
            const again = await page.evaluate<{ id: string; impact: string; help: string }[]>(
              `axe.run().then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help })))`,
            );
            expect(again.filter((v) => v.impact === 'serious' || v.impact === 'critical')).toEqual([]);
            continue;
          }
          // Tab to the try-it field, type, Tab to its button and press Enter.
          for (let presses = 0; presses < 30 && (await focused()) !== 'issue-user-id'; presses++) {
            await page.keyboard.press('Tab');
          }
          expect(await focused()).toBe('issue-user-id');
          await page.keyboard.type('keyboard-user');
          await page.keyboard.press('Tab');
          expect(await focused()).toBe('issue-button');
          await page.keyboard.press('Enter');
          await expect.poll(() => page.getByTestId('issue-result').getAttribute('data-ok')).toBe('true');
        } finally {
          await context.close();
        }
      }
    });

    it('fits a 360 px wide screen', async () => {
      const context = await browser.newContext({ viewport: { width: 360, height: 780 } });
      try {
        const page = await context.newPage();
        await page.goto(`${service.baseUrl}/`);
        await page.getByTestId('create-campaign-form').waitFor();
        const overflow = await page.evaluate<number>(
          'document.documentElement.scrollWidth - window.innerWidth',
        );
        expect(overflow).toBeLessThanOrEqual(0);
        await page.screenshot({ path: `${SCREENSHOTS}/narrow-360.png`, fullPage: true });

        // A looked-up coupon too: its code, campaign id and redeem form wrap instead of overflowing.
        const { campaign } = await api().createCampaign(campaignRequest(), asAdmin);
        const { coupon } = await api().issueCoupon({
          campaignId: campaign?.id as string,
          userId: 'narrow-user',
        });
        await page.getByTestId('coupon-code').fill(coupon?.code as string);
        await page.getByTestId('coupon-lookup').click();
        await page.getByTestId('coupon-details').waitFor();
        expect(
          await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth'),
        ).toBeLessThanOrEqual(0);
        await page.screenshot({ path: `${SCREENSHOTS}/narrow-360-coupon.png`, fullPage: true });
      } finally {
        await context.close();
      }
    });
  });
});
