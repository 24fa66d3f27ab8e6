// Typed map handles (aya's HashMap<K,V> idea): keys and values go through BTF codecs, per-CPU
// maps give one value per possible CPU, outer maps of map-in-map take inner maps.
import fs from 'node:fs';
import koffi from 'koffi';
import { B, C, NULL, bpf_map_batch_opts, bpf_map_create_opts, type Ptr } from './ffi.ts';
import { Btf, type Codec } from './btf.ts';
import { BpfError, Errno, errnoName } from './errors.ts';
import { track, untrack } from './lifecycle.ts';

export const MapType = {
  HASH: 1, ARRAY: 2, PROG_ARRAY: 3, PERF_EVENT_ARRAY: 4, PERCPU_HASH: 5, PERCPU_ARRAY: 6, STACK_TRACE: 7,
  CGROUP_ARRAY: 8, LRU_HASH: 9, LRU_PERCPU_HASH: 10, LPM_TRIE: 11, ARRAY_OF_MAPS: 12, HASH_OF_MAPS: 13,
  DEVMAP: 14, SOCKMAP: 15, CPUMAP: 16, XSKMAP: 17, SOCKHASH: 18, CGROUP_STORAGE: 19, REUSEPORT_SOCKARRAY: 20,
  PERCPU_CGROUP_STORAGE: 21, QUEUE: 22, STACK: 23, SK_STORAGE: 24, DEVMAP_HASH: 25, STRUCT_OPS: 26,
  RINGBUF: 27, INODE_STORAGE: 28, TASK_STORAGE: 29, BLOOM_FILTER: 30,
} as const;

/** 'HASH' for 1, … (the number itself for a type this table does not know) */
export function mapTypeName(type: number): string {
  return Object.entries(MapType).find(([, v]) => v === type)?.[0] ?? String(type);
}

/** the kernel (or this map type) has no batch operations: fall back to one element at a time */
const batchUnsupported = (r: number) => r === -Errno.EINVAL || r === -Errno.EOPNOTSUPP || r === -Errno.ENOTSUPP;

const PERCPU = new Set<number>([MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH, MapType.PERCPU_CGROUP_STORAGE]);
const OF_MAPS = new Set<number>([MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS]);

export const UpdateFlags = { ANY: 0, NOEXIST: 1, EXIST: 2 } as const;

/**
 * A codec for maps without BTF for key/value: numbers for 4/8 bytes, raw bytes otherwise. T is the
 * caller's claim about those bytes (a skeleton's map shape check backs it), as with Btf.codec<T>.
 */
export function rawCodec<T = unknown>(size: number): Codec<T> {
  return rawCodecOf(size) as Codec<T>;
}

function rawCodecOf(size: number): Codec<unknown> {
  if (size === 4) return { size, tsType: 'number', decode: (dv, o) => dv.getUint32(o, true), encode: (v, dv, o) => dv.setUint32(o, Number(v) >>> 0, true) };
  if (size === 8) return { size, tsType: 'bigint', decode: (dv, o) => dv.getBigUint64(o, true), encode: (v, dv, o) => dv.setBigUint64(o, BigInt(v as bigint), true) };
  return {
    size,
    tsType: 'Uint8Array',
    decode: (dv, o) => new Uint8Array(dv.buffer.slice(dv.byteOffset + o, dv.byteOffset + o + size)),
    encode: (v, dv, o) => new Uint8Array(dv.buffer, dv.byteOffset + o, size).set(v as Uint8Array),
  };
}

const possibleCpus = (): number => B.libbpf_num_possible_cpus();

export interface MapMeta {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

export class BpfMap<K = unknown, V = unknown> implements Disposable {
  readonly perCpu: boolean;
  readonly ncpus: number;
  /** bytes of one CPU's slot in a per-CPU value (rounded up to 8, as the kernel lays it out) */
  readonly slot: number;
  private readonly kbuf: Buffer;
  private readonly kdv: DataView;
  private readonly vbuf: Buffer;
  private readonly vdv: DataView;
  private batchOk: boolean | undefined;

