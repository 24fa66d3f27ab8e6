// The machine's state around a run: a figure is only as good as the minute it was measured in.
// Recorded by the runner for every run (results.context): load average and steal time before and
// after, CPU model and frequency where readable, and which other processes used CPU meanwhile.
// A run is flagged busy when others held a sizeable share of the CPUs or the hypervisor stole time.
// The parsers are pure (tested on fixtures); snapshot() reads /proc.
import fs from 'node:fs';
import { parsePidStat } from '../common/host.ts';

export interface CpuStat {
  /** USER_HZ ticks summed over all CPUs */
  busy: number;
  idle: number;
  steal: number;
  total: number;
}

/** the aggregate "cpu" line of /proc/stat */
export function parseProcStat(text: string): CpuStat {
  const line = text.split('\n').find((l) => /^cpu\s/.test(l));
  if (!line) throw new Error('no aggregate cpu line in /proc/stat');
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  // guest time is already inside user/nice
  return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal, total: user + nice + system + idle + iowait + irq + softirq + steal };
}

export function parseLoadavg(text: string): [number, number, number] {
  const [a = NaN, b = NaN, c = NaN] = text.trim().split(/\s+/).map(Number);
  return [a, b, c];
}


/** model name and MHz from /proc/cpuinfo (the MHz of every CPU, as the kernel reported it) */
export function parseCpuinfo(text: string): { model?: string; mhz: number[] } {
  const model = /^model name\s*:\s*(.+)$/m.exec(text)?.[1]?.trim();
  const mhz = [...text.matchAll(/^cpu MHz\s*:\s*([\d.]+)$/gm)].map((m) => Number(m[1]));
  return { model, mhz };
}

export interface Snapshot {
  at: number;
  loadavg: [number, number, number];
  cpu: CpuStat;
  /** pid → {comm, ppid, ticks, state, start} (state: /proc/<pid>/stat's, e.g. 'Z' for a zombie; start: its start time, which tells a reused pid) */
  procs: Map<number, { comm: string; ppid: number; ticks: number; state?: string; start?: string }>;
}

const read = (p: string): string | null => {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return null;
  }
};

export function snapshot(): Snapshot {
  const procs = new Map<number, { comm: string; ppid: number; ticks: number; state?: string; start?: string }>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = read(`/proc/${d}/stat`);
    const p = s && parsePidStat(s);
    if (p) procs.set(Number(d), { comm: p.comm, ppid: p.ppid, ticks: p.ticks, state: p.state, start: p.startTime });
  }
  return { at: Date.now(), loadavg: parseLoadavg(read('/proc/loadavg') ?? ''), cpu: parseProcStat(read('/proc/stat') ?? ''), procs };
}

export interface RunContext {
  cores: number;
  cpuModel?: string;
  /** MHz per CPU at the start (cpuinfo), and the cpufreq driver's range if it exposes one */
  cpuMhz?: number[];
  cpufreq?: { governor?: string; minKhz?: number; maxKhz?: number };
  loadavg: { before: [number, number, number]; after: [number, number, number] };
  /** share of all CPUs' time during the run */
  busyShare: number;
  stealShare: number;
  /** CPU time (in cores: 1 = one CPU for the whole run) used by processes outside this run's process tree */
  othersCores: number;
  /** the busiest of those, by CPU during the run */
  topOthers: { pid: number; comm: string; cores: number }[];
  seconds: number;
  /** why the run counts as busy (empty: quiet enough) */
  busy: string[];
}

/** thresholds for the busy flag: others held a quarter of a CPU on average, or ≥ 5% was stolen */
export const BUSY = { othersCores: 0.25, stealShare: 0.05 } as const;

/**
 * Compare two snapshots. `ours` are this run's pids (the runner and, transitively, its children
 * present at either snapshot); processes that started and ended between the snapshots are not seen
 * (their CPU is in busyShare only).
 */
