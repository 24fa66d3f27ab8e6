// BpfObject / Program, after cilium/ebpf's Collection/Program: open (spec) first, load (kernel
// objects) second, every handle closable. libbpf does the ELF parsing, CO-RE relocation and
// attach; this file only calls it and turns failures into errors a user can act on.
import fs from 'node:fs';
import path from 'node:path';
import koffi from 'koffi';
import { B, C, NULL, bpf_object_open_opts, bpf_prog_info_head, bpf_tc_hook, bpf_tc_opts, bpf_test_run_opts, bpf_xdp_attach_opts, decodeCString, errno, perf_event_attr, type Ptr } from './ffi.ts';
import { Btf } from './btf.ts';
import { BpfError, VerifierError, errnoName, hintFor } from './errors.ts';
import { Link } from './link.ts';
import { BpfMap, rawCodec } from './map.ts';
import { captureLibbpf } from './log.ts';
import { track, untrack } from './lifecycle.ts';

export const XdpFlags = { UPDATE_IF_NOEXIST: 1, SKB_MODE: 2, DRV_MODE: 4, HW_MODE: 8, REPLACE: 16 } as const;
export const TcAttachPoint = { INGRESS: 1, EGRESS: 2 } as const;

export interface OpenOptions {
  /** directory for maps declared with LIBBPF_PIN_BY_NAME (default: libbpf's /sys/fs/bpf) */
  pinRoot?: string;
  /** BTF for CO-RE when the kernel has none at /sys/kernel/btf/vmlinux */
  btfCustomPath?: string;
  /** override object name (prefix of map names in the kernel) */
  name?: string;
}

export interface LoadOptions {
  /** verifier log level on success: 0 none, 1 full log, 4 stats only (instructions processed) */
  logLevel?: number;
  /** bytes of verifier log kept per program (the tail is what we show) */
  logSize?: number;
  /** programs not to load (e.g. a fallback that is not needed on this kernel) */
  skip?: string[];
  /** set max_entries of maps before they are created */
  maxEntries?: Record<string, number>;
  /** reuse existing (pinned) maps by name: map name → fd or pin path */
  reuseMaps?: Record<string, number | string>;
  /** before load: change anything else through libbpf (advanced) */
  beforeLoad?: (obj: BpfObject) => void;
}

export interface TestRunResult {
  retval: number;
  /** average ns per run as the kernel measured it */
  durationNs: number;
  dataOut: Buffer;
  ctxOut?: Buffer;
}

export interface ProgInfo {
  id: number;
  name: string;
  type: number;
  runTimeNs: bigint;
  runCnt: bigint;
  verifiedInsns: number;
  xlatedLen: number;
  jitedLen: number;
}

/**
 * Open a counting perf event (no sampling) on one CPU for all processes, e.g. hardware cycles for
 * a BPF_MAP_TYPE_PERF_EVENT_ARRAY slot or a power/energy-* counter; the caller owns the fd
 * (read 8 bytes for the count, close it when done). Throws BpfError with the errno (ENOENT: the
 * machine does not expose this event; ENODEV: offline CPU).
 */
export function perfEventOpen(attr: { type: number; config: number | bigint }, cpu: number): number {
  const a = {
    type: attr.type, size: 128, config: attr.config, sample_period: 0, sample_type: 0, read_format: 0, flags: 0n, wakeup_events: 0, bp_type: 0,
    config1: 0, config2: 0, branch_sample_type: 0, sample_regs_user: 0, sample_stack_user: 0, clockid: 0, sample_regs_intr: 0, aux_watermark: 0,
    sample_max_stack: 0, _reserved_2: 0, aux_sample_size: 0, _reserved_3: 0, sig_data: 0, config3: 0,
  };
  const fd = Number(C.syscall_perf_event_open(298, a, -1, cpu, -1, 8 /* PERF_FLAG_FD_CLOEXEC */));
  if (fd < 0) {
    const e = errno();
    throw new BpfError(`perf_event_open(type ${attr.type}, config ${attr.config}) on cpu ${cpu}: ${errnoName(e)}`, e, hintFor(e));
  }
  return fd;
}

export class Program {
  private logBuf: Buffer | null = null;
  constructor(
    readonly object: BpfObject,
    readonly ptr: Ptr,
    readonly name: string,
    readonly section: string,
  ) {}

  get fd(): number {
    return B.bpf_program__fd(this.ptr) as number;
  }

  get type(): number {
    return B.bpf_program__type(this.ptr) as number;
  }

