// The hello tracer's line format ("%7u %-16s %s\n" and a mark on a cut or unread name, the C
// consumer's printf), written byte for
// byte from a ring record into an output buffer. A leaf (no libbpf object), so the line worker
// (lines.worker.ts) formats exactly as the tracer on the main thread does.
import type { RingBuffer } from '../libbpf/ringbuf.ts';
import { writeAll } from '../libbpf/fdio.ts';
import { hello_fname_status } from '../../bpf/gen/hello_openat.enums.ts';

/** byte offsets in struct openat_event of what a line prints (from BTF; OpenatTracer reads them) */
export interface LineLayout {
  pid: number;
  comm: number;
  commLen: number;
  filename: number;
  filenameLen: number;
  /** fname_status: hello_fname_status (whole, truncated), or -errno (the name could not be read) */
  status: number;
}

/**
 * What follows the name when the kernel side could not keep it whole (the C consumer's
 * HELLO_TRUNCATED_MARK / HELLO_UNREADABLE_MARK): a cut or unread name is never shown as if whole.
 */
export function fnameMark(status: number): string {
  if (status === hello_fname_status.HELLO_FNAME_WHOLE) return '';
  return status === hello_fname_status.HELLO_FNAME_TRUNCATED ? ' (truncated)' : status < 0 ? `(unreadable: errno ${-status})` : ` (fname_status ${status})`;
}
const MARK_MAX = 32;
const marks = new Map<number, Buffer>();
function markBytes(status: number): Buffer {
  let m = marks.get(status);
  if (!m) {
    m = Buffer.from(fnameMark(status).slice(0, MARK_MAX));
    if (marks.size < 64) marks.set(status, m);
  }
  return m;
}

/** longest line formatLine() writes: 10 pid digits, comm, filename, its mark, 2 spaces, newline */
export function maxLineBytes(at: LineLayout): number {
  return 10 + at.commLen + at.filenameLen + MARK_MAX + 3;
}

/**
 * Copy the C string at src[s, end) (up to its NUL) to out at `pos`; returns the new position.
 * Four bytes at a time while a word holds no NUL (the classic has-zero-byte test), then byte by
 * byte: names are mostly longer than a few bytes, and a byte loop with its bounds checks was the
 * larger part of formatting a line. `dv`/`odv` are DataViews of `src`/`out` (unaligned words).
 */
function copyCString(src: Uint8Array, dv: DataView, s: number, end: number, out: Uint8Array, odv: DataView, pos: number): number {
  while (s + 4 <= end) {
    const w = dv.getUint32(s, true);
    if (((w - 0x01010101) & ~w & 0x80808080) !== 0) break; // a zero byte in this word
    odv.setUint32(pos, w, true);
    s += 4;
    pos += 4;
  }
  while (s < end) {
    const b = src[s++]!;
    if (b === 0) break;
    out[pos++] = b;
  }
  return pos;
}

/**
 * Format the record at `off` of the ring's data area (`src` bytes, `dv` the same memory) into `out`
 * (`odv` a DataView of it) at `pos`; returns the new position. Strings are copied as bytes up to
 * their NUL, as printf does: no decoding, no allocation.
 */
export function formatLine(src: Uint8Array, dv: DataView, at: LineLayout, off: number, out: Uint8Array, odv: DataView, pos: number): number {
  let pid = dv.getUint32(off + at.pid, true);
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
  const commEnd = pos + 16;
  pos = copyCString(src, dv, off + at.comm, off + at.comm + at.commLen, out, odv, pos);
  while (pos < commEnd) out[pos++] = 0x20;
  out[pos++] = 0x20;
  const status = dv.getInt32(off + at.status, true);
  // an unread name's field holds nothing of it (the helper zeroes it on failure; not relied on)
  if (status >= 0) pos = copyCString(src, dv, off + at.filename, off + at.filename + at.filenameLen, out, odv, pos);
  if (status !== 0) {
    const m = markBytes(status);
    out.set(m, pos);
    pos += m.length;
  }
  out[pos++] = 0x0a;
  return pos;
}

/**
 * The line sink's loop body over a ring: take a batch (take/release, one monomorphic loop, no
 * callback per record), format every record into `out`, flushing to `fd` when it fills (libc
 * write: fdio.ts); the caller flushes after each batch. Shared by writeLines on the main thread
 * and the line worker.
 */
export function lineSink(ring: Pick<RingBuffer<unknown>, 'bytes' | 'view' | 'offsets' | 'take' | 'release'>, at: LineLayout, fd: number, bufBytes = 1 << 20) {
  const out = Buffer.allocUnsafe(Math.max(bufBytes, 2 * maxLineBytes(at)));
  const odv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const limit = out.length - maxLineBytes(at);
  const offs = ring.offsets();
  const src = ring.bytes;
  const dv = ring.view;
  let pos = 0;
  const flush = () => {
    if (pos > 0) writeAll(fd, out, pos);
    pos = 0;
  };
  const step = (max: number) => {
    const n = ring.take(offs, max);
    for (let i = 0; i < n; i++) {
      if (pos > limit) flush();
      pos = formatLine(src, dv, at, offs[i]!, out, odv, pos);
    }
    ring.release();
    return n;
  };
  return { step, flush };
}
