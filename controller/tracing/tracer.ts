// The tracer: kernel records → spans → OTLP + RED metrics. Used by `pnpm lab trace` (daemon),
// the scenario and the tests. Workloads are selected by cgroup v2 directory (every process in it,
// present and future), by executable (processes running it now and started later: rescanned every
// second) or by pid.
import fs from 'node:fs';
import { readPidStat } from '../../common/host.ts';
import path from 'node:path';
import http from 'node:http';
import { Registry } from 'prom-client';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { KernelTracer, type DataHook, type Mechanism } from './kernel.ts';
import { SpanAssembler, type Span } from './spans.ts';
import { BoundedExporter, SpanConverter, routeOf, semconvMethod, splitTarget, type ServiceInfo } from './export.ts';
import { RedMetrics, registerKernelRed } from './red.ts';
import { cgroup2Root, cgroupDir, cgroupId } from '../../common/cgroup.ts';
import { serveMetrics } from '../../common/metrics-http.ts';

const STATUS = Array.from({ length: 600 }, (_, i) => String(i));
const statusString = (n: number) => STATUS[n] ?? String(n);
const pathOf = (given: string) => {
  const target = splitTarget(given).rest || '/';
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
};

export interface WorkloadSelector {
  name: string;
  cgroup?: string;
  exe?: string;
  pid?: number;
}

export interface TracerOptions {
  services: WorkloadSelector[];
  /** OTLP/HTTP base URL (…:4318); no export when absent */
  otlp?: string;
  /** Zipkin base URL (…:9411): the same spans as Zipkin JSON v2, through a queue of their own */
  zipkin?: string;
  captureBytes?: number;
  /** share of root requests traced (KernelTracerOptions.sampleRatio; default 1: all) */
  sampleRatio?: number;
  /** where payload is read (KernelTracerOptions.hook; default sock on 6.3+, else sys_exit as tp_btf where there is BTF) */
  hook?: DataHook;
  /** attach the standby copies (KernelTracerOptions.standby; default where the kernel runs tracepoint programs preemptibly) */
  standby?: boolean;
  graceMs?: number;
  maxQueue?: number;
  exportBatch?: number;
  exportIntervalMs?: number;
  /** serve Prometheus metrics on 127.0.0.1:<port> (0 = any free port) */
  metricsPort?: number;
  /** also called for every finished span (scenario checks, tests) */
  onSpan?: (s: Span, r: ReadableSpan) => void;
  stats?: boolean;
  /** told when an exporter starts failing (its error) and when it works again (undefined) */
  onExportTrouble?: { otlp?: (error: string | undefined) => void; zipkin?: (error: string | undefined) => void };
  /** what a user should know while it runs (a selected pid that exited; the tracer selected itself) */
  onNote?: (message: string) => void;
}

/** parse "name=<cgroup dir|executable|pid>" */
export function parseSelector(spec: string): WorkloadSelector {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new Error(`"${spec}" is not name=<cgroup|exe|pid>`);
  const name = spec.slice(0, eq);
  const what = spec.slice(eq + 1);
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new Error(`service name "${name}" must be 1-64 of [A-Za-z0-9_.-]`);
  if (/^\d+$/.test(what)) {
    const pid = Number(what);
    if (!fs.existsSync(`/proc/${pid}`)) throw new Error(`no process ${pid}`);
    // a thread id is a /proc entry too, but selection is by process (tgid): it matched nothing
    const tgid = /^Tgid:\s*(\d+)$/m.exec(readOr(`/proc/${pid}/status`))?.[1];
    if (tgid !== undefined && Number(tgid) !== pid) throw new Error(`${pid} is a thread of process ${tgid}: give the process (${name}=${tgid})`);
    return { name, pid };
  }
  let root: string | null = null;
  try {
    root = cgroup2Root();
  } catch {
    /* no cgroup2: only exe/pid */
  }
  let dir: string | null = null;
  try {
    if (root) dir = cgroupDir(what, root);
  } catch {
    /* leads out of the cgroup2 mount (../bin/server): not a cgroup, maybe an executable */
  }
  if (dir && fs.existsSync(path.join(dir, 'cgroup.procs'))) return { name, cgroup: dir };
  const exe = path.resolve(what);
  let file = false;
  try {
    fs.accessSync(exe, fs.constants.X_OK);
    file = fs.statSync(exe).isFile();
  } catch {
    /* fallthrough */
  }
  if (file) {
    // a script runs as its interpreter (/proc/PID/exe): selected by its own path it matched nothing
    if (readOr(exe, 2) === '#!') throw new Error(`"${what}" is a script: its processes run as its interpreter, so its path matches none; select its pid or its cgroup`);
    return { name, exe: fs.realpathSync(exe) };
  }
  throw new Error(`"${what}" is neither a pid, a cgroup v2 directory nor an executable file`);
}

