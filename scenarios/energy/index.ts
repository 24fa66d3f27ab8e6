// energy: per-process and per-cgroup energy from sched_switch accounting (bpf/energy.bpf.c +
// controller/energy), validated against the kernel's own CPU accounting.
//   Three workloads in their own cgroups: a busy loop capped at 25% of a CPU, one at 50%, and an
//   I/O-bound loop. Over one measurement window (the workloads are SIGSTOPped at both ends so every
//   nanosecond is accounted by BPF and by the kernel alike; a stop also moves the stints a thread
//   holds pending in task storage into the task map):
//   - per-cgroup on-CPU time from BPF vs cpu.stat usage_usec (≤ 2%), per process vs /proc/<pid>/stat (≤ 2%);
//   - attributed energy + idle sums to the node's total (≤ 1%): the per-task LRU map kept all busy time;
//   - the 50% / 25% energy ratio matches their CPU ratio (≤ 5%);
//   - bench mode: the sched_switch hook's cost on the context-switch rate: one pipe ping-pong (perf
//     bench sched pipe) pinned to one CPU, the hook attached and detached under it in adjacent
//     windows (--repeat rounds of --window ms each); goal ≤ 3% of the switch rate per CPU second
//     (the wall-clock rate is reported beside it). See pingpong.ts. With `--hook iter` nothing runs
//     at sched_switch (the kernel's per-thread runtime is read by a task iterator at each sample):
//     the same checks, and the bench measures that flavour instead, under its own headline names.
//   Report: energy over time per workload, stacked.
import fs from 'node:fs';
import type { Scenario, ScenarioContext } from '../../lab/scenario.ts';
import { scaledTimeout } from '../../lab/scenario.ts';
import { EnergyCollector, parseCpuList, type Interval } from '../../controller/energy/collector.ts';
import { cgroupId } from '../../common/cgroup.ts';
import { cgroupUsageUs, procCpuSeconds, procSchedNs, tickSeconds, ioTarget, setupCgroups, signalAll, startWorkload, waitStarted, type Workload } from './workloads.ts';
import { pingPong } from './pingpong.ts';
import { LabError } from '../../common/errors.ts';
import { median } from '../../lab/stats.ts';

const sleep = (ms: number, signal?: AbortSignal) => new Promise<void>((r) => {
  const done = () => (clearTimeout(t), signal?.removeEventListener('abort', done), r());
  const t = setTimeout(done, ms);
  signal?.addEventListener('abort', done, { once: true });
});
const pct = (a: number, b: number) => (b === 0 ? (a === 0 ? 0 : Infinity) : (Math.abs(a - b) / b) * 100);
const f = (x: number, d = 2) => x.toFixed(d);

interface Snap {
  usageUs: Record<string, number>;
  procS: Record<string, number>;
  schedNs: Record<string, number | null>;
  bpfCgNs: Map<bigint, number>;
  bpfPidNs: Map<number, number>;
  /** per tgid: how far its stints exceeded their ktime intervals, and the same stints as sum − prev_sum */
  bpfPidDiag: Map<number, { overWallNs: number; byPrevNs: number }>;
  cpus: Record<string, number>;
}

// per-CPU counters of bpf/energy.bpf.c summed over CPUs, for the accounting diagnostics
const CPU_COUNTERS = ['busy_ns', 'flushed_ns', 'busy_wall_ns', 'idle_ns', 'unattributed_ns', 'switches', 'flushes', 'remote_flushes', 'storage_misses', 'ktime_fallbacks', 'first_stints', 'resyncs', 'resync_lost_ns', 'resync_over_ns', 'over_wall', 'over_wall_ns', 'over_wall_max_ns'] as const;

function snapshot(c: EnergyCollector, ws: Workload[]): Snap {
  const now = c.onCpuNow();
  const bpfCgNs = new Map<bigint, number>();
  const bpfPidNs = new Map<number, number>();
  const bpfPidDiag = new Map<number, { overWallNs: number; byPrevNs: number }>();
  for (const v of now.values()) {
    bpfCgNs.set(v.cgroupId, (bpfCgNs.get(v.cgroupId) ?? 0) + v.ns);
    bpfPidNs.set(v.tgid, (bpfPidNs.get(v.tgid) ?? 0) + v.ns);
    const dg = bpfPidDiag.get(v.tgid) ?? { overWallNs: 0, byPrevNs: 0 };
    dg.overWallNs += v.overWallNs;
    dg.byPrevNs += v.byPrevNs;
    bpfPidDiag.set(v.tgid, dg);
  }
  const totals = c.cpuTotals();
  // counters add up over CPUs; the largest excess is a maximum (since the collector opened)
  const cpus = Object.fromEntries(CPU_COUNTERS.map((k) => [k, k === 'over_wall_max_ns' ? Math.max(0, ...totals.map((x) => Number(x[k]))) : totals.reduce((s, x) => s + Number(x[k]), 0)]));
  return {
    usageUs: Object.fromEntries(ws.map((w) => [w.name, cgroupUsageUs(w.dir)])),
    procS: Object.fromEntries(ws.map((w) => [w.name, procCpuSeconds(w.pid)])),
    schedNs: Object.fromEntries(ws.map((w) => [w.name, procSchedNs(w.pid)])),
    bpfCgNs,
    bpfPidNs,
    bpfPidDiag,
    cpus,
  };
}