  get loaded(): boolean {
    return this.fd >= 0;
  }

  /** The verifier log of the last load (requires logLevel > 0 or a failed load). */
  get verifierLog(): string {
    if (!this.logBuf) return '';
    const end = this.logBuf.indexOf(0);
    return this.logBuf.subarray(0, end < 0 ? this.logBuf.length : end).toString('utf8');
  }

  /** @internal */
  prepareLog(size: number, level: number): void {
    this.logBuf = Buffer.alloc(size);
    B.bpf_program__set_log_buf(this.ptr, this.logBuf, size);
    if (level) B.bpf_program__set_log_level(this.ptr, level);
  }

  private link(what: string, p: Ptr, log = ''): Link {
    if (p === NULL) {
      const e = errno();
      throw new BpfError(`attaching ${this.name} (${what}): ${errnoName(e)}`, e, hintFor(e, log), log);
    }
    return this.object.adopt(new Link(`${this.name} → ${what}`, p));
  }

  private attachVia(what: string, fn: () => Ptr): Link {
    const { result, log } = captureLibbpf(fn);
    return this.link(what, result, log);
  }

  /** Attach by section name (SEC("tp/…"), SEC("xdp") needs an interface: use attachXdp). */
  attach(): Link {
    return this.attachVia(this.section, () => B.bpf_program__attach(this.ptr) as Ptr);
  }

  attachTracepoint(category: string, name: string): Link {
    return this.attachVia(`tracepoint ${category}/${name}`, () => B.bpf_program__attach_tracepoint(this.ptr, category, name) as Ptr);
  }

  attachRawTracepoint(name: string): Link {
    return this.attachVia(`raw_tp ${name}`, () => B.bpf_program__attach_raw_tracepoint(this.ptr, name) as Ptr);
  }

  /** fentry/fexit/tp_btf/fmod_ret: the target comes from the section name */
  attachTrace(): Link {
    return this.attachVia(`trace ${this.section}`, () => B.bpf_program__attach_trace(this.ptr) as Ptr);
  }

  attachLsm(): Link {
    return this.attachVia(`lsm ${this.section}`, () => B.bpf_program__attach_lsm(this.ptr) as Ptr);
  }

  attachKprobe(func: string, retprobe = false): Link {
    return this.attachVia(`${retprobe ? 'kretprobe' : 'kprobe'} ${func}`, () => B.bpf_program__attach_kprobe(this.ptr, retprobe, func) as Ptr);
  }

  attachCgroup(cgroupPath: string): Link {
    const fd = C.open(cgroupPath, 0o200000 /* O_DIRECTORY */, 0) as number;
    if (fd < 0) throw new BpfError(`opening cgroup ${cgroupPath}: ${errnoName(errno())}`, errno(), 'give a cgroup v2 directory (e.g. /sys/fs/cgroup/unified/… on hybrid hosts)');
    try {
      return this.attachVia(`cgroup ${cgroupPath}`, () => B.bpf_program__attach_cgroup(this.ptr, fd) as Ptr);
    } finally {
      C.close(fd);
    }
  }

  attachNetns(netnsPath: string): Link {
    const fd = C.open(netnsPath, 0, 0) as number;
    if (fd < 0) throw new BpfError(`opening netns ${netnsPath}: ${errnoName(errno())}`, errno());
    try {
      return this.attachVia(`netns ${netnsPath}`, () => B.bpf_program__attach_netns(this.ptr, fd) as Ptr);
    } finally {
      C.close(fd);
    }
  }

  /** Attach to an already opened perf event fd (the link owns it afterwards). */
  attachPerfEvent(pfd: number): Link {
    return this.attachVia(`perf_event fd ${pfd}`, () => B.bpf_program__attach_perf_event(this.ptr, pfd) as Ptr);
  }

