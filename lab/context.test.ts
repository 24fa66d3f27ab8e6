// Run context parsers and the busy verdict on fixtures (no root).
import { describe, expect, it } from 'vitest';
import { parseCpuinfo, parseLoadavg, parseProcStat, runContext, type Snapshot } from './context.ts';
import { parsePidStat, readPidStat } from '../common/host.ts';

const STAT = `cpu  1000 10 500 8000 100 0 90 300 0 0
cpu0 500 5 250 4000 50 0 45 150 0 0
intr 1 2 3`;

describe('parsers', () => {
  it('reads /proc/stat busy, idle and steal', () => {
    expect(parseProcStat(STAT)).toEqual({ busy: 1600, idle: 8100, steal: 300, total: 10000 });
    expect(() => parseProcStat('intr 1')).toThrow(/cpu line/);
  });
  it('reads loadavg and a pid stat whose comm holds ") ("', () => {
    expect(parseLoadavg('0.52 1.10 2.00 3/400 999\n')).toEqual([0.52, 1.1, 2]);
    const s = '42 (a) (b c) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0';
    expect(parsePidStat(s)).toEqual({ comm: 'a) (b c', state: 'S', ppid: 7, ticks: 300, sysTicks: 50, startTime: '100' });
    expect(parsePidStat('garbage')).toBeNull();
    // the live file: this process, its parent, and a pid that cannot exist
    expect(readPidStat(`/proc/${process.pid}/stat`)).toMatchObject({ state: 'R', ppid: process.ppid });
    expect(readPidStat('/proc/0/stat')).toBeNull();
  });
  it('reads model and MHz from cpuinfo', () => {
    const t = 'processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\ncpu MHz\t\t: 1999.998\n\nprocessor\t: 1\nmodel name\t: Some CPU @ 2.0GHz\ncpu MHz\t\t: 2100.5\n';
    expect(parseCpuinfo(t)).toEqual({ model: 'Some CPU @ 2.0GHz', mhz: [1999.998, 2100.5] });
  });
});

function snap(at: number, cpu: [number, number, number], procs: [number, string, number, number][]): Snapshot {
  const [busy, idle, steal] = cpu;
  return { at, loadavg: [1, 1, 1], cpu: { busy, idle, steal, total: busy + idle + steal }, procs: new Map(procs.map(([pid, comm, ppid, ticks]) => [pid, { comm, ppid, ticks }])) };
}

describe('runContext', () => {
  // 10 s run on 2 CPUs (2000 ticks at 100 Hz)
  const a = snap(0, [0, 0, 0], [[1, 'init', 0, 0], [100, 'node', 1, 1000], [101, 'opensnoop', 100, 0], [200, 'gcc', 1, 50], [300, 'idle-ish', 1, 5]]);
  it('charges only processes outside our tree, children and grandchildren excluded', () => {
    const b = snap(10_000, [1200, 780, 20], [[1, 'init', 0, 1], [100, 'node', 1, 1800], [101, 'opensnoop', 100, 300], [102, 'wrk', 101, 400], [200, 'gcc', 1, 550], [300, 'idle-ish', 1, 6]]);
    const c = runContext(a, b, 100, 100, { cores: 2 });
    // gcc: 500 ticks over 10 s = 0.5 CPU; init and idle-ish 0.001 each
    expect(c.othersCores).toBeCloseTo(0.502, 3);
    expect(c.topOthers[0]).toEqual({ pid: 200, comm: 'gcc', cores: 0.5 });
    expect(c.topOthers.map((o) => o.pid)).not.toContain(102);
    expect(c.busyShare).toBe(0.6);
    expect(c.stealShare).toBe(0.01);
    expect(c.busy).toHaveLength(1);
    expect(c.busy[0]).toMatch(/other processes used 0.50 CPUs .*gcc 0.50/);
  });
  it('a quiet machine is not flagged; steal is', () => {
    const q = snap(10_000, [100, 1900, 0], [[1, 'init', 0, 0], [100, 'node', 1, 1100], [200, 'gcc', 1, 60], [300, 'idle-ish', 1, 5]]);
    expect(runContext(a, q, 100).busy).toEqual([]);
    const st = snap(10_000, [100, 1700, 200], [[100, 'node', 1, 1100]]);
    expect(runContext(a, st, 100).busy[0]).toMatch(/stole 10.0%/);
  });
  it("an orphaned zombie born during the run is nobody's (the run's own killed children, where init does not reap)", () => {
    const b = snap(10_000, [0, 2000, 0], [[400, 'sched-pipe', 1, 390], [200, 'gcc', 1, 150]]);
    b.procs.get(400)!.state = 'Z';
    expect(runContext(a, b, 100).topOthers.map((o) => o.comm)).toEqual(['gcc']);
    // a zombie that was there before the run, or whose parent lives, still counts
    b.procs.get(400)!.ppid = 200;
    expect(runContext(a, b, 100).topOthers.map((o) => o.comm)).toEqual(['sched-pipe', 'gcc']);
  });

  it('a pid reused by another command counts from zero', () => {
    const b = snap(10_000, [0, 2000, 0], [[200, 'other', 1, 100]]);
    expect(runContext(a, b, 100).topOthers[0]).toEqual({ pid: 200, comm: 'other', cores: 0.1 });
  });
  // kernel workers rename themselves between snapshots: their lifetime's CPU was counted as the
  // run's (62 CPUs of others on 2 cores, review, session 57); a process is told by its start time
  it('a process that renamed itself counts its run ticks only; a reused pid of the same name counts from zero', () => {
    const a2 = snap(0, [0, 0, 0], [[200, 'kworker/1:1H', 2, 600_000]]);
    a2.procs.get(200)!.start = '17';
    const b = snap(10_000, [0, 2000, 0], [[200, 'kworker/1:1H-kblockd', 2, 600_010]]);
    b.procs.get(200)!.start = '17';
    expect(runContext(a2, b, 100).othersCores).toBe(0.01);
    b.procs.set(200, { comm: 'kworker/1:1H', ppid: 2, ticks: 30, start: '5000' });
    expect(runContext(a2, b, 100).othersCores).toBe(0.03);
  });
});
