// `pnpm lab trace --service name=<cgroup|exe|pid> …`: the tracing daemon. Runs until Ctrl-C (or
// --duration), prints one line per span unless --quiet, exports OTLP/HTTP protobuf to --otlp and
// serves RED metrics on --metrics-port. Every selector is validated before anything is loaded.
import fs from 'node:fs';
import path from 'node:path';
import { Session } from 'node:inspector/promises';
import { parseArgs, UsageError } from '../../common/args.ts';
import { LabError } from '../../common/errors.ts';
import { checkOutFile, withoutOption } from '../../common/out-dir.ts';
import { deferSignalsToCaller } from '../libbpf/index.ts';
import { Tracer, parseSelector, type WorkloadSelector } from './tracer.ts';
import { TR, type DataHook } from './kernel.ts';
import { onStopSignals, REPEAT_STOP_MS } from '../../common/signals.ts';
import { printable } from '../../common/printable.ts';
import { ensureMounts } from '../../common/host.ts';

/**
 * An exporter's base URL: http(s), a host, an optional port, no path, query, fragment or
 * credentials. The pattern check before took `http://[::1` and `http://999.1.1.1:99999`, which
 * failed inside the exporter after the programs had loaded ("an internal error"), and
 * `http://h:4318?x`, whose spans went to `/?x/v1/traces` and were counted as exported.
 */
