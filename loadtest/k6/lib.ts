// Shared by the k6 scripts: settings from the environment, request bodies, unique users, the final count check.
import { check } from 'k6';

/** A setting from `-e NAME=value`, or its default. */
export function setting(name: string, fallback: string): string {
  const value = __ENV[name];
  return value === undefined || value === '' ? fallback : value;
}

export const settings = {
  baseUrl: setting('BASE_URL', 'http://127.0.0.1:8080'),
  grpcAddress: setting('GRPC_ADDR', '127.0.0.1:8080'),
  rate: Number(setting('RATE', '700')),
  duration: setting('DURATION', '1m'),
  amount: Number(setting('AMOUNT', '10000')),
  adminToken: setting('ADMIN_TOKEN', ''),
};

/** The seed's scenario: a constant arrival rate, a new user per request. */
export const scenario = {
  executor: 'constant-arrival-rate',
  rate: settings.rate,
  timeUnit: '1s',
  duration: settings.duration,
  preAllocatedVUs: Math.max(50, Math.ceil(settings.rate / 5)),
  maxVUs: Math.max(200, settings.rate),
} as const;

/** A user id no other iteration uses. */
export function uniqueUser(): string {
  return `k6-${__VU}-${__ITER}-${Math.random().toString(36).slice(2, 10)}`;
}

/** A campaign open from now for an hour, named uniquely per run. */
export function campaignRequest(): { name: string; amount: string; issuedAt: string; expiresAt: string } {
  const now = Date.now();
  return {
    name: `k6-${now}-${Math.random().toString(36).slice(2, 8)}`,
    amount: String(settings.amount),
    issuedAt: new Date(now).toISOString(),
    expiresAt: new Date(now + 60 * 60 * 1000).toISOString(),
  };
}

export interface SetupData {
  readonly campaignId: string;
  readonly campaignName: string;
}

/** The campaign as GetCampaign returns it (JSON names, int64 as strings). */
export interface CampaignRead {
  readonly campaign: { readonly issuedCount?: string };
  readonly couponCodes?: readonly string[];
}

/** True when the campaign ended exact: issued_count == AMOUNT, one unique code per coupon. */
export function countsAreExact(read: CampaignRead): boolean {
  const issuedCount = Number(read.campaign.issuedCount ?? '0');
  const codes = read.couponCodes ?? [];
  return check(read, {
    'issued_count == amount': () => issuedCount === settings.amount,
    'one code per coupon': () => codes.length === issuedCount,
    'codes are unique': () => new Set(codes).size === codes.length,
  });
}
