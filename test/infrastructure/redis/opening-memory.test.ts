import { describe, expect, it } from 'vitest';
import { OpeningMemory } from '../../../src/infrastructure/redis/opening-memory.ts';

/** A memory on a clock the test moves. */
function memoryAt(start = 1_000) {
  const clock = { now: start };
  const memory = new OpeningMemory({ trustMs: 1_000, marginMs: 20, now: () => clock.now });
  return { memory, clock };
}

const opensAt = new Date('2026-12-01T12:00:10.000Z');

describe('OpeningMemory', () => {
  it('proves a campaign not open while Redis could not have reached the opening, less the margin', () => {
    const { memory, clock } = memoryAt();
    // Sent at 1,000 local; Redis judged it at 12:00:09.500.
    memory.learn('c', opensAt, new Date('2026-12-01T12:00:09.500Z'), 1_000);
    expect(memory.provenNotOpen('c')).toEqual(opensAt);
    // 400 ms on: Redis reads at most 09.900 (+0.4 ms drift), 20 ms margin: still provably early.
    clock.now = 1_400;
    expect(memory.provenNotOpen('c')).toEqual(opensAt);
    // 479 ms on: 09.979 + 0.479 drift + 20 margin is still before 10.000; 481 ms on it is not,
    // and Redis must judge.
    clock.now = 1_479;
    expect(memory.provenNotOpen('c')).toEqual(opensAt);
    clock.now = 1_481;
    expect(memory.provenNotOpen('c')).toBeUndefined();
    // And the sample is gone: later calls ask Redis until it says "not started" again.
    clock.now = 1_000;
    expect(memory.provenNotOpen('c')).toBeUndefined();
  });

  it('believes one answer for trustMs at most, however far the opening is', () => {
    const { memory, clock } = memoryAt();
    memory.learn('c', opensAt, new Date('2026-12-01T11:00:00.000Z'), 1_000);
    clock.now = 2_000;
    expect(memory.provenNotOpen('c')).toEqual(opensAt);
    clock.now = 2_001;
    expect(memory.provenNotOpen('c')).toBeUndefined();
  });

  it('keeps the sample that bounds Redis clock tightest, so it proves "early" closest to the opening', () => {
    const { memory, clock } = memoryAt();
    // A quick answer: sent at 1,000, judged at 09.500 (Redis reads at most 09.500 + elapsed).
    memory.learn('c', opensAt, new Date('2026-12-01T12:00:09.500Z'), 1_000);
    // A slow one (a busy moment): sent at 1,010, judged at 09.540, 30 ms later than the first
    // sample bounds it. Keeping it would stop the proof 30 ms earlier.
    clock.now = 1_050;
    memory.learn('c', opensAt, new Date('2026-12-01T12:00:09.540Z'), 1_010);
    clock.now = 1_479;
    expect(memory.provenNotOpen('c')).toEqual(opensAt);
    // A tighter one replaces it: sent at 1,400, judged at 09.890 (10 ms tighter than the first).
    memory.learn('c', opensAt, new Date('2026-12-01T12:00:09.890Z'), 1_400);
    clock.now = 1_489;
    expect(memory.provenNotOpen('c')).toEqual(opensAt);
    clock.now = 1_491;
    expect(memory.provenNotOpen('c')).toBeUndefined();
  });

  it('takes a new sample when the opening it names moved, however loose', () => {
    const { memory, clock } = memoryAt();
    memory.learn('c', opensAt, new Date('2026-12-01T12:00:09.500Z'), 1_000);
    const later = new Date('2026-12-01T12:00:20.000Z');
    clock.now = 1_100;
    memory.learn('c', later, new Date('2026-12-01T12:00:09.700Z'), 1_050);
    expect(memory.provenNotOpen('c')).toEqual(later);
  });

  it('knows nothing of a campaign it was not told of, or was told to forget', () => {
    const { memory } = memoryAt();
    expect(memory.provenNotOpen('c')).toBeUndefined();
    memory.learn('c', opensAt, new Date('2026-12-01T11:00:00.000Z'), 1_000);
    memory.forget('c');
    expect(memory.provenNotOpen('c')).toBeUndefined();
  });

  it('keeps at most maxCampaigns, dropping the oldest', () => {
    const memory = new OpeningMemory({ trustMs: 1_000, marginMs: 20, maxCampaigns: 2, now: () => 1_000 });
    for (const id of ['a', 'b', 'c']) memory.learn(id, opensAt, new Date('2026-12-01T11:00:00.000Z'), 1_000);
    expect(['a', 'b', 'c'].map((id) => memory.provenNotOpen(id) !== undefined)).toEqual([false, true, true]);
  });
});
