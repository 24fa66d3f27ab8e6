// Regression detection over declared headline figures (Results.headline), from results.json
// files alone. One rule, shared by `pnpm lab compare`, `pnpm lab publish` and the nightly job:
// for each headline metric of the same scenario + kernel + machine class, the candidate is a
// regression when its median is worse than the baseline's by more than max(k·SE, floor), SE the
// standard error of the difference of the two medians. The noise behind SE is both sides' rounds
// pooled (each round's distance from its own side's median; the baseline's rounds span every
// baseline night, so it carries run-to-run drift), and SE shrinks with the rounds each side has.
// The baseline's MAD alone (the rule before) ignored the candidate's own spread and how few rounds
// it had: two 3-round runs of the same build each flagged the other (−9%, limit 6%), and ±5%
// noise gave 3% false flags per figure at 3 rounds — most nights fail with ~26 figures.
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { LabError } from '../../common/errors.ts';
import { UsageError } from '../../common/args.ts';
import { resultsProblem, vmAccel, type Environment, type Headline, type Results } from '../results.ts';
import { mad, median } from '../stats.ts';
import { betterText, formatNumber } from '../report/html.ts';
import { oneLine, printable } from '../../common/printable.ts';

/** smallest relative change counted as a regression when a headline declares no regressionFloor */
export const DEFAULT_FLOOR = 0.06;
/** how many standard errors of the difference of medians a change must exceed */
export const DEFAULT_K = 3;

/**
 * How far one more night's median strays from the baseline nights': the standard deviation of
 * their medians × √(1 + 1/N) (a prediction, not a mean's error). The rounds of one night share its
 * offset (a machine 2–4x faster or slower between windows), so pooled rounds alone took 3 rounds
 * of one night for 3 independent samples: with nights differing by 4%, one figure in 30 was
 * flagged with nothing changed. 0 with fewer than 2 baseline runs (no spread between nights known).
 */
export function nightSe(runMedians: readonly number[]): number {
  const n = runMedians.length;
  if (n < 2) return 0;
  const m = runMedians.reduce((t, x) => t + x, 0) / n;
  const sd = Math.sqrt(runMedians.reduce((t, x) => t + (x - m) ** 2, 0) / (n - 1));
  return sd * Math.sqrt(1 + 1 / n);
}

/**
 * The standard error of median(candidate) − median(baseline): the pooled standard deviation of
 * each side's rounds about its own median (n−2 degrees of freedom: two medians taken), times
 * √(π/2) (a median's efficiency against a mean under normal noise) × √(1/n_b + 1/n_c). Not the
 * MAD: at 3 rounds a side, one residual per side is zero by construction and a MAD of the six was
 * often zero too. An outlying round widens it: a noisy pair is called noise, never a regression.
 */
export function medianDiffSe(b: readonly number[], c: readonly number[]): number {
  if (!b.length || !c.length) return NaN;
  const mb = median([...b]);
  const mc = median([...c]);
  const ss = b.reduce((t, x) => t + (x - mb) ** 2, 0) + c.reduce((t, x) => t + (x - mc) ** 2, 0);
  const sd = Math.sqrt(ss / Math.max(1, b.length + c.length - 2));
  return Math.sqrt(Math.PI / 2) * sd * Math.sqrt(1 / b.length + 1 / c.length);
}

export interface LoadedRun {
  /** the results.json path it was read from */
  file: string;
  results: Results;
}

/**
 * The class of machine a figure was measured on: numbers only compare within a class.
 * Derived from the environment alone: CPU model, cores, host or VM, and the VM's accelerator
 * (TCG is 10–30x slower than KVM; a TCG number says nothing about a KVM one).
 */
export function machineClass(env: Partial<Environment> | undefined): string {
  const cpu = env?.cpu ? `${env.cpu.model.replace(/\s+/g, ' ').trim()} ×${env.cpu.cores}` : 'unknown cpu';
  const target = env?.target ?? 'host';
  const accel = target === 'vm' ? vmAccel(env) || 'unknown accel' : null;
  return [cpu, target, accel].filter(Boolean).join(' · ');
}

/**
 * The kernel a run is filed under: the series asked for on a VM (Debian's ABI number moves with
 * point releases, the series is what a reader follows), the release itself on the host.
 */
