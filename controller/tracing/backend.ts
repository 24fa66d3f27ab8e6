// The tracing backend the scenario verifies against: Jaeger v2 (OTLP receiver + in-memory store +
// query API), built once from the Go module proxy with the machine's Go into the lab cache
// (`<repo>/.cache/tracing/`, git-ignored; EBPF_LAB_CACHE overrides; world-readable so a VM guest or
// a non-root user can run it). Jaeger's go.mod has a replace directive, which `go install
// pkg@version` refuses, so the module is downloaded, copied and built as the main module.
// Built from the module, its UI is the placeholder (the real UI is a git submodule); the API the
// scenario uses (/api/services, /api/traces) is complete.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { cacheDir as labCache } from '../../common/paths.ts';
import { LabError } from '../../common/errors.ts';
import { freePort } from '../../common/net.ts';
import { findOnPath } from '../../common/host.ts';
import { lockHolderAlive, tryLock, unlock } from '../../common/lockfile.ts';
import { onStopSignals, type StopSignal } from '../../common/signals.ts';
import { runTempDir } from '../../common/stale.ts';

export const JAEGER_MODULE = 'github.com/jaegertracing/jaeger';
export const JAEGER_VERSION = 'v1.76.0';

export function cacheDir(): string {
  return labCache('tracing');
}

export function jaegerPath(): string {
  return path.join(cacheDir(), `jaeger-${JAEGER_VERSION}`);
}

export interface BuildInfo {
  version: string;
  seconds: number;
  go: string;
  builtAt: string;
  path: string;
}

export function jaegerBuildInfo(): BuildInfo | null {
  try {
    return JSON.parse(fs.readFileSync(`${jaegerPath()}.json`, 'utf8')) as BuildInfo;
  } catch {
    return null;
  }
}

/**
 * The Go toolchain: `go` on PATH, else where Go's tarball (/usr/local/go) or Debian's golang-go
 * (/usr/lib/go) put it. Machines of this kind ship Go in /usr/local/go without putting it on a
 * login shell's PATH, so a fresh checkout's CI found no `go` there. Null when there is none.
 */
export async function findGo(): Promise<{ bin: string; version: string } | null> {
  for (const bin of [findOnPath('go'), '/usr/local/go/bin/go', '/usr/lib/go/bin/go']) {
    if (!bin || !fs.existsSync(bin)) continue;
    const v = await execa(bin, ['version'], { reject: false });
    if (v.exitCode === 0) return { bin, version: v.stdout.trim() };
  }
  return null;
}

/** The file a build holds while it runs: the builder's pid and start time (common/lockfile.ts). */
const lockPath = () => `${jaegerPath()}.building`;

/**
 * The pid of a Jaeger build running in another process (`./lab.sh test` starts one in the
 * background so the build overlaps the tests that do not need it), or null.
 */
export function jaegerBuildRunning(): number | null {
  const pid = lockHolderAlive(lockPath());
  return pid === process.pid ? null : pid;
}

/**
 * Take the build lock, or wait for the build holding it: true when this process holds it, false
 * when the other build produced the binary meanwhile. A lock whose holder is gone is stale.
 */
async function lockOrWait(bin: string, log: (s: string) => void): Promise<boolean> {
  let told = false;
  for (;;) {
    if (fs.existsSync(bin)) return false;
    const pid = tryLock(lockPath());
    if (pid === true) return true;
    if (!told) log(`waiting for the Jaeger build already running (pid ${pid}) …`);
    told = true;
    await new Promise((r) => setTimeout(r, 2000));
    if (fs.existsSync(bin)) return false;
  }
}

/**
 * Build Jaeger once (minutes on 2 cores); later calls return the cached binary. Concurrent callers
 * (another process's build) wait for it rather than build twice.
 */
