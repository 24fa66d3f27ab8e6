// The cost of the sched_switch hook on the context-switch rate: `perf bench sched pipe` (two tasks
// ping-ponging a byte through a pair of pipes) with both tasks pinned to one CPU (taskset), so that
// every operation is exactly two context switches on that CPU and nothing else (no cross-CPU
// wakeups, no idle entries, no migrations); many short rounds, hook off and on in each round, the
// order alternating (off→on, on→off, …), the program loaded once and only its link attached or
// detached between measurements. Per round: switch rate with the hook on / off; the figure is the
// median rate lost (%) over the rounds with its spread, and a bootstrap CI of the time ratio.
import { execa } from 'execa';
import { bootstrapRatioCI, summary, verdict } from '../../lab/stats.ts';
import { EnergyCollector } from '../../controller/energy/collector.ts';
import { scaledTimeout } from '../../lab/timeouts.ts';

export interface PingPongRound {
  /** context switches per second on the pinned CPU (2 per op), hook off / on */
  off: number;
  on: number;
  /** on / off switch rate */
  ratio: number;
  order: 'off→on' | 'on→off';
  /** switches the BPF counter saw on the pinned CPU per op during the on measurement (≈ 2: the pinning works) */
  switchesPerOp: number;
}

export interface PingPongResult {
  cpu: number;
  loops: number;
  hook: string;
  rounds: PingPongRound[];
  /** switch rates (per second) per configuration */
  off: ReturnType<typeof summary>;
  on: ReturnType<typeof summary>;
  /** switch rate lost to the hook per round, (1 − on/off) × 100 */
  overheadPct: ReturnType<typeof summary> & { values: number[] };
  /** bootstrap CI (rounds resampled) of Σ time per switch on / Σ off */
  ci: ReturnType<typeof bootstrapRatioCI>;
  /** the CI against the goal, converted to time: a rate lost of g% is a time ratio of 1 / (1 − g) */
  verdict: 'pass' | 'fail' | 'inconclusive';
  /** BPF run time per sched_switch over the on measurements (kernel.bpf_stats_enabled), when available */
  bpfNsPerSwitch: number | null;
}

/** µs per op of `perf bench sched pipe -l loops`, both tasks pinned to `cpu` */
export async function pipeUsPerOp(loops: number, cpu: number, signal?: AbortSignal): Promise<number> {
  // bounded: a few µs per op natively; a stuck measurement ends as an error, not a hang
  const timeout = scaledTimeout(30_000 + loops * 0.1);
  const r = await execa('taskset', ['-c', String(cpu), 'perf', 'bench', 'sched', 'pipe', '-l', String(loops)], { cancelSignal: signal, all: true, reject: false, timeout, forceKillAfterDelay: 2000 });
  if (r.timedOut) throw new Error(`taskset -c ${cpu} perf bench sched pipe -l ${loops} did not finish within ${(timeout / 1000).toFixed(0)} s`);
  const m = /([\d.]+)\s+usecs\/op/.exec(r.all ?? '');
  if (r.exitCode !== 0 || !m) throw new Error(`taskset -c ${cpu} perf bench sched pipe failed (exit ${r.exitCode}): ${(r.all ?? '').split('\n').slice(-3).join(' | ')}`);
  return Number(m[1]);
}

export async function pingPong(opts: { rounds: number; loops: number; cpu: number; goalPct: number; signal?: AbortSignal; onRound?: (i: number) => void }): Promise<PingPongResult> {
  const { cpu, loops } = opts;
  const c = await EnergyCollector.open({ power: 'model', counters: 'off' });
  const rounds: PingPongRound[] = [];
  let stats: { close(): void } | null = null;
  let bpfRuns = 0;
  let bpfNs = 0;
  try {
    c.setSwitchHook(false);
    await pipeUsPerOp(Math.max(1000, loops / 4), cpu, opts.signal); // warm-up: page cache, perf's own start
    for (let i = 0; i < opts.rounds && !opts.signal?.aborted; i++) {
      opts.onRound?.(i);
      const order = i % 2 ? (['on', 'off'] as const) : (['off', 'on'] as const);
      const us: { off?: number; on?: number } = {};
      let perOp = 0;
      for (const cfg of order) {
        c.setSwitchHook(cfg === 'on');
        if (cfg === 'off') us.off = await pipeUsPerOp(loops, cpu, opts.signal);
        else {
          const sw0 = Number(c.cpuTotals()[cpu]?.switches ?? 0n);
          us.on = await pipeUsPerOp(loops, cpu, opts.signal);
          perOp = (Number(c.cpuTotals()[cpu]?.switches ?? 0n) - sw0) / loops;
        }
      }
      c.setSwitchHook(false);
      const off = 2e6 / us.off!;
      const on = 2e6 / us.on!;
      rounds.push({ off, on, ratio: on / off, order: order[0] === 'off' ? 'off→on' : 'on→off', switchesPerOp: perOp });
    }
    // the program's own run time per switch, in one extra measurement after the rounds: the
    // kernel's run-time stats cost two clock reads per run, so they stay off while rates are compared
    try {
      stats = EnergyCollector.enableRunStats();
      c.setSwitchHook(true);
      const st0 = c.switchStats();
      await pipeUsPerOp(loops, cpu, opts.signal);
      const st1 = c.switchStats();
      bpfRuns = st1.runCnt - st0.runCnt;
      bpfNs = st1.runTimeNs - st0.runTimeNs;
    } catch {
      /* no run-time stats: the figure is still the switch rate */
    }
  } finally {
    stats?.close();
    c.close();
  }
  const pct = rounds.map((r) => (1 - r.ratio) * 100);
  // time per switch is 1 / rate: the CI of the time ratio on/off, judged against 1 / (1 − goal)
  const ci = bootstrapRatioCI(rounds.map((r) => 1 / r.off), rounds.map((r) => 1 / r.on));
  const limit = 1 / (1 - opts.goalPct / 100);
  return {
    cpu,
    loops,
    hook: c.hook.name,
    rounds,
    off: summary(rounds.map((r) => r.off)),
    on: summary(rounds.map((r) => r.on)),
    overheadPct: { ...summary(pct), values: pct },
    ci,
    verdict: verdict(ci, limit),
    bpfNsPerSwitch: bpfRuns > 0 && bpfNs > 0 ? bpfNs / bpfRuns : null,
  };
}
