// The run report: results.json → one self-contained report.html (inline CSS, charts as inline
// PNG, no scripts, no network). Rendering uses the JSON alone, so any run can be re-rendered.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LabError } from '../errors.ts';
import { resultsProblem, type Block, type Check, type Environment, type Results, type Section } from '../results.ts';
import { CHART_HEIGHT, CHART_WIDTH, chartPng, type ChartBlock } from './chart.ts';
import { headlineHtml } from './headline.ts';
import { cellHtml, escapeHtml, formatBytes, formatDuration, formatNumber, htmlPage, kvTable, statusBadge } from './html.ts';

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
  if (env.vm && Object.keys(env.vm).length) html += `<h3>VM</h3>${kvTable(env.vm)}`;
  if (env.probes && Object.keys(env.probes).length) {
    const probes = Object.entries(env.probes);
    const ok = probes.filter(([, p]) => p?.ok).length;
    html +=
      `<h3>Kernel feature probes</h3><p class="summary">${ok} of ${probes.length} available</p>` +
      `<div class="tablewrap"><table><thead><tr><th>feature</th><th>available</th><th>detail</th></tr></thead><tbody>` +
      probes.map(([name, p]) => `<tr><td><code>${escapeHtml(name)}</code></td>${cellHtml(!!p?.ok)}${cellHtml(p?.detail ?? null)}</tr>`).join('') +
      `</tbody></table></div>`;
  }
  return html;
}

function checksHtml(checks: Check[] | undefined): string {
  if (!checks?.length) return '<p class="muted">(no checks recorded)</p>';
  const count = (s: string) => checks.filter((c) => c.status === s).length;
  const summary = (['pass', 'fail', 'unsupported'] as const)
    .map((s) => [s, count(s)] as const)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `<b class="${s}">${n} ${s === 'pass' ? 'passed' : s === 'fail' ? 'failed' : 'unsupported'}</b>`)
    .join(' · ');
  const rows = checks
    .map(
      (c) =>
        `<tr class="${escapeHtml(String(c.status))}"><td>${escapeHtml(String(c.name))}</td><td>${statusBadge(String(c.status))}</td>` +
        `${cellHtml(c.detail ?? null)}${c.evidence ? `<td><code>${escapeHtml(c.evidence)}</code></td>` : cellHtml(null)}</tr>`,
    )
    .join('');
  return (
    `<p class="summary">${checks.length} check${checks.length === 1 ? '' : 's'}: ${summary}</p>` +
    `<div class="tablewrap"><table class="checks"><thead><tr><th>check</th><th>status</th><th>detail</th><th>evidence</th></tr></thead><tbody>${rows}</tbody></table></div>`
  );
}

function slug(s: string, i: number): string {
  return `s${i}-${String(s).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40)}`;
}

/** the whole report page for one run */
export async function renderReport(results: Results): Promise<string> {
  const r = results;
  const sections: Section[] = Array.isArray(r.sections) ? r.sections : [];
  const meta: [string, string][] = [['run', r.runId], ['mode', r.mode], ['started', r.startedAt]];
  if (typeof r.durationMs === 'number') meta.push(['duration', formatDuration(r.durationMs)]);
  else if (r.finishedAt && r.startedAt) meta.push(['duration', formatDuration(Date.parse(r.finishedAt) - Date.parse(r.startedAt))]);
  if (r.environment?.kernel?.release) meta.push(['kernel', r.environment.kernel.release]);
  if (r.environment?.target) meta.push(['target', r.environment.target]);

  const toc = [
    ['environment', 'Environment'],
    ['checks', 'Checks'],
    ...sections.map((s, i) => [slug(s.title, i), s.title] as [string, string]),
    ['metrics', 'Raw metrics'],
  ];

  const parts: string[] = [];
  parts.push(`<header><h1>${escapeHtml(String(r.scenario))} ${statusBadge(String(r.status))}</h1>`);
  parts.push(`<div class="meta">${meta.filter(([, v]) => v != null).map(([k, v]) => `<span>${escapeHtml(k)} <b>${escapeHtml(String(v))}</b></span>`).join('')}</div>`);
  parts.push(headlineHtml(r.headline));
  parts.push(`<nav class="toc">${toc.map(([id, t]) => `<a href="#${escapeHtml(id!)}">${escapeHtml(t!)}</a>`).join(' ')}</nav></header>`);
  if (r.error) parts.push(`<div class="error-box"><b>The scenario stopped with an error</b><pre>${escapeHtml(String(r.error))}</pre></div>`);

  parts.push(`<section id="environment"><h2>Environment</h2>${environmentHtml(r.environment)}`);
  if (r.options && Object.keys(r.options).length) parts.push(`<h3>Options</h3>${kvTable(r.options)}`);
  parts.push(`</section>`);

  parts.push(`<section id="checks"><h2>Checks</h2>${checksHtml(r.checks)}</section>`);

  for (const [i, s] of sections.entries()) {
    const blocks: string[] = [];
    // charts are encoded off the main thread by Skia: render a section's blocks concurrently
    for (const html of await Promise.all((s.blocks ?? []).map(blockHtml))) blocks.push(html);
    parts.push(`<section id="${escapeHtml(slug(s.title, i))}"><h2>${escapeHtml(String(s.title))}</h2>\n${blocks.join('\n')}\n</section>`);
  }

  parts.push(
    `<section id="metrics"><h2>Raw metrics</h2><details><summary>metrics (JSON, ${formatNumber(Object.keys(r.metrics ?? {}).length)} keys)</summary>` +
      `<pre>${escapeHtml(JSON.stringify(r.metrics ?? {}, null, 2))}</pre></details></section>`,
  );
  parts.push(`<footer>ebpf-lab report · schema ${escapeHtml(String(r.schema))} · re-render with <code>pnpm lab report ${escapeHtml(`reports/${r.runId}`)}</code></footer>`);

  return htmlPage(`${r.scenario} · ${r.status} · ${r.runId}`, parts.join('\n'));
}

async function writeAtomic(path: string, data: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** write outDir/results.json (first, so the data survives a rendering failure) and outDir/report.html; returns the HTML path */
export async function writeReport(outDir: string, results: Results): Promise<string> {
  await mkdir(outDir, { recursive: true });
  await writeAtomic(join(outDir, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  const html = await renderReport(results);
  const path = join(outDir, 'report.html');
  await writeAtomic(path, html);
  return path;
}

/** read outDir/results.json and (re)write outDir/report.html; returns the HTML path */
export async function rerenderReport(outDir: string): Promise<string> {
  const file = join(outDir, 'results.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new LabError(`cannot read ${file}: ${(err as Error).message}`, 'pass the run directory, e.g. reports/<run-id>', { cause: err });
  }
  let results: Results;
  try {
    results = JSON.parse(text) as Results;
  } catch (err) {
    throw new LabError(`${file} is not valid JSON: ${(err as Error).message}`, 'the run may have been cut short: rerun it', { cause: err });
  }
  const problem = resultsProblem(results);
  if (problem) throw new LabError(`${file}: ${problem}`, 'pass a results.json written by pnpm lab run|bench|matrix');
  const path = join(outDir, 'report.html');
  await writeAtomic(path, await renderReport(results));
  return path;
}
