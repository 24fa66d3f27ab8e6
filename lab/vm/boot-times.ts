// `pnpm lab vm boot-times`: boot each kernel N times, interleaved round by round (so a machine that
// slows down during the run is shared by every kernel), and store the run like any other:
// reports/boot-times-<stamp>/results.json (every boot's phases, the machine's state during the
// run) and a self-contained report.html that leads with the verdict on issue 14's ≤3 s goal.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cpuFacts, runContext, snapshot, type RunContext } from '../context.ts';
import { goalByRounds, spreadOf } from '../rounds.ts';
import { REPORTS_DIR } from '../../common/paths.ts';
import { escapeHtml, htmlPage, kvTable } from '../report/html.ts';
import type { BootPhases } from './guest.ts';

/** boot-to-ready goal under TCG on a quiet machine (issue 14 §3) */
export const BOOT_GOAL_MS = 3000;

export interface BootSample {
  round: number;
  kernel: string;
  release: string;
  accel: string;
  phases: BootPhases;
  /** boot plus the `true` command and shutdown, as the host saw it */
  totalMs: number;
}

export interface BootKernelSummary {
  kernel: string;
  release: string;
  accel: string;
  boots: number;
  readyMs: { median: number; min: number; max: number };
  phasesMedianMs: { qemu: number; kernel: number; init: number; mount: number };
  goal: { target: number; verdict: 'met' | 'not met' | 'inconclusive'; detail: string };
}

export interface BootTimesResults {
  kind: 'boot-times';
  runId: string;
  startedAt: string;
  durationMs: number;
  rounds: number;
  samples: BootSample[];
  summary: BootKernelSummary[];
  context?: RunContext;
  /** why the run ended before its last boot (the boots so far are kept) */
  stopped?: string;
}

/**
 * Why a parsed results.json is not a boot-times run's (null when it is): each part the report
 * reads, so a hand-edited or cut file is one line naming what is wrong, not an internal error
 * (session 56 noted, session 57 fixed).
 */
export function bootTimesProblem(r: unknown): string | null {
  const obj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  const nums = (x: unknown, keys: string[]) => obj(x) && keys.every((k) => typeof x[k] === 'number');
  const strs = (x: Record<string, unknown>, keys: string[]) => keys.every((k) => typeof x[k] === 'string');
  if (!obj(r)) return 'not an object';
  if (!strs(r, ['runId', 'startedAt']) || typeof r.durationMs !== 'number' || typeof r.rounds !== 'number') return 'needs runId, startedAt (strings), durationMs and rounds (numbers)';
  if (!Array.isArray(r.samples) || !Array.isArray(r.summary)) return 'needs samples and summary (arrays)';
  for (const [i, x] of r.samples.entries()) {
    if (!obj(x) || typeof x.round !== 'number' || typeof x.kernel !== 'string' || typeof x.totalMs !== 'number' || !nums(x.phases, ['qemuMs', 'kernelMs', 'initMs', 'mountMs', 'readyMs'])) return `samples[${i}] is not a boot (round, kernel, phases, totalMs)`;
  }
  for (const [i, x] of r.summary.entries()) {
    if (!obj(x) || !strs(x, ['kernel', 'release', 'accel']) || typeof x.boots !== 'number' || !nums(x.readyMs, ['median', 'min', 'max']) || !nums(x.phasesMedianMs, ['qemu', 'kernel', 'init', 'mount']) || !obj(x.goal) || !strs(x.goal, ['verdict', 'detail'])) return `summary[${i}] is not a kernel summary (kernel, release, accel, boots, readyMs, phasesMedianMs, goal)`;
  }
  const c = r.context;
  if (c !== undefined && !(obj(c) && Array.isArray(c.busy) && obj(c.loadavg) && Array.isArray(c.loadavg.before) && Array.isArray(c.loadavg.after) && nums(c, ['cores', 'busyShare', 'stealShare', 'othersCores']))) return '"context" is not a run context';
  return null;
}

/** per kernel: median and range of boot-to-ready, median phases, the ≤3 s goal judged boot by boot */
export function summarizeBoots(samples: BootSample[], goalMs = BOOT_GOAL_MS): BootKernelSummary[] {
  const kernels = [...new Set(samples.map((s) => s.kernel))];
  return kernels.map((k) => {
    const xs = samples.filter((s) => s.kernel === k);
    const ready = xs.map((s) => s.phases.readyMs);
    const med = (f: (p: BootPhases) => number) => Math.round(spreadOf(xs.map((s) => f(s.phases))).median);
    const g = goalByRounds(ready, '<=', goalMs);
    return {
      kernel: k, release: xs[0]!.release, accel: [...new Set(xs.map((s) => s.accel))].join('+'), boots: xs.length,
      readyMs: { median: Math.round(spreadOf(ready).median), min: Math.min(...ready), max: Math.max(...ready) },
      phasesMedianMs: { qemu: med((p) => p.qemuMs), kernel: med((p) => p.kernelMs), init: med((p) => p.initMs), mount: med((p) => p.mountMs) },
      goal: { target: goalMs, verdict: g.verdict, detail: `${g.met}/${g.n} boots ≤ ${(goalMs / 1000).toFixed(1)} s` },
    };
  });
}

const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

