// `pnpm lab matrix`: every scenario × kernel, then one index.html, junit.xml and matrix.json
// built from the runs' results.json alone. A VM kernel's row is ONE subprocess booting ONE guest
// that runs the row's scenarios one after another (lab/vm/row.ts), each still writing its own
// results.json and report; a host cell is its own `lab run`. Subprocesses rather than
// in-process calls: a crashed or hung row cannot take the others down, and each keeps the
// Ctrl-C/cleanup logic `lab run` already has.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { tryLock, unlock } from '../../common/lockfile.ts';
import { onStopSignals, stopExitCode } from '../../common/signals.ts';
import { mkdir } from 'node:fs/promises';
import { writeFileAtomic } from '../../common/state-file.ts';
import { basename, join, relative, resolve } from 'node:path';
import { parseArgs, suggest, UsageError } from '../../common/args.ts';
import { labCliArgv } from '../../common/dist.ts';
import { resultsProblem, statusOfChecks, type Results } from '../results.ts';
import { escapeHtml, htmlPage, statusBadge } from '../report/html.ts';
import { crossKernelHtml } from '../report/matrix.ts';
import { REPO_ROOT } from './paths.ts';
import { parseKernelSpec, type KernelSpec } from './spec.ts';
import { checkKernel, pickKernel } from './kernels.ts';
import { checkNotARun, checkOutDir } from '../../common/out-dir.ts';

export interface MatrixCell {
  scenario: string;
  kernel: string;
  dir: string;
  exitCode: number | null;
  wallMs: number;
  results?: Results;
  status: string;
  error?: string;
  /** the signal its subprocess died of, if it did */
  killedBy?: string;
}

/** A kernel spec as a directory-name part ("/boot/vmlinuz-x" → "vmlinuz-x"). */
export function kernelSlug(k: string): string {
  return k.split(':')[0]!.split('/').pop()!.replace(/[^A-Za-z0-9._+-]/g, '_');
}

/** One subprocess: a host cell's `lab run`, or a VM row (`lab matrix --row`); its output goes to every cell's log. */
function runUnit(u: Unit, children: Set<ChildProcess>, extra: string[]): Promise<void> {
  const t0 = Date.now();
  const logs = u.cells.map((c) => createWriteStream(`${c.dir}.log`));
  const tag = u.row ? `[${u.kernel}] ` : `[${u.cells[0]!.scenario}@${u.kernel}] `;
  const [node, ...cli] = labCliArgv();
  const args = u.row
    ? [...cli, 'matrix', '--row', '--kernels', u.kernel, '--scenarios', u.cells.map((c) => c.scenario).join(','), '--out', u.outDir, ...(extra.length ? ['--', ...extra] : [])]
    : [...cli, 'run', u.cells[0]!.scenario, '--kernel', u.kernel, '--out', u.cells[0]!.dir, ...extra];
  return new Promise((res) => {
    // detached: the subprocess leads a process group of its own, so a stop reaches it once, from
    // the matrix (onSig below). In the terminal's group it got a Ctrl-C twice, the terminal's and the
    // matrix's, and a row takes a second stop for "kill the guest now": the cell lost its checks.
    // stdin: a pipe never written, whose end tells the subprocess the matrix is gone (stopWithParent)
    const p = spawn(node!, args, { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: { ...process.env, EBPF_LAB_STOP_WITH_PARENT: '1' } });
    children.add(p);
    const pipe = (d: Buffer) => {
      for (const l of logs) l.write(d);
      for (const l of d.toString().split('\n')) if (l.trim()) process.stderr.write(`${tag}${l.replace(/\r|\x1b\[K/g, '')}\n`);
    };
    p.stdout.on('data', pipe);
    p.stderr.on('data', pipe);
    p.on('error', (e) => { for (const c of u.cells) c.error = String(e); });
    p.on('close', (code, signal) => {
      children.delete(p);
      for (const c of u.cells) {
        c.exitCode = code;
        c.wallMs = Date.now() - t0;
        if (signal) c.killedBy = signal;
      }
      for (const l of logs) l.end();
      res();
    });
  });
}

interface Unit { kernel: string; row: boolean; cells: MatrixCell[]; outDir: string }

