// The energy scenario's workloads against the real kernel: they join their cgroups before their
// load runs, a wait for that is bounded and names what is missing instead of hanging, the io
// workload's target on a host is a file it fsyncs, and nothing (cgroup, process, file) is left.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { describeRoot } from '../../lab/testing.ts';
import { cgroupUsageUs, ioTarget, setupCgroups, startWorkload, waitStarted, type Defer } from './workloads.ts';

let cleanups: { what: string; fn: () => unknown }[] = [];
const defer: Defer = (what, fn) => void cleanups.push({ what, fn });
const runCleanups = async () => {
  const errors: string[] = [];
  for (const c of cleanups.reverse()) {
    try {
      await c.fn();
    } catch (e) {
      errors.push(`${c.what}: ${(e as Error).message}`);
    }
  }
  cleanups = [];
  return errors;
};
afterEach(async () => {
  expect(await runCleanups()).toEqual([]);
});

describeRoot('energy workloads (host kernel)', () => {
  it('every workload is in its cgroup with its load exec\'d when waitStarted returns, and all of it is gone after cleanup', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'energy-wl-'));
    defer('remove out dir', () => fs.rmSync(out, { recursive: true, force: true }));
    const io = ioTarget(defer, out, () => {});
    // on a host (EBPF_LAB_IN_VM unset) the io workload rewrites and fsyncs a file in the out dir
    expect(io.kind).toBe('file');
    expect(path.dirname(io.path)).toBe(out);
    const cg = setupCgroups(defer);
    const ws = [startWorkload(defer, 'busy25', cg.dirs.busy25, cg.v1.busy25, 25, io), startWorkload(defer, 'io', cg.dirs.io, undefined, null, io)];
    expect(await waitStarted(ws, 10_000)).toBeNull();
    for (const w of ws) {
      expect(fs.readFileSync(path.join(w.dir, 'cgroup.procs'), 'utf8').split('\n')).toContain(String(w.pid));
      expect(fs.readFileSync(`/proc/${w.pid}/cmdline`, 'utf8')).toBe(`${w.load.join('\0')}\0`);
    }
    // the io workload does its I/O where ioTarget said, and its cgroup is charged for it
    const deadline = Date.now() + 10_000;
    while (!fs.existsSync(io.path) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(fs.existsSync(io.path)).toBe(true);
    expect(cgroupUsageUs(cg.dirs.io)).toBeGreaterThan(0);
    expect(await runCleanups()).toEqual([]);
    for (const w of ws) expect(fs.existsSync(`/proc/${w.pid}`)).toBe(false);
    expect(fs.existsSync(cg.base)).toBe(false);
    expect(fs.existsSync(io.path)).toBe(false);
  });

  it('a workload that cannot join its cgroup is reported by name within the bound, not waited on', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'energy-wl-'));
    defer('remove out dir', () => fs.rmSync(out, { recursive: true, force: true }));
    const io = ioTarget(defer, out, () => {});
    const cg = setupCgroups(defer);
    // a cgroup directory that does not exist: the shell's write to cgroup.procs fails and it exits
    const gone = path.join(cg.base, 'no-such-cgroup');
    const ws = [startWorkload(defer, 'busy25', cg.dirs.busy25, undefined, 25, io), startWorkload(defer, 'busy50', gone, undefined, 50, io)];
    const t0 = Date.now();
    const missing = await waitStarted(ws, 3000);
    expect(Date.now() - t0).toBeLessThan(3000 + 1000);
    expect(missing).toMatch(/^busy50 exited \([1-9]\d*\) before its load started$/);
  });

  it('a workload that never gets there is reported, with its state, when the bound expires', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'energy-wl-'));
    defer('remove out dir', () => fs.rmSync(out, { recursive: true, force: true }));
    const io = ioTarget(defer, out, () => {});
    const cg = setupCgroups(defer);
    const w = startWorkload(defer, 'busy25', cg.dirs.busy25, undefined, 25, io);
    // waiting for a load it never execs: the wait ends at its bound and says where the task is
    const t0 = Date.now();
    const missing = await waitStarted([{ ...w, load: ['/nonexistent/load'] }], 1500);
    const took = Date.now() - t0;
    expect(missing).toMatch(/^busy25 \(pid \d+\) (is in cgroup .*, not .*|has not exec'd its load yet) \(state [RSD]/);
    expect(took).toBeGreaterThanOrEqual(1500);
    expect(took).toBeLessThan(1500 + 1000);
  });
});
