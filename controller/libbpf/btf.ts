// Key/value codecs generated from BTF: the C struct is defined once (bpf/*.h), the TS side reads
// its layout (offsets, sizes, bitfields, padding) from the object's BTF at run time, and
// `pnpm lab build` emits matching TypeScript interfaces (bpf/gen/*.ts) for type checking.
import { B, NULL, view, type Ptr } from './ffi.ts';
import { BpfError, Errno } from './errors.ts';

export const enum Kind { INT = 1, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 }

export interface BtfMember { name: string; type: number; bitOffset: number; bitSize: number }
export interface BtfType {
  id: number;
  kind: Kind;
  name: string;
  size: number;
  /** referenced type for PTR/TYPEDEF/CONST/VOLATILE/…; element type for ARRAY */
  type: number;
  nelems: number;
  members: BtfMember[];
  int?: { signed: boolean; char: boolean; bool: boolean; bits: number; offset: number };
  enumValues?: { name: string; value: number | bigint }[];
}

export interface Codec<T = unknown> {
  readonly size: number;
  /** a TypeScript type expression for this value (used by the generator) */
  readonly tsType: string;
  decode(dv: DataView, off: number): T;
  encode(value: T, dv: DataView, off: number): void;
}

export class Btf {
  private cache = new Map<number, BtfType>();
  private codecs = new Map<number, Codec>();
  constructor(private _ptr: Ptr, private readonly owned: boolean) {}

  get ptr(): Ptr {
    if (this._ptr === NULL) throw new BpfError('BTF used after it was freed', Errno.EBADF);
    return this._ptr;
  }

  static vmlinux(): Btf | null {
    const p = B.btf__load_vmlinux_btf();
    return p === NULL ? null : new Btf(p, true);
  }

  /** BTF of an ELF file's .BTF section (a kernel image's vmlinux) or a raw BTF file, or null */
  static fromFile(path: string): Btf | null {
    const p = B.btf__parse(path, null);
    return p === NULL ? null : new Btf(p, true);
  }

  close(): void {
    if (this.owned && this._ptr !== NULL) B.btf__free(this._ptr);
    this._ptr = NULL;
  }

  get typeCount(): number {
    return B.btf__type_cnt(this.ptr);
  }

  findByName(name: string, kind: Kind): number {
    const id = B.btf__find_by_name_kind(this.ptr, name, kind);
    return id > 0 ? id : -1;
  }

  type(id: number): BtfType {
    const hit = this.cache.get(id);
    if (hit) return hit;
    if (id === 0) return { id: 0, kind: 0 as Kind, name: 'void', size: 0, type: 0, nelems: 0, members: [] };
    const p = B.btf__type_by_id(this.ptr, id);
    if (p === NULL) throw new Error(`BTF type id ${id} not found`);
    const head = new DataView(view(p, 12));
    const nameOff = head.getUint32(0, true);
    const info = head.getUint32(4, true);
    const sizeOrType = head.getUint32(8, true);
    const vlen = info & 0xffff;
    const kind = ((info >>> 24) & 0x1f) as Kind;
    const kflag = (info >>> 31) === 1;
    const t: BtfType = { id, kind, name: this.str(nameOff), size: 0, type: 0, nelems: 0, members: [] };
    switch (kind) {
      case Kind.INT: {
        const enc = new DataView(view(p + 12n, 4)).getUint32(0, true);
        t.size = sizeOrType;
        const e = (enc >>> 24) & 0x0f;
        t.int = { signed: (e & 1) !== 0, char: (e & 2) !== 0, bool: (e & 4) !== 0, offset: (enc >>> 16) & 0xff, bits: enc & 0xff };
        break;
      }
      case Kind.ARRAY: {
        const a = new DataView(view(p + 12n, 12));
        t.type = a.getUint32(0, true);
        t.nelems = a.getUint32(8, true);
        t.size = Number(B.btf__resolve_size(this.ptr, id));
        break;
      }
      case Kind.STRUCT:
      case Kind.UNION: {
        t.size = sizeOrType;
        const m = new DataView(view(p + 12n, 12 * Math.max(vlen, 1)));
        for (let i = 0; i < vlen; i++) {
          const off = m.getUint32(i * 12 + 8, true);
          t.members.push({
            name: this.str(m.getUint32(i * 12, true)),
            type: m.getUint32(i * 12 + 4, true),
            bitOffset: kflag ? off & 0xffffff : off,
            bitSize: kflag ? off >>> 24 : 0,
          });
        }
        break;
      }
      case Kind.ENUM:
      case Kind.ENUM64: {
        t.size = sizeOrType;
        const stride = kind === Kind.ENUM ? 8 : 12;
        const e = new DataView(view(p + 12n, stride * Math.max(vlen, 1)));
        t.enumValues = [];
        for (let i = 0; i < vlen; i++) {
          const name = this.str(e.getUint32(i * stride, true));
          const value = kind === Kind.ENUM ? e.getInt32(i * stride + 4, true) : (BigInt(e.getUint32(i * stride + 8, true)) << 32n) | BigInt(e.getUint32(i * stride + 4, true));
          t.enumValues.push({ name, value });
        }
        break;
      }
      case Kind.FLOAT:
        t.size = sizeOrType;
        break;
      case Kind.DATASEC: {
        // btf_var_secinfo {type (a VAR), offset, size}: where each global lives in .rodata/.bss/.data
        t.size = sizeOrType;
        const v = new DataView(view(p + 12n, 12 * Math.max(vlen, 1)));
        for (let i = 0; i < vlen; i++) {
          const varId = v.getUint32(i * 12, true);
          const vt = this.type(varId);
          t.members.push({ name: vt.name, type: vt.type, bitOffset: v.getUint32(i * 12 + 4, true) * 8, bitSize: v.getUint32(i * 12 + 8, true) * 8 });
        }
        break;
      }
      case Kind.PTR:
        t.size = 8;
        t.type = sizeOrType;
        break;
      default:
        t.type = sizeOrType;
        if (kind === Kind.TYPEDEF || kind === Kind.CONST || kind === Kind.VOLATILE || kind === Kind.RESTRICT || kind === Kind.TYPE_TAG) {
          t.size = Number(B.btf__resolve_size(this.ptr, id));
        }
    }
    this.cache.set(id, t);
    return t;
  }

