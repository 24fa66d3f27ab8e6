// The power model and the attribution rule on fixtures: no kernel, no root.
import { describe, expect, it } from 'vitest';
import { attribute, DEFAULT_MODEL, freqFactor, meteredEnergy, modelEnergy, validateModel, type ModelConfig } from './model.ts';
import { parseCpuList } from './collector.ts';

const cfg: ModelConfig = { tdpWatts: 40, idleWatts: 8, freqExponent: 1 };
const S = 1e9;

describe('power model', () => {
  it('per-CPU power = idle + (TDP − idle) × utilisation, split evenly over CPUs', () => {
    // 2 CPUs: idle 4 W and max 20 W each; CPU0 50% busy, CPU1 idle, over 2 s
    const e = modelEnergy(cfg, 2 * S, [{ cpu: 0, busyNs: 1 * S }, { cpu: 1, busyNs: 0 }]);
    expect(e[0]!.idleJ).toBeCloseTo(8); // 4 W × 2 s
    expect(e[0]!.dynamicJ).toBeCloseTo(16); // (20 − 4) W × 1 busy s
    expect(e[1]!.idleJ).toBeCloseTo(8);
    expect(e[1]!.dynamicJ).toBe(0);
    // fully busy = TDP
    const full = modelEnergy(cfg, 1 * S, [{ cpu: 0, busyNs: S }, { cpu: 1, busyNs: S }]);
    expect(full.reduce((s, c) => s + c.idleJ + c.dynamicJ, 0)).toBeCloseTo(40);
  });

  it('caps utilisation at 1 and weights by frequency when it is known', () => {
    const over = modelEnergy(cfg, S, [{ cpu: 0, busyNs: 1.5 * S }]);
    expect(over[0]!.dynamicJ).toBeCloseTo(32); // one CPU: (40 − 8) × 1 s, not × 1.5
    expect(freqFactor({ freqKhz: 1_000_000, maxFreqKhz: 2_000_000 }, 1)).toBe(0.5);
    expect(freqFactor({ freqKhz: 1_000_000, maxFreqKhz: 2_000_000 }, 2)).toBe(0.25);
    expect(freqFactor({ freqKhz: undefined, maxFreqKhz: 2_000_000 }, 1)).toBe(1);
    const half = modelEnergy(cfg, S, [{ cpu: 0, busyNs: S, freqKhz: 1_000_000, maxFreqKhz: 2_000_000 }]);
    expect(half[0]!.dynamicJ).toBeCloseTo(16);
  });

  it('rejects impossible constants', () => {
    expect(validateModel(DEFAULT_MODEL)).toBeNull();
    expect(validateModel({ ...cfg, idleWatts: 50 })).toMatch(/must not exceed/);
    expect(validateModel({ ...cfg, tdpWatts: 0 })).toMatch(/positive/);
    expect(validateModel({ ...cfg, freqExponent: -1 })).toMatch(/freqExponent/);
  });

  it('a meter reading is split into idle (configured, capped) and dynamic by busy time', () => {
    const e = meteredEnergy(30, 8, 2 * S, [{ cpu: 0, busyNs: 3 * S / 2 }, { cpu: 1, busyNs: S / 2 }]);
    expect(e.reduce((s, c) => s + c.idleJ, 0)).toBeCloseTo(16);
    expect(e[0]!.dynamicJ).toBeCloseTo(10.5); // (30 − 16) × 3/4
    expect(e[1]!.dynamicJ).toBeCloseTo(3.5);
    // less than the idle estimate: all of it is idle, nothing negative
    const low = meteredEnergy(5, 8, 2 * S, [{ cpu: 0, busyNs: S }]);
    expect(low[0]!.idleJ).toBeCloseTo(5);
    expect(low[0]!.dynamicJ).toBe(0);
    // nothing ran: everything is idle
    const none = meteredEnergy(30, 8, 2 * S, [{ cpu: 0, busyNs: 0 }, { cpu: 1, busyNs: 0 }]);
    expect(none.reduce((s, c) => s + c.idleJ + c.dynamicJ, 0)).toBeCloseTo(30);
    expect(none.every((c) => c.dynamicJ === 0)).toBe(true);
  });
});

describe('attribution', () => {
  it('splits a CPU\'s dynamic energy by on-CPU time; idle apart; sums to the node', () => {
    const e = modelEnergy(cfg, S, [{ cpu: 0, busyNs: 0.8 * S }, { cpu: 1, busyNs: 0.2 * S }]);
    const a = attribute(e, [
      { key: 'a', cpu: 0, ns: 0.6 * S },
      { key: 'b', cpu: 0, ns: 0.2 * S },
      { key: 'b', cpu: 1, ns: 0.2 * S },
    ]);
    // per CPU dynamic power 16 W: a = 16 × 0.6, b = 16 × 0.2 + 16 × 0.2
    expect(a.perKey.get('a')).toBeCloseTo(9.6);
    expect(a.perKey.get('b')).toBeCloseTo(6.4);
    expect(a.idleJ).toBeCloseTo(8);
    expect(a.unattributedJ).toBeCloseTo(0);
    expect(a.perKey.get('a')! + a.perKey.get('b')! + a.idleJ + a.unattributedJ).toBeCloseTo(a.nodeJ);
    expect(a.byCycles).toBe(false);
  });

  it('busy time no task entry holds stays unattributed (not given to the others)', () => {
    const e = modelEnergy(cfg, S, [{ cpu: 0, busyNs: S }]);
    const a = attribute(e, [{ key: 'a', cpu: 0, ns: 0.5 * S }]);
    expect(a.perKey.get('a')).toBeCloseTo(16);
    expect(a.unattributedJ).toBeCloseTo(16);
  });

  it('uses cycles when every CPU and use has them', () => {
    const e = modelEnergy(cfg, S, [{ cpu: 0, busyNs: S, busyCycles: 1000 }]);
    const a = attribute(e, [{ key: 'fast', cpu: 0, ns: 0.5 * S, cycles: 900 }, { key: 'stalled', cpu: 0, ns: 0.5 * S, cycles: 100 }]);
    expect(a.byCycles).toBe(true);
    expect(a.perKey.get('fast')! / a.perKey.get('stalled')!).toBeCloseTo(9);
  });

  it('never gives out more than a CPU has when the two maps were read with skew', () => {
    const e = modelEnergy(cfg, S, [{ cpu: 0, busyNs: 0.5 * S }]);
    const a = attribute(e, [{ key: 'a', cpu: 0, ns: 0.4 * S }, { key: 'b', cpu: 0, ns: 0.4 * S }]);
    expect(a.perKey.get('a')! + a.perKey.get('b')!).toBeCloseTo(e[0]!.dynamicJ);
    expect(a.unattributedJ).toBeCloseTo(0);
  });
});

it('parses sysfs CPU lists', () => {
  expect(parseCpuList('0-3,6\n')).toEqual([0, 1, 2, 3, 6]);
  expect(parseCpuList('0')).toEqual([0]);
});
