// The two consumers the benchmark compares, driven identically: start filtered on the generator's
// pid, signal "go", let the generator run, wait until deliveries stop, report what arrived.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { scaledTimeout } from '../../lab/scenario.ts';
import { OpenatTracer, formatEvent } from '../../controller/hello/openat.ts';
import { OUT_DIR } from '../../bpf/build.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** the generator's two workloads: a failing openat (one cheap syscall per event) or openat+close of a file that exists */
export type GenKind = 'fail' | 'open';
export const GEN_PATHS: Record<GenKind, string> = { fail: '/nonexistent/ebpf-lab-openat', open: '/etc/passwd' };

export async function buildLoadgen(): Promise<string> {
  const src = path.join(HERE, 'loadgen.c');
  const bin = path.join(OUT_DIR, 'openat-loadgen');
  if (fs.existsSync(bin) && fs.statSync(bin).mtimeMs > fs.statSync(src).mtimeMs) return bin;
  fs.mkdirSync(OUT_DIR, { recursive: true });
  // built beside and renamed: another run may be executing the old one, or building it too
  await execa('clang', ['-O2', '-o', `${bin}.${process.pid}.tmp`, src]);
  fs.renameSync(`${bin}.${process.pid}.tmp`, bin);
  return bin;
}

export interface GenResult {
  ops: number;
  elapsed_ns: number;
  rate: number;
  ns_per_op: number;
}

export interface ConsumerRun {
  consumer: 'untraced' | 'ts' | 'ts-loop' | 'c' | 'c-coalesced' | 'opensnoop';
  /** the other consumers measured in the same window, on the same generator (runConsumersTogether) */
  together?: string[];
  targetRate: number;
  gen: GenResult;
  delivered: number;
  lost: number;
  /** non-empty batches the consumer handled (its useful wake-ups), where it counts them */
  batches?: number;
  /** delivered / (last delivery − go) */
  deliveredPerSec: number;
  consumerCpuNs: number;
  cpuNsPerEvent: number | null;
  /** the unmeasured warm-up before the row (bench --bench-warmup-ms): its length and the events the consumer delivered in it */
  warmup?: { ms: number; delivered: number };
  /** BPF program cost (TS consumer only: run_time_ns / run_cnt) */
  progNsPerEvent?: number | null;
  timeline: { t: number; rate: number }[];
}

/**
 * Start the generator paused; resolves with its pid, a go() and its result. measure() starts the
 * measured run; with warmupMs, go() first starts a warm-up run at the same rate (`warmed` resolves
 * with its ops when it ends) and measure() follows it. Without, go() and measure() are the same.
 * The result covers the measured run only.
 */
export function startGenerator(bin: string, rate: number, durationMs: number, path: string, warmupMs = 0) {
  const args = [String(rate), String(durationMs), path, '--wait', ...(warmupMs > 0 ? ['--warmup', String(warmupMs)] : [])];
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  // a generator already gone (a terminal's Ctrl-C reaches the whole process group) makes the 'go'
  // write fail with EPIPE: `done` reports its exit; unhandled, the error killed the run uncleaned
  child.stdin!.on('error', () => {});
  let out = '';
  child.stdout!.setEncoding('utf8');
  let onWarm: (ops: number) => void = () => {};
  const warmed = new Promise<number>((resolve) => (onWarm = resolve));
  const pid = new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d: string) => {
      out += d;
      const first = out.split('\n')[0];
      if (out.includes('\n') && first) resolve(Number(first));
      const w = /^warm (\d+)$/m.exec(out);
      if (w) onWarm(Number(w[1]));
    });
    child.on('error', reject);
    child.on('exit', (c) => reject(new Error(`loadgen exited early (${c})`)));
  });
  const done: Promise<GenResult> = new Promise<GenResult>((resolve, reject) => {
    child.on('exit', (code, signal) => {
      const line = out.trim().split('\n').pop()!;
      if (code !== 0) reject(new Error(`loadgen failed (${signal ? `killed by ${signal}` : `exit ${code}`}): ${out}`));
      else resolve(JSON.parse(line) as GenResult);
    });
  });
  // a generator that dies during its warm-up must not leave a driver waiting for `warmed`
  done.then(() => onWarm(0), () => onWarm(0));
  // a run that fails elsewhere kills the generator; that rejection is not news
  done.catch(() => {});
  pid.catch(() => {});
  return {
    child, pid, warmed, done,
    go: () => (warmupMs > 0 ? child.stdin!.write('go\n') : child.stdin!.end('go\n')),
    measure: () => child.stdin!.end('go\n'),
  };
}

/**
 * Run the generator's warm-up through the consumers, each writing one line per event into its
 * `outFile`, and wait until all have caught up (together: one after the other, the first one's idle
 * tail ran into the next's wait). Returns per consumer the warm-up's ops and the lines written so
 * far; the measured row subtracts one of them from the consumer's final count (warmDelivered).
 */
