// The run report: results.json → one self-contained report.html (inline CSS, charts as inline
// PNG, no scripts, no network). Rendering uses the JSON alone, so any run can be re-rendered.
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { UsageError } from '../../common/args.ts';
import { LabError } from '../../common/errors.ts';
import { oneLine } from '../../common/printable.ts';
import { writeFileAtomic } from '../../common/state-file.ts';
import { accelLabel, resultsProblem, vmAccel, type Block, type Check, type Environment, type Headline, type Results, type RunContext, type Section } from '../results.ts';
import { CHART_HEIGHT, CHART_WIDTH, chartPng, type ChartBlock } from './chart.ts';
import { betterText, cellHtml, escapeHtml, formatBytes, formatDuration, formatNumber, htmlPage, kvTable, statusBadge, valueHtml } from './html.ts';

export { chartPng, chartFont, CHART_WIDTH, CHART_HEIGHT, PIXEL_RATIO, type ChartBlock } from './chart.ts';
export { escapeHtml, htmlPage, formatNumber, formatBytes, formatDuration, cellHtml, kvTable, statusBadge } from './html.ts';

/** a chart as a <figure> with the PNG inlined; a chart that fails to render shows its data instead */
export async function chartHtml(block: ChartBlock): Promise<string> {
  try {
    const uri = await chartPng(block, CHART_WIDTH, CHART_HEIGHT);
    return `<figure><img src="${uri}" width="${CHART_WIDTH}" height="${CHART_HEIGHT}" alt="${escapeHtml(block.title)}"></figure>`;
  } catch (err) {
    const rows = block.labels.map((l, i) => [l, ...block.datasets.map((d) => d.data[i] ?? null)]);
    return (
      `<div class="error-box">chart “${escapeHtml(block.title)}” could not be rendered: ${escapeHtml(String((err as Error)?.message ?? err))}</div>` +
      tableHtml({ kind: 'table', caption: block.title, columns: [block.xLabel ?? '', ...block.datasets.map((d) => d.label)], rows })
    );
  }
}

function tableHtml(b: Extract<Block, { kind: 'table' }>): string {
  const head = `<thead><tr>${(b.columns ?? []).map((c) => `<th scope="col">${escapeHtml(String(c))}</th>`).join('')}</tr></thead>`;
  const body = `<tbody>${(b.rows ?? []).map((r) => `<tr>${r.map((c) => cellHtml(c)).join('')}</tr>`).join('')}</tbody>`;
  return `<div class="tablewrap"><table>${b.caption ? `<caption>${escapeHtml(b.caption)}</caption>` : ''}${head}${body}</table></div>`;
}

function textHtml(text: string): string {
  return String(text ?? '')
    .split(/\n\s*\n/)
    .filter((p) => p.trim() !== '')
    .map((p) => `<p>${escapeHtml(p.trim()).replace(/\n/g, '<br>')}</p>`)
    .join('\n');
}

async function blockHtml(b: Block): Promise<string> {
  switch (b?.kind) {
    case 'text':
      return textHtml(b.text);
    case 'kv':
      return kvTable(b.items ?? {});
    case 'table':
      return tableHtml(b);
    case 'chart':
      return chartHtml(b);
    case 'pre':
      return `<figure>${b.caption ? `<figcaption>${escapeHtml(b.caption)}</figcaption>` : ''}<pre>${escapeHtml(String(b.text ?? ''))}</pre></figure>`;
    default:
      // a block kind this renderer does not know (newer schema, hand-edited JSON): show it raw
      return `<p class="muted">unknown block kind “${escapeHtml(String((b as { kind?: unknown })?.kind))}”:</p><pre>${escapeHtml(JSON.stringify(b, null, 2))}</pre>`;
  }
}

