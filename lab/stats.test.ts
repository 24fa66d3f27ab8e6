import { describe, expect, it } from 'vitest';
import { bootstrapRatioCI, mad, median, rng, summary, verdict } from './stats.ts';

describe('stats', () => {
  it('median and MAD', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
    // NaN is no value, wherever it stands (review, session 60: the result depended on its place)
    expect([median([NaN, 1, 2, 3, 4]), median([1, 2, NaN, 3, 4]), median([1, 2, 3, 4, NaN])]).toEqual([2.5, 2.5, 2.5]);
    expect(median([NaN])).toBeNaN();
    expect(summary([1, NaN, 3])).toEqual({ n: 2, median: 2, mad: 1, min: 1, max: 3 });
    // deviations from 3: 2,1,0,1,97 → median 1
    expect(mad([1, 2, 3, 4, 100])).toBe(1);
    expect(summary([5, 1, 9])).toEqual({ n: 3, median: 5, mad: 4, min: 1, max: 9 });
  });

  it('seeded generator is deterministic and uniform enough', () => {
    const a = rng(7);
    const b = rng(7);
    const xs = Array.from({ length: 10000 }, () => a());
    expect(xs.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => b()));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(Math.abs(xs.reduce((s, x) => s + x, 0) / xs.length - 0.5)).toBeLessThan(0.02);
  });

  it('a constant ratio gives a zero-width interval at that ratio', () => {
    const base = [100, 200, 150, 120, 180];
    const ci = bootstrapRatioCI(base, base.map((x) => x * 1.02));
    expect(ci.ratio).toBeCloseTo(1.02, 10);
    expect(ci.lower).toBeCloseTo(1.02, 10);
    expect(ci.upper).toBeCloseTo(1.02, 10);
    expect(verdict(ci, 1.03)).toBe('pass');
  });

  it('a resample whose baseline sums to 0 makes the upper bound Infinity, never NaN', () => {
    // rounds with a zero baseline: some resamples draw only those (t/0 = Infinity), none 0/0
    const ci = bootstrapRatioCI([0, 10, 0], [1, 11, 2], { seed: 5 });
    expect(ci.upper).toBe(Infinity);
    expect(Number.isFinite(ci.lower)).toBe(true);
    expect(verdict(ci, 2)).not.toBe('pass');
    // 0/0 resamples are left out, not sorted in as NaN
    const z = bootstrapRatioCI([0, 10, 0], [0, 11, 0], { seed: 5 });
    expect(Number.isNaN(z.lower) || Number.isNaN(z.upper)).toBe(false);
    expect(z.lower).toBeCloseTo(1.1, 5);
  });

  it('noisy pairs: the interval covers the point estimate and widens with noise', () => {
    // fixture: 12 rounds, treatment ≈ 1.01 × baseline with ±4% round noise
    const base = [1000, 1040, 980, 1010, 995, 1100, 1005, 990, 1030, 1015, 970, 1060];
    const noise = [0.03, -0.04, 0.01, 0.02, -0.03, 0.04, -0.01, 0.0, 0.03, -0.02, 0.02, -0.04];
    const treat = base.map((b, i) => b * (1.01 + noise[i]!));
    const ci = bootstrapRatioCI(base, treat, { seed: 3 });
    expect(ci.lower).toBeLessThan(ci.ratio);
    expect(ci.upper).toBeGreaterThan(ci.ratio);
    expect(ci.ratio).toBeGreaterThan(1.0);
    expect(ci.ratio).toBeLessThan(1.02);
    expect(ci.upper - ci.lower).toBeGreaterThan(0.01);
    expect(ci.upper - ci.lower).toBeLessThan(0.06);
    // same data, same seed: same interval
    expect(bootstrapRatioCI(base, treat, { seed: 3 })).toEqual(ci);
    const wide = bootstrapRatioCI(base, base.map((b, i) => b * (1.01 + 4 * noise[i]!)), { seed: 3 });
    expect(wide.upper - wide.lower).toBeGreaterThan(ci.upper - ci.lower);
  });

  it('verdicts: pass, fail, inconclusive', () => {
    expect(verdict({ lower: 0.99, upper: 1.02 }, 1.03)).toBe('pass');
    expect(verdict({ lower: 1.05, upper: 1.09 }, 1.03)).toBe('fail');
    expect(verdict({ lower: 1.0, upper: 1.06 }, 1.03)).toBe('inconclusive');
  });

  it('refuses unpaired series; one round has no interval', () => {
    expect(() => bootstrapRatioCI([1, 2], [1])).toThrow(/paired/);
    const one = bootstrapRatioCI([10], [11]);
    expect(one.ratio).toBeCloseTo(1.1);
    expect(one.upper).toBeNaN();
  });
});