export async function ensureJaeger(log: (s: string) => void = (s) => console.error(s)): Promise<{ path: string; built: boolean; info: BuildInfo | null }> {
  const bin = jaegerPath();
  if (fs.existsSync(bin)) return { path: bin, built: false, info: jaegerBuildInfo() };
  const go = await findGo();
  if (!go) throw new LabError('Go is not installed (Jaeger v2 is built from the Go module proxy; looked on PATH, in /usr/local/go and /usr/lib/go)', 'install Go ≥ 1.24.6, then pnpm lab setup tracing');
  fs.mkdirSync(cacheDir(), { recursive: true, mode: 0o755 });
  if (!(await lockOrWait(bin, log))) return { path: bin, built: false, info: jaegerBuildInfo() };
  const t0 = Date.now();
  let work: string | null = null;
  let child: ResultPromise | null = null;
  let info: BuildInfo | null = null;
  // an interrupted build (Ctrl-C, or ./lab.sh test ending its background build) leaves no lock,
  // no half-copied module tree and no compiler behind
  // (on, not once: a signal sent to the process group arrives again through tsx's relay, and with
  // no listener left the second one would kill the process halfway through this cleanup)
  let stopping = false;
  const onSignal = (sig: StopSignal) => {
    if (stopping) return;
    stopping = true;
    unlock(lockPath());
    child?.kill('SIGKILL');
    if (work) fs.rmSync(work, { recursive: true, force: true });
    // inside a run the runner's own handler stops the scenario and writes the report
    if (process.listenerCount(sig) === 1) process.exit(128 + os.constants.signals[sig]);
  };
  const offSignals = onStopSignals(onSignal);
  try {
    log(`building Jaeger ${JAEGER_VERSION} from the Go module proxy (${go.version}); this takes minutes …`);
    const env = { ...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '-mod=mod' };
    const dl = await execa(go.bin, ['mod', 'download', '-json', `${JAEGER_MODULE}@${JAEGER_VERSION}`], { env, reject: false, cwd: os.tmpdir() });
    if (dl.exitCode !== 0) throw new LabError(`go mod download ${JAEGER_MODULE}@${JAEGER_VERSION} failed: ${dl.stderr.split('\n').slice(-3).join(' ')}`, 'check GOPROXY and the network, then pnpm lab setup tracing');
    const src = (JSON.parse(dl.stdout) as { Dir: string }).Dir;
    work = runTempDir('jaeger');
    fs.cpSync(src, work, { recursive: true });
    await execa('chmod', ['-R', 'u+w', work]);
    const tmp = `${bin}.${process.pid}.tmp`;
    // -s -w: no symbol table or DWARF (nobody debugs this binary here), which shortens the link
    child = execa(go.bin, ['build', '-trimpath', '-ldflags=-s -w', '-o', tmp, './cmd/jaeger'], { env, cwd: work, reject: false, all: true });
    const b = await child;
    const all = String(b.all ?? '');
    if (b.exitCode !== 0) throw new LabError(`building Jaeger failed:\n${all.split('\n').slice(-10).join('\n')}`, 'see the Go error above; pnpm lab setup tracing retries');
    fs.chmodSync(tmp, 0o755);
    // the facts first: a waiting process reads them as soon as the binary appears
    info = { version: JAEGER_VERSION, seconds: Math.round((Date.now() - t0) / 1000), go: go.version, builtAt: new Date().toISOString(), path: bin };
    fs.writeFileSync(`${bin}.json`, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o644 });
    fs.renameSync(tmp, bin);
  } finally {
    offSignals();
    if (work) fs.rmSync(work, { recursive: true, force: true });
    unlock(lockPath());
  }
  log(`Jaeger built in ${info!.seconds} s → ${bin}`);
  return { path: bin, built: true, info };
}


/**
 * A backend server run as a child process on loopback: its output tail (for errors), readiness
 * polling and stop, shared by Jaeger and Zipkin.
 */
abstract class BackendProcess {
  protected proc: ResultPromise | null = null;
  protected out = '';

  /** dir: a run temp dir of its own (its config, the JVM's temp files), removed by close() */
  constructor(readonly dir: string) {}

  /**
   * Run `cmd` and poll until `ready` says yes. It exiting first, or the deadline passing (which
   * stops it), is a LabError carrying the tail of its output.
   */
  protected async launch(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv | undefined, ready: () => Promise<boolean>,
    o: { url: string; timeoutMs: number; everyMs: number; fix: string }): Promise<void> {
    this.out = '';
    const p = execa(cmd, args, { reject: false, all: true, buffer: false, stdin: 'ignore', forceKillAfterDelay: 2000, ...(env ? { env } : {}) });
    p.all?.on('data', (d: Buffer) => (this.out = (this.out + d.toString()).slice(-4000)));
    this.proc = p;
    const tail = () => this.out.split('\n').slice(-5).join(' ');
    const until = Date.now() + o.timeoutMs;
    for (;;) {
      if (p.exitCode !== null && p.exitCode !== undefined) throw new LabError(`${name} exited with ${p.exitCode}: ${tail()}`, 'see its output above');
      try {
        if (await ready()) return;
      } catch {
        /* not yet */
      }
      if (Date.now() > until) {
        await this.stop();
        throw new LabError(`${name} did not answer on ${o.url} within ${o.timeoutMs} ms: ${tail()}`, o.fix);
      }
      await new Promise((r) => setTimeout(r, o.everyMs));
    }
  }