export async function warmUp(g: ReturnType<typeof startGenerator>, consumers: readonly { outFile: string; size: () => number }[]): Promise<{ ops: number; lines: number }[]> {
  g.go();
  const ops = await g.warmed;
  await Promise.all(consumers.map((c) => settle(c.size)));
  return consumers.map((c) => ({ ops, lines: countLines(c.outFile) }));
}

/**
 * Events the consumer delivered during the warm-up. The consumer traces every openat of the
 * generator's pid, so with nothing lost it delivered exactly the warm-up's ops; the lines on disk
 * can fall short of that for a consumer that buffers its output (stdio's 4 KiB in c-consumer.c's
 * libbpf mode and in opensnoop: up to ~100 lines still in the buffer). With losses, which are
 * reported whole, the lines are the best count there is.
 */
export function warmDelivered(w: { ops: number; lines: number }, lost: number): number {
  return lost === 0 ? w.ops : w.lines;
}

/** newlines in a file, read in 1 MiB chunks */
export function countLines(file: string): number {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  let n = 0;
  try {
    for (let got; (got = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) {
      for (let i = buf.indexOf(10, 0); i !== -1 && i < got; i = buf.indexOf(10, i + 1)) n++;
    }
  } finally {
    fs.closeSync(fd);
  }
  return n;
}

/** Poll `count` every 50 ms until it has not grown for quietMs; returns when it last grew. */
export async function settle(count: () => number, quietMs = 400): Promise<number> {
  let last = count();
  let lastChange = performance.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 50));
    const c = count();
    if (c !== last) {
      last = c;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > quietMs) return lastChange;
  }
}

/**
 * Sample `count` every `every` ms. stop() returns the timeline without the quiet tail (the wait for
 * deliveries to stop adds intervals with nothing delivered, which would end every chart with a
 * near-zero point that is no property of the consumer).
 */
export function sampler(count: () => number, every = 250) {
  const timeline: { t: number; rate: number }[] = [];
  const t0 = performance.now();
  let prev = count();
  let prevT = t0;
  const h = setInterval(() => {
    const now = performance.now();
    const c = count();
    timeline.push({ t: (now - t0) / 1000, rate: ((c - prev) * 1000) / (now - prevT) });
    prev = c;
    prevT = now;
  }, every);
  return {
    timeline,
    stop: () => {
      clearInterval(h);
      return trimQuietTail(timeline);
    },
  };
}

/** drop trailing points below 2% of the peak rate: the settle window after the last delivery */
export function trimQuietTail(timeline: { t: number; rate: number }[]): { t: number; rate: number }[] {
  const peak = Math.max(0, ...timeline.map((p) => p.rate));
  let end = timeline.length;
  while (end > 0 && timeline[end - 1]!.rate < peak * 0.02) end--;
  return timeline.slice(0, end);
}

/** this process's CPU (every thread), measured like the C consumer's (procCpuNs) */
const cpuNs = () => procCpuNs(process.pid);

