// Interleaved rounds for benchmarks on a machine whose speed drifts: the compared configurations
// run A B C, A B C, … (never AAA BBB CCC), every round is kept, a ratio between two
// configurations is taken inside each round (same minute, same machine state) before the median,
// and a goal is judged round by round ("met in 3/3 rounds"), never on one noisy sample.
// Generic: knows nothing of what is measured. Scenarios turn the result into Headline figures.
import type { Headline } from './results.ts';
import { mad, summary } from './stats.ts';

export interface Step<C extends string> {
  round: number;
  config: C;
}

/**
 * The run order: every configuration once per round, rounds one after another. `alternate`
 * reverses every second round (A B C, C B A, …): whichever of two configurations ran first in one
 * round runs second in the next, so a machine that drifts steadily during a round does not always
 * favour the same one (counterbalancing; a fixed order charged the drift to the later row).
 */
export function interleavedOrder<C extends string>(configs: readonly C[], repeat: number, opts: { alternate?: boolean } = {}): Step<C>[] {
  if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`repeat must be a positive integer, got ${repeat}`);
  if (new Set(configs).size !== configs.length) throw new Error(`duplicate configuration in ${configs.join(', ')}`);
  const out: Step<C>[] = [];
  for (let round = 0; round < repeat; round++) {
    const inRound = opts.alternate && round % 2 === 1 ? [...configs].reverse() : configs;
    for (const config of inRound) out.push({ round, config });
  }
  return out;
}

export interface Rounds<C extends string, M> {
  /** the order the measurements were taken in (for results.json: drift can be checked later) */
  order: Step<C>[];
  /** per configuration, one measurement per round, in round order */
  byConfig: Record<C, M[]>;
}

/**
 * Measure every configuration once per round, interleaved. `measure` is awaited one at a time
 * (configurations must not overlap). An aborted signal stops before the next step; what was
 * measured so far is returned (complete rounds only, so configurations stay paired).
 */
export async function runInterleaved<C extends string, M>(
  configs: readonly C[],
  repeat: number,
  measure: (config: C, round: number) => Promise<M>,
  opts: {
    signal?: AbortSignal;
    onStep?: (step: Step<C>, index: number, total: number) => void;
    /** each measurement as it is taken (a stopped bench records what it has: incomplete rounds too) */
    onMeasured?: (step: Step<C>, m: M) => void;
    alternate?: boolean;
  } = {},
): Promise<Rounds<C, M>> {
  const order = interleavedOrder(configs, repeat, { alternate: opts.alternate });
  const byConfig = Object.fromEntries(configs.map((c) => [c, [] as M[]])) as Record<C, M[]>;
  const done: Step<C>[] = [];
  for (const [i, step] of order.entries()) {
    if (opts.signal?.aborted) break;
    opts.onStep?.(step, i, order.length);
    const m = await measure(step.config, step.round);
    byConfig[step.config].push(m);
    done.push(step);
    opts.onMeasured?.(step, m);
  }
  // keep complete rounds only: a ratio needs both members of its round
  const complete = Math.min(...configs.map((c) => byConfig[c].length));
  for (const c of configs) byConfig[c].length = complete;
  return { order: done.filter((s) => s.round < complete), byConfig };
}

/** numerator[i] / denominator[i] for each round (NaN where the denominator is 0 or either is missing) */
export function perRoundRatios(numerator: readonly number[], denominator: readonly number[]): number[] {
  if (numerator.length !== denominator.length) throw new Error(`perRoundRatios: ${numerator.length} vs ${denominator.length} rounds (must be paired)`);
  return numerator.map((n, i) => {
    const d = denominator[i]!;
    return d === 0 || !Number.isFinite(d) || !Number.isFinite(n) ? NaN : n / d;
  });
}

export type Spread = NonNullable<Headline['spread']>;