export function kernelLabel(env: Partial<Environment> | undefined): string {
  const k = env?.kernel;
  if (!k) return 'unknown';
  const release = typeof k.release === 'string' ? k.release : 'unknown';
  if (env?.target !== 'vm' || typeof k.spec !== 'string' || k.spec === 'host') return release;
  // a series names one kernel line (6.1: Debian's point releases of it); a wider spec (7.x, sid's
  // moving head; "6"; an image path rebuilt each night) names several, and 7.0 → 7.2 between two
  // nights read as a regression of "7.x": filed under the release's series instead
  if (/^\d+\.\d+$/.test(k.spec)) return k.spec;
  return /^\d+\.\d+/.exec(release)?.[0] ?? release;
}

/**
 * Scenario options that do not change what a figure measures: how many rounds (n, not the
 * figure), what is printed, a goal's target, and the deliberate slowdown whose purpose is to be
 * compared against the runs without it (validating `lab compare`).
 */
const SETUP_IGNORED = new Set(['repeat', 'max-print', 'print', 'overhead-goal', 'inject-delay-us']);

/**
 * What a run measured under: its mode and the scenario options that shape the load. Runs of
 * another setup measure other figures under the same names (hello-openat's delivered events/s at
 * --rate 5000 and at 20000; socket-lb's setup times at 300 connections in a run, 10,000 in a
 * bench): compared, they read as +300% or −75% (review, session 65).
 */
export function setupKey(r: Pick<Results, 'mode' | 'options'>): string {
  const o = r.options && typeof r.options === 'object' ? r.options : {};
  return JSON.stringify([r.mode, Object.keys(o).filter((k) => !SETUP_IGNORED.has(k)).sort().map((k) => [k, o[k]])]);
}

/**
 * Two setups measure the same figures: one mode, and every option both record has one value. An
 * option only one side records is one a scenario gained or lost between the two builds: not a
 * difference (taken as one, every history would restart the day an option is added). Runs record
 * every declared option (null when not given), so "not given" is a value, not a missing key.
 */
function sameSetup(a: string, b: string): boolean {
  if (a === b) return true;
  const [ma, oa] = JSON.parse(a) as [string, [string, unknown][]];
  const [mb, ob] = JSON.parse(b) as [string, [string, unknown][]];
  if (ma !== mb) return false;
  const other = new Map(ob.map(([k, v]) => [k, JSON.stringify(v)]));
  return oa.every(([k, v]) => !other.has(k) || other.get(k) === JSON.stringify(v));
}

/**
 * The one of `reps` a run of setup `key` belongs with: its own, else the only one it is sameSetup
 * with. sameSetup is not transitive: a run of an older build that lacks an option matches every
 * value of it, and filed under the first match the history before an option was added joined
 * whichever setup came first (a quick --rate 5000 run then compared with default-rate nights).
 * Ambiguous: undefined (a series of its own).
 */
function pickSetup(key: string, reps: readonly string[]): string | undefined {
  if (reps.includes(key)) return key;
  const m = reps.filter((r) => sameSetup(r, key));
  if (m.length <= 1) return m[0];
  // a run of a build that recorded no nulls lacks the options it was not given: of several
  // setups, the one that was not given them either (profile null, not profile true)
  const [, opts] = JSON.parse(key) as [string, [string, unknown][]];
  const have = new Set(opts.map(([k]) => k));
  const notGiven = m.filter((r) => (JSON.parse(r) as [string, [string, unknown][]])[1].every(([k, v]) => have.has(k) || v === null));
  return notGiven.length === 1 ? notGiven[0] : undefined;
}

/**
 * Each run's setup as its series knows it, newest first: the one setup of its scenario it
 * belongs with (pickSetup), else its own (a history across an added option stays one series).
 */
export function canonicalSetups(runs: readonly Pick<Results, 'scenario' | 'mode' | 'options' | 'startedAt'>[]): Map<object, string> {
  const reps = new Map<string, string[]>();
  const out = new Map<object, string>();
  for (const r of [...runs].sort((a, b) => b.startedAt.localeCompare(a.startedAt))) {
    const key = setupKey(r);
    const list = reps.get(r.scenario) ?? [];
    reps.set(r.scenario, list);
    let rep = pickSetup(key, list);
    if (!rep) list.push((rep = key));
    out.set(r, rep);
  }
  return out;
}

/**
 * Readable names for setupKey()s (of one scenario's runs or rows): the mode, and the options whose
 * values differ between them (`bench, rate=5000`); '' for each when there is only one.
 */
