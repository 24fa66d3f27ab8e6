// The cost of the sched_switch hook on the context-switch rate: `perf bench sched pipe` (two tasks
// ping-ponging a byte through a pair of pipes) with both tasks pinned to one CPU (taskset), so that
// every operation is exactly two context switches on that CPU and nothing else (no cross-CPU
// wakeups, no idle entries, no migrations).
//
// One ping-pong runs for the whole measurement and the hook is attached and detached under it in
// short windows (off, on, on, off, …: the order alternates per round), the program loaded once.
// Per window: the pair's context switches (/proc/<pid>/status, voluntary + involuntary: a woken
// partner often preempts its waker) over the wall time, and
// over the CPU time the pair got (/proc/<pid>/schedstat, the scheduler's own clock_task, which
// holds the hook: it runs in __schedule after the incoming task's exec_start was taken). Windows
// next to each other share the machine's state, which on this lab's shared, nested-virtualised
// host moves the per-op time by ±10–15% from one process start to the next (one perf process per
// measurement, as before, spent ~20 ms of start-up per 60 ms measurement and left rounds 100 ms
// apart). The lab's own process is kept off the pinned CPU while it runs (its affinity restored
// after), so toggling the hook and reading /proc do not land in the windows.
// Optional windows of their own per round, in rotating positions: a do-nothing tp_btf program alone
// (`floor`, what any program on the hook pays) and the iter flavour (`alsoIter`, a second collector
// with nothing on sched_switch: its sched_process_free link and one task walk per window).
import fs from 'node:fs';
import { execa, type ResultPromise } from 'execa';
import { bootstrapRatioCI, summary, verdict } from '../../lab/stats.ts';
import { EnergyCollector } from '../../controller/energy/collector.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export interface PingPongRound {
  /** context switches per second of wall time on the pinned CPU, hook off / on */
  off: number;
  on: number;
  /** the same per second of CPU time the pair got (schedstat): what other work on the CPU took is out */
  offCpu: number;
  onCpu: number;
  /** on / off switch rate per CPU second (the judged figure) */
  ratio: number;
  /** on / off switch rate per wall second */
  wallRatio: number;
  order: 'off→on' | 'on→off';
  /** switches per CPU second with only a do-nothing tp_btf program attached (the hook's floor), when measured */
  emptyCpu?: number;
  /** switches per CPU second with the iter flavour on instead (its own collector: sched_process_free attached, one task walk per window), when measured */
  iterCpu?: number;
  /** switches the BPF program saw on the pinned CPU per switch of the pair in the on window (≈ 1: the pinning works, nothing else ran there; task storage counts at flushes, so a little lag) */
  seenPerSwitch: number;
}

export interface PingPongResult {
  cpu: number;
  windowMs: number;
  hook: string;
  perThread: string;
  rounds: PingPongRound[];
  /** switch rates (per CPU second) per configuration */
  off: ReturnType<typeof summary>;
  on: ReturnType<typeof summary>;
  /** switch rate per CPU second lost to the hook per round, (1 − on/off) × 100 */
  overheadPct: ReturnType<typeof summary> & { values: number[] };
  /** the same by wall time (includes whatever else ran on the CPU meanwhile) */
  wallOverheadPct: ReturnType<typeof summary> & { values: number[] };
  /** bootstrap CI (rounds resampled) of Σ CPU time per switch on / Σ off */
  ci: ReturnType<typeof bootstrapRatioCI>;
  wallCi: ReturnType<typeof bootstrapRatioCI>;
  /** the CI against the goal, converted to time: a rate lost of g% is a time ratio of 1 / (1 − g) */
  verdict: 'pass' | 'fail' | 'inconclusive';
  /** BPF run time per sched_switch over one extra on window (kernel.bpf_stats_enabled), when available */
  bpfNsPerSwitch: number | null;
  /** the pair's CPU time per switch with the hook off (ns): the denominator of the figure */
  offNsPerSwitch: number;
  /** switch rate per CPU second lost to a do-nothing tp_btf program, (1 − empty/off) × 100 per round: what any program on this hook costs */
  floorPct?: ReturnType<typeof summary> & { values: number[] };
  /** switch rate per CPU second lost to the iter flavour in the same rounds, (1 − iter/off) × 100, with its CI and verdict against the same goal */
  iter?: {
    pct: ReturnType<typeof summary> & { values: number[] };
    ci: ReturnType<typeof bootstrapRatioCI>;
    verdict: 'pass' | 'fail' | 'inconclusive';
    /** what it costs instead: the lab process's CPU per walk over every thread (µs), and the threads walked */
    walkCpuUs: ReturnType<typeof summary>;
    threads: ReturnType<typeof summary>;
  };
  /** why the iter flavour's window could not be measured (it did not load here) */
  iterUnsupported?: string;
}

interface PairSample {
  /** context switches of both tasks (voluntary: blocked on the pipe; involuntary: preempted by the partner it woke) */
  sw: number;
  /** on-CPU ns of both tasks (schedstat) */
  runNs: number;
  t: bigint;
}

