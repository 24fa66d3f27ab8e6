// libbpf reports warnings and details (CO-RE relocation failures, "failed to find kernel BTF", the
// verifier log when it owns the buffer) through its print callback. We capture them, so errors can
// carry them, instead of letting libbpf write to stderr in the middle of a progress display.
import { B, C, koffi, libbpf_print_fn } from './ffi.ts';

const LEVELS = ['warn', 'info', 'debug'] as const;
let sink: string[] | null = null;
const buf = Buffer.alloc(64 * 1024);
const verbose = process.env.EBPF_LAB_LIBBPF_DEBUG === '1';

const cb = koffi.register((level: number, fmt: string, ap: bigint) => {
  if (level === 2 && !verbose) return 0;
  const n = C.vsnprintf(buf, buf.length, fmt, ap);
  const line = buf.subarray(0, Math.max(0, Math.min(n, buf.length - 1))).toString('utf8');
  if (sink) sink.push(line);
  else if (verbose || level === 0) process.stderr.write(`libbpf ${LEVELS[level] ?? level}: ${line}`);
  return 0;
}, koffi.pointer(libbpf_print_fn));
B.libbpf_set_print(cb);

/** Run fn with libbpf's output captured; returns what libbpf printed. */
export function captureLibbpf<T>(fn: () => T): { result: T; log: string } {
  const prev = sink;
  const mine: string[] = [];
  sink = mine;
  try {
    const result = fn();
    return { result, log: mine.join('') };
  } finally {
    sink = prev;
    if (prev) prev.push(...mine);
  }
}
