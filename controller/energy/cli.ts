// `pnpm lab energy top`: a live per-workload view (watts now, joules since start) refreshed every
// --interval, optionally serving the Kepler-named Prometheus metrics. Ctrl-C closes the links and
// maps (nothing stays attached: this tool pins nothing).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { deferSignalsToCaller } from '../libbpf/index.ts';
import { parseArgs, suggest, UsageError, type CommandSpec, type Opts } from '../../common/args.ts';
import { LabError } from '../../common/errors.ts';
import { serveMetrics } from '../../common/metrics-http.ts';
import { ensureMounts } from '../../common/host.ts';
import { EnergyCollector, type Interval } from './collector.ts';
import { energyMetrics } from './metrics.ts';
import { onStopSignals } from '../../common/signals.ts';
import { printable } from '../../common/printable.ts';
import { outputClosed } from '../../common/stdio.ts';

const TOP_OPTS = {
  interval: { type: 'int', min: 200, max: 60_000, default: 2000, valueName: 'MS', description: 'refresh interval (ms)' },
  by: { type: 'string', choices: ['cgroup', 'process'], default: 'cgroup', description: 'group rows by cgroup or by process' },
  limit: { type: 'int', min: 1, max: 1000, default: 15, valueName: 'N', description: 'rows shown' },
  count: { type: 'int', min: 0, default: 0, valueName: 'N', description: 'stop after N refreshes (0: until Ctrl-C)' },
  power: { type: 'string', choices: ['auto', 'model'], default: 'auto', description: 'auto: RAPL when a meter advances, else the model; model: always the model' },
  tdp: { type: 'number', min: 0.1, max: 5000, default: 65, valueName: 'W', description: 'model: package power at full load' },
  idle: { type: 'number', min: 0, max: 5000, default: 10, valueName: 'W', description: 'model: package power when idle (also the idle share of a RAPL reading)' },
  hook: { type: 'string', choices: ['auto', 'tp_btf', 'tracepoint', 'iter'], default: 'auto', description: 'sched_switch flavour, or iter: nothing on sched_switch, each thread\'s runtime read by a task iterator per refresh (no per-CPU split, no counters)' },
  'tick-hz': { type: 'int', min: 0, max: 1000, default: 20, valueName: 'N', description: 'task-storage flavour: charge each CPU\'s running thread N times a second (a cpu-clock perf event), so a thread that runs long without a switch shows in the refresh it ran in; 0: at its switch-out only (no timer wakes an idle CPU)' },
  'metrics-port': { type: 'int', min: 0, max: 65535, valueName: 'PORT', description: 'serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any free port, as in `lab trace`; not given: none)' },
  plain: { type: 'boolean', description: 'append each refresh instead of redrawing the screen' },
} satisfies Opts;

const TOP: CommandSpec<typeof TOP_OPTS> = {
  usage: 'pnpm lab energy top [options]',
  summary: 'Live energy per workload from sched_switch accounting: watts over the last interval, joules since start, idle apart. Source rapl or model (an estimate).',
  options: TOP_OPTS,
  epilog: 'Attribution: each CPU\'s energy above idle is split by on-CPU time (cycles when the machine has hardware counters).',
};

export async function energyCommand(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd) throw new UsageError('energy needs a command', 'pnpm lab energy --help lists the commands');
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log('usage: pnpm lab energy <command>\n\n  top   live energy per cgroup / process (pnpm lab energy top --help)');
    return 0;
  }
  if (cmd !== 'top') {
    const near = suggest(cmd, ['top']);
    throw new UsageError(`unknown energy command ${JSON.stringify(cmd)}${near ? ` (did you mean "${near}"?)` : ''}`, 'commands: top (pnpm lab energy --help)');
  }
  const p = parseArgs(rest, TOP);
  if (!p) return 0;
  const v = p.values;
  if ((v.idle ?? 10) > (v.tdp ?? 65)) throw new UsageError(`--idle ${v.idle} exceeds --tdp ${v.tdp}`, 'lower --idle or raise --tdp: idle power must be at most the full-load power (with RAPL too: --idle is then the idle share of its readings)');
  if (process.getuid?.() !== 0) throw new LabError('energy top needs root (it loads BPF programs)', 'run it as root: sudo pnpm lab energy top');
  return top(v as Required<typeof v>);
}

function fmtJ(j: number): string {
  return j >= 1000 ? `${(j / 1000).toFixed(2)} kJ` : `${j.toFixed(j < 10 ? 2 : 1)} J`;
}

