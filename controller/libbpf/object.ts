// BpfObject / Program, after cilium/ebpf's Collection/Program: open (spec) first, load (kernel
// objects) second, every handle closable. libbpf does the ELF parsing, CO-RE relocation and
// attach; this file only calls it and turns failures into errors a user can act on.
import fs from 'node:fs';
import path from 'node:path';
import koffi from 'koffi';
import { B, C, NULL, bpf_object_open_opts, bpf_prog_info_head, bpf_test_run_opts, decodeProgInfo, errno, view, type Ptr } from './ffi.ts';
import { Btf } from './btf.ts';
import { BpfError, Errno, VerifierError, errnoName, hintFor } from './errors.ts';
import { Link } from './link.ts';
import { BpfMap, mapTypeName, rawCodec } from './map.ts';
import type { Codec } from './btf.ts';
import { captureLibbpf } from './log.ts';
import { track, untrack } from './lifecycle.ts';

export { XdpFlags, TcAttachPoint } from './attach/index.ts';

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
  /** maps not to create (only the skipped programs use them, e.g. a map type this kernel lacks) */
  noCreate?: string[];
  /** set max_entries of maps before they are created */
  maxEntries?: Record<string, number>;
  /** set map_flags of maps before they are created (replaces the flags the object declares) */
  mapFlags?: Record<string, number>;
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
  /** runs the kernel skipped because the program was already running on that CPU (5.12+; counted without BPF stats) */
  recursionMisses: bigint;
  verifiedInsns: number;
  xlatedLen: number;
  jitedLen: number;
  /** the kernel's hash of the instructions as loaded, map references zeroed (bpftool's "tag"):
   *  equal for two loads of the same code against the same kernel, whatever maps they use */
  tag: string;
}

export class Program {
  private logBuf: Buffer | null = null;
  constructor(
    readonly object: BpfObject,
    private readonly _ptr: Ptr,
    readonly name: string,
    readonly section: string,
  ) {}

  /** libbpf's struct bpf_program *; freed with its object, so a handle kept past close() throws */
  get ptr(): Ptr {
    if (this.object.isClosed) throw new BpfError(`program ${this.name} used after its object ${this.object.name} was closed`, Errno.EBADF, 'open and load the object again');
    return this._ptr;
  }

  get fd(): number {
    return B.bpf_program__fd(this.ptr);
  }

  get type(): number {
    return B.bpf_program__type(this.ptr);
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

  // Attaching lives in ./attach/<kind>.ts (one module per hook kind, inputs validated first, named
  // errors): attachTc(prog, …), attachCgroup(prog, …), attachTracepoint(prog, …), …

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
    const r = B.bpf_prog_test_run_opts(this.fd, o);
    if (r < 0) throw new BpfError(`test run of ${this.name}: ${errnoName(r)}`, -r, r === -Errno.ENOTSUPP || r === -Errno.EOPNOTSUPP ? 'this program type has no BPF_PROG_TEST_RUN on this kernel' : hintFor(r));
    return { retval: o.retval, durationNs: o.duration, dataOut: dataOut.subarray(0, o.data_size_out), ctxOut: ctxOut?.subarray(0, o.ctx_size_out) };
  }

  /** Kernel's view of the program: id, run_time_ns/run_cnt (with stats enabled), verified insns. */
  info(): ProgInfo {
    return progInfo(this.fd);
  }
}

/** bpf_obj_get_info_by_fd into buf (a struct bpf_prog_info head, array pointers set where wanted): the decoded head */
function progInfoHead(fd: number, buf = Buffer.alloc(koffi.sizeof(bpf_prog_info_head))): ReturnType<typeof decodeProgInfo> {
  const r = B.bpf_obj_get_info_by_fd(fd, buf, [buf.length]);
  if (r < 0) throw new BpfError(`prog info: ${errnoName(r)}`, -r);
  return decodeProgInfo(buf);
}

/** The ids of the maps a loaded program uses (bpf_prog_info.map_ids: a second info call with room for them). */
export function progMapIds(fd: number): number[] {
  const n = progInfoHead(fd).nr_map_ids;
  if (!n) return [];
  const ids = Buffer.alloc(4 * n);
  const q = Buffer.alloc(koffi.sizeof(bpf_prog_info_head));
  q.writeUInt32LE(n, koffi.offsetof(bpf_prog_info_head, 'nr_map_ids'));
  q.writeBigUInt64LE(BigInt(koffi.address(ids) as bigint), koffi.offsetof(bpf_prog_info_head, 'map_ids'));
  return Array.from({ length: Math.min(n, progInfoHead(fd, q).nr_map_ids) }, (_, i) => ids.readUInt32LE(4 * i));
}

