// The hello tracer's control plane: load bpf/hello_openat.bpf.o with the user's filters baked in
// as constants, attach it to the openat tracepoint, and hand out decoded events in batches.
//
// The record decoder reads only the fields a consumer prints, at offsets taken from the object's
// BTF (struct openat_event in bpf/hello_openat.h), and decodes strings straight out of the
// mmap'd ring with Buffer's native NUL search: no per-record FFI, no intermediate copies.
// The line sink (writeLines) goes further: it formats each record's bytes straight from the ring
// into one reusable output buffer (no JS string, object or array per record) and writes once per
// batch — the profile of the decode-then-format path was dominated by string building, UTF-8
// decoding and the garbage both leave behind. writeLinesInWorker runs that sink on a thread of its
// own in a blocking loop, with none of the event loop's per-batch cost (ARCHITECTURE.md, ring
// buffer consumer).
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { RingBuffer, attachAuto, enableStats, type BpfObject, type Link } from '../libbpf/index.ts';
import { ensureObject } from '../../bpf/build.ts';
import { workerEntry } from '../../common/dist.ts';
import { printable } from '../../common/printable.ts';
import { ensureMounts } from '../../common/host.ts';
import { fnameMark, lineSink, type LineLayout } from './lines.ts';
import type { LineWorkerData } from './lines.worker.ts';
import { helloOpenat, type HelloOpenat, type openat_event } from '../../bpf/gen/hello_openat.ts';

/** What the consumer decodes of struct openat_event (bpf/hello_openat.h): all but the timestamp. */
export type OpenatEvent = Omit<openat_event, 'ts_ns'>;

export interface OpenatTracerOptions {
  /** only this process (tgid) */
  pid?: number;
  /** only processes with this comm (exact, up to 15 chars) */
  comm?: string;
  /** ring buffer bytes (power of two, multiple of the page size) */
  ringBytes?: number;
  /** count run_time_ns/run_cnt for the program while the tracer runs */
  stats?: boolean;
  /** the ring's coalescing bound (RingBufferOptions.coalesceMs) */
  coalesceMs?: number;
}

const LINE_WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lines.worker.ts');

/** the line sink on its worker thread (OpenatTracer.writeLinesInWorker) */
export interface LineWorker {
  /** records written, non-empty batches, CLOCK_MONOTONIC ns of the last one */
  stats(): { delivered: number; batches: number; lastNs: bigint };
  /** end the loop after a last drain; resolves when the worker has exited */
  stop(): Promise<void>;
  /** resolves when the worker exits, rejects if it failed */
  done: Promise<void>;
  /** resolves once the worker has mapped the ring and is about to consume */
  ready: Promise<void>;
}

export class OpenatTracer implements Disposable {
  readonly ring: RingBuffer<OpenatEvent>;
  private readonly link: Link;
  private readonly statsHandle: { close(): void } | null;

  readonly obj: BpfObject;
  /** byte offsets in struct openat_event of what a line prints (from BTF) */
  private readonly at: LineLayout;
  private readonly coalesceMs: number | undefined;

  private constructor(
    readonly skel: HelloOpenat,
    opts: OpenatTracerOptions,
  ) {
    const obj = (this.obj = skel.obj);
    const L = obj.btf.layout('openat_event');
    const o = { pid: L.pid!.offset, tid: L.tid!.offset, uid: L.uid!.offset, flags: L.flags!.offset, status: L.fname_status!.offset, comm: L.comm!, filename: L.filename! };
    this.coalesceMs = opts.coalesceMs;
    this.at = { pid: o.pid, comm: o.comm.offset, commLen: o.comm.size, filename: o.filename.offset, filenameLen: o.filename.size, status: o.status };
    let buf: Buffer | null = null;
    const str = (start: number, size: number) => {
      const end = buf!.indexOf(0, start);
      return buf!.toString('utf8', start, end < 0 || end > start + size ? start + size : end);
    };
    this.ring = new RingBuffer<OpenatEvent>(skel.maps.events, {
      decode: (dv, off) => {
        if (buf === null || buf.buffer !== dv.buffer) buf = Buffer.from(dv.buffer, dv.byteOffset, dv.byteLength);
        const fnameStatus = dv.getInt32(off + o.status, true);
        return {
          pid: dv.getUint32(off + o.pid, true),
          tid: dv.getUint32(off + o.tid, true),
          uid: dv.getUint32(off + o.uid, true),
          flags: dv.getInt32(off + o.flags, true),
          fname_status: fnameStatus,
          comm: str(off + o.comm.offset, o.comm.size),
          filename: fnameStatus < 0 ? '' : str(off + o.filename.offset, o.filename.size),
        };
      },
      lostCounter: skel.maps.lost,
      coalesceMs: opts.coalesceMs,
    });
    this.statsHandle = opts.stats ? enableStats() : null;
    this.link = attachAuto(skel.programs.handle_openat);
  }

