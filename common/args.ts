// The one argument layer for every command of the lab: Node's util.parseArgs in strict mode,
// plus typed values (int, number, enum, list), a suggestion for a mistyped flag, `--help` on
// every command, and usage errors that exit 2. Values are validated here, at the edge, before
// anything is loaded, built or booted.
import { parseArgs as nodeParseArgs } from 'node:util';
import { LabError } from './errors.ts';

export type OptType = 'string' | 'boolean' | 'int' | 'number' | 'list';

export interface Opt {
  type: OptType;
  description: string;
  default?: string | number | boolean;
  /** allowed values (string options; for a list, each item) */
  choices?: readonly string[];
  min?: number;
  max?: number;
  /** shown in help: --rate N */
  valueName?: string;
  short?: string;
  /** extra validation of the value as given (any type, after its own checks): an error message, or undefined when fine */
  check?: (v: string) => { message: string; fix: string } | undefined;
  /** accepted but not listed in help (internal plumbing such as the VM runner's --spec) */
  hidden?: boolean;
  /** a scenario option one mode alone reads (lab run/bench refuse it in the other: it was ignored) */
  only?: 'run' | 'bench';
}
export type Opts = Record<string, Opt>;

type ValueOf<O extends Opt> = O['type'] extends 'boolean' ? boolean : O['type'] extends 'int' | 'number' ? number : O['type'] extends 'list' ? string[] : string;
export type Values<O extends Opts> = { [K in keyof O]?: ValueOf<O[K]> };

/** A mistake in how a command was called: exits 2 with a one-line message and a hint. */
export class UsageError extends LabError {
  readonly exitCode = 2;
  constructor(message: string, fix?: string) {
    super(message, fix);
    this.name = 'UsageError';
  }
}

export interface CommandSpec<O extends Opts> {
  /** e.g. "pnpm lab run <scenario>" */
  usage: string;
  summary?: string;
  options: O;
  /** positional names for help, and how many are allowed */
  positionals?: { names?: readonly string[]; min?: number; max?: number };
  /** text after the option list (examples, notes) */
  epilog?: string;
}

export interface Parsed<O extends Opts> {
  values: Values<O>;
  positionals: string[];
  /** arguments after a lone "--" */
  rest: string[];
  /** the option tokens as given (name and raw value), e.g. to pass them through to a VM */
  given: { name: string; raw?: string }[];
}

/** Levenshtein distance, for "did you mean". */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

const YES = new Set(['on', 'yes', 'true', 'enable', 'enabled', '1']);
const NO = new Set(['off', 'no', 'false', 'disable', 'disabled', '0']);

/**
 * The closest of `names` to `given`, if it is close enough to be a typo. Never the opposite of
 * what was asked (`--lsm on` got "did you mean --lsm off?", two edits away), nor anything for an
 * empty or blank word.
 */
export function suggest(given: string, names: Iterable<string>): string | undefined {
  if (!given.trim()) return undefined;
  names = [...names];
  const g = given.toLowerCase();
  let best: string | undefined;
  let bestD = Infinity;
  for (const n of names) {
    const l = n.toLowerCase();
    if ((YES.has(g) && NO.has(l)) || (NO.has(g) && YES.has(l))) continue;
    const dist = editDistance(given, n);
    if (dist < bestD) [best, bestD] = [n, dist];
  }
  if (best !== undefined && bestD <= Math.max(2, Math.floor(given.length / 3))) return best;
  // a word cut short (hello for hello-openat) is far by edits but names one thing
  const starts = [...names].filter((n) => given.length >= 3 && n.toLowerCase().startsWith(g));
  return starts.length === 1 ? starts[0] : undefined;
}

export function helpText<O extends Opts>(spec: CommandSpec<O>): string {
  const opts = Object.entries(spec.options).filter(([, o]) => !o.hidden);
  const left = (n: string, o: Opt) => `  --${n}${o.type === 'boolean' ? '' : ` ${o.valueName ?? (o.choices ? o.choices.join('|') : o.type === 'int' || o.type === 'number' ? 'N' : o.type === 'list' ? 'A,B,…' : 'VALUE')}`}`;
  const w = Math.max(10, ...opts.map(([n, o]) => left(n, o).length));
  const lines = [`usage: ${spec.usage}`];
  if (spec.summary) lines.push('', spec.summary);
  if (opts.length) {
    lines.push('', 'options:');
    for (const [n, o] of opts) lines.push(`${left(n, o).padEnd(w)}  ${o.description}${o.default !== undefined && o.default !== false ? ` (default ${o.default})` : ''}`);
  }
  lines.push(`${'  --help'.padEnd(w)}  print this help`);
  if (spec.epilog) lines.push('', spec.epilog);
  return lines.join('\n');
}