export function readCell(cell: MatrixCell): void {
  const f = join(cell.dir, 'results.json');
  if (existsSync(f)) {
    try {
      const r = JSON.parse(readFileSync(f, 'utf8')) as unknown;
      // a results.json of the wrong shape is no result: a bare {"status":"pass"} counted as PASS
      const problem = resultsProblem(r);
      if (problem) throw new Error(problem);
      cell.results = r as Results;
      cell.status = cell.results.status;
      cell.error = cell.results.error; // the run's own account, over how its subprocess ended
      // a status its own checks contradict is not taken on trust: --report-only merges results
      // from elsewhere (CI shards), and "pass" with a failed check, or with none, showed as a pass
      const told = statusOfChecks(cell.results.checks);
      if ((cell.status === 'pass' || cell.status === 'unsupported') && told !== cell.status) {
        cell.error = `its results.json says ${cell.status}, but its checks say ${told === 'error' ? 'nothing (none ran)' : told}`;
        cell.status = told;
      }
      // a row killed after its guest wrote results, before the host's part (VM facts, the report)
      if (cell.killedBy && !existsSync(join(cell.dir, 'report.html'))) {
        cell.status = 'error';
        cell.error = `its subprocess was killed by ${cell.killedBy} after the guest's run wrote its results (the checks stand; the VM facts and the report are missing)`;
      }
      return;
    } catch (e) {
      cell.error = `unreadable results.json: ${(e as Error).message}`;
    }
  }
  cell.status = 'error';
  // a subprocess that died of a signal wrote no results: said as such
  const log = existsSync(`${cell.dir}.log`) ? `; see ${basename(cell.dir)}.log` : '';
  cell.error ??= cell.killedBy ? `its subprocess was killed by ${cell.killedBy} before it wrote results${log}` : cell.exitCode === null && !log ? 'not run' : `no results.json (exit code ${cell.exitCode})${log}`;
}

const fmtS = (ms: unknown) => (typeof ms === 'number' ? `${(ms / 1000).toFixed(1)} s` : '—');

/**
 * A cell's time, one definition everywhere (index, junit, --report-only): the run's wall time
 * as its results.json records it (for a VM run: boot + guest + report, measured on the host);
 * the subprocess's wall time only when the run wrote no results.
 */
export function cellMs(c: MatrixCell): number {
  return c.results?.durationMs ?? c.wallMs;
}

const vmOf = (c: MatrixCell | undefined) => (c?.results?.environment.vm ?? {}) as Record<string, unknown>;
const num = (v: unknown) => (typeof v === 'number' ? v : undefined);

/** The accelerator a cell ran under, "tcg (KVM fell back)" when a KVM boot had to be redone. */
export function cellAccel(c: MatrixCell): string {
  const vm = vmOf(c);
  if (!vm.accel) return c.results?.environment.target === 'host' ? 'native' : '—';
  return `${String(vm.accel)}${vm.accelFallback ? ' (KVM boot failed → TCG)' : ''}`;
}