/** stop the workloads and let them be switched out, so BPF and the kernel have accounted everything */
async function quiesce(ws: Workload[]): Promise<void> {
  signalAll(ws, 'SIGSTOP');
  await sleep(scaledTimeout(150));
}

const scenario: Scenario = {
  name: 'energy',
  description: 'energy per process and cgroup from sched_switch (RAPL or a labelled model), checked against cpu.stat and /proc/<pid>/stat; sched_switch hook overhead',
  tools: ['energy'],
  options: {
    duration: { type: 'int', min: 3, max: 600, default: 12, valueName: 'S', description: 'measurement window (s)' },
    interval: { type: 'int', min: 200, max: 10_000, default: 1000, valueName: 'MS', description: 'sampling interval of the energy-over-time chart' },
    power: { type: 'string', choices: ['auto', 'model'], default: 'auto', description: 'auto: RAPL when a meter advances, else the model' },
    tdp: { type: 'number', min: 0.1, max: 5000, default: 65, valueName: 'W', description: 'model: package power at full load' },
    idle: { type: 'number', min: 0, max: 5000, default: 10, valueName: 'W', description: 'model: package power when idle' },
    repeat: { only: 'bench', type: 'int', min: 2, max: 2000, default: 150, valueName: 'N', description: 'bench: interleaved hook off/on rounds (order alternating)' },
    rounds: { only: 'bench', type: 'int', min: 2, max: 500, hidden: true, valueName: 'N', description: 'old name of --repeat' },
    window: { only: 'bench', type: 'int', min: 20, max: 10_000, default: 100, valueName: 'MS', description: 'bench: length of each hook-on and hook-off window under the running ping-pong' },
    'pin-cpu': { only: 'bench', type: 'int', min: -1, default: -1, valueName: 'CPU', description: 'bench: the CPU both ping-pong tasks are pinned to (-1: the highest online CPU)' },
    hook: { type: 'string', choices: ['auto', 'tp_btf', 'tracepoint', 'iter'], default: 'auto', description: 'accounting: a sched_switch flavour (auto: tp_btf, else the tracepoint), or iter: nothing on sched_switch, every thread\'s runtime read through a task iterator at each sample (no per-CPU split, no counters)' },
    'per-thread': { type: 'string', choices: ['auto', 'task_storage', 'hash'], default: 'auto', description: 'tp_btf per-thread state: task storage (batched) or the thread hash; auto: task storage where it loads' },
    'overhead-goal': { only: 'bench', type: 'number', min: 0, max: 99, default: 3, valueName: 'PCT', description: 'goal for the context-switch rate the hook may cost' },
  },
  validate: (o, where) => {
    if ((o.idle as number) > (o.tdp as number)) return { message: `--idle ${o.idle} exceeds --tdp ${o.tdp}`, fix: 'the model\'s idle power is at most its full-load power: lower --idle or raise --tdp' };
    // a guest's CPUs are known once it runs (checked first thing there)
    const cpu = o['pin-cpu'] as number;
    if (where.mode === 'bench' && where.onThisMachine && cpu >= 0) {
      const online = parseCpuList(fs.readFileSync('/sys/devices/system/cpu/online', 'utf8'));
      if (!online.includes(cpu)) return { message: `--pin-cpu ${cpu} is not an online CPU here (online: ${online.join(',')})`, fix: `pass one of ${online.join(', ')} or -1` };
    }
    return undefined;
  },
  async run(ctx) {
    if (process.getuid?.() !== 0) {
      ctx.unsupported('energy scenario', 'root', 'loading BPF programs and creating cgroups needs root');
      return;
    }
    const o = ctx.options as { duration: number; interval: number; power: 'auto' | 'model'; tdp: number; idle: number; repeat: number; rounds?: number; window: number; hook: 'auto' | 'tp_btf' | 'tracepoint' | 'iter'; 'per-thread': 'auto' | 'task_storage' | 'hash'; 'pin-cpu': number; 'overhead-goal': number };
    const kernel = ctx.kernel.release;
    // where the run is (a guest has its own CPUs), before anything is set up: the bench's CPU
    const online = parseCpuList(fs.readFileSync('/sys/devices/system/cpu/online', 'utf8'));
    if (ctx.mode === 'bench' && o['pin-cpu'] >= 0 && !online.includes(o['pin-cpu'])) throw new LabError(`--pin-cpu ${o['pin-cpu']} is not an online CPU on ${kernel} (online: ${online.join(',')})`, `pass one of ${online.join(', ')} or -1`);

    ctx.progress.step('loading bpf/energy.bpf.o and finding a power source');
    const c = await EnergyCollector.open({ power: o.power, hook: o.hook, perThread: o['per-thread'], model: { tdpWatts: o.tdp, idleWatts: o.idle }, log: (s) => ctx.progress.info(s) });
    ctx.defer('close the energy collector', () => c.close());
    const features = {
      'sched_switch hook': c.hook.detail,
      'per-thread state': c.perThread.detail,
      'on-CPU clock': c.clock.detail,
      'power source': `${c.power.source}${c.power.source === 'model' ? ' (estimate)' : ''}: ${c.power.detail}`,
      'why not RAPL': c.power.evidence.join('; ') || '—',
      'hardware counters': c.counters.detail,
      'cpu_frequency': c.frequency.detail,
      'cpu_idle': c.idleTracepoint.detail,
      'running thread between switches': c.tick.detail,
      'task map': c.hook.name === 'iter' ? `none: the kernel's per-thread runtime, read by the task iterator; freed threads' last values in an LRU hash of ${c.capacity}` : `LRU per-CPU hash, ${c.capacity} entries`,
    };
    const iter = c.hook.name === 'iter';
    const hookKv = (runs: number, ns: number | null): Record<string, string | number> => (iter ? { 'sched_switch runs in the window': 'none: the iter flavour has no sched_switch program' } : { 'sched_switch runs in the window': runs, 'BPF run time per sched_switch (kernel.bpf_stats)': ns == null ? 'n/a' : `${f(ns, 0)} ns` });
    ctx.metric('features', { hook: c.hook, perThread: c.perThread, counters: c.counters, frequency: c.frequency, idle: c.idleTracepoint, tick: c.tick, power: c.power, model: c.model });
    if (!c.counters.ok) ctx.unsupported('hardware counters (cycles, instructions)', 'perf_event PERF_TYPE_HARDWARE', c.counters.detail);
    if (c.power.source === 'model') ctx.unsupported('RAPL energy meter', 'powercap intel-rapl / perf power energy-*', `${c.power.evidence.join('; ')} — energy is the model's estimate`);
    if (!c.frequency.ok) ctx.unsupported('power:cpu_frequency tracepoint', 'tracepoint power/cpu_frequency', c.frequency.detail);
    if (!c.idleTracepoint.ok && !iter) ctx.unsupported('power:cpu_idle tracepoint', 'tracepoint power/cpu_idle', c.idleTracepoint.detail);

    // the /proc/<pid>/stat tick (getconf CLK_TCK: a child process), asked before the workloads load the guest
    const tick = tickSeconds();
    ctx.progress.step('creating cgroups busy25, busy50, io and starting the workloads');
    const io = ioTarget(ctx.defer, ctx.outDir, (m) => ctx.progress.info(m));
    const cg = setupCgroups(ctx.defer);
    ctx.metric('ioWorkload', io);
    ctx.progress.info(`io workload: ${io.detail}`);
    if (cg.caps.how !== 'cgroup2 cpu.max') ctx.unsupported('cgroup2 cpu.max', 'cgroup v2 cpu controller', `${cg.caps.evidence}${cg.caps.how ? `; the caps are set through ${cg.caps.how} instead (same CFS bandwidth control)` : '; no cpu controller anywhere: the workloads run uncapped'}`);
    const ws: Workload[] = [
      startWorkload(ctx.defer, 'busy25', cg.dirs.busy25, cg.v1.busy25, 25, io),
      startWorkload(ctx.defer, 'busy50', cg.dirs.busy50, cg.v1.busy50, 50, io),
      startWorkload(ctx.defer, 'io', cg.dirs.io, undefined, null, io),
    ];
    const ids = Object.fromEntries(ws.map((w) => [w.name, cgroupId(w.dir)])) as Record<Workload['name'], bigint>;
    // every workload has joined its cgroup and exec'd its load: polled, bounded, a failed check
    // (not a hang) when one does not get there
    const startMs = scaledTimeout(5000);
    const notStarted = await waitStarted(ws, startMs, ctx.signal);
    if (ctx.signal.aborted) return;
    if (notStarted) {
      ctx.check(`the three workloads joined their cgroups and started within ${startMs / 1000} s`, false, notStarted);
      return;
    }

    // ------------------------------------------------------------ measurement window
    // the kernel's own accounting of the hook (run time per invocation) during the window: passive,
    // beside the workloads, not a benchmark (bench mode measures the cost on context switches)
    let stats: { close(): void } | null = null;
    try {
      stats = EnergyCollector.enableRunStats();
      ctx.defer('disable BPF run-time stats', () => stats?.close());
    } catch (e) {
      ctx.progress.info(`BPF stats: ${(e as Error).message.split('\n')[0]}`);
    }
    const st0 = c.switchStats();
    await quiesce(ws);
    const s0 = snapshot(c, ws);
    c.sample(); // the energy intervals start here too
    const t0 = Date.now();
    signalAll(ws, 'SIGCONT');
    const series: { t: number; iv: Interval }[] = [];
    const durMs = o.duration * 1000;
    ctx.progress.step(`measuring for ${o.duration} s`);
    while (Date.now() - t0 < durMs - o.interval / 2 && !ctx.signal.aborted) {
      await sleep(Math.min(o.interval, durMs - (Date.now() - t0)), ctx.signal);
      series.push({ t: (Date.now() - t0) / 1000, iv: c.sample() });
      ctx.progress.update(Math.min(1, (Date.now() - t0) / durMs));
    }
    await quiesce(ws);
    series.push({ t: (Date.now() - t0) / 1000, iv: c.sample() });
    const s1 = snapshot(c, ws);
    signalAll(ws, 'SIGCONT');
    const st1 = c.switchStats();
    stats?.close();
    const hookRuns = st1.runCnt - st0.runCnt;
    const hookNs = hookRuns > 0 ? (st1.runTimeNs - st0.runTimeNs) / hookRuns : null;
    if (ctx.signal.aborted) return;

    // ------------------------------------------------------------ CPU: BPF vs the kernel
    const cpuRows = ws.map((w) => {
      const bpf = ((s1.bpfCgNs.get(ids[w.name]) ?? 0) - (s0.bpfCgNs.get(ids[w.name]) ?? 0)) / 1e9;
      const kern = (s1.usageUs[w.name]! - s0.usageUs[w.name]!) / 1e6;
      return { w, bpf, kern, err: pct(bpf, kern) };
    });
    for (const r of cpuRows) ctx.check(`cgroup ${r.w.name}: BPF on-CPU time within 2% of cpu.stat usage_usec`, r.err <= 2, `BPF ${f(r.bpf, 4)} s vs cpu.stat ${f(r.kern, 4)} s (${f(r.err)}%)`);
    const procRows = ws.map((w) => {
      const bpf = ((s1.bpfPidNs.get(w.pid) ?? 0) - (s0.bpfPidNs.get(w.pid) ?? 0)) / 1e9;
      const stat = s1.procS[w.name]! - s0.procS[w.name]!;
      const a = s0.schedNs[w.name];
      const b = s1.schedNs[w.name];
      const sched = a != null && b != null ? (b - a) / 1e9 : null;
      return { w, bpf, stat, sched, err: pct(bpf, stat) };
    });
    // /proc/<pid>/stat counts clock ticks, utime and stime each truncated: a difference of two
    // readings is exact to two ticks, so a light workload (a few hundred ms) is judged at that
    // resolution when 2% is finer than it
    for (const r of procRows) {
      const tol = Math.max(0.02 * r.stat, 2 * tick);
      ctx.check(`process ${r.w.name} (pid ${r.w.pid}): BPF on-CPU time within 2% of /proc/<pid>/stat utime+stime`, Math.abs(r.bpf - r.stat) <= tol, `BPF ${f(r.bpf, 4)} s vs /proc stat ${f(r.stat, 2)} s (${f(r.err)}%; tolerance ${f(tol * 1000, 1)} ms = max(2%, 2 ticks of ${f(tick * 1000, 0)} ms))${r.sched != null ? `; schedstat ${f(r.sched, 4)} s` : ''}`);
    }
    ctx.section(
      'CPU time: BPF vs the kernel\'s accounting',
      { kind: 'kv', items: { ...features, 'io workload': io.detail, ...hookKv(hookRuns, hookNs) } },
      { kind: 'table', caption: `measurement window ${f(o.duration, 0)} s; workloads SIGSTOPped at both ends; caps via ${cg.caps.how ?? 'none'}`, columns: ['workload', 'cap', 'BPF on-CPU (s)', 'cpu.stat usage (s)', 'diff %', 'process: /proc stat (s)', 'schedstat (s)', 'diff %'], rows: cpuRows.map((r) => {
        const p = procRows.find((x) => x.w === r.w);
        return [r.w.name, r.w.capPct == null ? '—' : `${r.w.capPct}%`, f(r.bpf, 4), f(r.kern, 4), f(r.err), p ? f(p.stat, 2) : '—', p?.sched != null ? f(p.sched, 4) : '—', p ? f(p.err) : '—'];
      }) },
    );

    // ------------------------------------------------------------ energy
    const perCg = (iv: Interval, id: bigint) => iv.workloads.filter((x) => x.cgroupId === id).reduce((s, x) => s + x.joules, 0);
    const J = (id: bigint) => series.reduce((s, p) => s + perCg(p.iv, id), 0);
    const nodeJ = series.reduce((s, p) => s + p.iv.nodeJ, 0);
    const idleJ = series.reduce((s, p) => s + p.iv.idleJ, 0);
    const attributedJ = series.reduce((s, p) => s + p.iv.workloads.reduce((a, x) => a + x.joules, 0), 0);
    const unattributedJ = nodeJ - idleJ - attributedJ;
    const sumErr = pct(attributedJ + idleJ, nodeJ);
    const est = c.power.source === 'model' ? ' (estimate)' : '';
    const skewJ = series.reduce((s, p) => s + p.iv.unattributedJIfReadAfter, 0);
    ctx.check('attributed energy + idle sums to the node total within 1%', sumErr <= 1, `${f(attributedJ, 1)} J attributed + ${f(idleJ, 1)} J idle = ${f(attributedJ + idleJ, 1)} J vs node ${f(nodeJ, 1)} J${est} (${f(sumErr, 3)}%; ${iter ? `${c.evictions()} threads lost` : `${c.evictions()} LRU evictions`}; per-CPU busy totals taken at the instant of the task read; with the totals as read after it ${f(skewJ, 2)} J would look unattributed)`);
    // how the time was charged: per-CPU counters over the window, stints over their ktime interval, read skew
    ctx.metric('accounting', {
      clocksource: (() => {
        try {
          return fs.readFileSync('/sys/devices/system/clocksource/clocksource0/current_clocksource', 'utf8').trim();
        } catch {
          return null;
        }
      })(),
      cpuCountersInWindow: Object.fromEntries(CPU_COUNTERS.map((k) => [k, k === 'over_wall_max_ns' ? s1.cpus[k]! : s1.cpus[k]! - s0.cpus[k]!])),
      workloads: Object.fromEntries(ws.map((w) => [w.name, { overWallNs: (s1.bpfPidDiag.get(w.pid)?.overWallNs ?? 0) - (s0.bpfPidDiag.get(w.pid)?.overWallNs ?? 0), byPrevNs: (s1.bpfPidDiag.get(w.pid)?.byPrevNs ?? 0) - (s0.bpfPidDiag.get(w.pid)?.byPrevNs ?? 0) }])),
      reads: series.map((p) => ({ walkMs: p.iv.read.walkMs, windowBusyNs: p.iv.read.windowBusyNs, unattributedJ: p.iv.unattributedJ, unattributedJIfReadAfter: p.iv.unattributedJIfReadAfter })),
    });
    const j25 = J(ids.busy25);
    const j50 = J(ids.busy50);
    const cpu25 = cpuRows.find((r) => r.w.name === 'busy25')!.kern;
    const cpu50 = cpuRows.find((r) => r.w.name === 'busy50')!.kern;
    const eRatio = j50 / j25;
    const cRatio = cpu50 / cpu25;
    const ratioErr = pct(eRatio, cRatio);
    ctx.check('busy50 / busy25 energy ratio within 5% of their CPU ratio', ratioErr <= 5, `energy ${f(j50, 2)} J / ${f(j25, 2)} J = ${f(eRatio, 3)}; CPU (cpu.stat) ${f(cpu50, 3)} s / ${f(cpu25, 3)} s = ${f(cRatio, 3)} (${f(ratioErr)}%)${c.power.source === 'model' ? '; with the model as the source, energy follows CPU time by construction: this checks the split per CPU and interval, not a meter' : ''}`);
    ctx.metric('energy', { source: c.power.source, estimate: c.power.source === 'model', nodeJ, idleJ, attributedJ, unattributedJ, perWorkloadJ: { busy25: j25, busy50: j50, io: J(ids.io) }, cpuS: Object.fromEntries(cpuRows.map((r) => [r.w.name, { bpf: r.bpf, cpuStat: r.kern }])), procS: Object.fromEntries(procRows.map((r) => [r.w.name, { bpf: r.bpf, procStat: r.stat, schedstat: r.sched }])), evictions: c.evictions(), cpuIdleEvents: c.cpuTotals().reduce((s, x) => s + Number(x.idle_events), 0) });
    ctx.metric('series', series.map((p) => ({ t: p.t, dtNs: p.iv.dtNs, nodeJ: p.iv.nodeJ, idleJ: p.iv.idleJ, busy25: perCg(p.iv, ids.busy25), busy50: perCg(p.iv, ids.busy50), io: perCg(p.iv, ids.io) })));
    ctx.headline({ name: 'energy.sumError', label: `attributed + idle vs node energy (${c.power.source})`, unit: '%', better: 'lower', value: sumErr, goal: { op: '<=', target: 1, verdict: sumErr <= 1 ? 'met' : 'not met' } });
    ctx.headline({ name: 'energy.shareRatioError', label: 'busy50/busy25 energy ratio vs CPU ratio', unit: '%', better: 'lower', value: ratioErr, comparator: { name: 'cpu.stat ratio', unit: 'ratio', value: cRatio, ratio: eRatio / cRatio, likeForLike: true }, goal: { op: '<=', target: 5, verdict: ratioErr <= 5 ? 'met' : 'not met' } });
    ctx.headline({ name: 'cpu.maxCgroupError', label: 'worst per-cgroup BPF CPU time vs cpu.stat', unit: '%', better: 'lower', value: Math.max(...cpuRows.map((r) => r.err)), goal: { op: '<=', target: 2, verdict: cpuRows.every((r) => r.err <= 2) ? 'met' : 'not met' } });

    const other = (iv: Interval) => iv.workloads.filter((x) => !Object.values(ids).includes(x.cgroupId)).reduce((s, x) => s + x.joules, 0);
    const watts = (j: number, iv: Interval) => (iv.dtNs > 0 ? j / (iv.dtNs / 1e9) : 0);
    ctx.section(
      `Energy per workload${est}`,
      { kind: 'text', text: `Source: ${c.power.source}${est} — ${c.power.detail}. Rule: each CPU's energy above idle is split by on-CPU time${c.counters.ok ? ' (cycles)' : ''} over each ${o.interval} ms interval; idle power is its own band, not spread over workloads. "rest of node" is every other process on this machine (the lab itself, other users).` },
      { kind: 'chart', title: `Power per workload, stacked (W${est})`, type: 'bar', stacked: true, labels: series.map((p) => Number(p.t.toFixed(1))), xLabel: 'time (s)', yLabel: `W${est}`, datasets: [
        { label: 'busy25 (25% cap)', data: series.map((p) => watts(perCg(p.iv, ids.busy25), p.iv)) },
        { label: 'busy50 (50% cap)', data: series.map((p) => watts(perCg(p.iv, ids.busy50), p.iv)) },
        { label: 'io', data: series.map((p) => watts(perCg(p.iv, ids.io), p.iv)) },
        { label: 'rest of node', data: series.map((p) => watts(other(p.iv), p.iv)) },
        { label: 'idle', data: series.map((p) => watts(p.iv.idleJ, p.iv)) },
      ] },
      { kind: 'table', caption: `over the window, source ${c.power.source}${est}`, columns: ['workload', 'joules', 'share of node %', 'CPU s (cpu.stat)'], rows: [
        ['busy25', f(j25), f((j25 / nodeJ) * 100), f(cpu25, 3)],
        ['busy50', f(j50), f((j50 / nodeJ) * 100), f(cpu50, 3)],
        ['io', f(J(ids.io)), f((J(ids.io) / nodeJ) * 100), f(cpuRows.find((r) => r.w.name === 'io')!.kern, 3)],
        ['rest of node', f(attributedJ - j25 - j50 - J(ids.io)), f(((attributedJ - j25 - j50 - J(ids.io)) / nodeJ) * 100), '—'],
        ['idle', f(idleJ), f((idleJ / nodeJ) * 100), '—'],
        ['unattributed', f(unattributedJ, 4), f((unattributedJ / nodeJ) * 100, 4), '—'],
        ['node', f(nodeJ), '100', '—'],
      ] },
    );
    const idleEvents = c.cpuTotals().reduce((s, x) => s + Number(x.idle_events), 0);
    if (c.idleTracepoint.ok && idleEvents === 0) ctx.unsupported('power:cpu_idle events', 'tracepoint power/cpu_idle emitted', `attached, but the kernel emitted no cpu_idle event in ${o.duration} s (idle loop without cpuidle states, e.g. a VM's halt-polling)`);
    const freqEvents = c.frequencyEvents();
    if (c.frequency.ok && freqEvents === 0) ctx.unsupported('power:cpu_frequency events', 'tracepoint power/cpu_frequency emitted', `attached, but no cpu_frequency event in ${o.duration} s; ${c.frequency.detail}`);
    ctx.metric('tracepoints', { cpuIdleEvents: idleEvents, cpuFrequencyEvents: freqEvents });
    ctx.metric('hook', { runs: hookRuns, bpfNsPerRun: hookNs });

    // ------------------------------------------------------------ overhead (bench mode)
    // stop the workloads and the collector: the microbenchmark compares hook on / off alone
    for (const w of ws) {
      try {
        process.kill(-w.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    c.close();
    if (ctx.mode !== 'bench') {
      ctx.section('Cost of the sched_switch hook', { kind: 'text', text: 'Measured in bench mode only (a benchmark: `pnpm lab bench energy`, run under the lab\'s heavy-run lock): perf bench sched pipe pinned to one CPU, hook on/off interleaved.' });
    } else {
      const rounds = o.rounds ?? o.repeat;
      const windowMs = o.window;
      const cpu = o['pin-cpu'] >= 0 ? o['pin-cpu'] : Math.max(...online);
      ctx.progress.step(`context-switch rate: perf bench sched pipe pinned to CPU ${cpu}, hook off/on, ${rounds} rounds of 2 × ${windowMs} ms`);
      // a third window per round with a do-nothing tp_btf program alone: the floor any program on this hook pays
      const pp = await pingPong({ rounds, windowMs, cpu, hook: o.hook, perThread: o['per-thread'], goalPct: o['overhead-goal'], floor: c.hook.name === 'tp_btf', alsoIter: !iter, signal: ctx.signal, onRound: (i) => ctx.progress.update(i / rounds, `round ${i + 1}/${rounds}`) });
      ctx.metric('pingpong', pp);
      const ovh = pp.overheadPct.median;
      // the comparators' on/off ratios are these per-round figures' medians (1 − lost/100), as the values are
      // the CI is of the time per switch (on/off); as rate lost: 1 − 1/ratio
      const lost = (r: number) => (1 - 1 / r) * 100;
      const hookName = iter ? 'iter: no sched_switch program, sched_process_free attached and one task walk per window' : `${pp.hook}${pp.perThread === 'task_storage' ? ' + task storage' : ''}`;
      // the iter flavour's figures are trended apart: another mechanism, not a change of the hook's cost
      const what = iter ? 'the iter flavour' : 'the sched_switch hook';
      const hname = (n: string) => (iter ? `iter.${n}` : `sched_switch.${n}`);
      ctx.headline({
        name: hname('overhead'), label: `context-switch rate per CPU second lost to ${what} (${hookName}; pipe ping-pong pinned to CPU ${cpu})`, unit: '%', better: 'lower', value: ovh,
        rounds: pp.overheadPct.values, spread: { n: pp.overheadPct.n, min: pp.overheadPct.min, max: pp.overheadPct.max, mad: pp.overheadPct.mad },
        comparator: { name: 'hook off', unit: 'switches/s', value: pp.off.median, ratio: 1 - ovh / 100, ci: [1 / pp.ci.upper, 1 / pp.ci.lower], likeForLike: true, note: `same ping-pong process, same CPU, hook detached vs attached (program loaded once) in adjacent ${pp.windowMs} ms windows, order alternating; switches per second of the pair's CPU time (schedstat)` },
        goal: { op: '<=', target: o['overhead-goal'], verdict: pp.verdict === 'pass' ? 'met' : pp.verdict === 'fail' ? 'not met' : 'inconclusive', detail: `95% CI of the rate lost ${f(lost(pp.ci.lower))}–${f(lost(pp.ci.upper))}%` },
        regressionFloor: 0.02,
      });
      ctx.headline({
        name: hname('overheadWall'), label: `context-switch rate per wall second lost to ${what} (${hookName}; includes what else ran on CPU ${cpu})`, unit: '%', better: 'lower', value: pp.wallOverheadPct.median,
        rounds: pp.wallOverheadPct.values, spread: { n: pp.wallOverheadPct.n, min: pp.wallOverheadPct.min, max: pp.wallOverheadPct.max, mad: pp.wallOverheadPct.mad },
        comparator: { name: 'hook off', unit: 'switches/s', value: median(pp.rounds.map((r) => r.off)), ratio: 1 - pp.wallOverheadPct.median / 100, ci: [1 / pp.wallCi.upper, 1 / pp.wallCi.lower], likeForLike: true, note: 'the same windows by wall time' },
      });
      if (pp.floorPct) {
        ctx.headline({
          name: 'sched_switch.floor', label: `context-switch rate per CPU second lost to a do-nothing tp_btf program on sched_switch (the floor under ${hookName}; same windows)`, unit: '%', better: 'lower', value: pp.floorPct.median,
          rounds: pp.floorPct.values, spread: { n: pp.floorPct.n, min: pp.floorPct.min, max: pp.floorPct.max, mad: pp.floorPct.mad },
          comparator: { name: 'hook off', unit: 'switches/s', value: pp.off.median, ratio: 1 - pp.floorPct.median / 100, likeForLike: true, note: 'a third window per round (position rotating), the do-nothing program of the same object attached alone: dispatch, recursion guard and the call, no work' },
        });
      }
      if (pp.iterUnsupported) ctx.unsupported('iter flavour beside the hook', 'iter/task + tp_btf/sched_process_free in the host pid namespace', pp.iterUnsupported);
      if (pp.iter) {
        const it = pp.iter;
        ctx.headline({
          name: 'iter.overheadBeside', label: `context-switch rate per CPU second lost to the iter flavour (no sched_switch program; same windows as ${hookName})`, unit: '%', better: 'lower', value: it.pct.median,
          rounds: it.pct.values, spread: { n: it.pct.n, min: it.pct.min, max: it.pct.max, mad: it.pct.mad },
          comparator: { name: 'hook off', unit: 'switches/s', value: pp.off.median, ratio: 1 - it.pct.median / 100, ci: [1 / it.ci.upper, 1 / it.ci.lower], likeForLike: true, note: 'a window of its own per round (position rotating): a second collector of the iter flavour, its sched_process_free link attached and one walk over every thread (from the lab\'s process, off the pinned CPU) per window' },
          goal: { op: '<=', target: o['overhead-goal'], verdict: it.verdict === 'pass' ? 'met' : it.verdict === 'fail' ? 'not met' : 'inconclusive', detail: `95% CI of the rate lost ${f(lost(it.ci.lower))}–${f(lost(it.ci.upper))}%` },
        });
        // where its cost goes instead: the walk, in the collector's process, once per sample
        ctx.headline({
          name: 'iter.walkCpuPerThread', label: 'the iter flavour\'s walk: collector CPU per thread walked (task iterator, decode, account)', unit: 'µs', better: 'lower', value: it.walkCpuUs.median / Math.max(1, it.threads.median),
        });
      }
      const seen = pp.rounds.reduce((s, r) => s + r.seenPerSwitch, 0) / Math.max(1, pp.rounds.length);
      const overheadDetail = `per CPU second: median ${f(ovh)}% of the switch rate (MAD ${f(pp.overheadPct.mad)}, min ${f(pp.overheadPct.min)}, max ${f(pp.overheadPct.max)} over ${pp.rounds.length} rounds), 95% CI ${f(lost(pp.ci.lower))}–${f(lost(pp.ci.upper))}%; per wall second: median ${f(pp.wallOverheadPct.median)}% (MAD ${f(pp.wallOverheadPct.mad)}), CI ${f(lost(pp.wallCi.lower))}–${f(lost(pp.wallCi.upper))}%; off ${f(pp.off.median / 1000, 1)}k switches per CPU second (${f(pp.offNsPerSwitch, 0)} ns per switch), on ${f(pp.on.median / 1000, 1)}k; ${iter ? 'no BPF program runs at a switch' : `BPF ${pp.bpfNsPerSwitch == null ? 'n/a' : `${f(pp.bpfNsPerSwitch, 0)} ns`} per switch (kernel.bpf_stats, its own clock reads included)`}${iter ? '' : `; the program saw ${f(seen, 3)} switches on CPU ${cpu} per switch of the pair`}${pp.floorPct ? `; a do-nothing tp_btf program alone (same windows, same pair) costs ${f(pp.floorPct.median)}% (MAD ${f(pp.floorPct.mad)}): the hook's floor, the accounting's own share is the difference` : ''}${pp.iter ? `; the iter flavour (nothing on sched_switch) in the same rounds: ${f(pp.iter.pct.median)}% (MAD ${f(pp.iter.pct.mad)}, CI ${f(lost(pp.iter.ci.lower))}–${f(lost(pp.iter.ci.upper))}%); its cost goes into the walk instead, in the collector's process: median ${f(pp.iter.walkCpuUs.median / 1000, 2)} ms of CPU per walk over ${f(pp.iter.threads.median, 0)} threads (${pp.iter.walkCpuUs.n} walks), ${f(pp.iter.walkCpuUs.median / 1e4, 3)}% of a CPU at a 1 s interval; a thread's exit adds one map write (sched_process_free), not measured here` : ''}`;
      // inconclusive (the CI straddles the goal) is neither a pass nor a fail: the headline says so
      if (pp.verdict === 'inconclusive') ctx.progress.warn(`hook overhead inconclusive: ${overheadDetail}`);
      else ctx.check(`${what} costs ≤ ${o['overhead-goal']}% of the context-switch rate (bootstrap CI)`, pp.verdict === 'pass', `${pp.verdict}: ${overheadDetail}`);
      ctx.section(
        iter ? 'Cost of the iter flavour on context switches' : 'Cost of the sched_switch hook',
        { kind: 'text', text: `taskset -c ${cpu} perf bench sched pipe: two tasks on one CPU pass a byte through two pipes, two context switches per op and nothing else. One ping-pong runs throughout; ${pp.rounds.length} rounds of a hook-off and a hook-on window of ${pp.windowMs} ms each (order alternating), the program loaded once and its ${hookName} link attached or detached between windows. Rate = the pair's context switches (voluntary + involuntary) per second of the CPU time they got (schedstat; the hook runs inside it) — and per wall second, which also holds whatever else the shared machine ran on CPU ${cpu}. Goal ≤ ${o['overhead-goal']}% of the switch rate (95% bootstrap CI, per CPU second): ${pp.verdict}.` },
        { kind: 'kv', items: { overhead: overheadDetail } },
        { kind: 'chart', title: 'context switches per CPU second, per round', type: 'bar', labels: pp.rounds.map((_, i) => `${i + 1}`), xLabel: 'round', yLabel: 'switches/s', datasets: [{ label: 'hook off', data: pp.rounds.map((r) => r.offCpu) }, { label: `hook on (${hookName})`, data: pp.rounds.map((r) => r.onCpu) }, ...(pp.iter ? [{ label: 'iter flavour', data: pp.rounds.map((r) => r.iterCpu ?? 0) }] : [])] },
        { kind: 'chart', title: 'switch rate lost per round (%)', type: 'bar', labels: pp.rounds.map((_, i) => `${i + 1}`), xLabel: 'round', yLabel: '%', datasets: [{ label: '1 − on/off, per CPU second', data: pp.overheadPct.values }, { label: '1 − on/off, per wall second', data: pp.wallOverheadPct.values }] },
      );
    }
  },
};

export default scenario;
