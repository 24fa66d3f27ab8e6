// The energy control plane: loads bpf/energy.bpf.c, picks the sched_switch flavour and the power
// source, and turns the kernel's cumulative per-(cgroup, process, CPU) on-CPU time into joules per
// interval (model.ts holds the maths and the attribution rule). Usable without the lab: `lab
// energy top`, the scenario and the tests all drive this class.
import fs from 'node:fs';
import path from 'node:path';
import { attachIter, attachPerfEventAllCpus, attachTrace, attachTracepoint, enableStats, mapInfo, perfEventOpen, readIter, VerifierError, type BpfMap, type Link } from '../libbpf/index.ts';
import { ensureObject } from '../../bpf/build.ts';
import { LabError } from '../../common/errors.ts';
import { energy, type Energy, type EnergyShape, type energy_cpu, type energy_exit_key, type energy_freq, type energy_iter_task, energy_iter_task_size, type energy_key, type energy_task } from '../../bpf/gen/energy.ts';
import { attribute, busyAtRead, DEFAULT_MODEL, type BusyAtRead, meteredEnergy, modelEnergy, validateModel, type CpuInterval, type ModelConfig, type PowerSourceName, type Use } from './model.ts';
import { findMeter, type Meter } from './power.ts';
import { busyWeights, IterAccount, procStatBusy, type IterRecord } from './iter.ts';
import { findCgroup2Root } from '../../common/cgroup.ts';
import { ensureMounts } from '../../common/host.ts';

export interface CollectorOptions {
  /**
   * sched_switch flavour: auto tries tp_btf first. `iter` puts nothing on sched_switch: the kernel's
   * own per-thread runtime is read through a task iterator at each sample (no per-CPU split, no
   * hardware counters; see energy_iter in bpf/energy.bpf.c). Never chosen by auto.
   */
  hook?: 'auto' | 'tp_btf' | 'tracepoint' | 'iter';
  /**
   * per-thread state of the tp_btf flavour: task-local storage (stints batched per thread, the
   * cheap one) or the `charged` hash (every stint into `tasks` at once); auto: task storage when it
   * loads. The tracepoint flavour always uses the hash.
   */
  perThread?: 'auto' | 'task_storage' | 'hash';
  /** task storage: a thread's pending stints go to the task map once they reach this many ns (default 1 ms) */
  flushNs?: number;
  /**
   * task storage: how often per second a cpu-clock perf event on every CPU charges the running
   * thread's stint so far (energy_tick), so a thread that runs long without a switch shows in the
   * interval it ran in (default 20; 0: charged at switches only)
   */
  tickHz?: number;
  /** power source: auto = a meter when one advances, else the model */
  power?: 'auto' | 'model';
  /** hardware cycles/instructions: auto = when perf_event_open gives them on every CPU */
  counters?: 'auto' | 'off';
  model?: Partial<ModelConfig>;
  /** entries of the per-task LRU map */
  maxTasks?: number;
  /** cgroup2 mount, for naming cgroup ids */
  cgroupRoot?: string;
  log?: (s: string) => void;
}

export interface Feature {
  ok: boolean;
  detail: string;
}

/** one workload: a process (tgid) in a cgroup */
export interface Workload {
  key: string;
  cgroupId: bigint;
  cgroup: string;
  tgid: number;
  comm: string;
}

export interface WorkloadInterval extends Workload {
  /** on-CPU ns over the interval, all CPUs */
  onCpuNs: number;
  joules: number;
  watts: number;
}

export interface Interval {
  /** ms since the collector started (end of the interval) */
  tMs: number;
  dtNs: number;
  source: PowerSourceName;
  /** true for the model: say "estimate" wherever these numbers are shown */
  estimate: boolean;
  nodeJ: number;
  idleJ: number;
  unattributedJ: number;
  byCycles: boolean;
  workloads: WorkloadInterval[];
  /** busy ns per CPU (from the per-CPU totals, at the instant of the task read: see busyAtRead) */
  busyNs: number[];
  /**
   * how the two maps were read: the task walk's duration, busy time that accrued during it (all
   * CPUs), and the cumulative busy time the task map is known to have lost (busyAtRead's gap)
   */
  read: { walkMs: number; windowBusyNs: number; gapNs: number };
  /**
   * diagnostic: the dynamic energy that would be unattributed had the per-CPU totals been taken as
   * read after the walk (the skew busyAtRead removes)
   */
  unattributedJIfReadAfter: number;
}

export interface Totals extends Workload {
  onCpuNs: number;
  joules: number;
}

interface TaskRaw {
  /** iter flavour: the key's incarnation (a key made again after pruning restarts from 0) */
  gen?: number;
  cgroupId: bigint;
  tgid: number;
  comm: string;
  ns: number[];
  cycles: number[];
  exits: number;
  byPrev: number;
  overWall: number;
}

interface Raw {
  t: bigint;
  /** iter flavour: cumulative busy ns per online CPU (index), all of it charged to a workload */
  iterBusy?: number[];
  tasks: Map<string, TaskRaw>;
  /** per-CPU totals read just before and just after the task walk */
  cpusBefore: energy_cpu[];
  cpus: energy_cpu[];
  walkNs: number;
  freqKhz: number[];
}

/** CPUs listed in a sysfs cpu list such as "0-3,6" */
export function parseCpuList(s: string): number[] {
  return s.trim().split(',').filter(Boolean).flatMap((r) => {
    const [a, b] = r.split('-').map(Number);
    return b === undefined ? [a!] : Array.from({ length: b - a! + 1 }, (_, i) => a! + i);
  });
}