/** this process's cgroup2 directory (absolute), or undefined */
function ownCgroup(): string | undefined {
  const rel = /^0::(.*)$/m.exec(readOr('/proc/self/cgroup'))?.[1];
  if (rel === undefined) return undefined;
  try {
    return cgroupDir(rel === '/' ? cgroup2Root() : rel, cgroup2Root());
  } catch {
    return undefined;
  }
}

/** a file's first `bytes` (all of it when not given), '' where it cannot be read */
function readOr(file: string, bytes?: number): string {
  try {
    if (bytes === undefined) return fs.readFileSync(file, 'utf8');
    const fd = fs.openSync(file, 'r');
    try {
      const b = Buffer.alloc(bytes);
      return b.toString('latin1', 0, fs.readSync(fd, b, 0, bytes, 0));
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

export interface TracerSnapshot {
  mechanism: Mechanism;
  kernelLost: number;
  /**
   * Program runs the kernel skipped (recursion misses), per program, and how many syscall exits or
   * state changes that may have left unseen (at most; the primary sys_exit's misses do not count
   * where the standby copy took them)
   */
  kernelMissed: { perProgram: Record<string, number>; unseen: number; standbyTook: number };
  assembler: SpanAssembler['stats'];
  export: BoundedExporter['stats'] | null;
  zipkin: BoundedExporter['stats'] | null;
  bpf?: { runCnt: number; runTimeNs: number };
  /** syscalls the kernel-side filter kept out of the ring */
  filtered?: { continuations: number; nonHttp: number; standby: number };
}

/** one walk of /proc: pid → parent (when pids are selected) and executable (when executables are) */
type ProcWalk = Map<number, { ppid?: number; exe?: string }>;

export class Tracer {
  readonly registry = new Registry();
  private readonly red: RedMetrics;
  private readonly assembler: SpanAssembler;
  private readonly converter: SpanConverter;
  readonly exporter: BoundedExporter | null;
  readonly zipkin: BoundedExporter | null;
  private readonly timers: NodeJS.Timeout[] = [];
  private loop: Promise<void> | null = null;
  private server: http.Server | null = null;
  metricsUrl: string | null = null;
  private readonly exeSelected = new Set<number>();
  /** pids --service selects by pid */
  private readonly pidSelected: Set<number>;
  /** descendants of selected pids → their service (rescanChildren) */
  private readonly childSelected = new Map<number, number>();
  /** pids whose pid and exe selectors name different services, said once */
  private readonly overlapSaid = new Set<number>();

  private constructor(readonly kernel: KernelTracer, private readonly opts: TracerOptions) {
    this.pidSelected = new Set(opts.services.flatMap((s) => (s.pid !== undefined ? [s.pid] : [])));
    const services = new Map<number, ServiceInfo>();
    opts.services.forEach((s, i) => services.set(i + 1, { name: s.name, cgroupPath: s.cgroup }));
    this.converter = new SpanConverter(services);
    const q = { maxQueue: opts.maxQueue, batch: opts.exportBatch, intervalMs: opts.exportIntervalMs };
    this.exporter = opts.otlp ? BoundedExporter.otlp(opts.otlp, { ...q, onTrouble: opts.onExportTrouble?.otlp }) : null;
    this.zipkin = opts.zipkin ? BoundedExporter.zipkin(opts.zipkin, { ...q, onTrouble: opts.onExportTrouble?.zipkin }) : null;
    this.red = new RedMetrics(this.registry);
    registerKernelRed(this.registry, kernel, (i) => opts.services[i - 1]?.name ?? `service-${i}`);
    this.assembler = new SpanAssembler((s) => this.emit(s), { graceMs: opts.graceMs });
  }

  static async start(opts: TracerOptions): Promise<Tracer> {
    if (!opts.services.length) throw new Error('no workloads selected');
    const kernel = await KernelTracer.start({ capBytes: opts.captureBytes, stats: opts.stats, sampleRatio: opts.sampleRatio, hook: opts.hook, standby: opts.standby });
    let t: Tracer | undefined;
    try {
      // inside: an exporter that refuses its URL must not leave the programs loaded
      t = new Tracer(kernel, opts);
      const tr = t;
      const note = opts.onNote ?? (() => {});
      opts.services.forEach((s, i) => {
        if (s.cgroup) kernel.selectCgroup(cgroupId(s.cgroup), i + 1);
        if (s.pid) kernel.selectPid(s.pid, i + 1);
      });
      // The tracer in a selected workload would trace its own exports, each export a span the next
      // one carries, for ever (review, session 56): its own spans are dropped (Tracer.emit), and
      // the user told that the in-kernel RED still counts its requests
      const self = opts.services.find((s) => s.pid === process.pid || (s.cgroup && ownCgroup() === s.cgroup));
      if (self) note(`this tracer (pid ${process.pid}) is in the workload --service ${self.name} selects: its own requests make no spans, but ebpf_http_kernel_* counts them; run it outside that workload`);
      // an exe selector never selects the tracer's own pid (rescanExes): nothing of it is counted
      const selfExe = self ? undefined : opts.services.find((s) => s.exe === process.execPath);
      if (selfExe) note(`this tracer (pid ${process.pid}) runs ${process.execPath}, which --service ${selfExe.name} selects: it leaves itself out (its requests are neither spans nor counted)`);
      t.rescan();
      if (opts.services.some((s) => s.exe || s.pid !== undefined)) t.timers.push(setInterval(() => tr.rescan(), 1000));
      for (const tm of t.timers) tm.unref();
      t.loop = t.consume();
      if (opts.metricsPort !== undefined) await t.serveMetrics(opts.metricsPort);
      return t;
    } catch (e) {
      if (t) await t.stop();
      else kernel.close();
      throw e;
    }
  }

  /**
   * Once at start and then once a second: one walk of /proc serves the three questions asked of
   * it (a selected pid gone, its descendants, processes running a selected executable). They
   * used to walk it twice a second and stat every selected pid besides, on a host where the
   * tracer runs beside the services it watches.
   */
  private rescan(): void {
    const roots = this.opts.services.some((s) => s.pid !== undefined && this.pidSelected.has(s.pid));
    const exes = this.opts.services.some((s) => s.exe);
    if (!roots && !exes && !this.childSelected.size) return;
    const procs: ProcWalk = new Map();
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      const p: { ppid?: number; exe?: string } = {};
      if (roots) {
        // a zombie has exited: it is neither a live selected pid nor a parent of live workers
        const st = readPidStat(`/proc/${d}/stat`);
        if (!st || st.state === 'Z') continue;
        p.ppid = st.ppid;
      }
      if (exes) {
        try {
          p.exe = fs.readlinkSync(`/proc/${d}/exe`);
        } catch {
          if (!roots) continue; // gone since the readdir, or a kernel thread
        }
      }
      procs.set(Number(d), p);
    }
    if (roots) this.forgetExitedPids(procs);
    this.rescanChildren(procs);
    this.rescanExes(procs);
  }

  /**
   * A selected pid that exits is said once and unselected, it and what it left: a reused pid
   * would otherwise be traced as it, and its new children as its workers.
   */
  private forgetExitedPids(procs: ProcWalk): void {
    this.opts.services.forEach((s) => {
      if (s.pid === undefined || !this.pidSelected.has(s.pid) || procs.has(s.pid)) return;
      this.pidSelected.delete(s.pid);
      this.kernel.unselectPid(s.pid);
      this.opts.onNote?.(`process ${s.pid} (--service ${s.name}) has exited: neither it nor the child processes it left are traced any more (a server that restarts is better selected by its cgroup or executable)`);
    });
  }

  /**
   * A selected pid's descendant processes are its service's too: a server that forks workers
   * (nginx, gunicorn, a Node cluster) serves from them, and selecting its master traced nothing
   * (review, session 56). Found at start and then once a second, so a worker forked later is
   * traced from its first second on; one that exits is unselected.
   */
  private rescanChildren(procs: ProcWalk): void {
    const roots = new Map<number, number>();
    this.opts.services.forEach((s, i) => {
      if (s.pid !== undefined && this.pidSelected.has(s.pid)) roots.set(s.pid, i + 1);
    });
    // no early return without roots: the workers of a root that exited are unselected below
    const kids = new Map<number, number[]>();
    for (const [pid, p] of procs) {
      if (p.ppid === undefined) continue;
      const list = kids.get(p.ppid) ?? [];
      list.push(pid);
      kids.set(p.ppid, list);
    }
    const found = new Map<number, number>();
    for (const [root, service] of roots) {
      for (const queue = [...(kids.get(root) ?? [])]; queue.length; ) {
        const pid = queue.pop()!;
        if (found.has(pid) || roots.has(pid)) continue;
        found.set(pid, service);
        queue.push(...(kids.get(pid) ?? []));
      }
    }
    found.delete(process.pid);
    for (const [pid, service] of found) {
      if (this.childSelected.get(pid) === service) continue;
      if (this.exeSelected.delete(pid)) this.kernel.unselectPid(pid);
      this.kernel.selectPid(pid, service);
      this.childSelected.set(pid, service);
    }
    for (const pid of this.childSelected.keys()) if (!found.has(pid)) {
      this.kernel.unselectPid(pid);
      this.childSelected.delete(pid);
    }
  }

  private rescanExes(procs: ProcWalk): void {
    const exes = this.opts.services.map((s, i) => [s.exe, i + 1] as const).filter(([e]) => e);
    if (!exes.length) return;
    const alive = new Set<number>();
    for (const [pid, { exe }] of procs) {
      if (exe === undefined) continue;
      const hit = exes.find(([e]) => e === exe);
      if (!hit) continue;
      if (pid === process.pid || this.childSelected.has(pid)) continue; // itself (see start); a selected pid's child is its
      if (this.pidSelected.has(pid)) {
        // a pid selector is the more specific; said once where the two name different services
        const byPid = this.opts.services.findIndex((s) => s.pid === pid);
        if (byPid + 1 !== hit[1] && !this.overlapSaid.has(pid)) {
          this.overlapSaid.add(pid);
          this.opts.onNote?.(`pid ${pid} is selected by --service ${this.opts.services[byPid]!.name} (its pid) and runs ${exe}, which --service ${this.opts.services[hit[1] - 1]!.name} selects: it is traced as ${this.opts.services[byPid]!.name}`);
        }
        continue;
      }
      alive.add(pid);
      if (!this.exeSelected.has(pid)) {
        this.kernel.selectPid(pid, hit[1]);
        this.exeSelected.add(pid);
      }
    }
    for (const pid of this.exeSelected) if (!alive.has(pid)) {
      this.kernel.unselectPid(pid);
      this.exeSelected.delete(pid);
    }
  }

  /** the kernel's lost-record count when the consumer last looked */
  private lostSeen = 0;

  private async consume(): Promise<void> {
    // records are visited in place in the mapped ring (no per-record object or copy). Finished
    // spans wait out a grace period in the assembler before they are linked and handed on: the
    // consumer's passes (at least every POLL_MS, kernel.ts) hand on those whose time is up. No
    // timer of its own: a wake-up is dear where the tracer runs beside the services (an empty
    // 20/s interval cost a bare Node process 5.6 ms of CPU per second on this host).
    await this.kernel.consume(
      (e) => this.assembler.push(e),
      () => {
        // records the kernel could not put in the ring: tuple links are no longer safe (spans.ts)
        const lost = this.kernel.lost;
        if (lost !== this.lostSeen) {
          this.lostSeen = lost;
          this.assembler.recordsLost();
        }
        const next = this.assembler.nextReadyAt();
        if (next !== null && next <= Date.now()) this.assembler.flush();
      },
    );
  }

  private emit(s: Span): void {
    if (s.pid === process.pid) return; // its own export requests (see start)
    const r = this.converter.convert(s);
    const req = s.request;
    const status = s.response?.status !== undefined ? statusString(s.response.status) : s.errorType ?? '';
    // no route for a 404 (made-up paths) or a target the capture cut; no method without a request
    const target = req?.target ?? '';
    const routed = target !== '' && (!req!.targetTruncated || target.includes('?')) && s.response?.status !== 404;
    this.red.record(this.converter.serviceName(s), s.kind, req?.method !== undefined ? semconvMethod(req.method) : '_OTHER', routed ? routeOf(pathOf(target)) : '', status, r.status.code === 2, Number(s.endTs - s.startTs) / 1e9);
    this.exporter?.add(r);
    this.zipkin?.add(r);
    this.opts.onSpan?.(s, r);
  }

  /**
   * Nothing waits: no record unread in the ring (the consumer drains a trickle every POLL_MS,
   * kernel.ts) and no finished span still in its grace period.
   */
  get settled(): boolean {
    return this.assembler.heldCount === 0 && this.kernel.ring.pending === 0;
  }

  wallNs(ts: bigint): bigint {
    return this.converter.wallNs(ts);
  }

  /** RED and tracer metrics on 127.0.0.1:port/metrics; a taken port is the user's to change (LabError) */
  private async serveMetrics(port: number): Promise<void> {
    this.server = await serveMetrics(this.registry, port);
    this.metricsUrl = `http://127.0.0.1:${(this.server.address() as { port: number }).port}/metrics`;
  }

  snapshot(): TracerSnapshot {
    const k = this.final ?? this.kernelFigures();
    return {
      mechanism: this.kernel.mechanism,
      kernelLost: k.lost,
      kernelMissed: k.missed,
      assembler: { ...this.assembler.stats },
      export: this.exporter ? { ...this.exporter.stats } : null,
      zipkin: this.zipkin ? { ...this.zipkin.stats } : null,
      bpf: k.bpf,
      filtered: k.filtered,
    };
  }

  /** kernel-side figures read just before the object was closed */
  private final: { lost: number; missed: TracerSnapshot['kernelMissed']; bpf?: { runCnt: number; runTimeNs: number }; filtered?: { continuations: number; nonHttp: number; standby: number } } | null = null;

  private kernelFigures(): NonNullable<Tracer['final']> {
    const filtered = this.kernel.filtered();
    const perProgram = this.kernel.missedRuns();
    // a primary's skipped runs are taken by its standby copy where one is attached
    const covered = (p: string) => `${p === 'sys_exit_btf' ? 'sys_exit' : p}_standby` in perProgram;
    const unseen = Object.entries(perProgram).reduce((a, [p, n]) => a + (covered(p) ? 0 : n), 0);
    return { lost: this.kernel.lost, missed: { perProgram, unseen, standbyTook: filtered.standby }, bpf: this.opts.stats ? this.kernel.programStats() : undefined, filtered };
  }

  /** hand every finished span on now (end of a run) */
  flush(): void {
    this.assembler.flush(true);
  }

  private stopped = false;

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    // drain what the kernel still holds, then end every open connection
    this.kernel.drainInPlace((e) => this.assembler.push(e));
    this.final = this.kernelFigures();
    // records lost since the consumer's last pass: the spans still to be linked are linked without tuples
    if (this.final.lost !== this.lostSeen) this.assembler.recordsLost();
    this.kernel.close();
    await this.loop?.catch(() => {});
    this.assembler.flush(true);
    await Promise.all([this.exporter?.close(), this.zipkin?.close()]);
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