export function endpointProblem(v: string, example: string): { message: string; fix: string } | undefined {
  const not = 'not an http(s)://host:port URL';
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return { message: `${not} (unreadable: a host or port out of range?)`, fix: example };
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return { message: `${not} (${u.protocol})`, fix: example };
  if (u.username || u.password) return { message: `${not}: credentials in it are not sent`, fix: example };
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash || /[?#]/.test(v)) return { message: `${not}: give the base only, no path, query or fragment (the exporter adds its path)`, fix: example };
  return undefined;
}

export async function traceCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {
    usage: 'pnpm lab trace --service NAME=<cgroup|exe|pid> [--service …] [--otlp URL] [--metrics-port N]',
    summary: 'zero-code HTTP/1.1 tracing of the selected workloads: spans to OTLP, RED metrics to Prometheus',
    options: {
      service: { type: 'list', description: 'a workload: NAME=cgroup v2 dir (abs. or relative to the cgroup2 root), executable path, or pid (with the processes it forks, e.g. nginx or gunicorn workers); repeat or comma-separate', valueName: 'NAME=WHAT' },
      otlp: { type: 'string', description: 'OTLP/HTTP endpoint base, e.g. http://127.0.0.1:4318 (spans are exported as protobuf to /v1/traces)', valueName: 'URL',
        check: (v) => endpointProblem(v, '--otlp http://127.0.0.1:4318') },
      zipkin: { type: 'string', description: 'also export to Zipkin, e.g. http://127.0.0.1:9411 (JSON v2 to /api/v2/spans)', valueName: 'URL',
        check: (v) => endpointProblem(v, '--zipkin http://127.0.0.1:9411') },
      'metrics-port': { type: 'int', description: 'serve Prometheus metrics on 127.0.0.1:N/metrics (0 = any free port)', min: 0, max: 65535 },
      hook: { type: 'string', choices: ['sock', 'tp_btf', 'raw_tp'], description: 'where payload is read: sock (sock_recv_length/sock_send_length, 6.3+), tp_btf or raw_tp (the sys_exit raw tracepoint); default: sock where the kernel has it, else tp_btf where it has BTF, else raw_tp' },
      sample: { type: 'number', description: 'share of root requests (from outside the traced workloads) traced, 0 < R ≤ 1; calls between traced workloads are always traced whole, and RED metrics count every request', default: 1, min: 1e-6, max: 1, valueName: 'R' },
      // below 64 a request line and its Host rarely fit: spans were silently not made (1 gave none)
      'capture-bytes': { type: 'int', description: 'payload bytes per syscall that cross to user space (64 at least: a request line and its Host must fit)', default: 256, min: 64, max: 512 },
      'max-queue': { type: 'int', description: 'export queue bound in spans (drops beyond it are counted)', default: 4096, min: 1, max: 10_000_000 },
      duration: { type: 'number', description: 'stop after N seconds (default: until Ctrl-C)', min: 0.1, valueName: 'S' },
      quiet: { type: 'boolean', description: 'do not print spans' },
      json: { type: 'boolean', description: 'print counters (spans, exported, dropped, ring lost, BPF run time with --bpf-stats) as one JSON line on stdout on SIGUSR2 (which also sends the queued spans at once) and at exit, instead of spans' },
      'bpf-stats': { type: 'boolean', description: 'count the programs\' run time (kernel.bpf_stats: two clock reads per program run, a cost of its own) and report it at exit' },
      'cpu-prof': { type: 'string', description: 'write a V8 CPU profile of this daemon to FILE at exit, sampled from after the programs loaded (the profiler\'s signals make the verifier give up)', valueName: 'FILE',
        // the lab's file check (a directory, procfs, a dangling link: the profile was lost at exit, an internal error)
        check: (v) => {
          try {
            checkOutFile(v, 'cpu-prof', '/tmp/trace.cpuprofile');
            return undefined;
          } catch (e) {
            return { message: withoutOption((e as LabError).message, 'cpu-prof', v), fix: (e as LabError).fix ?? 'give a file in an existing directory you can write' };
          }
        } },
    },
    epilog: 'example: pnpm lab trace --service web=/sys/fs/cgroup/web.slice --service api=/usr/sbin/nginx --otlp http://127.0.0.1:4318 --metrics-port 9464',
  });
  if (!p) return 0;
  // a list option keeps its last occurrence: collect every --service from the tokens instead
  const specs = p.given.filter((g) => g.name === 'service').flatMap((g) => (g.raw ?? '').split(',').map((x) => x.trim()).filter(Boolean));
  if (!specs.length) throw new UsageError('no workload selected', 'add --service NAME=<cgroup|exe|pid>, e.g. --service web=1234');
  const services: WorkloadSelector[] = [];
  for (const s of specs) {
    try {
      services.push(parseSelector(s));
    } catch (e) {
      throw new UsageError(`--service ${s}: ${(e as Error).message}`, 'NAME=<cgroup v2 directory | executable path | pid>');
    }
  }
  const names = services.map((s) => s.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new UsageError(`service name "${dup}" is given twice`, 'give each workload its own name');
  if (services.length >= TR.RED_SERVICES) throw new UsageError(`${services.length} services given: the tracer takes at most ${TR.RED_SERVICES - 1}`, 'select fewer, e.g. a parent cgroup for several workloads');
  // one workload under two names: the kernel's selector maps hold one service per key, so the later
  // name silently took every span of the earlier one
  const targets = services.map((s) => (s.pid !== undefined ? `pid ${s.pid}` : s.cgroup !== undefined ? `cgroup ${s.cgroup}` : `executable ${s.exe}`));
  const again = targets.findIndex((t, i) => targets.indexOf(t) !== i);
  if (again >= 0) throw new UsageError(`--service ${services[targets.indexOf(targets[again]!)]!.name} and ${services[again]!.name} select the same workload (${targets[again]})`, 'name each workload once');
  if (process.getuid?.() !== 0) throw new LabError('tracing needs root (BPF programs on syscall tracepoints)', 'run as root');
  // tracefs: where the tracepoints are probed; without it every hook read as missing from the kernel
  await ensureMounts();
  deferSignalsToCaller();
  const json = p.values.json ?? false;
  const quiet = (p.values.quiet ?? false) || json;
  const trouble = (what: string) => (err: string | undefined) => console.error(err ? `${what}: exports failing: ${err} (spans wait in the queue, up to --max-queue, then are dropped and counted)` : `${what}: exports work again`);
  const t = await Tracer.start({
    services,
    otlp: p.values.otlp,
    zipkin: p.values.zipkin,
    onExportTrouble: { otlp: trouble(`OTLP ${p.values.otlp ?? ''}`), zipkin: trouble(`Zipkin ${p.values.zipkin ?? ''}`) },
    onNote: (m) => console.error(`note: ${m}`),
    captureBytes: p.values['capture-bytes'],
    sampleRatio: p.values.sample,
    hook: p.values.hook as DataHook | undefined,
    maxQueue: p.values['max-queue'],
    metricsPort: p.values['metrics-port'],
    stats: p.values['bpf-stats'] ?? false,
    onSpan: quiet ? undefined : (s, r) => {
      const dur = Number(s.endTs - s.startTs) / 1000;
      const st = (r.attributes['http.response.status_code'] as number | undefined) ?? r.attributes['error.type'] ?? '';
      // the span's name comes off the wire (method and path as the client sent them): escaped for the terminal
      console.log(`${String(r.resource.attributes['service.name']).padEnd(12)} ${s.kind.padEnd(6)} ${printable(r.name).padEnd(32).slice(0, 32)} ${printable(String(st)).padStart(4)} ${dur.toFixed(0).padStart(8)}µs trace=${s.traceId} span=${s.spanId} parent=${s.parent?.spanId ?? s.remoteParent?.spanId ?? '-'} [${s.link}]`);
    },
  });
  const prof = p.values['cpu-prof'] ? await startProfile() : null;
  // counters on demand (SIGUSR1 is Node's inspector signal): what a harness reads at a window's start
  const counters = (event: string) => {
    const s = t.snapshot();
    process.stdout.write(`${JSON.stringify({ event, spans: s.assembler.spans, records: s.assembler.events, ringLost: s.kernelLost, exported: s.export?.exported ?? null, dropped: s.export?.dropped ?? null, bpfRunTimeNs: s.bpf?.runTimeNs ?? null, bpfRunCnt: s.bpf?.runCnt ?? null })}\n`);
  };
  // SIGUSR2 also sends what the export queue holds rather than at the interval (5 s): a harness
  // that reads the counters until the spans so far are exported does not wait that out. Handled
  // without --json too: Node's default for it ended the daemon, its queued spans lost
  const onUsr2 = () => {
    if (json) counters('snapshot');
    void t.exporter?.pump();
    void t.zipkin?.pump();
  };
  process.on('SIGUSR2', onUsr2);
  console.error(`tracing ${services.map((s) => `${s.name}=${s.cgroup ?? s.exe ?? s.pid}`).join(' ')} — ${t.kernel.mechanism.summary}`);
  if (t.metricsUrl) console.error(`metrics: ${t.metricsUrl}`);
  if (p.values.otlp) console.error(`exporting to ${p.values.otlp}/v1/traces (OTLP/HTTP protobuf)`);
  if (p.values.zipkin) console.error(`exporting to ${p.values.zipkin}/api/v2/spans (Zipkin JSON v2)`);
  await new Promise<void>((resolve) => {
    // a hangup too: a trace started in an ssh session that drops must not run on unseen
    const off = onStopSignals(() => (off(), resolve()));
    if (p.values.duration) setTimeout(() => (off(), resolve()), p.values.duration * 1000);
  });
  process.off('SIGUSR2', onUsr2);
  // a second stop signal while the exports are given their last seconds ends it at once (the
  // programs are detached by then): with the binding's handler deferred to us, one was swallowed
  const stoppedAt = performance.now();
  const offAgain = onStopSignals((sig) => {
    if (performance.now() - stoppedAt < REPEAT_STOP_MS) return; // the same Ctrl-C, passed on by pnpm
    console.error(`${sig} again: exiting without waiting for the exports`);
    process.exit(130);
  });
  await t.stop();
  offAgain();
  if (prof) await prof.stop(p.values['cpu-prof']!);
  if (json) counters('exit');
  const s = t.snapshot();
  const why = (q: { dropped: number; lastError?: string } | null) => (q?.dropped && q.lastError ? ` (last error: ${q.lastError})` : '');
  console.error(`spans ${s.assembler.spans}, kernel records ${s.assembler.events}, ring lost ${s.kernelLost}${s.export ? `, exported ${s.export.exported}, dropped ${s.export.dropped}${why(s.export)}` : ''}${s.zipkin ? `, zipkin exported ${s.zipkin.exported}, dropped ${s.zipkin.dropped}${why(s.zipkin)}` : ''}`);
  // an export request an endpoint never answered keeps its socket, and with it this process, alive
  setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
  return 0;
}

/** V8's sampling profiler on this process (1 ms), written as a .cpuprofile (Chrome DevTools opens it) */
async function startProfile(): Promise<{ stop(file: string): Promise<void> }> {
  const s = new Session();
  s.connect();
  await s.post('Profiler.enable');
  await s.post('Profiler.setSamplingInterval', { interval: 1000 });
  await s.post('Profiler.start');
  return {
    async stop(file: string) {
      const { profile } = await s.post('Profiler.stop');
      s.disconnect();
      fs.writeFileSync(file, JSON.stringify(profile));
    },
  };
}
