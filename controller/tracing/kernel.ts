// The tracer's kernel side: loads bpf/tracing.bpf.o, selects workloads (cgroup v2 ids, pids) in
// its maps, attaches its hooks, and decodes ring-buffer records.
//
// Payload comes from one of two hooks, chosen per kernel and reported as `mechanism`:
// - `sock` (6.3+ with BTF): tp_btf on sock:sock_recv_length and sock:sock_send_length, which fire
//   for socket I/O only, with the struct sock in hand; the syscall's arguments from the task's
//   saved registers. The cheaper one (bpf/tracing.bpf.c, sock_io).
// - sys_exit (older kernels): the raw tracepoint every syscall returns through, as tp_btf where
//   there is BTF, else raw_tp; the fd resolved to its socket per call.
// Both with sock:inet_sock_set_state for the lifecycle; every hook is probed in tracefs before
// load. kprobe/fentry variants are not needed: a syscall's bytes are the same at these points on
// every kernel, and this host has neither kprobes nor fentry.
//
// Where the kernel preempts (preempt=full/lazy, the only models 7.x has) syscall tracepoints run
// their programs preemptibly, and a preempted run makes the kernel skip the program for the other
// syscall exits on its CPU: a standby copy is attached behind the primary to take those (see
// bpf/tracing.bpf.c). It costs one more program run per event, so it is attached only there. The
// sock hooks are ordinary tracepoints, which ran their programs with preemption off until 7.0
// (SRCU-fast tracepoints, a46023d5616): they get standby copies on a preempting 7.0+ kernel.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RingBuffer, attachRawTracepoint, attachTrace, attachTracepoint, enableStats, type BpfMap, type BpfObject, type Link, type ProgInfo } from '../libbpf/index.ts';
import { ensureObject } from '../../bpf/build.ts';
import { LabError } from '../../common/errors.ts';
import { ensureMounts, preemptModel, releaseAtLeast, tracefsRoot, type Preemption } from '../../common/host.ts';
import { tr_dir, tr_kind, tr_limits, tr_red_layout, tr_role, tr_sel, tracing, type Tracing, type TracingShape, type tr_event } from '../../bpf/gen/tracing.ts';

/** the record's constants, from the enums in bpf/tracing.h (read from the object's BTF into bpf/gen/tracing.ts) */
export const TR = {
  EV_DATA: tr_kind.TR_EV_DATA, EV_ACCEPT: tr_kind.TR_EV_ACCEPT, EV_CONNECT: tr_kind.TR_EV_CONNECT, EV_ESTABLISHED: tr_kind.TR_EV_ESTABLISHED, EV_CLOSE: tr_kind.TR_EV_CLOSE, EV_SKIP: tr_kind.TR_EV_SKIP,
  ROLE_SERVER: tr_role.TR_ROLE_SERVER, ROLE_CLIENT: tr_role.TR_ROLE_CLIENT,
  DIR_IN: tr_dir.TR_DIR_IN, DIR_OUT: tr_dir.TR_DIR_OUT,
  SEL_CGROUPS: tr_sel.TR_SEL_CGROUPS, SEL_PIDS: tr_sel.TR_SEL_PIDS,
  RED_CLASSES: tr_red_layout.TR_RED_CLASSES, RED_ROLES: tr_red_layout.TR_RED_ROLES, RED_SERVICES: tr_red_layout.TR_RED_SERVICES,
  MAX_CAP: tr_limits.TR_MAX_CAP,
} as const;
/**
 * How often the consumer drains the ring when the programs did not wake it (ms): the most a record
 * of a trickle waits before user space sees it. Each pass is a wake-up of the daemon through
 * koffi's thread pool, dear on this lab's host: a daemon 40 s old with nothing to trace used 16–33
 * ms of CPU per second at 100 ms (with 1 s export batches) against 6.7–11 at 500 ms (with 5 s;
 * 3 interleaved rounds, exploratory; ARCHITECTURE.md, tracing). Spans reach the exporter's 5 s
 * batches anyway. close() does not wait it out (RingBuffer's wake-up eventfd).
 */
const POLL_MS = 500;
/** the syscalls the data hooks look at (bpf/tracing.bpf.c, sys_of; accept only with sys_exit) */
const TRACED_SYSCALLS = 'read/write/readv/writev/sendto/recvfrom/sendmsg/recvmsg/sendfile';

