// The one place where koffi declarations live. Everything BPF goes through the system
// libbpf.so.1 (ELF loading, CO-RE relocation, attach); libc is used for mmap/epoll/perf_event_open,
// which the ring buffer consumer and the perf_event attach need.
//
// koffi 3 passes pointers as bigint; NULL is 0n. Pointer-returning libbpf APIs return NULL and set
// errno (libbpf 1.0 mode); int-returning ones return -errno.
//
// Each C signature below is written once and is also its TypeScript type: `Fn<'int f(void *p)'>`
// parses the string at compile time into `(p: Mem) => number` (see the C → TS table under
// "signature types"), so every call site is checked against the C declaration and needs no cast.
import koffi, { type LibraryHandle } from 'koffi';
import { archFacts } from '../../common/arch.ts';

export const lib = koffi.load('libbpf.so.1');
export const libc = koffi.load('libc.so.6');

export type Ptr = bigint;
export const NULL: Ptr = 0n;

// --- structs whose layout libbpf defines (sz-prefixed "opts" structs; trailing size_t :0 pads to 8) ---
const bpf_object_open_opts_fields = {
  sz: 'size_t',
  object_name: 'const char *',
  relaxed_maps: 'bool',
  pin_root_path: 'const char *',
  _stub: 'uint32',
  kconfig: 'const char *',
  btf_custom_path: 'const char *',
  kernel_log_buf: 'void *',
  kernel_log_size: 'size_t',
  kernel_log_level: 'uint32',
} as const;
export const bpf_object_open_opts = koffi.struct('bpf_object_open_opts', bpf_object_open_opts_fields);
const bpf_tc_hook_fields = { sz: 'size_t', ifindex: 'int', attach_point: 'int', parent: 'uint32' } as const;
export const bpf_tc_hook = koffi.struct('bpf_tc_hook', bpf_tc_hook_fields);
const bpf_tc_opts_fields = {
  sz: 'size_t', prog_fd: 'int', flags: 'uint32', prog_id: 'uint32', handle: 'uint32', priority: 'uint32',
} as const;
export const bpf_tc_opts = koffi.struct('bpf_tc_opts', bpf_tc_opts_fields);
const bpf_xdp_attach_opts_fields = { sz: 'size_t', old_prog_fd: 'int' } as const;
export const bpf_xdp_attach_opts = koffi.struct('bpf_xdp_attach_opts', bpf_xdp_attach_opts_fields);
const bpf_test_run_opts_fields = {
  sz: 'size_t',
  data_in: 'void *',
  data_out: 'void *',
  data_size_in: 'uint32',
  data_size_out: 'uint32',
  ctx_in: 'void *',
  ctx_out: 'void *',
  ctx_size_in: 'uint32',
  ctx_size_out: 'uint32',
  retval: 'uint32',
  repeat: 'int',
  duration: 'uint32',
  flags: 'uint32',
  cpu: 'uint32',
  batch_size: 'uint32',
} as const;
export const bpf_test_run_opts = koffi.struct('bpf_test_run_opts', bpf_test_run_opts_fields);
const bpf_map_batch_opts_fields = { sz: 'size_t', elem_flags: 'uint64', flags: 'uint64' } as const;
export const bpf_map_batch_opts = koffi.struct('bpf_map_batch_opts', bpf_map_batch_opts_fields);
const bpf_map_create_opts_fields = {
  sz: 'size_t',
  btf_fd: 'uint32',
  btf_key_type_id: 'uint32',
  btf_value_type_id: 'uint32',
  btf_vmlinux_value_type_id: 'uint32',
  inner_map_fd: 'uint32',
  map_flags: 'uint32',
  map_extra: 'uint64',
  numa_node: 'uint32',
  map_ifindex: 'uint32',
} as const;
export const bpf_map_create_opts = koffi.struct('bpf_map_create_opts', bpf_map_create_opts_fields);
const bpf_prog_info_head_fields = {
  type: 'uint32', id: 'uint32', tag: koffi.array('uint8', 8), jited_prog_len: 'uint32', xlated_prog_len: 'uint32',
  jited_prog_insns: 'uint64', xlated_prog_insns: 'uint64', load_time: 'uint64', created_by_uid: 'uint32',
  nr_map_ids: 'uint32', map_ids: 'uint64', name: koffi.array('char', 16, 'String'), ifindex: 'uint32',
  gpl_compatible_etc: 'uint32', netns_dev: 'uint64', netns_ino: 'uint64', nr_jited_ksyms: 'uint32',
  nr_jited_func_lens: 'uint32', jited_ksyms: 'uint64', jited_func_lens: 'uint64', btf_id: 'uint32',
  func_info_rec_size: 'uint32', func_info: 'uint64', nr_func_info: 'uint32', nr_line_info: 'uint32',
  line_info: 'uint64', jited_line_info: 'uint64', nr_jited_line_info: 'uint32', line_info_rec_size: 'uint32',
  jited_line_info_rec_size: 'uint32', nr_prog_tags: 'uint32', prog_tags: 'uint64', run_time_ns: 'uint64',
  run_cnt: 'uint64', recursion_misses: 'uint64', verified_insns: 'uint32',
} as const;
export const bpf_prog_info_head = koffi.struct('bpf_prog_info_head', bpf_prog_info_head_fields);
const epoll_event_fields = { events: 'uint32', data: 'uint64' } as const;
export const epoll_event = koffi.pack('epoll_event', epoll_event_fields);
const perf_event_attr_fields = {
  type: 'uint32', size: 'uint32', config: 'uint64', sample_period: 'uint64', sample_type: 'uint64',
  read_format: 'uint64', flags: 'uint64', wakeup_events: 'uint32', bp_type: 'uint32', config1: 'uint64',
  config2: 'uint64', branch_sample_type: 'uint64', sample_regs_user: 'uint64', sample_stack_user: 'uint32',
  clockid: 'int32', sample_regs_intr: 'uint64', aux_watermark: 'uint32', sample_max_stack: 'uint16',
  _reserved_2: 'uint16', aux_sample_size: 'uint32', _reserved_3: 'uint32', sig_data: 'uint64', config3: 'uint64',
} as const;
export const perf_event_attr = koffi.struct('perf_event_attr', perf_event_attr_fields);

