// A row of scenarios on one VM kernel: boot ONE guest, run the scenarios one after another in
// it, and give each its own results.json and report — `lab run --kernel 6.1` is a row of one,
// a matrix row is a row of every scenario. Booting once per kernel instead of once per cell is
// most of a TCG matrix's fixed cost.
//
// Isolation between the scenarios of a row: each runs in its own runner process in the guest
// (the guest's `timeout` stops it with SIGTERM, so the runner still writes its ERROR report);
// if the guest itself stops answering, the host kills it and boots a fresh one for the rest.
// Ctrl-C asks the running scenario to stop (it writes its ERROR report with the checks so far),
// kills the guest if it has not within a grace period or on a second Ctrl-C, and writes an ERROR
// report for every scenario that had not started.
import fs from 'node:fs';
import path from 'node:path';
import { buildBpf } from '../../bpf/build.ts';
import { ensureBundle } from '../bundle.ts';
import { collectEnvironment, gitState, REPO_ROOT } from '../env.ts';
import { LabError } from '../../common/errors.ts';
import { onStopSignals } from '../../common/signals.ts';
import type { Progress } from '../../common/progress.ts';
import type { Results } from '../results.ts';
import { ensureTools } from '../setup.ts';
import { bootGuest, BOOT_LOG, guestEnv, guestKillAfterS, guestScript, onAbortKill, stopGraceMs, tcgRunRetry, vmFacts, type BootedGuest } from './guest.ts';
import { configFacts, resolveKernel } from './kernels.ts';
import { chooseAccel } from './kvm.ts';
import { shq } from './qemu.ts';
import { sampleVcpus, unansweredReport, type HangReport } from './hang.ts';
import { kernelSymbols } from './symbols.ts';
import type { VmKernelSpec } from './spec.ts';
import { sweepStaleTempBeforeRun } from '../../common/stale.ts';

export interface RowCell {
  scenario: string;
  /** --out DIR, or undefined for reports/<run-id> */
  outDir?: string;
  /** the scenario's options (defaults filled in), for a report the guest never wrote */
  options: Record<string, unknown>;
  /** the scenario's options as given, passed to the guest's runner as is */
  rest: string[];
  /** the scenario asks for the virtio-net wire (Scenario.vm.wire): the row's guest gets it */
  wire?: boolean;
}

export interface RowArgs {
  mode: 'run' | 'bench';
  /** lab: the lab's own QEMU runner (one guest per row); vng: virtme-ng, one guest per scenario */
  backend?: 'lab' | 'vng';
  kernel: VmKernelSpec;
  cells: RowCell[];
  /** per scenario, in the guest (default 30 min) */
  timeoutMs?: number;
}

export interface RowRun { results: Results; outDir: string; html: string }

/** Callbacks into the runner (lab/run.ts) so this module does not import it back. */
export interface RowHooks {
  makeOutDir(cell: RowCell, kernelLabel: string): { runId: string; outDir: string };
  writeReport(outDir: string, results: Results): Promise<string>;
  /** a cell's directory is in use by this process until its report is written (a killed host's run is reported by the next run) */
  markRunning?(outDir: string, results: Results): void;
  /** where the guest's own output goes (default: stderr) */
  out?: (b: Buffer) => void;
  /** host-side work of a cell's scenario before the guest boots (Scenario.vm.prepare) */
  prepare?(cell: RowCell, log: (s: string) => void): Promise<unknown>;
}

/** The deepest directory containing every cell's out dir: the one host dir shared with the guest. */
export function commonDir(dirs: string[]): string {
  const parts = dirs.map((d) => path.resolve(d).split(path.sep));
  const first = parts[0]!;
  let n = 0;
  while (n < first.length && parts.every((p) => p[n] === first[n])) n++;
  return first.slice(0, n).join(path.sep) || path.sep;
}

/** how long a stuck guest's init gets to answer diagnose() (a few hundred ms when it runs at all) */
const diagnoseMs = (accel: 'kvm' | 'tcg') => (accel === 'kvm' ? 5_000 : 20_000);
/** a stuck guest's account, beside the report */
export const HANG_LOG = 'vm-hang.txt';
/** the stuck guest's account as the report embeds it: the head, where the summary and the tasks
 *  are, up to 64 KiB (the whole of it stays in HANG_LOG) */
