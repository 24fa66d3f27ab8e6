// hello-openat: the lab's first example. openat tracepoint → ring buffer → TypeScript consumer.
//   run:   self-check (an openat made here arrives with our pid and the file name), optional live
//          print filtered by --pid/--comm for --duration s, and a short paced load with the
//          consumer's numbers (events/s, lost, consumer CPU, program ns/event).
//   bench: the same consumer side by side with a C consumer of the same BPF object (c-consumer.c:
//          the language comparison) and libbpf-tools' opensnoop (the design comparison) at fixed
//          rates and flat out, against an untraced generator run, in interleaved rounds.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { OpenatTracer, formatEvent } from '../../controller/hello/openat.ts';
import { OUT_DIR } from '../../bpf/build.ts';
import { numberOption, scaledTimeout, type Headline, type Scenario, type ScenarioContext } from '../../lab/scenario.ts';
import { runOpensnoop, runTs, runUntraced, type ConsumerRun } from './consumer.ts';
import { buildCConsumer, runCConsumer } from './c-consumer.ts';
import { headlineFromRounds, perRoundRatios, runInterleaved, spreadOf } from '../../lab/rounds.ts';

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

const CONSUMERS = ['untraced', 'ts', 'c', 'opensnoop'] as const;
type Consumer = (typeof CONSUMERS)[number];
const NAME: Record<Consumer, string> = { untraced: 'untraced (no tracer)', ts: 'TS consumer', c: 'C consumer (libbpf ring_buffer__poll)', opensnoop: 'opensnoop (libbpf-tools)' };
const rateLabel = (r: number) => (r ? `${r / 1000}k/s` : 'flat out');
const r0 = (x: number | null | undefined) => (x == null || Number.isNaN(x) ? null : Math.round(x));
const range = (xs: number[]) => {
  const f = xs.filter(Number.isFinite);
  return f.length > 1 ? `${Math.round(Math.min(...f)).toLocaleString('en')}–${Math.round(Math.max(...f)).toLocaleString('en')}` : '';
};

/** --inject-delay-us in ns, announced once in progress and in the report (the run is slowed on purpose) */
const announced = new WeakSet<ScenarioContext>();
function injected(ctx: ScenarioContext): number {
  const ns = Math.round(numberOption(ctx, 'inject-delay-us') * 1000);
  if (ns > 0 && !announced.has(ctx)) {
    announced.add(ctx);
    ctx.progress.info(`INJECTED REGRESSION: the TS consumer busy-waits ${ns / 1000} µs per event (--inject-delay-us)`);
    ctx.section('Injected regression', { kind: 'text', text: `This run was slowed down on purpose: --inject-delay-us ${ns / 1000} makes the TS consumer busy-wait ${ns / 1000} µs per event. Its figures exist to test regression detection (pnpm lab compare), not to describe the consumer.` });
  }
  return ns;
}

