// The scenario runner: `pnpm lab run|bench <scenario> [--kernel K] [--out DIR] [scenario options]`.
// On --kernel host it runs the scenario in this process; on any other kernel it hands the same
// command to the VM target (lab/vm), which re-invokes this runner inside the guest with
// --kernel host, then adds the VM's facts to results.json and re-renders the report.
import fs from 'node:fs';
import path from 'node:path';
import { buildBpf } from '../bpf/build.ts';
import { ensureBundle } from './bundle.ts';
import { entryPath } from '../common/dist.ts';
import { parseArgs, toArgv, UsageError, suggest, type Opts } from '../common/args.ts';
import { LabError } from '../common/errors.ts';
import { collectEnvironment, gitState, REPO_ROOT } from './env.ts';
import { cpuFacts, runContext, snapshot } from './context.ts';
import { ensureMounts, parsePidStat, processAlive, procStart } from '../common/host.ts';
import { sweepStaleCgroups } from '../common/cgroup.ts';
import { sweepStaleAll } from './netns.ts';
import { sweepStaleTempBeforeRun } from '../common/stale.ts';
import { sweepPingRange } from '../common/ping-range.ts';
import { createProgress, type Progress } from '../common/progress.ts';
import { probeKernel, type ProbeTable } from './probes.ts';
import { accelLabel, resultsProblem, statusOfChecks, vmAccel, type Block, type Results } from './results.ts';
import type { Scenario, ScenarioContext } from './scenario.ts';
import { ensureTools } from './setup.ts';
import { scaledTimeout } from './timeouts.ts';
import { checkNotARun, checkOutDir } from '../common/out-dir.ts';
import { Cleanups } from './cleanups.ts';
import { onStopSignals, stopExitCode } from '../common/signals.ts';
import { checkKernel, parseKernelSpec, type KernelSpec, type VmKernelSpec } from './vm/index.ts';

import { REPORTS_DIR, SCENARIOS_DIR } from '../common/paths.ts';

export { SCENARIOS_DIR, REPORTS_DIR };

export function listScenarios(): string[] {
  return fs
    .readdirSync(SCENARIOS_DIR, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(SCENARIOS_DIR, d.name, 'index.ts')))
    .map((d) => d.name)
    .sort();
}

export async function loadScenario(name: string): Promise<Scenario> {
  if (!listScenarios().includes(name)) {
    const s = suggest(name, listScenarios());
    throw new UsageError(`unknown scenario ${JSON.stringify(name)}${s ? ` (did you mean ${s}?)` : ''}`, `available: ${listScenarios().join(', ')}`);
  }
  const mod = (await import(entryPath(path.join(SCENARIOS_DIR, name, 'index.ts')))) as { default: Scenario };
  return mod.default;
}

export type OptionValues = Record<string, string | number | boolean | string[]>;

export interface RunArgs {
  scenario: string;
  /** --kernel, parsed at the edge */
  kernel: KernelSpec;
  /** --vm-backend: who boots a VM kernel */
  backend?: 'lab' | 'vng';
  mode: 'run' | 'bench';
  outDir?: string;
  /** the user's --kernel when this process is the guest side of a VM run */
  spec?: string;
  /** the scenario's options, validated and typed (defaults filled in) */
  options: OptionValues;
  /** the scenario's options as given, passed through to a VM as is */
  rest: string[];
  /** its guest needs the virtio-net wire (Scenario.vm.wire) */
  wire?: boolean;
  /** --timeout: the scenario's time limit in seconds (a VM kernel: in the guest, boot not counted) */
  timeoutS?: number;
}

const RUNNER_OPTIONS = {
  kernel: { type: 'string', valueName: 'K', default: 'host', description: 'host | 5.10 | 6.1 | 6.12 | 7.x | a Debian kernel version | path to a bzImage[:modules dir]' },
  out: { type: 'string', valueName: 'DIR', description: 'write results.json and report.html here instead of reports/<run-id>/' },
  'vm-backend': { type: 'string', choices: ['lab', 'vng'], default: 'lab', description: "VM kernels only: the lab's own QEMU runner, or virtme-ng (pnpm lab setup vng)" },
  timeout: { type: 'int', min: 10, max: 86_400, valueName: 'S', description: 'stop the scenario after S seconds, clean up and report what it measured (exit 1; default: none on the host, 1800 in a VM)' },
  spec: { type: 'string', hidden: true, description: "the user's --kernel (set by the VM target for the runner in the guest)" },
} satisfies Opts;

function runUsage(mode: 'run' | 'bench'): string {
  return `pnpm lab ${mode} <scenario> [--kernel K] [--out DIR] [scenario options]`;
}

/**
 * Parse `run|bench <scenario> …` at the edge: the scenario's declared options are validated
 * (unknown flags, bad values) before anything is built, loaded or booted. Returns null after
 * printing help.
 */
