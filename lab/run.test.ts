import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { execa } from 'execa';
import { reportKilledRuns, sweepDeadInstances } from './run.ts';
import { describeRoot, labCli } from './testing.ts';
import { BpfMap } from '../controller/libbpf/index.ts';

const [NODE, ...LAB] = await labCli();
import type { Results } from './results.ts';

/** a pid that names no process now (a child that has exited) */
const deadPid = () => spawnSync('true').pid!;

const skeleton = (target: 'host' | 'vm', runId: string): Results => ({
  schema: 1, runId, scenario: 'hello-openat', mode: 'run', startedAt: '2026-12-06T00:00:00.000Z', status: 'error', error: 'the run had not finished',
  options: {}, checks: [], metrics: {}, sections: [],
  environment: { kernel: { release: '6.1.0-test', spec: '6.1' }, target, cpu: { model: 'x', cores: 2 }, memoryBytes: 1, node: 'v20', libbpf: '1.1', git: { commit: null, dirty: false }, hostname: 'h' },
});

// A run killed outright (SIGKILL, OOM) writes no report; the next run writes it from the
// running.json the killed one left. VM runs' host-side directories (and a matrix's cells, one
// level down) are covered too; a VM run's guest may have finished before its host was killed.
describe('lab/run: reports of runs killed outright', () => {
  const reports = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-killed-'));
  afterAll(() => fs.rmSync(reports, { recursive: true, force: true }));
  const mark = (rel: string, results: Results, pid = deadPid()) => {
    fs.mkdirSync(path.join(reports, rel), { recursive: true });
    // a dead pid's record carries a start time no process has (a pid reused meanwhile stays dead)
    fs.writeFileSync(path.join(reports, rel, 'running.json'), JSON.stringify({ pid, ...(pid === process.pid ? {} : { startTime: '0' }), results }));
  };
  const read = (rel: string) => JSON.parse(fs.readFileSync(path.join(reports, rel, 'results.json'), 'utf8')) as Results;

  it('writes the reports of dead host and VM runs, keeps a finished guest\'s checks, and leaves live runs alone', async () => {
    mark('vm-none', skeleton('vm', 'vm-none'));
    mark('vm-guest-done', skeleton('vm', 'vm-guest-done'));
    fs.writeFileSync(path.join(reports, 'vm-guest-done', 'results.json'), JSON.stringify({ ...skeleton('vm', 'vm-guest-done'), status: 'pass', error: undefined, checks: [{ name: 'events arrive', status: 'pass' }] }));
    mark('matrix-1/hello-openat-6.1', skeleton('vm', 'hello-openat-6.1'));
    // the matrix finished around its killed row: its index said "no results" for the cell, and
    // a cell never run stays as recorded
    fs.writeFileSync(path.join(reports, 'matrix-1', 'matrix.json'), JSON.stringify([
      { scenario: 'hello-openat', kernel: '6.1', dir: 'hello-openat-6.1', exitCode: null, wallMs: 5000, status: 'error', error: 'its subprocess was killed by SIGKILL before it wrote results; see hello-openat-6.1.log', killedBy: 'SIGKILL' },
      { scenario: 'hello-openat', kernel: '6.12', dir: 'hello-openat-6.12', exitCode: null, wallMs: 0, status: 'error', error: 'not run (interrupted)' },
    ]));
    // a run's own --out nested in a directory that is no matrix: nothing written beside it
    mark('mine/hello-openat-6.1', skeleton('vm', 'mine'));
    mark('live', skeleton('host', 'live'), process.pid);
    // records that parse but are none (review, session 56): the sweep crashed every later run on
    // the first, and wrote an "undefined · error · undefined" report from the second
    for (const [rel, rec] of [['odd-1', { pid: 999999 }], ['odd-2', { pid: 999999, results: {} }]] as const) {
      fs.mkdirSync(path.join(reports, rel), { recursive: true });
      fs.writeFileSync(path.join(reports, rel, 'running.json'), JSON.stringify(rec));
    }
    const said: string[] = [];
    await reportKilledRuns((s) => said.push(s), reports);
    expect(said.join('\n')).toMatch(/wrote the report of 4 run\(s\) killed outright/);
    expect(said.join('\n')).toContain(`rebuilt the matrix index ${path.join(reports, 'matrix-1', 'index.html')}`);
    const cells = JSON.parse(fs.readFileSync(path.join(reports, 'matrix-1', 'matrix.json'), 'utf8')) as { scenario: string; kernel: string; status: string; error: string; dir: string }[];
    expect(cells.map((c) => [c.kernel, c.dir, c.status, c.error.slice(0, 21)])).toEqual([['6.1', 'hello-openat-6.1', 'error', 'killed outright (pid '], ['6.12', 'hello-openat-6.12', 'error', 'not run (interrupted)']]);
    expect(fs.readFileSync(path.join(reports, 'matrix-1', 'index.html'), 'utf8')).toContain('killed outright');
    expect(fs.readdirSync(path.join(reports, 'mine')).sort()).toEqual(['hello-openat-6.1']);
    const none = read('vm-none');
    expect([none.status, none.stoppedBy, none.environment.kernel.release]).toEqual(['error', 'killed', '6.1.0-test']);
    expect(none.error).toMatch(/^killed outright \(pid \d+: /);
    const done = read('vm-guest-done');
    expect(done.status).toBe('error');
    expect(done.stoppedBy, 'the scenario itself finished').toBeUndefined();
    expect(done.checks).toEqual([{ name: 'events arrive', status: 'pass' }]);
    expect(done.error).toMatch(/^the guest's run finished \(its checks are below\), but the host's run was killed outright/);
    expect(read('matrix-1/hello-openat-6.1').stoppedBy).toBe('killed');
    for (const rel of ['vm-none', 'vm-guest-done', 'matrix-1/hello-openat-6.1']) {
      expect(fs.existsSync(path.join(reports, rel, 'report.html')), rel).toBe(true);
      expect(fs.existsSync(path.join(reports, rel, 'running.json')), rel).toBe(false);
    }
    expect(fs.existsSync(path.join(reports, 'live', 'running.json'))).toBe(true);
    expect(fs.existsSync(path.join(reports, 'live', 'results.json'))).toBe(false);
    for (const rel of ['odd-1', 'odd-2']) expect(fs.readdirSync(path.join(reports, rel)), rel).toEqual(['running.json']);
  }, 60_000);

  // a run with --out outside reports/ is never swept by the next run: `lab report` on it writes it
  it('pnpm lab report on a killed run\'s directory writes its report; on a live one it says the run is still going', async () => {
    mark('elsewhere', skeleton('vm', 'elsewhere'));
    const cwd = path.join(import.meta.dirname, '..');
    const r = await execa(NODE, [...LAB, 'report', path.join(reports, 'elsewhere')], { cwd, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(read('elsewhere').error).toMatch(/^killed outright .*this one was, by pnpm lab report \(pid \d+\)/);
    expect(fs.existsSync(path.join(reports, 'elsewhere', 'report.html'))).toBe(true);
    // a VM run whose host was killed after the guest wrote its results: not re-rendered as the guest's PASS
    mark('guest-done', skeleton('vm', 'guest-done'));
    fs.writeFileSync(path.join(reports, 'guest-done', 'results.json'), JSON.stringify({ ...skeleton('vm', 'guest-done'), status: 'pass', error: undefined, checks: [{ name: 'x', status: 'pass' }] }));
    const g = await execa(NODE, [...LAB, 'report', path.join(reports, 'guest-done')], { cwd, reject: false });
    expect(g.exitCode, g.stderr).toBe(0);
    expect([read('guest-done').status, read('guest-done').error]).toEqual(['error', expect.stringMatching(/^the guest's run finished \(its checks are below\), but the host's run was killed outright .*by pnpm lab report/)]);
    expect(fs.existsSync(path.join(reports, 'guest-done', 'running.json'))).toBe(false);
    mark('alive', skeleton('host', 'alive'), process.pid);
    const live = await execa(NODE, [...LAB, 'report', path.join(reports, 'alive')], { cwd, reject: false });
    expect(live.exitCode).toBe(1);
    expect(live.stderr).toMatch(/^error: .*alive: its run is still going/);
    expect(fs.existsSync(path.join(reports, 'alive', 'running.json'))).toBe(true);
    // a live one among others: nothing is re-rendered (the one before it was, and the command failed)
    fs.rmSync(path.join(reports, 'elsewhere', 'report.html'));
    const mixed = await execa(NODE, [...LAB, 'report', path.join(reports, 'elsewhere'), path.join(reports, 'alive')], { cwd, reject: false });
    expect(mixed.exitCode).toBe(1);
    expect(mixed.stderr).toMatch(/alive: its run is still going/);
    expect(fs.existsSync(path.join(reports, 'elsewhere', 'report.html'))).toBe(false);
  }, 60_000);
});

// A killed xdp-lb run's LB instance stays pinned (XDP link, maps) until something unpins it; every
// run sweeps what dead runs of any scenario left (scenarios/<name>/sweep.ts), not only that
// scenario's next run. A live owner's pins, and names that are not a scenario's, stay.
describeRoot('lab/run: instances dead runs of any scenario left', () => {
  const root = '/sys/fs/bpf/ebpf-lab';
  it('unpins a dead run\'s xdp-lb instance, keeps a live one\'s and a stranger\'s', async () => {
    const dead = path.join(root, `xlb${deadPid()}`);
    const live = path.join(root, `xlbs${process.pid}`);
    const other = path.join(root, `xlbx${deadPid()}`);
    const m = BpfMap.create({ type: 2 /* array */, keySize: 4, valueSize: 8, maxEntries: 1 });
    try {
      for (const d of [dead, live, other]) {
        fs.mkdirSync(d, { recursive: true });
        m.pin(path.join(d, 'stats'));
      }
      const info: string[] = [];
      const removed = await sweepDeadInstances({ info: (s) => info.push(s), warn: (s) => info.push(`warn ${s}`) });
      expect(removed).toContain(path.basename(dead));
      expect(fs.existsSync(dead)).toBe(false);
      expect(fs.existsSync(path.join(live, 'stats'))).toBe(true);
      expect(fs.existsSync(path.join(other, 'stats'))).toBe(true);
      expect(info.join('\n')).toMatch(new RegExp(`removed what dead xdp-lb runs left .*${path.basename(dead)}`));
    } finally {
      for (const d of [dead, live, other]) fs.rmSync(d, { recursive: true, force: true });
      m.close();
      try {
        fs.rmdirSync(root); // only if this test made it: another's pins keep it
      } catch { /* not empty, or gone */ }
    }
  });
});