function environmentHtml(env: Partial<Environment> | undefined): string {
  if (!env) return '<p class="muted">(no environment recorded)</p>';
  const k = env.kernel;
  const rows: [string, unknown][] = [
    ['kernel', k ? `${k.release}${k.spec && k.spec !== k.release ? `  (--kernel ${k.spec})` : ''}` : null],
  ];
  if (k?.version) rows.push(['kernel version', k.version]);
  rows.push(
    ['target', env.target ?? null],
    ['host name', env.hostname ?? null],
    ['CPU', env.cpu ? `${env.cpu.model} · ${env.cpu.cores} cores` : null],
    ['memory', typeof env.memoryBytes === 'number' ? formatBytes(env.memoryBytes) : null],
    ['node', env.node ?? null],
    ['libbpf', env.libbpf ?? null],
    ['clang', env.clang ?? null],
    ['bpftool', env.bpftool ?? null],
    ['git', env.git ? `${env.git.commit ? env.git.commit.slice(0, 12) : '(no commit)'}${env.git.dirty ? ' + uncommitted changes' : ''}` : null],
  );
  let html = kvTable(rows.filter(([, v]) => v !== undefined));
  if (env.vm && Object.keys(env.vm).length) {
    const { hang, ...vm } = env.vm as Record<string, unknown>;
    html += `<h3>VM</h3>${vmTable(vm)}`;
    // a stuck guest's own account (lab/vm/hang.ts), here as well as in vm-hang.txt: a published
    // report travels without the files beside it
    if (typeof hang === 'string' && hang) html += `<details open><summary>What the stuck guest was doing</summary><pre>${escapeHtml(hang)}</pre></details>`;
  }
  if (env.probes && Object.keys(env.probes).length) {
    const probes = Object.entries(env.probes);
    const ok = probes.filter(([, p]) => p?.ok).length;
    html +=
      `<details><summary>Kernel feature probes: ${ok} of ${probes.length} available</summary>` +
      `<div class="tablewrap"><table><thead><tr><th>feature</th><th>available</th><th>detail</th></tr></thead><tbody>` +
      probes.map(([name, p]) => `<tr><td><code>${escapeHtml(name)}</code></td>${cellHtml(!!p?.ok)}${cellHtml(p?.detail ?? null)}</tr>`).join('') +
      `</tbody></table></div></details>`;
  }
  return html;
}

const VM_LABELS: Record<string, string> = {
  kernelSpec: 'kernel asked for', kernelVersion: 'Debian version', kernelRelease: 'kernel release', kernelSource: 'kernel source', accel: 'acceleration',
  accelNote: 'acceleration note', bootMs: 'boot (host side)', bootRetries: 'boot retries', guestBootMs: 'guest uptime at READY', runMs: 'guest command',
  totalMs: 'VM total', inGuestMs: 'runner in the guest', bootLog: 'boot log', rootfs: 'root file system', net: 'network', cpus: 'vCPUs', memMB: 'memory (MiB)',
  bootModules: 'initramfs modules', config: 'kernel config', hostLoadavg: 'host load average 1/5/15 (before → after)',
  hostOthersCpus: "host: other processes' CPUs on average", hostBusy: 'host busy',
  backend: 'VM backend', vng: 'virtme-ng', vngCommand: 'vng command', bootVsLab: "boot-to-ready: vng vs the lab's own", labBackendBoot: "the lab's own boot (same run)",
  boot: 'boot-to-ready by phase', hangLog: 'what the stuck guest was doing',
};

/** the VM facts as a readable table: durations formatted, lists joined, config as KEY=value lines */
function vmTable(vm: Record<string, unknown>): string {
  const rows: [string, unknown][] = Object.entries(vm).map(([k, v]) => {
    const label = VM_LABELS[k] ?? k;
    if (typeof v === 'number' && /Ms$/.test(k)) return [label, formatDuration(v)];
    if (Array.isArray(v)) return [label, v.map(String).join(', ')];
    if (v && typeof v === 'object') return [label, Object.entries(v as Record<string, unknown>).map(([a, b]) => `${a}=${typeof b === 'object' ? JSON.stringify(b) : String(b)}`).join('\n')];
    return [label, v];
  });
  return `<table class="kv"><tbody>${rows.map(([k, v]) => `<tr><th scope="row">${escapeHtml(k)}</th>${typeof v === 'string' && v.includes('\n') ? `<td><pre class="inline">${escapeHtml(v)}</pre></td>` : valueHtml(v)}</tr>`).join('')}</tbody></table>`;
}