/** The ids of the loaded programs that use the map with this id (all programs walked: a CLI-time question). */
export function progsUsingMap(mapId: number): number[] {
  const found: number[] = [];
  const next = [0];
  for (let id = 0; B.bpf_prog_get_next_id(id, next) === 0; id = next[0]!) {
    const fd = B.bpf_prog_get_fd_by_id(next[0]!);
    if (fd < 0) continue; // gone meanwhile
    try {
      if (progMapIds(fd).includes(mapId)) found.push(next[0]!);
    } catch { /* gone meanwhile */ } finally {
      C.close(fd);
    }
  }
  return found;
}

export function progInfo(fd: number): ProgInfo {
  const info = progInfoHead(fd);
  return {
    id: info.id,
    name: String(info.name ?? ''),
    type: info.type,
    runTimeNs: BigInt(info.run_time_ns),
    runCnt: BigInt(info.run_cnt),
    recursionMisses: BigInt(info.recursion_misses ?? 0),
    verifiedInsns: info.verified_insns,
    xlatedLen: info.xlated_prog_len,
    jitedLen: info.jited_prog_len,
    tag: Buffer.from(info.tag as unknown as number[]).toString('hex'),
  };
}

/** progInfo of the loaded program with this id, or null when there is none (any more) */
export function progInfoById(id: number): ProgInfo | null {
  const fd = B.bpf_prog_get_fd_by_id(id);
  if (fd < 0) return null;
  try {
    return progInfo(fd);
  } finally {
    C.close(fd);
  }
}