async function pacedLoad(ctx: ScenarioContext, bin: string, tmp: string): Promise<Headline[]> {
  const rate = numberOption(ctx, 'rate');
  const ms = numberOption(ctx, 'load-ms');
  ctx.progress.step(`paced load: ${rate} openat/s for ${ms} ms through the TS consumer`);
  const injectDelayNs = injected(ctx);
  const r = await runTs(bin, rate, ms, '/nonexistent/ebpf-lab-openat', path.join(tmp, 'ts.out'), injectDelayNs);
  ctx.metric('load', r);
  // name what was measured: under TCG the generator may not reach the target rate
  const achieved = Math.round(r.gen.rate);
  const reached = achieved >= rate * 0.95;
  ctx.check(`no event lost at ${achieved.toLocaleString('en')} events/s${reached ? '' : ` (target ${rate.toLocaleString('en')}/s not reached: the generator was CPU-bound)`}`, r.lost === 0 && r.delivered === r.gen.ops, `${r.delivered}/${r.gen.ops} delivered, ${r.lost} lost; generator ${achieved}/s of ${rate}/s`);
  // one paced round (the bench repeats and compares); names are stable for compare/publish
  const heads = [
    headlineFromRounds({ name: 'load.deliveredPerSec', label: `TS consumer delivered events/s at a paced ${rate.toLocaleString('en')}/s`, unit: 'events/s', better: 'higher', rounds: [r.deliveredPerSec] }),
    headlineFromRounds({ name: 'load.lost', label: `events lost at a paced ${rate.toLocaleString('en')}/s`, unit: 'events', better: 'lower', rounds: [r.lost], goal: { op: '<=', target: 0 } }),
    ...(r.cpuNsPerEvent !== null ? [headlineFromRounds({ name: 'load.cpuNsPerEvent', label: 'TS consumer CPU per event (paced load)', unit: 'ns/event', better: 'lower', rounds: [r.cpuNsPerEvent] })] : []),
  ];
  ctx.section(
    'Consumer under load',
    { kind: 'kv', items: { 'target events/s': rate, generated: r.gen.ops, delivered: r.delivered, lost: r.lost, 'delivered events/s': Math.round(r.deliveredPerSec), 'consumer CPU ns/event': r.cpuNsPerEvent && Math.round(r.cpuNsPerEvent), 'consumer CPU %': Math.round((r.consumerCpuNs / r.gen.elapsed_ns) * 1000) / 10, 'BPF program ns/event (bpf stats)': r.progNsPerEvent == null ? null : Math.round(r.progNsPerEvent) } },
    { kind: 'chart', type: 'line', title: 'Events delivered per second', labels: r.timeline.map((p) => +p.t.toFixed(2)), datasets: [{ label: 'TS consumer', data: r.timeline.map((p) => Math.round(p.rate)) }], xLabel: 'time (s)', yLabel: 'events/s' },
  );
  return heads;
}

/** one benchmark row: the generator at `rate` for `ms`, traced by `which` (or not at all) */
async function row(which: Consumer, rate: number, ms: number, bin: string, cBin: string, tmp: string, injectDelayNs = 0): Promise<ConsumerRun> {
  const p = '/nonexistent/ebpf-lab-openat';
  const out = path.join(tmp, `${which}-${rate}.out`);
  try {
    switch (which) {
      case 'untraced': return await runUntraced(bin, rate, ms, p);
      case 'ts': return await runTs(bin, rate, ms, p, out, injectDelayNs);
      case 'c': return await runCConsumer(cBin, bin, rate, ms, p, out);
      case 'opensnoop': return await runOpensnoop(bin, rate, ms, p, out);
    }
  } finally {
    fs.rmSync(out, { force: true });
  }
}

