// BPF ring buffer consumer that reads the memory-mapped ring directly from JavaScript.
//
// Why not libbpf's ring_buffer__poll: it calls back into JS once per record (~2.5 µs each through
// koffi), which caps a Node consumer far below a C one. Here a drain is a loop over a DataView on
// the shared mapping: no FFI per record, one consumer-position store per batch. The kernel only
// wakes a waiter when the consumer had caught up, so under load we wake once per batch, and the
// wait itself (epoll_wait) runs on a worker thread via koffi's async call, never blocking the loop.
import { C, NULL, errno, view, type Ptr } from './ffi.ts';
import { BpfError, Errno, errnoName } from './errors.ts';
import type { BpfMap } from './map.ts';
import { MapType } from './map.ts';
import { track, untrack } from './lifecycle.ts';
import { archFacts } from '../../common/arch.ts';

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const BUSY = 0x80000000;
/** an eventfd counter increment (host byte order) */
const WAKE = new Uint8Array(new BigUint64Array([1n]).buffer);
const DISCARD = 0x40000000;
const HDR = 8;
const EPOLLIN = 1;
const pageSize = Number(C.sysconf(30 /* _SC_PAGESIZE */));
/**
 * Record headers need an acquire load (the kernel commits a record by clearing BUSY with a release
 * store). On a TSO machine every plain load is one, and V8 keeps typed-array loads in program order
 * on the effect chain; Atomics.load there is not inlined by Node 20's TurboFan but a builtin call per
 * record (7% of the consumer's samples at 100k events/s under perf). Elsewhere: Atomics.
 */
const plainAcquire = archFacts().memoryModel === 'tso';

export interface RingBufferOptions<T> {
  /** decode one record: dv is a view on the ring, off its first byte, len its length */
  decode: (dv: DataView, off: number, len: number) => T;
  /**
   * most records decoded per batch. This is the bound on what lives in JS: records stay in the
   * kernel ring (the bounded queue, max_entries bytes) until the consumer asks for the next batch,
   * and when that ring is full the BPF side's reserve fails and it counts the record as lost.
   */
  maxBatch?: number;
  /** how long one idle wait lasts before re-checking for close (ms) */
  idleWaitMs?: number;
  /**
   * Upper bound on the coalescing delay (ms, 0 = off): after a batch the consumer sleeps before
   * draining again instead of waiting for a kernel wake-up, long enough for about `targetBatch`
   * records at the arrival rate just measured, never longer than this. Each wake-up through a worker
   * thread or a timer costs tens of µs; at 100k events/s a wake-up per few records costs more than
   * the records. This bounds wake-ups to 1/coalesceMs per second, at the price of that much latency.
   */
  coalesceMs?: number;
  /** records one coalesced batch aims for (see coalesceMs) */
  targetBatch?: number;
  /** a map (array or per-CPU array, key 0) where the BPF side counts failed reservations */
  lostCounter?: BpfMap<number, unknown>;
  /**
   * The producer paces wake-ups itself: it commits with BPF_RB_NO_WAKEUP until a fill level, then
   * BPF_RB_FORCE_WAKEUP. pump() then drains when woken or every idleWaitMs (the wait's timeout),
   * never sleeps to coalesce, and yields after every pass, an empty one included (a consumer can
   * do its periodic work there instead of on a timer of its own).
   */
  polled?: boolean;
}

/**
 * What a RingBuffer needs of its map: a BpfMap, or (in a worker thread, which cannot share the
 * main thread's BpfMap) the ring's fd, name and size as plain values — the fd is the process's, so
 * a worker maps the same ring on its own (RingBuffer.fromFd).
 */
export interface RingMap {
  readonly name: string;
  readonly fd: number;
  readonly meta: { readonly type: number; readonly maxEntries: number };
}