/** Turn on run_time_ns/run_cnt accounting (BPF_ENABLE_STATS) while the returned handle is open. */
export function enableStats(): Disposable & { close(): void } {
  const fd = B.bpf_enable_stats(0 /* BPF_STATS_RUN_TIME */);
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
  private loadFailed = false;

  private constructor(
    private ptr: Ptr,
    readonly path: string,
  ) {
    for (let p = B.bpf_object__next_program(ptr, NULL); p !== NULL; p = B.bpf_object__next_program(ptr, p)) {
      const name = (B.bpf_program__name(p))!;
      this.programs.set(name, new Program(this, p, name, (B.bpf_program__section_name(p)) ?? ''));
    }
    for (let m = B.bpf_object__next_map(ptr, NULL); m !== NULL; m = B.bpf_object__next_map(ptr, m)) {
      this.mapPtrs.set((B.bpf_map__name(m))!, m);
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
    const { result: p, log } = captureLibbpf(() => B.bpf_object__open_file(file, o));
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
    // libbpf takes an object as loaded even when its load failed: a second attempt (with
    // LoadOptions.skip, say) got a bare EINVAL
    if (this.loadFailed) throw new BpfError(`${this.name}: its load failed once; libbpf loads an object once`, Errno.EINVAL, 'open the object again (BpfObject.load reopens it) to load with other options');
    const size = opts.logSize ?? 1 << 20;
    for (const [name, p] of this.programs) {
      if (opts.skip?.includes(name)) B.bpf_program__set_autoload(p.ptr, false);
      else p.prepareLog(size, opts.logLevel ?? 0);
    }
    for (const name of opts.noCreate ?? []) B.bpf_map__set_autocreate(this.mapPtr(name), false);
    for (const [name, n] of Object.entries(opts.maxEntries ?? {})) B.bpf_map__set_max_entries(this.mapPtr(name), n);
    for (const [name, f] of Object.entries(opts.mapFlags ?? {})) B.bpf_map__set_map_flags(this.mapPtr(name), f);
    for (const [name, src] of Object.entries(opts.reuseMaps ?? {})) {
      const m = this.mapPtr(name); // an unknown name throws before a pinned map's fd is taken
      const fd = typeof src === 'number' ? src : (B.bpf_obj_get(src));
      if (fd < 0) continue; // nothing pinned yet: the map is created fresh
      const r = B.bpf_map__reuse_fd(m, fd);
      if (typeof src === 'string') C.close(fd); // reuse_fd dups it
      if (r < 0) throw new BpfError(`reusing map ${name} from ${src}: ${errnoName(r)}`, -r, 'the pinned map has another type/size: remove the stale pin');
    }
    opts.beforeLoad?.(this);
    const { result: r, log } = captureLibbpf(() => B.bpf_object__load(this.ptr));
    if (r < 0) {
      this.loadFailed = true;
      // the one libbpf names in its log, else the first autoloaded one without an fd (libbpf's
      // order is not always ours: a failure of the last program was blamed on the first)
      const named = /prog '([^']+)': (?:BPF program load failed|failed to load)/.exec(log)?.[1];
      const failed = (named ? this.programs.get(named) : undefined) ?? [...this.programs.values()].find((p) => !opts.skip?.includes(p.name) && !p.loaded);
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
    // libbpf freed its maps with the object: a pointer read now would give an fd number another
    // map may hold (a lazy skeleton getter after close made a handle to it)
    if (this.closed) throw new BpfError(`${this.name} is closed: its maps are gone`, Errno.EBADF);
    const m = this.mapPtrs.get(name);
    if (m === undefined) throw new BpfError(`no map "${name}" in ${this.name}; it has: ${[...this.mapPtrs.keys()].join(', ')}`);
    return m;
  }

  get mapNames(): string[] {
    return [...this.mapPtrs.keys()];
  }

  /** A map's type, sizes and BTF type ids as libbpf has them (readable before load). */
  mapSpec(name: string): MapSpec {
    const m = this.mapPtr(name);
    return {
      name,
      type: B.bpf_map__type(m),
      keySize: B.bpf_map__key_size(m),
      valueSize: B.bpf_map__value_size(m),
      maxEntries: B.bpf_map__max_entries(m),
      flags: B.bpf_map__map_flags(m),
      keyTypeId: B.bpf_map__btf_key_type_id(m),
      valueTypeId: B.bpf_map__btf_value_type_id(m),
    };
  }

  /**
   * Typed handle on a map of this object; codecs from the object's BTF. With `shape` (what a
   * generated skeleton expects) the map's type and key/value sizes are checked first, as aya's
   * HashMap<K, V>::try_from does: a skeleton older than its object fails here, not with garbage.
   */
  map<K = unknown, V = unknown>(name: string, shape?: MapShape): BpfMap<K, V> {
    if (shape) this.checkMap(name, shape);
    const hit = this.mapHandles.get(name);
    if (hit) return hit as BpfMap<K, V>;
    const m = this.mapPtr(name);
    const { keyTypeId, valueTypeId, ...meta } = this.mapSpec(name);
    const fd = B.bpf_map__fd(m);
    if (fd < 0) throw new BpfError(`map "${name}" has no fd: load the object first`);
    const key: Codec<K> = keyTypeId ? this.btf.codec<K>(keyTypeId) : rawCodec<K>(meta.keySize);
    const value: Codec<V> = valueTypeId ? this.btf.codec<V>(valueTypeId) : rawCodec<V>(meta.valueSize);
    const h = new BpfMap<K, V>(meta, fd, key, value, false, m);
    this.mapHandles.set(name, h);
    return h;
  }

  /** Throw unless map `name` has the type and key/value sizes of `shape`. */
  checkMap(name: string, shape: MapShape): void {
    checkShape(`map "${name}" of ${this.name}`, this.mapSpec(name), shape, 'its skeleton');
  }

  /**
   * The map `name` as an earlier process pinned it at `pinPath` (e.g. a daemon's), decoded with
   * this object's BTF for that map and checked against its declaration here, so a pin left by an
   * older build is refused instead of misread.
   */
  openPinnedMap<K = unknown, V = unknown>(name: string, pinPath: string): BpfMap<K, V> {
    const s = this.mapSpec(name);
    const key: Codec<K> = s.keyTypeId ? this.btf.codec<K>(s.keyTypeId) : rawCodec<K>(s.keySize);
    const value: Codec<V> = s.valueTypeId ? this.btf.codec<V>(s.valueTypeId) : rawCodec<V>(s.valueSize);
    const m = BpfMap.openPinned<K, V>(pinPath, { key, value });
    try {
      checkShape(`the map pinned at ${pinPath}`, m.meta, s, `${this.name}'s "${name}"`);
    } catch (e) {
      m.close();
      throw e;
    }
    return m;
  }

  /** max_entries a map is (or will be) created with: readable before load, e.g. for capacity checks */
  maxEntries(mapName: string): number {
    return B.bpf_map__max_entries(this.mapPtr(mapName));
  }

  /** Set the pin path of a map before load (maps pinned there are reused if present). */
  setPinPath(mapName: string, pinPath: string): void {
    const r = B.bpf_map__set_pin_path(this.mapPtr(mapName), pinPath);
    if (r < 0) throw new BpfError(`setting pin path of ${mapName}: ${errnoName(r)}`, -r);
  }

  /**
   * Set a global variable before load, by name, encoded with its BTF type. For `const volatile`
   * globals (.rodata) the verifier then sees a constant and prunes the branches it decides.
   */
  setGlobal(name: string, value: unknown): void {
    if (this.loaded) throw new BpfError(`setGlobal(${name}) after load: globals are fixed at load time (use a map for live changes)`);
    const { g, m } = this.globalSection(name);
    const size = [0];
    const p = B.bpf_map__initial_value(m, size);
    if (p === NULL) throw new BpfError(`${this.name}: section ${g.section} has no initial value`);
    this.btf.codec(g.type).encode(value, new DataView(view(p, size[0]!)), g.offset);
  }

  /**
   * Read a global variable: after load the live value of a writable section (.bss/.data, read
   * from its one-entry array map), before load the initial value.
   */
  getGlobal<T = unknown>(name: string): T {
    const { g, m } = this.globalSection(name);
    const codec = this.btf.codec<T>(g.type);
    if (!this.loaded) {
      const size = [0];
      const p = B.bpf_map__initial_value(m, size);
      if (p === NULL) throw new BpfError(`${this.name}: section ${g.section} has no initial value`);
      return codec.decode(new DataView(view(p, size[0]!)), g.offset);
    }
    const buf = Buffer.alloc(B.bpf_map__value_size(m));
    const r = B.bpf_map_lookup_elem(B.bpf_map__fd(m), Buffer.alloc(4), buf);
    if (r < 0) throw new BpfError(`reading ${name} of ${this.name}: ${errnoName(r)}`, -r, g.section === '.rodata' ? 'a .rodata global is fixed at load: read it before load' : undefined);
    return codec.decode(new DataView(buf.buffer, buf.byteOffset, buf.length), g.offset);
  }

  private globalSection(name: string): { g: NonNullable<ReturnType<Btf['globalVar']>>; m: Ptr } {
    const g = this.btf.globalVar(name);
    if (!g) throw new BpfError(`${this.name} has no global variable "${name}"`);
    const m = [...this.mapPtrs.entries()].find(([n]) => n.endsWith(g.section))?.[1];
    if (m === undefined) throw new BpfError(`${this.name}: no map for section ${g.section}`);
    return { g, m };
  }

  /** Raw access to the .rodata initial image before load (prefer setGlobal). */
  setRodata(bytes: (buf: DataView) => void): void {
    // after load libbpf maps .rodata read-only (a write would be a SIGSEGV, no cleanup run); after
    // close it is unmapped
    if (this.closed) throw new BpfError(`${this.name} is closed`, Errno.EBADF);
    if (this.loaded) throw new BpfError(`${this.name}: .rodata is fixed at load`, Errno.EPERM, 'set .rodata before load');
    const m = [...this.mapPtrs.entries()].find(([n]) => n.endsWith('.rodata'))?.[1];
    if (m === undefined) throw new BpfError(`${this.name} has no .rodata`);
    const size = [0];
    const p = B.bpf_map__initial_value(m, size);
    if (p === NULL) throw new BpfError(`${this.name}: .rodata has no initial value`);
    bytes(new DataView(view(p, size[0]!)));
  }

  get btf(): Btf {
    if (!this._btf) {
      const p = B.bpf_object__btf(this.ptr);
      if (p === NULL) throw new BpfError(`${this.name} has no BTF`, 0, 'compile with clang -g');
      this._btf = new Btf(p, false);
    }
    return this._btf;
  }

  /** @internal links made by this object's programs are closed with it */
  adopt(l: Link): Link {
    this.links.add(l);
    // a controller that replaces links as it runs (energy's tick with its switch hook) grew the
    // set by every closed one for as long as the object lived
    l.onClose = () => this.links.delete(l);
    return l;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of [...this.links].reverse()) l.close();
    this.links.clear();
    untrack(this);
    B.bpf_object__close(this.ptr);
    this.ptr = NULL;
    // handles given out point into what was just freed: a map's fd number is soon another map's,
    // so a write through a kept handle would land there; they throw from now on
    for (const h of this.mapHandles.values()) h.invalidate();
    this.mapHandles.clear();
    this._btf?.close(); // the object's own BTF (not freed here: libbpf freed it with the object)
    this._btf = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** What a skeleton expects of a map: its type and key/value sizes (max_entries may be changed). */
export interface MapShape {
  type: number;
  keySize: number;
  valueSize: number;
}

export interface MapSpec extends MapShape {
  name: string;
  maxEntries: number;
  /** map_flags as declared (BPF_F_NO_PREALLOC, …) */
  flags: number;
  /** BTF type ids of key and value (0: none, e.g. ring buffers and map-of-maps values) */
  keyTypeId: number;
  valueTypeId: number;
}

function checkShape(what: string, got: MapShape, want: MapShape, wanter: string): void {
  const d = (s: MapShape) => `type ${mapTypeName(s.type)}, key ${s.keySize} B, value ${s.valueSize} B`;
  if (got.type !== want.type || got.keySize !== want.keySize || got.valueSize !== want.valueSize) {
    const fix = wanter === 'its skeleton' ? 'the generated skeleton (bpf/gen) is older than the object: run pnpm lab build' : 'the pin was made by another build: stop what owns it and remove the stale pin';
    throw new BpfError(`${what} is ${d(got)}, but ${wanter} expects ${d(want)}`, 0, fix);
  }
}

function indent(s: string): string {
  return s.trimEnd().split('\n').map((l) => `    ${l}`).join('\n');
}
