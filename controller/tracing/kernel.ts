// The tracer's kernel side: loads bpf/tracing.bpf.o, selects workloads (cgroup v2 ids, pids) in
// its maps, attaches every tracepoint this kernel has, and decodes ring-buffer records.
//
// The mechanism is chosen by probing, not by kernel version: each syscall tracepoint is attached
// only if tracefs lists it (sendfile64 is missing on some configurations); the set that attached
// is reported as `mechanism`. kprobe/fentry variants are not needed: syscall tracepoints see the
// same bytes on every kernel the lab runs, and this host has neither kprobes nor fentry.
import fs from 'node:fs';
import path from 'node:path';
import { RingBuffer, attachTracepoint, enableStats, type BpfMap, type BpfObject, type Link } from '../libbpf/index.ts';
import { ensureObject } from '../../bpf/build.ts';
import { tracefsRoot } from '../../lab/host.ts';
import { tracing, type Tracing, type TracingShape, type tr_event } from '../../bpf/gen/tracing.ts';

export const TR = {
  EV_DATA: 1, EV_ACCEPT: 2, EV_CONNECT: 3, EV_ESTABLISHED: 4, EV_CLOSE: 5,
  DIR_IN: 1, DIR_OUT: 2,
  MAX_CAP: 512,
} as const;
export const SYS_NAMES = ['', 'read', 'write', 'readv', 'writev', 'sendto', 'recvfrom', 'sendmsg', 'recvmsg', 'sendfile'];

/** A decoded record: tr_event (bpf/tracing.h) with addresses as strings and only the valid payload. */
export type TraceEvent = Omit<tr_event, 'laddr' | 'raddr' | 'data' | '_pad' | 'ts_ns' | 'sock' | 'cgroup_id' | 'comm' | 'skip_bytes' | 'skip_ts' | 'skip_calls' | 'skip_dir'> & {
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

type Offsets = Record<'ts' | 'sock' | 'cg' | 'pid' | 'tid' | 'service' | 'kind' | 'dir' | 'sys' | 'len' | 'cap' | 'old' | 'neu' | 'family' | 'lport' | 'rport' | 'laddr' | 'raddr' | 'comm' | 'data' | 'skipBytes' | 'skipTs' | 'skipCalls' | 'skipDir', number>;

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
  pid = 0; tid = 0; service = 0; kind = 0; dir = 0; sys = 0; len = 0; cap_len = 0; old_state = 0; new_state = 0; family = 0; lport = 0; rport = 0;
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

/** [category, tracepoint, program] */
type Hook = [string, string, TracingShape['programs']];
const HOOKS: Hook[] = [
  ['sock', 'inet_sock_set_state', 'sock_state'],
  ...(['read', 'write', 'readv', 'writev', 'sendto', 'recvfrom', 'sendmsg', 'recvmsg', 'accept4'] as const).flatMap((n): Hook[] => [
    ['syscalls', `sys_enter_${n}`, `enter_${n}` as const],
    ['syscalls', `sys_exit_${n}`, `exit_${n}` as const],
  ]),
  ['syscalls', 'sys_enter_sendfile64', 'enter_sendfile'],
  ['syscalls', 'sys_exit_sendfile64', 'exit_sendfile'],
];

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
}

export interface Mechanism {
  /** tracepoints attached, category:name */
  attached: string[];
  /** tracepoints this kernel lacks (their programs were not loaded) */
  missing: string[];
  summary: string;
}

export class KernelTracer implements Disposable {
  readonly ring: RingBuffer<TraceEvent>;
  readonly mechanism: Mechanism;
  private readonly links: Link[] = [];
  private readonly statsHandle: { close(): void } | null;
  private readonly selCgroups: BpfMap<bigint, number>;
  private readonly selPids: BpfMap<number, number>;

  readonly obj: BpfObject;
  private readonly rec: RingRecord;

  /**
   * Hand every record to `fn` as it arrives, in place (one reused record whose `data` views the
   * ring: valid during the call only). Resolves when the tracer is closed.
   */
  consume(fn: (e: TraceEvent) => void): Promise<void> {
    const rec = this.rec;
    return this.ring.visitAll((dv, off, len) => fn(rec.at(dv, off, len)));
  }