async function top(v: { interval: number; by: string; limit: number; count: number; power: string; tdp: number; idle: number; hook: string; 'tick-hz': number; 'metrics-port'?: number; plain?: boolean }): Promise<number> {
  deferSignalsToCaller(); // we close in order ourselves on Ctrl-C
  await ensureMounts();
  // a taken --metrics-port fails before the programs are loaded (as `tc shape start` does): the
  // port is tried with the same server, closed, and taken again once there is something to serve
  const port = v['metrics-port'];
  if (port !== undefined && port !== 0) {
    const probe = await serveMetrics({ contentType: 'text/plain', metrics: async () => '' }, port);
    await new Promise((r) => probe.close(r));
  }
  let server: http.Server | null = null;
  let stop!: () => void;
  let stopRequested = false;
  const stopped = new Promise<void>((r) => (stop = () => ((stopRequested = true), r())));
  // listening before the programs load: a Ctrl-C while they load (or a meter is tried, 300 ms
  // each) was dropped, and top ran on until a second one
  const offSignals = onStopSignals(() => stop());
  let c: EnergyCollector;
  try {
    c = await EnergyCollector.open({ power: v.power as 'auto' | 'model', hook: v.hook as 'auto', tickHz: v['tick-hz'], model: { tdpWatts: v.tdp, idleWatts: v.idle } });
  } catch (e) {
    offSignals();
    throw e;
  }
  try {
    const metrics = energyMetrics(c);
    if (v['metrics-port'] !== undefined) {
      server = await serveMetrics(metrics.registry, v['metrics-port']);
    }
    // a meter measures the package, not its idle part: that share is --idle, assumed, and says so
    const source = c.power.source === 'model' ? `model (estimate) — ${c.power.detail}` : `${c.power.source} — ${c.power.detail}; its idle share assumed: --idle ${v.idle} W`;
    const head = `source: ${source}\nhook: ${c.hook.detail}; ${c.hook.name === 'iter' ? 'each thread\'s runtime read at every refresh' : c.tick.ok ? `running threads charged ${c.tick.detail.match(/\d+\/s/)?.[0] ?? ''} between switches` : 'running threads charged at their switch-out'}; counters: ${c.counters.ok ? 'cycles' : 'none'}${server ? `; metrics: http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics` : ''}`;
    const totals = new Map<string, number>();
    // a reader that went away (`energy top | head`) ends it too, closing the programs
    for (let n = 0; (v.count === 0 || n < v.count) && !stopRequested && !outputClosed(); n++) {
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([stopped.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), v.interval)))]);
      clearTimeout(timer);
      if (done) break;
      const iv = c.sample();
      metrics.observe(iv);
      process.stdout.write(render(iv, c, v, head, totals));
      // processes gone: their rows, entries and series go (see forgetGone)
      const gone = c.forgetGone();
      metrics.forget(gone);
      if (gone.length) {
        const live = new Set(c.totalsByProcess().map((t) => rowKey(v.by, t)));
        for (const t of gone) if (v.by === 'process' || (!live.has(rowKey(v.by, t)) && c.cgroupGone(t.cgroup))) totals.delete(rowKey(v.by, t));
      }
    }
  } finally {
    offSignals();
    server?.close();
    c.close();
  }
  return 0;
}

/** a row's name; a comm and a cgroup's name are their owners' to choose: escaped for the terminal */
function rowKey(by: string, w: { tgid: number; comm: string; cgroup: string }): string {
  return by === 'process' ? `${w.tgid} ${printable(w.comm)} ${printable(w.cgroup)}` : printable(w.cgroup);
}

function render(iv: Interval, c: EnergyCollector, v: { by: string; limit: number; plain?: boolean }, head: string, totals: Map<string, number>): string {
  const rows = new Map<string, { name: string; j: number; ns: number }>();
  for (const w of iv.workloads) {
    const k = rowKey(v.by, w);
    const r = rows.get(k) ?? { name: k, j: 0, ns: 0 };
    r.j += w.joules;
    r.ns += w.onCpuNs;
    rows.set(k, r);
    totals.set(k, (totals.get(k) ?? 0) + w.joules);
  }
  const dt = iv.dtNs / 1e9;
  const est = iv.estimate ? ' estimate' : '';
  const lines = [
    head,
    `node ${(iv.nodeJ / dt).toFixed(1)} W${est} (idle ${(iv.idleJ / dt).toFixed(1)} W, unattributed ${(Math.max(0, iv.unattributedJ) / dt).toFixed(2)} W) over ${dt.toFixed(2)} s; node total ${fmtJ(c.nodeJ)}; ${c.hook.name === 'iter' ? `${c.evictions()} threads lost` : `map ${c.evictions()} evictions`}`,
    '',
    `${'W now'.padStart(8)} ${'CPU %'.padStart(6)} ${'J total'.padStart(10)}  ${v.by === 'process' ? 'pid comm cgroup' : 'cgroup'}`,
    ...[...rows.values()].sort((a, b) => b.j - a.j).slice(0, v.limit).map((r) => `${(r.j / dt).toFixed(2).padStart(8)} ${((r.ns / iv.dtNs) * 100).toFixed(1).padStart(6)} ${fmtJ(totals.get(r.name) ?? 0).padStart(10)}  ${r.name}`),
  ];
  return (v.plain || !process.stdout.isTTY ? '' : '\x1b[H\x1b[2J') + lines.join('\n') + '\n' + (v.plain || !process.stdout.isTTY ? '\n' : '');
}