/**
 * median, min–max and MAD of the rounds. NaN rounds (no value) are dropped, n says how many
 * remain; ±∞ are values, as goalByRounds counts them (a proxy ÷ an XDP path that added ≤ 0): they
 * sort to the ends, so the median of [∞, ∞, 4] is ∞, not the 4 that dropping them left (a 4x
 * headline beside "met in 2/3 rounds"). The MAD is over the finite ones.
 */
export function spreadOf(xs: readonly number[]): { median: number; spread: Spread } {
  const s = summary(xs);
  return { median: s.median, spread: { n: s.n, min: s.min, max: s.max, mad: mad(xs.filter(Number.isFinite)) } };
}

/**
 * judge a goal round by round: met when every round meets it, not met when none does. NaN rounds
 * (no value) are left out; ±∞ are values (a ratio whose denominator was ≤ 0 on purpose: ∞ meets a
 * "≥" goal and fails a "≤" one).
 */
export function goalByRounds(values: readonly number[], op: '<=' | '>=', target: number): { verdict: 'met' | 'not met' | 'inconclusive'; met: number; n: number; detail: string } {
  const xs = values.filter((x) => !Number.isNaN(x));
  const met = xs.filter((x) => (op === '<=' ? x <= target : x >= target)).length;
  const n = xs.length;
  const verdict = n === 0 ? 'inconclusive' : met === n ? 'met' : met === 0 ? 'not met' : 'inconclusive';
  return { verdict, met, n, detail: `met in ${met}/${n} round${n === 1 ? '' : 's'}` };
}

export interface HeadlineSpec {
  name: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  /** this figure, one value per round */
  rounds: readonly number[];
  comparator?: {
    name: string;
    /** the comparator's value per round (same rounds); the ratio is ours ÷ theirs per round, unless `ratioRounds` is given */
    rounds?: readonly number[];
    /** a ratio per round computed by the caller (e.g. theirs ÷ ours when that reads better) */
    ratioRounds?: readonly number[];
    likeForLike?: boolean;
    note?: string;
    ci?: [number, number];
  };
  /** judged per round on the value, or on the per-round ratio when of = 'ratio' */
  goal?: { op: '<=' | '>='; target: number; of?: 'value' | 'ratio' };
  regressionFloor?: number;
}

/** a Headline from per-round values: median, spread, per-round ratio against the comparator, goal by rounds */
export function headlineFromRounds(spec: HeadlineSpec): Headline {
  const own = spreadOf(spec.rounds);
  const h: Headline = { name: spec.name, label: spec.label, unit: spec.unit, better: spec.better, value: own.median, rounds: [...spec.rounds], spread: own.spread };
  let ratios: number[] | undefined;
  if (spec.comparator) {
    const c = spec.comparator;
    ratios = c.ratioRounds ? [...c.ratioRounds] : c.rounds ? perRoundRatios(spec.rounds, c.rounds) : undefined;
    const rs = ratios && spreadOf(ratios);
    h.comparator = {
      name: c.name,
      ...(c.rounds ? { value: spreadOf(c.rounds).median, valueRounds: [...c.rounds] } : {}),
      ...(rs ? { ratio: rs.median, ratioRounds: ratios, ratioSpread: rs.spread } : {}),
      ...(c.ci ? { ci: c.ci } : {}),
      ...(c.likeForLike !== undefined ? { likeForLike: c.likeForLike } : {}),
      ...(c.note ? { note: c.note } : {}),
    };
  }
  if (spec.goal) {
    const of = spec.goal.of ?? 'value';
    const xs = of === 'ratio' ? (ratios ?? []) : spec.rounds;
    const g = goalByRounds(xs, spec.goal.op, spec.goal.target);
    h.goal = { op: spec.goal.op, target: spec.goal.target, of, verdict: g.verdict, detail: g.detail };
  }
  if (spec.regressionFloor !== undefined) h.regressionFloor = spec.regressionFloor;
  return h;
}