export class RingBuffer<T> implements AsyncIterable<T>, Disposable {
  private consumerPage: Ptr;
  private producerArea: Ptr;
  // Positions are u64 written by one side and read by the other: read and written with Atomics
  // (one 64-bit access, sequentially consistent, so at least the acquire/release libbpf uses with
  // smp_load_acquire/smp_store_release) rather than two DataView halves that could tear.
  private readonly cons: BigUint64Array;
  private readonly prod: BigUint64Array;
  private readonly data: DataView;
  /** the data area as u32s, for the record header's atomic (acquire) load */
  private readonly hdrs: Uint32Array;
  private readonly size: number;
  private readonly epfd: number;
  /** in the epoll set beside the ring: close() writes it, so a wait in progress ends at once */
  private readonly wakefd: number;
  private closed = false;
  /** the async epoll_wait in progress, if any: close() keeps the fds open until it returns */
  private waiting: Promise<number> | null = null;
  private readonly maxBatch: number;
  private readonly idleWaitMs: number;
  private readonly coalesceMs: number;
  private readonly targetBatch: number;
  private readonly _bytes: Uint8Array;
  /** set by close() during a take()n batch: the memory goes when the batch is released */
  private unmapOnRelease = false;
  /** records delivered to the consumer */
  delivered = 0;
  /** wake-ups that found data (epoll returns) */
  wakeups = 0;
  /** records the BPF side discarded (bpf_ringbuf_discard) */
  discarded = 0;

  /** a ring over a ring-buffer map fd this process holds (e.g. handed to a worker thread) */
  static fromFd<T>(fd: number, maxEntries: number, name: string, opts: RingBufferOptions<T>): RingBuffer<T> {
    return new RingBuffer<T>({ name, fd, meta: { type: MapType.RINGBUF, maxEntries } }, opts);
  }

