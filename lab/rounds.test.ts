// Pure statistics of interleaved rounds on fixtures (no root, no kernel).
import { describe, expect, it } from 'vitest';
import { goalByRounds, headlineFromRounds, interleavedOrder, perRoundRatios, runInterleaved, spreadOf } from './rounds.ts';
import { median } from './stats.ts';

describe('interleaving order', () => {
  it('runs A B C A B C, never A A B B', () => {
    const o = interleavedOrder(['A', 'B', 'C'], 3).map((s) => `${s.config}${s.round}`);
    expect(o).toEqual(['A0', 'B0', 'C0', 'A1', 'B1', 'C1', 'A2', 'B2', 'C2']);
  });

  it('alternate reverses every second round, so each pair swaps which runs first', () => {
    const o = interleavedOrder(['A', 'B', 'C'], 4, { alternate: true }).map((s) => `${s.config}${s.round}`);
    expect(o).toEqual(['A0', 'B0', 'C0', 'C1', 'B1', 'A1', 'A2', 'B2', 'C2', 'C3', 'B3', 'A3']);
  });

  it('refuses a bad repeat or duplicate configurations', () => {
    expect(() => interleavedOrder(['A'], 0)).toThrow(/repeat/);
    expect(() => interleavedOrder(['A', 'A'], 1)).toThrow(/duplicate/);
  });

  it('runInterleaved measures in that order, one at a time, and groups per configuration', async () => {
    const seen: string[] = [];
    let running = 0;
    const r = await runInterleaved(['x', 'y'], 3, async (c, round) => {
      expect(running++).toBe(0);
      seen.push(`${c}${round}`);
      await new Promise((res) => setTimeout(res, 1));
      running--;
      return round * 10 + (c === 'x' ? 1 : 2);
    });
    expect(seen).toEqual(['x0', 'y0', 'x1', 'y1', 'x2', 'y2']);
    expect(r.byConfig).toEqual({ x: [1, 11, 21], y: [2, 12, 22] });
    expect(r.order).toHaveLength(6);
  });

  it('an abort keeps complete rounds only, so configurations stay paired', async () => {
    const ac = new AbortController();
    const r = await runInterleaved(['x', 'y', 'z'], 3, async (c, round) => {
      if (round === 1 && c === 'y') ac.abort();
      return round;
    }, { signal: ac.signal });
    expect(r.byConfig).toEqual({ x: [0], y: [0], z: [0] });
    expect(r.order.map((s) => s.config)).toEqual(['x', 'y', 'z']);
  });

  it('onMeasured sees every measurement as it is taken, the incomplete round\'s too', async () => {
    const ac = new AbortController();
    const seen: string[] = [];
    await runInterleaved(['x', 'y'], 3, async (c, round) => {
      if (round === 1 && c === 'x') ac.abort();
      return `${c}${round}`;
    }, { signal: ac.signal, onMeasured: (st, m) => seen.push(`${st.round}:${st.config}=${m}`) });
    expect(seen).toEqual(['0:x=x0', '0:y=y0', '1:x=x1']);
  });

  it('an alternating run still groups per configuration in round order', async () => {
    const seen: string[] = [];
    const r = await runInterleaved(['x', 'y'], 3, async (c, round) => {
      seen.push(`${c}${round}`);
      return round;
    }, { alternate: true });
    expect(seen).toEqual(['x0', 'y0', 'y1', 'x1', 'x2', 'y2']);
    expect(r.byConfig).toEqual({ x: [0, 1, 2], y: [0, 1, 2] });
  });
});

