// Results are data first: a scenario fills a Results object, the runner writes it as
// results.json, and lab/report renders report.html from that JSON alone (so a report can be
// re-rendered, and the matrix index can be built from many runs' JSON).
import type { RunContext } from './context.ts';

export type { RunContext };

export type Cell = string | number | boolean | null;

/** One block of a report section. Charts are stored as data, rendered to inline PNG by lab/report. */
export type Block =
  | { kind: 'text'; text: string }
  | { kind: 'kv'; items: Record<string, Cell> }
  | { kind: 'table'; columns: string[]; rows: Cell[][]; caption?: string }
  | {
      kind: 'chart';
      title: string;
      type: 'line' | 'bar';
      /** x labels (bar) or numeric x values (line) */
      labels: (string | number)[];
      datasets: { label: string; data: (number | null)[] }[];
      xLabel?: string;
      yLabel?: string;
      logY?: boolean;
      /** stack the datasets (bar: stacked bars; line: filled areas), e.g. energy per workload over time */
      stacked?: boolean;
    }
  | { kind: 'pre'; text: string; caption?: string };

export interface Section {
  title: string;
  blocks: Block[];
}

export type CheckStatus = 'pass' | 'fail' | 'unsupported';

export interface Check {
  name: string;
  status: CheckStatus;
  detail?: string;
  /** for unsupported: the feature and the probe evidence that showed it missing */
  evidence?: string;
}

export interface Environment {
  kernel: { release: string; spec: string; version?: string };
  target: 'host' | 'vm';
  cpu: { model: string; cores: number };
  memoryBytes: number;
  node: string;
  libbpf: string;
  clang?: string;
  bpftool?: string;
  git: { commit: string | null; dirty: boolean };
  hostname: string;
  /** filled in by the VM target: boot time, accel, boot log file name, kernel config facts */
  vm?: Record<string, unknown>;
  /** feature-probe table of the kernel the scenario ran on */
  probes?: Record<string, { ok: boolean; detail?: string }>;
}

/** what a run's checks alone say of it: the runner's status, and the matrix's check of a results.json */
export function statusOfChecks(checks: readonly { status: string }[], error?: string): Results['status'] {
  if (error) return 'error';
  if (checks.some((c) => c.status === 'fail')) return 'fail';
  if (checks.some((c) => c.status === 'unsupported')) return 'unsupported';
  return checks.length ? 'pass' : 'error';
}

/** a VM run's accelerator as recorded ('tcg', 'kvm'); '' on the host or where none was recorded */
export function vmAccel(env: Partial<Environment> | undefined): string {
  return env?.target === 'vm' ? String((env.vm as Record<string, unknown> | undefined)?.accel ?? '') : '';
}

/** how the accelerator is named to a reader: TCG's figures are 10–30x a KVM guest's */
export const accelLabel = (accel: string) => (accel === 'tcg' ? 'TCG: emulated' : accel.toUpperCase());

/**
 * A scenario's declared headline figure: what a reader compares across runs, kernels and commits.
 * Reports lead with these, the matrix tabulates them, `lab compare`/`lab publish` treat them
 * generically. `value` is the median over `rounds`; a ratio is computed per round before the median.
 */
export interface Headline {
  /** stable id, e.g. "consumer.cpuPerEvent" — compare/publish match on scenario + kernel + name */
  name: string;
  /** what a reader sees, e.g. "TS consumer CPU per event" */
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  /**
   * a two-sided figure: closer to this value is better, on either side (achieved ÷ target: an
   * overshoot is as wrong as a shortfall; read as "higher is better", +25% was "improved").
   * `better` then names the side the figure usually misses on, for readers of older tools.
   */
  ideal?: number;
  /** median over rounds */
  value: number;
  /** every round's value (what spread and regression checks use) */
  rounds?: number[];
  spread?: { n: number; min: number; max: number; mad: number };
  /** what the value is compared against inside this run, e.g. the C consumer or the direct path */
  comparator?: {
    name: string;
    /** the comparator's median, and its value per round (same rounds as ours) */
    value?: number;
    /** the unit of value when it is not the headline's (a rate beside a % lost, a ratio beside a % error) */
    unit?: string;
    valueRounds?: number[];
    /** median of the per-round ratios (ours ÷ theirs unless the label says otherwise), each round's ratio and their spread */
    ratio?: number;
    ratioRounds?: number[];
    ratioSpread?: { n: number; min: number; max: number; mad: number };
    ci?: [number, number];
    /** true: same design, one thing differs (e.g. language); false: a different design (e.g. another tool) */
    likeForLike?: boolean;
    note?: string;
  };
  /** a stated target: value op target (or ratio op target when `of` is 'ratio') */
  goal?: { op: '<=' | '>='; target: number; of?: 'value' | 'ratio'; verdict?: 'met' | 'not met' | 'inconclusive'; detail?: string };
  /** smallest relative change (0.05 = 5%) that counts as a regression regardless of MAD */
  regressionFloor?: number;
}