type Flavour = 'task_storage' | 'tp_btf' | 'tracepoint';
const SWITCH_PROG: Record<Flavour, EnergyShape['programs']> = { task_storage: 'energy_switch_ts', tp_btf: 'energy_switch_btf', tracepoint: 'energy_switch_tp' };
const ITER_PROGS: EnergyShape['programs'][] = ['energy_iter', 'energy_task_free'];
/** the initial pid namespace's inode number (PROC_PID_INIT_INO) */
const INIT_PID_NS_INO = 0xeffffffc;
// the bench's do-nothing program (EnergyCollector.emptyHook) is never loaded with the accounting
const SWITCH_PROGS: EnergyShape['programs'][] = [...Object.values(SWITCH_PROG), 'energy_switch_empty'];
/** energy_tick on a cpu-clock perf event (PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK: a timer in ns of that CPU's time) per CPU, hz times a second */
const attachTick = (skel: Energy, hz: number): Link[] => attachPerfEventAllCpus(skel.programs.energy_tick, { type: 1, config: 0, samplePeriod: Math.round(1e9 / hz) });
const NO_TICK = 'a thread that runs long without a switch is charged at its switch-out only';

const keyOf = (cg: bigint, tgid: number) => `${cg}:${tgid}`;

export class EnergyCollector {
  readonly hook: Feature & { name: 'tp_btf' | 'tracepoint' | 'iter' };
  /** where per-thread state lives: task storage (stints batched, flushed_ns), the `charged` hash, or the kernel's own (iter) */
  readonly perThread: Feature & { name: 'task_storage' | 'hash' | 'kernel' };
  private readonly switchProg: EnergyShape['programs'] | null;
  readonly counters: Feature;
  /** which clock measures on-CPU time */
  readonly clock: Feature;
  readonly frequency: Feature & { maxKhz: number[] };
  readonly idleTracepoint: Feature;
  /** the task-storage flavour's tick (energy_tick): a running thread's stint charged without a switch */
  readonly tick: Feature;
  private tickLinks: Link[];
  private readonly tickHz: number;
  readonly power: { source: PowerSourceName; detail: string; evidence: string[] };
  readonly model: ModelConfig;
  readonly onlineCpus: number[];
  /** the per-task map (none in the iter flavour) */
  private readonly tasks: BpfMap<energy_key, energy_task> | null;
  private readonly cpuMap: BpfMap<number, energy_cpu>;
  private readonly freqMap: BpfMap<number, energy_freq>;
  private readonly counterFds: number[];
  private prev: Raw;
  /** per online CPU: its busy total at the last task walk (see busyAtRead) */
  private busyAt: BusyAtRead[];
  private readonly t0: bigint;
  private meterLast = 0;
  private readonly totals = new Map<string, Totals>();
  /** keys that got time in the last sample (forgetGone leaves them) */
  private lastActive = new Set<string>();
  /** task-map entries forgetGone deleted (not evictions) */
  private deleted = 0;
  private cgNames = new Map<bigint, string>();
  private closed = false;
  // iter flavour state (see readIterTasks)
  private iter: IterAccount | null = null;
  /** field offsets of energy_iter_task (from the object's BTF): the walk's records are read in place */
  private iterAt: Record<'task' | 'cgroup_id' | 'sum_ns' | 'start_ns' | 'tid' | 'tgid' | 'comm', number> | null = null;
  /** /proc/stat busy ticks per online CPU at the previous read (the iter flavour's per-CPU split) */
  private iterStat: number[] | null = null;
  /** exit records drained so far (against the kernel's count of those written: the rest the LRU evicted) */
  private iterDrained = 0;
  nodeJ = 0;
  idleJ = 0;
  unattributedJ = 0;

  private constructor(
    private readonly skel: Energy,
    private readonly links: Link[],
    private readonly meter: Meter | null,
    init: {
      hook: EnergyCollector['hook'];
      perThread: EnergyCollector['perThread'];
      switchProg: EnergyShape['programs'] | null;
      clock: Feature;
      counters: Feature;
      counterFds: number[];
      frequency: EnergyCollector['frequency'];
      idleTracepoint: Feature;
      tick: Feature;
      /** the tick's perf-event links, one per CPU (apart: setSwitchHook detaches them with the switch program) */
      tickLinks: Link[];
      tickHz: number;
      power: EnergyCollector['power'];
      model: ModelConfig;
    },
    private readonly cgroupRoot: string,
  ) {
    this.hook = init.hook;
    this.perThread = init.perThread;
    this.switchProg = init.switchProg;
    this.clock = init.clock;
    this.counters = init.counters;
    this.counterFds = init.counterFds;
    this.frequency = init.frequency;
    this.idleTracepoint = init.idleTracepoint;
    this.tick = init.tick;
    this.tickLinks = init.tickLinks;
    this.tickHz = init.tickHz;
    this.power = init.power;
    this.model = init.model;
    this.onlineCpus = parseCpuList(fs.readFileSync('/sys/devices/system/cpu/online', 'utf8'));
    this.tasks = init.hook.name === 'iter' ? null : skel.maps.tasks;
    this.cpuMap = skel.maps.cpus;
    this.freqMap = skel.maps.freq;
    this.meterLast = meter?.readJoules() ?? 0;
    if (this.hook.name === 'iter') {
      const L = skel.obj.btf.layout('energy_iter_task');
      this.iterAt = { task: L.task!.offset, cgroup_id: L.cgroup_id!.offset, sum_ns: L.sum_ns!.offset, start_ns: L.start_ns!.offset, tid: L.tid!.offset, tgid: L.tgid!.offset, comm: L.comm!.offset };
      // threads started from here on have run only while we watched: their whole runtime is ours
      this.iter = new IterAccount(this.onlineCpus.length, process.hrtime.bigint());
    }
    this.prev = this.read();
    this.t0 = this.prev.t;
    const p = this.prev;
    if (p.iterBusy) this.busyAt = p.iterBusy.map((b) => ({ busy: b, keyed: b, gap: 0 }));
    else this.busyAt = this.onlineCpus.map((cpu) => {
      let keyed = Number(p.cpusBefore[cpu]?.unattributed_ns ?? 0n);
      for (const x of p.tasks.values()) keyed += x.ns[cpu] ?? 0;
      return busyAtRead(null, flushed(p.cpusBefore[cpu]), flushed(p.cpus[cpu]), keyed);
    });
  }

