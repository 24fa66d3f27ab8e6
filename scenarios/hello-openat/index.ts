// hello-openat: the lab's first example. openat tracepoint → ring buffer → TypeScript consumer.
//   run:   self-check (an openat made here arrives with our pid and the file name), optional live
//          print filtered by --pid/--comm for --duration s, and a short paced load with the
//          consumer's numbers (events/s, lost, consumer CPU, program ns/event).
//   bench: the same consumer side by side with libbpf-tools' C opensnoop at fixed rates and flat
//          out, against an untraced generator run, all in one run.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { OpenatTracer, formatEvent } from '../../controller/hello/openat.ts';
import { OUT_DIR } from '../../bpf/build.ts';
import { numberOption, scaledTimeout, type Scenario, type ScenarioContext } from '../../lab/scenario.ts';
import { runOpensnoop, runTs, runUntraced, type ConsumerRun } from './consumer.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

async function buildLoadgen(): Promise<string> {
  const src = path.join(HERE, 'loadgen.c');
  const bin = path.join(OUT_DIR, 'openat-loadgen');
  if (fs.existsSync(bin) && fs.statSync(bin).mtimeMs > fs.statSync(src).mtimeMs) return bin;
  fs.mkdirSync(OUT_DIR, { recursive: true });
  await execa('clang', ['-O2', '-o', bin, src]);
  return bin;
}

/** options are validated and defaulted by the runner (see `options` below) */

async function selfCheck(ctx: ScenarioContext): Promise<void> {
  ctx.progress.step('self-check: an openat made here must arrive with our pid and file name');
  const tracer = await OpenatTracer.start({ pid: process.pid });
  ctx.defer('close self-check tracer', () => tracer.close());
  const target = path.join(os.tmpdir(), `ebpf-lab-hello-${process.pid}-${Date.now()}`);
  try {
    fs.closeSync(fs.openSync(target, 'w'));
  } finally {
    fs.rmSync(target, { force: true });
  }
  let seen: ReturnType<typeof tracer.ring.drain>[number] | undefined;
  const deadline = Date.now() + scaledTimeout(5000);
  while (!seen && Date.now() < deadline) {
    seen = tracer.ring.drain().find((e) => e.filename === target);
    if (!seen) await new Promise((r) => setTimeout(r, 20));
  }
  ctx.check('openat event arrives through the ring buffer', !!seen, seen ? formatEvent(seen) : `no event for ${target} within ${(scaledTimeout(5000) / 1000).toFixed(0)} s`);
  if (seen) ctx.check('event carries our pid and comm', seen.pid === process.pid && seen.comm.length > 0, `pid ${seen.pid} (expected ${process.pid}), comm "${seen.comm}"`);
  tracer.close();
}

async function livePrint(ctx: ScenarioContext): Promise<void> {
  const pid = ctx.options.pid as number | undefined;
  const comm = typeof ctx.options.comm === 'string' ? ctx.options.comm : undefined;
  const secs = numberOption(ctx, 'duration');
  ctx.progress.step(`tracing openat${pid ? ` pid ${pid}` : ''}${comm ? ` comm ${comm}` : ''} for ${secs} s`);
  const tracer = await OpenatTracer.start({ pid, comm });
  ctx.defer('close live tracer', () => tracer.close());
  const limit = numberOption(ctx, 'max-print');
  const sample: string[] = [];
  let n = 0;
  const stop = setTimeout(() => tracer.close(), secs * 1000);
  ctx.defer('stop timer', () => clearTimeout(stop));
  process.stdout.write(`${'PID'.padStart(7)} ${'COMM'.padEnd(16)} FILENAME\n`);
  for await (const batch of tracer.ring.batches()) {
    for (const e of batch) {
      if (n++ < limit) {
        const line = formatEvent(e);
        process.stdout.write(`${line}\n`);
        if (sample.length < 50) sample.push(line);
      }
    }
  }
  ctx.metric('live', { pid, comm, seconds: secs, events: n, lost: tracer.lost });
  ctx.section('Live trace', { kind: 'kv', items: { filter: `${pid ? `pid=${pid} ` : ''}${comm ? `comm=${comm}` : ''}` || 'none', seconds: secs, events: n, lost: tracer.lost } }, { kind: 'pre', caption: 'first events', text: sample.join('\n') || '(none)' });
}

function runRow(r: ConsumerRun): (string | number | null)[] {
  return [
    r.consumer,
    r.targetRate ? r.targetRate : 'flat out',
    Math.round(r.gen.rate),
    r.delivered,
    Math.round(r.deliveredPerSec),
    r.lost,
    r.cpuNsPerEvent === null ? null : Math.round(r.cpuNsPerEvent),
    r.progNsPerEvent == null ? null : Math.round(r.progNsPerEvent),
    Math.round(r.gen.ns_per_op),
  ];
}

