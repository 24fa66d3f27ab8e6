import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AttachError, BpfError, BpfMap, BpfObject, MapType, RingBuffer, VerifierError, attachAuto, attachTc, attachTracepoint, attachXdp, enableStats, liveCount } from './index.ts';
import { OUT_DIR, compile } from '../../bpf/build.ts';
import { bpfObjects, describeRoot, thrown } from '../../lab/testing.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURE = path.join(OUT_DIR, 'test', 'fixture.bpf.o');
const BAD = path.join(OUT_DIR, 'test', 'bad.bpf.o');
const OUR_PROGS = new Set(['count_getppid', 'xdp_fixture', 'unchecked_read']);

describeRoot('libbpf binding', () => {
  let before: Awaited<ReturnType<typeof bpfObjects>>;

  beforeAll(async () => {
    await compile(path.join(HERE, 'testdata', 'fixture.bpf.c'), FIXTURE);
    await compile(path.join(HERE, 'testdata', 'bad.bpf.c'), BAD);
    before = await bpfObjects();
  }, 60_000);

  afterAll(async () => {
    // nothing of ours may survive the file: programs, maps or links (the kernel frees maps
    // asynchronously after the last reference goes, so give it a moment)
    await new Promise((r) => setTimeout(r, 1000));
    const after = await bpfObjects();
    const ours = after.progs.filter((p) => OUR_PROGS.has(p.name ?? '') && !before.progs.some((b) => b.id === p.id));
    expect(ours, 'leaked programs').toEqual([]);
    const newLinks = after.links.filter((l) => !before.links.some((b) => b.id === l.id) && ours.some((p) => p.id === l.prog_id));
    expect(newLinks, 'leaked links').toEqual([]);
    const newMaps = after.maps.filter((m) => !before.maps.some((b) => b.id === m.id) && /^(padded_map|percpu|hits|outer|rb|rb_lost)$/.test(m.name ?? ''));
    expect(newMaps, 'leaked maps').toEqual([]);
    expect(liveCount()).toBe(0);
  });

  it('a verifier rejection throws VerifierError with the program, the log tail and a hint', () => {
    let err: unknown;
    try {
      BpfObject.load(BAD);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VerifierError);
    const v = err as VerifierError;
    expect(v.program).toBe('unchecked_read');
    expect(v.errno).toBe(13); // EACCES: the verifier said no
    expect(v.log).toMatch(/invalid access to packet/);
    expect(v.message).toMatch(/verifier log \(last lines\)/);
    expect(v.hint).toMatch(/bounds check/);
  });

  it('a missing object file is a BpfError that names the fix', () => {
    expect(() => BpfObject.open('/nonexistent.bpf.o')).toThrow(/pnpm lab build/);
  });

  it('maps round-trip through BTF codecs: padding, arrays, strings, bitfields, byte arrays', () => {
    using obj = BpfObject.load(FIXTURE);
    const m = obj.map<{ id: number; port: number }, Record<string, unknown>>('padded_map');
    expect(m.keyCodec.size).toBe(8);
    // last member + 16 bytes, rounded up to the struct's 8-byte alignment (trailing padding)
    expect(m.valueCodec.size).toBe(Math.ceil((obj.btf.layout('padded')['addr']!.offset + 16) / 8) * 8);
    const addr = Uint8Array.from({ length: 16 }, (_, i) => i * 3);
    const v = { a: 7, b: 2n ** 40n + 5n, c: 65535, name: 'abcd', arr: [1, 2, 3], neg: -5, flag: 1, level: 5, addr };
    m.set({ id: 1, port: 80 }, v);
    m.set({ id: 2, port: 443 }, { ...v, name: 'x', level: 2, arr: [9] });
    expect(m.get({ id: 1, port: 80 })).toEqual(v);
    expect(m.get({ id: 2, port: 443 })).toMatchObject({ name: 'x', level: 2, arr: [9, 0, 0], flag: 1 });
    expect(m.get({ id: 1, port: 81 })).toBeUndefined();
    // keys compare byte for byte in the kernel: padding must be zero or lookups would miss
    expect(m.has({ id: 1, port: 80 })).toBe(true);
    const keys = [...m.keys()].map((k) => k.id).sort();
    expect(keys).toEqual([1, 2]);
    const entries = m.lookupBatch(1);
    expect(entries?.length).toBe(2);
    m.updateBatch([[{ id: 3, port: 1 }, v], [{ id: 4, port: 1 }, v]]);
    expect([...m.entries()].length).toBe(4);
    expect(m.delete({ id: 3, port: 1 })).toBe(true);
    expect(m.delete({ id: 3, port: 1 })).toBe(false);
    m.clear();
    expect([...m.keys()]).toEqual([]);
  });

  it('per-CPU values: one per possible CPU, written individually or broadcast', () => {
    using obj = BpfObject.load(FIXTURE);
    const pc = obj.map<number, bigint>('percpu');
    expect(pc.perCpu).toBe(true);
    const n = pc.ncpus;
    pc.set(1, Array.from({ length: n }, (_, i) => BigInt(i + 10)));
    expect(pc.getPerCpu(1)).toEqual(Array.from({ length: n }, (_, i) => BigInt(i + 10)));
    pc.set(2, 7n);
    expect(pc.getPerCpu(2)).toEqual(Array(n).fill(7n));
    expect(() => pc.get(1)).toThrow(/per-CPU/);
  });

  it('map-in-map: an inner map created at run time is seen by the program', () => {
    using obj = BpfObject.load(FIXTURE);
    const inner = BpfMap.create<number, number>({ type: MapType.ARRAY, name: 'inner_t', keySize: 4, valueSize: 4, maxEntries: 4 });
    try {
      const outer = obj.map<number, number>('outer');
      const pkt = Buffer.alloc(64);
      expect(obj.program('xdp_fixture').testRun({ data: pkt }).retval).toBe(2); // XDP_PASS: no inner map yet
      inner.set(0, 42);
      outer.setInner(0, inner);
      expect(outer.innerId(0)).toBeGreaterThan(0);
      expect(obj.program('xdp_fixture').testRun({ data: pkt }).retval).toBe(4); // XDP_REDIRECT
    } finally {
      inner.close();
    }
  });

  it('BPF_PROG_TEST_RUN: return code, rewritten packet and per-run duration', () => {
    using obj = BpfObject.load(FIXTURE);
    const p = obj.program('xdp_fixture');
    const drop = Buffer.alloc(64, 0xff);
    const r = p.testRun({ data: drop, repeat: 1000 });
    expect(r.retval).toBe(1); // XDP_DROP
    expect(r.durationNs).toBeGreaterThan(0);
    expect(r.durationNs).toBeLessThan(100_000);
    const tx = Buffer.alloc(64);
    tx[0] = 0xee;
    tx[1] = 0x11;
    const t = p.testRun({ data: tx });
    expect(t.retval).toBe(3); // XDP_TX
    expect([...t.dataOut.subarray(0, 2)]).toEqual([0x11, 0xee]);
    // shorter than an Ethernet header: the kernel refuses, and the error says so
    expect(() => p.testRun({ data: Buffer.alloc(1) })).toThrow(/EINVAL/);
  });

  it('tracepoint attach counts events; detach stops them; bpf stats measure run time', () => {
    const obj = BpfObject.open(FIXTURE);
    obj.setGlobal('target_tgid', process.pid);
    obj.load();
    const hits = obj.map<number, bigint>('hits');
    const stats = enableStats();
    try {
      const link = attachAuto(obj.program('count_getppid'));
      for (let i = 0; i < 100; i++) void process.ppid; // getppid(2) each time
      const n = hits.get(0)!;
      expect(n).toBeGreaterThanOrEqual(100n);
      const info = obj.program('count_getppid').info();
      expect(info.runCnt).toBeGreaterThanOrEqual(100n);
      expect(info.runTimeNs).toBeGreaterThan(0n);
      link.close();
      for (let i = 0; i < 100; i++) void process.ppid;
      expect(hits.get(0)).toBe(n);
    } finally {
      stats.close();
      obj.close();
    }
  });

  it('ring buffer delivers every event of a burst, in order, as an async iterable', async () => {
    const obj = BpfObject.open(FIXTURE);
    obj.setGlobal('target_tgid', process.pid);
    obj.load();
    const codec = obj.btf.codecByName<{ seq: bigint; pid: number }>('seq_event');
    const rb = new RingBuffer(obj.map('rb'), { decode: (dv, off) => codec.decode(dv, off), lostCounter: obj.map('rb_lost') as never });
    try {
      attachAuto(obj.program('count_getppid'));
      const N = 20000; // 20000 × 24 bytes: fits the 1 MiB ring without a consumer
      for (let i = 0; i < N; i++) void process.ppid;
      const got: bigint[] = [];
      for await (const e of rb) {
        expect(e.pid).toBe(process.pid);
        got.push(e.seq);
        if (got.length === N) break;
      }
      expect(got.length).toBe(N);
      expect(got.every((s, i) => s === BigInt(i))).toBe(true);
      expect(rb.lost).toBe(0);
      expect(rb.pending).toBe(0);
    } finally {
      rb.close();
      obj.close();
    }
  });

  it('ring buffer take/release: records stay the consumer\'s until released, then the space is the kernel\'s', () => {
    const obj = BpfObject.open(FIXTURE);
    obj.setGlobal('target_tgid', process.pid);
    obj.load();
    const codec = obj.btf.codecByName<{ seq: bigint; pid: number }>('seq_event');
    const rb = new RingBuffer(obj.map('rb'), { decode: (dv, off) => codec.decode(dv, off) });
    try {
      attachAuto(obj.program('count_getppid'));
      for (let i = 0; i < 100; i++) void process.ppid;
      const offs = rb.offsets(64);
      const before = rb.pending;
      const n = rb.take(offs, 64);
      expect(n).toBe(64);
      expect(rb.pending).toBe(before); // not released yet: the kernel still counts it as unread
      expect(Array.from(offs.subarray(0, n), (o) => codec.decode(rb.view, o).seq)).toEqual(Array.from({ length: 64 }, (_, i) => BigInt(i)));
      expect(rb.takenLengths[0]).toBeGreaterThanOrEqual(12);
      rb.release();
      expect(rb.pending).toBeLessThan(before);
      expect(rb.drain().map((e) => e.seq)).toEqual(Array.from({ length: 36 }, (_, i) => BigInt(64 + i)));
      expect(rb.pending).toBe(0);
      expect(rb.delivered).toBe(100);
    } finally {
      rb.close();
      obj.close();
    }
  });

  it('ring buffer overflow is counted as lost, not hidden', () => {
    const obj = BpfObject.open(FIXTURE);
    obj.setGlobal('target_tgid', process.pid);
    obj.load({ maxEntries: { rb: 4096 } }); // one page: ~170 records of 24 bytes
    const rb = new RingBuffer(obj.map('rb'), { decode: (dv, off) => dv.getBigUint64(off, true), lostCounter: obj.map('rb_lost') as never });
    try {
      attachAuto(obj.program('count_getppid'));
      for (let i = 0; i < 1000; i++) void process.ppid;
      const got = rb.drain(10_000).length;
      expect(got).toBeGreaterThan(0);
      expect(got + rb.lost).toBe(1000);
      expect(rb.lost).toBeGreaterThan(0);
    } finally {
      rb.close();
      obj.close();
    }
  });

  it('ring buffer visit hands records over in place, in order, bounded per call, and releases them', () => {
    const obj = BpfObject.open(FIXTURE);
    obj.setGlobal('target_tgid', process.pid);
    obj.load();
    const rb = new RingBuffer(obj.map('rb'), { decode: (dv, off) => dv.getBigUint64(off, true), lostCounter: obj.map('rb_lost') as never });
    try {
      attachAuto(obj.program('count_getppid'));
      for (let i = 0; i < 500; i++) void process.ppid;
      const seqs: bigint[] = [];
      const visit = (dv: DataView, off: number, len: number) => {
        expect(len).toBeGreaterThanOrEqual(8);
        seqs.push(dv.getBigUint64(off, true));
      };
      expect(rb.visit(visit, 200)).toBe(200);
      expect(rb.visit(visit, 10_000)).toBe(300);
      expect(rb.visit(visit)).toBe(0);
      expect(seqs.every((s, i) => s === BigInt(i))).toBe(true);
      expect(rb.pending).toBe(0);
      expect(rb.delivered).toBe(500);
    } finally {
      rb.close();
      obj.close();
    }
  });

  // review, session 60: the ring was unmapped at once, under a visitor still reading it (SIGSEGV)
  it('a ring closed from inside its own batch keeps the batch readable until it is released, then refuses reads', () => {
    const obj = BpfObject.open(FIXTURE);
    obj.setGlobal('target_tgid', process.pid);
    obj.load();
    const rb = new RingBuffer(obj.map('rb'), { decode: (dv, off) => dv.getBigUint64(off, true) });
    try {
      attachAuto(obj.program('count_getppid'));
      for (let i = 0; i < 3; i++) void process.ppid;
      const seqs: bigint[] = [];
      expect(rb.visit((dv, off) => {
        seqs.push(dv.getBigUint64(off, true));
        rb.close();
      })).toBe(3);
      expect(seqs).toEqual([0n, 1n, 2n]);
      expect(thrown(() => rb.view.getUint32(0))).toMatchObject({ errno: 9, message: expect.stringMatching(/used after it was closed/) });
      expect(thrown(() => rb.bytes)).toBeInstanceOf(BpfError);
      expect(rb.visit(() => {})).toBe(0);
    } finally {
      rb.close();
      obj.close();
    }
  });

  // review, session 60: an object's map fd number is soon another object's map: a kept handle wrote there
  it('handles of a closed object refuse to work: maps, programs, links', () => {
    const a = BpfObject.load(FIXTURE);
    const hitsA = a.map<number, bigint>('hits');
    const progA = a.program('count_getppid');
    const link = attachTracepoint(progA, 'syscalls', 'sys_enter_getppid');
    a.close();
    expect(link.isClosed).toBe(true);
    expect(thrown(() => link.update(0n))).toMatchObject({ errno: 9, message: expect.stringMatching(/the link is closed/) });
    const b = BpfObject.load(FIXTURE);
    try {
      const hitsB = b.map<number, bigint>('hits');
      hitsB.set(3, 0n);
      expect(thrown(() => hitsA.set(3, 0xdeadn))).toMatchObject({ errno: 9, message: expect.stringMatching(/map hits used after it was closed/) });
      expect(hitsB.get(3)).toBe(0n);
      expect(thrown(() => progA.fd)).toMatchObject({ errno: 9, message: expect.stringMatching(/program count_getppid used after its object/) });
      expect(thrown(() => attachTracepoint(progA, 'syscalls', 'sys_enter_getppid'))).toBeInstanceOf(BpfError);
      // a handle first asked for after close (a skeleton's lazy getter) is refused too: it read
      // libbpf's freed map for an fd number that may be b's map by now (review, session 65)
      expect(thrown(() => a.map('rb'))).toMatchObject({ errno: 9, message: expect.stringMatching(/is closed: its maps are gone/) });
      expect(thrown(() => a.mapSpec('hits'))).toMatchObject({ errno: 9 });
    } finally {
      b.close();
    }
  });

  it('an object forgets the links closed before it; a second load after a failed one names the fix; .rodata is not written after load', () => {
    const a = BpfObject.load(FIXTURE);
    try {
      const links = (a as unknown as { links: Set<unknown> }).links;
      for (let i = 0; i < 5; i++) attachTracepoint(a.program('count_getppid'), 'syscalls', 'sys_enter_getppid').close();
      expect(links.size).toBe(0);
      expect(thrown(() => a.setRodata(() => {}))).toMatchObject({ errno: 1, message: expect.stringMatching(/\.rodata is fixed at load/) });
    } finally {
      a.close();
    }
    // a created (or opened-from-pin) map unpins by its path: unpin() did nothing, the pin stayed
    const made = BpfMap.create<number, number>({ type: MapType.ARRAY, name: 'unpin_t', keySize: 4, valueSize: 4, maxEntries: 1 });
    const pin = `/sys/fs/bpf/ebpf-lab-unpin-${process.pid}`;
    try {
      made.pin(pin);
      expect(fs.existsSync(pin)).toBe(true);
      made.unpin(pin);
      expect(fs.existsSync(pin)).toBe(false);
    } finally {
      fs.rmSync(pin, { force: true });
      made.close();
    }
    const bad = BpfObject.open(FIXTURE);
    try {
      // a map size the kernel refuses: the load fails, and libbpf will not load the object again
      expect(thrown(() => bad.load({ maxEntries: { hits: 0 } }))).toBeInstanceOf(BpfError);
      expect(thrown(() => bad.load())).toMatchObject({ message: expect.stringMatching(/its load failed once/) });
    } finally {
      bad.close();
    }
  });

  it('close() ends a consumer waiting on an empty ring at once, not at the wait\'s timeout, even on a busy machine', async () => {
    const obj = BpfObject.open(FIXTURE);
    obj.setGlobal('target_tgid', process.pid);
    obj.load();
    // Busy threads on every core: the waiter woken by close() may then not run before close()
    // has gone on, which is the race CI hit (a 10 s wait ran to its timeout).
    const spin = 'const end = Date.now() + 30000; while (Date.now() < end) {}'; // ended by terminate()
    const busy = Array.from({ length: 3 }, () => new Worker(spin, { eval: true }));
    try {
      const took: number[] = [];
      for (let i = 0; i < 20; i++) {
        const rb = new RingBuffer(obj.map('rb'), { decode: (dv, off) => dv.getBigUint64(off, true), polled: true, idleWaitMs: 10_000 });
        try {
          const loop = rb.visitAll(() => {});
          await new Promise((r) => setTimeout(r, i === 0 ? 200 : 20)); // inside epoll_wait by now
          const t0 = Date.now();
          rb.close();
          await loop;
          took.push(Date.now() - t0);
          expect(rb.wakeups, 'the close is not a wake-up for data').toBe(0);
        } finally {
          rb.close();
        }
      }
      expect(Math.max(...took), `ms from close() to the loop's end, 20 closes: ${took.join(' ')}`).toBeLessThan(2000);
    } finally {
      await Promise.all(busy.map((w) => w.terminate()));
      obj.close();
    }
  });

  it('pinning: a pinned map outlives its object and reopens with BTF codecs', () => {
    const pin = `/sys/fs/bpf/ebpf-lab-test-${process.pid}`;
    const obj = BpfObject.load(FIXTURE);
    try {
      const m = obj.map<{ id: number; port: number }, Record<string, unknown>>('padded_map');
      m.set({ id: 9, port: 9 }, { a: 1, name: 'pin' });
      m.pin(pin);
      obj.close();
      // a new handle decodes with the BTF the kernel kept for the map, not ours
      using again = BpfMap.openPinned<{ id: number; port: number }, Record<string, unknown>>(pin);
      expect(again.get({ id: 9, port: 9 })).toMatchObject({ a: 1, name: 'pin' });
    } finally {
      obj.close();
      fs.rmSync(pin, { force: true });
    }
    expect(() => BpfMap.openPinned(pin)).toThrow(/nothing is pinned there/);
  });

  it('tc: attach on clsact, visible to tc, removed with the qdisc it created', async () => {
    const ifname = `ltc${process.pid % 10000}`;
    await execa('ip', ['link', 'add', ifname, 'type', 'veth', 'peer', 'name', `${ifname}p`]);
    try {
      const tc = path.join(HERE, 'testdata', 'tc.bpf.c');
      fs.writeFileSync(tc, '#include "include/lab.h"\nSEC("tc")\nint tc_fixture(struct __sk_buff *skb) { return 0; }\n');
      const objPath = path.join(OUT_DIR, 'test', 'tc.bpf.o');
      await compile(tc, objPath);
      fs.rmSync(tc);
      const obj = BpfObject.load(objPath);
      const link = attachTc(obj.program('tc_fixture'), ifname, 'egress');
      expect((await execa('tc', ['filter', 'show', 'dev', ifname, 'egress'])).stdout).toMatch(/tc_fixture/);
      link.close();
      expect((await execa('tc', ['qdisc', 'show', 'dev', ifname])).stdout).not.toMatch(/clsact/);
      obj.close();
    } finally {
      await execa('ip', ['link', 'del', ifname], { reject: false });
    }
  });

  it('xdp: generic attach, atomic replace, detach', async () => {
    const ifname = `lxd${process.pid % 10000}`;
    await execa('ip', ['link', 'add', ifname, 'type', 'veth', 'peer', 'name', `${ifname}p`]);
    const a = BpfObject.load(FIXTURE);
    const b = BpfObject.load(FIXTURE);
    try {
      const progId = async () => JSON.parse((await execa('ip', ['-j', '-d', 'link', 'show', 'dev', ifname])).stdout)[0].xdp?.prog?.id;
      const l1 = attachXdp(a.program('xdp_fixture'), ifname, { mode: 'generic' });
      expect(await progId()).toBe(a.program('xdp_fixture').info().id);
      const l2 = attachXdp(b.program('xdp_fixture'), ifname, { mode: 'generic', replace: a.program('xdp_fixture') });
      expect(await progId()).toBe(b.program('xdp_fixture').info().id);
      l1.close(); // no longer ours: must not detach b's program
      expect(await progId()).toBe(b.program('xdp_fixture').info().id);
      l2.close();
      expect(await progId()).toBeUndefined();
    } finally {
      a.close();
      b.close();
      await execa('ip', ['link', 'del', ifname], { reject: false });
    }
  });

  it('an attach the kernel lacks fails with the errno and a hint, not a crash', () => {
    using obj = BpfObject.load(FIXTURE);
    expect(() => attachTracepoint(obj.program('count_getppid'), 'syscalls', 'sys_enter_no_such_call')).toThrow(/ENOENT[\s\S]*does not exist on this kernel/);
    const err = thrown(() => attachTracepoint(obj.program('count_getppid'), 'syscalls', 'sys_enter_no_such_call'));
    expect(err).toBeInstanceOf(AttachError);
    expect(err).toMatchObject({ code: 'ENOENT', kind: 'tracing', program: 'count_getppid' });
  });

  it('setGlobal refuses unknown names and late calls', () => {
    const obj = BpfObject.open(FIXTURE);
    try {
      expect(() => obj.setGlobal('nope', 1)).toThrow(/no global variable "nope"/);
      obj.load();
      expect(() => obj.setGlobal('target_tgid', 1)).toThrow(BpfError);
    } finally {
      obj.close();
    }
  });

  for (const how of ['SIGTERM', 'SIGINT', 'throw'] as const) {
    it(`a process that dies by ${how} leaves no XDP attachment or program behind`, async () => {
      const ifname = `ltest${process.pid % 10000}${how[3]}`;
      await execa('ip', ['link', 'add', ifname, 'type', 'veth', 'peer', 'name', `${ifname}p`]);
      try {
        const child = spawn(process.execPath, [path.join(path.dirname(require_resolve_tsx()), 'cli.mjs'), path.join(HERE, 'testdata', 'child.ts'), FIXTURE, ifname, how], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`child not ready: ${out}`)), 30_000);
          child.stdout.on('data', () => out.includes('ready') && (clearTimeout(t), resolve()));
        });
        const attached = JSON.parse((await execa('ip', ['-j', '-d', 'link', 'show', 'dev', ifname])).stdout)[0];
        expect(attached.xdp, 'attached while alive').toBeDefined();
        if (how !== 'throw') child.kill(how);
        await new Promise((r) => child.once('exit', r));
        const after = JSON.parse((await execa('ip', ['-j', '-d', 'link', 'show', 'dev', ifname])).stdout)[0];
        expect(after.xdp, 'XDP detached at exit').toBeUndefined();
      } finally {
        await execa('ip', ['link', 'del', ifname], { reject: false });
      }
    }, 60_000);
  }

  it('the stored object of the offline tests matches its source (programs, map shapes, struct layouts)', () => {
    using fresh = BpfObject.open(FIXTURE);
    using stored = BpfObject.open(path.join(HERE, 'testdata', 'fixture.bpf.o'));
    const shape = (o: BpfObject, m: string) => {
      const { keyTypeId: _k, valueTypeId: _v, ...s } = o.mapSpec(m);
      return s;
    };
    expect([...stored.programs.keys()], 'refresh: cp bpf/.output/test/fixture.bpf.o controller/libbpf/testdata/').toEqual([...fresh.programs.keys()]);
    expect(stored.mapNames).toEqual(fresh.mapNames);
    for (const m of fresh.mapNames) expect(shape(stored, m), m).toEqual(shape(fresh, m));
    for (const t of ['padded', 'pkey', 'seq_event']) expect(stored.btf.layout(t), t).toEqual(fresh.btf.layout(t));
  });

  it('generated TS types match the object BTF (bpf/gen is not stale)', async () => {
    const { renderTypes, renderEnums } = await import('../../bpf/gen-types.ts');
    const { buildBpf } = await import('../../bpf/build.ts');
    const r = await buildBpf({ gen: false, log: () => {} });
    for (const [name, obj] of Object.entries(r.objects)) {
      const file = path.join(OUT_DIR, '..', 'gen', `${name}.ts`);
      expect(fs.existsSync(file), `${file} exists`).toBe(true);
      expect(fs.readFileSync(file, 'utf8'), `${file} is current: run pnpm lab build`).toBe(renderTypes(name, obj));
      const enums = renderEnums(name, obj);
      const efile = path.join(OUT_DIR, '..', 'gen', `${name}.enums.ts`);
      if (enums === null) expect(fs.existsSync(efile), `${efile} is stale: run pnpm lab build`).toBe(false);
      else expect(fs.existsSync(efile) ? fs.readFileSync(efile, 'utf8') : null, `${efile} is current: run pnpm lab build`).toBe(enums);
    }
  }, 120_000);
});

function require_resolve_tsx(): string {
  return path.join(HERE, '..', '..', 'node_modules', 'tsx', 'dist', 'cli.mjs');
}