// libbpf's print callback gets a va_list; how it arrives is an architecture fact (common/arch.ts:
// on x86-64 it decays to a pointer we hand on to vsnprintf; other architectures are refused).
archFacts();
export const libbpf_print_fn = koffi.proto('int libbpf_print_fn(int level, const char *fmt, void *args)');

// --- signature types: C declaration string → TypeScript function type --------------------------
/** Memory handed to C: a pointer, or a buffer koffi passes by address. */
export type Mem = Ptr | Buffer | Uint8Array | ArrayBuffer | null;
type FieldTs<F> = F extends 'bool' ? boolean : F extends 'const char *' ? string | null : F extends 'void *' ? Ptr : F extends 'uint64' ? number | bigint : F extends string ? number : unknown;
/** The JS object koffi accepts for a struct declared with these fields. */
export type StructValue<D> = { -readonly [K in keyof D]: FieldTs<D[K]> };
interface Structs {
  bpf_object_open_opts: StructValue<typeof bpf_object_open_opts_fields>;
  bpf_tc_hook: StructValue<typeof bpf_tc_hook_fields>;
  bpf_tc_opts: StructValue<typeof bpf_tc_opts_fields>;
  bpf_xdp_attach_opts: StructValue<typeof bpf_xdp_attach_opts_fields>;
  bpf_test_run_opts: StructValue<typeof bpf_test_run_opts_fields>;
  bpf_map_batch_opts: StructValue<typeof bpf_map_batch_opts_fields>;
  bpf_map_create_opts: StructValue<typeof bpf_map_create_opts_fields>;
  epoll_event: StructValue<typeof epoll_event_fields>;
  perf_event_attr: StructValue<typeof perf_event_attr_fields>;
  /** a callback made with koffi.register */
  libbpf_print_fn: Ptr;
}
type Trim<S extends string> = S extends ` ${infer R}` ? Trim<R> : S extends `${infer R} ` ? Trim<R> : S;
type Params<S extends string> = S extends 'void' | '' ? [] : S extends `${infer A}, ${infer R}` ? [Param<A>, ...Params<R>] : [Param<S>];
type Dir<S extends string> = S extends `_Out_ ${infer T}` | `_Inout_ ${infer T}` ? ['out', Trim<T>] : S extends `const ${infer T}` ? ['const', Trim<T>] : ['in', Trim<S>];
// pointer parameters by what they point to; `_Out_ T *` of a scalar is a one-element array koffi fills
type PointerParam<D> = D extends [infer _, infer T extends keyof Structs] ? Structs[T]
  : D extends ['const', 'char'] ? string | null
  : D extends ['out', 'char' | 'uint8_t'] ? Buffer
  : D extends ['out', string] ? number[]
  : Mem;
