import { create } from '@bufbuild/protobuf';
import { createContextValues, type HandlerContext } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { couponServiceImpl } from '../../src/api/coupon-service.ts';
import type { CouponLifecycle, IssueEntry } from '../../src/application/coupon-lifecycle.ts';
import { SoldOutError } from '../../src/domain/errors.ts';
import { IssueCouponsRequestSchema, type IssueCouponsResponse } from '../../src/gen/coupon/v1/coupon_pb.js';

// How the handler answers entries is all this checks; the entries themselves come from the real
// stores in issue-coupons.test.ts. A bug behind one entry cannot be caused from outside.
function serviceAnswering(entries: IssueEntry[], failures: unknown[][]) {
  const lifecycle = { issueCoupons: async () => entries } as unknown as CouponLifecycle;
  return couponServiceImpl({
    lifecycle,
    onEntryFailures: (reported: unknown) => failures.push([reported]),
  } as unknown as Parameters<typeof couponServiceImpl>[0]);
}

describe('IssueCoupons entries', () => {
  it('reports the entries that failed for no named reason (answered "internal error") once a call, and no refusal', async () => {
    const bug = new TypeError("Cannot read properties of undefined (reading 'id')");
    const failures: unknown[][] = [];
    const service = serviceAnswering(
      [
        { userId: 'alice', refusal: bug },
        { userId: 'bob', refusal: new SoldOutError('c') },
        { userId: 'carol', refusal: new RangeError('another bug') },
      ],
      failures,
    );
    const answer = (await service.issueCoupons?.(
      create(IssueCouponsRequestSchema, { campaignId: 'c', userIds: ['alice', 'bob', 'carol'] }),
      { values: createContextValues() } as HandlerContext,
    )) as IssueCouponsResponse;
    expect(answer.results.map((result) => [result.userId, result.refusal, result.message])).toEqual([
      ['alice', 'internal', 'internal error'],
      ['bob', 'resource_exhausted', expect.stringContaining('sold out')],
      ['carol', 'internal', 'internal error'],
    ]);
    // One report for the call (a bug behind every entry of a 1,000-user call is one log line).
    expect(failures).toEqual([[{ campaignId: 'c', count: 2, first: { userId: 'alice', error: bug } }]]);
  });
});
