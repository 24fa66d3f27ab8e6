// The energy collector against the real kernel: a process that burns a known amount of CPU, cgroup
// attribution against cpu.stat, the bounded task map (LRU evictions counted), no leaked objects.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bpfObjects, describeRoot } from '../../lab/testing.ts';
import { cgroup2Mount, EnergyCollector } from './collector.ts';
import { energyMetrics } from './metrics.ts';

const PY = '/usr/bin/python3';
// burn `secs` of this process's CPU time, then print what the kernel says it used (ns, precise:
// CLOCK_PROCESS_CPUTIME_ID is sum_exec_runtime, and the interpreter's start-up is in it too)
const BURN = (secs: number) => `import time\nwhile time.process_time() < ${secs}: pass\nprint(time.process_time_ns())`;
// run BURN in a child and print "<child pid> <child's CPU ns from wait4's rusage>": utime + stime is
// the child's sum_exec_runtime over its whole life (fork to exit), the same span BPF charges; the
// burner's own clock read before print misses its exec and interpreter teardown, which under load
// reached 3% of a 0.5 s burn
const REAPER = `import os, sys\npid = os.fork()\nif pid == 0: os.execv('${PY}', ['python3', '-c', sys.argv[1]])\nru = os.wait4(pid, 0)[2]\nprint(pid, round((ru.ru_utime + ru.ru_stime) * 1e9))`;
async function burnReaped(secs: number): Promise<{ pid: number; truthNs: number }> {
  const r = await execa(PY, ['-c', REAPER, BURN(secs)]);
  const [pid, ns] = r.stdout.trim().split('\n').at(-1)!.split(' ').map(Number); // the burner prints first
  return { pid: pid!, truthNs: ns! };
}

/** SIGSTOP, then until the kernel says the process is stopped (state T): its runtime is settled only then */
async function stopped(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  const state = () => { try { return /\) (\S)/.exec(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1]; } catch { return undefined; } };
  // a fixed 50-100 ms assumed a stop that a busy CPU had not scheduled yet
  for (const until = performance.now() + 10_000; state() !== 'T' && performance.now() < until; ) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 20)); // its final switch out: the stop's own
}

// A reaped process's last stint is charged at its final sched_switch, which the parent can beat:
// waitpid returns once the child is a zombie, while its CPU may still be running the exit path (or be
// preempted by the host). Wait for that switch (bounded) before either side of a comparison is read.
// The bound is generous (10 s, by the clock: timers stretch when the host stalls the VM) because a
// quiet machine lets a burner run its whole life in one stint, so until that final switch it has
// no entry at all; the wait costs nothing when the switch has come.
// The iter flavour learns a reaped process's last runtime at sched_process_free, an RCU grace period
// after the reap: there it is done once the process has an entry at all (no walk saw it run).
async function exited(c: EnergyCollector, pids: number[]): Promise<void> {
  const iter = c.hook.name === 'iter';
  const done = () => pids.every((pid) => [...c.onCpuNow().values()].some((v) => v.tgid === pid && (iter || v.exits > 0)));
  for (const until = performance.now() + 10_000; !done() && performance.now() < until; ) await new Promise((r) => setTimeout(r, 20));
}

/** a process's charged ns once it has stopped growing (500 ms unchanged, at most 10 s): its threads' last records come at different times */
async function settledNs(c: EnergyCollector, pid: number): Promise<number> {
  const total = () => [...c.onCpuNow().values()].filter((v) => v.tgid === pid).reduce((s, v) => s + v.ns, 0);
  for (let last = -1, same = 0, until = performance.now() + 10_000; same < 10 && performance.now() < until; ) {
    await new Promise((r) => setTimeout(r, 50));
    const n = total();
    same = n > 0 && n === last ? same + 1 : 0;
    last = n;
  }
  return total();
}

