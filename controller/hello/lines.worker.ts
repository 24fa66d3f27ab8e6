// The line sink on a thread of its own (OpenatTracer.writeLinesInWorker): maps the tracer's ring
// by its fd and runs RingBuffer.pumpBlocking — the C consumer's loop (drain, format, one write per
// batch, a futex sleep for the coalescing delay, a blocking epoll_wait when the ring is empty)
// with no event loop, timer or promise per batch. Counters go to the shared memory the tracer
// reads; nothing is posted per batch.
import { parentPort, workerData } from 'node:worker_threads';
import { RingBuffer } from '../libbpf/ringbuf.ts';
import { BpfError, Errno } from '../libbpf/errors.ts';
import { lineSink, type LineLayout } from './lines.ts';

export interface LineWorkerData {
  ringFd: number;
  ringBytes: number;
  at: LineLayout;
  outFd: number;
  coalesceMs?: number;
  /** the bench's --inject-delay-us: a deliberate, labelled busy wait per event (validates `lab compare`) */
  injectDelayNs: number;
  /** the output buffer (flushed once per batch, or when full) */
  bufBytes: number;
  /**
   * Int32 [0] = stop; Float64 [1..3] = delivered, batches, CLOCK_MONOTONIC ns of the last batch.
   * One writer (this thread), plain stores: an aligned 8-byte store is single-copy atomic on the
   * lab's targets (x86-64, arm64), and the final values are read after the worker's exit.
   */
  shared: SharedArrayBuffer;
}

const d = workerData as LineWorkerData;
const ring = RingBuffer.fromFd<null>(d.ringFd, d.ringBytes, 'events', { decode: () => null, coalesceMs: d.coalesceMs });
const ctl = new Int32Array(d.shared, 0, 1);
const stats = new Float64Array(d.shared, 8, 3);
const sink = lineSink(ring, d.at, d.outFd, d.bufBytes);
// CLOCK_MONOTONIC ns = this thread's performance.now() (ms) × 1e6 + origin: a batch's time without
// process.hrtime.bigint(), which with the BigInt64 Atomics the counters used before cost ~10 µs per
// batch here (7.3 and 3.3 µs measured, exploratory): ~5% of the CPU per event at 100k/s.
const origin = Number(process.hrtime.bigint()) - performance.now() * 1e6;
parentPort?.postMessage('ready');
try {
  ring.pumpBlocking(sink.step, ctl, (n) => {
    sink.flush();
    const now = performance.now();
    stats[0]! += n;
    stats[1]! += 1;
    stats[2] = origin + now * 1e6;
    if (d.injectDelayNs > 0) for (const until = now + (d.injectDelayNs * n) / 1e6; performance.now() < until; );
  });
  sink.flush();
} catch (e) {
  // the reader went (`… | head -1`): the sink ends as the C consumer's does, not with a stack
  // trace and no summary (review, session 57)
  if (!(e instanceof BpfError && e.errno === Errno.EPIPE)) throw e;
} finally {
  ring.close();
}