/** an int option's value: decimal digits, a minus for the options whose range goes below 0 */
const INT_TEXT = /^-?\d+$/;
/** a number option's: decimal, with an optional fraction and exponent */
const NUMBER_TEXT = /^-?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i;

function convert(name: string, o: Opt, raw: string): string | number | string[] {
  // the option's own check, after its type's: the same error for every type
  const checked = () => {
    const c = o.check?.(raw);
    if (c) throw new UsageError(`--${name} ${JSON.stringify(raw)}: ${c.message}`, c.fix);
  };
  // the example in a fix is a value the option takes: "must be ≥ 1000" once said "e.g. --pps-frames 10"
  const example = () => {
    if (o.type !== 'int' && o.type !== 'number') return o.default ?? o.choices?.[0] ?? 'VALUE';
    const v = typeof o.default === 'number' ? o.default : 10;
    return Math.min(o.max ?? Infinity, Math.max(o.min ?? -Infinity, v));
  };
  const bad = (what: string) => new UsageError(`--${name} ${JSON.stringify(raw)}: ${what}`, `e.g. --${name} ${example()}`);
  if (o.type === 'int' || o.type === 'number') {
    // Number() also reads 0x10, 0b1, 0o7, " 5", "+5", and for an int 1e3 and 5.0: none is how a
    // count, port or size is written here, and 0x10 taken as 16 was a setting the user did not
    // read back. Decimal only: digits (an int), or with a fraction and exponent (a number).
    const form = o.type === 'int' ? INT_TEXT : NUMBER_TEXT;
    const v = form.test(raw) ? Number(raw) + 0 : NaN; // + 0: -0 is 0
    // digits beyond a safe integer are a number all the same: too large, which the range says when there is one
    if (o.type === 'number' && form.test(raw) && !Number.isFinite(v)) throw bad(raw.startsWith('-') ? `too small${o.min !== undefined ? ` (must be ≥ ${o.min})` : ''}` : `too large${o.max !== undefined ? ` (must be ≤ ${o.max})` : ''}`);
    if (o.type === 'int' && form.test(raw) && !Number.isSafeInteger(v)) throw bad(raw.startsWith('-') ? `too small (must be ≥ ${o.min ?? Number.MIN_SAFE_INTEGER})` : `too large (must be ≤ ${o.max ?? Number.MAX_SAFE_INTEGER})`);
    if (!Number.isFinite(v) || (o.type === 'int' && !Number.isSafeInteger(v))) throw bad(o.type === 'int' ? 'expected a whole number in decimal digits (e.g. 16, not 0x10, 1e3, +16 or 16.0)' : 'expected a decimal number (e.g. 0.5 or 1e-3, not 0x10 or +1)');
    if (o.min !== undefined && v < o.min) throw bad(`must be ≥ ${o.min}`);
    if (o.max !== undefined && v > o.max) throw bad(`must be ≤ ${o.max}`);
    checked();
    return v;
  }
  if (o.type === 'list') {
    const all = raw.split(',').map((s) => s.trim());
    const items = all.filter(Boolean);
    // "--kernels ," would otherwise pass as [] and a command would run on nothing (and report it)
    if (!items.length) throw new UsageError(`--${name} ${JSON.stringify(raw)}: the list has no items`, `e.g. --${name} ${o.default ?? o.choices?.join(',') ?? 'A,B'}`);
    // "10,,20" is a typo, not the list 10,20 (an empty item was dropped and the run went on without
    // it); a comma at either end ("a,b,") stays harmless
    const inner = all.slice(all.findIndex(Boolean), all.length - [...all].reverse().findIndex(Boolean));
    if (inner.length !== items.length) throw new UsageError(`--${name} ${JSON.stringify(raw)}: an empty item in the list`, `one comma between items, e.g. --${name} ${items.join(',')}`);
    const wrong = o.choices && items.find((i) => !o.choices!.includes(i));
    if (wrong !== undefined) {
      const s = suggest(wrong, o.choices!);
      throw new UsageError(`--${name} ${JSON.stringify(raw)}: ${JSON.stringify(wrong)} is not one of ${o.choices!.join(', ')}`, s ? `did you mean ${s}?` : `e.g. --${name} ${o.choices!.join(',')}`);
    }
    checked();
    return items;
  }
  if (o.choices && !o.choices.includes(raw)) {
    const s = suggest(raw, o.choices);
    throw new UsageError(`--${name} ${JSON.stringify(raw)}: expected one of ${o.choices.join(', ')}`, s ? `did you mean --${name} ${s}?` : `e.g. --${name} ${o.default ?? o.choices[0]}`);
  }
  if (raw === '') throw bad('must not be empty');
  checked();
  return raw;
}

