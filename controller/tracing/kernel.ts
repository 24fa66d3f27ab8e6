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
export type TraceEvent = Omit<tr_event, 'laddr' | 'raddr' | 'data' | '_pad' | 'ts_ns' | 'sock' | 'cgroup_id' | 'comm'> & {
  tsNs: bigint;
  sock: bigint;
  cgroupId: bigint;
  comm: string;
  laddr: string;
  raddr: string;
  data: Buffer;
};

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

  private constructor(readonly skel: Tracing, present: Hook[], missing: Hook[], opts: KernelTracerOptions) {
    const obj = (this.obj = skel.obj);
    const L = obj.btf.layout('tr_event');
    const f = (n: string) => L[n]!.offset;
    const o = {
      ts: f('ts_ns'), sock: f('sock'), cg: f('cgroup_id'), pid: f('pid'), tid: f('tid'), service: f('service'), kind: f('kind'), dir: f('dir'),
      sys: f('sys'), len: f('len'), cap: f('cap_len'), old: f('old_state'), neu: f('new_state'), family: f('family'), lport: f('lport'),
      rport: f('rport'), laddr: f('laddr'), raddr: f('raddr'), comm: f('comm'), data: f('data'),
    };
    let buf: Buffer | null = null;
    this.ring = new RingBuffer<TraceEvent>(skel.maps.events, {
      decode: (dv, off) => {
        if (buf === null || buf.buffer !== dv.buffer) buf = Buffer.from(dv.buffer, dv.byteOffset, dv.byteLength);
        const family = dv.getUint16(off + o.family, true);
        const capLen = Math.min(dv.getUint32(off + o.cap, true), TR.MAX_CAP);
        const commEnd = buf.indexOf(0, off + o.comm);
        return {
          tsNs: dv.getBigUint64(off + o.ts, true),
          sock: dv.getBigUint64(off + o.sock, true),
          cgroupId: dv.getBigUint64(off + o.cg, true),
          pid: dv.getUint32(off + o.pid, true),
          tid: dv.getUint32(off + o.tid, true),
          service: dv.getUint32(off + o.service, true),
          kind: dv.getUint32(off + o.kind, true),
          dir: dv.getUint32(off + o.dir, true),
          sys: dv.getUint32(off + o.sys, true),
          len: dv.getUint32(off + o.len, true),
          cap_len: capLen,
          old_state: dv.getInt32(off + o.old, true),
          new_state: dv.getInt32(off + o.neu, true),
          family,
          lport: dv.getUint16(off + o.lport, true),
          rport: dv.getUint16(off + o.rport, true),
          laddr: addrString(family, buf.subarray(off + o.laddr, off + o.laddr + 16)),
          raddr: addrString(family, buf.subarray(off + o.raddr, off + o.raddr + 16)),
          comm: buf.toString('utf8', off + o.comm, commEnd < 0 || commEnd > off + o.comm + 16 ? off + o.comm + 16 : commEnd),
          // a copy: the ring slot is reused as soon as the batch is released
          data: Buffer.from(buf.subarray(off + o.data, off + o.data + capLen)),
        };
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