  static async start(opts: OpenatTracerOptions = {}): Promise<OpenatTracer> {
    if (opts.comm !== undefined && Buffer.byteLength(opts.comm) > 15) {
      throw new Error(`--comm "${opts.comm}" is longer than the kernel's 15-byte comm: use at most its first 15 bytes`);
    }
    if (opts.pid !== undefined && !(Number.isInteger(opts.pid) && opts.pid > 0)) throw new Error(`--pid must be a positive integer, got ${opts.pid}`);
    // libbpf finds the tracepoint's id in tracefs, which a freshly booted machine may not have mounted
    await ensureMounts();
    const skel = helloOpenat.open(await ensureObject('hello_openat'));
    try {
      skel.setRodata({ target_tgid: opts.pid || undefined, target_comm: opts.comm || undefined });
      skel.load({ maxEntries: opts.ringBytes ? { events: opts.ringBytes } : undefined });
      return new OpenatTracer(skel, opts);
    } catch (e) {
      skel.close();
      throw e;
    }
  }

  /** the program's own cost so far (needs stats: true) */
  programStats(): { runCnt: number; runTimeNs: number; nsPerEvent: number | null } {
    const i = this.skel.programs.handle_openat.info();
    const runCnt = Number(i.runCnt);
    const runTimeNs = Number(i.runTimeNs);
    return { runCnt, runTimeNs, nsPerEvent: runCnt ? runTimeNs / runCnt : null };
  }

  /** read as the tracer closes: the counter's map is gone after that */
  private lostAtClose: number | null = null;

  get lost(): number {
    return this.lostAtClose ?? this.ring.lost;
  }

  /**
   * The line sink: every record as one line (lines.ts formatLine: the C consumer's printf, byte
   * for byte from the ring) to `fd`, formatted into one reusable buffer and written once per batch
   * (or when the buffer fills), with the ring's wake-up policy, on this thread's event loop.
   * Resolves when the tracer is closed; onBatch sees each batch's record count after its write.
   */
  async writeLines(fd: number, onBatch?: (n: number) => void, bufBytes = 1 << 20): Promise<void> {
    const sink = lineSink(this.ring, this.at, fd, bufBytes);
    for await (const n of this.ring.pump({ step: sink.step })) {
      sink.flush();
      onBatch?.(n);
    }
  }

  /**
   * writeLines() on a worker thread of its own (lines.worker.ts), in a blocking loop: the same
   * formatting and wake-up policy, but each coalescing sleep is a futex wait and an empty ring a
   * blocking epoll_wait, where the event loop pays a timer, a libuv turn and an async generator
   * step per batch, plus koffi's thread pool for every idle wait. Costs a thread (and its V8
   * isolate, ~10 MiB) and gives up onBatch: the counters are read with stats(). stop() ends the
   * loop after a last drain (close() of the tracer stops it too, without waiting).
   */
  writeLinesInWorker(fd: number, opts: { bufBytes?: number; injectDelayNs?: number } = {}): LineWorker {
    const shared = new SharedArrayBuffer(32);
    const ctl = new Int32Array(shared, 0, 1);
    this.workerCtls.push(ctl);
    const counters = new Float64Array(shared, 8, 3);
    const data: LineWorkerData = { ringFd: this.ring.map.fd, ringBytes: this.ring.map.meta.maxEntries, at: this.at, outFd: fd, coalesceMs: this.coalesceMs, injectDelayNs: opts.injectDelayNs ?? 0, bufBytes: opts.bufBytes ?? 1 << 20, shared };
    const [file, how] = workerEntry(LINE_WORKER);
    const w = new Worker(file, { ...how, workerData: data });
    const exited = new Promise<void>((resolve, reject) => {
      w.once('error', reject);
      w.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`line worker exited with ${code}`))));
    });
    exited.catch(() => {}); // seen by whoever awaits stop()
    const ready = new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      exited.then(() => reject(new Error('line worker exited before it was ready')), reject);
    });
    ready.catch(() => {});
    return {
      ready,
      stats: () => ({ delivered: counters[0]!, batches: counters[1]!, lastNs: BigInt(Math.round(counters[2]!)) }),
      stop: () => {
        Atomics.store(ctl, 0, 1);
        Atomics.notify(ctl, 0);
        return exited;
      },
      done: exited,
    };
  }

  private closed = false;
  /** the stop flags of line workers started on this tracer: close() raises them */
  private readonly workerCtls: Int32Array[] = [];

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.lostAtClose = this.ring.lost;
    } catch {
      this.lostAtClose = 0;
    }
    // a worker maps the ring on its own and would outlive the tracer (and keep the process alive)
    for (const ctl of this.workerCtls) {
      Atomics.store(ctl, 0, 1);
      Atomics.notify(ctl, 0);
    }
    this.link.close();
    this.ring.close();
    this.statsHandle?.close();
    this.obj.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export function formatEvent(e: OpenatEvent): string {
  // comm and file name are the traced process's to choose: escaped, not sent raw to a terminal
  return `${String(e.pid).padStart(7)} ${printable(e.comm).padEnd(16)} ${printable(e.filename)}${fnameMark(e.fname_status)}`;
}
