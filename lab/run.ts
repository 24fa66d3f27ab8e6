// The scenario runner: `pnpm lab run|bench <scenario> [--kernel K] [--out DIR] [scenario options]`.
// On --kernel host it runs the scenario in this process; on any other kernel it hands the same
// command to the VM target (lab/vm), which re-invokes this runner inside the guest with
// --kernel host, then adds the VM's facts to results.json and re-renders the report.
import fs from 'node:fs';
import path from 'node:path';
import { buildBpf } from '../bpf/build.ts';
import { LabError } from './errors.ts';
import { collectEnvironment, REPO_ROOT } from './env.ts';
import { ensureMounts } from './host.ts';
import { createProgress, type Progress } from './progress.ts';
import { probeKernel, type ProbeTable } from './probes.ts';
import type { Block, Check, Results } from './results.ts';
import type { Scenario, ScenarioContext } from './scenario.ts';
import { ensureTools } from './setup.ts';

export const SCENARIOS_DIR = path.join(REPO_ROOT, 'scenarios');
export const REPORTS_DIR = path.join(REPO_ROOT, 'reports');

export function listScenarios(): string[] {
  return fs
    .readdirSync(SCENARIOS_DIR, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(SCENARIOS_DIR, d.name, 'index.ts')))
    .map((d) => d.name)
    .sort();
}

export async function loadScenario(name: string): Promise<Scenario> {
  if (!listScenarios().includes(name)) {
    throw new LabError(`unknown scenario "${name}"`, `available: ${listScenarios().join(', ')}`);
  }
  const mod = (await import(path.join(SCENARIOS_DIR, name, 'index.ts'))) as { default: Scenario };
  return mod.default;
}

export interface RunArgs {
  scenario: string;
  kernel: string;
  mode: 'run' | 'bench';
  outDir?: string;
  /** the user's --kernel when this process is the guest side of a VM run */
  spec?: string;
  options: Record<string, string | boolean>;
  /** everything after the scenario name, passed through to a VM as is */
  rest: string[];
}

/** --key value / --flag / --key=value; our own flags are taken out, the rest go to the scenario. */
export function parseRunArgs(argv: string[], mode: 'run' | 'bench'): RunArgs {
  const [scenario, ...rest] = argv;
  if (!scenario || scenario.startsWith('-')) throw new LabError(`usage: pnpm lab ${mode} <scenario> [--kernel host|5.10|6.1|6.12|7.x|<version>|<bzImage>] [--out DIR] [options]`, `scenarios: ${listScenarios().join(', ')}`);
  const options: Record<string, string | boolean> = {};
  const passthrough: string[] = [];
  let kernel = 'host';
  let outDir: string | undefined;
  let spec: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (!a.startsWith('--')) throw new LabError(`unexpected argument "${a}"`, 'options take the form --name value');
    let [k, v] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    if (v === undefined) {
      const next = rest[i + 1];
      if (next !== undefined && !next.startsWith('--')) {
        v = next;
        i++;
      }
    }
    if (k === 'kernel') kernel = v ?? 'host';
    else if (k === 'out') outDir = v;
    else if (k === 'spec') spec = v;
    else {
      options[k] = v ?? true;
      passthrough.push(`--${k}`, ...(v !== undefined ? [v] : []));
    }
  }
  return { scenario, kernel, mode, outDir, spec, options, rest: passthrough };
}

export function newRunId(scenario: string, kernel: string): string {
  const ts = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  return `${ts}-${scenario}-${kernel.replace(/[^\w.]+/g, '_')}`;
}

