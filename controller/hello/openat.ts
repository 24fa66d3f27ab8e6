// The hello tracer's control plane: load bpf/hello_openat.bpf.o with the user's filters baked in
// as constants, attach it to the openat tracepoint, and hand out decoded events in batches.
//
// The record decoder reads only the fields a consumer prints, at offsets taken from the object's
// BTF (struct openat_event in bpf/hello_openat.h), and decodes strings straight out of the
// mmap'd ring with Buffer's native NUL search: no per-record FFI, no intermediate copies.
// The line sink (writeLines) goes further: it formats each record's bytes straight from the ring
// into one reusable output buffer (no JS string, object or array per record) and writes once per
// batch — the profile of the decode-then-format path was dominated by string building, UTF-8
// decoding and the garbage both leave behind.
import fs from 'node:fs';
import { RingBuffer, attachAuto, enableStats, type BpfObject, type Link } from '../libbpf/index.ts';
import { ensureObject } from '../../bpf/build.ts';
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

export class OpenatTracer implements Disposable {
  readonly ring: RingBuffer<OpenatEvent>;
  private readonly link: Link;
  private readonly statsHandle: { close(): void } | null;

  readonly obj: BpfObject;
  /** byte offsets in struct openat_event of what a line prints (from BTF) */
  private readonly at: { pid: number; comm: number; commLen: number; filename: number; filenameLen: number };

  private constructor(
    readonly skel: HelloOpenat,
    opts: OpenatTracerOptions,
  ) {
    const obj = (this.obj = skel.obj);
    const L = obj.btf.layout('openat_event');
    const o = { pid: L.pid!.offset, tid: L.tid!.offset, uid: L.uid!.offset, flags: L.flags!.offset, comm: L.comm!, filename: L.filename! };
    this.at = { pid: o.pid, comm: o.comm.offset, commLen: o.comm.size, filename: o.filename.offset, filenameLen: o.filename.size };
    let buf: Buffer | null = null;
    const str = (start: number, size: number) => {
      const end = buf!.indexOf(0, start);
      return buf!.toString('utf8', start, end < 0 || end > start + size ? start + size : end);
    };
    this.ring = new RingBuffer<OpenatEvent>(skel.maps.events, {
      decode: (dv, off) => {
        if (buf === null || buf.buffer !== dv.buffer) buf = Buffer.from(dv.buffer, dv.byteOffset, dv.byteLength);
        return {
          pid: dv.getUint32(off + o.pid, true),
          tid: dv.getUint32(off + o.tid, true),
          uid: dv.getUint32(off + o.uid, true),
          flags: dv.getInt32(off + o.flags, true),
          comm: str(off + o.comm.offset, o.comm.size),
          filename: str(off + o.filename.offset, o.filename.size),
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
      throw new Error(`--comm "${opts.comm}" is longer than the kernel's 15-character comm: use its first 15 characters`);
    }
    if (opts.pid !== undefined && !(Number.isInteger(opts.pid) && opts.pid > 0)) throw new Error(`--pid must be a positive integer, got ${opts.pid}`);
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

  get lost(): number {
    return this.ring.lost;
  }

  /** longest line formatLine() writes: 10 pid digits, comm, filename, 2 spaces, newline */
  get maxLineBytes(): number {
    return 10 + this.at.commLen + this.at.filenameLen + 3;
  }

  /**
   * Format the record at ring offset `off` as formatEvent() does ("%7u %-16s %s\n", the C
   * consumer's printf) into `out` at `pos`, byte for byte from the ring; returns the new position.
   * Strings are copied as bytes up to their NUL, as printf does: no decoding, no allocation.
   */
  formatLine(off: number, out: Uint8Array, pos: number): number {
    const src = this.ring.bytes;
    const at = this.at;
    let pid = this.ring.view.getUint32(off + at.pid, true);
    let digits = 1;
    for (let p = pid; p >= 10; p = (p / 10) | 0) digits++;
    for (let i = digits; i < 7; i++) out[pos++] = 0x20;
    let d = pos + digits;
    pos = d;
    do {
      out[--d] = 0x30 + (pid % 10);
      pid = (pid / 10) | 0;
    } while (pid > 0);
    out[pos++] = 0x20;
    let s = off + at.comm;
    let end = s + at.commLen;
    const commEnd = pos + 16;
    while (s < end) {
      const b = src[s++]!;
      if (b === 0) break;
      out[pos++] = b;
    }
    while (pos < commEnd) out[pos++] = 0x20;
    out[pos++] = 0x20;
    s = off + at.filename;
    end = s + at.filenameLen;
    while (s < end) {
      const b = src[s++]!;
      if (b === 0) break;
      out[pos++] = b;
    }
    out[pos++] = 0x0a;
    return pos;
  }

  /**
   * The line sink: every record as one formatLine() line to `fd`, formatted into one reusable
   * buffer and written once per batch (or when the buffer fills), with the ring's wake-up policy.
   * Resolves when the tracer is closed; onBatch sees each batch's record count after its write.
   */
  async writeLines(fd: number, onBatch?: (n: number) => void, bufBytes = 1 << 20): Promise<void> {
    const out = Buffer.allocUnsafe(Math.max(bufBytes, 2 * this.maxLineBytes));
    const limit = out.length - this.maxLineBytes;
    let pos = 0;
    const flush = () => {
      for (let w = 0; w < pos; ) w += fs.writeSync(fd, out, w, pos - w);
      pos = 0;
    };
    const ring = this.ring;
    const offs = ring.offsets();
    // one loop over the batch's offsets (take/release), not a callback per record
    const step = (max: number) => {
      const n = ring.take(offs, max);
      for (let i = 0; i < n; i++) {
        if (pos > limit) flush();
        pos = this.formatLine(offs[i]!, out, pos);
      }
      ring.release();
      return n;
    };
    for await (const n of ring.pump({ step })) {
      flush();
      onBatch?.(n);
    }
  }

  close(): void {
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
  return `${String(e.pid).padStart(7)} ${e.comm.padEnd(16)} ${e.filename}`;
}
