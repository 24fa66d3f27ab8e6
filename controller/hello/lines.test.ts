// formatLine against printf's semantics ("%7u %-16.*s %.*s\n": bytes up to the NUL or the field's
// end, no decoding), on records built in memory: no kernel, no root. The kernel-fed test (the
// sink vs the C consumer's own output) is in scenarios/hello-openat.
import { describe, expect, it } from 'vitest';
import { fnameMark, formatLine, maxLineBytes, type LineLayout } from './lines.ts';
import { hello_fname_status } from '../../bpf/gen/hello_openat.enums.ts';

const FNAME_TRUNCATED = hello_fname_status.HELLO_FNAME_TRUNCATED;

// struct openat_event's shape (bpf/hello_openat.h) at offsets of its own: the function takes them as input
const at: LineLayout = { pid: 8, status: 12, comm: 20, commLen: 16, filename: 36, filenameLen: 256 };
const RECORD = 36 + 256;

/** printf("%7u %-16.*s %.*s\n") as bytes, the mark after a cut or unread name (c-consumer.c) */
function reference(pid: number, comm: Uint8Array, filename: Uint8Array, status = 0): Buffer {
  const upToNul = (b: Uint8Array) => {
    const i = b.indexOf(0);
    return Buffer.from(i < 0 ? b : b.subarray(0, i));
  };
  const c = upToNul(comm);
  return Buffer.concat([Buffer.from(`${String(pid).padStart(7)} `), c, Buffer.alloc(Math.max(0, 16 - c.length), 0x20), Buffer.from(' '), status < 0 ? Buffer.alloc(0) : upToNul(filename), Buffer.from(status === 0 ? '\n' : status > 0 ? ' (truncated)\n' : `(unreadable: errno ${-status})\n`)]);
}

function record(base: number, pid: number, comm: Uint8Array, filename: Uint8Array, status = 0): Uint8Array {
  // garbage around and after the strings: nothing past a NUL may leak into the line
  const r = new Uint8Array(base + RECORD + 8).map((_, i) => 0x41 + (i % 26));
  new DataView(r.buffer).setUint32(base + at.pid, pid, true);
  new DataView(r.buffer).setInt32(base + at.status, status, true);
  r.set(comm, base + at.comm);
  r.set(filename, base + at.filename);
  return r;
}

describe('formatLine (the C consumer\'s printf, byte for byte)', () => {
  const names: [string, Uint8Array][] = [];
  // every length 0..20 (NUL at each position of the first words), and around the field's end
  for (let n = 0; n <= 20; n++) names.push([`${n} bytes`, Uint8Array.from({ length: n + 1 }, (_, i) => (i < n ? 0x61 + (i % 26) : 0))]);
  for (const n of [251, 252, 253, 254, 255]) names.push([`${n} bytes`, Uint8Array.from({ length: n + 1 }, (_, i) => (i < n ? 0x2f + (i % 40) : 0))]);
  names.push(['256 bytes, no NUL (the field is full)', Uint8Array.from({ length: 256 }, (_, i) => 0x30 + (i % 10))]);
  names.push(['UTF-8 and invalid UTF-8, high bytes in every lane', Uint8Array.from([0xc3, 0xa9, 0x80, 0xff, 0x7f, 0xfe, 0x01, 0xe2, 0x82, 0xac, 0x90, 0]) ]);
  const comms: Uint8Array[] = [new Uint8Array([0]), Buffer.from('openat-loadgen\0'), Buffer.from('abcdefghijklmno\0'), Uint8Array.from({ length: 16 }, () => 0x78), Buffer.from('\xff\x80a\0', 'latin1')];

  it.each(names)('filename of %s, at every alignment of the record and of the output, several comms and pids', (_name, filename) => {
    for (const base of [0, 1, 2, 3, 8]) {
      for (const [k, comm] of comms.entries()) {
        const pid = [1, 7, 42, 1234567, 4194304][k]!;
        const src = record(base, pid, comm, filename);
        const dv = new DataView(src.buffer);
        for (const start of [0, 1, 3]) {
          const out = new Uint8Array(start + maxLineBytes(at) + 8).fill(0xee);
          const end = formatLine(src, dv, at, base, out, new DataView(out.buffer), start);
          const want = reference(pid, comm.subarray(0, 16), filename.subarray(0, 256));
          expect(Buffer.from(out.subarray(start, end)).toString('latin1')).toBe(want.toString('latin1'));
          expect(end - start).toBeLessThanOrEqual(maxLineBytes(at));
          expect(out.subarray(0, start).every((b) => b === 0xee) && out.subarray(end).every((b) => b === 0xee)).toBe(true); // nothing written outside the line
        }
      }
    }
  });

  // the kernel side marks a name it cut at the field (fname_status) or could not read (-errno,
  // the field empty): the line says so, as the C consumer's does
  it.each([['cut', FNAME_TRUNCATED, Uint8Array.from({ length: 256 }, (_, i) => (i < 255 ? 0x61 + (i % 26) : 0))], ['unreadable (EFAULT)', -14, new Uint8Array(256)], ['unreadable (a large errno)', -4095, new Uint8Array(256)]] as const)('a %s name carries its mark', (_name, status, filename) => {
    for (const base of [0, 3]) {
      const src = record(base, 42, Buffer.from('cat\0'), filename, status);
      const out = new Uint8Array(maxLineBytes(at) + 8).fill(0xee);
      const end = formatLine(src, new DataView(src.buffer), at, base, out, new DataView(out.buffer), 1);
      expect(Buffer.from(out.subarray(1, end)).toString('latin1')).toBe(reference(42, Buffer.from('cat\0'), filename, status).toString('latin1'));
      expect(end - 1).toBeLessThanOrEqual(maxLineBytes(at));
      expect(out.subarray(end).every((b) => b === 0xee)).toBe(true);
    }
  });

  it('names the mark for each status', () => {
    expect(fnameMark(0)).toBe('');
    expect(fnameMark(FNAME_TRUNCATED)).toBe(' (truncated)');
    expect(fnameMark(-14)).toBe('(unreadable: errno 14)');
  });
});