function ready(pid: number): boolean {
  try {
    const fds = fs.readdirSync(`/proc/${pid}/fd`).map((f) => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${f}`);
      } catch {
        return '';
      }
    });
    return fds.includes('anon_inode:[eventpoll]') && fds.some((f) => f.includes('bpf_link') || f.includes('perf_event'));
  } catch {
    return false;
  }
}

/**
 * CPU time of a process in ns: the sum over its threads of the scheduler's exact run time
 * (/proc/PID/task/TID/schedstat, first field). /proc/PID/stat's utime+stime come in 10 ms ticks,
 * which at 100k events/s for a few seconds is ±25 ns/event: too coarse for a C consumer that
 * spends ~150 ns/event.
 */
export function procCpuNs(pid: number): number {
  let ns = 0;
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // the thread ended
      }
    }
  } catch {
    return 0;
  }
  return ns;
}

export async function runUntraced(bin: string, rate: number, durationMs: number, path: string, warmupMs = 0): Promise<ConsumerRun> {
  const g = startGenerator(bin, rate, durationMs, path, warmupMs);
  await g.pid;
  if (warmupMs > 0) {
    g.go();
    await g.warmed;
  }
  g.measure();
  const gen = await g.done;
  return { consumer: 'untraced', targetRate: rate, gen, delivered: 0, lost: 0, deliveredPerSec: 0, consumerCpuNs: 0, cpuNsPerEvent: null, timeline: [] };
}

/**
 * The TypeScript consumer: every event as one line in outFile, formatted straight from the ring
 * into a reusable buffer and written once per batch (OpenatTracer.writeLines), with the ring's
 * adaptive coalescing (coalesceMs = its upper bound, 0 = woken by the kernel for every batch).
 */
export async function runTs(bin: string, rate: number, durationMs: number, path: string, outFile: string, injectDelayNs = 0, coalesceMs = 5): Promise<ConsumerRun> {
  const g = startGenerator(bin, rate, durationMs, path);
  const pid = await g.pid;
  const tracer = await OpenatTracer.start({ pid, stats: true, coalesceMs });
  const fd = fs.openSync(outFile, 'w');
  let delivered = 0;
  let batches = 0;
  let lastNs = 0n;
  const consume = tracer.writeLines(fd, (n) => {
    delivered += n;
    batches++;
    lastNs = process.hrtime.bigint();
    // --inject-delay-us: a deliberate, labelled slowdown (busy wait per event) that exists
    // only to prove `lab compare` flags a regression on real runs; 0 in every normal run
    if (injectDelayNs > 0) for (const until = process.hrtime.bigint() + BigInt(injectDelayNs * n); process.hrtime.bigint() < until; );
  });
  try {
    const s = sampler(() => delivered);
    const cpu0 = cpuNs();
    const goNs = process.hrtime.bigint();
    g.go();
    const gen = await g.done;
    await settle(() => delivered);
    const cpu = cpuNs() - cpu0;
    const timeline = s.stop();
    const prog = tracer.programStats();
    const lost = tracer.lost;
    return {
      consumer: 'ts', targetRate: rate, gen, delivered, lost, batches,
      deliveredPerSec: perSec(delivered, goNs, lastNs), consumerCpuNs: cpu, cpuNsPerEvent: delivered ? cpu / delivered : null,
      progNsPerEvent: prog.nsPerEvent, timeline,
    };
  } finally {
    tracer.close(); // ends writeLines
    await consume;
    fs.closeSync(fd);
    if (g.child.exitCode === null) g.child.kill('SIGKILL');
  }
}

/** delivered ÷ (last delivery − go), both CLOCK_MONOTONIC ns (process.hrtime in Node, clock_gettime in C) */
export function perSec(delivered: number, goNs: bigint, lastNs: bigint): number {
  return delivered && lastNs > goNs ? delivered / (Number(lastNs - goNs) / 1e9) : 0;
}

/** libbpf-tools' opensnoop (C, perf buffer), filtered on the generator's pid, stdout to a file. */
export async function runOpensnoop(bin: string, rate: number, durationMs: number, path: string, outFile: string, warmupMs = 0): Promise<ConsumerRun> {
  const g = startGenerator(bin, rate, durationMs, path, warmupMs);
  const pid = await g.pid;
  const out = fs.openSync(outFile, 'w');
  let stderr = '';
  const snoop: ChildProcess = spawn('opensnoop', ['-p', String(pid)], { stdio: ['ignore', out, 'pipe'] });
  snoop.stderr!.on('data', (d) => (stderr += d));
  const size = () => fs.fstatSync(out).size;
  try {
    // opensnoop's stdout to a file is block-buffered, so its header says nothing; it is ready once
    // its links exist and its perf buffer's epoll fd is open (made after attach)
    const deadline = Date.now() + scaledTimeout(15000);
    while (!ready(snoop.pid!)) {
      if (Date.now() > deadline || snoop.exitCode !== null) throw new Error(`opensnoop did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const warm = warmupMs > 0 ? (await warmUp(g, [{ outFile, size }]))[0]! : { ops: 0, lines: 0 };
    const s = sampler(size);
    const cpu0 = procCpuNs(snoop.pid!);
    const t0 = performance.now();
    g.measure();
    const gen = await g.done;
    const tLast = await settle(size);
    const cpu = procCpuNs(snoop.pid!) - cpu0;
    const timeline = s.stop();
    snoop.kill('SIGINT');
    await new Promise((r) => snoop.once('exit', r));
    const r = await execa('wc', ['-l', outFile]);
    const lost = [...stderr.matchAll(/[Ll]ost (\d+) events/g)].reduce((a, m) => a + Number(m[1]), 0);
    // its header line is not an event (and may still have been in its buffer at the warm-up's end)
    const warmEvents = warmupMs > 0 ? warmDelivered({ ops: warm.ops, lines: Math.max(warm.lines - 1, 0) }, lost) : 0;
    const delivered = Number(r.stdout.trim().split(/\s+/)[0]) - 1 - warmEvents;
    const header = fs.readFileSync(outFile, 'utf8').indexOf('\n') + 1;
    const bytesPerLine = (size() - header) / Math.max(delivered + warmEvents, 1);
    return {
      consumer: 'opensnoop', targetRate: rate, gen, delivered, lost, ...(warmupMs > 0 ? { warmup: { ms: warmupMs, delivered: warmEvents } } : {}),
      deliveredPerSec: delivered / ((tLast - t0) / 1000), consumerCpuNs: cpu, cpuNsPerEvent: delivered ? cpu / delivered : null,
      timeline: timeline.map((p) => ({ t: p.t, rate: p.rate / bytesPerLine })),
    };
  } finally {
    if (snoop.exitCode === null) snoop.kill('SIGKILL');
    if (g.child.exitCode === null) g.child.kill('SIGKILL');
    fs.closeSync(out);
  }
}