export function matrixHtml(cells: MatrixCell[], scenarios: string[], kernels: string[], outDir: string, started: string, totalMs?: number): string {
  const at = (s: string, k: string) => cells.find((c) => c.scenario === s && c.kernel === k);
  const rel = (c: MatrixCell) => c.dir.slice(outDir.length + 1);
  const counts = ['pass', 'fail', 'unsupported', 'error'].map((s) => `<b class="${s}">${cells.filter((c) => c.status === s).length}</b> ${s}`).join(' · ');
  let h = `<h1>Kernel matrix ${statusBadge(cells.every((c) => c.status === 'pass' || c.status === 'unsupported') ? 'pass' : 'fail')}</h1>`;
  h += `<p class="meta"><span>started <b>${escapeHtml(started)}</b></span><span>${scenarios.length} scenario(s) × ${kernels.length} kernel(s)</span>${totalMs !== undefined ? `<span>wall time <b>${fmtS(totalMs)}</b></span>` : ''}</p><p class="summary">${counts}</p>`;

  h += '<h2>Results</h2><div class="tablewrap"><table><thead><tr><th>scenario</th>';
  for (const k of kernels) {
    const any = cells.find((c) => c.kernel === k && c.results);
    const rel2 = any?.results?.environment.kernel.release;
    h += `<th>${escapeHtml(k)}${rel2 ? `<br><span class="muted">${escapeHtml(rel2)}</span>` : ''}</th>`;
  }
  h += '</tr></thead><tbody>';
  for (const s of scenarios) {
    h += `<tr><th scope="row">${escapeHtml(s)}</th>`;
    for (const k of kernels) {
      const c = at(s, k);
      if (!c) { h += '<td class="muted">—</td>'; continue; }
      const checks = c.results?.checks ?? [];
      const unsup = checks.filter((x) => x.status === 'unsupported').map((x) => `${x.name}: ${x.detail ?? ''} ${x.evidence ?? ''}`.trim());
      const title = c.error ?? (unsup.length ? unsup.join('\n') : `${checks.filter((x) => x.status === 'pass').length}/${checks.length} checks passed`);
      // a cell that never ran has neither: no link to a file that is not there
      const link = existsSync(join(c.dir, 'report.html')) ? `${rel(c)}/report.html` : existsSync(`${c.dir}.log`) ? `${rel(c)}.log` : null;
      const vm = vmOf(c);
      const row = vm.row as { sharedBoot?: boolean } | undefined;
      const boot = typeof vm.bootMs === 'number' ? (row?.sharedBoot ? 'same VM' : `boot ${fmtS(vm.bootMs)}`) : '';
      const parts = ` <span class="muted">(${escapeHtml(cellAccel(c))}${boot ? `, ${boot}` : ''}${typeof vm.inGuestMs === 'number' ? `, guest ${fmtS(vm.inGuestMs)}` : ''})</span>`;
      h += `<td title="${escapeHtml(title)}">${link ? `<a href="${escapeHtml(link)}">${statusBadge(c.status)}</a>` : statusBadge(c.status)}<br><span class="muted">${fmtS(cellMs(c))}</span>${parts}</td>`;
    }
    h += '</tr>';
  }
  h += '</tbody></table></div>';
  // the figures each scenario declared, and the security scenario's attacks, kernel by kernel
  h += crossKernelHtml(cells.map((c) => ({ scenario: c.scenario, kernel: c.kernel, results: c.results, link: existsSync(join(c.dir, 'report.html')) ? `${rel(c)}/report.html` : undefined })), kernels);

  // per-kernel environment: accel, versions, and where boot-to-ready and the run time go
  h += '<h2>Kernels</h2><p class="muted">boot-to-ready = QEMU start (until the guest kernel\'s clock starts) + kernel (until /init) + init + root mount (9p/virtiofs); runner start = node start → runner ready in the guest (median over the row); one VM serves all scenarios of a kernel\'s row.</p>';
  h += '<div class="tablewrap"><table><thead><tr><th>kernel</th><th>release</th><th>Debian version</th><th>target</th><th>accel</th><th>QEMU start</th><th>kernel</th><th>init</th><th>root mount</th><th>boot-to-ready</th><th>boots</th><th>runner start</th><th>scenarios (in guest)</th><th>run total (all scenarios)</th><th>boot log</th></tr></thead><tbody>';
  for (const k of kernels) {
    const mine = cells.filter((x) => x.kernel === k);
    const c = mine.find((x) => x.results) ?? mine[0];
    const env = c?.results?.environment;
    const vm = vmOf(c);
    const ph = (vm.boot ?? {}) as Partial<Record<'qemuMs' | 'kernelMs' | 'initMs' | 'mountMs', number>>;
    const starts = mine.map((x) => num(vmOf(x).runnerStartMs)).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
    const inGuest = mine.reduce((a, x) => a + (num(vmOf(x).inGuestMs) ?? 0), 0);
    const boots = vm.bootMs !== undefined ? mine.filter((x) => vmOf(x).row && !(vmOf(x).row as { sharedBoot?: boolean }).sharedBoot).length || 1 : undefined;
    const accels = [...new Set(mine.filter((x) => x.results).map(cellAccel))].join(', ');
    const boot = c && vm.bootLog ? `<a href="${escapeHtml(`${rel(c)}/${String(vm.bootLog)}`)}">${escapeHtml(String(vm.bootLog))}</a>` : '—';
    h += `<tr><th scope="row">${escapeHtml(k)}</th><td>${escapeHtml(env?.kernel.release ?? '?')}</td><td>${escapeHtml(String(vm.kernelVersion ?? env?.kernel.version ?? '—'))}</td><td>${escapeHtml(env?.target ?? '?')}</td>` +
      `<td title="${escapeHtml(String(vm.accelNote ?? ''))}">${escapeHtml(accels || '—')}</td>` +
      `<td class="num">${fmtS(ph.qemuMs)}</td><td class="num">${fmtS(ph.kernelMs)}</td><td class="num">${fmtS(ph.initMs)}</td><td class="num">${fmtS(ph.mountMs)}</td><td class="num">${fmtS(vm.bootMs)}</td><td class="num">${boots ?? '—'}</td>` +
      `<td class="num">${fmtS(starts[Math.floor(starts.length / 2)])}</td><td class="num">${vm.bootMs !== undefined ? fmtS(inGuest) : '—'}</td><td class="num">${fmtS(mine.reduce((a, x) => a + cellMs(x), 0))}</td><td>${boot}</td></tr>`;
  }
  h += '</tbody></table></div>';

  // feature probes: union of probe names, one column per kernel
  const probes = new Map<string, Record<string, { ok: boolean; detail?: string }>>();
  for (const k of kernels) {
    const c = cells.find((x) => x.kernel === k && x.results?.environment.probes);
    if (c?.results?.environment.probes) probes.set(k, c.results.environment.probes);
  }
  const names = [...new Set([...probes.values()].flatMap((p) => Object.keys(p)))].sort();
  h += '<h2>Feature probes</h2>';
  if (!names.length) h += '<p class="muted">(no run recorded probes)</p>';
  else {
    h += `<div class="tablewrap"><table><thead><tr><th>probe</th>${kernels.map((k) => `<th>${escapeHtml(k)}</th>`).join('')}</tr></thead><tbody>`;
    for (const n of names) {
      h += `<tr><th scope="row">${escapeHtml(n)}</th>`;
      for (const k of kernels) {
        const p = probes.get(k)?.[n];
        h += p ? `<td class="${p.ok ? 'yes' : 'no'}" title="${escapeHtml(p.detail ?? '')}">${p.ok ? '✓' : '✗'}${p.detail && !p.ok ? ` <span class="muted">${escapeHtml(p.detail.slice(0, 60))}</span>` : ''}</td>` : '<td class="muted">—</td>';
      }
      h += '</tr>';
    }
    h += '</tbody></table></div>';
  }

  // kernel config facts for VM kernels
  const cfg = kernels.map((k) => [k, (cells.find((x) => x.kernel === k && x.results?.environment.vm)?.results?.environment.vm as Record<string, unknown> | undefined)?.config as Record<string, string> | undefined] as const).filter(([, c]) => c);
  if (cfg.length) {
    const keys = ['BTF', 'BPF_LSM', 'LSM', 'KPROBES', 'FPROBE', 'XDP_SOCKETS', 'NET_CLS_BPF', 'VETH', 'NET_9P', 'VIRTIO_FS'];
    h += `<h2>Kernel config (VM kernels)</h2><div class="tablewrap"><table><thead><tr><th>CONFIG_</th>${cfg.map(([k]) => `<th>${escapeHtml(k)}</th>`).join('')}</tr></thead><tbody>`;
    for (const key of keys) h += `<tr><th scope="row">${key}</th>${cfg.map(([, c]) => `<td>${escapeHtml(c![key] ?? '—')}</td>`).join('')}</tr>`;
    h += '</tbody></table></div>';
  }
  h += `<footer>ebpf-lab matrix · junit: <a href="junit.xml">junit.xml</a></footer>`;
  return htmlPage('ebpf-lab kernel matrix', h);
}

