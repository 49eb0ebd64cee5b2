import * as hdr from 'hdr-histogram-js';
import { connectJsonRequest, Http1Connection, outcomeOf } from './http1-client.ts';

export interface LoadResult {
  readonly requests: number;
  readonly seconds: number;
  readonly perSecond: number;
  /** Latency percentiles in milliseconds. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly outcomes: Record<string, number>;
  /** Requests whose intended send time passed while every connection was busy (open loop only). */
  readonly late: number;
  /** Share of one core the driver itself used. */
  readonly driverCpu: number;
  /** Requests per second of each round, when the result combines several. */
  readonly rounds?: number[];
}

/** What one run recorded; several runs of a scenario combine into one LoadResult. */
export interface LoadRun {
  readonly histogram: hdr.Histogram;
  readonly outcomes: Record<string, number>;
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly late: number;
}

export interface Target {
  readonly host: string;
  readonly port: number;
}

export interface LoadPlan {
  readonly connections: number;
  /** Builds request number `i`; returning undefined ends the run (closed loop). */
  readonly request: (i: number) => Buffer | undefined;
  /** Closed loop: stop after this long. */
  readonly durationMs?: number;
  /** Open loop: send at this rate (requests per second) for `durationMs`. */
  readonly ratePerSecond?: number;
  /** Told the outcome of request `i` (to count outcomes per campaign, say). */
  readonly onOutcome?: (i: number, outcome: string) => void;
}

/** Where load goes: one server, or several (instances of one service) sharing the connections. */
export type Targets = Target | readonly Target[];

/** One result from one or more runs of the same scenario: totals, and percentiles over every request. */
export function summarize(runs: readonly LoadRun[]): LoadResult {
  const [first, ...rest] = runs;
  if (!first) throw new Error('summarize needs at least one run');
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });
  const outcomes: Record<string, number> = {};
  let seconds = 0;
  let cpuSeconds = 0;
  let late = 0;
  for (const run of [first, ...rest]) {
    histogram.add(run.histogram);
    for (const [outcome, count] of Object.entries(run.outcomes))
      outcomes[outcome] = (outcomes[outcome] ?? 0) + count;
    seconds += run.seconds;
    cpuSeconds += run.cpuSeconds;
    late += run.late;
  }
  const ms = (us: number) => Math.round(us / 10) / 100;
  return {
    requests: histogram.totalCount,
    seconds: Math.round(seconds * 100) / 100,
    perSecond: Math.round(histogram.totalCount / seconds),
    p50: ms(histogram.getValueAtPercentile(50)),
    p90: ms(histogram.getValueAtPercentile(90)),
    p99: ms(histogram.getValueAtPercentile(99)),
    max: ms(histogram.maxValue),
    outcomes,
    late,
    driverCpu: Math.round((cpuSeconds / seconds) * 100) / 100,
    ...(rest.length > 0 && { rounds: runs.map((run) => Math.round(run.histogram.totalCount / run.seconds)) }),
  };
}

/** One run, summarized. */
export async function runLoad(target: Targets, plan: LoadPlan): Promise<LoadResult> {
  return summarize([await measureLoad(target, plan)]);
}

/**
 * Drives load over `connections` keep-alive HTTP/1.1 connections. Closed loop: each connection
 * sends its next request as soon as the previous answer arrives. Open loop: requests are due at a
 * fixed rate and latency is measured from when each was due, so a stalled server cannot hide
 * its queueing (no coordinated omission). Given several targets, connection i goes to target
 * i modulo their number (round-robin per connection, as a layer-4 balancer would spread them).
 */
export async function measureLoad(target: Targets, plan: LoadPlan): Promise<LoadRun> {
  const targets: readonly Target[] = Array.isArray(target) ? target : [target as Target];
  const connections = await Promise.all(
    Array.from({ length: plan.connections }, (_, i) => {
      const { host, port } = targets[i % targets.length] as Target;
      return Http1Connection.open(host, port);
    }),
  );
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });
  const outcomes: Record<string, number> = {};
  const record = (i: number, dueAt: number, outcome: string) => {
    histogram.recordValue(Math.max(1, Math.round((performance.now() - dueAt) * 1000)));
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    plan.onOutcome?.(i, outcome);
  };
  const cpuStart = process.cpuUsage();
  const started = performance.now();
  const deadline = plan.durationMs === undefined ? Number.POSITIVE_INFINITY : started + plan.durationMs;
  let next = 0;
  let late = 0;

  try {
    if (plan.ratePerSecond === undefined) {
      await Promise.all(
        connections.map(async (connection) => {
          while (performance.now() < deadline) {
            const i = next++;
            const request = plan.request(i);
            if (!request) return;
            const sentAt = performance.now();
            const reply = await connection.send(request).catch(() => undefined);
            record(i, sentAt, reply ? outcomeOf(reply) : 'connection_error');
          }
        }),
      );
    } else {
      const interval = 1000 / plan.ratePerSecond;
      const idle = [...connections];
      const backlog: { i: number; dueAt: number; request: Buffer }[] = [];
      const inFlight = new Set<Promise<void>>();
      const dispatch = (connection: Http1Connection, item: { i: number; dueAt: number; request: Buffer }) => {
        const flight = connection.send(item.request).then(
          (reply) => record(item.i, item.dueAt, outcomeOf(reply)),
          () => record(item.i, item.dueAt, 'connection_error'),
        );
        const tracked = flight.finally(() => {
          inFlight.delete(tracked);
          const queued = backlog.shift();
          if (queued) dispatch(connection, queued);
          else idle.push(connection);
        });
        inFlight.add(tracked);
      };
      while (performance.now() < deadline) {
        const dueAt = started + next * interval;
        const wait = dueAt - performance.now();
        if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
        const i = next++;
        const request = plan.request(i);
        if (!request) break;
        // First in, first out: every connection stays busy, so none idles into the server's keep-alive timeout.
        const connection = idle.shift();
        if (connection) dispatch(connection, { i, dueAt, request });
        else {
          late++;
          backlog.push({ i, dueAt, request });
        }
      }
      while (inFlight.size > 0) await Promise.race(inFlight);
    }
  } finally {
    for (const connection of connections) connection.close();
  }
  const cpu = process.cpuUsage(cpuStart);
  return {
    histogram,
    outcomes,
    seconds: (performance.now() - started) / 1000,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    late,
  };
}