  static async open(opts: CollectorOptions = {}): Promise<EnergyCollector> {
    const log = opts.log ?? (() => {});
    await ensureMounts(); // the classic tracepoint flavour attaches through tracefs
    const model = { ...DEFAULT_MODEL, ...opts.model };
    const bad = validateModel(model);
    if (bad) throw new LabError(`power model: ${bad}`, 'set --tdp above --idle (both in W, for the whole package)');
    const tickHz = opts.tickHz ?? 20;
    if (!Number.isInteger(tickHz) || tickHz < 0 || tickHz > 1000) throw new LabError(`tick rate ${tickHz}/s: expected an integer 0-1000`, 'leave it out (20/s), or 0 to charge at switches only');
    const file = await ensureObject('energy', log);
    const root = opts.cgroupRoot ?? cgroup2Mount();

    // hardware counters: one cycles and one instructions event per online CPU, or none at all
    const online = parseCpuList(fs.readFileSync('/sys/devices/system/cpu/online', 'utf8'));
    const counterFds: number[] = [];
    const cycFds: [number, number][] = [];
    const insFds: [number, number][] = [];
    let counters: Feature = { ok: false, detail: opts.hook === 'iter' ? 'off: the iter flavour has no sched_switch to read them at' : 'off (counters: off)' };
    if (opts.counters !== 'off' && opts.hook !== 'iter') {
      try {
        for (const cpu of online) {
          const c = perfEventOpen({ type: 0 /* PERF_TYPE_HARDWARE */, config: 0 /* CPU_CYCLES */ }, cpu);
          counterFds.push(c);
          cycFds.push([cpu, c]);
          const i = perfEventOpen({ type: 0, config: 1 /* INSTRUCTIONS */ }, cpu);
          counterFds.push(i);
          insFds.push([cpu, i]);
        }
        counters = { ok: true, detail: `cycles and instructions on CPUs ${online.join(',')} (perf_event, read in sched_switch)` };
      } catch (e) {
        counterFds.splice(0).forEach((fd) => fs.closeSync(fd));
        cycFds.length = insFds.length = 0;
        counters = { ok: false, detail: `perf_event_open(PERF_TYPE_HARDWARE cycles): ${(e as Error).message.split('\n')[0]} — the machine exposes no hardware PMU; attribution uses on-CPU time` };
      }
    }

    const flushNs = opts.flushNs ?? 1_000_000;
    const tryLoad = (flavour: Flavour, tick = false): { skel: Energy; links: Link[] } => {
      const skel = energy.open(file);
      try {
        // born_after_ns: the kernel's task start_time is CLOCK_MONOTONIC, as is process.hrtime
        skel.setRodata({ use_counters: counters.ok, flush_ns: BigInt(flushNs), born_after_ns: process.hrtime.bigint() });
        const sw = SWITCH_PROG[flavour];
        // only the flavour's own per-thread map is created (task storage needs 5.11+)
        skel.load({ skip: [...SWITCH_PROGS.filter((p) => p !== sw), ...ITER_PROGS, ...(tick ? [] : ['energy_tick' as const])], noCreate: [flavour === 'task_storage' ? 'charged' : 'threads', 'exited'], maxEntries: opts.maxTasks ? { tasks: opts.maxTasks } : undefined });
        if (counters.ok) {
          const cm = skel.maps.hw_cycles;
          const im = skel.maps.hw_instructions;
          for (const [cpu, fd] of cycFds) cm.set(cpu, fd);
          for (const [cpu, fd] of insFds) im.set(cpu, fd);
        }
        const prog = skel.programs[sw];
        return { skel, links: [flavour === 'tracepoint' ? attachTracepoint(prog, 'sched', 'sched_switch') : attachTrace(prog)] };
      } catch (e) {
        skel.close();
        throw e;
      }
    };
    const tryIter = (): { skel: Energy; links: Link[] } => {
      // the task iterator walks the caller's pid namespace only, while sched_process_free sees every
      // thread: in a container, the threads outside it would be charged at exit only, or never
      if (fs.statSync('/proc/self/ns/pid').ino !== INIT_PID_NS_INO) throw new LabError('the iter flavour needs the host\'s pid namespace: the task iterator walks only the threads of its own', 'run it on the host (not in a container), or --hook auto (the sched_switch flavours see every thread)');
      const skel = energy.open(file);
      try {
        // nothing on sched_switch, no per-task map: the kernel keeps each thread's runtime
        // nor on the idle path: cpu_idle fires per idle entry, as often as switches on a lightly loaded machine
        skel.load({ skip: [...SWITCH_PROGS, 'energy_cpu_idle', 'energy_tick'], noCreate: ['charged', 'threads', 'tasks', 'hw_cycles', 'hw_instructions'] });
        const links = [attachTrace(skel.programs.energy_task_free)];
        try {
          links.unshift(attachIter(skel.programs.energy_iter));
        } catch (e) {
          links.forEach((l) => l.close());
          throw e;
        }
        return { skel, links };
      } catch (e) {
        skel.close();
        throw e;
      }
    };
    let loaded: { skel: Energy; links: Link[] } | null = null;
    let hook: EnergyCollector['hook'] | null = null;
    let perThread: EnergyCollector['perThread'] = { name: 'hash', ok: false, detail: '' };
    let switchProg: EnergyShape['programs'] | null = SWITCH_PROG.tracepoint;
    let btfErr = '';
    let tickErr = '';
    let tsErr = opts.hook === 'tracepoint' ? 'the tracepoint flavour has no task pointer' : 'not requested (perThread: hash)';
    try {
      if (opts.hook === 'iter') {
        loaded = tryIter();
        hook = { name: 'iter', ok: true, detail: 'no sched_switch program: iter/task reads every thread\'s se.sum_exec_runtime at each sample, tp_btf/sched_process_free keeps a freed thread\'s last value' };
        perThread = { name: 'kernel', ok: true, detail: 'the kernel\'s own per-thread runtime (se.sum_exec_runtime); the controller keeps what it charged each thread' };
        switchProg = null;
      }
      if (!loaded && opts.hook !== 'tracepoint' && opts.perThread !== 'hash') {
        try {
          try {
            loaded = tryLoad('task_storage', tickHz > 0);
          } catch (e) {
            // the tick program alone may be what this kernel refuses: the flavour without it
            if (tickHz === 0 || !(e instanceof VerifierError && e.program === 'energy_tick')) throw e;
            loaded = tryLoad('task_storage');
            tickErr = `energy_tick does not load: ${(e as Error).message.split('\n')[0]}`;
          }
          hook = { name: 'tp_btf', ok: true, detail: 'tp_btf/sched_switch loads and attaches' };
          perThread = { name: 'task_storage', ok: true, detail: `task-local storage: stints summed per thread, added to the task map at ${flushNs / 1e6} ms, on stop, exit, cgroup move or CPU change` };
          switchProg = SWITCH_PROG.task_storage;
        } catch (e) {
          tsErr = (e as Error).message.split('\n')[0]!;
          if (opts.perThread === 'task_storage') throw e;
          log(`tp_btf/sched_switch with task storage: ${tsErr}; trying the thread hash`);
        }
      }
      if (!loaded && opts.hook !== 'tracepoint') {
        try {
          loaded = tryLoad('tp_btf');
          hook = { name: 'tp_btf', ok: true, detail: 'tp_btf/sched_switch loads and attaches' };
          switchProg = SWITCH_PROG.tp_btf;
        } catch (e) {
          btfErr = (e as Error).message.split('\n')[0]!;
          if (opts.hook === 'tp_btf') throw e;
          log(`tp_btf/sched_switch: ${btfErr}; using the tracepoint`);
        }
      }
      if (!loaded) {
        loaded = tryLoad('tracepoint');
        hook = { name: 'tracepoint', ok: true, detail: `tracepoint sched/sched_switch${btfErr ? ` (tp_btf: ${btfErr})` : ''}` };
        switchProg = SWITCH_PROG.tracepoint;
      }
      if (perThread.name === 'hash' && !perThread.ok) perThread = { name: 'hash', ok: true, detail: `thread hash \`charged\`, every stint into the task map at once (task storage: ${tsErr})` };
    } catch (e) {
      counterFds.forEach((fd) => fs.closeSync(fd));
      throw e;
    }
    const { skel, links } = loaded;
    const optional = (prog: 'energy_cpu_frequency' | 'energy_cpu_idle', name: string): Feature => {
      try {
        links.push(attachTracepoint(skel.programs[prog], 'power', name));
        return { ok: true, detail: `tracepoint power/${name} attached` };
      } catch (e) {
        return { ok: false, detail: `tracepoint power/${name}: ${(e as Error).message.split('\n')[0]}` };
      }
    };
    let meter: Meter | null = null;
    const tickLinks: Link[] = [];
    try {
      const f = optional('energy_cpu_frequency', 'cpu_frequency');
      const maxKhz = online.map((c) => readKhz(`/sys/devices/system/cpu/cpu${c}/cpufreq/cpuinfo_max_freq`));
      const frequency = { ...f, maxKhz, detail: `${f.detail}; cpufreq ${maxKhz.some((x) => x > 0) ? `max ${maxKhz.join(',')} kHz` : 'absent (/sys/devices/system/cpu/cpu0/cpufreq missing): no frequency weighting'}` };
      let tick: Feature = { ok: false, detail: perThread.name === 'task_storage' ? 'off (tickHz 0): a stint is charged at its switch-out only' : `not with the ${perThread.name === 'kernel' ? 'iter flavour (each read takes every thread\'s runtime)' : 'thread hash (a stint is charged at its switch-out only)'}` };
      if (tickErr) tick = { ok: false, detail: `${tickErr} — ${NO_TICK}` };
      else if (perThread.name === 'task_storage' && tickHz > 0) {
        try {
          tickLinks.push(...attachTick(skel, tickHz));
          tick = { ok: true, detail: `cpu-clock perf event on every CPU, ${tickHz}/s: the running thread's stint so far is charged without a switch` };
        } catch (e) {
          tick = { ok: false, detail: `cpu-clock perf event: ${(e as Error).message.split('\n')[0]} — ${NO_TICK}` };
        }
      }
      const idleTracepoint = hook!.name === 'iter' ? { ok: false, detail: 'not attached: the iter flavour keeps nothing on the idle path' } : optional('energy_cpu_idle', 'cpu_idle');
      let power: EnergyCollector['power'];
      if (opts.power === 'model') power = { source: 'model', detail: modelDetail(model), evidence: ['power: model requested'] };
      else {
        const ch = await findMeter();
        meter = ch.meter;
        power = meter ? { source: 'rapl', detail: meter.detail, evidence: ch.evidence } : { source: 'model', detail: modelDetail(model), evidence: ch.evidence };
      }
      return new EnergyCollector(skel, links, meter, { hook: hook!, perThread, switchProg, clock: { ok: true, detail: hook!.name === 'iter' ? 'the scheduler\'s runtime per thread (se.sum_exec_runtime), its growth between two reads of the task iterator' : 'the scheduler\'s runtime per stint (se.sum_exec_runtime minus what was already charged to the thread, read at sched_switch); ktime for idle and implausible values' }, counters, counterFds, frequency, idleTracepoint, tick, tickLinks, tickHz, power, model }, root);
    } catch (e) {
      tickLinks.forEach((l) => l.close());
      meter?.close();
      skel.close();
      counterFds.forEach((fd) => fs.closeSync(fd));
      throw e;
    }
  }

