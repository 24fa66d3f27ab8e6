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
  const obj = await ensureObject('hello_openat');
  return runConsumerProcess(coalesceMs === undefined ? 'c' : 'c-coalesced', (pid) => [consumerBin, obj, String(pid), ...(coalesceMs === undefined ? [] : [String(coalesceMs)])], genBin, rate, durationMs, openPath, outFile, { warmupMs, signal });
}

/**
 * The same row with the TS consumer in a Node process of its own (ts-consumer.main.ts, the C consumer's
 * contract): started, measured and stopped exactly like the C consumer, so CPU per event compares
 * the two consumers and nothing of the lab's process.
 */
export async function runTsProcess(genBin: string, rate: number, durationMs: number, openPath: string, outFile: string, coalesceMs = 5, injectDelayNs = 0, warmupMs = 0, thread: 'worker' | 'loop' = 'worker', progStats = false, signal?: AbortSignal): Promise<ConsumerRun> {
  const env = injectDelayNs > 0 || progStats ? { ...process.env, ...(injectDelayNs > 0 ? { EBPF_LAB_INJECT_DELAY_NS: String(injectDelayNs) } : {}), ...(progStats ? { EBPF_LAB_PROG_STATS: '1' } : {}) } : undefined;
  // compiled ahead of time, as the C consumer is (lab/bundle.ts bundledProgramArgv)
  const node = await bundledProgramArgv(TS_MAIN);
  return runConsumerProcess(thread === 'worker' ? 'ts' : 'ts-loop', (pid) => [...node, String(pid), String(coalesceMs), thread], genBin, rate, durationMs, openPath, outFile, { env, warmupMs, signal });
}

/**
 * The driver both consumer processes share: argv(pid) starts one with c-consumer.c's contract.
 * warmupMs: the generator first runs that long at the row's rate through the consumer, unmeasured
 * (see loadgen.c --warmup); CPU, deliveries and rate are then taken over the measured run only.
 */
export async function runConsumerProcess(kind: 'c' | 'c-coalesced' | 'ts' | 'ts-loop', argv: (pid: number) => string[], genBin: string, rate: number, durationMs: number, openPath: string, outFile: string, opts: { env?: NodeJS.ProcessEnv; warmupMs?: number; signal?: AbortSignal } = {}): Promise<ConsumerRun> {
  const { env, warmupMs = 0, signal } = opts;
  const g = startGenerator(genBin, rate, durationMs, openPath, warmupMs);
  const pid = await g.pid;
  const out = fs.openSync(outFile, 'w');
  let stderr = '';
  const [cmd, ...args] = argv(pid);
  const c = spawn(cmd!, args, { stdio: ['ignore', out, 'pipe'], cwd: REPO, env });
  c.stderr!.setEncoding('utf8');
  c.stderr!.on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
  const size = () => fs.fstatSync(out).size;
  try {
    const deadline = Date.now() + scaledTimeout(kind.startsWith('ts') ? 60000 : 15000);
    while (!stderr.includes('READY')) {
      // a stop while a consumer starts (a guest's Node takes seconds under TCG) ends the wait: the
      // runner waited its 30 s grace for it (review, session 57)
      signal?.throwIfAborted();
      if (Date.now() > deadline || c.exitCode !== null) throw new Error(`${kind} consumer did not start: ${stderr.trim()}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const warm = warmupMs > 0 ? await warmUp(g, outFile, size) : null;
    const s = sampler(size);
    const cpu0 = procCpuNs(c.pid!);
    const goNs = process.hrtime.bigint();
    g.measure();
    const gen = await g.done;
    await settle(size);
    const cpu = procCpuNs(c.pid!) - cpu0;
    const timeline = s.stop();
    c.kill('SIGINT');
    await exited;
    const last = stderr.trim().split('\n').pop() ?? '';
    let stats: { delivered: number; lost: number; batches: number; last_ns: number; prog_run_cnt?: number; prog_run_time_ns?: number };
    try {
      stats = JSON.parse(last) as typeof stats;
    } catch {
      throw new Error(`${kind} consumer ended without its summary: ${stderr.trim().slice(-300)}`);
    }
    const bytesPerLine = size() / Math.max(stats.delivered, 1);
    // the consumer counts from its start; the warm-up's deliveries come off (its batches and
    // losses stay in: losses are never hidden, batches only describe the wake-up policy)
    const warmEvents = warm ? warmDelivered(warm, stats.lost) : 0;
    const delivered = stats.delivered - warmEvents;
    return {
      consumer: kind, targetRate: rate, gen, delivered, lost: stats.lost, batches: stats.batches, ...(warm ? { warmup: { ms: warmupMs, delivered: warmEvents } } : {}),
      deliveredPerSec: perSec(delivered, goNs, BigInt(stats.last_ns)), consumerCpuNs: cpu, cpuNsPerEvent: delivered ? cpu / delivered : null,
      timeline: timeline.map((p) => ({ t: p.t, rate: p.rate / bytesPerLine })),
      ...(stats.prog_run_cnt !== undefined ? { progNsPerEvent: stats.prog_run_cnt ? stats.prog_run_time_ns! / stats.prog_run_cnt : null } : {}),
    };
  } finally {
    if (c.exitCode === null) c.kill('SIGKILL');
    if (g.child.exitCode === null) g.child.kill('SIGKILL');
    fs.closeSync(out);
  }
}