const xa = (s: string) => escapeHtml(s).replace(/\n/g, '&#10;');

export function junitXml(cells: MatrixCell[], kernels: string[]): string {
  let x = '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="ebpf-lab matrix">\n';
  for (const k of kernels) {
    const cs = cells.filter((c) => c.kernel === k);
    const unsup = (c: MatrixCell) => (c.results?.checks ?? []).filter((ch) => ch.status === 'unsupported');
    const n = (s: string) => cs.filter((c) => c.status === s).length;
    const time = cs.reduce((a, c) => a + cellMs(c), 0) / 1000;
    const tests = cs.length + cs.reduce((a, c) => a + unsup(c).length, 0);
    const skipped = cs.reduce((a, c) => a + unsup(c).length, 0);
    x += `  <testsuite name="kernel ${xa(k)}" tests="${tests}" failures="${n('fail')}" errors="${n('error')}" skipped="${skipped}" time="${time.toFixed(3)}">\n`;
    for (const c of cs) {
      const cls = `ebpf-lab.${xa(kernelSlug(k))}`;
      x += `    <testcase classname="${cls}" name="${xa(c.scenario)}" time="${(cellMs(c) / 1000).toFixed(3)}">`;
      const checks = c.results?.checks ?? [];
      const failed = checks.filter((ch) => ch.status === 'fail').map((ch) => `${ch.name}: ${ch.detail ?? ''}`);
      if (c.status === 'fail') x += `<failure message="${xa(failed[0] ?? c.error ?? 'failed')}">${xa(failed.join('\n'))}</failure>`;
      else if (c.status === 'error') x += `<error message="${xa((c.error ?? 'error').split('\n')[0]!)}">${xa(c.error ?? '')}</error>`;
      // a cell whose only non-pass checks are unsupported passed what it could run: those checks are
      // skipped testcases of their own below, the cell keeps its passes
      x += `<system-out>${xa(checks.map((ch) => `${ch.status.padEnd(11)} ${ch.name}${ch.detail ? ` — ${ch.detail}` : ''}`).join('\n'))}</system-out></testcase>\n`;
      for (const u of unsup(c)) {
        // detail already reads "unsupported: <feature> on <kernel>"
        const msg = `${u.detail ?? `unsupported: ${u.name}`}${u.evidence ? ` (${u.evidence})` : ''}`;
        x += `    <testcase classname="${cls}" name="${xa(`${c.scenario}: ${u.name}`)}" time="0"><skipped message="${xa(msg)}"/></testcase>\n`;
      }
    }
    x += '  </testsuite>\n';
  }
  return `${x}</testsuites>\n`;
}