  private read(): Raw {
    if (this.hook.name === 'iter') return this.readIterTasks();
    const cpusBefore = (this.cpuMap.getPerCpu(0) ?? []) as energy_cpu[];
    const t = process.hrtime.bigint();
    const tasks = new Map<string, TaskRaw>();
    for (const [k, v] of this.tasks!.entries()) {
      const per = v as energy_task[];
      tasks.set(keyOf(k.cgroup_id, k.tgid), {
        cgroupId: k.cgroup_id,
        tgid: k.tgid,
        // each CPU's slot refreshes the name now and then (exec renames): the busiest slot is the freshest
        comm: per.reduce((best, x) => (x.comm && x.switches >= best.n ? { n: x.switches, c: x.comm } : best), { n: -1n, c: '' }).c,
        ns: per.map((x) => Number(x.on_cpu_ns)),
        cycles: per.map((x) => Number(x.cycles)),
        exits: per.reduce((n, x) => n + Number(x.exit_switches), 0),
        byPrev: per.reduce((n, x) => n + Number(x.by_prev_ns), 0),
        overWall: per.reduce((n, x) => n + Number(x.over_wall_ns), 0),
      });
    }
    const cpus = (this.cpuMap.getPerCpu(0) ?? []) as energy_cpu[];
    const walkNs = Number(process.hrtime.bigint() - t);
    const freqKhz = this.onlineCpus.map((c) => Number(this.freqMap.get(c)?.khz ?? 0n));
    return { t, tasks, cpusBefore, cpus, walkNs, freqKhz };
  }

