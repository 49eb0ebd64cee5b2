// The seed's load test over gRPC (k6/net/grpc, HTTP/2 cleartext): 700 requests/s for a minute, a
// new user per request, 10,000 coupons. Same thresholds as issue-connect.ts.
//
//   k6 run loadtest/k6/issue-grpc.ts
//   k6 run -e GRPC_ADDR=host:8080 -e RATE=1000 loadtest/k6/issue-grpc.ts
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import grpc from 'k6/net/grpc';
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

const client = new grpc.Client();
client.load(['../../proto'], 'coupon/v1/coupon.proto');

export const options: Options = {
  scenarios: { issue: scenario },
  thresholds: {
    unexpected_errors: ['count<1'],
    coupons_duplicate: ['count<1'],
    count_mismatch: ['count<1'],
    checks: ['rate==1'],
    // Generous on purpose: k6 usually shares the machine with the service.
    grpc_req_duration: ['p(95)<500'],
  },
};

const metadata = () => (settings.adminToken ? { authorization: `Bearer ${settings.adminToken}` } : {});

function connectOnce(): void {
  // Each VU has its own client: connect once, on its first iteration.
  if (__ITER === 0) client.connect(settings.grpcAddress, { plaintext: true });
}

export function setup(): SetupData {
  client.connect(settings.grpcAddress, { plaintext: true });
  const request = campaignRequest();
  const response = client.invoke('coupon.v1.CouponService/CreateCampaign', request, { metadata: metadata() });
  if (response.status !== grpc.StatusOK)
    throw new Error(`CreateCampaign failed: ${JSON.stringify(response.error)}`);
  const campaign = (response.message as { campaign: { id: string } }).campaign;
  client.close();
  return { campaignId: campaign.id, campaignName: request.name };
}

export default function (data: SetupData): void {
  connectOnce();
  const response = client.invoke('coupon.v1.CouponService/IssueCoupon', {
    campaignId: data.campaignId,
    userId: uniqueUser(),
  });
  if (response.status === grpc.StatusOK) {
    issued.add(1);
    check(response, {
      'coupon has a code': (r) =>
        /^[가-힣0-9]{1,10}$/u.test((r.message as { coupon: { code: string } }).coupon.code),
    });
  } else if (response.status === grpc.StatusResourceExhausted) {
    soldOut.add(1);
  } else if (response.status === grpc.StatusAlreadyExists) {
    duplicate.add(1);
  } else {
    unexpected.add(1, { code: String(response.status) });
  }
}

export function teardown(data: SetupData): void {
  client.connect(settings.grpcAddress, { plaintext: true });
  const response = client.invoke('coupon.v1.CouponService/GetCampaign', { name: data.campaignName });
  const exact = countsAreExact(response.message as CampaignRead);
  if (!exact) countMismatch.add(1);
  client.close();
}