export function hangForReport(text: string, max = 64 * 1024): string {
  return text.length <= max ? text : `${text.slice(0, max)}\n… (${text.length - max} more characters in ${HANG_LOG})`;
}

/** a file's text, or '' */
function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export async function runVmRow(args: RowArgs, progress: Progress, hooks: RowHooks): Promise<RowRun[]> {
  const t0 = Date.now();
  const abort = new AbortController();
  // a guest's run is first asked to stop (see below); this one kills it: a second stop signal, or
  // a run that does not stop within its grace period
  const kill = new AbortController();
  let interrupted: string | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) {
      if (!kill.signal.aborted) progress.warn(`${sig} again: killing the guest now`);
      kill.abort(new Error(`interrupted by ${interrupted}`));
      return;
    }
    interrupted = sig;
    progress.warn(`${sig}: stopping the guest and cleaning up`);
    abort.abort(new Error(`interrupted by ${sig}`));
  };
  const offSignals = onStopSignals(onSignal);
  // building the objects opens BTF through the binding, whose own handler would exit at once on
  // SIGINT: this runner owns the signals, so the guest is stopped and the reports still written
  const { deferSignalsToCaller } = await import('../../controller/libbpf/index.ts');
  deferSignalsToCaller(true);
  const out = hooks.out ?? ((d: Buffer) => process.stderr.write(d));
  // A stop asks the guest's run to stop like a run on the host (its cleanups, its results so far:
  // the checks it made stay in the report) before the guest is killed, which takes at most the
  // grace period, or a second Ctrl-C. Killed at once, a run's report held none.
  // A run that does not stop in time is asked what it is doing (lab/vm/hang.ts) before the kill,
  // and the answer stays in its report: a stuck guest used to take its only evidence with it.
  const askThenKill = (accel: 'kvm' | 'tcg', ask: () => void, diagnose?: () => Promise<HangReport | undefined>): (() => void) => {
    const graceMs = stopGraceMs(accel);
    let grace: NodeJS.Timeout | undefined;
    const onStop = () => {
      progress.info(`asking the guest's run to stop (killed after ${graceMs / 1000} s, or at once on a second Ctrl-C)`);
      ask();
      grace = setTimeout(async () => {
        if (diagnose && !kill.signal.aborted) {
          progress.warn(`the guest's run did not stop within ${graceMs / 1000} s: asking the guest what it is doing, then killing it`);
          await diagnose().catch(() => undefined); // kept in the guest's vm.lastHang
        }
        kill.abort(new Error(`interrupted by ${interrupted}`));
      }, graceMs);
    };
    if (abort.signal.aborted) onStop();
    else abort.signal.addEventListener('abort', onStop, { once: true });
    return () => {
      abort.signal.removeEventListener('abort', onStop);
      clearTimeout(grace);
    };
  };
  const spec = args.kernel.text;
  let b: BootedGuest | undefined;
  /** the console log b writes to (its crash, if it crashed) */
  let bConsole = '';
  try {
    progress.step('checking tools');
    await ensureTools(['build', 'vm'], (s) => progress.info(s));
    // a SIGKILLed VM run's temp dir (QEMU dies with it; its sockets and overlay stayed)
    await sweepStaleTempBeforeRun((s) => progress.info(s));
    // the kernel first: a mistyped or missing kernel fails before a report directory exists
    const kernel = await resolveKernel(args.kernel, progress, abort.signal);
    const dirs = args.cells.map((c) => hooks.makeOutDir(c, spec));
    if (hooks.markRunning) {
      const startedAt = new Date(t0).toISOString();
      for (const [i, c] of args.cells.entries()) hooks.markRunning(dirs[i]!.outDir, await noResults({ args, cell: c, runId: dirs[i]!.runId, startedAt, kernel, error: 'the run had not finished' }));
    }
    const share = commonDir(dirs.map((d) => d.outDir));
    const runs: RowRun[] = [];
    let cli: string | undefined;
    let setupFailure: string | undefined;
    try {
      // the guest sees this tree read-only: compile the BPF objects and bundle the TypeScript first
      progress.step('building BPF objects and the guest bundle');
      await buildBpf({ log: (s) => progress.info(s) });
      cli = await ensureBundle((s) => progress.info(s));
      for (const c of args.cells) await hooks.prepare?.(c, (s) => progress.info(s));
    } catch (e) {
      // a terminal's Ctrl-C reaches esbuild's service too (same process group): its "The service
      // was stopped" can come before this process has run its own handler, and read as a failed
      // bundle instead of a stop
      if (!interrupted) await new Promise((r) => setTimeout(r, 250));
      setupFailure = describe(e, interrupted);
    }
    const timeoutMs = args.timeoutMs ?? 30 * 60_000;
    const wire = args.cells.some((c) => c.wire);
    let boots = 0;
    // under vng: the lab's own boot of the same kernel, once, so both boot-to-ready figures come from one run
    let labBootOnce: Promise<Record<string, unknown> | undefined> | undefined;
    const labBoot = () => (labBootOnce ??= (async () => {
      progress.step('booting the lab\'s own guest once, for its boot-to-ready beside vng\'s');
      try {
        const g = await bootGuest({ kernel, progress, consoleLog: path.join(dirs[0]!.outDir, 'vm-console-lab.log'), signal: abort.signal, bootTimeoutMs: 90_000, wire });
        await g.vm.close();
        return { bootMs: g.vm.bootMs, boot: g.phases, accel: g.accel };
      } catch (e) {
        progress.warn(`the lab's own boot failed: ${(e as Error).message.split('\n')[0]}`);
        return undefined;
      }
    })());
    let cellStart = t0;
    for (const [i, cell] of args.cells.entries()) {
      const { runId, outDir } = dirs[i]!;
      const startedAt = new Date(cellStart).toISOString();
      let failure = setupFailure ?? (interrupted ? `interrupted by ${interrupted}` : undefined);
      let exitCode: number | undefined;
      let runMs: number | undefined;
      let bootedHere = false;
      const consoleLog = path.join(dirs[0]!.outDir, BOOT_LOG);
      let vngFacts: Record<string, unknown> | undefined;
      /** under vng: QEMU's view of a guest that did not stop or outlived its time (runVngCell) */
      let vngHang: { report: HangReport; accel: 'kvm' | 'tcg' } | undefined;
      /** why the cell ran twice (a guest the emulator crashed mid-run), when it did */
      let runRetried: string | undefined;
      if (!failure && args.backend === 'vng') {
        try {
          const lab = await labBoot();
          // a stop during the lab's own boot ends the row here, before vng boots
          if (interrupted) throw new LabError(`interrupted by ${interrupted}`);
          const v = await runVngCell({ args, cell, kernel, outDir, share, cli: cli!, timeoutMs, progress, out, signal: kill.signal, askThenKill, spec, labBoot: lab, onHang: (report, accel) => (vngHang = { report, accel }) });
          exitCode = v.exitCode;
          runMs = v.runMs;
          vngFacts = v.facts;
          bootedHere = true;
          if (interrupted) failure = `interrupted by ${interrupted}`;
          else if (exitCode === 124 || exitCode === 137) failure = `scenario timed out after ${Math.round(timeoutMs / 1000)} s in the guest`;
        } catch (e) {
          failure = describe(e, interrupted);
          progress.warn(`vng run failed: ${failure.split('\n')[0]}`);
        }
      } else if (!failure) {
        // one more try where the emulator, not the run, crashed the guest (see tcgRunRetry)
        for (let attempt = 0; ; attempt++) {
          try {
            if (!b || !b.vm.alive) {
              // a fresh guest: the first cell's, or after the previous one had to be killed
              if (b) await b.vm.close({ force: true });
              b = undefined;
              bConsole = boots ? path.join(outDir, BOOT_LOG) : consoleLog;
              b = await bootGuest({ kernel, progress, outDir: share, consoleLog: bConsole, signal: abort.signal, bootTimeoutMs: Math.min(timeoutMs, 90_000), wire });
              boots++;
              bootedHere = true;
            }
            const g = b;
            const killAfterS = guestKillAfterS(g.accel);
            const disarm = askThenKill(g.accel, () => g.vm.requestStop(), () => g.vm.diagnose(diagnoseMs(g.accel)));
            const unhook = onAbortKill(kill.signal, b.vm);
            try {
              // the prebuilt bundle (lab/bundle.ts): tsx would transpile for 30-77 s under TCG.
              // `timeout` sends SIGTERM, which the runner turns into an ERROR report of its own.
              const argv = [args.mode, cell.scenario, '--kernel', 'host', '--out', outDir, '--spec', spec, ...cell.rest];
              const secs = Math.max(1, Math.round(timeoutMs / 1000));
              const cmd = ['timeout', '-k', String(killAfterS), String(secs), process.execPath, cli!, ...argv].map(shq).join(' ');
              progress.step(`running in the guest${args.cells.length > 1 ? ` (${i + 1}/${args.cells.length})` : ''}: lab ${argv.join(' ')}`);
              const tRun = Date.now();
              exitCode = await b.vm.exec(guestScript(b, `exec ${cmd}`, { outDir: share, cwd: REPO_ROOT, runner: true }), {
                onStdout: out, onStderr: out,
                // the guest's own timeout fires first; this one catches a guest that stopped answering
                timeoutMs: timeoutMs + killAfterS * 1000 + 40_000,
                diagnoseMs: diagnoseMs(g.accel),
                signal: kill.signal,
              });
              runMs = Date.now() - tRun;
              if (interrupted) failure = `interrupted by ${interrupted}`;
              else if (exitCode === 124 || exitCode === 137) failure = `scenario timed out after ${secs} s in the guest`;
            } finally {
              unhook();
              disarm();
            }
          } catch (e) {
            failure = describe(e, interrupted);
            progress.warn(`VM run failed: ${failure.split('\n')[0]}`);
            // the guest may be stuck in the command: the next scenario gets a fresh one
            if (b) await b.vm.close({ force: true });
            const again = attempt === 0 && !interrupted && b ? tcgRunRetry(b.accel, failure, readText(bConsole)) : undefined;
            if (again) {
              progress.warn(again);
              runRetried = again;
              failure = undefined;
              b = undefined;
              continue;
            }
          }
          break;
        }
      }
      // a stuck guest's own account (the stop's grace expired, or the command's time ran out): its
      // summary in the error, the whole of it beside the report
      const diagnosed = vngHang?.report ?? b?.vm.lastHang;
      const diagAccel = vngHang?.accel ?? b?.accel;
      if (b) b.vm.lastHang = undefined;
      // diagnosed after a stop: its grace expired (one that stopped in time was never asked)
      const hang = diagnosed && interrupted && diagAccel ? { ...diagnosed, summary: `the guest's run did not stop within ${stopGraceMs(diagAccel) / 1000} s of the request; ${diagnosed.summary}` } : diagnosed;
      if (hang) {
        fs.writeFileSync(path.join(outDir, HANG_LOG), `${hang.summary}\n\n${hang.text}`);
        if (failure && !failure.includes(hang.summary)) failure = `${failure}; ${hang.summary} (${HANG_LOG})`;
        progress.warn(hang.summary);
      }
      // bootRetries counts crashed boots inside bootGuest; reboots after a stuck scenario count here
      const hangFacts = hang ? { hangLog: HANG_LOG, hang: hangForReport(`${hang.summary}\n\n${hang.text}`) } : {};
      // a vng run that was killed returned no facts: its hang report goes in all the same
      const facts = vngFacts || vngHang ? { ...(vngFacts ?? { backend: 'vng' }), ...hangFacts } : b ? { ...vmFacts(b), backend: 'lab', ...(boots > 1 ? { bootsInRow: boots } : {}), ...(runRetried ? { runRetried } : {}), ...hangFacts } : undefined;
      runs.push(await finishCell({ args, cell, i, runId, outDir, startedAt, cellStart, failure, exitCode, runMs, facts, bootedHere, kernel, progress, hooks }));
      // the console so far, so every cell's report links a boot log of its own
      const own = path.join(outDir, BOOT_LOG);
      if (fs.existsSync(consoleLog) && own !== consoleLog && !fs.existsSync(own)) fs.copyFileSync(consoleLog, own);
      cellStart = Date.now();
    }
    if (b) await b.vm.close();
    return runs;
  } finally {
    if (b) await b.vm.close({ force: true });
    offSignals();
    deferSignalsToCaller(false);
  }
}