type ScalarTs<T extends string> = T extends 'bool' ? boolean : T extends 'uint64' | 'int64' | 'unsigned long' | 'long' ? number | bigint : number;
type Param<P extends string> = P extends `${infer T}*${string}` ? PointerParam<Dir<Trim<T>>> : P extends `${infer T} ${infer N}` ? (N extends `${string} ${string}` ? ScalarTs<`${T} ${N}`> : ScalarTs<T>) : never;
// koffi returns a `const char *` as a string (null for NULL); 64-bit integers as numbers where they
// fit, which every count and size returned here does
type Ret<H extends string> = H extends `const char *${string}` ? string | null : H extends `${string}*${string}` ? Ptr : H extends `void ${string}` ? void : H extends `bool ${string}` ? boolean : number;
/** `'int f(void *p, uint32 n)'` → `(p: Mem, n: number) => number` */
export type Fn<S extends string> = S extends `${infer H}(${infer P})` ? (...a: Params<P>) => Ret<Trim<H>> : never;

// One cast lives here, where the string becomes its own type: koffi's functions are untyped.
function declare<S extends string>(l: LibraryHandle, sig: S): Fn<S> {
  const fn = l.func(sig);
  // koffi returns NULL pointers as null; normalise to 0n so `p === NULL` is the one test everywhere
  const pointerResult = /^\s*void\s*\*/.test(sig);
  return (pointerResult ? (...a: unknown[]) => fn(...a) ?? NULL : fn) as unknown as Fn<S>;
}
/** Same, run on koffi's worker thread (for calls that block, such as epoll_wait). */
function declareAsync<S extends string>(l: LibraryHandle, sig: S): (...a: Parameters<Fn<S>>) => Promise<ReturnType<Fn<S>>> {
  const fn = l.func(sig);
  return (...a) => new Promise((resolve, reject) => fn.async(...a, (err: unknown, r: ReturnType<Fn<S>>) => (err ? reject(err) : resolve(r))));
}
const f = <S extends string>(sig: S) => declare(lib, sig);
const c = <S extends string>(sig: S) => declare(libc, sig);

/**
 * Each function is declared to koffi on first use, then kept as a plain property (no getter on
 * later calls). Declaring all ~110 up front parsed every signature at import: ~0.6 s of each
 * guest process's start under TCG, for a process that uses a fraction of them.
 */
function lazy<T extends Record<string, () => unknown>>(defs: T): { readonly [K in keyof T]: ReturnType<T[K]> } {
  const o = {} as Record<string, unknown>;
  for (const [k, make] of Object.entries(defs)) {
    Object.defineProperty(o, k, {
      configurable: true,
      enumerable: true,
      get() {
        const v = make();
        Object.defineProperty(o, k, { value: v, enumerable: true, writable: false, configurable: false });
        return v;
      },
    });
  }
  return o as { readonly [K in keyof T]: ReturnType<T[K]> };
}

