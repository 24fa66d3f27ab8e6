// The binding without a kernel: everything here runs as any user (`pnpm test` as nobody). A
// stored object (testdata/fixture.bpf.o, compiled from testdata/fixture.bpf.c; refresh it with
// `cp bpf/.output/test/fixture.bpf.o controller/libbpf/testdata/` after the root tests built it)
// is opened, never loaded: libbpf parses ELF and BTF in user space, so codecs, map specs,
// skeleton checks, globals' initial values and attach input validation are all testable here.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { archFacts } from '../../common/arch.ts';
import { thrown } from '../../lab/testing.ts';
import {
  AttachInputError, BpfError, BpfObject, Errno, MapType, attachCgroup, attachPerfEventAllCpus, attachTc, attachTracepoint, attachXdp,
  defineSkeleton, errnoCode, type XdpMode,
} from './index.ts';
import { B, type Mem, type Ptr } from './ffi.ts';
import { writeAll } from './fdio.ts';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'testdata', 'fixture.bpf.o');

describe('binding offline (stored object, no kernel, no root)', () => {
  it('codecs from BTF: padding zeroed, arrays, strings, bitfields and byte arrays round-trip', () => {
    using obj = BpfObject.open(FIXTURE);
    const codec = obj.btf.codecByName<Record<string, unknown>>('padded');
    const L = obj.btf.layout('padded');
    expect(L['a']).toEqual({ offset: 0, size: 1 });
    expect(L['b']).toEqual({ offset: 8, size: 8 }); // 7 bytes of padding after a
    const v = { a: 7, b: 2n ** 40n + 5n, c: 65535, name: 'abcd', arr: [1, 2, 3], neg: -5, flag: 1, level: 5, addr: Uint8Array.from({ length: 16 }, (_, i) => i) };
    const buf = new DataView(new Uint8Array(codec.size).fill(0xff).buffer);
    codec.encode(v, buf, 0);
    expect(codec.decode(buf, 0)).toEqual(v);
    // padding bytes are written as zero: keys compare byte for byte in the kernel
    expect([...new Uint8Array(buf.buffer, 1, 7)]).toEqual([0, 0, 0, 0, 0, 0, 0]);
    const key = obj.btf.codecByName<{ id: number; port: number }>('pkey');
    expect(key.size).toBe(8);
    expect(key.tsType).toBe('{ id: number; port: number }');
  });

  it('map specs are readable before load, and a skeleton shape that disagrees fails with the fix', () => {
    using obj = BpfObject.open(FIXTURE);
    expect(obj.mapSpec('padded_map')).toMatchObject({ type: MapType.HASH, keySize: 8, maxEntries: 1024 });
    expect(obj.mapSpec('rb')).toMatchObject({ type: MapType.RINGBUF, keyTypeId: 0, valueTypeId: 0 });
    const e = thrown(() => obj.checkMap('padded_map', { type: MapType.HASH, keySize: 4, valueSize: 8 }));
    expect(e).toBeInstanceOf(BpfError);
    expect(String(e)).toMatch(/padded_map.*type HASH, key 8 B.*skeleton expects type HASH, key 4 B[\s\S]*pnpm lab build/);
    expect(() => obj.map('no_such_map')).toThrow(/no map "no_such_map" in fixture\.bpf\.o; it has: .*padded_map/);
  });

  it('a skeleton names programs, maps and globals; a stale or foreign one fails at open', () => {
    interface Shape {
      maps: { hits: { key: number; value: bigint } };
      programs: 'count_getppid';
      rodata: { target_tgid: number };
      bss: { next_seq: bigint };
    }
    const good = defineSkeleton<Shape>({
      object: 'fixture', maps: { hits: { type: MapType.ARRAY, keySize: 4, valueSize: 8 } }, programs: ['count_getppid'], rodata: ['target_tgid'], bss: ['next_seq'],
    });
    using skel = good.open(FIXTURE);
    expect(skel.programs.count_getppid.name).toBe('count_getppid');
    expect(skel.bss('next_seq')).toBe(0n);
    skel.setRodata({ target_tgid: 1234 });
    expect(skel.obj.getGlobal('target_tgid')).toBe(1234);
    skel.setBss({ next_seq: 7n });
    expect(skel.bss('next_seq')).toBe(7n);
    expectTypeOf<ReturnType<(typeof skel)['maps']['hits']['get']>>().toEqualTypeOf<bigint | undefined>();

    const stale = defineSkeleton<Shape>({ ...good.spec, maps: { hits: { type: MapType.PERCPU_ARRAY, keySize: 4, valueSize: 8 } } });
    expect(() => stale.open(FIXTURE)).toThrow(/map "hits" of fixture\.bpf\.o is type ARRAY.*expects type PERCPU_ARRAY/);
    const renamed = defineSkeleton<Shape>({ ...good.spec, programs: ['count_getppid_v2' as 'count_getppid'] });
    expect(() => renamed.open(FIXTURE)).toThrow(/no program "count_getppid_v2"/);
    const foreign = defineSkeleton<Shape>({ ...good.spec, object: 'xdp_lb' });
    expect(() => foreign.open(FIXTURE)).toThrow(/is not xdp_lb\.bpf\.o/);
  });

  it('attach inputs are validated before any syscall: named errors, errno by name', () => {
    using obj = BpfObject.open(FIXTURE);
    const xdp = obj.program('xdp_fixture');
    const tp = obj.program('count_getppid');
    const input = (fn: () => unknown) => {
      const e = thrown(fn);
      expect(e).toBeInstanceOf(AttachInputError);
      return e as AttachInputError;
    };
    expect(input(() => attachXdp(xdp, 'lo', { mode: 'turbo' as XdpMode }))).toMatchObject({ kind: 'xdp', code: 'EINVAL' });
    expect(input(() => attachTc(xdp, 'lo', 'sideways' as 'ingress')).message).toMatch(/not ingress or egress/);
    expect(input(() => attachTc(xdp, 'lo', 'ingress', { priority: 0 })).message).toMatch(/priority 0 is not in 1 … 65535/);
    expect(input(() => attachTracepoint(tp, 'syscalls', 'sys_enter_getppid; rm'))).toMatchObject({ kind: 'tracing' });
    expect(input(() => attachPerfEventAllCpus(tp, { type: 1, config: 0, freq: 0 })).message).toMatch(/frequency 0/);
    expect(input(() => attachCgroup(tp, '/nonexistent/cgroup'))).toMatchObject({ kind: 'cgroup', code: 'ENOENT' });
    // valid input, but the object was only opened: refused before the kernel is asked
    expect(input(() => attachTracepoint(tp, 'syscalls', 'sys_enter_getppid'))).toMatchObject({ code: 'EBADF' });
    expect(input(() => attachXdp(xdp, 'no-such-if0'))).toMatchObject({ code: 'EBADF' });
  });

  it('errno by name; architecture facts or a clear refusal', () => {
    expect(Errno.ENOENT).toBe(2);
    expect(Errno.ENOTSUPP).toBe(524);
    expect(errnoCode(-17)).toBe('EEXIST');
    expect(errnoCode(0)).toBeUndefined();
    expect(archFacts('x64')).toMatchObject({ syscall: { perf_event_open: 298 }, debian: 'amd64', qemu: 'qemu-system-x86_64' });
    expect(() => archFacts('arm64')).toThrow(/unsupported architecture: arm64/);
  });

  it('FFI signatures are typed from their C declarations', () => {
    // compile-time assertions (tsc checks them; at run time they are no-ops)
    expectTypeOf(B.bpf_map_lookup_elem).parameters.toEqualTypeOf<[number, Mem, Mem]>();
    expectTypeOf(B.bpf_object__next_map).returns.toEqualTypeOf<Ptr>();
    expectTypeOf(B.bpf_map__name).returns.toEqualTypeOf<string | null>();
    expectTypeOf(B.bpf_map__initial_value).parameters.toEqualTypeOf<[Mem, number[]]>();
    expect(B.libbpf_major_version()).toBeGreaterThanOrEqual(1);
  });
});