  /** what is in the ring now, in place (see consume) */
  drainInPlace(fn: (e: TraceEvent) => void, max = 1 << 20): number {
    const rec = this.rec;
    return this.ring.visit((dv, off, len) => fn(rec.at(dv, off, len)), max);
  }

  /** syscalls the kernel-side filter kept out of the ring: body continuations and non-HTTP sockets */
  filtered(): { continuations: number; nonHttp: number } {
    const m = this.skel.maps.filtered;
    const sum = (k: number) => (m.getPerCpu(k) ?? []).reduce<number>((a, v) => a + Number(v), 0);
    return { continuations: sum(0), nonHttp: sum(1) };
  }

  private constructor(readonly skel: Tracing, present: Hook[], missing: Hook[], opts: KernelTracerOptions) {
    const obj = (this.obj = skel.obj);
    const L = obj.btf.layout('tr_event');
    const f = (n: string) => L[n]!.offset;
    const o: Offsets = {
      ts: f('ts_ns'), sock: f('sock'), cg: f('cgroup_id'), pid: f('pid'), tid: f('tid'), service: f('service'), kind: f('kind'), dir: f('dir'),
      sys: f('sys'), len: f('len'), cap: f('cap_len'), old: f('old_state'), neu: f('new_state'), family: f('family'), lport: f('lport'),
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
    });
    this.selCgroups = skel.maps.sel_cgroups;
    this.selPids = skel.maps.sel_pids;
    this.statsHandle = opts.stats ? enableStats() : null;
    try {
      for (const [cat, name, prog] of present) this.links.push(attachTracepoint(skel.programs[prog], cat, name));
    } catch (e) {
      this.close();
      throw e;
    }
    const attached = present.map(([c, n]) => `${c}:${n}`);
    this.mechanism = {
      attached,
      missing: missing.map(([c, n]) => `${c}:${n}`),
      summary: `tracepoints: sock:inet_sock_set_state + ${present.filter(([c, n]) => c === 'syscalls' && n.startsWith('sys_exit_')).map(([, n]) => n.slice(9)).join('/')} (syscalls enter/exit)`,
    };
  }

  static async start(opts: KernelTracerOptions = {}): Promise<KernelTracer> {
    const cap = opts.capBytes ?? 256;
    if (!(Number.isInteger(cap) && cap >= 1 && cap <= TR.MAX_CAP)) throw new Error(`capture bytes must be an integer 1…${TR.MAX_CAP}, got ${cap}`);
    const tfs = tracefsRoot() ?? '/sys/kernel/tracing';
    const has = (cat: string, name: string) => fs.existsSync(path.join(tfs, 'events', cat, name));
    const present = HOOKS.filter(([c, n]) => has(c, n));
    const missing = HOOKS.filter(([c, n]) => !has(c, n));
    // without the lifecycle tracepoint or the basic read/write pairs there is nothing to trace
    for (const need of ['inet_sock_set_state', 'sys_exit_read', 'sys_exit_write', 'sys_exit_accept4']) {
      if (!present.some(([, n]) => n === need)) throw new Error(`tracepoint ${need} is missing on this kernel (${tfs}/events)`);
    }
    const skel = tracing.open(await ensureObject('tracing'));
    try {
      skel.setRodata({ cap_bytes: cap });
      skel.load({ skip: missing.map(([, , p]) => p), maxEntries: opts.ringBytes ? { events: opts.ringBytes } : undefined });
      return new KernelTracer(skel, present, missing, opts);
    } catch (e) {
      skel.close();
      throw e;
    }
  }

  selectCgroup(id: bigint, service: number): void {
    this.selCgroups.set(id, service);
  }

  selectPid(pid: number, service: number): void {
    this.selPids.set(pid, service);
  }

  unselectPid(pid: number): void {
    this.selPids.delete(pid);
  }

  /** BPF run time of all programs so far (needs stats: true) */
  programStats(): { runCnt: number; runTimeNs: number } {
    let runCnt = 0, runTimeNs = 0;
    for (const [, , p] of HOOKS) {
      try {
        const prog = this.skel.programs[p];
        if (!prog.loaded) continue;
        const i = prog.info();
        runCnt += Number(i.runCnt);
        runTimeNs += Number(i.runTimeNs);
      } catch {
        /* skipped */
      }
    }
    return { runCnt, runTimeNs };
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
