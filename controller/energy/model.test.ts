// The power model and the attribution rule on fixtures: no kernel, no root.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { counterDelta, powercapZones } from './power.ts';
import { attribute, busyAtRead, DEFAULT_MODEL, freqFactor, meteredEnergy, modelEnergy, validateModel, type ModelConfig } from './model.ts';
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

describe('per-CPU busy total at the task read (busyAtRead)', () => {
  // one CPU, 100% busy, one task holding all of it; each sample reads the totals at t, walks the
  // task map at t + w and reads the totals again at t + 2w, the walk taking 5 or 20 ms (as under TCG)
  const run = (lostAt: number | null) => {
    const ms = 1e6;
    let state = busyAtRead(null, 0, 0, 0);
    let prevTask = 0;
    let prevAfter = 0;
    let attributed = 0;
    let node = 0;
    let ifAfter = 0;
    for (let i = 1; i <= 10; i++) {
      const t = i * 1000 * ms;
      const w = (i % 2 ? 20 : 5) * ms;
      // the task entry's value at the walk; at i = lostAt an eviction loses 50 ms of it (the entry
      // is re-created, so the interval's use is 50 ms short)
      const taskNs = t + w - (lostAt !== null && i >= lostAt ? 50 * ms : 0);
      const use = taskNs - prevTask;
      const prevBusy = state.busy;
      state = busyAtRead(state, t, t + 2 * w, use);
      const e = modelEnergy(cfg, 2000 * ms, [{ cpu: 0, busyNs: state.busy - prevBusy }]);
      const a = attribute(e, [{ key: 'a', cpu: 0, ns: use }]);
      const e2 = modelEnergy(cfg, 2000 * ms, [{ cpu: 0, busyNs: t + 2 * w - prevAfter }]);
      ifAfter += attribute(e2, [{ key: 'a', cpu: 0, ns: use }]).unattributedJ;
      attributed += a.perKey.get('a') ?? 0;
      node += a.nodeJ - a.idleJ;
      prevTask = taskNs;
      prevAfter = t + 2 * w;
    }
    return { attributed, node, ifAfter, gap: state.gap };
  };

  it('nothing lost: what the tasks hold is the total, exactly, where the totals read after the walk leave a skew unattributed', () => {
    const r = run(null);
    expect(r.attributed).toBeCloseTo(r.node, 9);
    // read after the walk, every interval whose walk is longer than the previous one leaves its skew
    expect(r.ifAfter).toBeCloseTo(32 * 0.02 + 4 * 32 * 0.015, 6);
  });

  it('time lost from the task map stays unattributed', () => {
    const r = run(5);
    // 50 ms lost at a 20 ms walk (i = 5): 30 ms show at once (20 ms hide inside that read window),
    // 15 more at the next 5 ms walk, and no more after that; 32 W dynamic
    expect(r.node - r.attributed).toBeCloseTo(32 * 0.045, 6);
    expect(r.gap).toBeCloseTo(45e6, 0);
  });

  it('stays within the two reads', () => {
    expect(busyAtRead(null, 100, 140, 120)).toEqual({ busy: 120, keyed: 120, gap: 0 });
    expect(busyAtRead(null, 100, 140, 90)).toEqual({ busy: 100, keyed: 90, gap: 10 });
    expect(busyAtRead(null, 100, 140, 150)).toEqual({ busy: 140, keyed: 150, gap: -10 });
    // a known gap is carried: keyed 200 + gap 10 lies inside [190, 230]
    expect(busyAtRead({ busy: 100, keyed: 90, gap: 10 }, 190, 230, 110).busy).toBe(210);
  });
});

it('parses sysfs CPU lists', () => {
  expect(parseCpuList('0-3,6\n')).toEqual([0, 1, 2, 3, 6]);
  expect(parseCpuList('0')).toEqual([0]);
});

describe('RAPL meters (fixtures: a made-up powercap tree)', () => {
  it('only package zones are summed: psys contains the package, sub-zones are inside it', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-powercap-'));
    try {
      for (const [z, name] of [['intel-rapl:0', 'package-0'], ['intel-rapl:1', 'psys'], ['intel-rapl:0:0', 'core'], ['intel-rapl:2', null]] as const) {
        fs.mkdirSync(path.join(root, z));
        if (name) fs.writeFileSync(path.join(root, z, 'name'), `${name}\n`);
      }
      expect(powercapZones(root).map((z) => path.basename(z)).sort()).toEqual(['intel-rapl:0', 'intel-rapl:2']);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('a counter below its last reading: a wrap where the package could have used that much, else a reset counted from 0', () => {
    const range = 262_143_328_850; // µJ
    const max = 5000 * 3 * 1e6; // 5 kW for 3 s
    expect(counterDelta(100, 250, range, max)).toBe(150);
    expect(counterDelta(range - 100, 50, range, max)).toBe(150); // wrapped
    expect(counterDelta(200_000_000_000, 5_000, range, max)).toBe(5_000); // reset (resume): not ~62 kJ
    expect(counterDelta(10, 5, 0)).toBe(5);
  });
});
