// Cross-kernel tables for the matrix index, built from the runs' results.json alone:
//   - per scenario, its declared headline figures (results.headline) × kernel, median with spread;
//   - attack × kernel for any scenario that records metrics.attacks as
//     [{ name, expect, outcome, ok, mechanism? }] (scenarios/security does).
// lab/vm/matrix.ts runs the cells and calls this; the rendering lives here with the other reports.
import type { Headline, Results } from '../results.ts';
import { escapeHtml, formatNumber } from './html.ts';

export interface MatrixRun {
  scenario: string;
  kernel: string;
  results?: Results;
  /** relative link to the run's report */
  link?: string;
}

interface Attack {
  name: string;
  expect?: string;
  outcome?: string;
  ok?: boolean;
  mechanism?: string;
}

const short = (v: number | null | undefined) => {
  // results.json writes NaN and ±∞ as null: formatNumber's dash (and its ∞ for one in memory)
  if (v === null || v === undefined || !Number.isFinite(v)) return formatNumber(v as number);
  const a = Math.abs(v);
  return formatNumber(a >= 100 ? Math.round(v) : a >= 1 ? Math.round(v * 100) / 100 : Number(v.toPrecision(3)));
};

function headlineCell(h: Headline | undefined, link?: string): string {
  if (!h) return '<td class="muted">—</td>';
  const s = h.spread && h.spread.n > 1 ? `<br><span class="muted">${short(h.spread.min)}–${short(h.spread.max)}, n=${h.spread.n}</span>` : '';
  const r = h.comparator?.ratio !== undefined ? `<br><span class="muted">${short(h.comparator.ratio)}× ${escapeHtml(h.comparator.name)}</span>` : '';
  const g = h.goal?.verdict ? ` <span class="${h.goal.verdict === 'met' ? 'yes' : h.goal.verdict === 'not met' ? 'no' : 'muted'}" title="${escapeHtml(h.goal.detail ?? '')}">${h.goal.verdict === 'met' ? '✓' : h.goal.verdict === 'not met' ? '✗' : '?'}</span>` : '';
  const v = `${short(h.value)} ${escapeHtml(h.unit)}`;
  return `<td class="num">${link ? `<a href="${escapeHtml(link)}">${v}</a>` : v}${g}${s}${r}</td>`;
}

/** headline figures and attack results across kernels; '' when no run declared any */
export function crossKernelHtml(runs: MatrixRun[], kernels: string[]): string {
  let h = '';
  const scenarios = [...new Set(runs.map((r) => r.scenario))];
  const at = (s: string, k: string) => runs.find((r) => r.scenario === s && r.kernel === k);
  for (const s of scenarios) {
    const names: Headline[] = [];
    for (const k of kernels) for (const x of at(s, k)?.results?.headline ?? []) if (!names.some((n) => n.name === x.name)) names.push(x);
    if (!names.length) continue;
    h += `<h2>${escapeHtml(s)}: headline figures by kernel</h2><div class="tablewrap"><table><thead><tr><th>figure</th>${kernels.map((k) => `<th>${escapeHtml(k)}</th>`).join('')}</tr></thead><tbody>`;
    for (const n of names) {
      h += `<tr><th scope="row">${escapeHtml(n.label)}<br><code class="muted">${escapeHtml(n.name)}</code></th>`;
      for (const k of kernels) {
        const run = at(s, k);
        h += headlineCell(run?.results?.headline?.find((x) => x.name === n.name), run?.link);
      }
      h += '</tr>';
    }
    h += '</tbody></table></div>';
  }
  for (const s of scenarios) {
    const attacks = new Map<string, Attack>();
    for (const k of kernels) {
      const a = at(s, k)?.results?.metrics?.attacks;
      if (Array.isArray(a)) for (const x of a as Attack[]) if (x && typeof x.name === 'string' && !attacks.has(x.name)) attacks.set(x.name, x);
    }
    if (!attacks.size) continue;
    h += `<h2>${escapeHtml(s)}: attack × kernel</h2><div class="tablewrap"><table><thead><tr><th>attack</th><th>expected</th>${kernels.map((k) => `<th>${escapeHtml(k)}</th>`).join('')}</tr></thead><tbody>`;
    for (const [name, first] of attacks) {
      h += `<tr><th scope="row">${escapeHtml(name)}</th><td>${escapeHtml(first.expect ?? '')}</td>`;
      for (const k of kernels) {
        const a = (at(s, k)?.results?.metrics?.attacks as Attack[] | undefined)?.find((x) => x?.name === name);
        h += a ? `<td class="${a.ok ? 'yes' : 'no'}">${escapeHtml(a.outcome ?? '?')}${a.mechanism ? `<br><span class="muted">${escapeHtml(a.mechanism)}</span>` : ''}</td>` : '<td class="muted">—</td>';
      }
      h += '</tr>';
    }
    h += '</tbody></table></div>';
  }
  return h;
}