  constructor(
    readonly meta: MapMeta,
    /** the fd; owned by the object for object maps, by this handle for created/pinned ones */
    private _fd: number,
    public keyCodec: Codec<K>,
    public valueCodec: Codec<V>,
    private readonly ownsFd = false,
    /** libbpf's struct bpf_map *, when the map belongs to an object */
    private _ptr: Ptr = NULL,
  ) {
    this.perCpu = PERCPU.has(meta.type);
    this.ncpus = this.perCpu ? possibleCpus() : 1;
    this.slot = this.perCpu ? Math.ceil(meta.valueSize / 8) * 8 : meta.valueSize;
    this.kbuf = Buffer.alloc(Math.max(meta.keySize, 1));
    this.kdv = new DataView(this.kbuf.buffer, this.kbuf.byteOffset, this.kbuf.length);
    this.vbuf = Buffer.alloc(Math.max(this.slot * this.ncpus, 8));
    this.vdv = new DataView(this.vbuf.buffer, this.vbuf.byteOffset, this.vbuf.length);
    if (ownsFd) track(this);
  }

  get name(): string {
    return this.meta.name;
  }

  /**
   * The map's fd. Once the handle (or the object that owns the map) is closed it throws: the
   * number is soon another file's, and a write through it would land in another map.
   */
  get fd(): number {
    if (this._fd < 0) throw new BpfError(`map ${this.meta.name} used after it was closed`, Errno.EBADF, this.ownsFd ? 'open the map again' : 'its object was closed: open and load it again');
    return this._fd;
  }

  /** libbpf's struct bpf_map * when the map belongs to an object (NULL otherwise) */
  get ptr(): Ptr {
    return this._fd < 0 ? NULL : this._ptr;
  }

  /** @internal the owning object was closed */
  invalidate(): void {
    this._fd = -1;
    this._ptr = NULL;
  }

  /** Create a map at run time (e.g. the inner maps of a map-in-map). */
  static create<K, V>(opts: { type: number; name?: string; keySize: number; valueSize: number; maxEntries: number; flags?: number; innerMapFd?: number; keyCodec?: Codec<K>; valueCodec?: Codec<V> }): BpfMap<K, V> {
    const o = { sz: koffi.sizeof(bpf_map_create_opts), btf_fd: 0, btf_key_type_id: 0, btf_value_type_id: 0, btf_vmlinux_value_type_id: 0, inner_map_fd: opts.innerMapFd ?? 0, map_flags: opts.flags ?? 0, map_extra: 0, numa_node: 0, map_ifindex: 0 };
    const fd = B.bpf_map_create(opts.type, opts.name ?? null, opts.keySize, opts.valueSize, opts.maxEntries, o);
    if (fd < 0) throw new BpfError(`creating map ${opts.name ?? ''}: ${errnoName(fd)}`, -fd);
    return new BpfMap<K, V>(
      { name: opts.name ?? '', type: opts.type, keySize: opts.keySize, valueSize: opts.valueSize, maxEntries: opts.maxEntries },
      fd,
      opts.keyCodec ?? (rawCodec(opts.keySize) as Codec<K>),
      opts.valueCodec ?? (rawCodec(opts.valueSize) as Codec<V>),
      true,
    );
  }

  /**
   * Open a map pinned on bpffs (e.g. by a controller that has since restarted). Codecs come from
   * the BTF the kernel kept for the map (its creator's key/value types), so a new process decodes
   * it exactly as the one that created it; explicit codecs override.
   */
  static openPinned<K = unknown, V = unknown>(path: string, codecs?: { key?: Codec<K>; value?: Codec<V> }): BpfMap<K, V> {
    const fd = B.bpf_obj_get(path);
    if (fd < 0) throw new BpfError(`opening pinned map ${path}: ${errnoName(fd)}`, -fd, fd === -Errno.ENOENT ? 'nothing is pinned there: was the controller started?' : undefined);
    let btf: Btf | null = null;
    try {
      const info = mapInfo(fd);
      if (info.btfId && (!codecs?.key || !codecs?.value)) {
        const p = B.btf__load_from_kernel_by_id(info.btfId);
        if (p !== NULL) btf = new Btf(p, true);
      }
      const key = codecs?.key ?? (btf && info.btfKeyTypeId ? btf.codec<K>(info.btfKeyTypeId) : (rawCodec(info.keySize) as Codec<K>));
      const value = codecs?.value ?? (btf && info.btfValueTypeId ? btf.codec<V>(info.btfValueTypeId) : (rawCodec(info.valueSize) as Codec<V>));
      return new BpfMap<K, V>(info, fd, key, value, true);
    } catch (e) {
      C.close(fd);
      throw e;
    } finally {
      // codecs are closures over decoded type info, not over the BTF handle: free it now
      btf?.close();
    }
  }

  private encKey(k: K): Buffer {
    this.keyCodec.encode(k, this.kdv, 0);
    return this.kbuf;
  }