/** A decoded record: tr_event (bpf/tracing.h) with addresses as strings and only the valid payload. */
export type TraceEvent = Omit<tr_event, 'laddr' | 'raddr' | 'data' | '_pad' | '_pad2' | 'ts_ns' | 'sock' | 'cgroup_id' | 'comm' | 'skip_bytes' | 'skip_ts' | 'skip_calls' | 'skip_dir'> & {
  tsNs: bigint;
  sock: bigint;
  cgroupId: bigint;
  comm: string;
  laddr: string;
  raddr: string;
  data: Buffer;
  /** body bytes the kernel counted but did not send, before this record (tr_event.skip_*) */
  skipBytes?: number;
  skipTs?: bigint;
  skipCalls?: number;
  skipDir?: number;
};

type Offsets = Record<'ts' | 'sock' | 'cg' | 'pid' | 'tid' | 'service' | 'kind' | 'dir' | 'sys' | 'len' | 'cap' | 'old' | 'neu' | 'unsampled' | 'family' | 'lport' | 'rport' | 'laddr' | 'raddr' | 'comm' | 'data' | 'skipBytes' | 'skipTs' | 'skipCalls' | 'skipDir', number>;

/**
 * One ring record seen in place: the numbers are read when it is positioned, addresses, comm and
 * payload only when asked for (most records need none of them: the connection already knows).
 * One instance is reused for every record, and `data` is a view on the ring, so a consumer must
 * copy what it keeps beyond the call (spans.ts and http.ts do).
 */
class RingRecord implements TraceEvent {
  private dv!: DataView;
  private buf: Buffer | null = null;
  private off = 0;
  tsNs = 0n; sock = 0n;
  pid = 0; tid = 0; service = 0; kind = 0; dir = 0; sys = 0; len = 0; cap_len = 0; old_state = 0; new_state = 0; unsampled = 0; family = 0; lport = 0; rport = 0;
  skipBytes = 0; skipTs = 0n; skipCalls = 0; skipDir = 0;

  constructor(private readonly o: Offsets) {}

  at(dv: DataView, off: number, len: number): this {
    const o = this.o;
    if (this.dv !== dv) {
      this.buf = Buffer.from(dv.buffer, dv.byteOffset, dv.byteLength);
      this.dv = dv;
    }
    this.off = off;
    this.tsNs = dv.getBigUint64(off + o.ts, true);
    this.sock = dv.getBigUint64(off + o.sock, true);
    this.pid = dv.getUint32(off + o.pid, true);
    this.tid = dv.getUint32(off + o.tid, true);
    this.service = dv.getUint32(off + o.service, true);
    this.kind = dv.getUint32(off + o.kind, true);
    this.dir = dv.getUint32(off + o.dir, true);
    this.sys = dv.getUint32(off + o.sys, true);
    this.len = dv.getUint32(off + o.len, true);
    // never past the record: the kernel sends only header + cap_len bytes
    this.cap_len = Math.max(0, Math.min(dv.getUint32(off + o.cap, true), TR.MAX_CAP, len - o.data));
    this.old_state = dv.getInt32(off + o.old, true);
    this.new_state = dv.getInt32(off + o.neu, true);
    this.unsampled = dv.getUint32(off + o.unsampled, true);
    this.family = dv.getUint16(off + o.family, true);
    this.lport = dv.getUint16(off + o.lport, true);
    this.rport = dv.getUint16(off + o.rport, true);
    this.skipCalls = dv.getUint32(off + o.skipCalls, true);
    if (this.skipCalls) {
      this.skipBytes = Number(dv.getBigUint64(off + o.skipBytes, true));
      this.skipTs = dv.getBigUint64(off + o.skipTs, true);
      this.skipDir = dv.getUint32(off + o.skipDir, true);
    } else {
      this.skipBytes = 0;
      this.skipDir = 0;
    }
    return this;
  }

  /** read when asked (a new connection): a BigInt per record was garbage for nothing */
  get cgroupId(): bigint {
    return this.dv.getBigUint64(this.off + this.o.cg, true);
  }

  get laddr(): string {
    return addrString(this.family, this.buf!.subarray(this.off + this.o.laddr, this.off + this.o.laddr + 16));
  }

  get raddr(): string {
    return addrString(this.family, this.buf!.subarray(this.off + this.o.raddr, this.off + this.o.raddr + 16));
  }

  get comm(): string {
    const b = this.buf!, start = this.off + this.o.comm;
    const end = b.indexOf(0, start);
    return b.toString('utf8', start, end < 0 || end > start + 16 ? start + 16 : end);
  }

