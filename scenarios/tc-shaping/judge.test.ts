// The competing-classes verdicts on made-up rates: a slow machine passes fairness and is not
// judged on absolute rate; every kind of shaping bug still fails.
import { describe, expect, it } from 'vitest';
import { compTotalFor, judgePair } from './judge.ts';

const j = (a: number, b: number, ceiling = 800) => judgePair(0, 'edt', 60, 40, a, b, ceiling);
const verdict = (r: ReturnType<typeof j>) => r.absOk && r.fairOk && r.overOk;

describe('two competing classes', () => {
  it('on target: every part passes', () => {
    const r = j(59.5, 39.8);
    expect(r).toMatchObject({ absJudged: true, absOk: true, fairOk: true, overOk: true });
    expect(r.jain).toBeGreaterThan(0.999);
  });
  it('a machine that cannot carry both (pair ceiling below the targets): absolute rate not judged, fairness still is', () => {
    const r = j(47.7, 31.9, 84);
    expect(r.absJudged).toBe(false);
    expect(verdict(r)).toBe(true);
    // the same shortfall where the machine could carry them fails
    expect(verdict(j(47.7, 31.9, 800))).toBe(false);
  });
  it('shaping bugs fail even on a slow machine', () => {
    const slow = 84;
    expect(verdict(j(40, 60, slow))).toBe(false); // rates swapped
    expect(verdict(j(30, 30, slow))).toBe(false); // both classes in one 60 Mbit/s class
    expect(verdict(j(42, 42, slow))).toBe(false); // not shaped: split what the machine gives
    expect(verdict(j(60, 5, slow))).toBe(false); // one class starved
    expect(verdict(j(70, 40, slow))).toBe(false); // a class over its rate
  });
  it('total rate: 60% of the ceiling, 10-100, at most 40 under emulation', () => {
    expect(compTotalFor(805, false)).toBe(100);
    expect(compTotalFor(805, true)).toBe(40);
    expect(compTotalFor(50, false)).toBe(30);
    expect(compTotalFor(5, true)).toBe(10);
  });
});

describe('probe helpers', () => {
  it('percentile is nearest-rank; Jain is 1 for equal shares and 1/n for one class taking all', async () => {
    const { percentile, jain, sampleUntil } = await import('./flows.ts');
    const xs = Array.from({ length: 200 }, (_, i) => i + 1);
    expect(percentile(xs, 0.5)).toBe(100);
    expect(percentile(xs, 0.99)).toBe(198);
    expect(percentile([], 0.99)).toBeNaN();
    expect(jain([0.8, 0.8])).toBeCloseTo(1, 12);
    expect(jain([1, 0])).toBeCloseTo(0.5, 12);
    // sampling stops when the probe ends, and never samples after it
    let n = 0;
    const out = await sampleUntil(new Promise((r) => setTimeout(r, 120)), 30, async () => ++n);
    expect(out.length).toBeGreaterThanOrEqual(2);
    expect(out.length).toBeLessThanOrEqual(4);
  });
});

describe('RTT goal rounds', () => {
  const row = (round: number, achieved: number, rttP99: number, probes = 400) => ({ round, achieved, rttP99, probes });
  it('judges rounds where both classes were full and both probes had enough replies', async () => {
    const { judgeRttRounds } = await import('./judge.ts');
    const r = judgeRttRounds([row(0, 9.9, 54), row(1, 9.95, 55)], [row(0, 9.8, 164), row(1, 9.9, 110)], 10);
    expect(r.judged.map((x) => Math.round(x * 100) / 100)).toEqual([0.33, 0.5]);
    expect(r.skipped).toEqual([]);
  });
  it('a round where HTB was starved (no queue, flattering p99) or a probe was too short is shown, not judged', async () => {
    const { judgeRttRounds } = await import('./judge.ts');
    const r = judgeRttRounds([row(0, 99, 8), row(1, 99, 8, 60), row(2, 99, 8)], [row(0, 74, 2.7), row(1, 99, 20), row(2, 99, 20)], 100);
    expect(r.ratios).toHaveLength(3);
    // no probes at all: no p99, skipped for the probes
    expect(judgeRttRounds([row(0, 10, NaN, 0)], [row(0, 10, 20)], 10).skipped).toEqual([{ round: 0, why: 'EDT had 0 in-flow probes' }]);
    expect(r.judged).toEqual([0.4]);
    expect(r.skipped).toEqual([{ round: 0, why: 'HTB carried 74% of the rate' }, { round: 1, why: 'EDT had 60 in-flow probes' }]);
  });
  it('a p99 that is a lost probe counts as infinitely late; two of them give no ratio', async () => {
    const { judgeRttRounds } = await import('./judge.ts');
    expect(judgeRttRounds([row(0, 10, Infinity)], [row(0, 10, 100)], 10).judged).toEqual([Infinity]);
    expect(judgeRttRounds([row(0, 10, 50)], [row(0, 10, Infinity)], 10).judged).toEqual([0]);
    expect(judgeRttRounds([row(0, 10, Infinity)], [row(0, 10, Infinity)], 10)).toEqual({ ratios: [], judged: [], skipped: [{ round: 0, why: 'no ratio (both p99s were lost probes)' }] });
  });
});
