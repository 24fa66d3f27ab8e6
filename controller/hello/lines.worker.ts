// The line sink on a thread of its own (OpenatTracer.writeLinesInWorker): maps the tracer's ring
// by its fd and runs RingBuffer.pumpBlocking — the C consumer's loop (drain, format, one write per
// batch, a futex sleep for the coalescing delay, a blocking epoll_wait when the ring is empty)
// with no event loop, timer or promise per batch. Counters go to the shared memory the tracer
// reads; nothing is posted per batch.
import { parentPort, workerData } from 'node:worker_threads';
import { RingBuffer } from '../libbpf/ringbuf.ts';
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
  /** Int32 [0] = stop; BigInt64 [1..3] = delivered, batches, CLOCK_MONOTONIC ns of the last batch */
  shared: SharedArrayBuffer;
}

const d = workerData as LineWorkerData;
const ring = RingBuffer.fromFd<null>(d.ringFd, d.ringBytes, 'events', { decode: () => null, coalesceMs: d.coalesceMs });
const ctl = new Int32Array(d.shared, 0, 1);
const stats = new BigInt64Array(d.shared, 8, 3);
const sink = lineSink(ring, d.at, d.outFd, d.bufBytes);
parentPort?.postMessage('ready');
try {
  ring.pumpBlocking(sink.step, ctl, (n) => {
    sink.flush();
    Atomics.add(stats, 0, BigInt(n));
    Atomics.add(stats, 1, 1n);
    const now = process.hrtime.bigint();
    Atomics.store(stats, 2, now);
    if (d.injectDelayNs > 0) for (const until = now + BigInt(d.injectDelayNs * n); process.hrtime.bigint() < until; );
  });
  sink.flush();
} finally {
  ring.close();
}
