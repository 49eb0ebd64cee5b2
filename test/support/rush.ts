import { Code, ConnectError } from '@connectrpc/connect';

export interface IssuedCouponSeen {
  readonly code: string;
  readonly userId: string;
}

export interface RushResult {
  /** Every coupon a client was told about. */
  readonly issued: IssuedCouponSeen[];
  /** Outcome counts by Connect code name ("ok" for success). */
  readonly outcomes: Record<string, number>;
  /** The slowest call, in milliseconds. */
  readonly maxLatencyMs: number;
}

export type IssueCall = (userId: string) => Promise<{ code: string; userId: string }>;

/**
 * Many users asking at once: `concurrency` callers work through `userIds`. `onIssued` sees the
 * running count of successes, so a test can inject its fault mid-rush.
 */
export async function rush(
  issue: IssueCall,
  userIds: readonly string[],
  options: { concurrency: number; onIssued?: (count: number) => void },
): Promise<RushResult> {
  const issued: IssuedCouponSeen[] = [];
  const outcomes: Record<string, number> = {};
  let maxLatencyMs = 0;
  let next = 0;
  const worker = async () => {
    while (next < userIds.length) {
      const userId = userIds[next++] as string;
      const started = performance.now();
      let outcome = 'ok';
      try {
        const coupon = await issue(userId);
        issued.push({ code: coupon.code, userId: coupon.userId });
        options.onIssued?.(issued.length);
      } catch (error) {
        const connectError = ConnectError.from(error);
        outcome = Code[connectError.code] ?? 'Unknown';
        // gRPC maps an HTTP/2 REFUSED_STREAM to UNAVAILABLE ("not processed, safe to retry",
        // PROTOCOL-HTTP2.md); connect-node reports it as INTERNAL, so name it for what it is.
        if (connectError.message.includes('NGHTTP2_REFUSED_STREAM')) outcome = 'RefusedStream';
        const kind =
          (error as { dependency?: string; kind?: string }).dependency ?? (error as { kind?: string }).kind;
        if (!(error instanceof ConnectError) && kind) outcome = kind;
      }
      maxLatencyMs = Math.max(maxLatencyMs, performance.now() - started);
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return { issued, outcomes, maxLatencyMs };
}

export function users(label: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${label}-${i}`);
}