  /** a view on the ring: valid during the call only */
  get data(): Buffer {
    const start = this.off + this.o.data;
    return this.buf!.subarray(start, start + this.cap_len);
  }
}

/** [category (raw_syscalls: a raw tracepoint), tracepoint, program] */
type Hook = [string, string, TracingShape['programs']];
const HOOKS: Hook[] = [
  ['sock', 'inet_sock_set_state', 'sock_state'],
  ['sock', 'sock_recv_length', 'sock_recv'],
  ['sock', 'sock_send_length', 'sock_send'],
  ['sock', 'sock_recv_length', 'sock_recv_standby'],
  ['sock', 'sock_send_length', 'sock_send_standby'],
  ['raw_syscalls', 'sys_exit', 'sys_exit_btf'],
  ['raw_syscalls', 'sys_exit', 'sys_exit'],
  // after the primary: tracepoint probes run in the order they were attached
  ['raw_syscalls', 'sys_exit', 'sys_exit_standby'],
];
/** programs attached as tp_btf (the others: raw_tp for raw_syscalls, else a perf tracepoint) */
const TP_BTF = new Set<TracingShape['programs']>(['sys_exit_btf', 'sys_exit_standby', 'sock_recv', 'sock_send', 'sock_recv_standby', 'sock_send_standby']);
const STANDBY = new Set<TracingShape['programs']>(['sys_exit_standby', 'sock_recv_standby', 'sock_send_standby']);
/**
 * Where the payload comes from: sock (the sock_{recv,send}_length tracepoints, 6.3+), or the
 * sys_exit raw tracepoint typed (tp_btf) or not (raw_tp). One is loaded.
 */
export type DataHook = 'sock' | 'tp_btf' | 'raw_tp';
const DATA_PROGS: Record<DataHook, TracingShape['programs'][]> = { sock: ['sock_recv', 'sock_send', 'sock_recv_standby', 'sock_send_standby'], tp_btf: ['sys_exit_btf', 'sys_exit_standby'], raw_tp: ['sys_exit'] };
/** 7.0 made tracepoint programs preemptible (SRCU-fast); the sock hooks need the standby from there on */
const PREEMPTIBLE_TRACEPOINTS = [7, 0];

const tracefs = () => tracefsRoot() ?? '/sys/kernel/tracing';
/** does this kernel have tracepoint category:name (its tracefs events directory)? */
export const hasTracepoint = (cat: string, name: string): boolean => fs.existsSync(path.join(tracefs(), 'events', cat, name));
const hasBtf = () => fs.existsSync('/sys/kernel/btf/vmlinux');

/** the payload hook this kernel gets by default (KernelTracerOptions.hook) */
export function defaultHook(): DataHook {
  const sock = hasTracepoint('sock', 'sock_recv_length') && hasTracepoint('sock', 'sock_send_length');
  return hasBtf() && sock ? 'sock' : hasBtf() ? 'tp_btf' : 'raw_tp';
}