  /** skip typedef/const/volatile/restrict/type_tag */
  resolve(id: number): BtfType {
    let t = this.type(id);
    while ([Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG].includes(t.kind)) t = this.type(t.type);
    return t;
  }

  /** All named types of a kind, e.g. every struct the object defines. */
  *named(kind: Kind): Generator<BtfType> {
    const n = this.typeCount;
    for (let id = 1; id < n; id++) {
      const t = this.type(id);
      if (t.kind === kind && t.name) yield t;
    }
  }

  /** Byte offset and size of each member of a struct, from BTF (for hand-optimised decoders). */
  layout(structName: string): Record<string, { offset: number; size: number }> {
    const id = this.findByName(structName, Kind.STRUCT);
    if (id < 0) throw new Error(`struct ${structName} not found in BTF`);
    const out: Record<string, { offset: number; size: number }> = {};
    for (const m of this.type(id).members) out[m.name] = { offset: m.bitOffset / 8, size: this.resolve(m.type).size };
    return out;
  }

  /** The global variable `name` in a data section (.rodata, .bss, .data): section, offset, type. */
  globalVar(name: string): { section: string; offset: number; size: number; type: number } | null {
    for (const sec of this.named(Kind.DATASEC)) {
      const m = sec.members.find((x) => x.name === name);
      if (m) return { section: sec.name, offset: m.bitOffset / 8, size: m.bitSize / 8, type: m.type };
    }
    return null;
  }

  codec<T = unknown>(id: number): Codec<T> {
    let c = this.codecs.get(id);
    if (!c) {
      c = this.build(id);
      this.codecs.set(id, c);
    }
    return c as Codec<T>;
  }

  codecByName<T = unknown>(name: string): Codec<T> {
    for (const kind of [Kind.STRUCT, Kind.UNION, Kind.TYPEDEF, Kind.ENUM]) {
      const id = this.findByName(name, kind);
      if (id > 0) return this.codec<T>(id);
    }
    throw new Error(`type "${name}" not found in BTF`);
  }

  private str(off: number): string {
    return (B.btf__name_by_offset(this.ptr, off)) ?? '';
  }

