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

  // weighted Maglev hands out weight/maxWeight claims per turn: a backend whose share is below one
  // slot got none, and took no traffic although configured with weight > 0
  it('every live backend owns at least one slot, however small its weight beside the others', () => {
    const t = maglevTable([{ key: 'heavy', id: 0, weight: 1000 }, { key: 'l1', id: 1, weight: 1 }, { key: 'l2', id: 2, weight: 1 }], 251);
    expect([...shares(t)].sort()).toEqual([[0, 249], [1, 1], [2, 1]]);
    const bs = be(200, (i) => (i === 199 ? 1 : 1000));
    const big = shares(maglevTable(bs, 65537));
    expect(big.size).toBe(200);
    expect(big.get(199)).toBe(1); // a share of 1/65537 (its weight asks for 0.33 slots)
    // the heavy ones keep their weighted share ±5%
    for (let i = 0; i < 199; i++) expect(Math.abs(big.get(i)! - 65537 / 199) / (65537 / 199)).toBeLessThan(0.05);
    // weight 0 still means no slot
    expect(shares(maglevTable([{ key: 'a', id: 0, weight: 1000 }, { key: 'b', id: 1, weight: 0 }], 7)).has(1)).toBe(false);
  });

  it('a backend too light for a slot of its own moves one slot when it comes or goes (minimal disruption kept)', () => {
    const heavy = be(3, () => 1000);
    const light = { key: 'light', id: 9, weight: 1 };
    const diff = (a: Uint32Array, b: Uint32Array) => a.reduce((n, x, i) => n + (x !== b[i] ? 1 : 0), 0);
    const without = maglevTable(heavy, 251);
    const withLight = maglevTable([...heavy, light], 251);
    expect(shares(withLight).get(9)).toBe(1);
    expect(diff(without, withLight)).toBe(1);
    // on a ring with room for its weighted share (65537/3001 ≈ 22 slots) it gets that, not the minimum
    const got = shares(maglevTable([...heavy, light], 65537)).get(9)!;
    expect(Math.abs(got - 65537 / 3001)).toBeLessThan(3);
  });
});