// what the sched_switch program saw, for failure messages (ground truth vs BPF is judged, not these)
const why = (c: EnergyCollector, truthNs: number, bpfNs: number, byPrevNs = NaN, pid = 0) => {
  const t = c.cpuTotals().reduce((a, x) => ({ first: a.first + Number(x.first_stints), resyncs: a.resyncs + Number(x.resyncs), lostMs: a.lostMs + Number(x.resync_lost_ns) / 1e6, overMs: a.overMs + Number(x.resync_over_ns) / 1e6, fallbacks: a.fallbacks + Number(x.ktime_fallbacks), unattributedMs: a.unattributedMs + Number(x.unattributed_ns) / 1e6, switches: a.switches + Number(x.switches), newKeys: a.newKeys + Number(x.new_keys) }), { first: 0, resyncs: 0, lostMs: 0, overMs: 0, fallbacks: 0, unattributedMs: 0, switches: 0, newKeys: 0 });
  const mine = pid ? [...c.onCpuNow().values()].filter((v) => v.tgid === pid).map((v) => ({ comm: v.comm, ms: v.ns / 1e6, exits: v.exits })) : [];
  return `truth ${(truthNs / 1e6).toFixed(1)} ms, BPF ${(bpfNs / 1e6).toFixed(1)} ms (as sum − prev_sum: ${(byPrevNs / 1e6).toFixed(1)} ms); its entries: ${JSON.stringify(mine)}; stints: ${JSON.stringify(t)}; task-map keys created ${t.newKeys}, alive ${c.onCpuNow().size} (the difference: LRU evictions)`;
};
/** time the program charged to no workload (a task-map insert that failed), summed over CPUs */
const unattributedNs = (c: EnergyCollector) => c.cpuTotals().reduce((s, x) => s + Number(x.unattributed_ns), 0);

/** what of these kernel ids is still alive, after waiting out the RCU grace period that frees them */
async function leftOf(ids: { progs: number[]; maps: number[]; links: number[] }): Promise<unknown[]> {
  const left = async () => {
    const a = await bpfObjects();
    return [...a.progs.filter((p) => ids.progs.includes(p.id)), ...a.maps.filter((m) => ids.maps.includes(m.id)), ...a.links.filter((l) => ids.links.includes(l.id))];
  };
  let rest = await left();
  for (let i = 0; i < 50 && rest.length; i++) {
    await new Promise((r) => setTimeout(r, 200));
    rest = await left();
  }
  return rest;
}