  private build(id: number): Codec {
    const t = this.resolve(id);
    switch (t.kind) {
      case Kind.INT:
        return intCodec(t.size, t.int!.signed, t.int!.bool);
      case Kind.ENUM:
      case Kind.ENUM64:
        return intCodec(t.size, t.kind === Kind.ENUM ? true : false, false);
      case Kind.PTR:
        return intCodec(8, false, false);
      case Kind.FLOAT:
        return t.size === 4
          ? { size: 4, tsType: 'number', decode: (dv, o) => dv.getFloat32(o, true), encode: (v, dv, o) => dv.setFloat32(o, v as number, true) }
          : { size: 8, tsType: 'number', decode: (dv, o) => dv.getFloat64(o, true), encode: (v, dv, o) => dv.setFloat64(o, v as number, true) };
      case Kind.ARRAY:
        return this.arrayCodec(t);
      case Kind.STRUCT:
      case Kind.UNION:
        return this.structCodec(t);
      default:
        throw new Error(`cannot build a codec for BTF kind ${t.kind} (type id ${id} "${t.name}")`);
    }
  }

  private arrayCodec(t: BtfType): Codec {
    const elem = this.resolve(t.type);
    const n = t.nelems;
    if (elem.kind === Kind.INT && elem.size === 1 && (elem.int!.char || elem.name === 'char')) {
      // char[N]: a NUL-terminated string
      return {
        size: n,
        tsType: 'string',
        decode(dv, o) {
          const u8 = new Uint8Array(dv.buffer, dv.byteOffset + o, n);
          const end = u8.indexOf(0);
          return Buffer.from(u8.buffer, u8.byteOffset, end < 0 ? n : end).toString('utf8');
        },
        encode(v, dv, o) {
          const u8 = new Uint8Array(dv.buffer, dv.byteOffset + o, n);
          u8.fill(0);
          const b = Buffer.from(String(v ?? ''), 'utf8');
          u8.set(b.subarray(0, n - 1));
        },
      };
    }
    if (elem.kind === Kind.INT && elem.size === 1) {
      // __u8 addr[16] and friends: raw bytes
      return {
        size: n,
        tsType: 'Uint8Array',
        decode: (dv, o) => new Uint8Array(dv.buffer.slice(dv.byteOffset + o, dv.byteOffset + o + n)),
        encode(v, dv, o) {
          const u8 = new Uint8Array(dv.buffer, dv.byteOffset + o, n);
          u8.fill(0);
          if (v) u8.set((v as Uint8Array).subarray(0, n));
        },
      };
    }
    const ec = this.codec(t.type);
    const stride = ec.size;
    return {
      size: stride * n,
      tsType: `${wrap(ec.tsType)}[]`,
      decode(dv, o) {
        const out = new Array(n);
        for (let i = 0; i < n; i++) out[i] = ec.decode(dv, o + i * stride);
        return out;
      },
      encode(v, dv, o) {
        const a = (v ?? []) as unknown[];
        for (let i = 0; i < n; i++) {
          if (i < a.length) ec.encode(a[i], dv, o + i * stride);
          else new Uint8Array(dv.buffer, dv.byteOffset + o + i * stride, stride).fill(0);
        }
      },
    };
  }

  private structCodec(t: BtfType): Codec {
    type Field = { name: string; off: number; codec?: Codec; bits?: { bitOffset: number; bitSize: number; size: number; signed: boolean } };
    const fields: Field[] = [];
    let anon = 0;
    for (const m of t.members) {
      const mt = this.resolve(m.type);
      const name = m.name || `__anon${anon++}`;
      if (m.bitSize > 0 || (mt.kind === Kind.INT && mt.int!.bits !== mt.size * 8)) {
        const bitSize = m.bitSize || mt.int!.bits;
        fields.push({ name, off: 0, bits: { bitOffset: m.bitOffset, bitSize, size: mt.size, signed: mt.int?.signed ?? false } });
      } else {
        fields.push({ name, off: m.bitOffset / 8, codec: this.codec(m.type) });
      }
    }
    const isUnion = t.kind === Kind.UNION;
    const size = t.size;
    const ts = `{ ${fields.map((f) => `${f.name}: ${f.codec ? f.codec.tsType : f.bits!.bitSize > 32 ? 'bigint' : 'number'}`).join('; ')} }`;
    return {
      size,
      tsType: ts,
      decode(dv, o) {
        const out: Record<string, unknown> = {};
        for (const f of fields) {
          if (f.codec) out[f.name] = f.codec.decode(dv, o + f.off);
          else out[f.name] = readBits(dv, o, f.bits!.bitOffset, f.bits!.bitSize, f.bits!.signed);
        }
        return out;
      },
      encode(v, dv, o) {
        const obj = (v ?? {}) as Record<string, unknown>;
        // padding and absent fields are zero: the kernel compares keys byte for byte (a union's
        // too: bytes a longer member left in a reused key buffer made a shorter one's key miss)
        new Uint8Array(dv.buffer, dv.byteOffset + o, size).fill(0);
        for (const f of fields) {
          const fv = obj[f.name];
          if (isUnion && fv === undefined) continue;
          if (f.codec) f.codec.encode(fv, dv, o + f.off);
          else writeBits(dv, o, f.bits!.bitOffset, f.bits!.bitSize, fv === undefined ? 0 : Number(fv));
        }
      },
    };
  }
}