/** "2026-11-30 02:43:01 UTC" from an ISO timestamp */
export function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

function contextHtml(c: RunContext | undefined, killed = false): string {
  // a killed run has none either: it was said to be from an old lab (review, session 57)
  if (!c) return `<p class="muted">(no run context recorded: ${killed ? 'the run was killed before it could record one' : 'the run ended before it recorded one, or an older lab wrote it'})</p>`;
  const la = (x: number[]) => x.map((v) => v.toFixed(2)).join(' / ');
  const mhz = c.cpuMhz?.length ? `${Math.round(Math.min(...c.cpuMhz))}–${Math.round(Math.max(...c.cpuMhz))} MHz (cpuinfo, at the end)` : null;
  return kvTable([
    ['verdict', c.busy.length ? `busy: ${c.busy.join('; ')}` : 'quiet enough (others < 0.25 CPU, steal < 5%)'],
    ['load average 1/5/15 min, before', la(c.loadavg.before)],
    ['load average 1/5/15 min, after', la(c.loadavg.after)],
    ['all CPUs busy during the run', `${(c.busyShare * 100).toFixed(1)}%`],
    ['steal', `${(c.stealShare * 100).toFixed(1)}%`],
    ['other processes (outside this run)', `${c.othersCores.toFixed(2)} CPUs on average`],
    ['busiest others', c.topOthers.length ? c.topOthers.map((o) => `${o.comm} (${o.pid}) ${o.cores.toFixed(2)}`).join(', ') : 'none'],
    ['CPU', `${c.cpuModel ?? 'unknown'} · ${c.cores} cores`],
    ['CPU frequency', mhz],
    ['cpufreq', c.cpufreq ? `${c.cpufreq.governor ?? ''} ${c.cpufreq.minKhz ? `${c.cpufreq.minKhz / 1000}–${(c.cpufreq.maxKhz ?? 0) / 1000} MHz` : ''}`.trim() : 'not exposed'],
  ]);
}

const fmtV = (v: number | undefined, unit = '') => (v === undefined || v === null || Number.isNaN(v) ? '—' : `${formatNumber(round3(v))}${unit ? ` ${unit}` : ''}`);
function round3(v: number): number {
  const a = Math.abs(v);
  return a >= 100 ? Math.round(v) : a >= 1 ? Math.round(v * 100) / 100 : Number(v.toPrecision(3));
}
const spreadText = (s: Headline['spread'], unit = '', f: (v: number) => string = (v) => fmtV(v)) =>
  s && s.n > 1 ? `${f(s.min)}–${f(s.max)}${unit ? ` ${unit}` : ''} · MAD ${f(s.mad)} · n=${s.n}` : s ? `n=${s.n}` : '—';
/** ratios near 1 need three decimals: 1.03 vs 1.034 decides a 3% goal */
const fmtR = (v: number | undefined | null) => (v === undefined || v === null || Number.isNaN(v) ? '—' : Math.abs(v) >= 10 ? formatNumber(Math.round(v * 10) / 10) : String(Number(v.toFixed(3))));