  /** Sample on every CPU: a software/hardware perf event per CPU, each with this program attached. */
  attachPerfEventAllCpus(attr: { type: number; config: number; samplePeriod?: number; freq?: number }): Link[] {
    const links: Link[] = [];
    const ncpu = B.libbpf_num_possible_cpus() as number;
    try {
      for (let cpu = 0; cpu < ncpu; cpu++) {
        const a = {
          type: attr.type, size: 128, config: attr.config, sample_period: attr.freq ?? attr.samplePeriod ?? 1,
          sample_type: 0, read_format: 0, flags: attr.freq ? 1n << 10n : 0n, wakeup_events: 0, bp_type: 0, config1: 0, config2: 0,
          branch_sample_type: 0, sample_regs_user: 0, sample_stack_user: 0, clockid: 0, sample_regs_intr: 0, aux_watermark: 0,
          sample_max_stack: 0, _reserved_2: 0, aux_sample_size: 0, _reserved_3: 0, sig_data: 0, config3: 0,
        };
        const pfd = Number(C.syscall_perf_event_open(298, a, -1, cpu, -1, 8 /* PERF_FLAG_FD_CLOEXEC */));
        if (pfd < 0) {
          const e = errno();
          if (e === 19 /* ENODEV: offline CPU */) continue;
          throw new BpfError(`perf_event_open on cpu ${cpu}: ${errnoName(e)}`, e, hintFor(e));
        }
        links.push(this.attachPerfEvent(pfd));
      }
    } catch (err) {
      links.forEach((l) => l.close());
      throw err;
    }
    return links;
  }

  /**
   * XDP. mode 'auto' makes a bpf_link (detached when closed or when the process dies); 'native' /
   * 'generic' use netlink with the mode flag; `replace` swaps the program atomically.
   */
  attachXdp(ifname: string | number, opts: { mode?: 'auto' | 'native' | 'generic'; replace?: Program } = {}): Link {
    const ifindex = ifindexOf(ifname);
    const mode = opts.mode ?? 'auto';
    if (mode === 'auto' && !opts.replace) return this.attachVia(`xdp ${ifname}`, () => B.bpf_program__attach_xdp(this.ptr, ifindex) as Ptr);
    const flags = (mode === 'native' ? XdpFlags.DRV_MODE : mode === 'generic' ? XdpFlags.SKB_MODE : 0) | (opts.replace ? XdpFlags.REPLACE : 0);
    const o = { sz: koffi.sizeof(bpf_xdp_attach_opts), old_prog_fd: opts.replace?.fd ?? 0 };
    const { result: r, log } = captureLibbpf(() => B.bpf_xdp_attach(ifindex, this.fd, flags, o) as number);
    if (r < 0) throw new BpfError(`attaching ${this.name} to xdp ${ifname} (${mode}): ${errnoName(r)}`, -r, hintFor(r, log) ?? (mode === 'native' ? 'the driver has no native XDP: try mode generic' : undefined), log);
    const detachFlags = flags & ~XdpFlags.REPLACE;
    const myFd = this.fd;
    const link = new Link(`${this.name} → xdp ${ifname} (${mode})`, NULL, () => {
      // detach only if it is still our program (someone may have replaced it)
      // (the kernel refuses when another program replaced ours; libbpf's complaint is expected)
      const o2 = { sz: koffi.sizeof(bpf_xdp_attach_opts), old_prog_fd: myFd };
      captureLibbpf(() => B.bpf_xdp_attach(ifindex, -1, detachFlags | XdpFlags.REPLACE, o2));
    });
    return this.object.adopt(link);
  }

  /** tc (clsact) through libbpf's bpf_tc_* API; the clsact qdisc is removed on close if we made it. */
  attachTc(ifname: string | number, direction: 'ingress' | 'egress', opts: { priority?: number; handle?: number } = {}): Link {
    const ifindex = ifindexOf(ifname);
    const hook = { sz: koffi.sizeof(bpf_tc_hook), ifindex, attach_point: direction === 'ingress' ? TcAttachPoint.INGRESS : TcAttachPoint.EGRESS, parent: 0 };
    const created = B.bpf_tc_hook_create(hook) as number;
    if (created < 0 && created !== -17 /* EEXIST */) throw new BpfError(`creating clsact on ${ifname}: ${errnoName(created)}`, -created, hintFor(created));
    const tcOpts = { sz: koffi.sizeof(bpf_tc_opts), prog_fd: this.fd, flags: 0, prog_id: 0, handle: opts.handle ?? 1, priority: opts.priority ?? 1 };
    const { result: r, log } = captureLibbpf(() => B.bpf_tc_attach(hook, tcOpts) as number);
    if (r < 0) {
      if (created === 0) B.bpf_tc_hook_destroy({ ...hook, attach_point: TcAttachPoint.INGRESS | TcAttachPoint.EGRESS });
      throw new BpfError(`attaching ${this.name} to tc ${direction} on ${ifname}: ${errnoName(r)}`, -r, hintFor(r, log), log);
    }
    const detach = { sz: koffi.sizeof(bpf_tc_opts), prog_fd: 0, flags: 0, prog_id: 0, handle: tcOpts.handle, priority: tcOpts.priority };
    return this.object.adopt(
      new Link(`${this.name} → tc ${direction} ${ifname}`, NULL, () => {
        B.bpf_tc_detach(hook, detach);
        // the qdisc goes only if this attach created it (others' filters may live on it)
        if (created === 0) B.bpf_tc_hook_destroy({ ...hook, attach_point: TcAttachPoint.INGRESS | TcAttachPoint.EGRESS });
      }),
    );
  }

