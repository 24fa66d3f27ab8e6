// BPF ring buffer consumer that reads the memory-mapped ring directly from JavaScript.
//
// Why not libbpf's ring_buffer__poll: it calls back into JS once per record (~2.5 µs each through
// koffi), which caps a Node consumer far below a C one. Here a drain is a loop over a DataView on
// the shared mapping: no FFI per record, one consumer-position store per batch. The kernel only
// wakes a waiter when the consumer had caught up, so under load we wake once per batch, and the
// wait itself (epoll_wait) runs on a worker thread via koffi's async call, never blocking the loop.
import { C, NULL, errno, view, type Ptr } from './ffi.ts';
import { BpfError, errnoName } from './errors.ts';
import type { BpfMap } from './map.ts';
import { MapType } from './map.ts';
import { track, untrack } from './lifecycle.ts';

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const BUSY = 0x80000000;
const DISCARD = 0x40000000;
const HDR = 8;
const EPOLLIN = 1;
const pageSize = Number(C.sysconf(30 /* _SC_PAGESIZE */));

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
   * After a small batch, sleep this long before draining again instead of waiting for a kernel
   * wake-up (ms, 0 = off). At low rates the kernel wakes the consumer for every record (it always
   * caught up), and each wake-up through a worker thread costs ~20 µs; coalescing bounds wake-ups
   * to 1/coalesceMs per second at the price of that much delivery latency.
   */
  coalesceMs?: number;
  /** a batch smaller than this counts as small (see coalesceMs) */
  smallBatch?: number;
  /** a map (array or per-CPU array, key 0) where the BPF side counts failed reservations */
  lostCounter?: BpfMap<number, unknown>;
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
  private closed = false;
  private readonly maxBatch: number;
  private readonly idleWaitMs: number;
  private readonly coalesceMs: number;
  private readonly smallBatch: number;
  /** records delivered to the consumer */
  delivered = 0;
  /** wake-ups that found data (epoll returns) */
  wakeups = 0;
  /** records the BPF side discarded (bpf_ringbuf_discard) */
  discarded = 0;

  constructor(
    readonly map: BpfMap,
    private readonly opts: RingBufferOptions<T>,
  ) {
    if (map.meta.type !== MapType.RINGBUF) throw new BpfError(`map "${map.name}" is not a ring buffer (type ${map.meta.type})`);
    this.size = map.meta.maxEntries;
    this.maxBatch = opts.maxBatch ?? 4096;
    this.idleWaitMs = opts.idleWaitMs ?? 100;
    this.coalesceMs = opts.coalesceMs ?? 5;
    this.smallBatch = opts.smallBatch ?? 256;
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
    this.hdrs = new Uint32Array(data);
    this.epfd = C.epoll_create1(0o2000000 /* EPOLL_CLOEXEC */);
    const ev = { events: EPOLLIN, data: 0 };
    if ((C.epoll_ctl(this.epfd, 1 /* ADD */, fd, ev)) < 0) {
      const e = errno();
      C.munmap(this.consumerPage, pageSize);
      C.munmap(this.producerArea, pageSize + 2 * this.size);
      C.close(this.epfd);
      throw new BpfError(`epoll_ctl on ring buffer "${map.name}": ${errnoName(e)}`, e);
    }
    track(this);
  }

  /** bytes written by the producer and not yet consumed */
  get pending(): number {
    return this.readPos(this.prod) - this.readPos(this.cons);
  }

  private readPos(pos: BigUint64Array): number {
    // 2^53 bytes through one ring is centuries at any rate: a Number holds it exactly
    return Number(Atomics.load(pos, 0));
  }

  /** Take up to `max` committed records out of the ring now (no waiting). */
  drain(max = this.maxBatch): T[] {
    const out: T[] = [];
    if (this.closed) return out;
    let cons = this.readPos(this.cons);
    const prod = this.readPos(this.prod);
    const dec = this.opts.decode;
    const data = this.data;
    while (cons < prod && out.length < max) {
      const off = cons % this.size; // positions are 64-bit; JS bit ops are 32-bit, so no masking
      const hdr = Atomics.load(this.hdrs, off >>> 2); // records are 8-byte aligned
      if (hdr & BUSY) break;
      const len = hdr & ~(BUSY | DISCARD) & 0x3fffffff;
      if (hdr & DISCARD) this.discarded++;
      else out.push(dec(data, off + HDR, len));
      cons += (len + HDR + 7) & ~7;
    }
    Atomics.store(this.cons, 0, BigInt(cons)); // release: the kernel may reuse what we consumed
    this.delivered += out.length;
    return out;
  }

  /**
   * Hand up to `max` committed records to `visit` in place (dv, offset, length: a view on the ring
   * that is valid only during the call), then release them all at once. No decode, no array, no
   * allocation per record: for consumers that process each record synchronously. Returns the count.
   */
  visit(fn: (dv: DataView, off: number, len: number) => void, max = this.maxBatch): number {
    if (this.closed) return 0;
    let cons = this.readPos(this.cons);
    const prod = this.readPos(this.prod);
    let n = 0;
    try {
      while (cons < prod && n < max) {
        const off = cons % this.size;
        const hdr = Atomics.load(this.hdrs, off >>> 2);
        if (hdr & BUSY) break;
        const len = hdr & ~(BUSY | DISCARD) & 0x3fffffff;
        // advanced before the call: a record that throws is not handed over again
        cons += (len + HDR + 7) & ~7;
        if (hdr & DISCARD) this.discarded++;
        else {
          n++;
          fn(this.data, off + HDR, len);
        }
      }
    } finally {
      Atomics.store(this.cons, 0, BigInt(cons));
      this.delivered += n;
    }
    return n;
  }

  /** Call `visit` for records as they arrive (same pacing as batches()); ends on close(). */
  async visitAll(fn: (dv: DataView, off: number, len: number) => void): Promise<void> {
    while (!this.closed) {
      const n = this.visit(fn, this.maxBatch);
      if (n) {
        if (n < this.smallBatch && this.coalesceMs > 0 && !this.closed) await new Promise((r) => setTimeout(r, this.coalesceMs));
        else await new Promise((r) => setImmediate(r)); // let the rest of the process run between batches
        continue;
      }
      if (this.pending > 0) {
        await new Promise((r) => setImmediate(r));
        continue;
      }
      await this.wait();
    }
  }

  /** Wait (on a worker thread) until the kernel signals data or the timeout passes. */
  async wait(timeoutMs = this.idleWaitMs): Promise<boolean> {
    if (this.closed) return false;
    const n = await C.epoll_wait(this.epfd, { events: 0, data: 0 }, 1, timeoutMs);
    if (n > 0) this.wakeups++;
    return n > 0;
  }

  /** Batches of records as they arrive (the next one is drained only when asked for); ends on close(). */
  async *batches(): AsyncGenerator<T[]> {
    while (!this.closed) {
      const batch = this.drain(this.maxBatch);
      if (batch.length) {
        yield batch;
        if (batch.length < this.smallBatch && this.coalesceMs > 0 && !this.closed) await new Promise((r) => setTimeout(r, this.coalesceMs));
        continue;
      }
      if (this.pending > 0) {
        // a record is still being written (busy bit): yield the loop briefly
        await new Promise((r) => setImmediate(r));
        continue;
      }
      await this.wait();
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
    C.munmap(this.consumerPage, pageSize);
    C.munmap(this.producerArea, pageSize + 2 * this.size);
    C.close(this.epfd);
    this.consumerPage = NULL;
    this.producerArea = NULL;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