/** the first screen: each headline figure with its spread, against its comparator and goal */
export function headlineHtml(hs: Headline[] | undefined): string {
  if (!hs?.length) return '';
  // a goal not met leads, whatever order the scenario declared its figures in (the energy bench's
  // one failing goal came fourth, after three model identities; review, session 57); stable otherwise
  const rank = (h: Headline) => (h.goal?.verdict === 'not met' ? 0 : 1);
  const rows = [...hs].sort((a, b) => rank(a) - rank(b)).map((h) => {
    const c = h.comparator;
    const cmp = c
      ? `${escapeHtml(c.name)}${c.likeForLike === true ? ' <span class="tag">like-for-like</span>' : c.likeForLike === false ? ' <span class="tag">different design</span>' : ''}` +
        `${c.value !== undefined ? `: ${escapeHtml(fmtV(c.value, c.unit ?? h.unit))}` : ''}${c.note ? `<br><span class="muted">${escapeHtml(c.note)}</span>` : ''}`
      : '<span class="muted">—</span>';
    const ratio = c?.ratio !== undefined
      ? `<b>${escapeHtml(fmtR(c.ratio))}×</b>${c.ratioSpread && c.ratioSpread.n > 1 ? `<br><span class="muted">${escapeHtml(spreadText(c.ratioSpread, '', fmtR))}</span>` : ''}${c.ci ? `<br><span class="muted">95% CI ${escapeHtml(fmtR(c.ci[0]))}–${escapeHtml(fmtR(c.ci[1]))}</span>` : ''}`
      : '<span class="muted">—</span>';
    const goal = h.goal
      ? `${escapeHtml(`${h.goal.of === 'ratio' ? 'ratio' : 'value'} ${h.goal.op === '<=' ? '≤' : '≥'} ${formatNumber(h.goal.target)}`)}${h.goal.verdict ? ` ${statusBadge(h.goal.verdict === 'met' ? 'pass' : h.goal.verdict === 'not met' ? 'fail' : 'unsupported').replace(/>(pass|fail|unsupported)</, () => `>${escapeHtml(h.goal!.verdict!)}<`)}` : ''}${h.goal.detail ? `<br><span class="muted">${escapeHtml(h.goal.detail)}</span>` : ''}`
      : '<span class="muted">—</span>';
    return `<tr><td><b>${escapeHtml(h.label)}</b><br><code class="muted">${escapeHtml(h.name)}</code> <span class="muted">(${escapeHtml(betterText(h))})</span></td>` +
      `<td class="num"><b>${escapeHtml(fmtV(h.value, h.unit))}</b></td><td>${escapeHtml(spreadText(h.spread, h.unit))}</td><td>${cmp}</td><td>${ratio}</td><td>${goal}</td></tr>`;
  });
  return `<div class="tablewrap"><table class="headline"><thead><tr><th>figure</th><th>median</th><th>spread over rounds</th><th>compared with</th><th>ratio (per round, median)</th><th>goal</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
}

function checksHtml(checks: Check[] | undefined): string {
  if (!checks?.length) return '<p class="muted">(no checks recorded)</p>';
  const count = (s: string) => checks.filter((c) => c.status === s).length;
  const summary = (['pass', 'fail', 'unsupported'] as const)
    .map((s) => [s, count(s)] as const)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `<b class="${s}">${n} ${s === 'pass' ? 'passed' : s === 'fail' ? 'failed' : 'unsupported'}</b>`)
    .join(' · ');
  // the evidence column only when some check carries evidence (unsupported features)
  const withEvidence = checks.some((c) => c.evidence);
  const rows = checks
    .map(
      (c) =>
        `<tr class="${escapeHtml(String(c.status))}"><td>${escapeHtml(String(c.name))}</td><td>${statusBadge(String(c.status))}</td>` +
        `${cellHtml(c.detail ?? null)}${withEvidence ? (c.evidence ? `<td><code>${escapeHtml(c.evidence)}</code></td>` : '<td></td>') : ''}</tr>`,
    )
    .join('');
  return (
    `<p class="summary">${checks.length} check${checks.length === 1 ? '' : 's'}: ${summary}</p>` +
    `<div class="tablewrap"><table class="checks"><thead><tr><th>check</th><th>status</th><th>detail</th>${withEvidence ? '<th>evidence</th>' : ''}</tr></thead><tbody>${rows}</tbody></table></div>`
  );
}

function slug(s: string, i: number): string {
  return `s${i}-${String(s).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40)}`;
}

/** the whole report page for one run: result first, then checks, detail, environment last */
export async function renderReport(results: Results): Promise<string> {
  const r = results;
  const sections: Section[] = Array.isArray(r.sections) ? r.sections : [];
  const kernel = r.environment?.kernel;
  const meta: [string, string][] = [];
  // how the VM ran leads: a TCG figure is 10–30x a KVM one (said only in the collapsed environment before)
  const accel = vmAccel(r.environment);
  if (kernel?.release) meta.push(['kernel', `${kernel.release}${r.environment?.target === 'vm' ? ` (VM${accel ? `, ${accelLabel(accel)}` : ''})` : ''}`]);
  meta.push(['mode', r.mode], ['started', formatTime(r.startedAt)]);
  if (typeof r.durationMs === 'number') meta.push(['duration', formatDuration(r.durationMs)]);
  else if (r.finishedAt && r.startedAt) meta.push(['duration', formatDuration(Date.parse(r.finishedAt) - Date.parse(r.startedAt))]);
  meta.push(['run', r.runId]);

  const toc = [
    ...(r.headline?.length ? [['result', 'Result']] : []),
    ['checks', 'Checks'],
    ...sections.map((s, i) => [slug(s.title, i), s.title] as [string, string]),
    ['environment', 'Environment'],
    ['metrics', 'Raw numbers'],
  ];

  const parts: string[] = [];
  parts.push(`<header><h1>${escapeHtml(String(r.scenario))} ${statusBadge(String(r.status))}</h1>`);
  parts.push(`<div class="meta">${meta.filter(([, v]) => v != null).map(([k, v]) => `<span>${escapeHtml(k)} <b>${escapeHtml(String(v))}</b></span>`).join('')}</div>`);
  // spaces between the links: each link is nowrap, the line must be able to break between them
  parts.push(`<nav class="toc">${toc.map(([id, t]) => `<a href="#${escapeHtml(id!)}">${escapeHtml(t!)}</a>`).join(' ')}</nav></header>`);
  // a stop (Ctrl-C, --timeout) is not a failure of the scenario: said as what it is
  // a guest ended before it wrote its results (a second Ctrl-C) has none here, though its console
  // showed some: said where they are (review, session 57)
  const guestLost = r.environment?.target === 'vm' && !(Array.isArray(r.checks) && r.checks.length);
  if (r.error && r.stoppedBy) parts.push(`<div class="error-box"><b>Stopped (${escapeHtml(String(r.stoppedBy))}) before the scenario finished</b>: ${guestLost ? 'the guest was ended before it wrote its results, so no check is recorded here; the checks it had made are in its console log (vm-console.log in this run\'s directory)' : 'the checks below are those made before the stop, and figures the scenario had not recorded yet are missing'}.<pre>${escapeHtml(String(r.error))}</pre></div>`);
  else if (r.error) parts.push(`<div class="error-box"><b>The scenario stopped with an error</b><pre>${escapeHtml(String(r.error))}</pre></div>`);
  if (accel === 'tcg' && r.headline?.length) parts.push(`<div class="warn-box"><b>Emulated CPU (TCG):</b> this guest ran without KVM, 10–30x slower than on real hardware. Its figures compare with other TCG runs on this machine class, and ratios inside the run hold; absolute rates and latencies say nothing about a KVM guest or the host.</div>`);
  if (r.context?.busy?.length) parts.push(`<div class="warn-box"><b>Busy machine:</b> ${escapeHtml(r.context.busy.join('; '))}. Figures from this run compare only with each other (ratios inside the run), not with other runs.</div>`);

  if (r.headline?.length) parts.push(`<section id="result"><h2>Result</h2>${headlineHtml(r.headline)}</section>`);
  parts.push(`<section id="checks"><h2>Checks</h2>${checksHtml(r.checks)}</section>`);

  for (const [i, s] of sections.entries()) {
    const blocks: string[] = [];
    // charts are encoded off the main thread by Skia: render a section's blocks concurrently
    for (const html of await Promise.all((s.blocks ?? []).map(blockHtml))) blocks.push(html);
    parts.push(`<section id="${escapeHtml(slug(s.title, i))}"><h2>${escapeHtml(String(s.title))}</h2>\n${blocks.join('\n')}\n</section>`);
  }

  parts.push(`<section id="environment"><h2>Environment</h2><details><summary>kernel, machine, toolchain${r.environment?.vm ? ', VM' : ''}, feature probes</summary>${environmentHtml(r.environment)}</details>`);
  parts.push(`<details${r.context?.busy?.length ? ' open' : ''}><summary>Machine during the run${r.context?.busy?.length ? ' (busy)' : ''}</summary>${contextHtml(r.context, /killed outright/.test(r.error ?? ''))}</details>`);
  if (r.options && Object.keys(r.options).length) parts.push(`<details><summary>Options</summary>${kvTable(r.options)}</details>`);
  parts.push(`</section>`);

  const nKeys = Object.keys(r.metrics ?? {}).length;
  parts.push(
    `<section id="metrics"><h2>Raw numbers</h2><details><summary>everything the scenario measured (results.json → metrics: ${formatNumber(nKeys)} ${nKeys === 1 ? 'entry' : 'entries'})</summary>` +
      `<pre>${escapeHtml(JSON.stringify(r.metrics ?? {}, null, 2))}</pre></details></section>`,
  );
  parts.push(`<footer>ebpf-lab report · schema ${escapeHtml(String(r.schema))} · re-render with <code>pnpm lab report &lt;this run's directory&gt;</code> (run ${escapeHtml(String(r.runId))}; its directory is where this page is)</footer>`);

  return htmlPage(`${r.scenario} · ${r.status} · ${r.runId}`, parts.join('\n'));
}