const COLUMNS = ['consumer', 'target ev/s', 'generated ev/s', 'delivered', 'delivered ev/s', 'lost', 'consumer CPU ns/event', 'BPF prog ns/event', 'generator ns/op'];

async function pacedLoad(ctx: ScenarioContext, bin: string, tmp: string): Promise<void> {
  const rate = numberOption(ctx, 'rate');
  const ms = numberOption(ctx, 'load-ms');
  ctx.progress.step(`paced load: ${rate} openat/s for ${ms} ms through the TS consumer`);
  const r = await runTs(bin, rate, ms, '/nonexistent/ebpf-lab-openat', path.join(tmp, 'ts.out'));
  ctx.metric('load', r);
  // name what was measured: under TCG the generator may not reach the target rate
  const achieved = Math.round(r.gen.rate);
  const reached = achieved >= rate * 0.95;
  ctx.check(`no event lost at ${achieved.toLocaleString('en')} events/s${reached ? '' : ` (target ${rate.toLocaleString('en')}/s not reached: the generator was CPU-bound)`}`, r.lost === 0 && r.delivered === r.gen.ops, `${r.delivered}/${r.gen.ops} delivered, ${r.lost} lost; generator ${achieved}/s of ${rate}/s`);
  ctx.section(
    'Consumer under load',
    { kind: 'kv', items: { 'target events/s': rate, generated: r.gen.ops, delivered: r.delivered, lost: r.lost, 'delivered events/s': Math.round(r.deliveredPerSec), 'consumer CPU ns/event': r.cpuNsPerEvent && Math.round(r.cpuNsPerEvent), 'consumer CPU %': Math.round((r.consumerCpuNs / r.gen.elapsed_ns) * 1000) / 10, 'BPF program ns/event (bpf stats)': r.progNsPerEvent == null ? null : Math.round(r.progNsPerEvent) } },
    { kind: 'chart', type: 'line', title: 'Events delivered per second', labels: r.timeline.map((p) => +p.t.toFixed(2)), datasets: [{ label: 'TS consumer', data: r.timeline.map((p) => Math.round(p.rate)) }], xLabel: 's', yLabel: 'events/s' },
  );
}

async function benchmark(ctx: ScenarioContext, bin: string, tmp: string): Promise<void> {
  const rates = (ctx.options.rates as string[]).map(Number);
  const ms = numberOption(ctx, 'bench-ms');
  const runs: ConsumerRun[] = [];
  const steps = rates.length * 3;
  let k = 0;
  ctx.progress.step(`benchmark: ${rates.map((r) => r || 'flat out').join(', ')} events/s × (untraced, TS, opensnoop), ${ms} ms each`);
  for (const rate of rates) {
    const p = '/nonexistent/ebpf-lab-openat';
    for (const which of ['untraced', 'ts', 'opensnoop'] as const) {
      if (ctx.signal.aborted) return;
      ctx.progress.update(k++ / steps, `${which} @ ${rate || 'flat out'}`);
      const out = path.join(tmp, `${which}-${rate}.out`);
      const r = which === 'untraced' ? await runUntraced(bin, rate, ms, p) : which === 'ts' ? await runTs(bin, rate, ms, p, out) : await runOpensnoop(bin, rate, ms, p, out);
      fs.rmSync(out, { force: true });
      runs.push(r);
    }
  }
  ctx.progress.update(1);
  ctx.metric('benchmark', { durationMs: ms, runs });
  const by = (c: string, rate: number) => runs.find((r) => r.consumer === c && r.targetRate === rate)!;
  const flat = rates.includes(0) ? 0 : rates[rates.length - 1]!;
  const ts = by('ts', flat);
  const cs = by('opensnoop', flat);
  const base = by('untraced', flat);
  const ratio = ts.deliveredPerSec / Math.max(cs.deliveredPerSec, 1);
  const cpuRatio = ts.cpuNsPerEvent && cs.cpuNsPerEvent ? cs.cpuNsPerEvent / ts.cpuNsPerEvent : null;
  const summary = {
    'TS / opensnoop delivered events/s (flat out)': +ratio.toFixed(2),
    'opensnoop / TS CPU per event (flat out)': cpuRatio && +cpuRatio.toFixed(2),
    'generator slowdown, TS-traced vs untraced': +(ts.gen.ns_per_op / base.gen.ns_per_op).toFixed(2),
    'generator slowdown, opensnoop-traced vs untraced': +(cs.gen.ns_per_op / base.gen.ns_per_op).toFixed(2),
  };
  ctx.metric('benchmarkSummary', summary);
  ctx.section(
    'Benchmark: TypeScript consumer vs C opensnoop',
    { kind: 'text', text: `Each row is one generator run of ${ms} ms; all rows come from this one run. The generator opens a missing path (one cheap syscall per event). Both consumers filter on the generator's pid in the kernel and write one formatted line per event to a file. Delivered events/s = delivered ÷ (last delivery − start). Consumer CPU comes from the consumer process (user+system).` },
    { kind: 'kv', items: summary },
    { kind: 'table', columns: COLUMNS, rows: runs.map(runRow) },
    {
      kind: 'chart', type: 'bar', title: 'Delivered events/s by target rate', labels: rates.map((r) => (r ? `${r / 1000}k/s` : 'flat out')),
      datasets: (['ts', 'opensnoop'] as const).map((c) => ({ label: c === 'ts' ? 'TS consumer' : 'opensnoop (C)', data: rates.map((r) => Math.round(by(c, r).deliveredPerSec)) })),
      yLabel: 'events/s',
    },
    {
      kind: 'chart', type: 'bar', title: 'Consumer CPU per event (ns)', labels: rates.map((r) => (r ? `${r / 1000}k/s` : 'flat out')),
      datasets: (['ts', 'opensnoop'] as const).map((c) => ({ label: c === 'ts' ? 'TS consumer' : 'opensnoop (C)', data: rates.map((r) => by(c, r).cpuNsPerEvent && Math.round(by(c, r).cpuNsPerEvent!)) })),
      yLabel: 'ns/event',
    },
    {
      kind: 'chart', type: 'line', title: 'Flat out: events delivered per second over time', labels: ts.timeline.map((p) => +p.t.toFixed(2)),
      datasets: [
        { label: 'TS consumer', data: ts.timeline.map((p) => Math.round(p.rate)) },
        { label: 'opensnoop (C)', data: cs.timeline.slice(0, ts.timeline.length).map((p) => Math.round(p.rate)) },
      ],
      xLabel: 's', yLabel: 'events/s',
    },
  );
  ctx.check('benchmark: TS consumer delivers ≥2x opensnoop events/s flat out', ratio >= 2, `${ratio.toFixed(2)}x (${Math.round(ts.deliveredPerSec)} vs ${Math.round(cs.deliveredPerSec)} events/s)`);
  ctx.check('benchmark: TS consumer uses less CPU per event than opensnoop flat out', cpuRatio !== null && cpuRatio > 1, cpuRatio ? `${cpuRatio.toFixed(2)}x less (${Math.round(ts.cpuNsPerEvent!)} vs ${Math.round(cs.cpuNsPerEvent!)} ns/event)` : 'no data');
  if (rates.includes(100000)) {
    const r = by('ts', 100000);
    ctx.check('benchmark: TS consumer loses nothing at 100k events/s', r.lost === 0 && r.delivered === r.gen.ops, `${r.delivered}/${r.gen.ops} delivered, ${r.lost} lost`);
  }
}