export const B = lazy({
  // version, printing, probes
  libbpf_major_version: () => f('uint32 libbpf_major_version(void)'),
  libbpf_minor_version: () => f('uint32 libbpf_minor_version(void)'),
  libbpf_set_print: () => f('void *libbpf_set_print(libbpf_print_fn *fn)'),
  libbpf_num_possible_cpus: () => f('int libbpf_num_possible_cpus(void)'),
  libbpf_probe_bpf_prog_type: () => f('int libbpf_probe_bpf_prog_type(int prog_type, const void *opts)'),
  libbpf_probe_bpf_map_type: () => f('int libbpf_probe_bpf_map_type(int map_type, const void *opts)'),
  libbpf_probe_bpf_helper: () => f('int libbpf_probe_bpf_helper(int prog_type, int helper_id, const void *opts)'),
  libbpf_strerror: () => f('int libbpf_strerror(int err, _Out_ char *buf, size_t size)'),

  // objects
  bpf_object__open_file: () => f('void *bpf_object__open_file(const char *path, const bpf_object_open_opts *opts)'),
  bpf_object__load: () => f('int bpf_object__load(void *obj)'),
  bpf_object__close: () => f('void bpf_object__close(void *obj)'),
  bpf_object__name: () => f('const char *bpf_object__name(void *obj)'),
  bpf_object__btf: () => f('void *bpf_object__btf(void *obj)'),
  bpf_object__next_program: () => f('void *bpf_object__next_program(void *obj, void *prev)'),
  bpf_object__next_map: () => f('void *bpf_object__next_map(void *obj, void *prev)'),

  // programs
  bpf_program__name: () => f('const char *bpf_program__name(void *prog)'),
  bpf_program__section_name: () => f('const char *bpf_program__section_name(void *prog)'),
  bpf_program__fd: () => f('int bpf_program__fd(void *prog)'),
  bpf_program__type: () => f('int bpf_program__type(void *prog)'),
  bpf_program__set_type: () => f('int bpf_program__set_type(void *prog, int type)'),
  bpf_program__expected_attach_type: () => f('int bpf_program__expected_attach_type(void *prog)'),
  bpf_program__set_autoload: () => f('int bpf_program__set_autoload(void *prog, bool autoload)'),
  bpf_program__autoload: () => f('bool bpf_program__autoload(void *prog)'),
  bpf_program__set_log_buf: () => f('int bpf_program__set_log_buf(void *prog, void *log_buf, size_t log_size)'),
  bpf_program__set_log_level: () => f('int bpf_program__set_log_level(void *prog, uint32 log_level)'),
  bpf_program__insn_cnt: () => f('size_t bpf_program__insn_cnt(void *prog)'),
  bpf_program__attach: () => f('void *bpf_program__attach(void *prog)'),
  bpf_program__attach_tracepoint: () => f('void *bpf_program__attach_tracepoint(void *prog, const char *cat, const char *name)'),
  bpf_program__attach_raw_tracepoint: () => f('void *bpf_program__attach_raw_tracepoint(void *prog, const char *name)'),
  bpf_program__attach_trace: () => f('void *bpf_program__attach_trace(void *prog)'),
  bpf_program__attach_lsm: () => f('void *bpf_program__attach_lsm(void *prog)'),
  bpf_program__attach_kprobe: () => f('void *bpf_program__attach_kprobe(void *prog, bool retprobe, const char *func)'),
  bpf_program__attach_xdp: () => f('void *bpf_program__attach_xdp(void *prog, int ifindex)'),
  bpf_program__attach_cgroup: () => f('void *bpf_program__attach_cgroup(void *prog, int cgroup_fd)'),
  bpf_program__attach_perf_event: () => f('void *bpf_program__attach_perf_event(void *prog, int pfd)'),
  bpf_program__attach_netns: () => f('void *bpf_program__attach_netns(void *prog, int netns_fd)'),
  bpf_program__attach_iter: () => f('void *bpf_program__attach_iter(void *prog, const void *opts)'),
  bpf_iter_create: () => f('int bpf_iter_create(int link_fd)'),

  // links
  bpf_link__destroy: () => f('int bpf_link__destroy(void *link)'),
  bpf_link__fd: () => f('int bpf_link__fd(void *link)'),
  bpf_link__pin: () => f('int bpf_link__pin(void *link, const char *path)'),
  bpf_link__unpin: () => f('int bpf_link__unpin(void *link)'),
  bpf_link__disconnect: () => f('void bpf_link__disconnect(void *link)'),
  bpf_link__update_program: () => f('int bpf_link__update_program(void *link, void *prog)'),
  bpf_link__open: () => f('void *bpf_link__open(const char *path)'),
  bpf_link_create: () => f('int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)'),

  // xdp / tc (netlink)
  bpf_xdp_attach: () => f('int bpf_xdp_attach(int ifindex, int prog_fd, uint32 flags, const bpf_xdp_attach_opts *opts)'),
  bpf_xdp_detach: () => f('int bpf_xdp_detach(int ifindex, uint32 flags, const bpf_xdp_attach_opts *opts)'),
  bpf_xdp_query_id: () => f('int bpf_xdp_query_id(int ifindex, int flags, _Out_ uint32 *prog_id)'),
  bpf_tc_hook_create: () => f('int bpf_tc_hook_create(bpf_tc_hook *hook)'),
  bpf_tc_hook_destroy: () => f('int bpf_tc_hook_destroy(bpf_tc_hook *hook)'),
  bpf_tc_attach: () => f('int bpf_tc_attach(const bpf_tc_hook *hook, _Inout_ bpf_tc_opts *opts)'),
  bpf_tc_detach: () => f('int bpf_tc_detach(const bpf_tc_hook *hook, const bpf_tc_opts *opts)'),

  // maps (object side)
  bpf_map__name: () => f('const char *bpf_map__name(void *map)'),
  bpf_map__fd: () => f('int bpf_map__fd(void *map)'),
  bpf_map__type: () => f('int bpf_map__type(void *map)'),
  bpf_map__key_size: () => f('uint32 bpf_map__key_size(void *map)'),
  bpf_map__value_size: () => f('uint32 bpf_map__value_size(void *map)'),
  bpf_map__max_entries: () => f('uint32 bpf_map__max_entries(void *map)'),
  bpf_map__set_max_entries: () => f('int bpf_map__set_max_entries(void *map, uint32 max_entries)'),
  bpf_map__map_flags: () => f('uint32 bpf_map__map_flags(void *map)'),
  bpf_map__set_map_flags: () => f('int bpf_map__set_map_flags(void *map, uint32 flags)'),
  bpf_map__btf_key_type_id: () => f('uint32 bpf_map__btf_key_type_id(void *map)'),
  bpf_map__btf_value_type_id: () => f('uint32 bpf_map__btf_value_type_id(void *map)'),
  bpf_map__set_pin_path: () => f('int bpf_map__set_pin_path(void *map, const char *path)'),
  bpf_map__pin_path: () => f('const char *bpf_map__pin_path(void *map)'),
  bpf_map__is_pinned: () => f('bool bpf_map__is_pinned(void *map)'),
  bpf_map__pin: () => f('int bpf_map__pin(void *map, const char *path)'),
  bpf_map__unpin: () => f('int bpf_map__unpin(void *map, const char *path)'),
  bpf_map__reuse_fd: () => f('int bpf_map__reuse_fd(void *map, int fd)'),
  bpf_map__set_inner_map_fd: () => f('int bpf_map__set_inner_map_fd(void *map, int fd)'),
  bpf_map__inner_map: () => f('void *bpf_map__inner_map(void *map)'),
  bpf_map__initial_value: () => f('void *bpf_map__initial_value(void *map, _Out_ size_t *psize)'),
  bpf_map__set_autocreate: () => f('int bpf_map__set_autocreate(void *map, bool autocreate)'),

  // maps (fd side, thin syscall wrappers)
  bpf_map_create: () => f('int bpf_map_create(int map_type, const char *name, uint32 key_size, uint32 value_size, uint32 max_entries, const bpf_map_create_opts *opts)'),
  bpf_map_lookup_elem: () => f('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
  bpf_map_lookup_elem_flags: () => f('int bpf_map_lookup_elem_flags(int fd, const void *key, void *value, uint64 flags)'),
  bpf_map_update_elem: () => f('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64 flags)'),
  bpf_map_delete_elem: () => f('int bpf_map_delete_elem(int fd, const void *key)'),
  bpf_map_get_next_key: () => f('int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
  bpf_map_lookup_and_delete_elem: () => f('int bpf_map_lookup_and_delete_elem(int fd, const void *key, void *value)'),
  bpf_map_lookup_batch: () => f('int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32 *count, const bpf_map_batch_opts *opts)'),
  bpf_map_update_batch: () => f('int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32 *count, const bpf_map_batch_opts *opts)'),
  bpf_map_delete_batch: () => f('int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32 *count, const bpf_map_batch_opts *opts)'),
  bpf_map_freeze: () => f('int bpf_map_freeze(int fd)'),
  bpf_map_get_fd_by_id: () => f('int bpf_map_get_fd_by_id(uint32 id)'),
  bpf_prog_get_fd_by_id: () => f('int bpf_prog_get_fd_by_id(uint32 id)'),
  bpf_prog_get_next_id: () => f('int bpf_prog_get_next_id(uint32 start_id, _Out_ uint32 *next_id)'),
  bpf_obj_pin: () => f('int bpf_obj_pin(int fd, const char *pathname)'),
  bpf_obj_get: () => f('int bpf_obj_get(const char *pathname)'),
  bpf_obj_get_info_by_fd: () => f('int bpf_obj_get_info_by_fd(int bpf_fd, void *info, _Inout_ uint32 *info_len)'),
  bpf_prog_test_run_opts: () => f('int bpf_prog_test_run_opts(int prog_fd, _Inout_ bpf_test_run_opts *opts)'),
  bpf_enable_stats: () => f('int bpf_enable_stats(int type)'),

  // BTF
  btf__load_vmlinux_btf: () => f('void *btf__load_vmlinux_btf(void)'),
  btf__parse: () => f('void *btf__parse(const char *path, void *btf_ext)'),
  btf__free: () => f('void btf__free(void *btf)'),
  btf__load_from_kernel_by_id: () => f('void *btf__load_from_kernel_by_id(uint32 id)'),
  btf__type_cnt: () => f('uint32 btf__type_cnt(void *btf)'),
  btf__type_by_id: () => f('void *btf__type_by_id(void *btf, uint32 id)'),
  btf__name_by_offset: () => f('const char *btf__name_by_offset(void *btf, uint32 offset)'),
  btf__find_by_name_kind: () => f('int btf__find_by_name_kind(void *btf, const char *name, uint32 kind)'),
  btf__resolve_size: () => f('int64 btf__resolve_size(void *btf, uint32 id)'),
  btf__align_of: () => f('int btf__align_of(void *btf, uint32 id)'),
});

export const C = lazy({
  vsnprintf: () => c('int vsnprintf(_Out_ uint8_t *buf, size_t size, const char *fmt, void *ap)'),
  close: () => c('int close(int fd)'),
  mmap: () => c('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64 off)'),
  munmap: () => c('int munmap(void *addr, size_t len)'),
  epoll_create1: () => c('int epoll_create1(int flags)'),
  epoll_ctl: () => c('int epoll_ctl(int epfd, int op, int fd, epoll_event *ev)'),
  eventfd: () => c('int eventfd(unsigned int initval, int flags)'),
  epoll_wait: () => declareAsync(libc, 'int epoll_wait(int epfd, _Out_ epoll_event *events, int maxevents, int timeout)'),
  /** blocking, on the calling thread: only for a thread of its own (RingBuffer.pumpBlocking in a worker) */
  epoll_wait_sync: () => c('int epoll_wait(int epfd, _Out_ epoll_event *events, int maxevents, int timeout)'),
  open: () => c('int open(const char *path, int flags, int mode)'),
  write: () => c('long write(int fd, const uint8_t *buf, size_t len)'),
  sysconf: () => c('long sysconf(int name)'),
  syscall_perf_event_open: () => c('long syscall(long nr, perf_event_attr *attr, int pid, int cpu, int group_fd, unsigned long flags)'),
  ioctl: () => c('int ioctl(int fd, unsigned long req, unsigned long arg)'),
  if_nametoindex: () => c('unsigned int if_nametoindex(const char *ifname)'),
  setns: () => c('int setns(int fd, int nstype)'),
  socket: () => c('int socket(int domain, int type, int protocol)'),
  send: () => c('long send(int fd, const uint8_t *buf, size_t len, int flags)'),
  recv: () => c('long recv(int fd, _Out_ uint8_t *buf, size_t len, int flags)'),
  malloc: () => c('void *malloc(size_t size)'),
  free: () => c('void free(void *p)'),
});

export const errno = (): number => koffi.errno();
/** struct bpf_prog_info's head, decoded from the buffer bpf_obj_get_info_by_fd filled */
export const decodeProgInfo = (buf: Buffer): StructValue<typeof bpf_prog_info_head_fields> => koffi.decode(buf, bpf_prog_info_head);
export const view = (p: Ptr, len: number): ArrayBuffer => koffi.view(p, len);
export { koffi };