export interface Results {
  schema: 1;
  runId: string;
  scenario: string;
  mode: 'run' | 'bench';
  startedAt: string;
  finishedAt?: string;
  durationMs?: number;
  /** overall: fail if any check failed or the scenario threw; unsupported if nothing failed but a required feature was missing */
  status: CheckStatus | 'error';
  error?: string;
  /** the run was stopped before its scenario finished, and by what ("SIGINT", "--timeout 60 s"): its error is the stop, not a failure */
  stoppedBy?: string;
  options: Record<string, unknown>;
  environment: Environment;
  checks: Check[];
  /** raw numbers, free-form per scenario (the JSON that benchmarks publish) */
  metrics: Record<string, unknown>;
  /** the scenario's declared headline figures (see Headline) */
  headline?: Headline[];
  /** the machine's state around the run: load, steal, other processes' CPU, busy flag (lab/context.ts) */
  context?: RunContext;
  sections: Section[];
}

/**
 * Check that parsed JSON has the shape of Results before anything renders it, so a truncated or
 * hand-edited results.json gives one clear line instead of a stack trace or a report titled
 * "undefined". Returns the first problem found, or null.
 */
export function resultsProblem(r: unknown): string | null {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return 'not a JSON object';
  const o = r as Record<string, unknown>;
  if (o.schema !== 1) return `unsupported results schema ${JSON.stringify(o.schema)} (expected 1)`;
  for (const k of ['runId', 'scenario', 'mode', 'startedAt', 'status'] as const) if (typeof o[k] !== 'string') return `"${k}" is ${o[k] === undefined ? 'missing' : `not a string (${JSON.stringify(o[k])?.slice(0, 40)})`}`;
  if (!['run', 'bench'].includes(o.mode as string)) return `"mode" must be run or bench, not ${JSON.stringify(o.mode)}`;
  if (!['pass', 'fail', 'unsupported', 'error'].includes(o.status as string)) return `"status" must be pass, fail, unsupported or error, not ${JSON.stringify(o.status)}`;
  const env = o.environment as Record<string, unknown> | null | undefined;
  if (typeof env !== 'object' || env === null || Array.isArray(env)) return '"environment" must be an object';
  const k = env.kernel as Record<string, unknown> | undefined;
  if (typeof k !== 'object' || k === null || typeof k.release !== 'string') return '"environment.kernel.release" is missing';
  // the rest of what publish sorts, files and shortens runs by (a number there crashed the whole site)
  if (k.spec !== undefined && typeof k.spec !== 'string') return '"environment.kernel.spec" must be a string';
  const git = env.git as Record<string, unknown> | undefined;
  if (git !== undefined && (!isObj(git) || (git.commit !== null && git.commit !== undefined && typeof git.commit !== 'string'))) return '"environment.git.commit" must be a string (or null)';
  if (o.options !== undefined && !isObj(o.options)) return '"options" must be an object';
  if (!Array.isArray(o.checks)) return '"checks" must be an array';
  for (const [i, c] of (o.checks as unknown[]).entries()) {
    const cc = c as Record<string, unknown> | null;
    if (typeof cc !== 'object' || cc === null || typeof cc.name !== 'string' || !['pass', 'fail', 'unsupported'].includes(cc.status as string)) return `checks[${i}] must have a name and a status of pass, fail or unsupported`;
  }
  if (typeof o.metrics !== 'object' || o.metrics === null || Array.isArray(o.metrics)) return '"metrics" must be an object';
  if (!Array.isArray(o.sections)) return '"sections" must be an array';
  for (const [i, sct] of (o.sections as unknown[]).entries()) {
    const ss = sct as Record<string, unknown> | null;
    if (typeof ss !== 'object' || ss === null || typeof ss.title !== 'string' || !Array.isArray(ss.blocks)) return `sections[${i}] must have a title and a blocks array`;
    for (const [j, b] of (ss.blocks as unknown[]).entries()) {
      const why = blockProblem(b);
      if (why) return `sections[${i}].blocks[${j}] ${why}`;
    }
  }
  // what the renderers read of the optional parts: a hand-edited or foreign file that lacks it
  // crashed report, publish and compare with an internal error instead of being named
  const cpu = env.cpu as Record<string, unknown> | undefined;
  if (cpu !== undefined && (!isObj(cpu) || typeof cpu.model !== 'string' || typeof cpu.cores !== 'number')) return '"environment.cpu" must have a model (string) and cores (number)';
  if (o.headline !== undefined) {
    if (!Array.isArray(o.headline)) return '"headline" must be an array';
    for (const [i, h] of (o.headline as unknown[]).entries()) {
      const why = headlineProblem(h);
      if (why) return `headline[${i}] ${why}`;
    }
  }
  if (o.context !== undefined) {
    const c = o.context as Record<string, unknown>;
    const la = c?.loadavg as Record<string, unknown> | undefined;
    if (!isObj(c) || !strings(c.busy) || !isObj(la) || !numbers(la.before) || !numbers(la.after) || !['busyShare', 'stealShare', 'othersCores', 'cores'].every((k) => typeof c[k] === 'number') || !Array.isArray(c.topOthers) || !(c.topOthers as unknown[]).every((t) => isObj(t) && typeof (t as Record<string, unknown>).cores === 'number')) return '"context" is not a run context (busy, loadavg, busyShare, stealShare, othersCores, topOthers, cores)';
  }
  return null;
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const strings = (x: unknown) => Array.isArray(x) && x.every((v) => typeof v === 'string');
const numbers = (x: unknown) => Array.isArray(x) && x.every((v) => typeof v === 'number');
/** numbers, with null where a measurement failed (JSON writes NaN as null) */
const numbersOrNull = (x: unknown) => Array.isArray(x) && x.every((v) => v === null || typeof v === 'number');

function headlineProblem(h: unknown): string | null {
  if (!isObj(h)) return 'must be an object';
  for (const k of ['name', 'label', 'unit'] as const) if (typeof h[k] !== 'string') return `needs "${k}" (a string)`;
  if (h.better !== 'higher' && h.better !== 'lower') return `"better" must be higher or lower, not ${JSON.stringify(h.better)?.slice(0, 40)}`;
  if (h.ideal !== undefined && (typeof h.ideal !== 'number' || !Number.isFinite(h.ideal))) return '"ideal" must be a number';
  if (h.value !== null && typeof h.value !== 'number') return '"value" must be a number (or null)';
  if (h.rounds !== undefined && !numbersOrNull(h.rounds)) return '"rounds" must be numbers';
  if (h.spread !== undefined && !(isObj(h.spread) && ['n', 'min', 'max', 'mad'].every((k) => (h.spread as Record<string, unknown>)[k] === null || typeof (h.spread as Record<string, unknown>)[k] === 'number'))) return '"spread" must hold n, min, max, mad';
  if (h.comparator !== undefined) {
    const c = h.comparator;
    if (!(isObj(c) && typeof c.name === 'string')) return '"comparator" must be an object with a name';
    // what the report formats as numbers: a string there threw in the renderer (a whole publish lost)
    for (const k of ['value', 'ratio'] as const) if (c[k] !== undefined && c[k] !== null && typeof c[k] !== 'number') return `"comparator.${k}" must be a number`;
    for (const k of ['valueRounds', 'ratioRounds', 'ci'] as const) if (c[k] !== undefined && !numbersOrNull(c[k])) return `"comparator.${k}" must be numbers`;
    if (c.ratioSpread !== undefined && !(isObj(c.ratioSpread) && ['n', 'min', 'max', 'mad'].every((k) => (c.ratioSpread as Record<string, unknown>)[k] === null || typeof (c.ratioSpread as Record<string, unknown>)[k] === 'number'))) return '"comparator.ratioSpread" must hold n, min, max, mad';
  }
  if (h.goal !== undefined && !(isObj(h.goal) && (h.goal.op === '<=' || h.goal.op === '>=') && typeof h.goal.target === 'number')) return '"goal" must have op <= or >= and a numeric target';
  return null;
}

function blockProblem(b: unknown): string | null {
  if (!isObj(b)) return 'must be an object';
  switch (b.kind) {
    case 'text':
    case 'pre':
      return typeof b.text === 'string' ? null : `(${b.kind}) needs "text" (a string)`;
    case 'kv':
      return isObj(b.items) ? null : '(kv) needs "items" (an object)';
    case 'table':
      return strings(b.columns) && Array.isArray(b.rows) && (b.rows as unknown[]).every(Array.isArray) ? null : '(table) needs "columns" (strings) and "rows" (arrays)';
    case 'chart':
      return Array.isArray(b.labels) && Array.isArray(b.datasets) && (b.datasets as unknown[]).every((d) => isObj(d) && numbersOrNull(d.data)) ? null : '(chart) needs "labels" and "datasets" with numeric data';
    default:
      return `has an unknown kind ${JSON.stringify(b.kind)?.slice(0, 40)}`;
  }
}
