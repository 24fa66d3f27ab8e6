// The power model and the attribution rule: pure maths, no kernel (tests run it on fixtures).
//
// Power of one CPU (when no meter is present):
//     P_cpu = idle + (max − idle) × utilisation × f,    idle = idleWatts / cpus, max = tdpWatts / cpus
// where f = (current frequency / max frequency)^freqExponent when the frequency is known, else 1.
// Over an interval of dt seconds with busy seconds b (utilisation = b / dt) the CPU's energy is
//     E_cpu = idle × dt  +  (max − idle) × b × f        ("idle" part + "dynamic" part)
// With a meter (RAPL) the node's measured energy E replaces the model: its idle part is
// min(E, idleWatts × dt) and the rest is the dynamic part, spread over CPUs by busy time (or cycles).
//
// Attribution: a CPU's dynamic energy over an interval is split between the workloads that ran on
// it in proportion to their on-CPU time there (cycles when hardware counters are known). The idle
// part is reported on its own line, never spread over workloads. Busy time that the BPF side could
// not key (map full) stays "unattributed", so sum(workloads) + idle + unattributed = node total.

export type PowerSourceName = 'rapl' | 'model';

export interface ModelConfig {
  /** the whole package's power at 100% utilisation on every CPU (W) */
  tdpWatts: number;
  /** the whole package's power with every CPU idle (W) */
  idleWatts: number;
  /** how dynamic power scales with frequency: (f / fmax)^freqExponent (1: linear) */
  freqExponent: number;
}

export const DEFAULT_MODEL: ModelConfig = { tdpWatts: 65, idleWatts: 10, freqExponent: 1 };

export function validateModel(m: ModelConfig): string | null {
  if (!(Number.isFinite(m.tdpWatts) && m.tdpWatts > 0)) return `tdpWatts must be a positive number (got ${m.tdpWatts})`;
  if (!(Number.isFinite(m.idleWatts) && m.idleWatts >= 0)) return `idleWatts must be ≥ 0 (got ${m.idleWatts})`;
  if (m.idleWatts > m.tdpWatts) return `idleWatts (${m.idleWatts}) must not exceed tdpWatts (${m.tdpWatts})`;
  if (!(Number.isFinite(m.freqExponent) && m.freqExponent >= 0)) return `freqExponent must be ≥ 0 (got ${m.freqExponent})`;
  return null;
}

/** what one CPU did over an interval (deltas) */
export interface CpuInterval {
  cpu: number;
  /** busy nanoseconds (non-idle tasks), from the per-CPU totals, independent of the per-task map */
  busyNs: number;
  /** cycles while busy, when hardware counters are known */
  busyCycles?: number;
  /** current and maximum frequency (kHz), when known */
  freqKhz?: number;
  maxFreqKhz?: number;
}

export interface CpuEnergy {
  cpu: number;
  idleJ: number;
  dynamicJ: number;
  busyNs: number;
  busyCycles?: number;
}

export function freqFactor(c: Pick<CpuInterval, 'freqKhz' | 'maxFreqKhz'>, exponent: number): number {
  if (!c.freqKhz || !c.maxFreqKhz) return 1;
  return Math.min(1, c.freqKhz / c.maxFreqKhz) ** exponent;
}

/** Model: each CPU's idle and dynamic energy over dtNs. Busy time is capped at dt (utilisation ≤ 1). */
export function modelEnergy(cfg: ModelConfig, dtNs: number, cpus: CpuInterval[]): CpuEnergy[] {
  const n = cpus.length || 1;
  const idleW = cfg.idleWatts / n;
  const dynW = (cfg.tdpWatts - cfg.idleWatts) / n;
  return cpus.map((c) => {
    const busy = Math.min(c.busyNs, dtNs);
    return { cpu: c.cpu, idleJ: (idleW * dtNs) / 1e9, dynamicJ: (dynW * busy * freqFactor(c, cfg.freqExponent)) / 1e9, busyNs: c.busyNs, busyCycles: c.busyCycles };
  });
}