export async function parseRunArgs(argv: string[], mode: 'run' | 'bench'): Promise<RunArgs | null> {
  const [name, ...rest] = argv;
  if (!name || name.startsWith('-')) {
    if (name === '--help' || name === '-h') {
      console.log(`usage: ${runUsage(mode)}\n\nscenarios: ${listScenarios().join(', ')}\n(pnpm lab ${mode} <scenario> --help lists its options)`);
      return null;
    }
    throw new UsageError(name ? `expected a scenario before ${name}` : 'missing <scenario>', `usage: ${runUsage(mode)}; scenarios: ${listScenarios().join(', ')}`);
  }
  const scenario = await loadScenario(name);
  const p = parseArgs(rest, {
    usage: `pnpm lab ${mode} ${name} [--kernel K] [--out DIR] [options]`,
    summary: scenario.description,
    options: { ...RUNNER_OPTIONS, ...(scenario.options ?? {}) },
    positionals: { max: 0 },
  });
  if (!p) return null;
  // what follows `--` was dropped unread: `run x -- --timeout 60` ran with no limit (review, session 56)
  if (p.rest.length) throw new UsageError(`unexpected ${p.rest.length > 1 ? 'arguments' : 'argument'} after --: ${p.rest.join(' ')}`, `options go before --, e.g. pnpm lab ${mode} ${name} --kernel host --timeout 60`);
  // an option of the other mode was read by nothing: `run tracing --repeat 5` ran once, silently
  for (const g of p.given) {
    const only = scenario.options?.[g.name]?.only;
    if (only && only !== mode) throw new UsageError(`--${g.name} is a ${only} option: pnpm lab ${mode} ${name} does not read it`, `pnpm lab ${only} ${name} --${g.name} ${g.raw ?? ''}`.trimEnd() + ', or leave it out');
  }
  const { kernel, out, spec, timeout, 'vm-backend': backend, ...options } = p.values as OptionValues & { kernel: string; out?: string; spec?: string; timeout?: number; 'vm-backend'?: 'lab' | 'vng' };
  const k = parseKernelSpec(kernel);
  const invalid = scenario.validate?.(options, { mode, onThisMachine: k.kind === 'host' && process.env.EBPF_LAB_IN_VM !== '1' });
  if (invalid) throw new UsageError(invalid.message, invalid.fix);
  if (out !== undefined) checkOutDir(out);
  // (a guest's run shares the directory its host run made and marked)
  if (out !== undefined && process.env.EBPF_LAB_IN_VM !== '1') checkNotARun(out);
  if (backend === 'vng' && k.kind === 'host') throw new UsageError('--vm-backend vng boots a VM kernel', 'e.g. --kernel 6.1 --vm-backend vng');
  if (backend === 'vng') {
    const { vngCannotShare } = await import('./vm/vng.ts');
    const e = vngCannotShare(path.resolve(out ?? REPORTS_DIR));
    if (e) throw new UsageError(e.message, e.fix);
  }
  // last: the only check that may read a Debian index
  await checkKernel(k);
  return { scenario: name, kernel: k, backend: backend ?? 'lab', mode, outDir: out, spec, options, rest: toArgv(p.given, Object.keys(RUNNER_OPTIONS)), wire: scenario.vm?.wire ?? false, timeoutS: timeout };
}

export function newRunId(scenario: string, kernel: string): string {
  const ts = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  return `${ts}-${scenario}-${kernel.replace(/[^\w.]+/g, '_')}`;
}

/**
 * The report module, loaded as a run starts rather than when its report is written. Through tsx
 * (`pnpm lab`) a module is transpiled on its first import by esbuild's service, a child process in
 * the lab's process group: a terminal's Ctrl-C ends it with the rest of the group, and a module
 * first imported after that fails ("The service is no longer running"). A stopped run then wrote
 * no report and hung until the stop watchdog — on every fresh checkout (tsx's cache cold), seen in
 * fresh-checks; common/dist.test.ts runs with tsx's cache off to keep it covered.
 */
let reportModule: Promise<typeof import('./report/index.ts')> | undefined;
function loadReport(): Promise<typeof import('./report/index.ts')> {
  reportModule ??= import('./report/index.ts');
  reportModule.catch(() => {}); // seen by report(), which awaits it
  return reportModule;
}