  private fail(op: string, r: number): never {
    throw new BpfError(`${op} on map "${this.name}": ${errnoName(r)}`, -r, r === -Errno.E2BIG ? 'the map is full (max_entries); raise it or delete entries' : undefined);
  }

  /** Value for a key, undefined when absent. Per-CPU maps: use getPerCpu(). */
  get(k: K): V | undefined {
    if (this.perCpu) throw new BpfError(`map "${this.name}" is per-CPU: use getPerCpu()`);
    const r = B.bpf_map_lookup_elem(this.fd, this.encKey(k), this.vbuf);
    if (r === -Errno.ENOENT) return undefined;
    if (r < 0) this.fail('lookup', r);
    return this.valueCodec.decode(this.vdv, 0);
  }

  /** Per-CPU maps: every CPU's value. */
  getPerCpu(k: K): V[] | undefined {
    if (!this.perCpu) throw new BpfError(`map "${this.name}" is not per-CPU`);
    const r = B.bpf_map_lookup_elem(this.fd, this.encKey(k), this.vbuf);
    if (r === -Errno.ENOENT) return undefined;
    if (r < 0) this.fail('lookup', r);
    return this.decodePerCpu(this.vdv, 0);
  }

  has(k: K): boolean {
    const r = B.bpf_map_lookup_elem(this.fd, this.encKey(k), this.vbuf);
    return r === 0;
  }

  /** Set a value. Per-CPU maps take one value (copied to every CPU) or an array of ncpus values. */
  set(k: K, v: V | V[], flags: number = UpdateFlags.ANY): void {
    this.encodeValue(v, this.vdv, 0);
    const r = B.bpf_map_update_elem(this.fd, this.encKey(k), this.vbuf, flags);
    if (r < 0) this.fail('update', r);
  }

  /** Map-in-map: point slot k at an inner map. */
  setInner(k: K, inner: BpfMap | number): void {
    if (!OF_MAPS.has(this.meta.type)) throw new BpfError(`map "${this.name}" is not a map-of-maps`);
    const fd = typeof inner === 'number' ? inner : inner.fd;
    const v = Buffer.alloc(4);
    v.writeUInt32LE(fd);
    const r = B.bpf_map_update_elem(this.fd, this.encKey(k), v, 0);
    if (r < 0) this.fail('update (inner map)', r);
  }

  /** Map-in-map: the id of the inner map at slot k. */
  innerId(k: K): number | undefined {
    const v = Buffer.alloc(4);
    const r = B.bpf_map_lookup_elem(this.fd, this.encKey(k), v);
    if (r === -Errno.ENOENT) return undefined;
    if (r < 0) this.fail('lookup (inner map)', r);
    return v.readUInt32LE();
  }

  delete(k: K): boolean {
    const r = B.bpf_map_delete_elem(this.fd, this.encKey(k));
    if (r === -Errno.ENOENT) return false;
    if (r < 0) this.fail('delete', r);
    return true;
  }

  /** Keys, by BPF_MAP_GET_NEXT_KEY (works on every kernel). */
  *keys(): Generator<K> {
    const cur = Buffer.alloc(this.kbuf.length);
    const next = Buffer.alloc(this.kbuf.length);
    const ndv = new DataView(next.buffer, next.byteOffset, next.length);
    let first = true;
    for (;;) {
      const r = B.bpf_map_get_next_key(this.fd, first ? null : cur, next);
      if (r === -Errno.ENOENT) return;
      if (r < 0) this.fail('get_next_key', r);
      first = false;
      next.copy(cur);
      yield this.keyCodec.decode(ndv, 0);
    }
  }

  /** Entries; uses BPF_MAP_LOOKUP_BATCH when the kernel and map type have it, else key walking. */
  *entries(): Generator<[K, V | V[]]> {
    if (this.batchOk !== false && this.meta.type !== MapType.ARRAY_OF_MAPS && this.meta.type !== MapType.HASH_OF_MAPS) {
      const got = this.lookupBatch();
      if (got) {
        yield* got;
        return;
      }
    }
    for (const k of this.keys()) {
      const v = this.perCpu ? this.getPerCpu(k) : this.get(k);
      if (v !== undefined) yield [k, v as V | V[]];
    }
  }

  [Symbol.iterator](): Generator<[K, V | V[]]> {
    return this.entries();
  }