/** Meter: the node's measured joules over dtNs, split into idle (configured idle power, capped) and dynamic per CPU. */
export function meteredEnergy(totalJ: number, idleWatts: number, dtNs: number, cpus: CpuInterval[]): CpuEnergy[] {
  const n = cpus.length || 1;
  const idleJ = Math.min(totalJ, (idleWatts * dtNs) / 1e9);
  const dyn = Math.max(0, totalJ - idleJ);
  const useCycles = cpus.every((c) => c.busyCycles !== undefined) && cpus.some((c) => (c.busyCycles ?? 0) > 0);
  const weight = (c: CpuInterval) => (useCycles ? c.busyCycles ?? 0 : c.busyNs);
  const sum = cpus.reduce((s, c) => s + weight(c), 0);
  // nothing ran anywhere: the measured energy above idle has no workload to go to, so it is idle
  if (sum <= 0) return cpus.map((c) => ({ cpu: c.cpu, idleJ: totalJ / n, dynamicJ: 0, busyNs: c.busyNs, busyCycles: c.busyCycles }));
  return cpus.map((c) => ({ cpu: c.cpu, idleJ: idleJ / n, dynamicJ: (dyn * weight(c)) / sum, busyNs: c.busyNs, busyCycles: c.busyCycles }));
}

/**
 * A CPU's cumulative busy time at the instant the per-task map was read. The per-task values and
 * the per-CPU totals live in two maps that cannot be read at one instant: the per-CPU totals read
 * after the task walk (batch syscalls plus decoding — tens of ms under TCG) already hold stints the
 * task values do not, and dividing one by the other leaves that skew unattributed every interval
 * (it never telescopes back: the next interval's surplus is capped at its own total). The totals
 * are therefore read before (`before`) and after (`after`) the walk, and the busy total at the walk
 * is taken as what the task entries account for (`keyed`: the cumulative sum of the per-interval
 * uses plus BPF's own unattributed_ns) plus the gap between the two known so far, clamped into
 * [before, after]. With nothing lost it is `keyed` exactly, so attribution adds up; time lost from
 * the task map (an entry evicted between two reads) makes keyed + gap fall below `before`, the gap
 * grows by the shortfall and that energy stays unattributed. The gap never exceeds the real loss
 * (busy at the walk ≥ before), so nothing is hidden except loss smaller than one read window, and
 * what stays hidden surfaces at a later, shorter walk. Monotone: before ≥ the previous after.
 */
export interface BusyAtRead {
  /** busy ns at the walk (cumulative) */
  busy: number;
  /** cumulative ns the task entries (and unattributed_ns) account for */
  keyed: number;
  /** busy − keyed: time the task map is known to have lost */
  gap: number;
}

export function busyAtRead(prev: BusyAtRead | null, before: number, after: number, keyedDelta: number): BusyAtRead {
  const keyed = (prev?.keyed ?? 0) + keyedDelta;
  const busy = Math.min(after, Math.max(before, keyed + (prev?.gap ?? 0)));
  return { busy, keyed, gap: busy - keyed };
}

/** one workload's use of one CPU over the interval */
export interface Use {
  key: string;
  cpu: number;
  ns: number;
  cycles?: number;
}

export interface Attribution {
  /** joules per workload key */
  perKey: Map<string, number>;
  idleJ: number;
  /** dynamic energy of busy time no workload entry holds (evicted / map full) */
  unattributedJ: number;
  /** idle + dynamic over all CPUs */
  nodeJ: number;
  /** did the split use cycles (else on-CPU time) */
  byCycles: boolean;
}

/** Split each CPU's dynamic energy by on-CPU time (cycles when every CPU has them). */
export function attribute(cpus: CpuEnergy[], uses: Use[]): Attribution {
  const byCycles = cpus.length > 0 && cpus.every((c) => (c.busyCycles ?? 0) > 0) && uses.every((u) => u.cycles !== undefined);
  const perKey = new Map<string, number>();
  let idleJ = 0;
  let nodeJ = 0;
  let unattributedJ = 0;
  const byCpu = new Map<number, Use[]>();
  for (const u of uses) {
    const l = byCpu.get(u.cpu);
    if (l) l.push(u);
    else byCpu.set(u.cpu, [u]);
  }
  for (const c of cpus) {
    idleJ += c.idleJ;
    nodeJ += c.idleJ + c.dynamicJ;
    const mine = byCpu.get(c.cpu) ?? [];
    const w = (u: Use) => Math.max(0, byCycles ? u.cycles! : u.ns);
    // the per-CPU total is the denominator; the workloads' sum exceeds it only through read skew
    // between the two maps, and then their own sum is used so no CPU gives out more than it has
    const total = Math.max(byCycles ? c.busyCycles! : c.busyNs, mine.reduce((s, u) => s + w(u), 0));
    let given = 0;
    if (total > 0) {
      for (const u of mine) {
        const j = (c.dynamicJ * w(u)) / total;
        if (j <= 0) continue;
        given += j;
        perKey.set(u.key, (perKey.get(u.key) ?? 0) + j);
      }
    }
    unattributedJ += c.dynamicJ - given;
  }
  return { perKey, idleJ, unattributedJ, nodeJ, byCycles };
}