export function setupNames(keys: Iterable<string>): Map<string, string> {
  const uniq = [...new Set(keys)];
  const out = new Map<string, string>();
  if (uniq.length < 2) {
    for (const k of uniq) out.set(k, '');
    return out;
  }
  const parsed = uniq.map((k) => JSON.parse(k) as [string, [string, unknown][]]);
  const modes = new Set(parsed.map(([m]) => m));
  const names = new Set(parsed.flatMap(([, o]) => o.map(([n]) => n)));
  const varying = [...names].filter((n) => new Set(parsed.map(([, o]) => JSON.stringify(o.find(([x]) => x === n)?.[1] ?? null))).size > 1).sort();
  uniq.forEach((k, i) => {
    const [mode, opts] = parsed[i]!;
    const parts = varying.map((n) => {
      const v = opts.find(([x]) => x === n)?.[1];
      return v === undefined || v === null ? `no ${n}` : v === true ? n : `${n}=${Array.isArray(v) ? v.join(',') : String(v)}`;
    });
    out.set(k, [...(modes.size > 1 ? [mode] : []), ...parts].join(', ') || mode);
  });
  return out;
}

/** the sample a headline stands for: its rounds when recorded, else its median alone */
export function samples(h: Headline): number[] {
  const r = Array.isArray(h.rounds) ? h.rounds.filter((x) => typeof x === 'number' && Number.isFinite(x)) : [];
  return r.length ? r : Number.isFinite(h.value) ? [h.value] : [];
}

/**
 * A run's identity across machines and nights: the run id alone is not unique (a matrix names
 * its runs after the cell, e.g. "hello-openat-5.10", every night), the id plus its start is.
 */
export const runKey = (r: Pick<Results, 'runId' | 'startedAt'>) => `${r.runId}\u0000${r.startedAt}`;

export type Verdict = 'regression' | 'improvement' | 'ok' | 'busy' | 'redefined' | 'new' | 'missing';

/**
 * A run the runner flagged busy (others held CPUs, or steal): its report says its figures compare
 * only inside the run. A busy candidate is not judged (verdict busy, its change still shown), and
 * busy runs leave a baseline that has quiet ones: a busy 1-round run against a quiet one read as a
 * +96% REGRESSION on the site's front page (review, session 57).
 */
export const busyRun = (r: Results) => (r.context?.busy?.length ?? 0) > 0;

export interface Comparison {
  scenario: string;
  kernel: string;
  machine: string;
  /** setupKey() of its runs */
  setup: string;
  metric: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  /** closer to it is better (Headline.ideal) */
  ideal?: number;
  baseline?: { median: number; mad: number; n: number; runs: string[] };
  candidate?: { median: number; mad: number; n: number; runs: string[] };
  /** (candidate − baseline) / |baseline| */
  change?: number;
  /** relative threshold the change had to exceed: max(k·SE/|baseline|, floor) (medianDiffSe) */
  threshold?: number;
  floor: number;
  verdict: Verdict;
}

interface Group {
  scenario: string;
  kernel: string;
  machine: string;
  setup: string;
  h: Headline;
  runs: LoadedRun[];
  values: number[];
  /** each run's median (nights differ by more than their rounds do) */
  runMedians: number[];
}

/** what a figure's numbers mean beside its name: unit, direction, ideal */
export const definition = (h: Headline) => JSON.stringify([h.unit ?? '', h.better, h.ideal ?? null]);

const keyOf = (scenario: string, kernel: string, machine: string, setup: string, metric: string) => JSON.stringify([scenario, kernel, machine, setup, metric]);

/** what figures compare within: scenario + kernel + machine class + setup, of a run or of a comparison row */
export function classKey(x: Pick<Results, 'scenario' | 'environment' | 'mode' | 'options'> | { scenario: string; kernel: string; machine: string; setup: string }): string {
  return 'environment' in x ? JSON.stringify([x.scenario, kernelLabel(x.environment), machineClass(x.environment), setupKey(x)]) : JSON.stringify([x.scenario, x.kernel, x.machine, x.setup]);
}

/** runs that carry figures worth comparing: a run that errored out measured nothing trustworthy */
export function usable(r: Results): boolean {
  return r.status !== 'error' && Array.isArray(r.headline) && r.headline.length > 0;
}