/**
 * Parse argv against a spec. Returns null after printing help for --help/-h (the caller exits 0).
 * Throws UsageError (exit 2) for unknown flags, missing or malformed values, wrong positional counts.
 */
export function parseArgs<O extends Opts>(argv: string[], spec: CommandSpec<O>, out: (s: string) => void = (s) => console.log(s)): Parsed<O> | null {
  const dd = argv.indexOf('--');
  const head = dd >= 0 ? argv.slice(0, dd) : argv;
  const rest = dd >= 0 ? argv.slice(dd + 1) : [];
  if (head.includes('--help') || head.includes('-h')) {
    out(helpText(spec));
    return null;
  }
  // a negative number after a numeric option is its value (`--pin-cpu -1`, a documented value,
  // was refused as "looks like an option"): joined as --name=-1 before node's parser sees it
  const joined: string[] = [];
  for (let i = 0; i < head.length; i++) {
    const m = /^--([^=]+)$/.exec(head[i]!);
    const o = m ? spec.options[m[1]!] : undefined;
    if (o && (o.type === 'int' || o.type === 'number') && i + 1 < head.length && /^-(\d|\.\d)/.test(head[i + 1]!)) {
      joined.push(`${head[i]}=${head[i + 1]}`);
      i++;
    } else joined.push(head[i]!);
  }
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  // a list option may be repeated (--service a=1 --service b=2) as well as comma-separated
  for (const [n, o] of Object.entries(spec.options)) options[n] = { type: o.type === 'boolean' ? 'boolean' : 'string', ...(o.type === 'list' ? { multiple: true } : {}), ...(o.short ? { short: o.short } : {}) };
  let r: ReturnType<typeof nodeParseArgs>;
  try {
    r = nodeParseArgs({ args: joined, options, strict: true, allowPositionals: true, tokens: true });
  } catch (e) {
    const err = e as Error & { code?: string };
    const m = /Unknown option '(-{1,2})([^']+)'/.exec(err.message);
    if (m) {
      const s = suggest(m[2]!, Object.keys(spec.options).filter((n) => !spec.options[n]!.hidden));
      throw new UsageError(`unknown option ${m[1]}${m[2]}${s ? ` (did you mean --${s}?)` : ''}`, `${spec.usage.replace(/ <.*|\s\[.*/, '')} --help lists the options`);
    }
    const arg = /Option '(?:-\w, )?--([^ ']+)[^']*' argument missing/.exec(err.message);
    if (arg) throw new UsageError(`--${arg[1]} needs a value`, `e.g. --${arg[1]} ${spec.options[arg[1]!]?.valueName ?? spec.options[arg[1]!]?.default ?? 'VALUE'}`);
    const amb = /Option '(?:-\w, )?--([^ ']+)[^']*' argument is ambiguous/.exec(err.message);
    if (amb) throw new UsageError(`--${amb[1]}: the value looks like an option`, `write --${amb[1]}=VALUE`);
    const bool = /Option '(?:-\w, )?--([^ ']+)' does not take an argument/.exec(err.message);
    if (bool) throw new UsageError(`--${bool[1]} is a flag and takes no value`, `write --${bool[1]} alone`);
    throw new UsageError(err.message.split('\n')[0]!);
  }
  // an option given twice is a conflict, not "the last one wins" (--backends 3 --backends 4 ran
  // with 4, silently); a list option adds up, and a flag said twice is said once
  const seen = new Map<string, string[]>();
  for (const t of r.tokens ?? []) {
    if (t.kind !== 'option') continue;
    const o = spec.options[t.name];
    if (!o || o.type === 'list' || o.type === 'boolean') continue;
    seen.set(t.name, [...(seen.get(t.name) ?? []), t.value ?? '']);
  }
  for (const [n, vals] of seen) {
    if (vals.length > 1) throw new UsageError(`--${n} is given ${vals.length} times (${vals.map((v) => JSON.stringify(v)).join(', ')})`, `give --${n} once`);
  }
  const values: Record<string, unknown> = {};
  for (const [n, o] of Object.entries(spec.options)) {
    const raw = (r.values as Record<string, string | boolean | string[] | undefined>)[n];
    if (raw === undefined) {
      if (o.default !== undefined) values[n] = o.type === 'list' && typeof o.default === 'string' ? convert(n, o, o.default) : o.default;
      continue;
    }
    values[n] = o.type === 'boolean' ? raw : Array.isArray(raw) ? raw.flatMap((x) => convert(n, o, x) as string[]) : convert(n, o, raw as string);
  }
  const pos = r.positionals;
  const p = spec.positionals ?? { max: 0 };
  if (p.min !== undefined && pos.length < p.min) {
    throw new UsageError(`missing ${(p.names ?? []).slice(pos.length, p.min).map((n) => `<${n}>`).join(' ') || 'argument'}`, `usage: ${spec.usage}`);
  }
  if (p.max !== undefined && pos.length > p.max) {
    throw new UsageError(`unexpected argument ${JSON.stringify(pos[p.max])}`, `usage: ${spec.usage}`);
  }
  const given = (r.tokens ?? []).filter((t) => t.kind === 'option').map((t) => ({ name: (t as { name: string }).name, raw: (t as { value?: string }).value }));
  return { values: values as Values<O>, positionals: pos, rest, given };
}