  /**
   * The iter flavour's read: every thread's runtime from the task iterator, then the threads freed
   * since (`exited`), into the account (iter.ts: what each thread was charged, the rules).
   */
  private readIterTasks(): Raw {
    const t = process.hrtime.bigint();
    const buf = readIter(this.links[0]!);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const rec = (r: energy_iter_task): IterRecord => ({ task: r.task, cgroupId: r.cgroup_id, sumNs: Number(r.sum_ns), startNs: r.start_ns, tid: r.tid, tgid: r.tgid, comm: r.comm });
    // the walk's records by hand (the generic codec cost ~2 µs a thread; ~1.9 µs per thread in all now, scratch)
    const at = this.iterAt!;
    const walk: IterRecord[] = [];
    for (let off = 0; off + energy_iter_task_size <= buf.length; off += energy_iter_task_size) {
      const c0 = off + at.comm;
      const nul = buf.indexOf(0, c0);
      walk.push({
        task: dv.getBigUint64(off + at.task, true),
        cgroupId: dv.getBigUint64(off + at.cgroup_id, true),
        sumNs: Number(dv.getBigUint64(off + at.sum_ns, true)),
        startNs: dv.getBigUint64(off + at.start_ns, true),
        tid: dv.getUint32(off + at.tid, true),
        tgid: dv.getUint32(off + at.tgid, true),
        comm: buf.toString('latin1', c0, nul < 0 || nul > c0 + 16 ? c0 + 16 : nul),
      });
    }
    const exited = this.skel.maps.exited;
    const exits: IterRecord[] = [];
    const done: energy_exit_key[] = [];
    for (const [k, r] of exited.entries()) {
      exits.push(rec(r as energy_iter_task));
      done.push(k);
    }
    for (const k of done) exited.delete(k);
    this.iterDrained += done.length;
    let stat: number[] | null = null;
    try {
      stat = procStatBusy(fs.readFileSync('/proc/stat', 'utf8'), this.onlineCpus);
    } catch {
      /* no /proc/stat: an even split */
    }
    const acct = this.iter!;
    acct.update(t, walk, exits, stat ? busyWeights(this.iterStat, stat) : null);
    this.iterStat = stat;
    const walkNs = Number(process.hrtime.bigint() - t);
    const tasks = new Map<string, TaskRaw>();
    for (const [k, v] of acct.keys) {
      const ns: number[] = [];
      this.onlineCpus.forEach((cpu, i) => (ns[cpu] = v.ns[i]!));
      tasks.set(k, { cgroupId: v.cgroupId, tgid: v.tgid, comm: v.comm, ns, cycles: [], exits: 0, byPrev: 0, overWall: 0, gen: v.gen });
    }
    const freqKhz = this.onlineCpus.map((c) => Number(this.freqMap.get(c)?.khz ?? 0n));
    return { t, tasks, cpusBefore: [], cpus: [], walkNs, freqKhz, iterBusy: [...acct.busy] };
  }

  /** iter flavour: the threads it follows (0 for the sched_switch flavours) */
  iterThreads(): number {
    return this.iter?.threadCount ?? 0;
  }

  /**
   * iter flavour: threads lost, at least — the larger of those given up (gone from the walk, no exit
   * record within 10 s) and the exit records the kernel's LRU evicted before a read drained them
   * (written minus drained): a tracked thread whose record was evicted is both, an unseen one only
   * the latter
   */
  private iterLost(): number {
    const written = ((this.cpuMap.getPerCpu(0) ?? []) as energy_cpu[]).reduce((s, c) => s + Number(c.iter_exits), 0);
    let waiting = 0;
    for (const _ of this.skel.maps.exited.keys()) waiting++;
    return Math.max(this.iter!.lost, written - this.iterDrained - waiting);
  }

