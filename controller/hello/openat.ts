// The hello tracer's control plane: load bpf/hello_openat.bpf.o with the user's filters baked in
// as constants, attach it to the openat tracepoint, and hand out decoded events in batches.
//
// The record decoder reads only the fields a consumer prints, at offsets taken from the object's
// BTF (struct openat_event in bpf/hello_openat.h), and decodes strings straight out of the
// mmap'd ring with Buffer's native NUL search: no per-record FFI, no intermediate copies.
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
}

export class OpenatTracer implements Disposable {
  readonly ring: RingBuffer<OpenatEvent>;
  private readonly link: Link;
  private readonly statsHandle: { close(): void } | null;

  readonly obj: BpfObject;

  private constructor(
    readonly skel: HelloOpenat,
    opts: OpenatTracerOptions,
  ) {
    const obj = (this.obj = skel.obj);
    const L = obj.btf.layout('openat_event');
    const o = { pid: L.pid!.offset, tid: L.tid!.offset, uid: L.uid!.offset, flags: L.flags!.offset, comm: L.comm!, filename: L.filename! };
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
