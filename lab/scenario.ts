// The runner API: the only thing a scenario imports from lab/. A scenario is a folder
// scenarios/<name>/ whose index.ts default-exports a Scenario. The same code runs on the host
// and inside a VM (the VM target re-invokes the runner in the guest with --kernel host).
import type { Block, Check, Headline, Results, Section } from './results.ts';
import type { Progress } from '../common/progress.ts';
import type { ProbeTable } from './probes.ts';
import type { Opts } from '../common/args.ts';
import { LabError } from '../common/errors.ts';

export interface ScenarioContext {
  /** 'run' is the functional scenario (checks); 'bench' also drives the benchmark and may take minutes */
  readonly mode: 'run' | 'bench';
  /** uname -r of the kernel this code runs on, and the --kernel spec the user asked for */
  readonly kernel: { release: string; spec: string };
  /** reports/<run-id>/: put extra artefacts (logs, raw captures) here */
  readonly outDir: string;
  /**
   * the scenario's options (declared in Scenario.options), validated and typed by the runner
   * before anything is built or booted, defaults filled in
   */
  readonly options: Record<string, string | number | boolean | string[]>;
  readonly progress: Progress;
  /** feature probes of the running kernel (computed once, lazily) */
  probes(): Promise<ProbeTable>;
  /** record a check; a failing check fails the run but the scenario goes on */
  check(name: string, ok: boolean, detail?: string): boolean;
  /** a hook or feature is missing on this kernel: recorded as unsupported, never as a pass */
  unsupported(name: string, feature: string, evidence: string): void;
  /** raw numbers for results.json (merged shallowly) */
  metric(name: string, value: unknown): void;
  /** declare a headline figure (replaces an earlier one of the same name); reports lead with these */
  headline(h: Headline): void;
  /** add a report section (or blocks to an existing one with the same title) */
  section(title: string, ...blocks: Block[]): void;
  /**
   * register a cleanup; cleanups run in reverse order when the scenario ends, throws, or the
   * process gets SIGINT/SIGTERM, so a run leaves no netns, link, qdisc, pin or process behind
   */
  defer(what: string, fn: () => unknown | Promise<unknown>): void;
  /** an AbortSignal that fires on SIGINT/SIGTERM: long loops should watch it */
  readonly signal: AbortSignal;
}

export interface Scenario {
  name: string;
  description: string;
  /** what the scenario needs from the host before it can start (tools, see lab/setup.ts) */
  tools?: string[];
  /** its command-line options: `pnpm lab run <name> --help` lists them; unknown flags are errors */
  options?: Opts;
  /**
   * what its guest needs beyond the default: `wire` adds the two-port virtio-net cable
   * (lab/vm/wire.ts; ~0.4 s of TCG boot, so only on request); `prepare` runs on the host before
   * the guest boots, for work that is cheap natively and slow under TCG (the guest reads the
   * host's tree read-only, so what it writes to the lab cache the guest can use)
   */
  vm?: { wire?: boolean; prepare?: (log: (s: string) => void) => Promise<unknown> };
  /**
   * checks across options (each option's own type and range are the parser's): a problem and its
   * fix, or undefined. Run before anything is built or booted; a problem exits 2. `onThisMachine`:
   * the run is this machine's (`--kernel host`, not a guest's), so its facts (CPUs) may be checked.
   */
  validate?(options: Record<string, unknown>, where: { mode: 'run' | 'bench'; onThisMachine: boolean }): { message: string; fix: string } | undefined;
  run(ctx: ScenarioContext): Promise<void>;
}

export type { Block, Check, Headline, Results, Section };
export { scaledTimeout, timeScale } from './timeouts.ts';

/**
 * A numeric option of the scenario, `def` when the user gave none. The runner has already checked
 * its type and range (Scenario.options); this is the one place a scenario reads a number from
 * ctx.options, and it refuses an option declared with another type.
 */
export function numberOption(ctx: Pick<ScenarioContext, 'options'>, name: string, def?: number): number {
  const v = ctx.options[name] ?? def;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new LabError(`option --${name} is ${v === undefined ? 'missing' : `not a number (${JSON.stringify(v)})`}`, 'declare it with type int or number (and a default) in the scenario\'s options');
  return v;
}