async function benchmark(ctx: ScenarioContext, bin: string, tmp: string): Promise<void> {
  const rates = (ctx.options.rates as string[]).map(Number);
  const ms = numberOption(ctx, 'bench-ms');
  const repeat = numberOption(ctx, 'repeat');
  const cBin = await buildCConsumer();
  const injectDelayNs = injected(ctx);
  const configs = rates.flatMap((r) => CONSUMERS.map((c) => `${c}@${r}` as const));
  ctx.progress.step(`benchmark: ${repeat} interleaved rounds × ${rates.map(rateLabel).join(', ')} × (untraced, TS, C, opensnoop), ${ms} ms each`);
  const res = await runInterleaved(configs, repeat, async (cfg) => {
    const [c, r] = cfg.split('@') as [Consumer, string];
    return row(c, Number(r), ms, bin, cBin, tmp, injectDelayNs);
  }, { signal: ctx.signal, onStep: (st, i, n) => ctx.progress.update(i / n, `round ${st.round + 1}/${repeat}: ${st.config}`) });
  ctx.progress.update(1);
  const rounds = (c: Consumer, rate: number) => res.byConfig[`${c}@${rate}`] ?? [];
  const n = rounds('ts', rates[0]!).length;
  if (n === 0) return;
  ctx.metric('benchmark', { durationMs: ms, repeat, rounds: n, order: res.order.map((s) => `${s.round}:${s.config}`), runs: res.byConfig });

  const flat = rates.includes(0) ? 0 : rates[rates.length - 1]!;
  const ev = (c: Consumer, r = flat) => rounds(c, r).map((x) => x.deliveredPerSec);
  const cpu = (c: Consumer, r = flat) => rounds(c, r).map((x) => x.cpuNsPerEvent ?? NaN);
  const slow = (c: Consumer, r = flat) => rounds(c, r).map((x, i) => x.gen.ns_per_op / rounds('untraced', r)[i]!.gen.ns_per_op);
  // like-for-like in object, ring and output; the wake-up policy is each side's own: libbpf's
  // ring_buffer__poll is woken for records as the kernel signals them, the TS consumer sleeps
  // coalesceMs between batches (fewer wake-ups also slow the traced process less)
  const lfl = 'same BPF object, ring size and record formatting; the consumer loops differ in wake-ups (ring_buffer__poll is woken as the kernel signals records, the TS consumer sleeps 5 ms between batches)';
  const design = 'a different design: perf buffer, its own BPF object and output format — what users run today';
  const flatLabel = rateLabel(flat);
  ctx.headline(headlineFromRounds({ name: 'bench.ts.eventsPerSec', label: `TS consumer delivered events/s, ${flatLabel}`, unit: 'events/s', better: 'higher', rounds: ev('ts'), comparator: { name: NAME.c, rounds: ev('c'), likeForLike: true, note: `language comparison: ${lfl}` }, regressionFloor: 0.1 }));
  ctx.headline(headlineFromRounds({ name: 'bench.ts.cpuNsPerEvent', label: `TS consumer CPU per event, ${flatLabel}`, unit: 'ns/event', better: 'lower', rounds: cpu('ts'), comparator: { name: NAME.c, rounds: cpu('c'), likeForLike: true, note: 'ratio = TS ÷ C: how many times the C consumer\'s CPU per event the TS consumer spends' }, regressionFloor: 0.1 }));
  const evVsSnoop = headlineFromRounds({ name: 'bench.ts.eventsPerSec.vsOpensnoop', label: `TS consumer delivered events/s vs opensnoop, ${flatLabel}`, unit: 'events/s', better: 'higher', rounds: ev('ts'), comparator: { name: NAME.opensnoop, rounds: ev('opensnoop'), likeForLike: false, note: `design comparison: ${design}` }, goal: { op: '>=', target: 2, of: 'ratio' } });
  ctx.headline(evVsSnoop);
  const cpuVsSnoop = headlineFromRounds({ name: 'bench.ts.cpuNsPerEvent.vsOpensnoop', label: `TS consumer CPU per event vs opensnoop, ${flatLabel}`, unit: 'ns/event', better: 'lower', rounds: cpu('ts'), comparator: { name: NAME.opensnoop, rounds: cpu('opensnoop'), likeForLike: false, note: 'ratio = TS ÷ opensnoop (below 1: TS spends less)' }, goal: { op: '<=', target: 1, of: 'ratio' } });
  ctx.headline(cpuVsSnoop);
  if (rates.includes(100000)) ctx.headline(headlineFromRounds({ name: 'bench.ts.lost.100k', label: 'TS consumer events lost at 100k events/s', unit: 'events', better: 'lower', rounds: rounds('ts', 100000).map((x) => x.lost), goal: { op: '<=', target: 0 } }));

  const med = (xs: number[]) => spreadOf(xs).median;
  const summary = {
    rounds: n,
    'TS ÷ C delivered events/s (flat out), median of per-round ratios': +med(perRoundRatios(ev('ts'), ev('c'))).toFixed(2),
    'TS ÷ C CPU per event (flat out)': +med(perRoundRatios(cpu('ts'), cpu('c'))).toFixed(2),
    'TS ÷ opensnoop delivered events/s (flat out)': +med(perRoundRatios(ev('ts'), ev('opensnoop'))).toFixed(2),
    'opensnoop ÷ TS CPU per event (flat out)': +med(perRoundRatios(cpu('opensnoop'), cpu('ts'))).toFixed(2),
    'generator slowdown traced ÷ untraced: TS / C / opensnoop': (['ts', 'c', 'opensnoop'] as const).map((c) => med(slow(c)).toFixed(2)).join(' / '),
  };
  ctx.metric('benchmarkSummary', summary);
  const tableRows = rates.flatMap((r) => CONSUMERS.map((c) => {
    const xs = rounds(c, r);
    const d = xs.map((x) => x.deliveredPerSec);
    const cp = xs.map((x) => x.cpuNsPerEvent ?? NaN);
    return [NAME[c], rateLabel(r), r0(med(xs.map((x) => x.gen.rate))), c === 'untraced' ? null : r0(med(d)), c === 'untraced' ? null : range(d), c === 'untraced' ? null : Math.max(...xs.map((x) => x.lost)), c === 'untraced' ? null : r0(med(cp)), c === 'untraced' ? null : range(cp), c === 'ts' ? r0(med(xs.map((x) => x.progNsPerEvent ?? NaN))) : null];
  }));
  const last = (c: Consumer) => rounds(c, flat)[n - 1]!;
  const chartRates = rates.map(rateLabel);
  ctx.section(
    'Benchmark: TS consumer vs C consumer vs opensnoop',
    { kind: 'text', text: `${n} interleaved rounds (every configuration once per round, in the same order), ${ms} ms of generator per row; all rows come from this one run. Figures are medians over rounds; ratios are taken inside each round, then the median. The generator opens a missing path (one cheap syscall per event); every consumer filters on the generator's pid in the kernel and writes one formatted line per event to a file.\n\nTS vs C consumer is the language comparison (like-for-like): ${lfl}. TS vs opensnoop is the design comparison: ${design}.\n\nDelivered events/s = delivered ÷ (last delivery − start). Consumer CPU = the consumer process's user+system time (USER_HZ ticks) from start to last delivery.` },
    { kind: 'kv', items: summary },
    { kind: 'table', caption: 'median over rounds (min–max beside it); lost = the worst round', columns: ['consumer', 'target', 'generated ev/s', 'delivered ev/s', 'range', 'lost', 'CPU ns/event', 'range', 'BPF prog ns/event'], rows: tableRows },
    { kind: 'chart', type: 'bar', title: 'Delivered events/s by target rate (median over rounds)', labels: chartRates, datasets: (['ts', 'c', 'opensnoop'] as const).map((c) => ({ label: NAME[c], data: rates.map((r) => r0(med(ev(c, r)))) })), yLabel: 'events/s' },
    { kind: 'chart', type: 'bar', title: 'Consumer CPU per event (median over rounds)', labels: chartRates, datasets: (['ts', 'c', 'opensnoop'] as const).map((c) => ({ label: NAME[c], data: rates.map((r) => r0(med(cpu(c, r)))) })), yLabel: 'ns/event' },
    {
      kind: 'chart', type: 'line', title: `${flatLabel}: events delivered per second over time (last round)`, labels: last('ts').timeline.map((p) => +p.t.toFixed(2)),
      datasets: (['ts', 'c', 'opensnoop'] as const).map((c) => ({ label: NAME[c], data: last('ts').timeline.map((_, i) => r0(last(c).timeline[i]?.rate)) })),
      xLabel: 'time (s)', yLabel: 'events/s',
    },
  );
  const g = (h: typeof evVsSnoop) => `${h.goal?.detail}; per-round ratios ${h.comparator?.ratioRounds?.map((x) => x.toFixed(2)).join(', ')}`;
  ctx.check(`benchmark: TS consumer delivers ≥2x opensnoop's events/s ${flatLabel} in every round`, evVsSnoop.goal?.verdict === 'met', g(evVsSnoop));
  ctx.check(`benchmark: TS consumer uses less CPU per event than opensnoop ${flatLabel} in every round`, cpuVsSnoop.goal?.verdict === 'met', g(cpuVsSnoop));
  if (rates.includes(100000)) {
    const xs = rounds('ts', 100000);
    ctx.check('benchmark: TS consumer loses nothing at 100k events/s', xs.every((r) => r.lost === 0 && r.delivered === r.gen.ops), xs.map((r) => `${r.delivered}/${r.gen.ops} delivered, ${r.lost} lost`).join('; '));
  }
}

const scenario: Scenario = {
  name: 'hello-openat',
  description: 'openat tracepoint → ring buffer → TypeScript consumer (bench: vs a C consumer of the same object and vs opensnoop)',
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
    repeat: { type: 'int', min: 1, default: 3, valueName: 'N', description: 'bench: interleaved rounds (every consumer and rate once per round)' },
    'inject-delay-us': { type: 'number', min: 0, max: 1000, default: 0, valueName: 'US', description: 'TESTING ONLY: busy-wait US µs per event in the TS consumer (paced load and bench) — an injected regression to validate pnpm lab compare' },
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
    const loadHeads = await pacedLoad(ctx, bin, tmp);
    // a bench report leads with the comparison; the paced-load figures follow it
    if (ctx.mode === 'bench') await benchmark(ctx, bin, tmp);
    for (const h of loadHeads) ctx.headline(h);
  },
};

export default scenario;