export async function writeMatrixReport(cells: MatrixCell[], scenarios: string[], kernels: string[], outDir: string, started: string, totalMs?: number): Promise<void> {
  // each file whole or not at all: a rebuild (rebuildMatrixIndex) may meet a reader
  const put = (f: string, text: string) => writeFileAtomic(join(outDir, f), text);
  put('index.html', matrixHtml(cells, scenarios, kernels, outDir, started, totalMs));
  put('junit.xml', junitXml(cells, kernels));
  // paths relative to the matrix directory: the directory can be moved, archived or published
  put('matrix.json', JSON.stringify(cells.map(({ results, ...c }) => ({ ...c, dir: relative(outDir, c.dir), durationMs: cellMs({ ...c, results }), vm: results?.environment.vm })), null, 2));
}

export const MATRIX_SPEC = {
  usage: 'pnpm lab matrix --scenarios A,B [--kernels 5.10,6.1,…] [--out DIR] [--jobs N] [--report-only] [-- run options]',
  summary: 'run every scenario × kernel (one VM per kernel for all its scenarios), then index.html, junit.xml and matrix.json built from the runs\' results.json',
  options: {
    scenarios: { type: 'list', valueName: 'A,B', description: 'scenarios to run (pnpm lab list)' },
    kernels: { type: 'list', valueName: 'K,K', default: '5.10,6.1,6.12,7.x,host', description: 'kernels: host, series, Debian versions or bzImage paths' },
    out: { type: 'string', valueName: 'DIR', description: 'matrix directory (default reports/matrix-<time>)' },
    jobs: { type: 'int', min: 1, max: 8, default: 1, valueName: 'N', description: 'cells run at once' },
    'report-only': { type: 'boolean', description: 'rebuild index.html/junit.xml from the runs already in --out (CI shards)' },
    row: { type: 'boolean', hidden: true, description: 'run the scenarios of ONE VM kernel in one guest into --out (the matrix\'s own subprocess)' },
  },
  epilog: 'options after "--" go to every run, e.g. -- --duration 2',
} as const;

/**
 * The runs already in a matrix directory, by what their results.json says (--report-only without
 * --scenarios/--kernels). A cell's kernel is the --kernel it ran with when that names its
 * directory, else the directory's own kernel part, so the cell is found again by its dir name.
 */
export function runsInDir(outDir: string, known: readonly string[] = []): { scenario: string; kernel: string }[] {
  const found: { scenario: string; kernel: string }[] = [];
  for (const e of readdirSync(outDir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (!e.isDirectory()) continue;
    const file = join(outDir, e.name, 'results.json');
    if (!existsSync(file)) continue;
    let r: Partial<Results> = {};
    try {
      const v = JSON.parse(readFileSync(file, 'utf8')) as unknown;
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) r = v as Partial<Results>;
    } catch {
      /* a run cut short mid-write: its cell is an error (readCell), found by its directory's name */
    }
    // (the longest known scenario name the directory starts with: its results.json may not say)
    const scenario = typeof r.scenario === 'string' ? r.scenario : [...known].sort((a, b) => b.length - a.length).find((s) => e.name.startsWith(`${s}-`));
    if (typeof scenario !== 'string' || !e.name.startsWith(`${scenario}-`)) continue;
    const slug = e.name.slice(scenario.length + 1);
    const spec = r.environment?.kernel?.spec;
    found.push({ scenario, kernel: typeof spec === 'string' && kernelSlug(spec) === slug ? spec : slug });
  }
  return found;
}

/** The cells --report-only rebuilds: the ones named, else the ones the directory holds. */
function reportOnlyCells(out: string, scenarios: string[] | undefined, kernels: string[] | undefined, known: readonly string[]): { scenarios: string[]; kernels: string[]; present: (s: string, k: string) => boolean } {
  const outDir = resolve(out);
  const fix = 'point --out at a matrix directory: its <scenario>-<kernel>/ dirs hold the runs\' results.json';
  if (!existsSync(outDir)) throw new UsageError(`no runs in ${out}: no such directory`, fix);
  if (!statSync(outDir).isDirectory()) throw new UsageError(`no runs in ${out}: not a directory`, fix);
  const runs = runsInDir(outDir, known).filter((r) => (!scenarios || scenarios.includes(r.scenario)) && (!kernels || kernels.map(kernelSlug).includes(kernelSlug(r.kernel))));
  const present = (s: string, k: string) => [join(outDir, `${s}-${kernelSlug(k)}`, 'results.json'), join(outDir, `${s}-${kernelSlug(k)}.log`)].some((f) => existsSync(f));
  const ss = scenarios ?? [...new Set(runs.map((r) => r.scenario))];
  const ks = kernels ?? [...new Set(runs.map((r) => r.kernel))];
  // a cell with only a log (its run crashed) is still a run to report; nothing at all is not
  if (!ss.some((s) => ks.some((k) => present(s, k)))) {
    const which = [scenarios && `of ${scenarios.join(',')}`, kernels && `on ${kernels.join(',')}`].filter(Boolean).join(' ');
    throw new UsageError(`no runs${which ? ` ${which}` : ''} in ${out}`, fix);
  }
  return { scenarios: ss, kernels: ks, present };
}