export function runContext(a: Snapshot, b: Snapshot, ours: number, hz = 100, cpu: { cores: number; model?: string; mhz?: number[]; cpufreq?: RunContext['cpufreq'] } = { cores: 1 }): RunContext {
  const seconds = Math.max((b.at - a.at) / 1000, 1e-3);
  const total = Math.max(b.cpu.total - a.cpu.total, 1);
  const mine = new Set<number>([ours]);
  // descendants: walk ppid links in both snapshots until nothing new is added
  for (let grew = true; grew; ) {
    grew = false;
    for (const snap of [a, b]) for (const [pid, p] of snap.procs) if (!mine.has(pid) && mine.has(p.ppid)) { mine.add(pid); grew = true; }
  }
  const others: { pid: number; comm: string; cores: number }[] = [];
  for (const [pid, p] of b.procs) {
    if (mine.has(pid) || pid === 0) continue;
    // an orphaned zombie born during the run has no parent left to say whose it was: on hosts whose
    // init does not reap (this lab's), the run's own killed children end that way (the energy
    // bench's ping-pong partner, 0.39 CPU of "other processes" flagging a quiet machine busy)
    if (p.state === 'Z' && p.ppid === 1 && !a.procs.has(pid)) continue;
    const before = a.procs.get(pid);
    // the same process by its start time, not its name: kernel workers rename themselves
    // (kworker/1:1H ↔ kworker/1:1H-kblockd), and their whole lifetime's CPU was counted as the
    // run's (62 CPUs of others on a 2-core host: review, session 57); by name only where a
    // snapshot has no start time
    const same = before && (before.start && p.start ? before.start === p.start : before.comm === p.comm);
    const ticks = p.ticks - (same ? before.ticks : 0);
    if (ticks > 0) others.push({ pid, comm: p.comm, cores: ticks / hz / seconds });
  }
  others.sort((x, y) => y.cores - x.cores);
  const othersCores = others.reduce((s, o) => s + o.cores, 0);
  const stealShare = (b.cpu.steal - a.cpu.steal) / total;
  const busy: string[] = [];
  if (othersCores >= BUSY.othersCores) busy.push(`other processes used ${othersCores.toFixed(2)} CPUs on average (${others.slice(0, 3).map((o) => `${o.comm} ${o.cores.toFixed(2)}`).join(', ')})`);
  if (stealShare >= BUSY.stealShare) busy.push(`the hypervisor stole ${(stealShare * 100).toFixed(1)}% of CPU time`);
  const r2 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    cores: cpu.cores,
    ...(cpu.model ? { cpuModel: cpu.model } : {}),
    ...(cpu.mhz?.length ? { cpuMhz: cpu.mhz } : {}),
    ...(cpu.cpufreq ? { cpufreq: cpu.cpufreq } : {}),
    loadavg: { before: a.loadavg, after: b.loadavg },
    busyShare: r2((b.cpu.busy - a.cpu.busy) / total),
    stealShare: r2(stealShare),
    othersCores: r2(othersCores),
    topOthers: others.slice(0, 8).map((o) => ({ ...o, cores: r2(o.cores) })),
    seconds: r2(seconds),
    busy,
  };
}

/** CPU model, per-CPU MHz and the cpufreq range, where the machine exposes them */
export function cpuFacts(cores: number): { cores: number; model?: string; mhz?: number[]; cpufreq?: RunContext['cpufreq'] } {
  const info = parseCpuinfo(read('/proc/cpuinfo') ?? '');
  const f = (n: string) => read(`/sys/devices/system/cpu/cpu0/cpufreq/${n}`)?.trim();
  const governor = f('scaling_governor');
  const minKhz = f('cpuinfo_min_freq');
  const maxKhz = f('cpuinfo_max_freq');
  const cpufreq = governor || minKhz || maxKhz ? { ...(governor ? { governor } : {}), ...(minKhz ? { minKhz: Number(minKhz) } : {}), ...(maxKhz ? { maxKhz: Number(maxKhz) } : {}) } : undefined;
  return { cores, model: info.model, mhz: info.mhz.length ? info.mhz : undefined, cpufreq };
}
