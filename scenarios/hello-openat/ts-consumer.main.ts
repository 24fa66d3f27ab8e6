// The TS consumer as a process of its own, with the C consumer's contract (c-consumer.c), so the
// benchmark drives and measures both alike: the same driver (runConsumersTogether), CPU of the
// consumer's process only. In the lab's own process the TS consumer was also charged the lab's
// work during the window — the driver's sampling and settle timers, child-process bookkeeping, and
// the garbage collections of the runner's heap that each new ring's 32 MiB of external views set
// off ("external memory pressure") — none of which a C consumer in its own process pays.
//
// usage: node --import tsx scenarios/hello-openat/ts-consumer.main.ts PID [COALESCE_MS] [worker|loop]
//          worker (default): OpenatTracer.writeLinesInWorker, the blocking loop on a thread of its own
//          loop: OpenatTracer.writeLines on the main thread's event loop
//        records to stdout.
// stderr: "READY" once attached; on SIGINT/SIGTERM it stops, flushes and prints
//         {"delivered":N,"lost":N,"batches":N,"last_ns":N} as its last line (last_ns:
//         CLOCK_MONOTONIC of the last batch that delivered, as the C consumer's), plus
//         prog_run_cnt and prog_run_time_ns with EBPF_LAB_PROG_STATS=1.
import { OpenatTracer } from '../../controller/hello/openat.ts';
import { deferSignalsToCaller } from '../../controller/libbpf/lifecycle.ts';
import { BpfError, Errno } from '../../controller/libbpf/errors.ts';

const [pidArg, coalesceArg, threadArg = 'worker'] = process.argv.slice(2);
const pid = Number(pidArg);
if (!Number.isInteger(pid) || pid <= 0 || (coalesceArg !== undefined && !/^\d+$/.test(coalesceArg)) || (threadArg !== 'worker' && threadArg !== 'loop')) {
  process.stderr.write('usage: ts-consumer.main.ts PID [COALESCE_MS] [worker|loop]\n');
  process.exit(2);
}
// EBPF_LAB_PROG_STATS=1: the program's run count and time go into the summary (the lab's paced
// load reports BPF ns per event beside the consumer's CPU)
const progStats = process.env.EBPF_LAB_PROG_STATS === '1';
const tracer = await OpenatTracer.start({ pid, coalesceMs: coalesceArg === undefined ? undefined : Number(coalesceArg), stats: progStats });
// our stop drains and reports; the binding's own handler would close everything and exit at once
deferSignalsToCaller();
const stopped = new Promise<void>((resolve) => {
  process.once('SIGINT', () => resolve());
  process.once('SIGTERM', () => resolve());
});
// the bench's --inject-delay-us (a deliberate, labelled slowdown for validating `lab compare`)
const injectNs = Number(process.env.EBPF_LAB_INJECT_DELAY_NS ?? 0);
let stats: { delivered: number; batches: number; lastNs: bigint };
let done: Promise<void> | undefined;
if (threadArg === 'worker') {
  const w = tracer.writeLinesInWorker(1, { injectDelayNs: injectNs });
  await w.ready;
  process.stderr.write('READY\n');
  await Promise.race([stopped, w.done]);
  await w.stop(); // the worker's last drain, then its exit
  stats = w.stats();
} else {
  const s = (stats = { delivered: 0, batches: 0, lastNs: 0n });
  done = tracer.writeLines(1, (n) => {
    s.delivered += n;
    s.batches++;
    s.lastNs = process.hrtime.bigint();
    if (injectNs > 0) for (const until = s.lastNs + BigInt(injectNs * n); process.hrtime.bigint() < until; );
  });
  // a closed reader (EPIPE) ends the sink as a stop does; anything else is a failure
  const ended = done.then(() => {}, (e: unknown) => {
    if (!(e instanceof BpfError && e.errno === Errno.EPIPE)) throw e;
  });
  done = ended;
  process.stderr.write('READY\n');
  await Promise.race([stopped, ended]);
}
const lost = tracer.lost; // read before close() drops the map
const prog = progStats ? tracer.programStats() : undefined;
tracer.close(); // ends writeLines after its current batch
await done;
process.stderr.write(`${JSON.stringify({ delivered: stats.delivered, lost, batches: stats.batches, last_ns: Number(stats.lastNs), ...(prog ? { prog_run_cnt: prog.runCnt, prog_run_time_ns: prog.runTimeNs } : {}) })}\n`);