describe('ratio per round before the median', () => {
  // a machine that slows down 2x in round 2: per-round ratios stay 2, a ratio of medians would not
  const a = [100, 400, 110]; // ours (e.g. events/s)
  const b = [50, 100, 55]; // comparator, measured beside it in the same round
  it('computes the ratio inside each round', () => {
    expect(perRoundRatios(a, b)).toEqual([2, 4, 2]);
    expect(median(perRoundRatios(a, b))).toBe(2);
    // the ratio of medians differs: that is why the order of operations matters
    expect(median(a) / median(b)).toBeCloseTo(110 / 55, 10);
    const drift = perRoundRatios([100, 200, 300], [50, 100, 150]);
    expect(drift).toEqual([2, 2, 2]);
    expect(median([100, 200, 300]) / median([50, 100, 40])).not.toBe(median(perRoundRatios([100, 200, 300], [50, 100, 40])));
  });

  it('a zero or missing denominator gives NaN for that round, and the spread drops it', () => {
    const r = perRoundRatios([1, 2, 3], [1, 0, NaN]);
    expect(r[0]).toBe(1);
    expect(r[1]).toBeNaN();
    expect(r[2]).toBeNaN();
    expect(spreadOf(r).spread.n).toBe(1);
    expect(() => perRoundRatios([1], [1, 2])).toThrow(/paired/);
  });
});

describe('spread', () => {
  it('gives median, min–max and MAD', () => {
    // median 10; deviations 2,0,1,5,0 → MAD 1
    expect(spreadOf([8, 10, 11, 15, 10])).toEqual({ median: 10, spread: { n: 5, min: 8, max: 15, mad: 1 } });
  });

  // review, session 60: ∞ rounds were dropped from the median but counted by the goal
  it('counts ±∞ rounds as values (the goal does), drops NaN ones', () => {
    expect(spreadOf([Infinity, Infinity, 4, NaN])).toEqual({ median: Infinity, spread: { n: 3, min: 4, max: Infinity, mad: 0 } });
    expect(spreadOf([Infinity, 3, 4, 5]).median).toBe(4.5);
  });
});

describe('goal by rounds', () => {
  it('met only when every round meets it, not met when none does', () => {
    expect(goalByRounds([1.01, 1.02, 1.0], '<=', 1.03)).toMatchObject({ verdict: 'met', met: 3, n: 3, detail: 'met in 3/3 rounds' });
    expect(goalByRounds([1.01, 1.05, 1.0], '<=', 1.03)).toMatchObject({ verdict: 'inconclusive', met: 2 });
    expect(goalByRounds([5, 6], '>=', 10)).toMatchObject({ verdict: 'not met', met: 0, n: 2 });
    expect(goalByRounds([], '>=', 1).verdict).toBe('inconclusive');
    // ∞ is a value (proxy ÷ an XDP path that added ≤ 0), NaN is no value
    expect(goalByRounds([12, Infinity, NaN], '>=', 10)).toMatchObject({ verdict: 'met', met: 2, n: 2 });
    expect(goalByRounds([Infinity], '<=', 1)).toMatchObject({ verdict: 'not met', met: 0, n: 1 });
  });
});

describe('headlineFromRounds', () => {
  it('takes the median of the figure, the median of per-round ratios, and judges the goal per round', () => {
    const h = headlineFromRounds({
      name: 'consumer.eventsPerSec', label: 'events/s', unit: 'events/s', better: 'higher',
      rounds: [100, 400, 110],
      comparator: { name: 'C consumer', rounds: [50, 100, 55], likeForLike: true },
      goal: { op: '>=', target: 1.9, of: 'ratio' },
    });
    expect(h.value).toBe(110);
    expect(h.spread).toEqual({ n: 3, min: 100, max: 400, mad: 10 });
    expect(h.comparator).toMatchObject({ name: 'C consumer', value: 55, ratio: 2, ratioRounds: [2, 4, 2], likeForLike: true });
    expect(h.comparator!.ratioSpread).toEqual({ n: 3, min: 2, max: 4, mad: 0 });
    expect(h.goal).toEqual({ op: '>=', target: 1.9, of: 'ratio', verdict: 'met', detail: 'met in 3/3 rounds' });
  });

  it('accepts caller-computed ratios (e.g. theirs ÷ ours) and goals on the value', () => {
    const h = headlineFromRounds({
      name: 'x', label: 'x', unit: 'ns', better: 'lower', rounds: [10, 20, 30],
      comparator: { name: 'y', ratioRounds: [3, 1, 2] }, goal: { op: '<=', target: 20 },
    });
    expect(h.comparator!.ratio).toBe(2);
    expect(h.goal).toMatchObject({ of: 'value', verdict: 'inconclusive', detail: 'met in 2/3 rounds' });
  });
});