/** write outDir/results.json (first, so the data survives a rendering failure) and outDir/report.html; returns the HTML path */
export async function writeReport(outDir: string, results: Results): Promise<string> {
  await mkdir(outDir, { recursive: true });
  writeFileAtomic(join(outDir, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  const html = await renderReport(results);
  const path = join(outDir, 'report.html');
  writeFileAtomic(path, html);
  return path;
}

/**
 * Read a run's results.json (its run directory, or the file itself, as compare takes it) and
 * (re)write report.html beside it; returns the HTML path. A boot-times run (vm boot-times) has
 * its own shape and page, and is re-rendered with that page.
 */
export async function rerenderReport(arg: string, o: { checkOnly?: boolean } = {}): Promise<string> {
  let st;
  try {
    st = await stat(arg);
  } catch {
    throw new UsageError(`cannot read ${arg}: no such file or directory`, 'pass a run directory (reports/<run-id>) or its results.json');
  }
  const file = st.isDirectory() ? join(arg, 'results.json') : arg;
  const outDir = dirname(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`cannot read ${file}: no such file (is ${arg} a run directory?)`, 'pass a run directory (reports/<run-id>) or its results.json');
    throw new LabError(`cannot read ${file}: ${(err as Error).message}`, 'pass the run directory, e.g. reports/<run-id>', { cause: err });
  }
  let results: Results;
  try {
    results = JSON.parse(text) as Results;
  } catch (err) {
    throw new LabError(`${file} is not valid JSON: ${oneLine((err as Error).message)}`, 'the run may have been cut short: rerun it', { cause: err });
  }
  const path = join(outDir, 'report.html');
  const kind = (results as { kind?: unknown } | null)?.kind;
  if (kind === 'boot-times') {
    // lazily: the VM package is only needed for this one kind of run
    const { bootTimesHtml, bootTimesProblem } = await import('../vm/index.ts');
    const b = results as unknown as Parameters<typeof bootTimesHtml>[0];
    const problem = bootTimesProblem(b);
    if (problem) throw new LabError(`${file}: not a boot-times run's results: ${problem}`, 'pass a results.json written by pnpm lab vm boot-times');
    if (!o.checkOnly) writeOrSay(path, bootTimesHtml(b));
    return path;
  }
  const problem = resultsProblem(results);
  if (problem) throw new LabError(`${file}: ${problem}`, 'pass a results.json written by pnpm lab run|bench|matrix');
  if (!o.checkOnly) writeOrSay(path, await renderReport(results));
  return path;
}

/** a run directory the caller cannot write (read-only, immutable, full) is the caller's to fix: said in one line */
function writeOrSay(path: string, html: string): void {
  try {
    writeFileAtomic(path, html);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!code || !['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT'].includes(code)) throw err;
    throw new LabError(`cannot write ${path}: ${code}`, 'make the run directory writable (or copy it somewhere writable) and run pnpm lab report on it again', { cause: err });
  }
}