  constructor(
    readonly map: RingMap,
    private readonly opts: RingBufferOptions<T>,
  ) {
    if (map.meta.type !== MapType.RINGBUF) throw new BpfError(`map "${map.name}" is not a ring buffer (type ${map.meta.type})`);
    this.size = map.meta.maxEntries;
    this.maxBatch = opts.maxBatch ?? 4096;
    this.idleWaitMs = opts.idleWaitMs ?? 100;
    this.coalesceMs = opts.coalesceMs ?? 5;
    this.targetBatch = opts.targetBatch ?? 1024;
    const fd = map.fd;
    this.consumerPage = C.mmap(NULL, pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (this.consumerPage === NULL || this.consumerPage === 0xffffffffffffffffn) throw new BpfError(`mmap of ring buffer consumer page: ${errnoName(errno())}`, errno());
    // the data area is mapped twice back to back by the kernel, so a record that wraps is contiguous
    this.producerArea = C.mmap(NULL, pageSize + 2 * this.size, PROT_READ, MAP_SHARED, fd, pageSize);
    if (this.producerArea === NULL || this.producerArea === 0xffffffffffffffffn) {
      C.munmap(this.consumerPage, pageSize);
      throw new BpfError(`mmap of ring buffer data: ${errnoName(errno())}`, errno());
    }
    this.cons = new BigUint64Array(view(this.consumerPage, 8));
    this.prod = new BigUint64Array(view(this.producerArea, 8));
    const data = view(this.producerArea + BigInt(pageSize), 2 * this.size);
    this.data = new DataView(data);
    this._bytes = new Uint8Array(data);
    this.hdrs = new Uint32Array(data);
    this.epfd = C.epoll_create1(0o2000000 /* EPOLL_CLOEXEC */);
    this.wakefd = C.eventfd(0, 0o2000000 /* EFD_CLOEXEC */ | 0o4000 /* EFD_NONBLOCK */);
    const add = (what: string, f: number, data: number) => {
      if (f >= 0 && C.epoll_ctl(this.epfd, 1 /* ADD */, f, { events: EPOLLIN, data }) >= 0) return;
      const e = errno();
      C.munmap(this.consumerPage, pageSize);
      C.munmap(this.producerArea, pageSize + 2 * this.size);
      if (this.wakefd >= 0) C.close(this.wakefd);
      C.close(this.epfd);
      throw new BpfError(`${what} for ring buffer "${map.name}": ${errnoName(e)}`, e);
    };
    add('epoll_ctl', fd, 0);
    add('eventfd', this.wakefd, 1);
    track(this);
  }

  /** bytes written by the producer and not yet consumed */
  get pending(): number {
    if (this.closed) return 0; // the positions' pages are unmapped
    return this.readPos(this.prod) - this.readPos(this.cons);
  }

  private readPos(pos: BigUint64Array): number {
    // 2^53 bytes through one ring is centuries at any rate: a Number holds it exactly
    return Number(Atomics.load(pos, 0));
  }

  /** Take up to `max` committed records out of the ring now (no waiting), decoded. */
  drain(max = this.maxBatch): T[] {
    const out: T[] = [];
    const dec = this.opts.decode;
    const data = this.data;
    this.consume((off, len) => void out.push(dec(data, off, len)), max);
    return out;
  }

  /**
   * Hand up to `max` committed records to `visit` now (no waiting) without building anything per
   * record: `off` is the record's first byte in `bytes`/`view`, valid only during the call (the
   * space is released to the kernel when consume returns). Returns how many were visited.
   */
  consume(visit: (off: number, len: number) => void, max = this.maxBatch): number {
    const offs = this.offsets(max);
    const n = this.take(offs, max);
    try {
      for (let i = 0; i < n; i++) visit(offs[i]!, this.lens[i]!);
    } finally {
      // also when visit throws: the batch is not handed over again (a record that breaks its
      // decoder would otherwise come back forever)
      this.release();
    }
    return n;
  }

  private offs = new Int32Array(0);
  private lens = new Int32Array(0);
  private taken = -1;

  /** a reusable array for take() that holds `max` offsets */
  offsets(max = this.maxBatch): Int32Array {
    if (this.offs.length < max) {
      this.offs = new Int32Array(max);
      this.lens = new Int32Array(max);
    }
    return this.offs;
  }

  /**
   * The two-phase form of consume() for a hot loop of the caller's own (one monomorphic loop, no
   * callback per record): the offsets of up to `max` committed records go into `into` (from
   * offsets()), their lengths into `takenLengths`; they stay valid, and the kernel cannot reuse
   * their space, until release().
   */
  take(into: Int32Array, max = this.maxBatch): number {
    if (this.closed) return 0;
    let cons = this.readPos(this.cons);
    const prod = this.readPos(this.prod);
    const mask = this.size - 1; // a ring's size is a power of two (≤ 2^31)
    const hdrs = this.hdrs;
    const lens = into === this.offs ? this.lens : null;
    const limit = Math.min(max, into.length);
    let n = 0;
    while (cons < prod && n < limit) {
      // positions are 64-bit and held as doubles (exact below 2^53): `&` takes them modulo 2^32
      // first, which the power-of-two mask divides, so this is cons mod size. `%` was exact too,
      // but V8 compiled it to a division: 9–14 ns per record against ~1 (Node 20, a loop over
      // positions from 0, 2^31 and 2^40; exploratory)
      const off = cons & mask;
      const hdr = plainAcquire ? hdrs[off >>> 2]! : Atomics.load(hdrs, off >>> 2); // acquire; records are 8-byte aligned
      if (hdr & BUSY) break;
      const len = hdr & 0x3fffffff;
      if (hdr & DISCARD) this.discarded++;
      else {
        into[n] = off + HDR;
        if (lens) lens[n] = len;
        n++;
      }
      cons += (len + HDR + 7) & ~7;
    }
    this.taken = cons;
    this.delivered += n;
    return n;
  }

  /**
   * The data area (mapped twice, so a record that wraps is contiguous) as bytes and as a
   * DataView, for consume() visitors and take() loops. Unmapped by close(): a read after it would
   * crash the process, so these throw once the ring is closed (take a reference per batch).
   */
  get bytes(): Uint8Array {
    this.assertMapped();
    return this._bytes;
  }

  get view(): DataView {
    this.assertMapped();
    return this.data;
  }

  private assertMapped(): void {
    if (this.closed && !this.unmapOnRelease) throw new BpfError(`ring buffer ${this.map.name} used after it was closed`, Errno.EBADF);
  }

  /** lengths of the records of the last take() into offsets() */
  get takenLengths(): Int32Array {
    return this.lens;
  }

  /** give the space of what take() returned back to the kernel */
  release(): void {
    if (this.taken < 0) return;
    if (!this.closed) Atomics.store(this.cons, 0, BigInt(this.taken)); // release: the kernel may reuse what we consumed
    this.taken = -1;
    if (this.unmapOnRelease) this.unmap();
  }

  /**
   * consume() with the ring's DataView handed along (dv, offset, length: valid only during the
   * call), for consumers that decode each record synchronously in place. Returns the count.
   */
  visit(fn: (dv: DataView, off: number, len: number) => void, max = this.maxBatch): number {
    const data = this.data;
    return this.consume((off, len) => fn(data, off, len), max);
  }

  /** Call `fn` for records as they arrive, with pump()'s wake-up policy, and `onPass` after each pass; ends on close(). */
  async visitAll(fn: (dv: DataView, off: number, len: number) => void, onPass?: (n: number) => void): Promise<void> {
    const data = this.data;
    for await (const n of this.pump((off, len) => fn(data, off, len))) onPass?.(n);
  }

  /** Wait (on a worker thread) until the kernel signals data or the timeout passes. */
  async wait(timeoutMs = this.idleWaitMs): Promise<boolean> {
    if (this.closed) return false;
    const w = (this.waiting = C.epoll_wait(this.epfd, { events: 0, data: 0 }, 1, timeoutMs));
    const n = await w.finally(() => {
      if (this.waiting === w) this.waiting = null;
    });
    if (this.closed) return false; // close() woke it
    if (n > 0) this.wakeups++;
    return n > 0;
  }

  /** wait() that blocks the calling thread: for a worker thread's blocking loop (pumpBlocking) */
  waitSync(timeoutMs = this.idleWaitMs): boolean {
    if (this.closed) return false;
    const n = C.epoll_wait_sync(this.epfd, { events: 0, data: 0 }, 1, timeoutMs);
    if (n > 0) this.wakeups++;
    return n > 0;
  }

  /**
   * pump()'s loop and wake-up policy as a blocking loop, for a thread of its own (a worker): the
   * coalescing sleeps are Atomics.wait on `ctl[0]` (a futex, like the C consumer's nanosleep)
   * instead of a timer and a trip through the event loop, and an empty ring waits in a blocking
   * epoll_wait instead of koffi's thread pool. `step(max)` visits what the ring holds and returns
   * the count; `onBatch(n)` follows each non-empty step. Returns once ctl[0] is non-zero (set it,
   * then Atomics.notify(ctl, 0): a sleep ends at once, an idle wait within idleWaitMs), after one
   * last drain.
   */
  pumpBlocking(step: (max: number) => number, ctl: Int32Array, onBatch?: (n: number) => void): void {
    const sleep = (ms: number) => {
      if (ms > 0) Atomics.wait(ctl, 0, 0, ms);
    };
    const pace = this.pacer();
    while (Atomics.load(ctl, 0) === 0 && !this.closed) {
      const n = step(this.maxBatch);
      if (n > 0) {
        const d = pace.afterBatch(n);
        onBatch?.(n);
        sleep(d);
        continue;
      }
      if (this.pending > 0) {
        sleep(0.05); // a record is still being written (busy bit)
        continue;
      }
      if (this.waitSync() && this.coalesceMs > 0) sleep(pace.afterWake());
    }
    for (let n; !this.closed && (n = step(this.maxBatch)) > 0; ) onBatch?.(n);
  }

  /** the wake-up policy's state, one per consumer loop (pump, pumpBlocking) */
  private pacer() {
    let last = performance.now();
    let rate = 0; // records/s over the last interval that delivered
    return {
      /** after a batch of n: ms to sleep before draining again (0 = at once: the consumer is behind when n hit maxBatch) */
      afterBatch: (n: number): number => {
        const now = performance.now();
        rate = (n * 1000) / Math.max(now - last, 0.05);
        last = now;
        return n >= this.maxBatch ? 0 : coalesceDelayMs(rate, this.targetBatch, this.coalesceMs);
      },
      /** after a kernel wake-up (the first record after the consumer caught up): ms to let a batch gather, at the rate seen before */
      afterWake: (): number => {
        last = performance.now();
        return coalesceDelayMs(rate, this.targetBatch, this.coalesceMs);
      },
    };
  }

  /**
   * The consumer loop with its wake-up policy: each step visits what the ring holds (up to
   * maxBatch; `visit` per record, or the caller's own `step(max)` over take()/release() that
   * returns the count) and yields the count; ends on close(). After a non-empty batch it sleeps
   * coalesceDelayMs() (adaptive to the arrival rate) rather than going back to the kernel, which
   * would wake it for the very next record; only an empty ring waits in epoll. A batch that hit
   * maxBatch means the consumer is behind: it drains again at once.
   */
  async *pump(visit: ((off: number, len: number) => void) | { step: (max: number) => number }): AsyncGenerator<number> {
    const step = typeof visit === 'function' ? (max: number) => this.consume(visit, max) : visit.step;
    if (this.opts.polled) {
      while (!this.closed) {
        const n = step(this.maxBatch);
        yield n;
        // a full batch: more is waiting. Else the ring was empty at take() (or its head was being
        // written: it goes with the next pass)
        if (n < this.maxBatch && !this.closed) await this.wait();
      }
      return;
    }
    const pace = this.pacer();
    while (!this.closed) {
      const n = step(this.maxBatch);
      if (n > 0) {
        const d = pace.afterBatch(n);
        yield n;
        if (n >= this.maxBatch || this.closed) continue;
        await (d > 0 ? new Promise((r) => setTimeout(r, d)) : new Promise((r) => setImmediate(r)));
        continue;
      }
      if (this.pending > 0) {
        // a record is still being written (busy bit): yield the loop briefly
        await new Promise((r) => setImmediate(r));
        continue;
      }
      // a kernel wake-up comes with the first record after we caught up: let a batch gather
      // before draining, at the rate seen before the ring went empty
      if ((await this.wait()) && this.coalesceMs > 0 && !this.closed) await new Promise((r) => setTimeout(r, pace.afterWake()));
    }
  }

  /** Batches of decoded records as they arrive (the next one is drained only when asked for); ends on close(). */
  async *batches(): AsyncGenerator<T[]> {
    let batch: T[] = [];
    const dec = this.opts.decode;
    const data = this.data;
    for await (const _n of this.pump((off, len) => void batch.push(dec(data, off, len)))) {
      const b = batch;
      batch = [];
      yield b;
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for await (const b of this.batches()) yield* b;
  }

  /** failed reservations counted by the BPF side (sum over CPUs), if a lostCounter was given */
  get lost(): number {
    const m = this.opts.lostCounter;
    if (!m) return 0;
    if (m.perCpu) return (m.getPerCpu(0) ?? []).reduce<number>((a, v) => a + Number(v), 0);
    return Number(m.get(0) ?? 0);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    untrack(this);
    // end a wait in progress now rather than at its timeout. The fds stay open until that wait has
    // returned: closing the eventfd drops its ready entry from the epoll set, and a waiter woken
    // but not yet run (a busy machine) then finds nothing and sleeps on to its timeout (seen in CI:
    // 9.8 s for a 10 s wait; 8 of 40 closes under 3 busy loops).
    C.write(this.wakefd, WAKE, 8);
    // closed from inside a batch (a visitor, a take() loop): its records are still being read
    if (this.taken >= 0) this.unmapOnRelease = true;
    else this.unmap();
    const { epfd, wakefd } = this;
    const closeFds = () => {
      C.close(epfd);
      C.close(wakefd);
    };
    if (this.waiting) void this.waiting.then(closeFds, closeFds);
    else closeFds();
  }

  private unmap(): void {
    this.unmapOnRelease = false;
    C.munmap(this.consumerPage, pageSize);
    C.munmap(this.producerArea, pageSize + 2 * this.size);
    this.consumerPage = NULL;
    this.producerArea = NULL;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * The coalescing delay after a batch (ms): time for `targetBatch` records at `ratePerSec`, at most
 * `maxMs`; 0 when that is under a millisecond (timers have 1 ms granularity: the consumer just
 * yields the event loop) or coalescing is off. Rate 0 (unknown) waits the maximum.
 */
export function coalesceDelayMs(ratePerSec: number, targetBatch: number, maxMs: number): number {
  if (maxMs <= 0) return 0;
  if (!(ratePerSec > 0)) return maxMs;
  const d = (targetBatch * 1000) / ratePerSec;
  return d < 1 ? 0 : Math.min(maxMs, Math.round(d));
}