  /** entries created in the LRU map minus entries alive and those forgetGone deleted: what the LRU evicted so far (iter: threads lost, see iterLost) */
  evictions(): number {
    if (this.hook.name === 'iter') return this.iterLost();
    // keys created as of the walk's start: one created during the walk is alive but was not yet
    // counted as created, never the other way round (the count after the walk took a key made
    // meanwhile for an eviction, then gave it back: a gauge that went 1 → 0 with nothing evicted)
    const created = this.prev.cpusBefore.reduce((s, c) => s + Number(c.new_keys), 0);
    return Math.max(0, created - this.prev.tasks.size - this.deleted);
  }

  /**
   * Forget the processes that are gone, for a collector that runs for days (`energy top`): a key
   * that got no time in the last sample and whose tgid no longer exists leaves the task map (its
   * last stint was charged at its final switch-out, so the value is complete) and the totals; so
   * do totals of such processes whose entry has left the map some other way (evicted; iter). The
   * forgotten totals are returned, for their metric series to end. Before this a machine that
   * forks kept an entry, a totals row and a series per process it ever ran: 500 runs of /bin/true
   * took the process series from 38 to 553, and the map filled until the LRU evicted (review,
   * session 56). A tgid reused in the same cgroup between the read and the delete loses the few
   * µs it ran there.
   */
  forgetGone(): Totals[] {
    const gone: Totals[] = [];
    // one read of /proc per call, taken when first needed: a stat per idle key per sample was
    // hundreds of syscalls a second on a machine with hundreds of sleeping processes
    let pids: Set<number> | null = null;
    const alive = (tgid: number) => (pids ??= new Set(fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number))).has(tgid);
    for (const [k, t] of this.prev.tasks) {
      if (this.lastActive.has(k) || alive(t.tgid)) continue;
      if (this.tasks) {
        try {
          if (this.tasks.delete({ cgroup_id: t.cgroupId, tgid: t.tgid } as energy_key)) this.deleted++;
        } catch { /* evicted meanwhile */ }
      }
      this.prev.tasks.delete(k);
    }
    for (const [k, tot] of this.totals) {
      if (this.prev.tasks.has(k) || alive(tot.tgid)) continue;
      gone.push(tot);
      this.totals.delete(k);
    }
    return gone;
  }

  /** per-CPU totals as the kernel has them now (for tests and reports) */
  cpuTotals(): energy_cpu[] {
    return (this.cpuMap.getPerCpu(0) ?? []) as energy_cpu[];
  }

  /**
   * cumulative on-CPU ns per key as the kernel has it now (sum over CPUs); `exits` counts switches
   * out of exiting threads: a reaped process's last stint is charged only at its final switch,
   * which can come after the parent saw it exit (the exiting CPU may be preempted, e.g. by the host).
   * `byPrevNs`: the same stints measured as sum_exec_runtime − prev_sum_exec_runtime (diagnostic);
   * `overWallNs`: by how much its stints exceeded the ktime interval they ran in (charged in full;
   * diagnostic). Both diagnostics are kept by the hash flavours only (0 with task storage). With
   * task storage a running thread's last ≤ flushNs are not in here yet (a stop or exit flushes them).
   * The iter flavour drops a key whose threads are all gone once a sample has read it: a process
   * reaped before the last sample may be missing here.
   */
  onCpuNow(): Map<string, { cgroupId: bigint; tgid: number; comm: string; ns: number; exits: number; byPrevNs: number; overWallNs: number }> {
    const out = new Map<string, { cgroupId: bigint; tgid: number; comm: string; ns: number; exits: number; byPrevNs: number; overWallNs: number }>();
    for (const [k, v] of this.read().tasks) out.set(k, { cgroupId: v.cgroupId, tgid: v.tgid, comm: v.comm, ns: v.ns.reduce((a, b) => a + b, 0), exits: v.exits, byPrevNs: v.byPrev, overWallNs: v.overWall });
    return out;
  }

  /** power:cpu_frequency events seen, over all CPUs (0 where no cpufreq driver changes frequency) */
  frequencyEvents(): number {
    return this.onlineCpus.reduce((s, c) => s + Number(this.freqMap.get(c)?.events ?? 0n), 0);
  }

  /** entries of the per-task LRU map (iter: of `exited`, the freed threads between two reads) */
  get capacity(): number {
    if (this.hook.name === 'iter') return this.skel.maps.exited.meta.maxEntries;
    return this.tasks!.meta.maxEntries;
  }

  /** Close the interval since the previous sample: deltas, energy, attribution. */
  sample(): Interval {
    const cur = this.read();
    const prev = this.prev;
    this.prev = cur;
    this.iter?.markSampled(); // this sample holds every key's value: keys of gone threads can go
    const dtNs = Number(cur.t - prev.t);
    const d = (a: bigint | undefined, b: bigint | undefined) => Math.max(0, Number((a ?? 0n) - (b ?? 0n)));
    const uses: Use[] = [];
    const onCpu = new Map<string, number>();
    const usedOn = new Map<number, number>();
    for (const [k, t] of cur.tasks) {
      const pk = prev.tasks.get(k);
      const p = pk && pk.gen === t.gen ? pk : undefined;
      for (const cpu of this.onlineCpus) {
        // an entry evicted and re-created restarts from 0: its whole value is new time
        const a = t.ns[cpu] ?? 0;
        const b = p?.ns[cpu] ?? 0;
        const ns = a >= b ? a - b : a;
        if (!ns) continue;
        const ca = t.cycles[cpu] ?? 0;
        const cb = p?.cycles[cpu] ?? 0;
        uses.push({ key: k, cpu, ns, cycles: this.counters.ok ? (ca >= cb ? ca - cb : ca) : undefined });
        onCpu.set(k, (onCpu.get(k) ?? 0) + ns);
        usedOn.set(cpu, (usedOn.get(cpu) ?? 0) + ns);
      }
    }
    const prevBusy = this.busyAt;
    // iter: the busy total is exactly what the threads were charged (no second map to skew against)
    if (cur.iterBusy) this.busyAt = cur.iterBusy.map((b) => ({ busy: b, keyed: b, gap: 0 }));
    else this.busyAt = this.onlineCpus.map((cpu, i) => busyAtRead(prevBusy[i]!, flushed(cur.cpusBefore[cpu]), flushed(cur.cpus[cpu]), (usedOn.get(cpu) ?? 0) + d(cur.cpusBefore[cpu]?.unattributed_ns, prev.cpusBefore[cpu]?.unattributed_ns)));
    const cpus: CpuInterval[] = this.onlineCpus.map((cpu, i) => {
      const freq = cur.freqKhz[i] || readKhz(`/sys/devices/system/cpu/cpu${cpu}/cpufreq/scaling_cur_freq`);
      return {
        cpu,
        busyNs: Math.max(0, this.busyAt[i]!.busy - prevBusy[i]!.busy),
        busyCycles: this.counters.ok ? d(cur.cpus[cpu]?.busy_cycles, prev.cpus[cpu]?.busy_cycles) : undefined,
        freqKhz: freq || undefined,
        maxFreqKhz: this.frequency.maxKhz[i] || undefined,
      };
    });
    let energy;
    if (this.meter) {
      const now = this.meter.readJoules();
      energy = meteredEnergy(now - this.meterLast, this.model.idleWatts, dtNs, cpus);
      this.meterLast = now;
    } else energy = modelEnergy(this.model, dtNs, cpus);
    // the same interval with the per-CPU totals as read after the walk: what the skew would cost
    const afterCpus = cur.iterBusy ? cpus : cpus.map((c) => ({ ...c, busyNs: d(cur.cpus[c.cpu]?.flushed_ns, prev.cpus[c.cpu]?.flushed_ns) }));
    const afterEnergy = this.meter ? meteredEnergy(energy.reduce((s, e) => s + e.idleJ + e.dynamicJ, 0), this.model.idleWatts, dtNs, afterCpus) : modelEnergy(this.model, dtNs, afterCpus);
    const a = attribute(energy, uses);
    const ifAfter = attribute(afterEnergy, uses);
    this.nodeJ += a.nodeJ;
    this.idleJ += a.idleJ;
    this.unattributedJ += a.unattributedJ;
    const workloads: WorkloadInterval[] = [];
    this.lastActive = new Set(onCpu.keys());
    for (const [k, ns] of onCpu) {
      const t = cur.tasks.get(k)!;
      const j = a.perKey.get(k) ?? 0;
      const cgroup = this.cgroupName(t.cgroupId);
      workloads.push({ key: k, cgroupId: t.cgroupId, cgroup, tgid: t.tgid, comm: t.comm, onCpuNs: ns, joules: j, watts: dtNs > 0 ? j / (dtNs / 1e9) : 0 });
      const tot = this.totals.get(k) ?? { key: k, cgroupId: t.cgroupId, cgroup, tgid: t.tgid, comm: t.comm, onCpuNs: 0, joules: 0 };
      tot.onCpuNs += ns;
      tot.joules += j;
      tot.comm = t.comm || tot.comm;
      this.totals.set(k, tot);
    }
    return {
      tMs: Number(cur.t - this.t0) / 1e6,
      dtNs,
      source: this.power.source,
      estimate: this.power.source === 'model',
      nodeJ: a.nodeJ,
      idleJ: a.idleJ,
      unattributedJ: a.unattributedJ,
      byCycles: a.byCycles,
      workloads,
      busyNs: cpus.map((c) => c.busyNs),
      read: { walkMs: cur.walkNs / 1e6, windowBusyNs: this.onlineCpus.reduce((s, cpu) => s + d(cur.cpus[cpu]?.flushed_ns, cur.cpusBefore[cpu]?.flushed_ns), 0), gapNs: this.busyAt.reduce((s, b) => s + b.gap, 0) },
      unattributedJIfReadAfter: ifAfter.unattributedJ,
    };
  }

  /**
   * The do-nothing tp_btf sched_switch program of the same object, loaded alone (no other program),
   * for the bench: what any program on this hook costs, attached and detached like the real one.
   */
  static async emptyHook(): Promise<{ set(on: boolean): void; close(): void }> {
    const skel = energy.open(await ensureObject('energy'));
    try {
      skel.load({ skip: [...SWITCH_PROGS.filter((p) => p !== 'energy_switch_empty'), 'energy_cpu_frequency', 'energy_cpu_idle', 'energy_tick', ...ITER_PROGS], noCreate: ['charged', 'threads', 'exited'], maxEntries: { tasks: 16 } });
    } catch (e) {
      skel.close();
      throw e;
    }
    let link: Link | null = null;
    return {
      set(on: boolean) {
        if (on && !link) link = attachTrace(skel.programs.energy_switch_empty);
        else if (!on && link) {
          link.close();
          link = null;
        }
      },
      close() {
        link?.close();
        link = null;
        skel.close();
      },
    };
  }

  /** cumulative per (cgroup, process) since open */
  totalsByProcess(): Totals[] {
    return [...this.totals.values()];
  }

  /** cumulative per cgroup since open */
  totalsByCgroup(): { cgroupId: bigint; cgroup: string; onCpuNs: number; joules: number }[] {
    const m = new Map<bigint, { cgroupId: bigint; cgroup: string; onCpuNs: number; joules: number }>();
    for (const t of this.totals.values()) {
      const e = m.get(t.cgroupId) ?? { cgroupId: t.cgroupId, cgroup: t.cgroup, onCpuNs: 0, joules: 0 };
      e.onCpuNs += t.onCpuNs;
      e.joules += t.joules;
      m.set(t.cgroupId, e);
    }
    return [...m.values()];
  }

  /** a name cgroupName gave is of a cgroup that no longer exists */
  cgroupGone(name: string): boolean {
    return !name.startsWith('/') || !fs.existsSync(path.join(this.cgroupRoot, name));
  }

  /** cgroup v2 id → path relative to the cgroup2 root (ids are directory inode numbers) */
  cgroupName(id: bigint): string {
    let n = this.cgNames.get(id);
    if (n !== undefined) return n;
    this.cgNames = scanCgroups(this.cgroupRoot);
    n = this.cgNames.get(id);
    if (n === undefined) {
      n = `cgroup-${id}`; // removed before we looked
      this.cgNames.set(id, n);
    }
    return n;
  }

  /** turn on the kernel's BPF run-time statistics (kernel.bpf_stats_enabled) until closed */
  static enableRunStats(): { close(): void } {
    return enableStats();
  }

  /**
   * the attached sched_switch program's run count and run time (non-zero while BPF stats are
   * enabled), and the runs the kernel skipped (always counted: a classic tracepoint's program is
   * skipped on a CPU where another BPF program, or a map syscall, holds bpf_prog_active). The iter
   * flavour has no such program: zeros.
   */
  /** the tick program's runs (counted while kernel.bpf_stats_enabled is on, see enableRunStats) */
  tickRuns(): number {
    return this.tick.ok ? Number(this.skel.programs.energy_tick.info().runCnt) : 0;
  }

  switchStats(): { runCnt: number; runTimeNs: number; missed: number } {
    if (!this.switchProg) return { runCnt: 0, runTimeNs: 0, missed: 0 };
    const i = this.skel.programs[this.switchProg].info();
    return { runCnt: Number(i.runCnt), runTimeNs: Number(i.runTimeNs), missed: Number(i.recursionMisses) };
  }

  /**
   * Detach (false) or re-attach (true) the sched_switch program, keeping it loaded and its maps: for
   * measuring the hook's own cost, hook on vs off, without a load between measurements. The
   * accounting has a hole while it is off (the first stint after it is charged by ktime across it).
   * The iter flavour has nothing on sched_switch; what it does keep attached, sched_process_free,
   * is what this detaches there (a thread freed meanwhile is given up, see readIterTasks).
   */
  setSwitchHook(on: boolean): void {
    if (this.closed) throw new Error('setSwitchHook on a closed collector');
    if (!this.switchProg) {
      const attached = !this.links[1]!.isClosed;
      if (on === attached) return;
      if (!on) this.links[1]!.close();
      else this.links[1] = attachTrace(this.skel.programs.energy_task_free);
      return;
    }
    const attached = !this.links[0]!.isClosed;
    if (on === attached) return;
    // the tick with it: left on, it flushed threads' pending switches while the hook was "off"
    // (the bench's off arm, and a test that counts nothing then)
    if (!on) {
      this.links[0]!.close();
      this.tickLinks.forEach((l) => l.close());
      this.tickLinks = [];
    } else {
      // the tick first: one that cannot attach leaves the hook off as a whole, not on without it
      if (this.tick.ok) this.tickLinks = attachTick(this.skel, this.tickHz);
      const prog = this.skel.programs[this.switchProg];
      try {
        this.links[0] = this.hook.name === 'tp_btf' ? attachTrace(prog) : attachTracepoint(prog, 'sched', 'sched_switch');
      } catch (e) {
        this.tickLinks.forEach((l) => l.close());
        this.tickLinks = [];
        throw e;
      }
    }
  }

  /** kernel ids of the programs, maps and links this collector holds (for leak checks) */
  kernelIds(): { progs: number[]; maps: number[]; links: number[] } {
    return {
      progs: [...this.skel.obj.programs.values()].filter((p) => p.loaded).map((p) => p.info().id),
      maps: (this.hook.name === 'iter' ? [this.cpuMap, this.freqMap, this.skel.maps.exited] : [this.tasks!, this.cpuMap, this.freqMap, this.perThread.name === 'task_storage' ? this.skel.maps.threads : this.skel.maps.charged]).map((m) => mapInfo(m.fd).id),
      links: [...this.links, ...this.tickLinks].filter((l) => !l.isClosed).map((l) => l.info().id),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of [...this.links, ...this.tickLinks]) l.close();
    this.skel.close();
    this.meter?.close();
    for (const fd of this.counterFds) fs.closeSync(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * a CPU's busy time that has reached the task map (see flushed_ns in bpf/energy.h): what attribution
 * divides that CPU's energy by, so the task map and the total agree whatever threads hold pending
 */
const flushed = (c: energy_cpu | undefined): number => Number(c?.flushed_ns ?? 0n);

function modelDetail(m: ModelConfig): string {
  return `estimate: model P = idle + (TDP − idle) × utilisation × (f/fmax)^${m.freqExponent}, TDP ${m.tdpWatts} W, idle ${m.idleWatts} W (package)`;
}

function readKhz(p: string): number {
  try {
    return Number(fs.readFileSync(p, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

/** the cgroup2 root, or where it would be (a host without cgroup2 then attributes to no cgroup) */
export function cgroup2Mount(): string {
  return findCgroup2Root() ?? '/sys/fs/cgroup';
}

function scanCgroups(root: string, maxDepth = 8): Map<bigint, string> {
  const out = new Map<bigint, string>();
  const walk = (dir: string, rel: string, depth: number) => {
    try {
      out.set(fs.statSync(dir, { bigint: true }).ino, rel || '/');
      if (depth >= maxDepth) return;
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(dir, e.name), `${rel}/${e.name}`, depth + 1);
    } catch {
      /* removed while walking */
    }
  };
  walk(root, '', 0);
  return out;
}