/** One request over a fresh connection, for setup steps and GetCampaign timing. */
export async function callOnce(
  target: Target,
  method: string,
  message: unknown,
  headers: string[] = [],
): Promise<{ status: number; json: unknown; bytes: number; ms: number }> {
  const connection = await Http1Connection.open(target.host, target.port);
  try {
    const started = performance.now();
    const reply = await connection.send(
      connectJsonRequest(`${target.host}:${target.port}`, method, message, headers),
    );
    const ms = performance.now() - started;
    return {
      status: reply.status,
      json: JSON.parse(reply.body.toString('utf8')),
      bytes: reply.body.length,
      ms,
    };
  } finally {
    connection.close();
  }
}

/** What an open-loop run of fixed arrival times recorded, request by request. */
export interface ArrivalsRun {
  /** performance.now() when request i was written to its connection (NaN if never sent). */
  readonly sentAt: Float64Array;
  /** performance.now() when its answer arrived. */
  readonly answeredAt: Float64Array;
  readonly outcomes: string[];
  /** Requests written more than 1 ms after their arrival time (every connection was busy, or the driver behind). */
  readonly late: number;
  readonly cpuSeconds: number;
}

/**
 * An open loop of fixed arrival times: request i is due at `dueAt[i]` (performance.now() ms,
 * ascending), decided before the run, whatever the server does meanwhile (a crowd does not wait
 * for earlier answers). Each request goes out on an idle connection as soon as it is due; when
 * every connection is busy it waits in one first-in-first-out queue, so requests are written in
 * arrival order. The time each was actually written is recorded, for fairness measured against
 * the order the server could see.
 */
export async function measureArrivals(
  target: Targets,
  plan: {
    readonly connections: number;
    readonly dueAt: Float64Array;
    readonly request: (i: number) => Buffer;
  },
): Promise<ArrivalsRun> {
  const targets: readonly Target[] = Array.isArray(target) ? target : [target as Target];
  const connections = await Promise.all(
    Array.from({ length: plan.connections }, (_, i) => {
      const { host, port } = targets[i % targets.length] as Target;
      return Http1Connection.open(host, port);
    }),
  );
  const count = plan.dueAt.length;
  const requests = Array.from({ length: count }, (_, i) => plan.request(i));
  const sentAt = new Float64Array(count).fill(Number.NaN);
  const answeredAt = new Float64Array(count).fill(Number.NaN);
  const outcomes: string[] = new Array(count);
  const idle = [...connections];
  const backlog: number[] = [];
  let backlogHead = 0;
  let answered = 0;
  let late = 0;
  let allAnswered: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    allAnswered = resolve;
  });
  const send = (connection: Http1Connection, i: number) => {
    const now = performance.now();
    sentAt[i] = now;
    if (now - (plan.dueAt[i] as number) > 1) late++;
    connection.send(requests[i] as Buffer).then(
      (reply) => settle(connection, i, outcomeOf(reply)),
      () => settle(connection, i, 'connection_error'),
    );
  };
  const settle = (connection: Http1Connection, i: number, outcome: string) => {
    answeredAt[i] = performance.now();
    outcomes[i] = outcome;
    if (++answered === count) allAnswered();
    if (backlogHead < backlog.length) send(connection, backlog[backlogHead++] as number);
    else idle.push(connection);
  };
  const cpuStart = process.cpuUsage();
  try {
    let next = 0;
    while (next < count) {
      const wait = (plan.dueAt[next] as number) - performance.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait - 0.5));
      else if (wait > 0) await new Promise((resolve) => setImmediate(resolve));
      // Everything due by now, in order: what the timer's lateness delayed goes out at once.
      const now = performance.now();
      while (next < count && (plan.dueAt[next] as number) <= now) {
        const connection = idle.shift();
        if (connection) send(connection, next);
        else backlog.push(next);
        next++;
      }
    }
    if (count > 0) await done;
  } finally {
    for (const connection of connections) connection.close();
  }
  const cpu = process.cpuUsage(cpuStart);
  return { sentAt, answeredAt, outcomes, late, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}