function readPair(pids: number[]): PairSample {
  let sw = 0;
  let runNs = 0;
  for (const pid of pids) {
    const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    sw += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(st)![1]) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(st)![1]);
    runNs += Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  }
  return { sw, runNs, t: process.hrtime.bigint() };
}

/** the CPUs this process may run on, and a way back */
async function keepOffCpu(cpu: number, online: number[]): Promise<() => Promise<void>> {
  const others = online.filter((c) => c !== cpu);
  if (!others.length) return async () => {};
  const was = (await execa('taskset', ['-p', '-c', String(process.pid)])).stdout.split(':').at(-1)!.trim();
  await execa('taskset', ['-a', '-p', '-c', others.join(','), String(process.pid)]);
  return async () => {
    await execa('taskset', ['-a', '-p', '-c', was, String(process.pid)], { reject: false });
  };
}

/**
 * start `perf bench sched pipe` pinned to `cpu` with no end; resolves with its two ping-pong pids
 * (perf and the child it forks, both named sched-pipe). No pipes to it: the forked child would hold
 * them open past its parent, and the lab would wait on them.
 */
async function startPingPong(cpu: number): Promise<{ proc: ResultPromise; pids: number[] }> {
  const proc = execa('taskset', ['-c', String(cpu), 'perf', 'bench', 'sched', 'pipe', '-l', '2000000000'], { reject: false, stdio: 'ignore' });
  proc.catch(() => {});
  const parent = proc.pid!;
  for (let i = 0; i < 500; i++) {
    await sleep(10);
    let kids = '';
    try {
      kids = fs.readFileSync(`/proc/${parent}/task/${parent}/children`, 'utf8').trim();
    } catch {
      break; // gone
    }
    if (kids) return { proc, pids: [parent, Number(kids.split(' ')[0])] };
  }
  proc.kill('SIGKILL');
  const r = await proc;
  throw new Error(`taskset -c ${cpu} perf bench sched pipe did not fork its ping-pong partner within 5 s (exit ${r.exitCode ?? r.signal ?? 'none'}; try it by hand)`);
}