describe('writeAll (libc write for the ring consumers’ sinks)', () => {
  it('writes every byte of a buffer, and of a prefix of it, to a file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdio-'));
    try {
      const buf = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
      const fd = fs.openSync(path.join(dir, 'out'), 'w');
      writeAll(fd, buf);
      writeAll(fd, buf, 1000);
      fs.closeSync(fd);
      expect(fs.readFileSync(path.join(dir, 'out')).equals(Buffer.concat([buf, buf.subarray(0, 1000)]))).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('waits out a full non-blocking pipe (EAGAIN) instead of failing, and delivers everything in order', async () => {
    // libuv makes the child's stdin pipe non-blocking on our side; the reader starts late, so
    // 1 MiB cannot fit the pipe's 64 KiB and write(2) says EAGAIN until it drains. The reader
    // writes to a file, not back to us: this thread is blocked in writeAll meanwhile.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdio-'));
    try {
      const out = path.join(dir, 'out');
      const buf = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 7) % 256));
      // timed from the spawn: the reader cannot start before 300 ms after it, so a writeAll that
      // returned sooner did not wait for it (timed from after the set-up below, a loaded machine
      // had spent 107+ ms of the 300 there, and a 200 ms bound failed once)
      const t0 = Date.now();
      const child = spawn('sh', ['-c', 'sleep 0.3; exec cat > "$0"', out], { stdio: ['pipe', 'ignore', 'inherit'] });
      const fd = (child.stdin as unknown as { _handle: { fd: number } })._handle.fd;
      const flags = parseInt(/^flags:\s+(\d+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
      expect(flags & 0o4000 /* O_NONBLOCK */).not.toBe(0); // else this would test a blocking write
      writeAll(fd, buf);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(299);
      child.stdin!.end();
      await new Promise((r) => child.once('close', r));
      expect(fs.readFileSync(out).equals(buf)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the errno of a write that cannot succeed', () => {
    const fd = fs.openSync(os.devNull, 'r');
    try {
      const e = thrown(() => writeAll(fd, Buffer.from('x')));
      expect(e).toBeInstanceOf(BpfError);
      expect((e as BpfError).code).toBe('EBADF');
      expect((e as Error).message).toMatch(/^write to fd \d+: EBADF/);
    } finally {
      fs.closeSync(fd);
    }
  });
});
