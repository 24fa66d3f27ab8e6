// How the two-competing-classes test is judged (pure; judge.test.ts runs without root).
// Two questions kept apart:
//   fairness — did each class get the same share of its own target? (share ratio, Jain's index)
//     This is the shaper's logic and holds however slow the machine is: a swapped, merged or
//     ignored class moves the shares apart.
//   absolute rate — did each class get its target? Only judged where the machine could carry
//     both targets: their sum must be ≤ 90% of the pair's ceiling (two unshaped flows at once on
//     the same path, measured in the same round), the same rule as single rates. Going over a
//     target is judged always (nothing but the shaper holds a class down).
import { jain } from './flows.ts';
import type { Kind } from './shapers.ts';

/** tolerances: a class within ±10% of target; shares within ±10% of each other; never >5% over */
export const COMP_TOL = { abs: 0.1, share: 0.1, over: 0.05, ceilingUse: 0.9 } as const;

export interface CompRow {
  round: number;
  kind: Kind;
  a: number;
  b: number;
  errA: number;
  errB: number;
  /** share of own target, a over b (1 = fair) */
  shareRatio: number;
  jain: number;
  /** two unshaped flows at once, Mbit/s (L2), this round */
  pairCeiling: number;
  /** was the absolute rate judged (targets within 90% of the pair's ceiling)? */
  absJudged: boolean;
  absOk: boolean;
  fairOk: boolean;
  overOk: boolean;
}

export function judgePair(round: number, kind: Kind, targetA: number, targetB: number, a: number, b: number, pairCeiling: number): CompRow {
  const sa = a / targetA;
  const sb = b / targetB;
  const shareRatio = sa / sb;
  const absJudged = targetA + targetB <= COMP_TOL.ceilingUse * pairCeiling;
  return {
    round, kind, a, b, errA: sa - 1, errB: sb - 1, shareRatio, jain: jain([sa, sb]), pairCeiling, absJudged,
    absOk: !absJudged || (Math.abs(sa - 1) <= COMP_TOL.abs && Math.abs(sb - 1) <= COMP_TOL.abs),
    fairOk: Number.isFinite(shareRatio) && Math.abs(shareRatio - 1) <= COMP_TOL.share,
    overOk: sa <= 1 + COMP_TOL.over && sb <= 1 + COMP_TOL.over,
  };
}

/**
 * The pair's total rate: 60% of the single-flow ceiling, in steps of 10, 10-100 Mbit/s; under
 * emulation (TCG) at most 40 Mbit/s, where two shaped flows still get the CPU they need.
 */
export function compTotalFor(ceiling: number, emulated: boolean): number {
  const t = Math.max(10, Math.min(100, Math.floor((ceiling * 0.6) / 10) * 10));
  return emulated ? Math.min(40, t) : t;
}

/**
 * The RTT goal (EDT's p99 ≤ ½ HTB's) compares the queue each shaper keeps while its class is
 * full. A round says that only where both flows held their class near its rate — HTB's probe
 * saw no queue in a round where the machine starved its flow (−26%, p99 2.7 ms;
 * reports/20261130-100020-tc-shaping-6.1), which would flatter HTB — and where both probes have
 * enough in-flow replies for a p99 that is not just the worst one. Other rounds are shown, not
 * judged; with none left the verdict is inconclusive. A p99 that is a lost probe counts as
 * infinitely late (probeLatency), in the ratio too.
 */
export const RTT_JUDGE = { minAchieved: 0.9, minProbes: 100 } as const;

export interface RttRound { round: number; achieved: number; rttP99: number; probes: number }

export function judgeRttRounds(edt: RttRound[], htb: RttRound[], target: number): { ratios: number[]; judged: number[]; skipped: { round: number; why: string }[] } {
  const judged: number[] = [];
  const ratios: number[] = [];
  const skipped: { round: number; why: string }[] = [];
  for (const e of edt) {
    const h = htb.find((x) => x.round === e.round);
    if (!h) continue;
    // a p99 that is a lost probe is infinite: EDT's gives ∞ (not met), HTB's 0 (met)
    const r = e.rttP99 / h.rttP99;
    if (!Number.isNaN(r)) ratios.push(r);
    const sides = [['EDT', e], ['HTB', h]] as const;
    const why = [
      ...sides.flatMap(([n, x]) => (x.achieved < RTT_JUDGE.minAchieved * target ? [`${n} carried ${Math.round((x.achieved / target) * 100)}% of the rate`] : [])),
      ...sides.flatMap(([n, x]) => (x.probes < RTT_JUDGE.minProbes ? [`${n} had ${x.probes} in-flow probes`] : [])),
    ];
    if (!why.length && Number.isNaN(r)) why.push('no ratio (both p99s were lost probes)');
    if (why.length) skipped.push({ round: e.round, why: why.join(', ') });
    else judged.push(r);
  }
  return { ratios, judged, skipped };
}