function group(runs: LoadedRun[], window?: number, setupOf: (r: Results) => string = setupKey): Map<string, Group & { busy: boolean }> {
  const byKey = new Map<string, { g: Group; entries: { run: LoadedRun; h: Headline }[] }>();
  for (const run of runs) {
    const r = run.results;
    if (!usable(r)) continue;
    const kernel = kernelLabel(r.environment);
    const machine = machineClass(r.environment);
    const setup = setupOf(r);
    for (const h of r.headline!) {
      if (!h || typeof h.name !== 'string' || typeof h.value !== 'number') continue;
      const k = keyOf(r.scenario, kernel, machine, setup, h.name);
      let e = byKey.get(k);
      if (!e) byKey.set(k, (e = { g: { scenario: r.scenario, kernel, machine, setup, h, runs: [], values: [], runMedians: [] }, entries: [] }));
      e.entries.push({ run, h });
    }
  }
  const out = new Map<string, Group & { busy: boolean }>();
  for (const [k, { g, entries: all }] of byKey) {
    // quiet runs only, where there are any (see busyRun); a baseline of busy runs alone is still
    // one (a first night it is not), and a busy candidate is marked
    const quiet = all.filter((e) => !busyRun(e.run.results));
    let entries = quiet.length ? quiet : all;
    // newest last; with a window only the newest `window` runs form the baseline
    entries.sort((a, b) => a.run.results.startedAt.localeCompare(b.run.results.startedAt));
    // a figure whose unit or direction changed is another figure: only runs of the newest one's
    // definition (ms against µs read as +99,900%: review, session 57)
    const newest = definition(entries[entries.length - 1]!.h);
    entries = entries.filter((e) => definition(e.h) === newest);
    const kept = window ? entries.slice(-window) : entries;
    g.h = kept[kept.length - 1]!.h;
    g.runs = kept.map((e) => e.run);
    g.values = kept.flatMap((e) => samples(e.h));
    g.runMedians = kept.map((e) => samples(e.h)).filter((x) => x.length).map((x) => median(x));
    out.set(k, { ...g, busy: !quiet.length });
  }
  return out;
}

/** compare a candidate set of runs against a baseline set; one row per headline metric seen in either */
export function compareRuns(baseline: LoadedRun[], candidate: LoadedRun[], opts: { k?: number; defaultFloor?: number; window?: number } = {}): Comparison[] {
  const k = opts.k ?? DEFAULT_K;
  const cand = group(candidate);
  // a baseline run is filed under the candidate setup it measures the same figures as (sameSetup)
  const candSetups = new Map<string, string[]>();
  for (const { results: r } of candidate) candSetups.set(r.scenario, [...new Set([...(candSetups.get(r.scenario) ?? []), setupKey(r)])]);
  const base = group(baseline, opts.window, (r) => pickSetup(setupKey(r), candSetups.get(r.scenario) ?? []) ?? setupKey(r));
  const rows: Comparison[] = [];
  for (const key of new Set([...cand.keys(), ...base.keys()])) {
    const b = base.get(key);
    const c = cand.get(key);
    const g = (c ?? b)!;
    const floor = typeof g.h.regressionFloor === 'number' && g.h.regressionFloor >= 0 ? g.h.regressionFloor : (opts.defaultFloor ?? DEFAULT_FLOOR);
    const row: Comparison = { scenario: g.scenario, kernel: g.kernel, machine: g.machine, setup: g.setup, metric: g.h.name, label: g.h.label ?? g.h.name, unit: g.h.unit ?? '', better: g.h.better === 'higher' ? 'higher' : 'lower', ...(typeof g.h.ideal === 'number' ? { ideal: g.h.ideal } : {}), floor, verdict: 'ok' };
    const stat = (x: Group) => ({ median: median(x.values), mad: mad(x.values), n: x.values.length, runs: x.runs.map((r) => r.results.runId) });
    if (b?.values.length) row.baseline = stat(b);
    if (c?.values.length) row.candidate = stat(c);
    if (!row.candidate) row.verdict = 'missing';
    else if (!row.baseline) row.verdict = 'new';
    else if (definition(b!.h) !== definition(c!.h)) row.verdict = 'redefined';
    else {
      const bm = row.baseline.median;
      // a figure with an ideal is judged by its distance from the ideal: crossing it (0.9 → 1.1
      // with the ideal 1) is no change, though the figure moved 22% (review, session 60)
      const diff = row.ideal !== undefined ? Math.abs(row.candidate.median - row.ideal) - Math.abs(bm - row.ideal) : row.candidate.median - bm;
      // with one baseline night the spread between nights is not known: it is taken as the floor
      // (rounds of one night share its offset, so their spread alone flagged one figure in ten
      // with nothing changed when nights differ by 3%; a review's simulation, session 60)
      const assumedNight = b!.runMedians.length < 2 ? (floor * Math.abs(bm) * 2) / k : 0;
      const se = Math.max(medianDiffSe(b!.values, c!.values), nightSe(b!.runMedians), assumedNight);
      // a baseline of 0 has no relative scale: the difference against k·SE alone (a count of drops
      // that was 0 and is 5 with no noise either side is a change; one inside the noise is not)
      const change = bm === 0 ? (diff === 0 ? 0 : Math.sign(diff) * Infinity) : diff / Math.abs(bm);
      const threshold = bm === 0 ? Infinity : Math.max((k * se) / Math.abs(bm), floor);
      const beyond = bm === 0 ? Math.abs(diff) > k * se : Math.abs(change) > threshold;
      row.change = change;
      row.threshold = threshold;
      const worse = row.ideal !== undefined ? diff > 0 : (row.better === 'lower' ? diff : -diff) > 0;
      row.verdict = c!.busy ? 'busy' : !beyond || diff === 0 ? 'ok' : worse ? 'regression' : 'improvement';
    }
    rows.push(row);
  }
  const order: Record<Verdict, number> = { regression: 0, improvement: 1, ok: 2, busy: 3, redefined: 4, new: 5, missing: 6 };
  return rows.sort((a, b) => order[a.verdict] - order[b.verdict] || a.scenario.localeCompare(b.scenario) || a.kernel.localeCompare(b.kernel) || a.metric.localeCompare(b.metric));
}

