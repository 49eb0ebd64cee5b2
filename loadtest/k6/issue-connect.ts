// The seed's load test over Connect JSON (k6/http): 700 requests/s for a minute, a new user per
// request, 10,000 coupons. Fails when any call ends other than issued or sold out, or when the
// campaign does not end with exactly `amount` coupons.
//
//   k6 run loadtest/k6/issue-connect.ts
//   k6 run -e BASE_URL=http://host:8080 -e RATE=1000 -e DURATION=30s -e AMOUNT=5000 loadtest/k6/issue-connect.ts
import { check } from 'k6';
import http from 'k6/http';
import { Counter } from 'k6/metrics';
import type { Options } from 'k6/options';
import {
  type CampaignRead,
  campaignRequest,
  countsAreExact,
  type SetupData,
  scenario,
  settings,
  uniqueUser,
} from './lib.ts';

const issued = new Counter('coupons_issued');
const soldOut = new Counter('coupons_sold_out');
const duplicate = new Counter('coupons_duplicate');
const unexpected = new Counter('unexpected_errors');
const countMismatch = new Counter('count_mismatch');

export const options: Options = {
  scenarios: { issue: scenario },
  thresholds: {
    unexpected_errors: ['count<1'],
    coupons_duplicate: ['count<1'],
    count_mismatch: ['count<1'],
    checks: ['rate==1'],
    // Generous on purpose: k6 shares the machine with the service in most runs; the exactness
    // thresholds above are the ones that matter.
    http_req_duration: ['p(95)<500'],
  },
};

function call(method: string, body: unknown) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (settings.adminToken) headers.authorization = `Bearer ${settings.adminToken}`;
  return http.post(`${settings.baseUrl}/coupon.v1.CouponService/${method}`, JSON.stringify(body), {
    headers,
    // Sold out (429) and already issued (409) are answers, not failures of the request.
    responseCallback: http.expectedStatuses(200, 409, 429),
  });
}

export function setup(): SetupData {
  const request = campaignRequest();
  const response = call('CreateCampaign', request);
  if (response.status !== 200) throw new Error(`CreateCampaign failed: ${response.status} ${response.body}`);
  const campaign = (response.json() as { campaign: { id: string } }).campaign;
  return { campaignId: campaign.id, campaignName: request.name };
}

export default function (data: SetupData): void {
  const response = call('IssueCoupon', { campaignId: data.campaignId, userId: uniqueUser() });
  if (response.status === 200) {
    issued.add(1);
    check(response, {
      'coupon has a code': (r) =>
        /^[가-힣0-9]{1,10}$/u.test((r.json() as { coupon: { code: string } }).coupon.code),
    });
    return;
  }
  const code = (response.json() as { code?: string }).code;
  if (code === 'resource_exhausted') soldOut.add(1);
  else if (code === 'already_exists') duplicate.add(1);
  else unexpected.add(1, { code: String(code ?? response.status) });
}

export function teardown(data: SetupData): void {
  const response = call('GetCampaign', { name: data.campaignName });
  const exact = countsAreExact(response.json() as unknown as CampaignRead);
  if (!exact) countMismatch.add(1);
}
