// Typed skeletons, as libbpf's <name>.skel.h and cilium/ebpf's bpf2go: `pnpm lab build` writes
// one per object into bpf/gen/<name>.ts (bpf/gen-types.ts), naming its maps with their key and
// value types, its programs and its .rodata/.bss globals, so a renamed map breaks the type check
// rather than a run. Opening checks every map's type and key/value sizes against what the
// skeleton was generated from (aya's HashMap<K, V>::try_from), so a stale skeleton fails at once.
import { BpfObject, type LoadOptions, type MapShape, type OpenOptions, type Program } from './object.ts';
import type { BpfMap } from './map.ts';
import { BpfError } from './errors.ts';

export interface SkeletonShape {
  maps: Record<string, { key: unknown; value: unknown }>;
  programs: string;
  rodata: Record<string, unknown>;
  bss: Record<string, unknown>;
}

export interface SkeletonSpec<S extends SkeletonShape> {
  /** bpf/<object>.bpf.c */
  object: string;
  maps: { readonly [K in keyof S['maps']]: MapShape };
  programs: readonly S['programs'][];
  rodata: readonly (keyof S['rodata'] & string)[];
  bss: readonly (keyof S['bss'] & string)[];
}

export type SkeletonMaps<S extends SkeletonShape> = { readonly [K in keyof S['maps']]: BpfMap<S['maps'][K]['key'], S['maps'][K]['value']> };
export type SkeletonPrograms<S extends SkeletonShape> = { readonly [K in S['programs']]: Program };

export class Skeleton<S extends SkeletonShape> implements Disposable {
  /** maps by name, typed (handles exist once the object is loaded) */
  readonly maps: SkeletonMaps<S>;
  readonly programs: SkeletonPrograms<S>;

  constructor(
    readonly obj: BpfObject,
    readonly spec: SkeletonSpec<S>,
  ) {
    for (const p of spec.programs) obj.program(p); // throws, naming what the object has
    for (const m of Object.keys(spec.maps)) obj.checkMap(m, spec.maps[m]!);
    this.maps = lazyRecord(Object.keys(spec.maps), (m) => obj.map(m, spec.maps[m]));
    this.programs = lazyRecord(spec.programs, (p) => obj.program(p));
  }

  /** a map by name, typed from the skeleton */
  map<K extends keyof S['maps'] & string>(name: K): BpfMap<S['maps'][K]['key'], S['maps'][K]['value']> {
    return this.obj.map(name, this.spec.maps[name]);
  }

  /** the map `name` as pinned at `pinPath` by another process, typed, checked against this object */
  openPinned<K extends keyof S['maps'] & string>(name: K, pinPath: string): BpfMap<S['maps'][K]['key'], S['maps'][K]['value']> {
    return this.obj.openPinnedMap(name, pinPath);
  }

  program(name: S['programs']): Program {
    return this.obj.program(name);
  }

  /** Set `const volatile` globals before load: the verifier sees constants and prunes on them. */
  setRodata(values: Partial<S['rodata']>): this {
    for (const [k, v] of Object.entries(values)) if (v !== undefined) this.obj.setGlobal(k, v);
    return this;
  }

  /** Set .bss globals' initial values (before load). */
  setBss(values: Partial<S['bss']>): this {
    for (const [k, v] of Object.entries(values)) if (v !== undefined) this.obj.setGlobal(k, v);
    return this;
  }

  /** A .bss global: its live value once loaded, its initial value before. */
  bss<K extends keyof S['bss'] & string>(name: K): S['bss'][K] {
    return this.obj.getGlobal<S['bss'][K]>(name);
  }

  load(opts: LoadOptions = {}): this {
    this.obj.load(opts);
    return this;
  }

  close(): void {
    this.obj.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** What a generated file exports: the spec, and open() for an object file built from it. */
export interface SkeletonFactory<S extends SkeletonShape> {
  readonly spec: SkeletonSpec<S>;
  open(file: string, opts?: OpenOptions): Skeleton<S>;
}

export function defineSkeleton<S extends SkeletonShape>(spec: SkeletonSpec<S>): SkeletonFactory<S> {
  return {
    spec,
    open(file, opts) {
      const obj = BpfObject.open(file, opts);
      try {
        if (obj.name !== `${spec.object}.bpf.o`) throw new BpfError(`${file} is not ${spec.object}.bpf.o, which this skeleton describes`);
        return new Skeleton(obj, spec);
      } catch (e) {
        obj.close();
        throw e;
      }
    },
  };
}

// The one place a record of typed properties is assembled from names: each property is a getter,
// so map handles are made on first use (after load).
function lazyRecord<R, K extends string = string>(keys: readonly K[], get: (k: K) => unknown): R {
  const out = {};
  for (const k of keys) Object.defineProperty(out, k, { get: () => get(k), enumerable: true });
  return out as R;
}