describeRoot('energy collector (host kernel)', () => {
  let c: EnergyCollector;
  const cg = path.join(cgroup2Mount(), `ebpf-lab-energytest-${process.pid}`);

  beforeAll(async () => {
    c = await EnergyCollector.open({ power: 'model' });
    fs.mkdirSync(cg);
  }, 60_000);

  afterAll(async () => {
    const ids = c?.kernelIds();
    c?.close();
    if (fs.existsSync(cg)) fs.rmdirSync(cg);
    // nothing this collector created is left in the kernel (by id: other processes may run their own)
    if (!ids) return;
    expect(ids.progs.length).toBeGreaterThan(0);
    // programs and maps go after an RCU grace period once the last fd closes: wait for it
    expect(await leftOf(ids)).toEqual([]);
  });

  it('charges a process exactly the CPU it burned (ground truth: its rusage at reap)', async () => {
    const { pid, truthNs } = await burnReaped(1.0);
    await exited(c, [pid]);
    const mine = [...c.onCpuNow().values()].filter((v) => v.tgid === pid);
    const bpfNs = mine.reduce((s, v) => s + v.ns, 0);
    const byPrevNs = mine.reduce((s, v) => s + v.byPrevNs, 0);
    expect(mine.length).toBeGreaterThan(0);
    expect(mine[0]!.comm).toMatch(/python/);
    expect(mine[0]!.exits).toBeGreaterThan(0); // its final switch was seen
    expect(Math.abs(bpfNs - truthNs) / truthNs, why(c, truthNs, bpfNs, byPrevNs)).toBeLessThan(0.02);
    // and energy follows: the interval holding the burn attributes dynamic energy to it
    const iv = c.sample();
    expect(iv.source).toBe('model');
    expect(iv.estimate).toBe(true);
    const w = iv.workloads.find((x) => x.tgid === pid);
    expect(w?.joules ?? 0).toBeGreaterThan(0);
  }, 60_000);

  it('attributes a cgroup the CPU time cpu.stat charges it', async () => {
    const usage = () => Number(/usage_usec (\d+)/.exec(fs.readFileSync(path.join(cg, 'cpu.stat'), 'utf8'))![1]);
    const u0 = usage();
    // join the cgroup first, then burn: every instruction of the burner runs inside it
    const a = execa('/bin/sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec ${PY} -c '${BURN(0.5)}'`]);
    await a;
    const b = execa('/bin/sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec ${PY} -c '${BURN(0.3)}'`]);
    await b;
    // both sides count the final stints: cpu.stat is charged at the same switch BPF reads
    await exited(c, [a.pid!, b.pid!]);
    const kernelNs = (usage() - u0) * 1000;
    const id = fs.statSync(cg, { bigint: true }).ino;
    const inCg = [...c.onCpuNow().values()].filter((v) => v.cgroupId === id);
    expect(inCg.length).toBeGreaterThanOrEqual(2); // two processes, one cgroup
    const bpfNs = inCg.reduce((s, v) => s + v.ns, 0);
    const byPrevNs = inCg.reduce((s, v) => s + v.byPrevNs, 0);
    expect(kernelNs).toBeGreaterThan(0.7e9);
    expect(Math.abs(bpfNs - kernelNs) / kernelNs, why(c, kernelNs, bpfNs, byPrevNs)).toBeLessThan(0.02);
    c.sample();
    const byCg = c.totalsByCgroup().find((x) => x.cgroupId === id);
    expect(byCg?.cgroup).toBe(`/${path.basename(cg)}`);
    expect(byCg!.joules).toBeGreaterThan(0);
  }, 60_000);

  // review, session 60: the name was the switching thread's, so one process became a series per thread name
  it.each([
    { flavour: 'the default flavour', opts: null },
    { flavour: 'the tp_btf flavour with the thread hash', opts: { hook: 'tp_btf', perThread: 'hash' } as const },
  ])('a process is named after its leader, not the thread that burned its CPU ($flavour)', async ({ opts }) => {
    const t = opts ? await EnergyCollector.open({ power: 'model', ...opts }) : c;
    try {
      const py = `import ctypes, threading, time, os
def work():
    ctypes.CDLL(None).prctl(15, b"busy-worker", 0, 0, 0)
    end = time.time() + 0.3
    while time.time() < end: pass
th = threading.Thread(target=work); th.start(); th.join()
print(os.getpid())`;
      const pid = Number((await execa(PY, ['-c', py])).stdout.trim());
      await exited(t, [pid]);
      const mine = [...t.onCpuNow().values()].filter((v) => v.tgid === pid);
      expect(mine.length).toBeGreaterThan(0);
      expect(mine.map((v) => v.comm)).toEqual(mine.map(() => 'python3'));
    } finally {
      if (opts) t.close();
    }
  }, 60_000);

  // review, session 60: a non-leader thread that execs takes its leader's id and start time
  // (de_thread); with the leader's `charged` entry its whole runtime was charged a second time
  it.each([
    { flavour: 'tp_btf with the thread hash', opts: { hook: 'tp_btf', perThread: 'hash' } as const },
    { flavour: 'the classic tracepoint', opts: { hook: 'tracepoint' } as const },
  ])('a busy thread that execs while its leader idles is charged once ($flavour)', async ({ opts }) => {
    const t = await EnergyCollector.open({ power: 'model', ...opts });
    try {
      const script = [
        'import os, threading, time',
        'def child():',
        '  s = time.thread_time()',
        '  while time.thread_time() - s < 0.3: pass',
        `  os.execv('${PY}', ['python3', '-c', 'import time\\ns = time.thread_time()\\nwhile time.thread_time() - s < 0.1: pass'])`,
        'threading.Thread(target=child).start()',
        'time.sleep(30)',
      ].join('\n');
      const [pid, truth] = (await execa(PY, ['-c', REAPER, script])).stdout.trim().split('\n').at(-1)!.split(' ').map(Number);
      await exited(t, [pid!]);
      // the old leader's last record comes at the exec, the rest at the final switch
      const ns = await settledNs(t, pid!);
      expect(truth!).toBeGreaterThan(0.35e9);
      expect(Math.abs(ns - truth!) / truth!, why(t, truth!, ns, NaN, pid)).toBeLessThan(0.03);
    } finally {
      t.close();
    }
  }, 60_000);

  it('keeps the task map bounded and counts what the LRU evicted', async () => {
    const small = await EnergyCollector.open({ power: 'model', maxTasks: 32 });
    try {
      expect(small.capacity).toBe(32);
      // 300 short-lived processes: more keys than the map holds
      await execa('/bin/sh', ['-c', 'i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done']);
      const iv = small.sample();
      const live = small.onCpuNow().size;
      expect(live).toBeLessThanOrEqual(32 + 8); // the per-CPU LRU free lists may hold a few more
      expect(small.evictions()).toBeGreaterThan(200);
      // what evicted entries had accumulated since the last read is not attributed, and says so:
      // the node total (per-CPU busy totals, busyAtRead) keeps it, so the node-sum check can fail
      expect(iv.nodeJ).toBeCloseTo(iv.idleJ + iv.unattributedJ + iv.workloads.reduce((s, w) => s + w.joules, 0), 6);
      expect(iv.unattributedJ).toBeGreaterThan(0);
      expect(iv.read.gapNs).toBeGreaterThan(0);
    } finally {
      small.close();
    }
  }, 60_000);

  it('exports Kepler-named counters with the source label', async () => {
    const m = energyMetrics(c);
    await execa(PY, ['-c', BURN(0.2)]);
    m.observe(c.sample());
    const text = await m.registry.metrics();
    expect(text).toMatch(/^kepler_process_cpu_joules_total\{pid="\d+",comm="python3",container_id="[^"]+",source="model",estimate="true",zone="package"\} [\d.e-]+$/m);
    expect(text).toMatch(/^kepler_process_cpu_watts\{pid="\d+",comm="python3",container_id="[^"]+",source="model",estimate="true",zone="package"\} [\d.e-]+$/m);
    expect(text).toMatch(/^kepler_container_cpu_joules_total\{container_id="\/",/m);
    // Kepler's node set: the total, and its active and idle parts, as counters and as watts
    const num = (name: string) => Number(new RegExp(`^${name}\\{source="model",estimate="true",zone="package"\\} ([\\d.e+-]+)$`, 'm').exec(text)?.[1]);
    for (const n of ['joules_total', 'watts']) {
      const [total, active, idle] = ['', 'active_', 'idle_'].map((p) => num(`kepler_node_cpu_${p}${n}`));
      expect(total, n).toBeGreaterThan(0);
      expect(active! + idle!).toBeCloseTo(total!, 6);
    }
    // the gauge is the collector's own count (0 unless the machine started > capacity threads meanwhile)
    expect(text).toMatch(new RegExp(`^ebpf_lab_energy_map_evictions ${c.evictions()}$`, 'm'));
  }, 60_000);

  // a long-running `energy top` kept an entry, a totals row and a series per process it ever saw
  // (500 runs of /bin/true: 38 → 553 series; review, session 56)
  it('forgets processes that are gone: their task-map entries, totals and metric series end; live ones and evictions stay', async () => {
    const f = await EnergyCollector.open({ power: 'model' });
    try {
      const m = energyMetrics(f);
      const kids = await execa('/bin/sh', ['-c', 'i=0; while [ $i -lt 30 ]; do /bin/sh -c "echo \\$\\$"; i=$((i+1)); done']);
      const pids = kids.stdout.trim().split('\n').map(Number);
      expect(pids).toHaveLength(30);
      await exited(f, pids);
      m.observe(f.sample());
      const seen = () => pids.filter((p) => [...f.onCpuNow().values()].some((v) => v.tgid === p)).length;
      const series = async () => (await m.registry.metrics()).split('\n').filter((l) => pids.some((p) => l.startsWith(`kepler_process_cpu_joules_total{pid="${p}",`))).length;
      const seenBefore = seen();
      expect(seenBefore).toBe(30);
      expect(await series()).toBe(30);
      expect(f.forgetGone().filter((t) => pids.includes(t.tgid))).toEqual([]); // they ran in the last sample: kept
      const before = f.evictions();
      m.observe(f.sample()); // a sample in which they got no time
      const gone = f.forgetGone();
      m.forget(gone);
      expect(gone.filter((t) => pids.includes(t.tgid)).length).toBe(30);
      expect(seen()).toBe(0); // out of the map
      expect(await series()).toBe(0);
      expect(f.totalsByProcess().filter((t) => pids.includes(t.tgid))).toEqual([]);
      expect(f.totalsByProcess().some((t) => t.tgid === process.pid)).toBe(true); // this one runs on
      expect(f.evictions()).toBe(before); // a deletion is no eviction
    } finally {
      f.close();
    }
  }, 60_000);

  it('detaches and re-attaches the sched_switch hook, maps kept (the bench toggles it per measurement)', async () => {
    const t = await EnergyCollector.open({ power: 'model' });
    try {
      const switches = () => t.cpuTotals().reduce((n, x) => n + Number(x.switches), 0);
      const links = () => t.kernelIds().links.length;
      const attached = links();
      t.setSwitchHook(false);
      // the switch program's link, and the tick's (one per CPU) with it
      expect(links()).toBe(attached - 1 - (t.tick.ok ? t.onlineCpus.length : 0));
      const a = switches();
      await execa('/bin/sh', ['-c', 'for i in 1 2 3 4 5; do /bin/true; done']);
      expect(switches()).toBe(a); // nothing counted while detached
      t.setSwitchHook(true);
      t.setSwitchHook(true); // idempotent
      expect(links()).toBe(attached);
      await execa('/bin/sh', ['-c', 'for i in 1 2 3 4 5; do /bin/true; done']);
      expect(switches()).toBeGreaterThan(a);
    } finally {
      t.close();
    }
  }, 60_000);

  // it loaded the tick program too, without the map that needs, and failed (review, session 64)
  it('the bench\'s do-nothing sched_switch program loads alone, attaches and detaches', async () => {
    const h = await EnergyCollector.emptyHook();
    try {
      h.set(true);
      h.set(false);
    } finally {
      h.close();
    }
  });

  it('task storage: stints stay pending in the thread until it stops, then reach the map to the nanosecond', async (tctx) => {
    // flush threshold out of reach: only the stop can move the sleeper's stints into the task map
    const t = await EnergyCollector.open({ power: 'model', flushNs: 60e9 });
    let p: ReturnType<typeof execa> | null = null;
    try {
      if (t.perThread.name !== 'task_storage') return tctx.skip(`no task-storage flavour on this kernel: ${t.perThread.detail}`);
      // pinned (a CPU change flushes too), many short stints
      p = execa('taskset', ['-c', '0', PY, '-c', 'import time\nwhile True:\n  for i in range(2000): pass\n  time.sleep(0.0005)'], { reject: false });
      const pid = p.pid!;
      const bpfNs = () => [...t.onCpuNow().values()].filter((v) => v.tgid === pid).reduce((s, v) => s + v.ns, 0);
      const ranNs = () => Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
      // (taskset may have moved it once, before exec: that CPU change flushed what ran before it;
      // so from its exec on, waited for: a slow spawn put that flush inside the window below)
      for (const until = performance.now() + 10_000; performance.now() < until; await new Promise((r) => setTimeout(r, 20))) {
        try { if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('python')) break; } catch { /* not yet */ }
      }
      await new Promise((r) => setTimeout(r, 300));
      const [bpf1, ran1] = [bpfNs(), ranNs()];
      await new Promise((r) => setTimeout(r, 300));
      const [bpf2, ran2] = [bpfNs(), ranNs()];
      expect(ran2 - ran1).toBeGreaterThan(10e6);
      expect(bpf2).toBe(bpf1); // what it ran meanwhile is all pending in the thread's storage
      await stopped(pid);
      // born after load, its first stint is its whole runtime (taskset's setaffinity reset prev_sum without a switch): so everything since fork, exactly
      expect(bpfNs()).toBe(ranNs());
      // and the per-CPU totals hold what reached the map, so a sample divides by the same time
      const iv = t.sample();
      expect(iv.nodeJ).toBeCloseTo(iv.idleJ + iv.unattributedJ + iv.workloads.reduce((s, w) => s + w.joules, 0), 6);
    } finally {
      if (p?.pid) process.kill(p.pid, 'SIGKILL');
      await p;
      t.close();
    }
  }, 60_000);

  it('a thread that runs without a switch is charged while it runs (the tick), not all at its switch-out', async (tctx) => {
    const t = await EnergyCollector.open({ power: 'model' });
    let p: ReturnType<typeof execa> | null = null;
    try {
      if (!t.tick.ok) return tctx.skip(`no tick on this kernel: ${t.tick.detail}`);
      // SCHED_FIFO and pinned: nothing of the fair class preempts it, so it runs ~1 s in one stint
      // (where RT is refused, e.g. a cgroup without RT runtime, a fair-class spinner: it is switched
      // out now and then, which the tick must not count twice either)
      const cpu = t.onlineCpus.at(-1)!;
      const spin = [PY, '-c', 'import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.2: pass\nprint(time.process_time_ns())'];
      const rt = (await execa('chrt', ['-f', '10', 'true'], { reject: false })).exitCode === 0;
      p = execa(rt ? 'chrt' : 'taskset', rt ? ['-f', '10', 'taskset', '-c', String(cpu), ...spin] : ['-c', String(cpu), ...spin], { reject: false });
      const pid = p.pid!;
      for (const until = performance.now() + 10_000; performance.now() < until; await new Promise((r) => setTimeout(r, 10))) {
        try { if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('python')) break; } catch { /* not yet */ }
      }
      const bpfNs = () => [...t.onCpuNow().values()].filter((v) => v.tgid === pid).reduce((s, v) => s + v.ns, 0);
      // schedstat: on-CPU ns, wait ns, times scheduled in
      const sched = () => fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ').map(Number) as [number, number, number];
      await new Promise((r) => setTimeout(r, 200));
      const stats = EnergyCollector.enableRunStats();
      let ticks: number;
      const [b1, [r1, , in1], k1] = [bpfNs(), sched(), t.tickRuns()];
      await new Promise((r) => setTimeout(r, 500));
      const [b2, [r2, , in2], k2] = [bpfNs(), sched(), t.tickRuns()];
      try {
        ticks = k2 - k1;
      } finally {
        stats.close();
      }
      // the tick ran in the window (20/s on every CPU: ~10 each in 0.5 s)
      expect(ticks, 'energy_tick runs in the window').toBeGreaterThanOrEqual(5);
      // SCHED_FIFO on a quiet machine: (almost) no switch in the window, so what reached the map was
      // the tick's doing (the host: 0-1). Switched out more often (a fair-class spinner; a 6.1 guest
      // under TCG scheduled the FIFO one in 48 times in the window) the switches charge it too, and
      // this checks only that nothing is counted twice.
      const byTick = rt && in2 - in1 <= 3;
      if (!byTick) console.log(`tick test: the spinner was scheduled in ${in2 - in1} times in the window (${rt ? 'SCHED_FIFO' : 'fair class'}): switches charged it too`);
      expect(r2 - r1).toBeGreaterThan(100e6); // the machine let it run
      // what reached the map meanwhile is what it ran, within two ticks (50 ms) and a flush (1 ms)
      // and the scheduler's own tick (sum_exec_runtime is as fresh as its last update)
      expect(Math.abs(b2 - b1 - (r2 - r1)), `map ${((b2 - b1) / 1e6).toFixed(1)} ms, schedstat ${((r2 - r1) / 1e6).toFixed(1)} ms (${rt ? 'SCHED_FIFO' : 'fair class'})`).toBeLessThan(112e6);
      const own = Number(String((await p).stdout).trim()); // its CPU time by its own clock, just before it exits
      await exited(t, [pid]);
      expect(bpfNs()).toBeGreaterThanOrEqual(own); // its whole life, once it is gone: ticks charged nothing twice
      expect(bpfNs()).toBeLessThan(own * 1.05); // (+ its interpreter's teardown after the print)
    } finally {
      p?.kill('SIGKILL');
      await p;
      t.close();
    }
  }, 60_000);

  // the two fallbacks of the task-storage default: the same 2% bound, on short burners
  it.each([
    { flavour: 'the tp_btf flavour with the thread hash (no task storage)', opts: { hook: 'tp_btf', perThread: 'hash' } as const, check: (t: EnergyCollector) => expect(t.perThread.name).toBe('hash') },
    { flavour: 'the classic tracepoint flavour', opts: { hook: 'tracepoint' } as const, check: (t: EnergyCollector) => expect(t.hook.name).toBe('tracepoint') },
  ])('$flavour accounts the same way', async ({ opts, check }) => {
    const t = await EnergyCollector.open({ power: 'model', ...opts });
    try {
      check(t);
      // The classic tracepoint's program is skipped on a CPU where bpf_prog_active is held (another
      // tracing program, or a map syscall preempted there — other test files run beside this one);
      // the kernel counts those skips. A miss with skips is measured again (at most twice); without
      // skips, or a third time, it fails.
      // Eight short burners, one after another: on a quiet machine a 0.15 s process often runs its
      // whole life in one stint, and the scheduler resets se.prev_sum_exec_runtime on the way out
      // without a switch. Before the whole-sum rule for threads born after load (bpf/energy.bpf.c,
      // born_after_ns) such a burner was charged the last ~30 µs of its life: 10 of 24 burners of
      // the hash flavour on the quiet host (8 of 60 at 0.3 s, 13 of 40 of the classic tracepoint),
      // so eight pass together by chance about once in 80.
      for (let i = 1, retries = 0; i <= 8; i++) {
        const m0 = t.switchStats().missed;
        const u0 = unattributedNs(t);
        const { pid, truthNs } = await burnReaped(0.15);
        await exited(t, [pid]);
        const skipped = t.switchStats().missed - m0;
        const mine = [...t.onCpuNow().values()].filter((v) => v.tgid === pid);
        const bpfNs = mine.reduce((s, v) => s + v.ns, 0);
        const err = Math.abs(bpfNs - truthNs) / truthNs;
        if (err >= 0.02 && skipped > 0 && retries < 2) {
          retries++;
          i--;
          continue;
        }
        expect(err, `burner ${i}/8: ${why(t, truthNs, bpfNs, mine.reduce((s, v) => s + v.byPrevNs, 0), pid)}; switches the kernel skipped: ${skipped}; unattributed meanwhile ${((unattributedNs(t) - u0) / 1e6).toFixed(1)} ms (re-measured ${retries})`).toBeLessThan(0.02);
      }
    } finally {
      t.close();
    }
  }, 60_000);

  it('the iter flavour: nothing on sched_switch, every thread charged from the kernel\'s own runtime', async () => {
    const t = await EnergyCollector.open({ power: 'model', hook: 'iter' });
    let ids: ReturnType<EnergyCollector['kernelIds']> | null = null;
    let p: ReturnType<typeof execa> | null = null;
    try {
      expect(t.hook.name).toBe('iter');
      expect(t.counters.ok).toBe(false);
      expect(t.switchStats()).toEqual({ runCnt: 0, runTimeNs: 0, missed: 0 });
      ids = t.kernelIds();
      // the kernel's view: an iterator link beside sched_process_free's (and the power tracepoints'), no sched_switch program
      const { stdout } = await execa('bpftool', ['-j', 'link', 'show']);
      const mine = (JSON.parse(stdout) as { id: number; type: string; prog_id: number }[]).filter((l) => ids!.links.includes(l.id));
      expect(mine.map((l) => l.type)).toContain('iter');
      expect(mine.filter((l) => l.type === 'raw_tracepoint')).toHaveLength(1); // tp_btf/sched_process_free
      const progs = JSON.parse((await execa('bpftool', ['-j', 'prog', 'show'])).stdout) as { id: number; name: string }[];
      expect(progs.filter((x) => ids!.progs.includes(x.id)).map((x) => x.name).some((n) => n.startsWith('energy_switch'))).toBe(false);

      // short-lived processes reach it only through their exit record (no walk saw them run)
      for (let i = 1; i <= 4; i++) {
        const { pid, truthNs } = await burnReaped(0.15);
        await exited(t, [pid]);
        const bpfNs = [...t.onCpuNow().values()].filter((v) => v.tgid === pid).reduce((s, v) => s + v.ns, 0);
        expect(Math.abs(bpfNs - truthNs) / truthNs, `burner ${i}/4: truth ${(truthNs / 1e6).toFixed(1)} ms, iter ${(bpfNs / 1e6).toFixed(1)} ms`).toBeLessThan(0.02);
      }

      // a non-leader thread that execs takes the process's pid and its leader's start time
      // (de_thread): each thread is charged once, the process its whole life (wait4's rusage)
      const EXEC_FROM_THREAD = [
        'import os, threading, time',
        'def burn(s):',
        '  t = time.thread_time()',
        '  while time.thread_time() - t < s: pass',
        'def child():',
        '  burn(0.2)',
        `  os.execv('${PY}', ['python3', '-c', 'import time\\nt = time.thread_time()\\nwhile time.thread_time() - t < 0.2: pass'])`,
        'burn(0.3)',
        'threading.Thread(target=child).start()',
        'time.sleep(30)',
      ].join('\n');
      // walks all through its life: before, across and after the exec
      const run = execa(PY, ['-c', REAPER, EXEC_FROM_THREAD]);
      let ended = false;
      void run.finally(() => (ended = true)).catch(() => {});
      while (!ended) {
        t.onCpuNow();
        await new Promise((r) => setTimeout(r, 20));
      }
      const [xpid, xtruth] = (await run).stdout.trim().split('\n').at(-1)!.split(' ').map(Number);
      // its threads' records come at different times (the old leader at the exec, the rest at the reap): wait until it stops growing.
      // The last record is written at sched_process_free, an RCU grace period after the reap: 150 ms
      // of no growth once ended the wait before it on a busy machine (fresh-check: 708.4 of 724.8 ms,
      // the runtime since the last walk missing), so 500 ms
      const xNs = () => [...t.onCpuNow().values()].filter((v) => v.tgid === xpid).reduce((s, v) => s + v.ns, 0);
      await settledNs(t, xpid!);
      expect(xtruth!).toBeGreaterThan(0.6e9);
      expect(Math.abs(xNs() - xtruth!) / xtruth!, `exec from a thread: truth ${(xtruth! / 1e6).toFixed(1)} ms, iter ${(xNs() / 1e6).toFixed(1)} ms`).toBeLessThan(0.02);

      // a process that lives across reads is charged what it ran since the collector's first look,
      // to the nanosecond while it is stopped (a stopped thread's runtime is settled)
      p = execa(PY, ['-c', 'while True: pass'], { reject: false });
      const pid = p.pid!;
      await new Promise((r) => setTimeout(r, 100));
      const ran = () => Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
      const mineNs = () => [...t.onCpuNow().values()].filter((v) => v.tgid === pid).reduce((s, v) => s + v.ns, 0);
      await stopped(pid);
      const [bpf0, ran0] = [mineNs(), ran()];
      process.kill(pid, 'SIGCONT');
      // until it has run 60 ms (a fixed 300 ms gave it 49 ms beside a busy suite)
      for (const until = performance.now() + 5000; ran() - ran0 < 60e6 && performance.now() < until; ) await new Promise((r) => setTimeout(r, 50));
      expect(mineNs()).toBeGreaterThan(bpf0); // a walk mid-run sees it grow
      await stopped(pid);
      const [bpf1, ran1] = [mineNs(), ran()];
      expect(ran1 - ran0).toBeGreaterThan(50e6);
      expect(bpf1 - bpf0).toBe(ran1 - ran0);

      // energy: the busy time is exactly what the threads were charged, so it all adds up
      const iv = t.sample();
      expect(iv.nodeJ).toBeCloseTo(iv.idleJ + iv.unattributedJ + iv.workloads.reduce((s, w) => s + w.joules, 0), 6);
      expect(Math.abs(iv.unattributedJ)).toBeLessThan(1e-9);
      expect(iv.workloads.find((w) => w.tgid === pid)?.joules ?? 0).toBeGreaterThan(0);
      expect(t.evictions()).toBe(0);
    } finally {
      if (p?.pid) process.kill(p.pid, 'SIGKILL');
      await p;
      t.close();
    }
    expect(await leftOf(ids!)).toEqual([]);
  }, 60_000);
});