const scenario: Scenario = {
  name: 'hello-openat',
  description: 'openat tracepoint → ring buffer → TypeScript consumer (bench: vs C opensnoop)',
  tools: ['libbpf-tools'],
  options: {
    pid: { type: 'int', min: 1, valueName: 'PID', description: 'live print: trace this process only' },
    comm: { type: 'string', valueName: 'NAME', description: 'live print: trace processes with this command name (as in /proc/PID/comm, ≤15 chars)', check: (v) => (Buffer.byteLength(v) > 15 ? { message: "longer than the kernel's 15-byte comm", fix: `the kernel keeps the first 15 bytes: --comm ${v.slice(0, 15)}` } : undefined) },
    print: { type: 'boolean', description: 'live print every openat (no filter)' },
    duration: { type: 'int', min: 1, default: 5, valueName: 'S', description: 'live print: seconds to trace' },
    'max-print': { type: 'int', min: 0, default: 1000, valueName: 'N', description: 'live print: at most N lines' },
    rate: { type: 'int', min: 1, default: 20000, valueName: 'N', description: 'paced load: openat calls per second' },
    'load-ms': { type: 'int', min: 100, default: 3000, valueName: 'MS', description: 'paced load: duration' },
    rates: { type: 'list', default: '10000,100000,300000,0', valueName: 'R,R,…', description: 'bench: target rates in events/s (0 = flat out)' },
    'bench-ms': { type: 'int', min: 100, default: 4000, valueName: 'MS', description: 'bench: duration of each row' },
  },
  async run(ctx) {
    const probes = await ctx.probes();
    for (const [feature, key] of [['tracepoint attach', 'attach:tracepoint'], ['BPF ring buffer', 'map:ringbuf']] as const) {
      if (!probes[key]?.ok) {
        ctx.unsupported('hello-openat', feature, `${key}: ${probes[key]?.detail ?? 'not probed'}`);
        return;
      }
    }
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-hello-'));
    ctx.defer('remove temp dir', () => fs.rmSync(tmp, { recursive: true, force: true }));
    await selfCheck(ctx);
    if (ctx.options.pid !== undefined || ctx.options.comm !== undefined || ctx.options.print) await livePrint(ctx);
    const bin = await buildLoadgen();
    await pacedLoad(ctx, bin, tmp);
    if (ctx.mode === 'bench') await benchmark(ctx, bin, tmp);
  },
};

export default scenario;
