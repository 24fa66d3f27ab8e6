// Small statistics for benchmarks on noisy machines: robust location/spread and a bootstrap
// confidence interval for the ratio of two paired series (e.g. per-round CPU time per operation
// with and without a feature, measured interleaved). Generic: no knowledge of what is measured.

/**
 * NaN (no value) is left out: a comparator that meets NaN answers NaN, and the order it then
 * sorts in depended on where the NaN stood ([1, 2, NaN, 3, 4] → NaN, [NaN, 1, 2, 3, 4] → 2)
 */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** median absolute deviation (unscaled) */
export function mad(xs: readonly number[]): number {
  const m = median(xs);
  return median(xs.map((x) => Math.abs(x - m)));
}

/** over the values that are numbers (NaN left out, n says how many) */
export function summary(values: readonly number[]): { n: number; median: number; mad: number; min: number; max: number } {
  const xs = values.filter((x) => !Number.isNaN(x));
  return { n: xs.length, median: median(xs), mad: mad(xs), min: xs.length ? Math.min(...xs) : NaN, max: xs.length ? Math.max(...xs) : NaN };
}

/** mulberry32: a seeded PRNG so that a bootstrap on the same data gives the same interval */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** nearest-rank quantile of sorted values (a value that occurred: latency percentiles) */
export function nearestRank(sorted: readonly number[], q: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function quantile(sorted: readonly number[], q: number): number {
  if (!sorted.length) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const [a, b] = [sorted[lo]!, sorted[hi]!];
  if (a === b) return a;
  // an infinite end (a bootstrap ratio over a zero baseline): the nearer one, not Inf − Inf = NaN
  if (!Number.isFinite(a) || !Number.isFinite(b)) return pos - lo < 0.5 ? a : b;
  return a + (b - a) * (pos - lo);
}

export interface RatioCI {
  /** sum(treatment) / sum(baseline) over all rounds: the point estimate */
  ratio: number;
  lower: number;
  upper: number;
  confidence: number;
  rounds: number;
  iterations: number;
}

/**
 * Percentile bootstrap CI of sum(treatment)/sum(baseline), resampling whole rounds (pairs) so that
 * drift that hits both members of a round stays paired. Ratio of sums rather than mean of ratios:
 * less biased by one round with a small baseline.
 */
export function bootstrapRatioCI(baseline: readonly number[], treatment: readonly number[], opts: { iterations?: number; confidence?: number; seed?: number } = {}): RatioCI {
  if (baseline.length !== treatment.length) throw new Error(`bootstrapRatioCI: ${baseline.length} baseline vs ${treatment.length} treatment values (must be paired per round)`);
  const n = baseline.length;
  const iterations = opts.iterations ?? 10_000;
  const confidence = opts.confidence ?? 0.95;
  const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
  const ratio = sum(treatment) / sum(baseline);
  if (n < 2) return { ratio, lower: NaN, upper: NaN, confidence, rounds: n, iterations: 0 };
  const r = rng(opts.seed ?? 1);
  const out = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    let b = 0;
    let t = 0;
    for (let j = 0; j < n; j++) {
      const k = Math.floor(r() * n);
      b += baseline[k]!;
      t += treatment[k]!;
    }
    out[i] = t / b;
  }
  // a resample whose baseline sums to 0 gives ±Infinity (unbounded: kept, so the interval says
  // so) or 0/0 (no ratio: left out). The NaN once went into the sort, whose comparator then
  // answered NaN, and the bounds came out NaN or wherever the sort happened to leave them
  const sorted = [...out].filter((x) => !Number.isNaN(x)).sort((a, b) => (a === b ? 0 : a < b ? -1 : 1));
  const alpha = (1 - confidence) / 2;
  if (!sorted.length) return { ratio, lower: NaN, upper: NaN, confidence, rounds: n, iterations };
  return { ratio, lower: quantile(sorted, alpha), upper: quantile(sorted, 1 - alpha), confidence, rounds: n, iterations };
}

/** pass: the whole interval is within the limit; fail: the whole interval is above it; else inconclusive */
export function verdict(ci: Pick<RatioCI, 'lower' | 'upper'>, limit: number): 'pass' | 'fail' | 'inconclusive' {
  if (ci.upper <= limit) return 'pass';
  if (ci.lower > limit) return 'fail';
  return 'inconclusive';
}