function wrap(ts: string): string {
  return /^[\w.]+$/.test(ts) ? ts : `(${ts})`;
}

function intCodec(size: number, signed: boolean, bool: boolean): Codec {
  switch (size) {
    case 1:
      return bool
        ? { size, tsType: 'boolean', decode: (dv, o) => dv.getUint8(o) !== 0, encode: (v, dv, o) => dv.setUint8(o, v ? 1 : 0) }
        : signed
          ? { size, tsType: 'number', decode: (dv, o) => dv.getInt8(o), encode: (v, dv, o) => dv.setInt8(o, Number(v ?? 0)) }
          : { size, tsType: 'number', decode: (dv, o) => dv.getUint8(o), encode: (v, dv, o) => dv.setUint8(o, Number(v ?? 0)) };
    case 2:
      return signed
        ? { size, tsType: 'number', decode: (dv, o) => dv.getInt16(o, true), encode: (v, dv, o) => dv.setInt16(o, Number(v ?? 0), true) }
        : { size, tsType: 'number', decode: (dv, o) => dv.getUint16(o, true), encode: (v, dv, o) => dv.setUint16(o, Number(v ?? 0), true) };
    case 4:
      return signed
        ? { size, tsType: 'number', decode: (dv, o) => dv.getInt32(o, true), encode: (v, dv, o) => dv.setInt32(o, Number(v ?? 0), true) }
        : { size, tsType: 'number', decode: (dv, o) => dv.getUint32(o, true), encode: (v, dv, o) => dv.setUint32(o, Number(v ?? 0) >>> 0, true) };
    case 8:
      return signed
        ? { size, tsType: 'bigint', decode: (dv, o) => dv.getBigInt64(o, true), encode: (v, dv, o) => dv.setBigInt64(o, BigInt((v as bigint | number) ?? 0), true) }
        : { size, tsType: 'bigint', decode: (dv, o) => dv.getBigUint64(o, true), encode: (v, dv, o) => dv.setBigUint64(o, BigInt((v as bigint | number) ?? 0), true) };
    case 16:
      return {
        size,
        tsType: 'bigint',
        decode: (dv, o) => (dv.getBigUint64(o + 8, true) << 64n) | dv.getBigUint64(o, true),
        encode(v, dv, o) {
          const b = BigInt((v as bigint) ?? 0);
          dv.setBigUint64(o, b & 0xffffffffffffffffn, true);
          dv.setBigUint64(o + 8, b >> 64n, true);
        },
      };
    default:
      throw new Error(`unsupported integer size ${size}`);
  }
}

// Bitfields: little-endian, so bit offsets count from the struct's first byte's LSB.
function readBits(dv: DataView, base: number, bitOffset: number, bitSize: number, signed: boolean): number | bigint {
  let v = 0n;
  const first = bitOffset >> 3;
  const last = (bitOffset + bitSize - 1) >> 3;
  for (let i = last; i >= first; i--) v = (v << 8n) | BigInt(dv.getUint8(base + i));
  v = (v >> BigInt(bitOffset & 7)) & ((1n << BigInt(bitSize)) - 1n);
  if (signed && (v >> BigInt(bitSize - 1)) & 1n) v -= 1n << BigInt(bitSize);
  return bitSize > 32 ? v : Number(v);
}

function writeBits(dv: DataView, base: number, bitOffset: number, bitSize: number, value: number): void {
  const first = bitOffset >> 3;
  const last = (bitOffset + bitSize - 1) >> 3;
  let cur = 0n;
  for (let i = last; i >= first; i--) cur = (cur << 8n) | BigInt(dv.getUint8(base + i));
  const shift = BigInt(bitOffset & 7);
  const mask = ((1n << BigInt(bitSize)) - 1n) << shift;
  cur = (cur & ~mask) | ((BigInt(value) << shift) & mask);
  for (let i = first; i <= last; i++) {
    dv.setUint8(base + i, Number(cur & 0xffn));
    cur >>= 8n;
  }
}