export function bootTimesHtml(r: BootTimesResults): string {
  const all = r.summary.every((s) => s.goal.verdict === 'met') ? 'met' : r.summary.some((s) => s.goal.verdict === 'not met') ? 'not met' : 'inconclusive';
  const badge = `<span class="badge ${all === 'met' ? 'pass' : all === 'not met' ? 'fail' : 'unsupported'}">${all}</span>`;
  const stoppedBox = r.stopped ? `<p class="warn-box"><b>Did not finish:</b> ${escapeHtml(r.stopped)}. The figures below are of the boots made before that.</p>` : '';
  const busy = r.context?.busy.length ? `<p class="warn-box">The machine was busy during this run: ${escapeHtml(r.context.busy.join('; '))}. Boot times under TCG scale with it.</p>` : '';
  const head = `<h1>VM boot-to-ready ${badge}</h1><p>Goal (issue 14 §3): boot-to-ready ≤ ${(BOOT_GOAL_MS / 1000).toFixed(1)} s for every kernel, judged boot by boot: <b>${all}</b>. ${r.rounds} interleaved round${r.rounds === 1 ? '' : 's'} (each round boots every kernel once, in the same order); boot-to-ready = QEMU start + kernel + init + root mount, from the host's QEMU start to the guest's READY on the control channel.</p>${stoppedBox}${busy}`;
  const sumRows = r.summary.map((s) => `<tr><td>${escapeHtml(s.kernel)}</td><td>${escapeHtml(s.release)}</td><td>${escapeHtml(s.accel)}</td><td>${s.boots}</td><td><b>${sec(s.readyMs.median)}</b></td><td>${sec(s.readyMs.min)}–${sec(s.readyMs.max)}</td><td>${sec(s.phasesMedianMs.qemu)}</td><td>${sec(s.phasesMedianMs.kernel)}</td><td>${sec(s.phasesMedianMs.init)}</td><td>${sec(s.phasesMedianMs.mount)}</td><td>${escapeHtml(`${s.goal.verdict} (${s.goal.detail})`)}</td></tr>`).join('');
  const table = `<h2>Per kernel (medians)</h2><div class="tablewrap"><table><thead><tr><th>kernel</th><th>release</th><th>accel</th><th>boots</th><th>boot-to-ready</th><th>range</th><th>QEMU start</th><th>kernel</th><th>init</th><th>root mount</th><th>≤ 3 s</th></tr></thead><tbody>${sumRows}</tbody></table></div>`;
  const rawRows = r.samples.map((s) => `<tr><td>${s.round + 1}</td><td>${escapeHtml(s.kernel)}</td><td>${sec(s.phases.readyMs)}</td><td>${sec(s.phases.qemuMs)}</td><td>${sec(s.phases.kernelMs)}</td><td>${sec(s.phases.initMs)}</td><td>${sec(s.phases.mountMs)}</td><td>${sec(s.totalMs)}</td></tr>`).join('');
  const raw = `<h2>Every boot</h2><div class="tablewrap"><table><thead><tr><th>round</th><th>kernel</th><th>boot-to-ready</th><th>QEMU start</th><th>kernel</th><th>init</th><th>root mount</th><th>boot + command + shutdown</th></tr></thead><tbody>${rawRows}</tbody></table></div>`;
  const c = r.context;
  const env = c ? `<h2>Machine during the run</h2>${kvTable({ cores: c.cores, 'CPU model': c.cpuModel ?? '', 'load average before': c.loadavg.before.join(' '), 'load average after': c.loadavg.after.join(' '), 'busy share': `${(c.busyShare * 100).toFixed(1)}%`, 'steal share': `${(c.stealShare * 100).toFixed(1)}%`, 'others (cores)': c.othersCores.toFixed(2) })}` : '';
  return htmlPage(`boot-times ${r.runId}`, `${head}${table}${raw}${env}<p class="muted">run ${escapeHtml(r.runId)}, started ${escapeHtml(r.startedAt)}, ${sec(r.durationMs)}; raw numbers in results.json</p>`);
}

/**
 * Boot every kernel `rounds` times, interleaved; `boot(kernel)` boots one and runs `true`.
 * Writes results.json and report.html into outDir (default reports/boot-times-<stamp>).
 */
export async function bootTimes(kernels: string[], rounds: number, boot: (kernel: string) => Promise<Omit<BootSample, 'round' | 'kernel'>>, opts: { outDir?: string; onSample?: (s: BootSample) => void; onPartial?: (outDir: string) => void } = {}): Promise<{ results: BootTimesResults; outDir: string }> {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const outDir = opts.outDir ?? path.join(REPORTS_DIR, `boot-times-${stamp}`);
  const runId = path.basename(outDir);
  const t0 = Date.now();
  const a = snapshot();
  const samples: BootSample[] = [];
  const write = (stopped?: string): BootTimesResults => {
    const context = runContext(a, snapshot(), process.pid, 100, cpuFacts(os.cpus().length));
    const results: BootTimesResults = { kind: 'boot-times', runId, startedAt: new Date(t0).toISOString(), durationMs: Date.now() - t0, rounds, samples, summary: summarizeBoots(samples), context, ...(stopped ? { stopped } : {}) };
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(path.join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    fs.writeFileSync(path.join(outDir, 'report.html'), bootTimesHtml(results));
    return results;
  };
  try {
    for (let round = 0; round < rounds; round++) {
      for (const kernel of kernels) {
        const s = { round, kernel, ...(await boot(kernel)) };
        samples.push(s);
        opts.onSample?.(s);
      }
    }
  } catch (e) {
    // the boots measured before a stop or a failure are kept (a Ctrl-C after the first of three
    // rounds left nothing: review, session 57), and the report says the run did not finish
    if (samples.length) {
      write(`stopped after ${samples.length} of ${rounds * kernels.length} boots: ${(e as Error).message.split('\n')[0]}`);
      opts.onPartial?.(outDir);
    }
    throw e;
  }
  return { results: write(), outDir };
}