export function addrString(family: number, b: Uint8Array): string {
  if (family === 2) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  const s = parts.join(':');
  const m = /^0:0:0:0:0:ffff:([0-9a-f]+):([0-9a-f]+)$/.exec(s);
  if (m) {
    const hi = parseInt(m[1]!, 16), lo = parseInt(m[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return s.replace(/(^|:)0(:0)+(:|$)/, '::');
}

export interface KernelTracerOptions {
  /** payload bytes per syscall that cross to user space (1…512, default 256) */
  capBytes?: number;
  ringBytes?: number;
  stats?: boolean;
  /**
   * Where payload is read. Default: sock where the kernel has sock:sock_recv_length and
   * sock_send_length and BTF, else tp_btf (sys_exit, the saved registers a typed pointer read with
   * plain loads) where it has BTF, else raw_tp (the same program reading them through helpers).
   */
  hook?: DataHook;
  /**
   * Share of root requests (on server sockets whose peer is not a traced local client) whose
   * records cross to user space, 0 < ratio ≤ 1 (default 1: every request). Clients and servers
   * called by a traced local client always cross; in-kernel RED counts every request.
   */
  sampleRatio?: number;
  /**
   * Attach the standby copies (hooks tp_btf and sock; sock from 7.0 on). Default: where the kernel's
   * preemption model is full, lazy or rt, or cannot be told (a preempted run would make the kernel
   * skip the program for other tasks' syscalls on that CPU).
   */
  standby?: boolean;
}

/** in-kernel RED of one service/role/status class (tracing.h, struct tr_red), summed over CPUs */
export interface KernelRedSeries {
  service: number;
  role: 'server' | 'client';
  /** the response's first status digit; 0: closed, or followed by another request, before a response started */
  statusClass: number;
  /** count[b]: durations in [2^(b-1), 2^b) µs (b = 0: < 1 µs; the last bucket holds everything above) */
  counts: number[];
  sumNs: number;
}

export interface Mechanism {
  /** tracepoints attached, category:name */
  attached: string[];
  summary: string;
  /** the preemption model the standby decision was made on */
  preemption?: Preemption & { standby: boolean };
}

export class KernelTracer implements Disposable {
  readonly ring: RingBuffer<TraceEvent>;
  readonly mechanism: Mechanism;
  private readonly links: Link[] = [];
  private readonly statsHandle: { close(): void } | null;
  private readonly selCgroups: BpfMap<bigint, number>;
  private readonly selPids: BpfMap<number, number>;
  private readonly selKinds: BpfMap<number, number>;
  private readonly cgroupsSelected = new Set<bigint>();
  private readonly pidsSelected = new Set<number>();

  readonly obj: BpfObject;
  private readonly rec: RingRecord;

  /**
   * Hand every record to `fn` as it arrives, in place (one reused record whose `data` views the
   * ring: valid during the call only). Resolves when the tracer is closed.
   */
  consume(fn: (e: TraceEvent) => void, onPass?: () => void): Promise<void> {
    const rec = this.rec;
    return this.ring.visitAll((dv, off, len) => fn(rec.at(dv, off, len)), onPass);
  }

  /** what is in the ring now, in place (see consume) */
  drainInPlace(fn: (e: TraceEvent) => void, max = 1 << 20): number {
    const rec = this.rec;
    return this.ring.visit((dv, off, len) => fn(rec.at(dv, off, len)), max);
  }

  /** syscalls the kernel-side filter kept out of the ring: body continuations and non-HTTP sockets */
  filtered(): { continuations: number; nonHttp: number; standby: number } {
    const m = this.skel.maps.filtered;
    const sum = (k: number) => (m.getPerCpu(k) ?? []).reduce<number>((a, v) => a + Number(v), 0);
    return { continuations: sum(0), nonHttp: sum(1), standby: sum(2) };
  }

  /** where payload is read (KernelTracerOptions.hook) */
  readonly hook: DataHook;

  private constructor(readonly skel: Tracing, present: Hook[], hook: DataHook, opts: KernelTracerOptions, preemption: Preemption & { standby: boolean }) {
    const obj = (this.obj = skel.obj);
    const L = obj.btf.layout('tr_event');
    if (L.data!.size !== 2 * TR.MAX_CAP) throw new Error(`tr_event.data is ${L.data!.size} bytes, bpf/gen/tracing.enums.ts says TR_MAX_CAP ${TR.MAX_CAP} (data is twice it): bpf/gen is stale, run pnpm lab build`);
    const f = (n: string) => L[n]!.offset;
    const o: Offsets = {
      ts: f('ts_ns'), sock: f('sock'), cg: f('cgroup_id'), pid: f('pid'), tid: f('tid'), service: f('service'), kind: f('kind'), dir: f('dir'),
      sys: f('sys'), len: f('len'), cap: f('cap_len'), old: f('old_state'), neu: f('new_state'), unsampled: f('unsampled'), family: f('family'), lport: f('lport'),
      rport: f('rport'), laddr: f('laddr'), raddr: f('raddr'), comm: f('comm'), data: f('data'),
      skipBytes: f('skip_bytes'), skipTs: f('skip_ts'), skipCalls: f('skip_calls'), skipDir: f('skip_dir'),
    };
    this.rec = new RingRecord(o);
    // decode (tests, drain): a detached copy of each record
    this.ring = new RingBuffer<TraceEvent>(skel.maps.events, {
      decode: (dv, off, len) => {
        const r = new RingRecord(o).at(dv, off, len);
        return { ...r, tsNs: r.tsNs, cgroupId: r.cgroupId, laddr: r.laddr, raddr: r.raddr, comm: r.comm, data: Buffer.from(r.data) } as TraceEvent;
      },
      lostCounter: skel.maps.lost,
      maxBatch: 4096,
      // the programs wake the consumer only once wake_bytes wait (tracing.bpf.c): a trickle (a
      // sampled service) is drained every POLL_MS, a flood when an eighth of the ring is full.
      // Spans wait out a grace period anyway.
      polled: true,
      idleWaitMs: POLL_MS,
    });
    this.selCgroups = skel.maps.sel_cgroups;
    this.selPids = skel.maps.sel_pids;
    this.selKinds = skel.maps.sel_kinds;
    this.statsHandle = opts.stats ? enableStats() : null;
    try {
      for (const [cat, name, prog] of present) {
        const p = skel.programs[prog];
        this.links.push(TP_BTF.has(prog) ? attachTrace(p) : cat === 'raw_syscalls' ? attachRawTracepoint(p, name) : attachTracepoint(p, cat, name));
      }
    } catch (e) {
      this.close();
      throw e;
    }
    const attached = present.map(([c, n, p]) => (TP_BTF.has(p) ? `tp_btf:${c === 'raw_syscalls' ? '' : `${c}:`}${n}${STANDBY.has(p) ? ' (standby)' : ''}` : c === 'raw_syscalls' ? `raw_tp:${n}` : `${c}:${n}`));
    const standby = preemption.standby ? `; a standby copy behind ${hook === 'sock' ? 'each' : 'it'} (preemption ${preemption.model ?? (preemption.preemptible === undefined ? 'unknown' : 'on')}, from ${preemption.source})` : '';
    this.hook = hook;
    this.mechanism = {
      attached,
      summary:
        hook === 'sock'
          ? `tracepoints: sock:sock_recv_length + sock:sock_send_length as tp_btf (socket I/O of ${TRACED_SYSCALLS}, arguments from the saved registers${standby}) + sock:inet_sock_set_state`
          : `tracepoints: sys_exit as ${hook} (${TRACED_SYSCALLS}/accept/accept4, arguments from the saved registers${standby}) + sock:inet_sock_set_state`,
      preemption,
    };
  }

  static async start(opts: KernelTracerOptions = {}): Promise<KernelTracer> {
    await ensureMounts(); // hooks are probed in tracefs, and libbpf attaches through it
    const cap = opts.capBytes ?? 256;
    if (!(Number.isInteger(cap) && cap >= 1 && cap <= TR.MAX_CAP)) throw new Error(`capture bytes must be an integer 1…${TR.MAX_CAP}, got ${cap}`);
    const hook: DataHook = opts.hook ?? defaultHook();
    if (hook !== 'raw_tp' && !hasBtf()) throw new LabError(`hook ${hook} needs the kernel's BTF (/sys/kernel/btf/vmlinux), which this kernel lacks`, '--hook raw_tp, or leave --hook out');
    const preemption = preemptModel();
    const standby = hook !== 'raw_tp' && (opts.standby ?? (preemption.preemptible !== false && (hook === 'tp_btf' || releaseAtLeast(os.release(), PREEMPTIBLE_TRACEPOINTS))));
    const used = new Set<TracingShape['programs']>(['sock_state', ...DATA_PROGS[hook].filter((p) => !STANDBY.has(p) || standby)]);
    const unused = HOOKS.map(([, , p]) => p).filter((p) => !used.has(p));
    const wanted = HOOKS.filter(([, , p]) => used.has(p));
    const missing = wanted.filter(([c, n]) => !hasTracepoint(c, n));
    // all are needed: without lifecycle or payload there is nothing to trace
    for (const [c, n] of missing) throw new LabError(`unsupported: tracepoint ${c}:${n} on ${os.release()} (not in ${tracefs()}/events/${c})`, hook === 'sock' ? 'the sock hook needs 6.3+: --hook tp_btf, or leave --hook out' : 'a kernel with this tracepoint (CONFIG_FTRACE_SYSCALLS for raw_syscalls)');
    const ratio = opts.sampleRatio ?? 1;
    if (!(typeof ratio === 'number' && ratio > 0 && ratio <= 1)) throw new Error(`sample ratio must be in (0, 1], got ${ratio}`);
    // a request crosses when a u32 random draw is below the threshold; 0 turns sampling off
    const sampleThresh = ratio >= 1 ? 0 : Math.max(1, Math.floor(ratio * 2 ** 32));
    const skel = tracing.open(await ensureObject('tracing'));
    try {
      skel.setRodata({ cap_bytes: cap, sample_thresh: sampleThresh, standby_on: standby ? 1 : 0, wake_bytes: BigInt(Math.floor((opts.ringBytes ?? skel.obj.maxEntries('events')) / 8)) });
      skel.load({ skip: unused, maxEntries: opts.ringBytes ? { events: opts.ringBytes } : undefined });
      return new KernelTracer(skel, wanted, hook, opts, { ...preemption, standby });
    } catch (e) {
      skel.close();
      throw e;
    }
  }

  /** service indexes ever selected (their RED series are read) */
  private readonly servicesSelected = new Set<number>();

  private checkService(service: number): void {
    if (!Number.isInteger(service) || service < 1 || service >= TR.RED_SERVICES) throw new LabError(`service index ${service} is out of range: the tracer takes at most ${TR.RED_SERVICES - 1} workloads`, `select at most ${TR.RED_SERVICES - 1} services (--service)`);
    this.servicesSelected.add(service);
  }

  selectCgroup(id: bigint, service: number): void {
    this.checkService(service);
    this.selCgroups.set(id, service);
    this.cgroupsSelected.add(id);
    this.writeSelKinds();
  }

  selectPid(pid: number, service: number): void {
    this.checkService(service);
    this.selPids.set(pid, service);
    this.pidsSelected.add(pid);
    this.writeSelKinds();
  }

  unselectPid(pid: number): void {
    this.selPids.delete(pid);
    this.pidsSelected.delete(pid);
    this.writeSelKinds();
  }

  /*
   * sel_kinds tells the programs which selector maps to look in (tracing.bpf.c, selected()). It is
   * written after an entry is added and after one is removed, so a map is never skipped while it
   * holds an entry.
   */
  private writeSelKinds(): void {
    this.selKinds.set(0, (this.cgroupsSelected.size ? TR.SEL_CGROUPS : 0) | (this.pidsSelected.size ? TR.SEL_PIDS : 0));
  }

  /**
   * Runs the kernel skipped per program (recursion on a CPU). A primary's misses are taken by its
   * standby where one is attached; the standby's own are events nobody saw.
   */
  missedRuns(): Record<string, number> {
    return Object.fromEntries(this.programInfos().map(([p, i]) => [p, Number(i.recursionMisses)]));
  }

  /** BPF run time of all programs so far (needs stats: true) */
  programStats(): { runCnt: number; runTimeNs: number } {
    let runCnt = 0, runTimeNs = 0;
    for (const [, i] of this.programInfos()) {
      runCnt += Number(i.runCnt);
      runTimeNs += Number(i.runTimeNs);
    }
    return { runCnt, runTimeNs };
  }

  /** the kernel's view of each loaded program (one that cannot be read is left out) */
  private programInfos(): [TracingShape['programs'], ProgInfo][] {
    const out: [TracingShape['programs'], ProgInfo][] = [];
    for (const [, , p] of HOOKS) {
      try {
        const prog = this.skel.programs[p];
        if (prog.loaded) out.push([p, prog.info()]);
      } catch {
        /* skipped */
      }
    }
    return out;
  }

  /** in-kernel RED: every request of every selected workload, crossed or not */
  red(): KernelRedSeries[] {
    const out: KernelRedSeries[] = [];
    const m = this.skel.maps.red;
    // an array indexed by service, role and class (tracing.h): only the services ever selected are read
    for (const service of [...this.servicesSelected].sort((a, b) => a - b)) {
      for (const role of [TR.ROLE_SERVER, TR.ROLE_CLIENT]) {
        for (let statusClass = 0; statusClass < TR.RED_CLASSES; statusClass++) {
          const vals = m.getPerCpu((service * TR.RED_ROLES + role - 1) * TR.RED_CLASSES + statusClass) as unknown as { count: bigint[]; sum_ns: bigint }[] | undefined;
          if (!vals?.length) continue;
          const counts = vals[0]!.count.map(() => 0);
          let sumNs = 0;
          for (const v of vals) {
            v.count.forEach((c, i) => (counts[i]! += Number(c)));
            sumNs += Number(v.sum_ns);
          }
          if (counts.some((c) => c > 0)) out.push({ service, role: role === TR.ROLE_CLIENT ? 'client' : 'server', statusClass, counts, sumNs });
        }
      }
    }
    return out;
  }

  get lost(): number {
    return this.ring.lost;
  }

  close(): void {
    for (const l of this.links.splice(0)) l.close();
    this.ring.close();
    this.statsHandle?.close();
    this.skel.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