/**
 * A finished matrix's index.html, junit.xml and matrix.json, rebuilt after a later run wrote the
 * reports of cells a kill cut short (their index said "no results"): the cells matrix.json lists,
 * each re-read where it now has results, the others as recorded (a cell never run stays so).
 * Undefined where the directory holds no matrix.json: not a matrix, or one that never finished
 * (`matrix --report-only` builds an index from its runs), so a run's own --out nested in another
 * directory, or a live matrix, is never written over.
 */
export async function rebuildMatrixIndex(outDir: string): Promise<MatrixCell[] | undefined> {
  let recorded: unknown;
  try {
    recorded = JSON.parse(readFileSync(join(outDir, 'matrix.json'), 'utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(recorded)) return undefined;
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const cells: MatrixCell[] = recorded.flatMap((c: Record<string, unknown>): MatrixCell[] => {
    const scenario = str(c?.scenario);
    const kernel = str(c?.kernel);
    const dir = str(c?.dir);
    if (!scenario || !kernel || !dir) return [];
    return [{ scenario, kernel, dir: resolve(outDir, dir), exitCode: typeof c.exitCode === 'number' ? c.exitCode : null, wallMs: typeof c.wallMs === 'number' ? c.wallMs : 0, status: str(c.status) ?? 'error', error: str(c.error), killedBy: str(c.killedBy) }];
  });
  if (!cells.length) return undefined;
  for (const c of cells) if (existsSync(join(c.dir, 'results.json'))) readCell(c);
  const started = cells.map((c) => c.results?.startedAt).filter((t): t is string => !!t).sort()[0] ?? new Date().toISOString();
  await writeMatrixReport(cells, [...new Set(cells.map((c) => c.scenario))], [...new Set(cells.map((c) => c.kernel))], outDir, started);
  return cells;
}

/**
 * Claim a matrix directory for as long as a matrix writes there: common/lockfile.ts's lock
 * (`matrix.running.json`: holder by pid and start time, a dead holder's taken over). Returns its
 * release.
 */
function claimMatrixDir(dir: string): () => void {
  const f = join(dir, 'matrix.running.json');
  const held = tryLock(f);
  if (held !== true) throw new UsageError(`--out ${dir} is in use by another matrix (pid ${held})`, 'give another directory, or wait for that matrix to finish');
  return () => unlock(f);
}

/**
 * Two --kernels that are one kernel spelled two ways (a series and its version, a version and its
 * release, a path and a link to it): their rows would boot the same kernel twice, into two cell
 * directories. As resolution picks them, without fetching; a kernel that cannot be picked now is
 * left to its row, which says why.
 */
async function oneKernelTwice(specs: Map<string, KernelSpec>): Promise<{ first: string; again: string; what: string } | undefined> {
  const seen = new Map<string, string>();
  for (const [text, k] of specs) {
    let what: string;
    try {
      if (k.kind === 'host') what = 'the host';
      else if (k.kind === 'image') what = realpathSync(resolve(k.path)) + (k.modules ? ` with the modules of ${realpathSync(resolve(k.modules))}` : '');
      else {
        const p = await pickKernel(k);
        what = 'cached' in p ? p.cached.version : p.candidate.version;
      }
    } catch {
      continue;
    }
    const first = seen.get(what);
    if (first !== undefined) return { first, again: text, what };
    seen.set(what, text);
  }
  return undefined;
}

export async function matrixCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, MATRIX_SPEC);
  if (!p) return 0;
  const given = new Set(p.given.map((g) => g.name));
  const reportOnly = p.values['report-only'] === true;
  let onlyPresent: ((s: string, k: string) => boolean) | undefined;
  let kernels = p.values.kernels ?? [];
  let scenarios = p.values.scenarios ?? [];
  const { listScenarios } = await import('../run.ts');
  for (const s of scenarios) {
    if (listScenarios().includes(s)) continue;
    const m = suggest(s, listScenarios());
    throw new UsageError(`unknown scenario ${JSON.stringify(s)}${m ? ` (did you mean ${m}?)` : ''}`, `available: ${listScenarios().join(', ')}`);
  }
  // a cell named twice (or two kernels that make one directory) would be two runs into one dir,
  // or (--report-only) one run counted twice
  const dupS = scenarios.find((x, i) => scenarios.indexOf(x) !== i);
  if (dupS) throw new UsageError(`--scenarios names ${dupS} twice`, 'name each scenario once');
  const slugs = kernels.map(kernelSlug);
  const dupAt = slugs.findIndex((x, i) => slugs.indexOf(x) !== i);
  if (dupAt >= 0) {
    const [first, again] = [kernels[slugs.indexOf(slugs[dupAt]!)]!, kernels[dupAt]!];
    throw new UsageError(`--kernels names ${JSON.stringify(first)}${first === again ? ' twice' : ` and ${JSON.stringify(again)}, which share a directory name`}`, 'name each kernel once');
  }
  if (reportOnly) {
    if (!p.values.out) throw new UsageError('--report-only needs --out <dir with the runs>', 'e.g. pnpm lab matrix --report-only --out reports/matrix-<time>');
    // the runs may come from other machines (CI shards): their kernels are not checked here
    const found = reportOnlyCells(p.values.out, given.has('scenarios') ? scenarios : undefined, given.has('kernels') ? kernels : undefined, listScenarios());
    ({ scenarios, kernels } = found);
    // neither named: the cells are the runs the directory holds, not every scenario × kernel
    // (a directory of uneven runs got error cells for combinations never run)
    if (!given.has('scenarios') && !given.has('kernels')) onlyPresent = found.present;
  } else if (!scenarios.length) throw new UsageError('matrix needs --scenarios', 'e.g. pnpm lab matrix --kernels 6.1,host --scenarios hello-openat');
  const jobs = p.values.jobs ?? 1;
  // parsed once here; cells keep the text as given (matrix.json, directory names)
  const specs = new Map<string, KernelSpec>(kernels.map((k) => [k, parseKernelSpec(k)]));
  const started = new Date().toISOString();
  const t0 = Date.now();
  if (p.values.row) {
    if (!p.values.out || kernels.length !== 1) throw new UsageError('--row needs --out and exactly one kernel');
    return matrixRow(specs.get(kernels[0]!)!, scenarios, resolve(p.values.out), p.rest);
  }
  const extra = p.rest;
  if (!reportOnly) {
    // everything a cell would refuse is refused here, before a directory, a fetch or a boot:
    // otherwise each mistake costs a matrix directory of ERROR cells and exit 1
    const own = extra.find((a) => /^--(kernel|out|spec)(=|$)/.test(a));
    if (own) throw new UsageError(`${own.split('=')[0]} after "--": the matrix sets it for every cell`, 'use matrix --kernels K,K and --out DIR');
    const { parseRunArgs } = await import('../run.ts');
    for (const s of scenarios) if (!(await parseRunArgs([s, ...extra], 'run'))) return 0;
    if (p.values.out !== undefined) {
      checkOutDir(p.values.out, { example: '--out /tmp/matrix' });
      // a run's own directory: the index, junit and cells went in beside its report
      const held = ['results.json', 'running.json', 'report.html'].find((f) => existsSync(join(resolve(p.values.out!), f)));
      if (held) throw new UsageError(`--out ${p.values.out} holds a run (${held}): a matrix writes into a directory of its own`, 'give a new directory, e.g. --out /tmp/matrix');
    }
    // any of this matrix's cells already run (a matrix killed outright has no matrix.json): each
    // cell's run would refuse it, and the old results read back as this matrix's; and another
    // matrix's directory, whose cells would be written over
    if (p.values.out !== undefined) for (const s of scenarios) for (const k of kernels) checkNotARun(join(resolve(p.values.out), `${s}-${kernelSlug(k)}`));
    if (p.values.out !== undefined && existsSync(join(resolve(p.values.out), 'matrix.json'))) throw new UsageError(`--out ${p.values.out} already holds a matrix (matrix.json): a matrix does not write over another`, 'give a new directory (or remove that matrix\'s first); matrix --report-only rebuilds its index');
    for (const k of specs.values()) await checkKernel(k);
    const twice = await oneKernelTwice(specs);
    if (twice) throw new UsageError(`--kernels names ${JSON.stringify(twice.first)} and ${JSON.stringify(twice.again)}, which are one kernel (${twice.what}): two rows would boot it`, 'name each kernel once');
  }
  const outDir = resolve(p.values.out ?? join(REPO_ROOT, 'reports', `matrix-${started.replace(/[:.]/g, '-')}`));
  if (!reportOnly) await mkdir(outDir, { recursive: true });
  // claimed for as long as this matrix writes into it: two matrices into one --out both ran, and
  // the second's index left the first's cells out (review, session 58)
  const releaseClaim = claimMatrixDir(outDir);

  // kernel-major order: runs of one kernel are adjacent, so a fetch is paid once, before its runs
  const cells: MatrixCell[] = kernels.flatMap((k) => scenarios.filter((s) => !onlyPresent || onlyPresent(s, k)).map((s) => ({ scenario: s, kernel: k, dir: join(outDir, `${s}-${kernelSlug(k)}`), exitCode: null, wallMs: 0, status: 'pending' })));
  // a VM kernel's row is one unit (one guest for all its scenarios); a host cell is a unit of its own
  const units: Unit[] = kernels.flatMap((k): Unit[] => {
    const mine = cells.filter((c) => c.kernel === k);
    return specs.get(k)!.kind === 'host' ? mine.map((c) => ({ kernel: k, row: false, cells: [c], outDir })) : [{ kernel: k, row: true, cells: mine, outDir }];
  });
  const children = new Set<ChildProcess>();
  let interrupted = false;
  let stoppedBy: string | undefined;
  const onSig = (sig: NodeJS.Signals) => {
    interrupted = true;
    stoppedBy ??= sig;
    // each `lab run` / row cleans up on a stop (kills its VM, removes netns …) and writes ERROR
    // reports; passed on as it came, so a cell's stoppedBy names the signal the matrix got
    for (const c of children) c.kill(sig);
  };
  const offSignals = onStopSignals(onSig);
  let totalMs = 0;
  // out of the terminal's group, a subprocess no longer gets the Ctrl-C of a matrix that died
  // before passing it on (an uncaught error): it is stopped as the matrix exits
  const onExit = () => onSig('SIGINT');
  process.on('exit', onExit);
  try {
    let next = 0;
    const worker = async () => {
      while (!interrupted && next < units.length) {
        const u = units[next++]!;
        const what = u.row ? `${u.cells.map((c) => c.scenario).join(', ')} on ${u.kernel} (one VM)` : `${u.cells[0]!.scenario} on ${u.kernel}`;
        // counted in units (a VM row runs several cells in one guest), said as such
        process.stderr.write(`=== ${what} (${u.row ? 'row' : 'cell'} ${next} of ${units.length}${units.length !== cells.length ? `; ${cells.length} cells in all` : ''})\n`);
        await runUnit(u, children, extra);
        for (const c of u.cells) readCell(c);
        process.stderr.write(`=== ${u.cells.map((c) => `${c.scenario} on ${c.kernel}: ${c.status.toUpperCase()} in ${fmtS(cellMs(c))}`).join('; ')}\n`);
      }
    };
    if (reportOnly) {
      for (const c of cells) readCell(c);
    } else await Promise.all(Array.from({ length: Math.min(jobs, units.length) }, worker));
    for (const c of cells) if (c.status === 'pending') { c.status = 'error'; c.error = 'not run (interrupted)'; }
    // one reading for the index and the line (two had printed 338.5 s beside the index's 338.4 s)
    const wallMs = Date.now() - t0;
    // still under the stop handler: a stop now is recorded, not the default exit in the middle of
    // writing the three files
    await writeMatrixReport(cells, scenarios, kernels, outDir, started, reportOnly ? undefined : wallMs);
    totalMs = wallMs;
  } finally {
    offSignals();
    process.off('exit', onExit);
    releaseClaim();
  }
  const wallMs = totalMs;
  console.log(`matrix: ${join(outDir, 'index.html')}${reportOnly ? '' : ` (${fmtS(wallMs)})`}`);
  for (const k of kernels) console.log(`  ${k.padEnd(8)} ${cells.filter((c) => c.kernel === k).map((c) => `${c.scenario}=${c.status}`).join(' ')}`);
  if (cells.every((c) => c.status === 'pass' || c.status === 'unsupported')) return 0;
  return stopExitCode(stoppedBy) ?? 1; // stopped: 128 + the signal (lab/run.ts runOrBench does the same)
}

/** `matrix --row`: the scenarios of one VM kernel in one guest, into the matrix's cell dirs. */
async function matrixRow(kernel: KernelSpec, scenarios: string[], outDir: string, extra: string[]): Promise<number> {
  if (kernel.kind === 'host') throw new UsageError('--row runs a VM kernel', 'host cells run as `lab run`');
  const { parseRunArgs, rowHooks } = await import('../run.ts');
  const { runVmRow } = await import('./row.ts');
  const { createProgress } = await import('../../common/progress.ts');
  // each scenario validates the shared run options itself, before the guest boots
  const cells = [];
  let timeoutS: number | undefined; // -- --timeout S: per cell, the same for all
  for (const s of scenarios) {
    const a = await parseRunArgs([s, '--out', join(outDir, `${s}-${kernelSlug(kernel.text)}`), ...extra], 'run');
    if (!a) return 0;
    timeoutS = a.timeoutS;
    cells.push({ scenario: s, outDir: a.outDir, options: a.options, rest: a.rest, wire: a.wire });
  }
  const runs = await runVmRow({ mode: 'run', kernel, cells, ...(timeoutS ? { timeoutMs: timeoutS * 1000 } : {}) }, createProgress(), rowHooks);
  for (const r of runs) console.log(`${r.results.scenario} on ${r.results.environment.kernel.release} (${kernel.text}): ${r.results.status.toUpperCase()}`);
  return runs.every((r) => r.results.status === 'pass' || r.results.status === 'unsupported') ? 0 : 1;
}
