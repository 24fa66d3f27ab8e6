// The C consumer of the same BPF object (c-consumer.c): built by the lab with the system C
// compiler and libbpf-dev when a benchmark needs it, and driven exactly like the TS consumer and
// opensnoop (see consumer.ts). Exported for reuse: optimising the TS consumer is judged against it.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { OUT_DIR, ensureObject } from '../../bpf/build.ts';
import { LabError } from '../../common/errors.ts';
import { bundledProgramArgv } from '../../lab/bundle.ts';
import { scaledTimeout } from '../../lab/scenario.ts';
import { perSec, procCpuNs, sampler, settle, startGenerator, warmDelivered, warmUp, type ConsumerRun } from './consumer.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SRC = path.join(HERE, 'c-consumer.c');
const HDR = path.join(HERE, '..', '..', 'bpf', 'hello_openat.h');

/** compile c-consumer.c (incremental: rebuilt when the source or the record header is newer) */
export async function buildCConsumer(): Promise<string> {
  const bin = path.join(OUT_DIR, 'openat-c-consumer');
  const newest = Math.max(fs.statSync(SRC).mtimeMs, fs.statSync(HDR).mtimeMs);
  if (fs.existsSync(bin) && fs.statSync(bin).mtimeMs > newest) return bin;
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const cc = fs.existsSync('/usr/bin/cc') ? 'cc' : 'clang';
  const r = await execa(cc, ['-O2', '-Wall', '-o', `${bin}.${process.pid}.tmp`, SRC, '-lbpf'], { reject: false });
  if (r.exitCode !== 0) throw new LabError(`building the C consumer failed: ${String(r.stderr).split('\n').slice(0, 5).join(' ')}`, 'install the C toolchain and libbpf headers: pnpm lab setup build');
  fs.renameSync(`${bin}.${process.pid}.tmp`, bin);
  return bin;
}

const REPO = path.join(HERE, '..', '..');
const TS_MAIN = path.join(HERE, 'ts-consumer.main.ts');

/**
 * One benchmark row with the C consumer: generator paused → consumer attached and filtered on the
 * generator's pid → go → wait until deliveries stop. Records go to outFile, one formatted line each.
 * coalesceMs: undefined = libbpf's ring_buffer__poll loop; a number = the TS consumer's wake-up
 * policy with that bound (c-consumer.c run_coalesced).
 */
export async function runCConsumer(consumerBin: string, genBin: string, rate: number, durationMs: number, openPath: string, outFile: string, coalesceMs?: number, warmupMs = 0, signal?: AbortSignal): Promise<ConsumerRun> {
  const [r] = await runConsumersTogether([await cPart(consumerBin, outFile, coalesceMs)], genBin, rate, durationMs, openPath, { warmupMs, signal });
  return r!;
}

/** the C consumer as runConsumersTogether starts it (c-consumer.c: OBJECT PID [COALESCE_MS]) */
async function cPart(consumerBin: string, outFile: string, coalesceMs?: number): Promise<ConsumerPart> {
  const obj = await ensureObject('hello_openat');
  return { kind: coalesceMs === undefined ? 'c' : 'c-coalesced', argv: (pid) => [consumerBin, obj, String(pid), ...(coalesceMs === undefined ? [] : [String(coalesceMs)])], outFile };
}

/** the TS consumer as runConsumersTogether starts it (ts-consumer.main.ts: PID COALESCE_MS THREAD), compiled ahead of time as the C consumer is (lab/bundle.ts bundledProgramArgv) */
async function tsPart(outFile: string, coalesceMs: number, thread: 'worker' | 'loop', injectDelayNs = 0, progStats = false): Promise<ConsumerPart> {
  const node = await bundledProgramArgv(TS_MAIN);
  const env = injectDelayNs > 0 || progStats ? { ...process.env, ...(injectDelayNs > 0 ? { EBPF_LAB_INJECT_DELAY_NS: String(injectDelayNs) } : {}), ...(progStats ? { EBPF_LAB_PROG_STATS: '1' } : {}) } : undefined;
  return { kind: thread === 'worker' ? 'ts' : 'ts-loop', argv: (pid) => [...node, String(pid), String(coalesceMs), thread], outFile, env };
}

/**
 * The same row with the TS consumer in a Node process of its own (ts-consumer.main.ts, the C consumer's
 * contract): started, measured and stopped exactly like the C consumer, so CPU per event compares
 * the two consumers and nothing of the lab's process.
 */
export async function runTsProcess(genBin: string, rate: number, durationMs: number, openPath: string, outFile: string, coalesceMs = 5, injectDelayNs = 0, warmupMs = 0, thread: 'worker' | 'loop' = 'worker', progStats = false, signal?: AbortSignal): Promise<ConsumerRun> {
  const [r] = await runConsumersTogether([await tsPart(outFile, coalesceMs, thread, injectDelayNs, progStats)], genBin, rate, durationMs, openPath, { warmupMs, signal });
  return r!;
}

/**
 * The TS consumer (worker thread, as the `ts` row) and the C consumer with the same wake-up policy
 * (the `c-coalesced` row) on one generator at once (runConsumersTogether): the pair the issue's
 * CPU-per-event goal compares, measured in the same window.
 */
export async function runTsAndCTogether(consumerBin: string, genBin: string, rate: number, durationMs: number, openPath: string, outFiles: [string, string], coalesceMs: number, injectDelayNs = 0, warmupMs = 0, signal?: AbortSignal, cFirst = false): Promise<[ConsumerRun, ConsumerRun]> {
  const [ts, c] = [await tsPart(outFiles[0], coalesceMs, 'worker', injectDelayNs), await cPart(consumerBin, outFiles[1], coalesceMs)];
  // cFirst (every second round): the one started first also attaches first, so its program runs
  // first on each openat, and is read and stopped first
  const runs = await runConsumersTogether(cFirst ? [c, ts] : [ts, c], genBin, rate, durationMs, openPath, { warmupMs, signal });
  return [runs.find((r) => r.consumer === 'ts')!, runs.find((r) => r.consumer === 'c-coalesced')!];
}