async function report(outDir: string, results: Results, written?: () => void): Promise<string> {
  // the measurements first: they survive a renderer that fails. Inside a VM that is all: the host
  // re-renders after adding the VM facts (charts under TCG cost 30-55 s).
  fs.writeFileSync(path.join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  written?.(); // from here the stop watchdog leaves results.json as it is
  // inside a VM that is all (the running.json in the shared directory is the host's, until its report)
  if (process.env.EBPF_LAB_IN_VM === '1') return path.join(outDir, 'results.json');
  unmarkRunning(outDir);
  const { writeReport } = await loadReport();
  return writeReport(outDir, results);
}

/**
 * In a run's directory until its results.json is written: its pid and start time, and the results
 * as they stood at the start. A run killed outright (SIGKILL, the OOM killer, a power loss) runs
 * no cleanup and writes no report: its directory stayed empty for good, and `pnpm lab report`
 * could only ask whether it was a run directory at all.
 */
const RUNNING = 'running.json';

function markRunning(outDir: string, results: Results): void {
  fs.writeFileSync(path.join(outDir, RUNNING), JSON.stringify({ pid: process.pid, startTime: procStart(process.pid), results }));
}

function unmarkRunning(outDir: string): void {
  fs.rmSync(path.join(outDir, RUNNING), { force: true });
}

/** the reports of runs killed outright, written by the next run from their running.json */
export async function reportKilledRuns(info: (line: string) => void, reports = REPORTS_DIR): Promise<void> {
  let ids: string[];
  try {
    ids = fs.readdirSync(reports);
  } catch {
    return;
  }
  // a matrix's cells are one level down (reports/<matrix>/<scenario>-<kernel>/)
  ids = ids.flatMap((id) => {
    if (fs.existsSync(path.join(reports, id, RUNNING))) return [id];
    try {
      return fs.readdirSync(path.join(reports, id)).filter((c) => fs.existsSync(path.join(reports, id, c, RUNNING))).map((c) => path.join(id, c));
    } catch {
      return [];
    }
  });
  const done: string[] = [];
  for (const id of ids) if ((await reportKilledRun(path.join(reports, id))) === 'written') done.push(id);
  if (done.length) info(`wrote the report of ${done.length} run(s) killed outright before they could: ${done.map((d) => path.join(reports, d)).join(', ')}`);
  // a finished matrix's index said "no results" for those cells: rebuilt with their reports (a
  // directory with no matrix.json is no finished matrix, and is left alone)
  for (const m of new Set(done.filter((d) => d.includes(path.sep)).map((d) => path.join(reports, path.dirname(d))))) {
    try {
      const { rebuildMatrixIndex } = await import('./vm/matrix.ts');
      if (await rebuildMatrixIndex(m)) info(`rebuilt the matrix index ${path.join(m, 'index.html')}`);
    } catch (e) {
      info(`the matrix index in ${m} could not be rebuilt (${(e as Error).message}): pnpm lab matrix --report-only --out ${m}`);
    }
  }
}

/** the run of `dir` is alive (its running.json names a live process) */
export function runStillGoing(dir: string): boolean {
  try {
    const rec = JSON.parse(fs.readFileSync(path.join(dir, RUNNING), 'utf8')) as { pid: number; startTime?: string };
    return processAlive(rec.pid, rec.startTime);
  } catch {
    return false;
  }
}

/** why `dir`'s running.json is no run's record (reportKilledRun would write nothing), or null */
export function runningRecordProblem(dir: string): string | null {
  let rec: { pid?: unknown; results?: unknown };
  try {
    rec = JSON.parse(fs.readFileSync(path.join(dir, RUNNING), 'utf8'));
  } catch (e) {
    return `its ${RUNNING} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'not valid JSON'})`;
  }
  if (typeof rec !== 'object' || rec === null || !Number.isInteger(rec.pid)) return `its ${RUNNING} names no process`;
  const p = resultsProblem(rec.results);
  return p === null ? null : `its ${RUNNING} holds no run's results (${p})`;
}

/**
 * The report of one run directory whose running.json names a dead process: 'written', 'running'
 * (its process lives), 'none' (no running.json, or results and report already there).
 */
export async function reportKilledRun(dir: string, by = `the next run (pid ${process.pid})`): Promise<'written' | 'running' | 'none'> {
  let rec: { pid: number; startTime?: string; results: Results };
  try {
    rec = JSON.parse(fs.readFileSync(path.join(dir, RUNNING), 'utf8'));
  } catch {
    return 'none';
  }
  // a record that parses but is not one (edited, written by something else): not a run's to
  // report, and it must not crash every later run that sweeps for killed ones (review, session 56)
  if (typeof rec !== 'object' || rec === null || !Number.isInteger(rec.pid) || resultsProblem(rec.results) !== null) return 'none';
  if (processAlive(rec.pid, rec.startTime)) return 'running';
  let outcome: 'written' | 'none' = 'none';
  const why = `killed outright (pid ${rec.pid}: SIGKILL, the OOM killer, a power loss): no cleanup ran and no report was written; this one was, by ${by}; ${rec.results.environment?.target === 'vm' ? 'what ran in its guest died with it, and its temp files are removed by any later run' : `what it had set up is removed by later runs (its temp files, cgroups and network namespaces by any run, its pins by the next run of ${rec.results.scenario})`}`;
  // a VM run's guest may have finished and written its results.json before the host was killed:
  // its checks stand, the host's part (VM facts, the report) is what is missing
  let guest: Results | undefined;
  if (rec.results.environment?.target === 'vm' && !fs.existsSync(path.join(dir, 'report.html'))) {
    try {
      guest = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8')) as Results;
    } catch { /* none, or cut short mid-write */ }
  }
  if (guest || !fs.existsSync(path.join(dir, 'results.json'))) {
    const results: Results = guest
      ? { ...guest, status: 'error', error: `the guest's run finished (its checks are below), but the host's run was ${why}; the VM facts are missing${guest.error ? `; the guest said: ${guest.error}` : ''}` }
      : { ...rec.results, status: 'error', stoppedBy: 'killed', error: why };
    try {
      // (writeReport writes results.json first, atomically, then the page)
      const { writeReport } = await loadReport();
      await writeReport(dir, results);
      outcome = 'written';
    } catch {
      return 'none'; // a report it cannot write: running.json stays, the next run tries again
    }
  }
  unmarkRunning(dir);
  return outcome;
}

/**
 * reports/<run-id>/ (or --out DIR), created only once the run starts (a mistyped kernel leaves
 * nothing behind). The run id directory is created exclusively: two runs started in the same
 * second get <id> and <id>-2 instead of one overwriting the other.
 */
export function makeOutDir(args: Pick<RunArgs, 'outDir' | 'scenario'>, kernelLabel: string): { runId: string; outDir: string } {
  if (args.outDir) {
    const outDir = path.resolve(args.outDir);
    fs.mkdirSync(outDir, { recursive: true });
    // claimed as it is taken: the --out check at parse time is a check, not a claim, and two runs
    // started together into one directory both ran and wrote one report over the other (review,
    // session 57). running.json is the claim (markRunning fills it in); a guest's run shares the
    // directory its host run claimed.
    if (process.env.EBPF_LAB_IN_VM !== '1') {
      try {
        fs.writeFileSync(path.join(outDir, RUNNING), JSON.stringify({ pid: process.pid, startTime: procStart(process.pid) }), { flag: 'wx' });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        let pid = '?';
        try {
          pid = String((JSON.parse(fs.readFileSync(path.join(outDir, RUNNING), 'utf8')) as { pid?: unknown }).pid);
        } catch { /* being written */ }
        throw new LabError(`--out ${args.outDir}: another run (pid ${pid}) has just taken it`, 'give each run a directory of its own');
      }
    }
    return { runId: path.basename(outDir), outDir };
  }
  fs.mkdirSync(REPORTS_DIR, { recursive: true });
  const base = newRunId(args.scenario, kernelLabel);
  for (let n = 1; ; n++) {
    const runId = n === 1 ? base : `${base}-${n}`;
    const outDir = path.join(REPORTS_DIR, runId);
    try {
      fs.mkdirSync(outDir);
      return { runId, outDir };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

/** what runs killed before their cleanup left on this machine, whichever scenario they ran */
async function sweepDeadRuns(progress: Progress): Promise<void> {
  // first what only a scenario knows (its pinned instances, their daemons and state: a tc-shaping
  // instance's filters go while its namespace is still there), whichever scenario runs now
  await sweepDeadInstances(progress);
  // network namespaces of every kind of run (with what still runs in them: a load generator
  // would skew every later benchmark)
  const ns = await sweepStaleAll();
  if (ns.length) progress.info(`removed ${ns.length} network namespace(s) dead lab runs left, with what ran in them: ${ns.join(', ')}`);
  // a cgroup leaked unnoticed at a Ctrl-C in session 32
  const swept = sweepStaleCgroups();
  if (swept.length) progress.info(`removed ${swept.length} cgroup(s) dead lab runs left: ${swept.join(', ')}`);
  // a killed security run's open ping_group_range: put back now, not at the next security run
  const pingRange = sweepPingRange();
  if (pingRange) progress.info(`put net.ipv4.ping_group_range back to "${pingRange.replace('\t', ' ')}" (a killed run had left it open)`);
}

/**
 * scenarios/<name>/sweep.ts, where a scenario has one: the instances its killed runs left (pins
 * that keep programs attached, daemons, state files), swept at the start of every run. They were
 * swept only by that scenario's own next run, so a killed xdp-lb run's XDP links and maps stayed
 * pinned through any number of other scenarios' runs.
 */
export async function sweepDeadInstances(progress: Pick<Progress, 'info' | 'warn'>): Promise<string[]> {
  const removed: string[] = [];
  for (const name of listScenarios()) {
    const src = path.join(SCENARIOS_DIR, name, 'sweep.ts');
    if (!fs.existsSync(src)) continue;
    let r: { removed: string[]; kept: string[] };
    try {
      const mod = (await import(entryPath(src))) as { sweepDead(): Promise<{ removed: string[]; kept: string[] }> };
      r = await mod.sweepDead();
    } catch (e) {
      // one scenario's leftovers must not stop every other scenario's runs
      progress.warn(`could not sweep what dead ${name} runs left: ${(e as Error).message.split('\n')[0]}`);
      continue;
    }
    if (r.removed.length) progress.info(`removed what dead ${name} runs left (pins, links, daemons, state): ${r.removed.join(', ')}`);
    for (const k of r.kept) progress.warn(`a dead ${name} run's instance kept: ${k}`);
    removed.push(...r.removed);
  }
  return removed;
}

/** Run a scenario on this machine's kernel. Returns the results (also written to outDir). */
export async function runOnHost(args: RunArgs, progress: Progress = createProgress()): Promise<{ results: Results; outDir: string; html: string; stopped?: boolean }> {
  const scenario = await loadScenario(args.scenario);
  // the guest side of a VM run is told the user's --kernel; on the host it is this kernel
  const inGuest = args.spec !== undefined;
  const spec = args.spec ?? args.kernel.text;
  if (process.getuid?.() !== 0) {
    throw new LabError(`scenario ${args.scenario} loads BPF programs and needs root`, 'run it as root (sudo pnpm lab run …), or in a VM: --kernel 6.1');
  }
  progress.step(`${args.mode} ${scenario.name}: starting (node up ${(process.uptime()).toFixed(1)} s)`);
  if (!inGuest) void loadReport(); // while nothing can have stopped the run yet: see loadReport
  if (!inGuest) {
    progress.step('checking tools');
    await ensureTools(['build', ...(scenario.tools ?? [])], (s) => progress.info(s));
  }
  await ensureMounts();
  await sweepDeadRuns(progress);
  // not in a guest: its /tmp shows the host's through the root overlay, and the host's pids are
  // not its own (it took the host's live VM temp dir for a dead run's)
  if (!inGuest) await sweepStaleTempBeforeRun((s) => progress.info(s));
  if (!inGuest) await reportKilledRuns((s) => progress.info(s));
  const startedAt = new Date().toISOString();
  const environment = await collectEnvironment(spec);
  // The report directory is made only now, with the stop handlers installed in the same tick
  // (below): a Ctrl-C during the steps above, which set nothing up, ends the process at once, and
  // it once left an empty report directory behind when the directory came first.
  const { runId, outDir } = makeOutDir(args, spec);

  const results: Results = {
    schema: 1,
    runId,
    scenario: scenario.name,
    mode: args.mode,
    startedAt,
    status: 'error',
    // every declared option, null where it was not given and has no default: `lab compare` tells
    // "not given" (a setup of its own: --profile against none) from "not known to that build" (an
    // option added since: no difference)
    options: { ...Object.fromEntries(Object.keys(scenario.options ?? {}).map((k) => [k, null])), ...args.options },
    environment,
    checks: [],
    metrics: {},
    sections: [],
  };
  if (!inGuest) markRunning(outDir, results);

  const cleanups = new Cleanups((s) => progress.warn(s));
  // TESTING ONLY: a last cleanup that holds a stop this long (common/dist.test.ts: the checks
  // made before a stop that does not finish still reach results.json)
  const holdStopMs = Number(process.env.EBPF_LAB_TEST_HOLD_STOP_MS);
  if (holdStopMs > 0) cleanups.defer('a held stop (EBPF_LAB_TEST_HOLD_STOP_MS)', () => new Promise((r) => setTimeout(r, holdStopMs)));
  const abort = new AbortController();
  // A stopped scenario ends at its next step: its step() throws the stop. Its loops and waits end
  // early on the signal, but the code after them went on: security ran its remaining attacks and
  // controls, socket-lb built its 10- and 1,000-service tables, tracing started Jaeger again — all
  // after the cleanups, their checks discarded. (Scenarios call step() outside finally blocks.)
  const scenarioProgress: Progress = {
    step: (m) => {
      abort.signal.throwIfAborted();
      progress.step(m);
    },
    // a loop woken by the stop draws once more before it sees the signal: a progress line after
    // "cleaning up" read as if the measurement went on
    update: (f, d) => {
      if (!abort.signal.aborted) progress.update(f, d);
    },
    // the same for a stopped setup's news ("PostgreSQL accepting connections" after "cleaning up")
    info: (m) => {
      if (!abort.signal.aborted) progress.info(m);
    },
    warn: (m) => progress.warn(m),
  };
  let probes: Promise<ProbeTable> | null = null;
  let probePhase: { what: string; since: number } | undefined;
  const ctx: ScenarioContext = {
    mode: args.mode,
    kernel: { release: results.environment.kernel.release, spec },
    outDir,
    options: args.options,
    progress: scenarioProgress,
    signal: abort.signal,
    probes: () => (probes ??= probeKernel({ kvm: false, onPhase: (p) => (probePhase = { what: p, since: Date.now() }) })),
    check(name, ok, detail) {
      // a stopped scenario's code that runs on sees its setup torn down under it: what it then
      // checks says nothing about the subject (an attack "not blocked" because its script is gone).
      // It ends here like at a step: recording nothing, security's deny-list loop ran all its
      // remaining attacks after "cleaning up", printing one "not recorded" line each.
      abort.signal.throwIfAborted();
      results.checks.push({ name, status: ok ? 'pass' : 'fail', detail });
      progress.info(`${ok ? 'pass' : 'FAIL'}  ${name}${detail ? ` — ${detail}` : ''}`);
      return ok;
    },
    unsupported(name, feature, evidence) {
      abort.signal.throwIfAborted();
      results.checks.push({ name, status: 'unsupported', detail: `unsupported: ${feature} on ${results.environment.kernel.release}`, evidence });
      progress.info(`unsupported  ${name} — ${feature}`);
    },
    headline(h) {
      const list = (results.headline ??= []);
      const i = list.findIndex((x) => x.name === h.name);
      if (i >= 0) list[i] = h;
      else list.push(h);
    },
    metric(name, value) {
      results.metrics[name] = value;
    },
    section(title, ...blocks: Block[]) {
      const s = results.sections.find((x) => x.title === title);
      if (s) s.blocks.push(...blocks);
      else results.sections.push({ title, blocks });
    },
    defer(what, fn) {
      cleanups.defer(what, fn);
    },
  };

  // Ctrl-C: stop the scenario's loops, undo what it set up, still write what was measured
  let interrupted = false;
  let stopSource = '';
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    stopSource = sig;
    progress.warn(`${sig}: stopping and cleaning up`);
    stopWatchdog();
    abort.abort(new Error(`interrupted by ${sig}`));
  };
  // A stop must end the process. A stopped run once sat idle with no report instead (its report
  // module failed to load: see loadReport): past this limit the runner saves Node's diagnostic
  // report (JS stack, libuv handles) beside the results, and where the stop got to with the active
  // resources (requests included, which keep a process alive as well and the report omits), and exits.
  // The checks made before the stop are written then too (results.json, with where the stop was
  // held as the error): in a guest, the host kills a run that does not stop within its grace, and
  // a stop once held there past it (CI, the lab backend's Ctrl-C test) and the report lost every
  // check. The host tells the guest's runner its limit (EBPF_LAB_STOP_LIMIT_MS, lab/vm/guest.ts),
  // inside that grace.
  let stopPhase = 'the scenario';
  let resultsWritten = false;
  // the run's start, for a watchdog that fires before the scenario has (a stop during the imports)
  const tStart = Date.now();
  const stopWatchdog = () => {
    const given = Number(process.env.EBPF_LAB_STOP_LIMIT_MS);
    const limitMs = given > 0 ? given : scaledTimeout(60_000);
    setTimeout(() => {
      const file = path.join(outDir, 'stop-diagnostic.json');
      const held = { phase: stopPhase, cleanup: cleanups.current, resources: process.getActiveResourcesInfo() };
      const where = `held in ${held.phase}${held.cleanup ? `, cleanup "${held.cleanup}"` : ''}`;
      // each write on its own: the checks first, then the diagnostics
      const attempt = (fn: () => void) => {
        try {
          fn();
        } catch { /* best effort */ }
      };
      if (!resultsWritten) {
        attempt(() => {
          const reason = abort.signal.reason instanceof Error ? abort.signal.reason.message : String(abort.signal.reason);
          results.error = `${reason}; the stop did not finish within ${Math.round(limitMs / 1000)} s (${where}; see stop-held.json)`;
          if (stopSource) results.stoppedBy = stopSource;
          results.status = 'error';
          results.durationMs = Date.now() - tStart;
          fs.writeFileSync(path.join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
          if (!inGuest) unmarkRunning(outDir); // in a guest it is the host's, in the shared directory
        });
      }
      attempt(() => fs.writeFileSync(path.join(outDir, 'stop-held.json'), `${JSON.stringify(held)}\n`));
      attempt(() => process.report.writeReport(file));
      progress.warn(`the stop did not finish within ${Math.round(limitMs / 1000)} s: exiting now with the checks so far in results.json (${where}; active: ${held.resources.join(', ')}; Node's report: ${file})`);
      endRunNow(stopExitCode(stopSource) ?? 1);
    }, limitMs).unref();
  };
  const offSignals = onStopSignals(onSignal);
  // A scenario's promise that fails while nobody awaits it yet (a load started beside other steps)
  // ended Node at once: no cleanup, no report. After a stop that is the rule, since the stop kills
  // its child: xdp-lb stopped during its live-change step left its pins and temp dir. Before a
  // stop such a failure stops the run like Ctrl-C, with its error; after one it is only noted.
  let failedUnawaited = false;
  const onUnhandled = (e: unknown) => {
    const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0];
    if (interrupted) {
      progress.info(`after the stop: ${msg}`);
      return;
    }
    interrupted = true;
    failedUnawaited = true;
    progress.warn(`a scenario step failed with nobody waiting for it (${msg}): stopping and cleaning up`);
    stopWatchdog();
    abort.abort(e instanceof Error ? e : new Error(msg));
  };
  process.on('unhandledRejection', onUnhandled);
  // --timeout: the same path as Ctrl-C (stop, clean up, report), as an error of its own
  const limit = args.timeoutS ? setTimeout(() => {
    if (interrupted) return;
    interrupted = true;
    progress.warn(`--timeout ${args.timeoutS}: stopping and cleaning up`);
    stopWatchdog();
    stopSource = `--timeout ${args.timeoutS} s`;
    abort.abort(new Error(`timed out after ${args.timeoutS} s (--timeout)`));
  }, args.timeoutS * 1000) : undefined;
  const { deferSignalsToCaller } = await import('../controller/libbpf/index.ts');
  deferSignalsToCaller(true);

  let running: Promise<void> | undefined;
  const t0 = Date.now();
  // the machine's state around the run (load, steal, other processes' CPU): see lab/context.ts
  const snap0 = snapshot();
  // the host splits a VM run into phases: node start → runner ready is the guest runner's start
  if (inGuest) results.environment.vm = { runnerStartMs: Math.round(process.uptime() * 1000) };
  try {
    // scenarioProgress.step: a stop during one of these steps ends the run at the next
    scenarioProgress.step('building BPF objects');
    // in a guest the host has built everything (and the tree is its read-only copy): only check
    await buildBpf({ log: (s) => progress.info(s), gen: !inGuest });
    if (inGuest) await preloadedModules(progress, abort.signal);
    // a stop ends the wait for the probes or the scenario even when they do not end themselves
    const onStop = new Promise<never>((_, rej) => {
      if (abort.signal.aborted) rej(abort.signal.reason);
      else abort.signal.addEventListener('abort', () => rej(abort.signal.reason), { once: true });
    });
    onStop.catch(() => {}); // raced below; rejected after the race is over, it is nobody's error
    scenarioProgress.step('probing kernel features');
    // the probes take ~1 s (~3 s under TCG); a phase that takes far longer is said (a TCG guest
    // once sat in this step for 8 min, and nothing told in which probe)
    const slowProbe = setInterval(() => {
      if (probePhase && Date.now() - probePhase.since > scaledTimeout(10_000)) progress.warn(`probing kernel features: still ${probePhase.what} after ${Math.round((Date.now() - probePhase.since) / 1000)} s`);
    }, scaledTimeout(5_000));
    try {
      results.environment.probes = await Promise.race([ctx.probes(), onStop]);
    } finally {
      clearInterval(slowProbe);
    }
    scenarioProgress.step(`scenario ${scenario.name} (${args.mode}) on ${results.environment.kernel.release}`);
    running = scenario.run(ctx);
    await Promise.race([running, onStop]);
  } catch (e0) {
    // A terminal's Ctrl-C reaches the whole process group: a child killed by it (hello-openat's
    // load generator) can fail the scenario before this process's own SIGINT handler has run, when
    // both were pending while it was busy. The run then reported the child's death ("loadgen
    // failed") as its error instead of the stop. Pending signals land first; a stop that did is the
    // reason, and the scenario's error its consequence.
    if (!interrupted) await new Promise((r) => setTimeout(r, 50));
    const stopped = interrupted && !failedUnawaited && abort.signal.aborted && e0 !== abort.signal.reason;
    if (stopped) progress.info(`after the stop: ${e0 instanceof Error ? e0.message.split('\n')[0] : e0}`);
    const e: unknown = stopped ? abort.signal.reason : e0;
    // a stop's own error (Ctrl-C, --timeout) is its reason, not a stack
    const reasonOnly = e === abort.signal.reason && !failedUnawaited;
    // a LabError (bad input the scenario found, a missing facility) is its message and fix, not a stack
    results.error = e instanceof LabError ? `${e.message}${e.fix ? `\nfix: ${e.fix}` : ''}` : e instanceof Error ? ((reasonOnly ? undefined : e.stack) ?? e.message) : String(e);
    if (reasonOnly && stopSource) results.stoppedBy = stopSource;
    progress.warn(`scenario failed: ${e instanceof Error ? e.message : e}`);
  } finally {
    progress.step('cleaning up');
    stopPhase = 'the cleanups';
    await cleanups.run();
    // a probe left behind by a stop (its veth, its cgroup) undoes itself as the scenario does
    const unsettled = running ?? probes;
    if (unsettled && interrupted) {
      // what the stopped scenario is still in the middle of (a start that creates a temp dir, a
      // namespace) finishes or fails within moments once its children are gone: its own error
      // paths and late defers then undo it, before the process exits
      stopPhase = 'waiting for the stopped scenario to settle';
      await Promise.race([unsettled.then(() => {}, () => {}), new Promise((r) => setTimeout(r, scaledTimeout(3000)).unref())]);
    }
    stopPhase = 'the late cleanups';
    await cleanups.drain();
    clearTimeout(limit);
    stopPhase = 'closing BPF objects';
    const { closeAll } = await import('../controller/libbpf/index.ts');
    closeAll();
  }
  stopPhase = 'the run context';
  results.finishedAt = new Date().toISOString();
  results.durationMs = Date.now() - t0;
  results.status = statusOfChecks(results.checks, results.error);
  try {
    results.context = runContext(snap0, snapshot(), process.pid, 100, cpuFacts(results.environment.cpu.cores));
    if (results.context.busy.length) progress.warn(`busy machine during the run: ${results.context.busy.join('; ')}`);
  } catch (e) {
    progress.warn(`run context not recorded: ${(e as Error).message}`);
  }
  progress.step('writing report');
  stopPhase = 'writing the report';
  let html: string;
  try {
    html = await report(outDir, results, () => (resultsWritten = true));
  } catch (e) {
    if (!interrupted) throw e;
    // a stopped run still ends now, its leftovers killed (runOrBench): with its measurements
    progress.warn(`report not rendered: ${(e as Error).message}; the results are in ${path.join(outDir, 'results.json')}`);
    html = path.join(outDir, 'results.json');
  } finally {
    // until here: a Ctrl-C while the report is written is noted, not a kill with half a report
    offSignals();
    // a stopped run ends now (runOrBench); one that was not has no scenario promise left
    if (!interrupted) process.off('unhandledRejection', onUnhandled);
    deferSignalsToCaller(false);
  }
  stopPhase = 'after the report';
  return { results, outDir, html, stopped: interrupted };
}

/**
 * A guest's script loads the modules runs use beside the runner's start (lab/vm/guest.ts
 * PRELOAD_MODULES); nothing may use them before that is over, or a qdisc or link type could be
 * asked for while its module is half loaded. Usually over by now: the wait shows only if not.
 */
async function preloadedModules(progress: Progress, signal: AbortSignal): Promise<void> {
  const done = process.env.EBPF_LAB_PRELOAD_DONE;
  if (!done) return;
  const t0 = Date.now();
  const limit = t0 + scaledTimeout(10_000);
  while (!fs.existsSync(done) && Date.now() < limit && !signal.aborted) await new Promise((r) => setTimeout(r, 50));
  const ms = Date.now() - t0;
  if (signal.aborted) return;
  if (!fs.existsSync(done)) progress.warn(`the guest's module preload did not finish in ${(ms / 1000).toFixed(1)} s; going on (modules load on first use)`);
  else if (ms >= 500) progress.info(`waited ${(ms / 1000).toFixed(1)} s for the guest's module preload`);
}

/**
 * After Ctrl-C or --timeout on this kernel, and always on a guest's side of a VM run: the cleanups
 * have run and the report is written, but the scenario's own awaits may still hold children (a
 * load generator runs its full duration): end them and exit now rather than when they finish.
 */
function endRunNow(code: number): never {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (parsePidStat(fs.readFileSync(`/proc/${d}/stat`, 'utf8'))?.ppid === process.pid) process.kill(Number(d), 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
  }
  process.exit(code);
}

/** Run on a VM kernel: a row of one (lab/vm/row.ts) — the guest runs runOnHost, we add the VM facts and re-render. */
async function runOnVm(args: RunArgs & { kernel: VmKernelSpec }, progress: Progress): Promise<{ results: Results; outDir: string; html: string }> {
  void loadReport(); // the host renders the row's report, also after a stop: see loadReport
  await reportKilledRuns((s) => progress.info(s));
  await sweepDeadRuns(progress); // what killed host runs left on this machine (the guest has its own)
  const { runVmRow } = await import('./vm/index.ts');
  // the host's state matters as much as the guest's under emulation: QEMU runs on the host's
  // cores (under TCG all of a guest's vCPUs in one host thread, see lab/vm/cmdline.ts tcgAccelArg)
  const hostSnap0 = snapshot();
  const [r] = await runVmRow({ mode: args.mode, kernel: args.kernel, backend: args.backend, cells: [{ scenario: args.scenario, outDir: args.outDir, options: args.options, rest: args.rest, wire: args.wire }], ...(args.timeoutS ? { timeoutMs: args.timeoutS * 1000 } : {}) }, progress, rowHooks);
  // the row's stop handlers are gone: a Ctrl-C here took its default action and ended the process
  // mid-render, without the summary (review, session 57). The run has finished; the stop is held
  // until its report is whole, and then said.
  const { holdEarlyStops } = await import('../common/signals.ts');
  const held = holdEarlyStops();
  try {
    const results = r!.results;
    const host = runContext(hostSnap0, snapshot(), process.pid, 100, cpuFacts(results.environment.cpu?.cores ?? 1));
    results.environment.vm = { ...(results.environment.vm ?? {}), hostLoadavg: `${host.loadavg.before.join(' ')} → ${host.loadavg.after.join(' ')}`, hostOthersCpus: host.othersCores, hostBusy: host.busy.join('; ') || 'no' };
    // QEMU and its threads are this process's children, so "others" are other tenants of the host
    if (host.busy.length && results.context) results.context.busy.push(...host.busy.map((b) => `host: ${b}`));
    await rowHooks.writeReport(r!.outDir, results);
  } catch (e) {
    progress.warn(`host context not recorded: ${(e as Error).message}`);
  } finally {
    held.off();
    if (held.signal) progress.info(`${held.signal} came once the run had finished: its report was completed`);
  }
  return r!;
}

/** What a VM row needs from the runner: its out dirs and its report writer. */
export const rowHooks = {
  makeOutDir: (c: { scenario: string; outDir?: string }, label: string) => makeOutDir(c, label),
  writeReport: (outDir: string, results: Results) => report(outDir, results),
  markRunning,
  prepare: async (c: { scenario: string }, log: (s: string) => void) => (await loadScenario(c.scenario)).vm?.prepare?.(log),
};

export async function runScenario(args: RunArgs, progress: Progress = createProgress()) {
  const k = args.kernel;
  return k.kind === 'host' ? runOnHost(args, progress) : runOnVm({ ...args, kernel: k }, progress);
}

async function runOrBench(argv: string[], mode: 'run' | 'bench'): Promise<number> {
  const args = await parseRunArgs(argv, mode);
  if (!args) return 0;
  const progress = createProgress();
  const r = await runScenario(args, progress);
  const { results, html } = r;
  const stopped = 'stopped' in r && r.stopped;
  const code = results.status === 'pass' || results.status === 'unsupported' ? 0 : (results.status === 'error' && stopExitCode(results.stoppedBy)) || 1;
  // the guest side of a VM run stays quiet: the host prints the one summary. It exits as soon as
  // its results.json is written: a timer or child a scenario left behind would otherwise hold the
  // row (security's PostgreSQL stop guard held every run ~10 s) and the next scenario's guest
  if (args.spec) return endRunNow(code);
  const counts = (s: string) => results.checks.filter((c) => c.status === s).length;
  const accel = vmAccel(results.environment);
  console.log(`${results.scenario} on ${results.environment.kernel.release} (${args.kernel.text}${accel ? `, ${accelLabel(accel)}` : ''}): ${results.status.toUpperCase()} — ${counts('pass')} passed, ${counts('fail')} failed, ${counts('unsupported')} unsupported in ${((results.durationMs ?? 0) / 1000).toFixed(1)} s`);
  if (results.error) {
    const [first, second] = results.error.split('\n');
    console.log(`error: ${first}${second?.startsWith('fix: ') ? `\n  ${second}` : ''}`);
  }
  console.log(`report: ${html}`);
  return stopped ? endRunNow(code) : code;
}

export const runCommand = (argv: string[]) => runOrBench(argv, 'run');
export const benchCommand = (argv: string[]) => runOrBench(argv, 'bench');

export async function listCommand(argv: string[]): Promise<number> {
  if (!parseArgs(argv, { usage: 'pnpm lab list', summary: 'list the scenarios', options: {} })) return 0;
  for (const n of listScenarios()) {
    const s = await loadScenario(n);
    console.log(`${n.padEnd(16)} ${s.description}`);
  }
  return 0;
}
