import type { Services } from '../../src/app.ts';

export interface CampaignSnapshot {
  readonly amount: number;
  readonly issuedCount: number;
  readonly rows: { user_id: string; code: string }[];
  readonly remaining: number | null;
  readonly users: string[];
  readonly pending: number;
}

/** MySQL and Redis together, for one campaign. */
export async function snapshot(services: Services, campaignId: string): Promise<CampaignSnapshot> {
  const em = services.db.em.fork();
  const [campaign] = await em.execute<{ amount: number; issued_count: number }[]>(
    'select amount, issued_count from campaign where id = ?',
    [campaignId],
  );
  const rows = await em.execute<{ user_id: string; code: string }[]>(
    'select user_id, code from coupon where campaign_id = ?',
    [campaignId],
  );
  const keys = services.redisGate.keys(campaignId);
  const remaining = await services.redis.get(keys.remaining);
  return {
    amount: Number(campaign?.amount),
    issuedCount: Number(campaign?.issued_count),
    rows,
    remaining: remaining === null ? null : Number(remaining),
    users: await services.redis.smembers(keys.users),
    pending: await services.redis.zcard(keys.pending),
  };
}

/** What must hold at every moment, whatever failed: MySQL never passes the amount. */
export function assertNeverOversold(state: CampaignSnapshot): string[] {
  const problems: string[] = [];
  if (state.rows.length > state.amount) problems.push(`${state.rows.length} rows > amount ${state.amount}`);
  if (state.issuedCount !== state.rows.length) {
    problems.push(`issued_count ${state.issuedCount} != rows ${state.rows.length}`);
  }
  if (new Set(state.rows.map((r) => r.user_id)).size !== state.rows.length)
    problems.push('a user holds two coupons');
  if (new Set(state.rows.map((r) => r.code)).size !== state.rows.length) problems.push('a code repeats');
  return problems;
}

/**
 * What must hold once every claim is settled: Redis and MySQL tell the same story. (A gate with
 * no state at all is also settled: it is rebuilt from MySQL on the next claim.)
 */
export function settledProblems(state: CampaignSnapshot): string[] {
  const problems = assertNeverOversold(state);
  if (state.remaining === null) return problems;
  if (state.pending !== 0) problems.push(`${state.pending} claims still pending`);
  if (state.rows.length + state.remaining !== state.amount) {
    problems.push(`rows ${state.rows.length} + remaining ${state.remaining} != amount ${state.amount}`);
  }
  const holders = new Set(state.rows.map((r) => r.user_id));
  const blocked = state.users.filter((user) => !holders.has(user));
  if (blocked.length > 0) problems.push(`${blocked.length} users blocked without a coupon`);
  if (state.users.length !== holders.size)
    problems.push(`user set ${state.users.length} != holders ${holders.size}`);
  return problems;
}

/** Polls `check` until it reports no problems or the deadline passes; returns the last problems. */
export async function eventually(check: () => Promise<string[]>, deadlineMs: number): Promise<string[]> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const problems = await check();
    if (problems.length === 0 || Date.now() > deadline) return problems;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