  get running(): boolean {
    return this.proc !== null;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** stop it and remove its temp dir */
  async close(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (!p) return;
    p.kill('SIGTERM');
    await p.catch(() => {});
  }
}

export interface JaegerSpanJson {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  startTime: number;
  duration: number;
  tags: { key: string; value: unknown }[];
  processID: string;
}

export interface JaegerTraceJson {
  traceID: string;
  spans: JaegerSpanJson[];
  processes: Record<string, { serviceName: string }>;
}

/** A Jaeger process on loopback: OTLP/HTTP in, memory store, query API out. */
export class Jaeger extends BackendProcess {
  private constructor(readonly bin: string, readonly otlpPort: number, readonly queryPort: number, dir: string) {
    super(dir);
  }

  static async create(bin = jaegerPath()): Promise<Jaeger> {
    if (!fs.existsSync(bin)) throw new LabError(`no Jaeger binary at ${bin}`, 'pnpm lab setup tracing (builds it once from the Go module proxy)');
    const dir = runTempDir('jaeger-run');
    return new Jaeger(bin, await freePort(), await freePort(), dir);
  }

  get otlpUrl(): string {
    return `http://127.0.0.1:${this.otlpPort}`;
  }

  get queryUrl(): string {
    return `http://127.0.0.1:${this.queryPort}`;
  }

  /** start (again) on the same ports; the memory store starts empty */
  async start(timeoutMs: number): Promise<void> {
    const grpc = await freePort();
    const health = await freePort();
    const cfg = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:${health}
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:${this.queryPort}
    grpc:
      endpoint: 127.0.0.1:${grpc}
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${this.otlpPort}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`;
    const file = path.join(this.dir, 'jaeger.yaml');
    fs.writeFileSync(file, cfg);
    await this.launch('Jaeger', this.bin, ['--config', file], undefined, async () => {
      if (!(await fetch(`${this.queryUrl}/api/services`, { signal: AbortSignal.timeout(1000) })).ok) return false;
      // the OTLP receiver starts with the pipeline; make sure it answers too
      const o = await fetch(`${this.otlpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: new Uint8Array(), signal: AbortSignal.timeout(1000) });
      return o.status < 500;
    }, { url: this.queryUrl, timeoutMs, everyMs: 200, fix: 'check the Jaeger binary (pnpm lab setup tracing)' });
  }


  async services(): Promise<string[]> {
    const r = await fetch(`${this.queryUrl}/api/services`);
    return ((await r.json()) as { data: string[] | null }).data ?? [];
  }

  async trace(id: string): Promise<JaegerTraceJson | null> {
    const r = await fetch(`${this.queryUrl}/api/traces/${id}`);
    if (r.status === 404) return null;
    const j = (await r.json()) as { data?: JaegerTraceJson[] };
    return j.data?.[0] ?? null;
  }

  async traces(service: string, limit = 100, lookbackMs = 3_600_000): Promise<JaegerTraceJson[]> {
    const end = Date.now() * 1000;
    const r = await fetch(`${this.queryUrl}/api/traces?service=${encodeURIComponent(service)}&limit=${limit}&start=${end - lookbackMs * 1000}&end=${end}`);
    return ((await r.json()) as { data?: JaegerTraceJson[] }).data ?? [];
  }

  get output(): string {
    return this.out;
  }
}

// ------------------------------------------------------------------ Zipkin (optional second backend)

export const ZIPKIN_VERSION = '3.6.1';

export function zipkinPath(): string {
  return path.join(cacheDir(), `zipkin-server-${ZIPKIN_VERSION}-exec.jar`);
}

/** Fetch the Zipkin server jar once from Maven Central (with mvn) into the lab cache. */
export async function ensureZipkin(log: (s: string) => void = (s) => console.error(s)): Promise<{ path: string; fetched: boolean; seconds?: number }> {
  const jar = zipkinPath();
  if (fs.existsSync(jar)) return { path: jar, fetched: false };
  const t0 = Date.now();
  log(`fetching io.zipkin:zipkin-server:${ZIPKIN_VERSION} (exec jar) from Maven Central …`);
  const r = await execa('mvn', ['-q', '-B', 'dependency:get', `-Dartifact=io.zipkin:zipkin-server:${ZIPKIN_VERSION}:jar:exec`, '-Dtransitive=false'], { reject: false, all: true, cwd: os.tmpdir() });
  const m2 = path.join(os.homedir(), '.m2', 'repository', 'io', 'zipkin', 'zipkin-server', ZIPKIN_VERSION, `zipkin-server-${ZIPKIN_VERSION}-exec.jar`);
  if (r.exitCode !== 0 || !fs.existsSync(m2)) throw new LabError(`mvn could not fetch the Zipkin server: ${r.all?.split('\n').slice(-3).join(' ')}`, 'check Maven and its access to Maven Central, then pnpm lab setup tracing');
  fs.mkdirSync(cacheDir(), { recursive: true, mode: 0o755 });
  fs.copyFileSync(m2, `${jar}.${process.pid}.tmp`);
  fs.chmodSync(`${jar}.${process.pid}.tmp`, 0o644);
  fs.renameSync(`${jar}.${process.pid}.tmp`, jar);
  return { path: jar, fetched: true, seconds: Math.round((Date.now() - t0) / 1000) };
}