export async function pingPong(opts: { rounds: number; windowMs: number; cpu: number; goalPct: number; hook?: 'auto' | 'tp_btf' | 'tracepoint' | 'iter'; perThread?: 'auto' | 'task_storage' | 'hash'; floor?: boolean; alsoIter?: boolean; signal?: AbortSignal; onRound?: (i: number) => void }): Promise<PingPongResult> {
  const { cpu, windowMs } = opts;
  const c = await EnergyCollector.open({ power: 'model', counters: 'off', hook: opts.hook, perThread: opts.perThread });
  const iter = c.hook.name === 'iter';
  const rounds: PingPongRound[] = [];
  let stats: { close(): void } | null = null;
  let bpfRuns = 0;
  let bpfNs = 0;
  let restore: (() => Promise<void>) | null = null;
  let pp: Awaited<ReturnType<typeof startPingPong>> | null = null;
  let empty: Awaited<ReturnType<typeof EnergyCollector.emptyHook>> | null = null;
  let other: EnergyCollector | null = null;
  let iterUnsupported: string | undefined;
  // the iter flavour's walks in its windows: CPU time (the lab's process, off the pinned CPU) and threads walked
  const walks: { cpuUs: number; threads: number }[] = [];
  try {
    if (opts.floor) empty = await EnergyCollector.emptyHook();
    // the iter flavour beside a sched_switch flavour: a fourth window per round, like for like
    if (opts.alsoIter && !iter) {
      try {
        other = await EnergyCollector.open({ power: 'model', counters: 'off', hook: 'iter' });
        other.setSwitchHook(false);
      } catch (e) {
        iterUnsupported = (e as Error).message.split('\n')[0]!;
      }
    }
    c.setSwitchHook(false);
    restore = await keepOffCpu(cpu, c.onlineCpus);
    pp = await startPingPong(cpu);
    const pids = pp.pids;
    await sleep(200); // warm-up
    const measure = async (cfg: 'on' | 'off' | 'empty' | 'iter') => {
      const on = cfg === 'on';
      empty?.set(false);
      other?.setSwitchHook(false);
      c.setSwitchHook(on);
      empty?.set(cfg === 'empty');
      other?.setSwitchHook(cfg === 'iter');
      await sleep(5); // the attach/detach's own work settles
      const seen0 = Number(c.cpuTotals()[cpu]?.switches ?? 0n);
      const a = readPair(pids);
      // the iter flavour's work is its walk over every thread (from the lab's process, off the
      // pinned CPU): one per on-window, ten times as often as a 1 s sampling interval would
      if (on && iter) c.onCpuNow();
      if (cfg === 'iter') {
        const u = process.cpuUsage();
        other!.onCpuNow();
        const d = process.cpuUsage(u);
        walks.push({ cpuUs: d.user + d.system, threads: other!.iterThreads() });
      }
      await sleep(windowMs);
      const b = readPair(pids);
      const seen = Number(c.cpuTotals()[cpu]?.switches ?? 0n) - seen0;
      const sw = b.sw - a.sw;
      if (sw <= 0) throw new Error(`the ping-pong pair (pids ${pids.join(', ')}) made no context switches in ${windowMs} ms`);
      return { wall: sw / (Number(b.t - a.t) / 1e9), cpu: sw / ((b.runNs - a.runNs) / 1e9), seenPerSwitch: seen / sw };
    };
    for (let i = 0; i < opts.rounds && !opts.signal?.aborted; i++) {
      opts.onRound?.(i);
      const order: ('on' | 'off' | 'empty' | 'iter')[] = i % 2 ? ['on', 'off'] : ['off', 'on'];
      // the floor's window goes first, between or last in turn, so no configuration always follows another
      if (empty) order.splice(i % 3, 0, 'empty');
      if (other) order.splice((i >> 1) % (order.length + 1), 0, 'iter');
      const m: Partial<Record<'on' | 'off' | 'empty' | 'iter', Awaited<ReturnType<typeof measure>>>> = {};
      for (const cfg of order) m[cfg] = await measure(cfg);
      const off = m.off!;
      const on = m.on!;
      rounds.push({ off: off.wall, on: on.wall, offCpu: off.cpu, onCpu: on.cpu, ratio: on.cpu / off.cpu, wallRatio: on.wall / off.wall, order: order.indexOf('off') < order.indexOf('on') ? 'off→on' : 'on→off', seenPerSwitch: on.seenPerSwitch, ...(m.empty ? { emptyCpu: m.empty.cpu } : {}), ...(m.iter ? { iterCpu: m.iter.cpu } : {}) });
    }
    empty?.set(false);
    other?.setSwitchHook(false);
    c.setSwitchHook(false);
    // the program's own run time per switch, in one extra window after the rounds: the kernel's
    // run-time stats cost two clock reads per run, so they stay off while rates are compared
    try {
      stats = EnergyCollector.enableRunStats();
      c.setSwitchHook(true);
      const st0 = c.switchStats();
      await sleep(Math.max(windowMs, 200));
      const st1 = c.switchStats();
      bpfRuns = st1.runCnt - st0.runCnt;
      bpfNs = st1.runTimeNs - st0.runTimeNs;
    } catch {
      /* no run-time stats: the figure is still the switch rate */
    }
  } finally {
    stats?.close();
    empty?.close();
    other?.close();
    if (pp) {
      // the forked partner first: it is not execa's child
      for (const pid of pp.pids.slice(1)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      pp.proc.kill('SIGKILL');
      await pp.proc;
    }
    await restore?.();
    c.close();
  }
  const pct = rounds.map((r) => (1 - r.ratio) * 100);
  const wallPct = rounds.map((r) => (1 - r.wallRatio) * 100);
  const floorPct = rounds.filter((r) => r.emptyCpu !== undefined).map((r) => (1 - r.emptyCpu! / r.offCpu) * 100);
  const iterRounds = rounds.filter((r) => r.iterCpu !== undefined);
  const iterPct = iterRounds.map((r) => (1 - r.iterCpu! / r.offCpu) * 100);
  // time per switch is 1 / rate: the CI of the time ratio on/off, judged against 1 / (1 − goal)
  const ci = bootstrapRatioCI(rounds.map((r) => 1 / r.offCpu), rounds.map((r) => 1 / r.onCpu));
  const wallCi = bootstrapRatioCI(rounds.map((r) => 1 / r.off), rounds.map((r) => 1 / r.on));
  const limit = 1 / (1 - opts.goalPct / 100);
  const off = summary(rounds.map((r) => r.offCpu));
  return {
    cpu,
    windowMs,
    hook: c.hook.name,
    perThread: c.perThread.name,
    rounds,
    off,
    on: summary(rounds.map((r) => r.onCpu)),
    overheadPct: { ...summary(pct), values: pct },
    wallOverheadPct: { ...summary(wallPct), values: wallPct },
    ci,
    wallCi,
    verdict: verdict(ci, limit),
    bpfNsPerSwitch: bpfRuns > 0 && bpfNs > 0 ? bpfNs / bpfRuns : null,
    offNsPerSwitch: off.median > 0 ? 1e9 / off.median : 0,
    ...(opts.floor ? { floorPct: { ...summary(floorPct), values: floorPct } } : {}),
    ...(iterRounds.length ? (() => {
      const ici = bootstrapRatioCI(iterRounds.map((r) => 1 / r.offCpu), iterRounds.map((r) => 1 / r.iterCpu!));
      return { iter: { pct: { ...summary(iterPct), values: iterPct }, ci: ici, verdict: verdict(ici, limit), walkCpuUs: summary(walks.map((x) => x.cpuUs)), threads: summary(walks.map((x) => x.threads)) } };
    })() : {}),
    ...(iterUnsupported ? { iterUnsupported } : {}),
  };
}
