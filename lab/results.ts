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
  }
  return null;
}
