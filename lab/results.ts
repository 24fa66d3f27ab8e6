// Results are data first: a scenario fills a Results object, the runner writes it as
// results.json, and lab/report renders report.html from that JSON alone (so a report can be
// re-rendered, and the matrix index can be built from many runs' JSON).

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
  options: Record<string, unknown>;
  environment: Environment;
  checks: Check[];
  /** raw numbers, free-form per scenario (the JSON that benchmarks publish) */
  metrics: Record<string, unknown>;
  sections: Section[];
}
