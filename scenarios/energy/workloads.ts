// The energy scenario's workloads: three cgroups (busy loop capped at 25%, at 50%, and an I/O-bound
// loop), their caps, their processes and their kernel-side CPU accounting (the ground truth the
// BPF numbers are compared with). Caps use cgroup2 cpu.max; on hybrid hosts whose cpu controller
// is bound to the v1 hierarchy, cpu.max cannot exist and the same CFS bandwidth limit is set
// through v1's cpu.cfs_quota_us instead (reported as such, with the evidence).
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { scaledTimeout } from '../../lab/timeouts.ts';
import { cgroup2Root, removeCgroup } from '../../common/cgroup.ts';
import { parsePidStat, readPidStat } from '../../common/host.ts';

export type Defer = (what: string, fn: () => unknown | Promise<unknown>) => void;

export interface Workload {
  name: 'busy25' | 'busy50' | 'io';
  /** cgroup2 directory (absolute) */
  dir: string;
  /** 25 / 50 (% of one CPU) or null for no cap */
  capPct: number | null;
  child: ChildProcess;
  pid: number;
  /** the argv it execs once it has joined its cgroup(s) (its /proc/<pid>/cmdline from then on) */
  load: string[];
}

export interface Caps {
  /** 'cgroup2 cpu.max', 'cgroup1 cpu.cfs_quota_us' or null (no cap possible) */
  how: string | null;
  /** why cpu.max is not used (empty when it is) */
  evidence: string;
}

function v1CpuMount(): string | null {
  for (const l of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const f = l.split(' ');
    if (f[2] === 'cgroup' && f[3]?.split(',').includes('cpu')) return f[1]!;
  }
  return null;
}