  /** All entries in batches of `chunk` (one syscall per chunk); null when batching is unsupported. */
  lookupBatch(chunk = 256): [K, V | V[]][] | null {
    const ks = this.kbuf.length;
    const vs = this.slot * this.ncpus;
    const keys = Buffer.alloc(ks * chunk);
    const vals = Buffer.alloc(vs * chunk);
    const kdv = new DataView(keys.buffer, keys.byteOffset, keys.length);
    const vdv = new DataView(vals.buffer, vals.byteOffset, vals.length);
    // in/out batch tokens are opaque; for hash maps they are a u32 bucket index, for arrays a key
    const inB = Buffer.alloc(Math.max(ks, 8));
    const outB = Buffer.alloc(Math.max(ks, 8));
    const opts = { sz: koffi.sizeof(bpf_map_batch_opts), elem_flags: 0, flags: 0 };
    const out: [K, V | V[]][] = [];
    let first = true;
    for (;;) {
      const count = [chunk];
      const r = B.bpf_map_lookup_batch(this.fd, first ? null : inB, outB, keys, vals, count, opts);
      const n = count[0]!;
      if (r < 0 && r !== -Errno.ENOENT) {
        if (first && batchUnsupported(r)) {
          this.batchOk = false;
          return null;
        }
        this.fail('lookup_batch', r);
      }
      this.batchOk = true;
      for (let i = 0; i < n; i++) {
        out.push([this.keyCodec.decode(kdv, i * ks), this.perCpu ? this.decodePerCpu(vdv, i * vs) : this.valueCodec.decode(vdv, i * vs)]);
      }
      if (r === -Errno.ENOENT) return out; // ENOENT: no more entries
      outB.copy(inB);
      first = false;
    }
  }

  /**
   * Visit every entry's raw value bytes (`dv` at `off`; per-CPU maps: ncpus slots) without
   * decoding or keeping anything: lookupBatch decodes every key and value into one array (a
   * conntrack table of 2^26 entries is tens of GB of JS heap). `chunk` entries a syscall, reused
   * buffers; falls back to walking the keys where batching is unsupported.
   */
  scanValues(visit: (dv: DataView, off: number) => void, chunk = 4096): void {
    const ks = this.kbuf.length;
    const vs = this.slot * this.ncpus;
    if (this.batchOk !== false) {
      const keys = Buffer.alloc(ks * chunk);
      const vals = Buffer.alloc(vs * chunk);
      const vdv = new DataView(vals.buffer, vals.byteOffset, vals.length);
      const inB = Buffer.alloc(Math.max(ks, 8));
      const outB = Buffer.alloc(Math.max(ks, 8));
      const opts = { sz: koffi.sizeof(bpf_map_batch_opts), elem_flags: 0, flags: 0 };
      for (let first = true; ; first = false) {
        const count = [chunk];
        const r = B.bpf_map_lookup_batch(this.fd, first ? null : inB, outB, keys, vals, count, opts);
        if (r < 0 && r !== -Errno.ENOENT) {
          if (first && batchUnsupported(r)) {
            this.batchOk = false;
            break;
          }
          this.fail('lookup_batch', r);
        }
        this.batchOk = true;
        const n = count[0]!;
        for (let i = 0; i < n; i++) visit(vdv, i * vs);
        if (r === -Errno.ENOENT) return;
        outB.copy(inB);
      }
    }
    const cur = Buffer.alloc(ks);
    const next = Buffer.alloc(ks);
    const val = Buffer.alloc(Math.max(vs, 8));
    const vdv = new DataView(val.buffer, val.byteOffset, val.length);
    for (let first = true; ; first = false) {
      const r = B.bpf_map_get_next_key(this.fd, first ? null : cur, next);
      if (r === -Errno.ENOENT) return;
      if (r < 0) this.fail('get_next_key', r);
      next.copy(cur);
      if (B.bpf_map_lookup_elem(this.fd, cur, val) === 0) visit(vdv, 0);
    }
  }

  /** Write many entries with one syscall (BPF_MAP_UPDATE_BATCH); falls back to one update each. */
  updateBatch(entries: [K, V][], flags: number = UpdateFlags.ANY): void {
    if (entries.length === 0) return;
    const ks = this.kbuf.length;
    const vs = this.slot * this.ncpus;
    const keys = Buffer.alloc(ks * entries.length);
    const vals = Buffer.alloc(vs * entries.length);
    const kdv = new DataView(keys.buffer, keys.byteOffset, keys.length);
    const vdv = new DataView(vals.buffer, vals.byteOffset, vals.length);
    entries.forEach(([k, v], i) => {
      this.keyCodec.encode(k, kdv, i * ks);
      this.encodeValue(v, vdv, i * vs);
    });
    if (this.batchOk !== false) {
      const count = [entries.length];
      const r = B.bpf_map_update_batch(this.fd, keys, vals, count, { sz: koffi.sizeof(bpf_map_batch_opts), elem_flags: flags, flags: 0 });
      if (r === 0) return;
      if (!batchUnsupported(r)) this.fail('update_batch', r);
      this.batchOk = false;
    }
    entries.forEach(([k, v]) => this.set(k, v, flags));
  }