  /** BPF_PROG_TEST_RUN: run the program on a packet/context without attaching it. */
  testRun(opts: { data?: Buffer; ctx?: Buffer; repeat?: number; dataOutSize?: number; ctxOutSize?: number; flags?: number; cpu?: number } = {}): TestRunResult {
    const dataOut = Buffer.alloc(opts.dataOutSize ?? Math.max((opts.data?.length ?? 0) + 256, 256));
    const ctxOut = opts.ctx ? Buffer.alloc(opts.ctxOutSize ?? opts.ctx.length) : undefined;
    const o = {
      sz: koffi.sizeof(bpf_test_run_opts),
      data_in: opts.data ? koffi.address(opts.data) : 0n,
      data_out: opts.data ? koffi.address(dataOut) : 0n,
      data_size_in: opts.data?.length ?? 0,
      data_size_out: opts.data ? dataOut.length : 0,
      ctx_in: opts.ctx ? koffi.address(opts.ctx) : 0n,
      ctx_out: ctxOut ? koffi.address(ctxOut) : 0n,
      ctx_size_in: opts.ctx?.length ?? 0,
      ctx_size_out: ctxOut?.length ?? 0,
      retval: 0,
      repeat: opts.repeat ?? 1,
      duration: 0,
      flags: opts.flags ?? 0,
      cpu: opts.cpu ?? 0,
      batch_size: 0,
    };
    const r = B.bpf_prog_test_run_opts(this.fd, o) as number;
    if (r < 0) throw new BpfError(`test run of ${this.name}: ${errnoName(r)}`, -r, r === -524 || r === -95 ? 'this program type has no BPF_PROG_TEST_RUN on this kernel' : hintFor(r));
    return { retval: o.retval, durationNs: o.duration, dataOut: dataOut.subarray(0, o.data_size_out), ctxOut: ctxOut?.subarray(0, o.ctx_size_out) };
  }

  /** Kernel's view of the program: id, run_time_ns/run_cnt (with stats enabled), verified insns. */
  info(): ProgInfo {
    return progInfo(this.fd);
  }
}

/** An interface name (in the calling thread's network namespace) or index, as an index. */
function ifindexOf(ifname: string | number): number {
  const ifindex = typeof ifname === 'number' ? ifname : (C.if_nametoindex(ifname) as number);
  if (!ifindex) throw new BpfError(`no interface "${ifname}"`, 19, 'create it first, or check the network namespace the controller runs in');
  return ifindex;
}

export function progInfo(fd: number): ProgInfo {
  const info: Record<string, unknown> = {};
  const len = [koffi.sizeof(bpf_prog_info_head)];
  const buf = Buffer.alloc(len[0]!);
  const r = B.bpf_obj_get_info_by_fd(fd, buf, len) as number;
  if (r < 0) throw new BpfError(`prog info: ${errnoName(r)}`, -r);
  Object.assign(info, koffi.decode(buf, bpf_prog_info_head));
  return {
    id: info.id as number,
    name: String(info.name ?? ''),
    type: info.type as number,
    runTimeNs: BigInt(info.run_time_ns as number | bigint),
    runCnt: BigInt(info.run_cnt as number | bigint),
    verifiedInsns: info.verified_insns as number,
    xlatedLen: info.xlated_prog_len as number,
    jitedLen: info.jited_prog_len as number,
  };
}

/** Turn on run_time_ns/run_cnt accounting (BPF_ENABLE_STATS) while the returned handle is open. */
export function enableStats(): Disposable & { close(): void } {
  const fd = B.bpf_enable_stats(0 /* BPF_STATS_RUN_TIME */) as number;
  if (fd < 0) throw new BpfError(`enabling BPF stats: ${errnoName(fd)}`, -fd, hintFor(fd));
  let open = true;
  const h = {
    close() {
      if (!open) return;
      open = false;
      untrack(h);
      C.close(fd);
    },
    [Symbol.dispose]() {
      h.close();
    },
  };
  return track(h);
}