export interface ZipkinSpanJson {
  traceId: string;
  id: string;
  parentId?: string;
  name?: string;
  kind?: string;
  localEndpoint?: { serviceName?: string };
  tags?: Record<string, string>;
}

/** A Zipkin server on loopback (in-memory storage). */
export class Zipkin extends BackendProcess {
  private constructor(readonly jar: string, readonly port: number, dir: string) {
    super(dir);
  }

  static async create(jar = zipkinPath()): Promise<Zipkin> {
    if (!fs.existsSync(jar)) throw new LabError(`no Zipkin jar at ${jar}`, 'pnpm lab setup tracing');
    return new Zipkin(jar, await freePort(), runTempDir('zipkin-run'));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(timeoutMs: number): Promise<void> {
    // Armeria's port list, bound to loopback only (--server.address is not honoured)
    // its own java.io.tmpdir: the JVM unpacks native libraries (brotli4j's) into a new dir there
    // at every start and never removes it; /tmp gathered one per run
    await this.launch('Zipkin', 'java', ['-Xms64m', '-Xmx384m', `-Djava.io.tmpdir=${this.dir}`, '-jar', this.jar, `--armeria.ports[0].port=${this.port}`, '--armeria.ports[0].ip=127.0.0.1', '--armeria.ports[0].protocols=http'],
      { ...process.env, STORAGE_TYPE: 'mem' }, async () => (await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(1000) })).ok,
      { url: this.url, timeoutMs, everyMs: 300, fix: 'check java and the jar (pnpm lab setup tracing)' });
  }

  async services(): Promise<string[]> {
    return (await (await fetch(`${this.url}/api/v2/services`)).json()) as string[];
  }

  async trace(id: string): Promise<ZipkinSpanJson[] | null> {
    const r = await fetch(`${this.url}/api/v2/trace/${id}`);
    return r.ok ? ((await r.json()) as ZipkinSpanJson[]) : null;
  }
}

// ------------------------------------------------------------------ vegeta (open-loop load generator)

// The bench's paced runs need a constant-rate, open-loop generator (wrk is closed loop: a slow
// response delays the next request, hiding queueing from p99). wrk2 is not packaged in Debian;
// vegeta is a Go module the proxy serves, built once like Jaeger (≈1 min).
export const VEGETA_MODULE = 'github.com/tsenart/vegeta/v12';
export const VEGETA_VERSION = 'v12.13.0';

export function vegetaPath(): string {
  return path.join(cacheDir(), `vegeta-${VEGETA_VERSION}`);
}

export async function ensureVegeta(log: (s: string) => void = (s) => console.error(s)): Promise<{ path: string; built: boolean; seconds?: number }> {
  const bin = vegetaPath();
  if (fs.existsSync(bin)) return { path: bin, built: false };
  const go = await findGo();
  if (!go) throw new LabError('Go is not installed (vegeta is built from the Go module proxy; looked on PATH, in /usr/local/go and /usr/lib/go)', 'install Go, then pnpm lab setup tracing');
  fs.mkdirSync(cacheDir(), { recursive: true, mode: 0o755 });
  const t0 = Date.now();
  log(`building vegeta ${VEGETA_VERSION} from the Go module proxy (${go.version}) …`);
  const gobin = runTempDir('vegeta');
  try {
    const b = await execa(go.bin, ['install', `${VEGETA_MODULE}@${VEGETA_VERSION}`], { env: { ...process.env, GOTOOLCHAIN: 'local', GOBIN: gobin }, cwd: os.tmpdir(), reject: false, all: true });
    if (b.exitCode !== 0) throw new LabError(`building vegeta failed:\n${b.all?.split('\n').slice(-10).join('\n')}`, 'see the Go error above; pnpm lab setup tracing retries');
    fs.copyFileSync(path.join(gobin, 'vegeta'), `${bin}.${process.pid}.tmp`);
    fs.chmodSync(`${bin}.${process.pid}.tmp`, 0o755);
    fs.renameSync(`${bin}.${process.pid}.tmp`, bin);
  } finally {
    fs.rmSync(gobin, { recursive: true, force: true });
  }
  const seconds = Math.round((Date.now() - t0) / 1000);
  log(`vegeta built in ${seconds} s → ${bin}`);
  return { path: bin, built: true, seconds };
}