  /** Delete every entry (arrays: zero every slot). */
  clear(): void {
    if (this.meta.type === MapType.ARRAY || this.meta.type === MapType.PERCPU_ARRAY) {
      const zero = Buffer.alloc(this.vbuf.length);
      const k = Buffer.alloc(4);
      for (let i = 0; i < this.meta.maxEntries; i++) {
        k.writeUInt32LE(i);
        B.bpf_map_update_elem(this.fd, k, zero, 0);
      }
      return;
    }
    for (const k of [...this.keys()]) this.delete(k);
  }

  pin(path: string): void {
    const r = this.ptr !== NULL ? (B.bpf_map__pin(this.ptr, path)) : (B.bpf_obj_pin(this.fd, path));
    if (r < 0) this.fail(`pin at ${path}`, r);
  }

  /** remove the pin at `path` (an object's map: its pin path when none is given) */
  unpin(path?: string): void {
    void this.fd; // throws once closed (the libbpf map it names is gone)
    if (this._ptr !== NULL) {
      B.bpf_map__unpin(this._ptr, path ?? null);
      return;
    }
    // a created or opened-from-pin map has no libbpf map: unpinning is removing the file (it did
    // nothing, and the pin stayed on bpffs)
    if (path === undefined) throw new BpfError(`map "${this.name}" is not an object's map: unpin needs the pin's path`);
    fs.rmSync(path, { force: true });
  }

  private decodePerCpu(dv: DataView, off: number): V[] {
    const out: V[] = new Array(this.ncpus);
    for (let c = 0; c < this.ncpus; c++) out[c] = this.valueCodec.decode(dv, off + c * this.slot);
    return out;
  }

  private encodeValue(v: V | V[], dv: DataView, off: number): void {
    new Uint8Array(dv.buffer, dv.byteOffset + off, this.slot * this.ncpus).fill(0);
    if (!this.perCpu) {
      this.valueCodec.encode(v as V, dv, off);
      return;
    }
    const arr = Array.isArray(v) && !(this.valueCodec.tsType.endsWith('[]')) ? (v as V[]) : null;
    for (let c = 0; c < this.ncpus; c++) this.valueCodec.encode(arr ? arr[c]! : (v as V), dv, off + c * this.slot);
  }

  close(): void {
    if (!this.ownsFd || this._fd < 0) return;
    untrack(this);
    C.close(this._fd);
    this._fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export function mapInfo(fd: number): MapMeta & { id: number; flags: number; btfId: number; btfKeyTypeId: number; btfValueTypeId: number } {
  // struct bpf_map_info: type, id, key_size, value_size, max_entries, map_flags, name[16], ifindex,
  // btf_vmlinux_value_type_id, netns_dev, netns_ino, btf_id, btf_key_type_id, btf_value_type_id
  const b = Buffer.alloc(88);
  const len = [b.length];
  const r = B.bpf_obj_get_info_by_fd(fd, b, len);
  if (r < 0) throw new BpfError(`map info: ${errnoName(r)}`, -r);
  const name = b.subarray(24, 40);
  const end = name.indexOf(0);
  return {
    type: b.readUInt32LE(0),
    id: b.readUInt32LE(4),
    keySize: b.readUInt32LE(8),
    valueSize: b.readUInt32LE(12),
    maxEntries: b.readUInt32LE(16),
    flags: b.readUInt32LE(20),
    name: name.subarray(0, end < 0 ? 16 : end).toString(),
    btfId: b.readUInt32LE(64),
    btfKeyTypeId: b.readUInt32LE(68),
    btfValueTypeId: b.readUInt32LE(72),
  };
}

/** mapInfo of the map pinned at `path`, or null when nothing is pinned there (or it cannot be opened) */
export function pinnedMapInfo(path: string): ReturnType<typeof mapInfo> | null {
  const fd = B.bpf_obj_get(path);
  if (fd < 0) return null;
  try {
    return mapInfo(fd);
  } finally {
    C.close(fd);
  }
}