/** Create the three cgroups and their caps; everything is removed through `defer`. */
export function setupCgroups(defer: Defer): { base: string; dirs: Record<Workload['name'], string>; caps: Caps; v1: Record<string, string> } {
  const root = cgroup2Root();
  const name = `ebpf-lab-energy-${process.pid}`;
  const base = path.join(root, name);
  fs.mkdirSync(base);
  defer(`remove cgroup ${base}`, () => removeCgroup(base, root));
  const dirs = { busy25: path.join(base, 'busy25'), busy50: path.join(base, 'busy50'), io: path.join(base, 'io') };
  const caps: Caps = { how: null, evidence: '' };
  const ctl = fs.readFileSync(path.join(root, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean);
  if (!ctl.includes('cpu')) caps.evidence = `cpu is not in ${root}/cgroup.controllers ("${ctl.join(' ')}"): the cpu controller is bound to another (v1) hierarchy, so cpu.max cannot be created`;
  else {
    try {
      const sub = (d: string) => fs.readFileSync(path.join(d, 'cgroup.subtree_control'), 'utf8');
      // the cpu controller must be enabled in every ancestor's subtree_control
      if (!sub(root).split(/\s+/).includes('cpu')) fs.writeFileSync(path.join(root, 'cgroup.subtree_control'), '+cpu');
      fs.writeFileSync(path.join(base, 'cgroup.subtree_control'), '+cpu');
      fs.writeFileSync(path.join(base, 'cpu.weight'), '1000');
    } catch (e) {
      caps.evidence = `enabling +cpu in cgroup.subtree_control: ${(e as Error).message}`;
    }
  }
  for (const d of Object.values(dirs)) fs.mkdirSync(d);
  const v1: Record<string, string> = {};
  if (!caps.evidence) {
    try {
      fs.writeFileSync(path.join(dirs.busy25, 'cpu.max'), '25000 100000');
      fs.writeFileSync(path.join(dirs.busy50, 'cpu.max'), '50000 100000');
      // a high weight so that on a busy machine the caps, not the competition, set their CPU
      for (const d of [dirs.busy25, dirs.busy50]) fs.writeFileSync(path.join(d, 'cpu.weight'), '1000');
      caps.how = 'cgroup2 cpu.max';
    } catch (e) {
      caps.evidence = `writing cpu.max: ${(e as Error).message}`;
    }
  }
  if (!caps.how) {
    const m = v1CpuMount();
    if (m) {
      const b1 = path.join(m, name);
      fs.mkdirSync(b1);
      defer(`remove cgroup ${b1}`, () => removeCgroup(b1, m));
      // shares are relative among siblings: the parent competes with the root's tasks, so it needs them too
      fs.writeFileSync(path.join(b1, 'cpu.shares'), '20480');
      for (const [w, pct] of [['busy25', 25], ['busy50', 50]] as const) {
        const d = path.join(b1, w);
        fs.mkdirSync(d);
        fs.writeFileSync(path.join(d, 'cpu.cfs_period_us'), '100000');
        fs.writeFileSync(path.join(d, 'cpu.cfs_quota_us'), String(pct * 1000));
        fs.writeFileSync(path.join(d, 'cpu.shares'), '10240');
        v1[w] = d;
      }
      caps.how = 'cgroup1 cpu.cfs_quota_us';
    }
  }
  return { base, dirs, caps, v1 };
}

/** Where the io workload writes: a file it fsyncs, or a block device it writes with O_DIRECT. */
export interface IoTarget {
  path: string;
  kind: 'file' | 'null_blk';
  /** for the report: what the workload waits on */
  detail: string;
}

/** null_blk completes each request from a timer after this long: the "device" latency the io workload waits on */
export const NULL_BLK_COMPLETION_NS = 4_000_000;

/**
 * The io workload's target. On a host: a file in the run's out dir, rewritten and fsync'd (the
 * disk). In a guest the out dir is a 9p share — the transport the run's results travel back on —
 * so a workload fsyncing there ties what is measured to the measuring harness: instead the guest
 * gets a null_blk device (local to the guest kernel; each 4 KiB O_DIRECT write sleeps until a
 * timer completes it after 4 ms, as on a disk — about 1 ms of CPU per write under TCG, so ~20%
 * busy). tmpfs would not do: its fsync is a no-op, so the "I/O-bound" workload would become a busy
 * loop. Where null_blk cannot be had, the file, and why.
 */
export function ioTarget(defer: Defer, outDir: string, log: (s: string) => void): IoTarget {
  const file = (why: string): IoTarget => {
    const p = path.join(outDir, 'energy-io.tmp');
    defer(`remove ${p}`, () => fs.rmSync(p, { force: true }));
    return { path: p, kind: 'file', detail: `4 KiB pwrite + fsync of ${p}${why ? ` (${why})` : ''}` };
  };
  if (process.env.EBPF_LAB_IN_VM !== '1') return file('');
  if (fs.existsSync('/sys/module/null_blk')) return file('null_blk was already loaded, with parameters that are not this scenario\'s');
  const ms = scaledTimeout(10_000);
  try {
    execFileSync('modprobe', ['null_blk', 'nr_devices=1', 'irqmode=2', `completion_nsec=${NULL_BLK_COMPLETION_NS}`, 'gb=1', 'bs=4096', 'memory_backed=0'], { timeout: ms, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const why = `modprobe null_blk failed: ${((e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message).split('\n')[0]}`;
    log(why);
    return file(why);
  }
  defer('unload null_blk', () => execFileSync('modprobe', ['-r', 'null_blk'], { timeout: ms, stdio: 'ignore' }));
  const dev = '/dev/nullb0';
  const deadline = Date.now() + ms;
  while (!fs.existsSync(dev)) {
    if (Date.now() > deadline) return file(`null_blk loaded but ${dev} did not appear within ${ms / 1000} s`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
  return { path: dev, kind: 'null_blk', detail: `4 KiB O_DIRECT writes to ${dev} (null_blk in the guest, each completed by a timer after ${NULL_BLK_COMPLETION_NS / 1e6} ms; the out dir is a 9p share)` };
}

/**
 * Start a workload: a shell that joins its cgroup(s) first and then execs the load, so every
 * instruction of it runs inside the cgroup. Own process group, so stop/cont/kill reach children.
 */
export function startWorkload(defer: Defer, name: Workload['name'], dir: string, v1dir: string | undefined, capPct: number | null, io: IoTarget): Workload {
  const join = `echo $$ > ${dir}/cgroup.procs${v1dir ? ` && echo $$ > ${v1dir}/tasks` : ''}`;
  // io: one process rewriting 4 KiB in place, mostly waiting for the device (ioTarget); one
  // process, so its /proc/<pid>/stat is the whole workload. O_DIRECT needs an aligned buffer: mmap's.
  const ioPy = io.kind === 'null_blk'
    ? `import mmap, os\nfd = os.open(${JSON.stringify(io.path)}, os.O_WRONLY | os.O_DIRECT)\nb = mmap.mmap(-1, 4096)\nb.write(b"x" * 4096)\nwhile True:\n    os.pwrite(fd, b, 0)`
    : `import os\nfd = os.open(${JSON.stringify(io.path)}, os.O_WRONLY | os.O_CREAT, 0o600)\nb = b"x" * 4096\nwhile True:\n    os.pwrite(fd, b, 0)\n    os.fsync(fd)`;
  const load = name === 'io' ? ['/usr/bin/python3', '-c', ioPy] : ['/bin/sh', '-c', 'while :; do :; done'];
  const child = spawn('/bin/sh', ['-c', `${join} && exec "$@"`, 'sh', ...load], { stdio: 'ignore', detached: true });
  const pid = child.pid!;
  defer(`kill workload ${name} (${pid})`, async () => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    // bounded: a task stuck in the kernel does not die on SIGKILL, and the run must still end
    // (the cgroup removal after it then fails too, and says so)
    const ms = scaledTimeout(5000);
    if (!(await exited(child, ms))) throw new Error(`workload ${name} (pid ${pid}) did not exit within ${ms / 1000} s of SIGKILL: ${taskState(pid)}`);
  });
  return { name, dir, capPct, child, pid, load };
}

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((r) => {
    const t = setTimeout(() => r(false), ms);
    child.once('exit', () => (clearTimeout(t), r(true)));
  });
}

/** "state D, wchan p9_client_rpc" for a report: where a task that does not move is waiting */
export function taskState(pid: number): string {
  const st = readPidStat(`/proc/${pid}/stat`);
  if (!st) return 'gone';
  let wchan = '';
  try {
    wchan = fs.readFileSync(`/proc/${pid}/wchan`, 'utf8').trim();
  } catch {
    /* no wchan */
  }
  return `state ${st.state}${wchan && wchan !== '0' ? `, wchan ${wchan}` : ''}`;
}

/**
 * Wait until every workload has joined its cgroup and exec'd its load (so everything it runs from
 * then on is charged to that cgroup), polling, at most `ms`. Returns null when they all have, else
 * what is missing per workload — the caller reports it as a failed check instead of waiting on.
 */
export async function waitStarted(ws: Workload[], ms: number, signal?: AbortSignal): Promise<string | null> {
  const root = cgroup2Root();
  const deadline = Date.now() + ms;
  const missing = (w: Workload): string | null => {
    if (w.child.exitCode !== null || w.child.signalCode !== null) return `${w.name} exited (${w.child.exitCode ?? w.child.signalCode}) before its load started`;
    try {
      const cg = /^0::(.*)$/m.exec(fs.readFileSync(`/proc/${w.pid}/cgroup`, 'utf8'))?.[1];
      if (cg !== `/${path.relative(root, w.dir)}`) return `${w.name} (pid ${w.pid}) is in cgroup ${cg ?? '?'}, not ${w.dir} (${taskState(w.pid)})`;
      if (fs.readFileSync(`/proc/${w.pid}/cmdline`, 'utf8') !== `${w.load.join('\0')}\0`) return `${w.name} (pid ${w.pid}) has not exec'd its load yet (${taskState(w.pid)})`;
      return null;
    } catch (e) {
      return `${w.name} (pid ${w.pid}): ${(e as Error).message}`;
    }
  };
  for (;;) {
    const left = ws.map(missing).filter((m): m is string => m !== null);
    if (!left.length) return null;
    if (Date.now() > deadline || signal?.aborted) return left.join('; ');
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function signalAll(ws: Workload[], sig: 'SIGSTOP' | 'SIGCONT'): void {
  for (const w of ws) {
    try {
      process.kill(-w.pid, sig);
    } catch {
      /* gone */
    }
  }
}

export function cgroupUsageUs(dir: string): number {
  const m = /usage_usec (\d+)/.exec(fs.readFileSync(path.join(dir, 'cpu.stat'), 'utf8'));
  return m ? Number(m[1]) : NaN;
}

let clkTck = 0;
/** seconds per clock tick, the resolution of /proc/<pid>/stat */
export function tickSeconds(): number {
  procCpuSeconds(process.pid);
  return 1 / clkTck;
}
/** utime + stime of a process (all threads) in seconds, from /proc/<pid>/stat */
export function procCpuSeconds(pid: number): number {
  if (!clkTck) {
    try {
      // bounded: a synchronous child that never returned would stall the whole runner
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: scaledTimeout(5000) }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  const st = parsePidStat(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); // throws when gone, as before
  return st ? st.ticks / clkTck : NaN;
}

/** sum_exec_runtime of the thread group leader in ns (/proc/<pid>/schedstat), when schedstats exist */
export function procSchedNs(pid: number): number | null {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return null;
  }
}