/**
 * A history (runs of one scenario × kernel × machine class over time): every run compared
 * against the `window` runs before it. What the site marks on trend pages and the home page.
 * Keyed by runKey().
 */
export function flagHistory(runs: LoadedRun[], opts: { k?: number; defaultFloor?: number; window?: number } = {}): Map<string, Comparison[]> {
  const sorted = [...runs].filter((r) => usable(r.results)).sort((a, b) => a.results.startedAt.localeCompare(b.results.startedAt));
  const canon = canonicalSetups(sorted.map((r) => r.results));
  const out = new Map<string, Comparison[]>();
  for (const [i, run] of sorted.entries()) {
    const at = (x: Results) => JSON.stringify([x.scenario, kernelLabel(x.environment), machineClass(x.environment)]);
    const sameKind = (o: LoadedRun) => at(o.results) === at(run.results) && canon.get(o.results) === canon.get(run.results);
    const before = sorted.slice(0, i).filter(sameKind);
    out.set(runKey(run.results), compareRuns(before, [run], opts).filter((c) => c.verdict !== 'missing'));
  }
  return out;
}

// symlinks are followed (a history kept as links to run directories read as no runs at all, and
// the nightly gate passed as a first night: review, session 57); a directory is read once, so a
// link cycle ends
async function walk(path: string, out: string[], dirs = new Set<string>()): Promise<void> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    const fix = 'pass results.json files or directories that contain them (e.g. reports/)';
    // a mistyped path is the caller's mistake (exit 2), not a failure of the comparison
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`cannot read ${path}: no such file or directory`, fix);
    throw new LabError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, fix, { cause: err });
  }
  if (st.isFile()) {
    out.push(path);
    return;
  }
  if (!st.isDirectory()) return;
  const real = await realpath(path);
  if (dirs.has(real)) return;
  dirs.add(real);
  for (const e of (await readdir(path, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name.startsWith('.') || e.name === 'node_modules') continue;
    const p = join(path, e.name);
    if (e.isDirectory()) await walk(p, out, dirs);
    else if (e.name === 'results.json') out.push(p);
    else if (e.isSymbolicLink()) {
      // a link to a run directory; a dangling one is skipped
      const to = await stat(p).catch(() => null);
      if (to?.isDirectory()) await walk(p, out, dirs);
    }
  }
}

/**
 * Read results.json files (directories are searched recursively). A named file that is not a
 * valid results.json is an error; a broken one found while searching a directory is skipped
 * with a warning (a half-written run must not stop a nightly publish).
 */
