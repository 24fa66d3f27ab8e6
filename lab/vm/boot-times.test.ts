// vm boot-times without booting anything: the driver's bookkeeping, with a boot function that
// stands in for vmExec (the real boots are measured by `pnpm lab vm boot-times`).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { bootTimes, bootTimesProblem } from './boot-times.ts';

const phases = { qemuMs: 400, kernelMs: 1700, initMs: 650, mountMs: 150, readyMs: 2900 };

// a Ctrl-C after the first of three rounds left no directory at all (review, session 57)
it('a stop part-way keeps the boots made so far, in a report that says it did not finish', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-boottimes-'));
  const out = path.join(dir, 'bt');
  let n = 0;
  let partial = '';
  try {
    await expect(bootTimes(['6.1', '6.12'], 3, async () => {
      if (++n === 3) throw new Error('interrupted while waiting for the guest command');
      return { release: '6.1.0-50-amd64', accel: 'tcg', phases, totalMs: 4000 };
    }, { outDir: out, onPartial: (d) => (partial = d) })).rejects.toThrow(/interrupted/);
    expect(partial).toBe(out);
    const r = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
    expect(bootTimesProblem(r)).toBeNull();
    expect(r.samples).toHaveLength(2);
    expect(r.stopped).toBe('stopped after 2 of 6 boots: interrupted while waiting for the guest command');
    expect(fs.readFileSync(path.join(out, 'report.html'), 'utf8')).toContain('Did not finish:</b> stopped after 2 of 6 boots');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

it('a failure before the first boot writes nothing', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-boottimes-'));
  try {
    await expect(bootTimes(['6.1'], 1, async () => {
      throw new Error('no kernel');
    }, { outDir: path.join(dir, 'bt') })).rejects.toThrow(/no kernel/);
    expect(fs.readdirSync(dir)).toEqual([]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