export class BpfObject implements Disposable {
  readonly programs = new Map<string, Program>();
  private readonly mapPtrs = new Map<string, Ptr>();
  private readonly mapHandles = new Map<string, BpfMap>();
  private readonly links = new Set<Link>();
  private _btf: Btf | null = null;
  private loaded = false;
  private closed = false;

  private constructor(
    private ptr: Ptr,
    readonly path: string,
  ) {
    for (let p = B.bpf_object__next_program(ptr, NULL) as Ptr; p !== NULL; p = B.bpf_object__next_program(ptr, p) as Ptr) {
      const name = decodeCString(B.bpf_program__name(p) as Ptr)!;
      this.programs.set(name, new Program(this, p, name, decodeCString(B.bpf_program__section_name(p) as Ptr) ?? ''));
    }
    for (let m = B.bpf_object__next_map(ptr, NULL) as Ptr; m !== NULL; m = B.bpf_object__next_map(ptr, m) as Ptr) {
      this.mapPtrs.set(decodeCString(B.bpf_map__name(m) as Ptr)!, m);
    }
    track(this);
  }

  static open(file: string, opts: OpenOptions = {}): BpfObject {
    if (!fs.existsSync(file)) throw new BpfError(`no BPF object at ${file}`, 2, 'build it first: pnpm lab build');
    const o = {
      sz: koffi.sizeof(bpf_object_open_opts),
      object_name: opts.name ?? null,
      relaxed_maps: false,
      pin_root_path: opts.pinRoot ?? null,
      _stub: 0,
      kconfig: null,
      btf_custom_path: opts.btfCustomPath ?? null,
      kernel_log_buf: 0n,
      kernel_log_size: 0,
      kernel_log_level: 0,
    };
    const { result: p, log } = captureLibbpf(() => B.bpf_object__open_file(file, o) as Ptr);
    if (p === NULL) {
      const e = errno();
      throw new BpfError(`opening ${file}: ${errnoName(e)}${log ? `\n${log.trimEnd()}` : ''}`, e, hintFor(e, log) ?? 'is it a BPF ELF object built with clang -target bpf -g?', log);
    }
    return new BpfObject(p, file);
  }