export async function loadRuns(paths: string[], warn: (s: string) => void = (s) => console.error(s), skipped: { count: number } = { count: 0 }): Promise<LoadedRun[]> {
  const runs: LoadedRun[] = [];
  const seen = new Set<string>();
  for (const p of paths) {
    const files: string[] = [];
    await walk(p, files);
    const named = files.length === 1 && files[0] === p;
    for (const f of files) {
      // by where it really is: a run reached through a link and directly is one run
      const abs = await realpath(f).catch(() => resolve(f));
      if (seen.has(abs)) continue;
      seen.add(abs);
      let problem: string | null = null;
      let r: unknown;
      try {
        r = JSON.parse(await readFile(f, 'utf8'));
        problem = resultsProblem(r);
      } catch (err) {
        problem = `not valid JSON (${oneLine((err as Error).message)})`;
      }
      if (problem) {
        if (named) throw new LabError(`${f}: ${problem}`, 'pass a results.json written by pnpm lab run|bench|matrix, or a directory of runs');
        warn(`warning: skipping ${f}: ${problem}`);
        skipped.count++;
        continue;
      }
      runs.push({ file: f, results: r as Results });
    }
  }
  // the same run copied into two trees (reports/ and a matrix dir) counts once
  const byId = new Map<string, LoadedRun>();
  for (const r of runs) if (!byId.has(runKey(r.results))) byId.set(runKey(r.results), r);
  return [...byId.values()];
}

export function formatValue(v: number | undefined, unit = ''): string {
  if (v === undefined || !Number.isFinite(v)) return '—';
  return unit ? `${formatNumber(v)} ${unit}` : formatNumber(v);
}

export function formatChange(c: number | undefined): string {
  if (c === undefined) return '—';
  if (!Number.isFinite(c)) return c > 0 ? '+∞' : '−∞';
  return `${c >= 0 ? '+' : '−'}${(Math.abs(c) * 100).toFixed(1)}%`;
}

export const VERDICT_TEXT: Record<Verdict, string> = { regression: 'REGRESSION', improvement: 'improved', ok: 'within noise', busy: 'not judged (busy machine)', redefined: 'not compared: its unit or direction changed', new: 'new (no baseline)', missing: 'missing in candidate' };

/** the comparison as rows of cells: metric, baseline, candidate, change, verdict */
export function comparisonRows(rows: Comparison[]): string[][] {
  // the setup is named where a scenario's rows have several (a baseline of --rate 5000 runs is not
  // matched with a candidate at 20000: two rows, each said which)
  const names = new Map<string, Map<string, string>>();
  for (const sc of new Set(rows.map((r) => r.scenario))) names.set(sc, setupNames(rows.filter((r) => r.scenario === sc).map((r) => r.setup)));
  return rows.map((r) => [
    `${r.scenario} · ${r.kernel}${names.get(r.scenario)?.get(r.setup) ? ` · ${names.get(r.scenario)!.get(r.setup)}` : ''} · ${r.label}${r.unit ? ` [${r.unit}]` : ''} (${betterText(r)})`,
    r.baseline ? `${formatValue(r.baseline.median)} ± ${formatValue(r.baseline.mad)} (n=${r.baseline.n})` : '—',
    r.candidate ? `${formatValue(r.candidate.median)} ± ${formatValue(r.candidate.mad)} (n=${r.candidate.n})` : '—',
    r.change === undefined ? '—' : `${formatChange(r.change)} (limit ${Number.isFinite(r.threshold) ? `${(r.threshold! * 100).toFixed(1)}%` : 'noise'})`,
    VERDICT_TEXT[r.verdict],
  ]);
}

const HEAD = ['metric', 'baseline (median ± MAD)', 'candidate (median ± MAD)', 'change', 'verdict'];

export function textTable(rows: Comparison[]): string {
  // labels and run facts come from results.json files: shown on a terminal, no control character raw
  const cells = [HEAD, ...comparisonRows(rows).map((r) => r.map(printable))];
  const w = HEAD.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd();
  return [line(cells[0]!), w.map((n) => '-'.repeat(n)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

export function markdownTable(rows: Comparison[]): string {
  // one row per line, and text rather than markup: run-supplied labels hold no link, image, emphasis
  // or HTML (GitHub renders markdown and HTML inside tables); a backslash escapes each
  const esc = (s: string) => printable(s.replace(/[\r\n]+/g, ' ')).replace(/[\\`*_[\]()<>|~!#]/g, '\\$&');
  const cells = comparisonRows(rows).map((r) => r.map((c, i) => (i === 4 && c === 'REGRESSION' ? '**REGRESSION**' : esc(c))));
  return [`| ${HEAD.join(' | ')} |`, `|${HEAD.map(() => '---').join('|')}|`, ...cells.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}