/** Re-serialise parsed option tokens (e.g. to hand a scenario's options to the runner in a VM). */
export function toArgv(given: Parsed<Opts>['given'], skip: Iterable<string> = []): string[] {
  const s = new Set(skip);
  return given.filter((g) => !s.has(g.name)).flatMap((g) => (g.raw === undefined ? [`--${g.name}`] : [`--${g.name}=${g.raw}`]));
}

/**
 * The indexes of the command's words in argv. Options may come first (`svc --instance qa list`,
 * `lb --instance qa list`): the first words that are not options would make "qa" the command, so
 * the value after an option that takes one is skipped.
 */
export function commandWords(argv: string[], groups: readonly string[], valueOpts: ReadonlySet<string>): number[] {
  const at: number[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a.startsWith('-')) {
      if (/^--[^=]+$/.test(a) && valueOpts.has(a.slice(2))) i++;
      continue;
    }
    at.push(i);
    if (at.length === 2 || !groups.includes(a)) break;
  }
  return at;
}

/** The options of any of these commands that take a value (what commandWords skips). */
export function valueOptions(commands: Record<string, { spec: { options: Opts } }>): Set<string> {
  return new Set(Object.values(commands).flatMap((c) => Object.entries(c.spec.options).filter(([, o]) => o.type !== 'boolean').map(([n]) => n)));
}

/**
 * For tools whose commands are a word ("list") or a group and a word ("backend add"): the command
 * argv's words name (commandWords), and argv without them. null when argv names no command at
 * all; an unknown or incomplete command is a UsageError that says what exists.
 */
export function pickCommand<C extends { spec: { options: Opts } }>(tool: string, argv: string[], commands: Record<string, C>, groups: readonly string[]): { name: string; command: C; rest: string[] } | null {
  const at = commandWords(argv, groups, valueOptions(commands));
  const [w0, w1] = at.map((i) => argv[i]!);
  if (!w0) return null;
  const name = groups.includes(w0) && w1 ? `${w0} ${w1}` : w0;
  const command = commands[name];
  if (!command) {
    if (groups.includes(w0) && !w1) throw new UsageError(`${tool} ${w0} needs a subcommand`, Object.keys(commands).filter((k) => k.startsWith(`${w0} `)).map((k) => `pnpm lab ${tool} ${k}`).join(' | '));
    const s = suggest(name, Object.keys(commands));
    throw new UsageError(`unknown ${tool} command "${name}"${s ? ` (did you mean "${s}"?)` : ''}`, `pnpm lab ${tool} --help lists the commands`);
  }
  const used = new Set(at);
  const rest = argv.filter((_, i) => !used.has(i));
  return { name, command, rest };
}
