// The TS consumer as a process of its own, with the C consumer's contract (c-consumer.c), so the
// benchmark drives and measures both alike: the same driver (runConsumerProcess), CPU of the
// consumer's process only. In the lab's own process the TS consumer was also charged the lab's
// work during the window — the driver's sampling and settle timers, child-process bookkeeping, and
// the garbage collections of the runner's heap that each new ring's 32 MiB of external views set
// off ("external memory pressure") — none of which a C consumer in its own process pays.
//
// usage: node --import tsx scenarios/hello-openat/ts-consumer.main.ts PID [COALESCE_MS]   (records to stdout)
// stderr: "READY" once attached; on SIGINT/SIGTERM it stops, flushes and prints
//         {"delivered":N,"lost":N,"batches":N,"last_ns":N} as its last line (last_ns:
//         CLOCK_MONOTONIC of the last batch that delivered, as the C consumer's).
import { OpenatTracer } from '../../controller/hello/openat.ts';
import { deferSignalsToCaller } from '../../controller/libbpf/lifecycle.ts';

const [pidArg, coalesceArg] = process.argv.slice(2);
const pid = Number(pidArg);
if (!Number.isInteger(pid) || pid <= 0 || (coalesceArg !== undefined && !/^\d+$/.test(coalesceArg))) {
  process.stderr.write('usage: ts-consumer.main.ts PID [COALESCE_MS]\n');
  process.exit(2);
}
const tracer = await OpenatTracer.start({ pid, coalesceMs: coalesceArg === undefined ? undefined : Number(coalesceArg) });
let delivered = 0;
let batches = 0;
let lastNs = 0n;
let lost = 0;
let stopped = false;
const stop = () => {
  if (stopped) return;
  stopped = true;
  lost = tracer.lost; // read before close() drops the map
  tracer.close(); // ends writeLines after its current batch
};
// our stop drains and reports; the binding's own handler would close everything and exit at once
deferSignalsToCaller();
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
// the bench's --inject-delay-us (a deliberate, labelled slowdown for validating `lab compare`)
const injectNs = Number(process.env.EBPF_LAB_INJECT_DELAY_NS ?? 0);
const done = tracer.writeLines(1, (n) => {
  delivered += n;
  batches++;
  lastNs = process.hrtime.bigint();
  if (injectNs > 0) for (const until = lastNs + BigInt(injectNs * n); process.hrtime.bigint() < until; );
});
process.stderr.write('READY\n');
await done;
process.stderr.write(`${JSON.stringify({ delivered, lost, batches, last_ns: Number(lastNs) })}\n`);
