import { describe, expect, it } from 'vitest';
import { EMPTY_SLOT, isPrime, maglevTable, shares } from './maglev.ts';

const be = (n: number, w: (i: number) => number = () => 1) => Array.from({ length: n }, (_, i) => ({ key: `10.0.0.${i + 1}:80`, id: i, weight: w(i) }));

describe('maglev', () => {
  it('fills every slot, and only with live backends', () => {
    const t = maglevTable(be(5), 65537);
    expect(t.includes(EMPTY_SLOT)).toBe(false);
    expect(new Set(t)).toEqual(new Set([0, 1, 2, 3, 4]));
    expect(maglevTable([], 7).every((x) => x === EMPTY_SLOT)).toBe(true);
  });

  it('rejects a non-prime size', () => {
    expect(() => maglevTable(be(2), 65536)).toThrow(/not prime/);
    expect(isPrime(65537)).toBe(true);
  });

  for (const [label, weights] of [
    ['equal weights', (_i: number) => 1],
    ['weights 1..5', (i: number) => i + 1],
    ['weights 1,10,100', (i: number) => [1, 10, 100][i]!],
  ] as const) {
    it(`gives each backend its weighted share ±5% (${label})`, () => {
      const n = label === 'weights 1,10,100' ? 3 : 8;
      const bs = be(n, weights);
      const t = maglevTable(bs, 65537);
      const total = bs.reduce((s, b) => s + b.weight, 0);
      const got = shares(t);
      for (const b of bs) {
        const want = (b.weight / total) * t.length;
        expect(Math.abs((got.get(b.id) ?? 0) - want) / want).toBeLessThan(0.05);
      }
    });
  }

  it('removing one of N backends remaps about 1/N of the table', () => {
    for (const n of [3, 5, 10, 20]) {
      const bs = be(n);
      const before = maglevTable(bs, 65537);
      const after = maglevTable(bs.filter((b) => b.id !== 1), 65537);
      let moved = 0;
      let movedOthers = 0;
      for (let i = 0; i < before.length; i++) {
        if (before[i] !== after[i]) {
          moved++;
          if (before[i] !== 1) movedOthers++;
        }
      }
      const own = before.filter((x) => x === 1).length;
      // the removed backend's slots must move; others may move a little (Maglev is near-minimal)
      expect(moved).toBeGreaterThanOrEqual(own);
      expect(moved / before.length).toBeLessThan((1 / n) * 1.5);
      expect(movedOthers / before.length).toBeLessThan(0.5 / n);
    }
  });

  it('is deterministic and independent of insertion order (a restart computes the same table)', () => {
    const bs = be(6, (i) => (i % 3) + 1);
    expect(maglevTable([...bs].reverse(), 65537)).toEqual(maglevTable(bs, 65537));
  });
});