async function report(outDir: string, results: Results): Promise<string> {
  // Inside a VM the host re-renders after adding the VM facts; rendering charts under TCG costs
  // 30-55 s, so the guest writes only the JSON.
  if (process.env.EBPF_LAB_IN_VM === '1') {
    fs.writeFileSync(path.join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    return path.join(outDir, 'results.json');
  }
  const { writeReport } = await import('./report/index.ts');
  return writeReport(outDir, results);
}

/** reports/<run-id>/ (or --out DIR), created; the run id is the directory's name */
function makeOutDir(args: RunArgs, kernelLabel: string): { runId: string; outDir: string } {
  const runId = args.outDir ? path.basename(args.outDir) : newRunId(args.scenario, kernelLabel);
  const outDir = path.resolve(args.outDir ?? path.join(REPORTS_DIR, runId));
  fs.mkdirSync(outDir, { recursive: true });
  return { runId, outDir };
}

function overall(checks: Check[], error?: string): Results['status'] {
  if (error) return 'error';
  if (checks.some((c) => c.status === 'fail')) return 'fail';
  if (checks.some((c) => c.status === 'unsupported')) return 'unsupported';
  return checks.length ? 'pass' : 'error';
}

/** Run a scenario on this machine's kernel. Returns the results (also written to outDir). */
export async function runOnHost(args: RunArgs, progress: Progress = createProgress()): Promise<{ results: Results; outDir: string; html: string }> {
  const scenario = await loadScenario(args.scenario);
  const spec = args.spec ?? 'host';
  if (process.getuid?.() !== 0) {
    throw new LabError(`scenario ${args.scenario} loads BPF programs and needs root`, 'run it as root (sudo pnpm lab run …), or in a VM: --kernel 6.1');
  }
  const { runId, outDir } = makeOutDir(args, spec);
  const inGuest = spec !== 'host';
  if (!inGuest) {
    progress.step('checking tools');
    await ensureTools(['build', ...(scenario.tools ?? [])], (s) => progress.info(s));
  }
  await ensureMounts();

  const results: Results = {
    schema: 1,
    runId,
    scenario: scenario.name,
    mode: args.mode,
    startedAt: new Date().toISOString(),
    status: 'error',
    options: args.options,
    environment: await collectEnvironment(spec),
    checks: [],
    metrics: {},
    sections: [],
  };

  const cleanups: { what: string; fn: () => unknown }[] = [];
  const abort = new AbortController();
  let probes: Promise<ProbeTable> | null = null;
  const ctx: ScenarioContext = {
    mode: args.mode,
    kernel: { release: results.environment.kernel.release, spec },
    outDir,
    options: args.options,
    progress,
    signal: abort.signal,
    probes: () => (probes ??= probeKernel({ kvm: false })),
    check(name, ok, detail) {
      results.checks.push({ name, status: ok ? 'pass' : 'fail', detail });
      progress.info(`${ok ? 'pass' : 'FAIL'}  ${name}${detail ? ` — ${detail}` : ''}`);
      return ok;
    },
    unsupported(name, feature, evidence) {
      results.checks.push({ name, status: 'unsupported', detail: `unsupported: ${feature} on ${results.environment.kernel.release}`, evidence });
      progress.info(`unsupported  ${name} — ${feature}`);
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
      cleanups.push({ what, fn });
    },
  };

  const runCleanups = async () => {
    while (cleanups.length) {
      const c = cleanups.pop()!;
      try {
        await c.fn();
      } catch (e) {
        progress.warn(`cleanup "${c.what}" failed: ${(e as Error).message}`);
      }
    }
  };
  // Ctrl-C: stop the scenario's loops, undo what it set up, still write what was measured
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    progress.warn(`${sig}: stopping and cleaning up`);
    abort.abort(new Error(`interrupted by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const { deferSignalsToCaller } = await import('../controller/libbpf/index.ts');
  deferSignalsToCaller(true);

  const t0 = Date.now();
  try {
    progress.step('building BPF objects');
    await buildBpf({ log: (s) => progress.info(s) });
    progress.step('probing kernel features');
    results.environment.probes = await ctx.probes();
    progress.step(`scenario ${scenario.name} (${args.mode}) on ${results.environment.kernel.release}`);
    await Promise.race([
      scenario.run(ctx),
      new Promise((_, rej) => abort.signal.addEventListener('abort', () => rej(abort.signal.reason), { once: true })),
    ]);
  } catch (e) {
    results.error = e instanceof Error ? (e.stack ?? e.message) : String(e);
    progress.warn(`scenario failed: ${e instanceof Error ? e.message : e}`);
  } finally {
    progress.step('cleaning up');
    await runCleanups();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    const { closeAll } = await import('../controller/libbpf/index.ts');
    closeAll();
    deferSignalsToCaller(false);
  }
  results.finishedAt = new Date().toISOString();
  results.durationMs = Date.now() - t0;
  results.status = overall(results.checks, results.error);
  progress.step('writing report');
  const html = await report(outDir, results);
  return { results, outDir, html };
}

/** Run on a VM kernel: the guest runs runOnHost; we add the VM facts and re-render. */
async function runOnVm(args: RunArgs, progress: Progress): Promise<{ results: Results; outDir: string; html: string }> {
  await loadScenario(args.scenario); // unknown scenario: fail before booting anything
  const { runId, outDir } = makeOutDir(args, args.kernel);
  progress.step('checking tools');
  await ensureTools(['build', 'vm'], (s) => progress.info(s));
  // the guest sees this tree read-only: compile everything before booting
  progress.step('building BPF objects');
  await buildBpf({ log: (s) => progress.info(s) });
  const { runInVm } = await import('./vm/index.ts');
  const argv = [args.mode, args.scenario, '--kernel', 'host', '--out', outDir, '--spec', args.kernel, ...args.rest];
  const vm = await runInVm({ kernel: args.kernel, argv, outDir, progress });
  const file = path.join(outDir, 'results.json');
  let results: Results;
  if (fs.existsSync(file)) {
    results = JSON.parse(fs.readFileSync(file, 'utf8')) as Results;
  } else {
    results = {
      schema: 1, runId, scenario: args.scenario, mode: args.mode, startedAt: new Date().toISOString(), status: 'error',
      error: `the guest wrote no results (exit code ${vm.exitCode}); see the boot log`, options: args.options,
      environment: { ...(await collectEnvironment(args.kernel)), kernel: { release: String(vm.vm.kernelRelease ?? '?'), spec: args.kernel } },
      checks: [], metrics: {}, sections: [],
    };
  }
  results.environment.target = 'vm';
  results.environment.kernel.spec = args.kernel;
  if (vm.vm.kernelVersion) results.environment.kernel.version = String(vm.vm.kernelVersion);
  results.environment.vm = vm.vm;
  if (vm.exitCode !== 0 && results.status === 'pass') {
    results.status = 'error';
    results.error = `guest command exited with ${vm.exitCode}`;
  }
  const html = await report(outDir, results);
  return { results, outDir, html };
}

export async function runScenario(args: RunArgs, progress: Progress = createProgress()) {
  return args.kernel === 'host' ? runOnHost(args, progress) : runOnVm(args, progress);
}

async function runOrBench(argv: string[], mode: 'run' | 'bench'): Promise<number> {
  const args = parseRunArgs(argv, mode);
  const progress = createProgress();
  const { results, html } = await runScenario(args, progress);
  const counts = (s: string) => results.checks.filter((c) => c.status === s).length;
  console.log(`${results.scenario} on ${results.environment.kernel.release} (${args.kernel}): ${results.status.toUpperCase()} — ${counts('pass')} passed, ${counts('fail')} failed, ${counts('unsupported')} unsupported`);
  if (results.error) console.log(`error: ${results.error.split('\n')[0]}`);
  console.log(`report: ${html}`);
  return results.status === 'pass' || results.status === 'unsupported' ? 0 : 1;
}

export const runCommand = (argv: string[]) => runOrBench(argv, 'run');
export const benchCommand = (argv: string[]) => runOrBench(argv, 'bench');

export async function listCommand(): Promise<number> {
  for (const n of listScenarios()) {
    const s = await loadScenario(n);
    console.log(`${n.padEnd(16)} ${s.description}`);
  }
  return 0;
}