  /** open + load in one go */
  static load(file: string, opts: OpenOptions & LoadOptions = {}): BpfObject {
    const obj = BpfObject.open(file, opts);
    try {
      return obj.load(opts);
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  get name(): string {
    return path.basename(this.path);
  }

  load(opts: LoadOptions = {}): this {
    if (this.loaded) return this;
    const size = opts.logSize ?? 1 << 20;
    for (const [name, p] of this.programs) {
      if (opts.skip?.includes(name)) B.bpf_program__set_autoload(p.ptr, false);
      else p.prepareLog(size, opts.logLevel ?? 0);
    }
    for (const [name, n] of Object.entries(opts.maxEntries ?? {})) B.bpf_map__set_max_entries(this.mapPtr(name), n);
    for (const [name, src] of Object.entries(opts.reuseMaps ?? {})) {
      const fd = typeof src === 'number' ? src : (B.bpf_obj_get(src) as number);
      if (fd < 0) continue; // nothing pinned yet: the map is created fresh
      const r = B.bpf_map__reuse_fd(this.mapPtr(name), fd) as number;
      if (typeof src === 'string') C.close(fd); // reuse_fd dups it
      if (r < 0) throw new BpfError(`reusing map ${name} from ${src}: ${errnoName(r)}`, -r, 'the pinned map has another type/size: remove the stale pin');
    }
    opts.beforeLoad?.(this);
    const { result: r, log } = captureLibbpf(() => B.bpf_object__load(this.ptr) as number);
    if (r < 0) {
      // programs load in order; the first autoloaded one without an fd is the one that failed
      const failed = [...this.programs.values()].find((p) => !opts.skip?.includes(p.name) && !p.loaded);
      if (failed && (failed.verifierLog || /BPF program load failed|prog '/.test(log))) {
        throw new VerifierError(this.name, failed.name, -r, failed.verifierLog, log);
      }
      throw new BpfError(`loading ${this.name}: ${errnoName(r)}${log ? `\n${indent(log)}` : ''}`, -r, hintFor(r, log), log);
    }
    this.loaded = true;
    return this;
  }

  program(name: string): Program {
    const p = this.programs.get(name);
    if (!p) throw new BpfError(`no program "${name}" in ${this.name}; it has: ${[...this.programs.keys()].join(', ')}`);
    return p;
  }

  private mapPtr(name: string): Ptr {
    const m = this.mapPtrs.get(name);
    if (m === undefined) throw new BpfError(`no map "${name}" in ${this.name}; it has: ${[...this.mapPtrs.keys()].join(', ')}`);
    return m;
  }

  get mapNames(): string[] {
    return [...this.mapPtrs.keys()];
  }

  /** Typed handle on a map of this object; codecs from the object's BTF. */
  map<K = unknown, V = unknown>(name: string): BpfMap<K, V> {
    const hit = this.mapHandles.get(name);
    if (hit) return hit as BpfMap<K, V>;
    const m = this.mapPtr(name);
    const meta = {
      name,
      type: B.bpf_map__type(m) as number,
      keySize: B.bpf_map__key_size(m) as number,
      valueSize: B.bpf_map__value_size(m) as number,
      maxEntries: B.bpf_map__max_entries(m) as number,
    };
    const kid = B.bpf_map__btf_key_type_id(m) as number;
    const vid = B.bpf_map__btf_value_type_id(m) as number;
    const fd = B.bpf_map__fd(m) as number;
    if (fd < 0) throw new BpfError(`map "${name}" has no fd: load the object first`);
    const key = kid ? this.btf.codec(kid) : rawCodec(meta.keySize);
    const value = vid ? this.btf.codec(vid) : rawCodec(meta.valueSize);
    const h = new BpfMap<K, V>(meta, fd, key as never, value as never, false, m);
    this.mapHandles.set(name, h);
    return h;
  }

  /** max_entries a map is (or will be) created with: readable before load, e.g. for capacity checks */
  maxEntries(mapName: string): number {
    return B.bpf_map__max_entries(this.mapPtr(mapName)) as number;
  }

  /** Set the pin path of a map before load (maps pinned there are reused if present). */
  setPinPath(mapName: string, pinPath: string): void {
    const r = B.bpf_map__set_pin_path(this.mapPtr(mapName), pinPath) as number;
    if (r < 0) throw new BpfError(`setting pin path of ${mapName}: ${errnoName(r)}`, -r);
  }

  /**
   * Set a global variable before load, by name, encoded with its BTF type. For `const volatile`
   * globals (.rodata) the verifier then sees a constant and prunes the branches it decides.
   */
  setGlobal(name: string, value: unknown): void {
    if (this.loaded) throw new BpfError(`setGlobal(${name}) after load: globals are fixed at load time (use a map for live changes)`);
    const g = this.btf.globalVar(name);
    if (!g) throw new BpfError(`${this.name} has no global variable "${name}"`);
    const m = [...this.mapPtrs.entries()].find(([n]) => n.endsWith(g.section))?.[1];
    if (m === undefined) throw new BpfError(`${this.name}: no map for section ${g.section}`);
    const size = [0];
    const p = B.bpf_map__initial_value(m, size) as Ptr;
    if (p === NULL) throw new BpfError(`${this.name}: section ${g.section} has no initial value`);
    this.btf.codec(g.type).encode(value, new DataView(koffi.view(p, size[0]!) as ArrayBuffer), g.offset);
  }

  /** Raw access to the .rodata initial image before load (prefer setGlobal). */
  setRodata(bytes: (buf: DataView) => void): void {
    const m = [...this.mapPtrs.entries()].find(([n]) => n.endsWith('.rodata'))?.[1];
    if (m === undefined) throw new BpfError(`${this.name} has no .rodata`);
    const size = [0];
    const p = B.bpf_map__initial_value(m, size) as Ptr;
    bytes(new DataView(koffi.view(p, size[0]!) as ArrayBuffer));
  }

  get btf(): Btf {
    if (!this._btf) {
      const p = B.bpf_object__btf(this.ptr) as Ptr;
      if (p === NULL) throw new BpfError(`${this.name} has no BTF`, 0, 'compile with clang -g');
      this._btf = new Btf(p, false);
    }
    return this._btf;
  }

  /** @internal links made by this object's programs are closed with it */
  adopt(l: Link): Link {
    this.links.add(l);
    return l;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of [...this.links].reverse()) l.close();
    this.links.clear();
    untrack(this);
    B.bpf_object__close(this.ptr);
    this.ptr = NULL;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function indent(s: string): string {
  return s.trimEnd().split('\n').map((l) => `    ${l}`).join('\n');
}