type ConsumerKind = 'c' | 'c-coalesced' | 'ts' | 'ts-loop';
/** one consumer process to start: argv(pid) with c-consumer.c's contract (OBJECT/PID…, READY on stderr, SIGINT → JSON summary) */
type ConsumerPart = { kind: ConsumerKind; argv: (pid: number) => string[]; outFile: string; env?: NodeJS.ProcessEnv };

/**
 * The driver every consumer process shares, one or several of one generator at once, each with its
 * own BPF object and ring, all measured over the same window. warmupMs: the generator first runs
 * that long at the row's rate through the consumers, unmeasured (see loadgen.c --warmup); CPU,
 * deliveries and rate are then taken over the measured run only. A pair run this way compares the two in the same seconds of the machine,
 * where two rows one after the other compare two windows seconds apart (at 100k/s a consumer uses
 * ~2% of a CPU, and the other tenants of a shared host moved TS ÷ C per round 0.94-1.49 in one
 * bench: reports/20261207-081954-hello-openat-host).
 */
export async function runConsumersTogether(parts: ConsumerPart[], genBin: string, rate: number, durationMs: number, openPath: string, opts: { warmupMs?: number; signal?: AbortSignal } = {}): Promise<ConsumerRun[]> {
  const { warmupMs = 0, signal } = opts;
  const g = startGenerator(genBin, rate, durationMs, openPath, warmupMs);
  type Proc = (typeof parts)[number] & { out: number; c: ReturnType<typeof spawn>; stderr: string; exited: Promise<number | null>; size: () => number };
  // filled inside the try: a second consumer that cannot start (its output file) still gets the
  // first one and the generator stopped
  const procs: Proc[] = [];
  try {
    const pid = await g.pid;
    for (const p of parts) {
      const out = fs.openSync(p.outFile, 'w');
      const [cmd, ...args] = p.argv(pid);
      const c = spawn(cmd!, args, { stdio: ['ignore', out, 'pipe'], cwd: REPO, env: p.env });
      const st: Proc = { ...p, out, c, stderr: '', exited: new Promise<number | null>((r) => c.once('exit', (code) => r(code))), size: () => fs.fstatSync(out).size };
      c.stderr!.setEncoding('utf8');
      c.stderr!.on('data', (d: string) => (st.stderr += d));
      procs.push(st);
    }
    for (const p of procs) {
      const deadline = Date.now() + scaledTimeout(p.kind.startsWith('ts') ? 60000 : 15000);
      while (!p.stderr.includes('READY')) {
        // a stop while a consumer starts (a guest's Node takes seconds under TCG) ends the wait: the
        // runner waited its 30 s grace for it (review, session 57)
        signal?.throwIfAborted();
        if (Date.now() > deadline || p.c.exitCode !== null) throw new Error(`${p.kind} consumer did not start: ${p.stderr.trim()}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    const warm = warmupMs > 0 ? await warmUp(g, procs) : null;
    const samplers = procs.map((p) => sampler(p.size));
    const cpu0 = procs.map((p) => procCpuNs(p.c.pid!));
    const goNs = process.hrtime.bigint();
    g.measure();
    const gen = await g.done;
    await Promise.all(procs.map((p) => settle(p.size)));
    const cpu = procs.map((p, i) => procCpuNs(p.c.pid!) - cpu0[i]!);
    const timelines = samplers.map((s) => s.stop());
    for (const p of procs) p.c.kill('SIGINT');
    await Promise.all(procs.map((p) => p.exited));
    return procs.map((p, i) => {
      const last = p.stderr.trim().split('\n').pop() ?? '';
      let stats: { delivered: number; lost: number; batches: number; last_ns: number; prog_run_cnt?: number; prog_run_time_ns?: number };
      try {
        stats = JSON.parse(last) as typeof stats;
      } catch {
        throw new Error(`${p.kind} consumer ended without its summary: ${p.stderr.trim().slice(-300)}`);
      }
      const bytesPerLine = p.size() / Math.max(stats.delivered, 1);
      // the consumer counts from its start; the warm-up's deliveries come off (its batches and
      // losses stay in: losses are never hidden, batches only describe the wake-up policy)
      const w = warm?.[i];
      const warmEvents = w ? warmDelivered(w, stats.lost) : 0;
      const delivered = stats.delivered - warmEvents;
      return {
        consumer: p.kind, targetRate: rate, gen, delivered, lost: stats.lost, batches: stats.batches, ...(w ? { warmup: { ms: warmupMs, delivered: warmEvents } } : {}),
        ...(procs.length > 1 ? { together: procs.filter((q) => q !== p).map((q) => q.kind) } : {}),
        deliveredPerSec: perSec(delivered, goNs, BigInt(stats.last_ns)), consumerCpuNs: cpu[i]!, cpuNsPerEvent: delivered ? cpu[i]! / delivered : null,
        timeline: timelines[i]!.map((t) => ({ t: t.t, rate: t.rate / bytesPerLine })),
        ...(stats.prog_run_cnt !== undefined ? { progNsPerEvent: stats.prog_run_cnt ? stats.prog_run_time_ns! / stats.prog_run_cnt : null } : {}),
      };
    });
  } finally {
    for (const p of procs) {
      if (p.c.exitCode === null) p.c.kill('SIGKILL');
      fs.closeSync(p.out);
    }
    if (g.child.exitCode === null) g.child.kill('SIGKILL');
  }
}