/** One scenario through virtme-ng: same runner command, same env, the out dir given read-write. */
async function runVngCell(o: {
  args: RowArgs; cell: RowCell; kernel: Awaited<ReturnType<typeof resolveKernel>>; outDir: string; share: string; cli: string; timeoutMs: number;
  progress: Progress; out: (b: Buffer) => void; spec: string; labBoot?: Record<string, unknown>;
  /** kills the guest; a first stop goes through askThenKill */
  signal: AbortSignal;
  askThenKill: (accel: 'kvm' | 'tcg', ask: () => void, diagnose?: () => Promise<HangReport | undefined>) => () => void;
  /** QEMU's account of a guest that did not stop in time or outlived its time, before the kill */
  onHang?: (report: HangReport, accel: 'kvm' | 'tcg') => void;
}): Promise<{ exitCode: number; runMs: number; facts: Record<string, unknown> }> {
  const { runInVng, vngStatus } = await import('./vng.ts');
  const st = await vngStatus();
  if (!st.ok) throw new LabError(`--vm-backend vng cannot run here: ${st.why}`, 'pnpm lab setup vng; pnpm lab doctor says what is missing');
  const { accel, note } = await chooseAccel();
  const argv = [o.args.mode, o.cell.scenario, '--kernel', 'host', '--out', o.outDir, '--spec', o.spec, ...o.cell.rest];
  const secs = Math.max(1, Math.round(o.timeoutMs / 1000));
  // how the host asks the run to stop (common/signals.ts stopOnFile): a file in the rw share
  const stopFile = path.join(o.share, `.ebpf-lab-stop-${process.pid}-${Date.now()}`);
  const cmd = ['timeout', '-k', String(guestKillAfterS(accel)), String(secs), process.execPath, o.cli, ...argv].map(shq).join(' ');
  const body = [...guestEnv(accel), `export EBPF_LAB_STOP_FILE=${shq(stopFile)}`, `cd ${shq(REPO_ROOT)} || exit 125`, `exec ${cmd}`].join('\n');
  o.progress.step(`booting ${o.kernel.release} with virtme-ng (${accel}) and running: lab ${argv.join(' ')}`);
  const cpus = Number(process.env.EBPF_LAB_VM_CPUS) || 2;
  const memMB = Number(process.env.EBPF_LAB_VM_MEM_MB) || 1024;
  // vng's guest runs its own init, with no control port of ours to ask what its tasks are doing:
  // QEMU's monitor says where its vCPUs are (halted, in user space, in the kernel)
  let hmp: ((command: string) => Promise<string>) | undefined;
  let exited = false;
  let ktext: bigint | undefined;
  const diagnose = async (): Promise<HangReport | undefined> => {
    if (!hmp || exited) return undefined;
    const { rounds, err } = await sampleVcpus(hmp, () => !exited);
    const symbols = await kernelSymbols(o.kernel);
    const report = unansweredReport({ answerMs: 0, rounds, err, ktext, symbols, why: "virtme-ng's guest cannot be asked what its tasks are doing (it has no control port of ours): QEMU's view of its vCPUs" });
    o.onHang?.(report, accel);
    return report;
  };
  const disarm = o.askThenKill(accel, () => fs.writeFileSync(stopFile, ''), diagnose);
  const r = await runInVng({ kernel: o.kernel, script: body, rwdir: o.share, monitor: (h) => (hmp = h), onKtext: (t) => (ktext = t), beforeKill: diagnose,
    // vng overlays only /etc, /usr, /var, /tmp …: the checkout read-only would fail every scenario
    // that writes beside its sources (hello-openat links its load generator into bpf/.output),
    // which the lab's own guest allows through its all-root overlay
    overlays: [REPO_ROOT], accel, cpus, memMB, timeoutMs: o.timeoutMs + 120_000, signal: o.signal, out: o.out,
  }).finally(() => {
    exited = true;
    disarm();
    fs.rmSync(stopFile, { force: true });
  });
  o.progress.info(`vng guest ready after ${(r.bootMs / 1000).toFixed(1)} s${o.labBoot ? ` (the lab's own: ${((o.labBoot.bootMs as number) / 1000).toFixed(1)} s)` : ''}`);
  const k = o.kernel;
  // the same phases as the lab's own guest where they exist: vng's init (its initramfs, the
  // root mount, virtme-ng-init, udev) is one phase, its root mount is not timed separately
  const phases: Record<string, number> = r.guestInitMs
    ? { qemuMs: Math.max(0, r.bootMs - r.guestReadyMs), kernelMs: r.guestInitMs, initMs: r.guestReadyMs - r.guestInitMs, readyMs: r.bootMs }
    : { qemuMs: Math.max(0, r.bootMs - r.guestReadyMs), kernelMs: r.guestReadyMs, readyMs: r.bootMs };
  return {
    exitCode: r.exitCode, runMs: r.runMs,
    facts: {
      backend: 'vng', vng: st.version, vngCommand: r.argv.join(' '),
      kernelSpec: k.spec, kernelVersion: k.version, kernelRelease: k.release,
      kernelSource: k.source === 'debian' ? `Debian ${k.suite} ${k.packages?.map((p) => p.name).join(' + ')}` : k.bzImage,
      accel, accelNote: note, bootMs: r.bootMs, guestBootMs: r.guestReadyMs,
      boot: phases,
      ...(o.labBoot ? { bootVsLab: bootVsLab(r.bootMs, o.labBoot, phases), labBackendBoot: o.labBoot } : {}),
      rootfs: '9p (vng --force-9p)', cpus, memMB, config: configFacts(k),
    },
  };
}

/** "vng 14.1 s (QEMU 4.4 + kernel 2.6 + init 7.1) · the lab's own 3.0 s (…)": the report's one line comparing the two boots */
export function bootVsLab(vngMs: number, lab: Record<string, unknown>, vngPhases?: Record<string, number>): string {
  const s = (ms: unknown) => (typeof ms === 'number' ? (ms / 1000).toFixed(1) : '?');
  const parts = (b: unknown) => {
    if (!b || typeof b !== 'object') return '';
    const p = b as Record<string, number>;
    const names: [string, string][] = [['qemuMs', 'QEMU'], ['kernelMs', 'kernel'], ['initMs', 'init'], ['mountMs', 'mount']];
    const got = names.filter(([k]) => typeof p[k] === 'number').map(([k, n]) => `${n} ${(p[k]! / 1000).toFixed(2)}`);
    return got.length ? ` (${got.join(' + ')})` : '';
  };
  return `vng ${s(vngMs)} s${parts(vngPhases)} · the lab's own ${s(lab.bootMs)} s${parts(lab.boot)}, booted in the same run`;
}

let hostToolsOnce: ReturnType<typeof collectEnvironment> | undefined;
const hostTools = () => (hostToolsOnce ??= collectEnvironment('host'));

function describe(e: unknown, interrupted: string | undefined): string {
  if (interrupted) return `interrupted by ${interrupted}`;
  return e instanceof LabError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
}

/** a cell's results when the guest gave none: the host's facts (read once per process), the guest kernel's release */
async function noResults(o: { args: RowArgs; cell: RowCell; runId: string; startedAt: string; kernel: Awaited<ReturnType<typeof resolveKernel>>; error: string }): Promise<Results> {
  return {
    schema: 1, runId: o.runId, scenario: o.cell.scenario, mode: o.args.mode, startedAt: o.startedAt, status: 'error',
    error: o.error, options: o.cell.options as Results['options'],
    environment: { ...(await hostTools()), target: 'vm', kernel: { release: o.kernel.release, spec: o.args.kernel.text } },
    checks: [], metrics: {}, sections: [],
  };
}

async function finishCell(o: {
  args: RowArgs; cell: RowCell; i: number; runId: string; outDir: string; startedAt: string; cellStart: number;
  failure?: string; exitCode?: number; runMs?: number; facts?: Record<string, unknown>; bootedHere: boolean;
  kernel: Awaited<ReturnType<typeof resolveKernel>>; progress: Progress; hooks: RowHooks;
}): Promise<RowRun> {
  const { args, cell, outDir, kernel } = o;
  const file = path.join(outDir, 'results.json');
  let results: Results | undefined;
  if (fs.existsSync(file)) {
    try {
      results = JSON.parse(fs.readFileSync(file, 'utf8')) as Results;
    } catch { /* a guest killed mid-write: treated as no results */ }
  }
  results ??= await noResults({ args, cell, runId: o.runId, startedAt: o.startedAt, kernel, error: o.failure ?? `the guest wrote no results (exit code ${o.exitCode}); see the boot log` });
  const guestFinished = !!results.finishedAt; // the guest's runner wrote its results whole
  // one definition of a run's time everywhere: wall time on the host (for the first scenario of
  // a row it includes the boot), the guest's own time beside it
  const inGuestMs = o.exitCode !== undefined ? results.durationMs : undefined;
  const guest = (results.environment.vm ?? {}) as Record<string, unknown>;
  results.startedAt = o.startedAt;
  results.finishedAt = new Date().toISOString();
  results.durationMs = Date.now() - o.cellStart;
  results.environment.target = 'vm';
  results.environment.git = await gitState();
  // the tool versions the guest skipped (lab/env.ts): the same files, read on the host
  const host = await hostTools();
  results.environment.clang ??= host.clang;
  results.environment.bpftool ??= host.bpftool;
  if (!results.environment.libbpf.includes('(')) results.environment.libbpf = host.libbpf;
  results.environment.kernel.spec = args.kernel.text;
  if (kernel.version) results.environment.kernel.version = kernel.version;
  if (o.facts) {
    results.environment.vm = {
      ...o.facts, ...guest, inGuestMs, runMs: o.runMs,
      row: { index: o.i, of: args.cells.length, scenarios: args.cells.map((c) => c.scenario), sharedBoot: !o.bootedHere },
    };
  }
  // a stopped guest run's own error names the SIGTERM it was stopped with: the user's stop wins
  // a stop that came once the guest's scenario had finished (its results written whole) stopped
  // nothing: the run was marked stopped early with every check and figure there (review, session 57)
  const lateStop = !!o.failure?.startsWith('interrupted by ') && results.status !== 'error' && guestFinished && o.exitCode !== 124 && o.exitCode !== 137;
  if (o.failure && !lateStop && (results.status !== 'error' || o.exitCode === 124 || o.exitCode === 137 || o.failure.startsWith('interrupted by '))) {
    // …and what the guest's runner said of its stop beyond that (where a stop that did not finish was held)
    const more = /^interrupted by SIG\w+; (.*)$/s.exec(results.error ?? '')?.[1];
    results.status = 'error';
    results.error = more && !o.failure.includes(more) ? `${o.failure}; ${more}` : o.failure;
    // the user's stop, not the guest's SIGTERM that carried it (a failed guest is no stop)
    // --timeout stops a VM run as it stops a host run ("Stopped (--timeout N s)"); the default
    // limit, which no one asked for, is a run that hung: a failure
    const timedOut = args.timeoutMs !== undefined && (o.exitCode === 124 || o.exitCode === 137) && /^scenario timed out after /.test(o.failure);
    const by = /^interrupted by (SIG\w+)/.exec(o.failure)?.[1] ?? (timedOut ? `--timeout ${Math.round(args.timeoutMs! / 1000)} s` : undefined);
    if (by) results.stoppedBy = by;
    else delete results.stoppedBy;
  } else if (o.exitCode !== undefined && o.exitCode !== 0 && results.status === 'pass') {
    results.status = 'error';
    results.error = `guest command exited with ${o.exitCode}`;
  }
  o.progress.step(`writing report${args.cells.length > 1 ? ` for ${cell.scenario}` : ''}`);
  const html = await o.hooks.writeReport(outDir, results);
  return { results, outDir, html };
}
