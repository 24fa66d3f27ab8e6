// HTML building blocks shared by the run report and pages others build (e.g. the matrix
// index): escaping, number formatting, and one self-contained page shell with inline CSS.
import type { Cell } from '../results.ts';
import { escapeChar } from '../../common/printable.ts';

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

// Characters XML 1.0 forbids (C0 controls but tab/LF/CR, lone surrogates, U+FFFE/U+FFFF), with DEL,
// the C1 controls and the bidi overrides: a guest's colour codes (ESC[31m) made junit.xml invalid
// XML, and a right-to-left override reorders a check name as read. Shown as escapes, as on a terminal.
const UNSHOWN = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** escape text for HTML (and XML) element content and quoted attribute values */
export function escapeHtml(s: string): string {
  return String(s).replace(/[&<>"']/g, (c) => ESC[c]!).replace(UNSHOWN, escapeChar);
}

// made on first use: creating it initialises ICU, ~0.8 s of a guest process's start under TCG
// for every process that merely imports this module (the guest's runner renders no report)
let intFmtCache: Intl.NumberFormat | undefined;
const intFmt = { format: (n: number) => (intFmtCache ??= new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })).format(n) };

/** thousands separators; decimals by magnitude (1,234,567 · 1,234.5 · 12.35 · 0.0123) */
export function formatNumber(n: number): string {
  // a figure that failed is null in results.json (JSON writes NaN so): not −∞
  if (n === null || n === undefined) return '—';
  if (Number.isNaN(n)) return 'NaN';
  if (!Number.isFinite(n)) return n > 0 ? '∞' : '−∞';
  if (Number.isInteger(n)) return intFmt.format(n);
  const a = Math.abs(n);
  if (a >= 1000) return n.toLocaleString('en-US', { maximumFractionDigits: 1 });
  if (a >= 10) return n.toLocaleString('en-US', { maximumFractionDigits: 2 });
  if (a >= 1) return n.toLocaleString('en-US', { maximumFractionDigits: 3 });
  if (a >= 1e-4) return n.toLocaleString('en-US', { maximumSignificantDigits: 3 });
  return n.toExponential(2);
}

/** 16 GiB, 512 MiB, 4 KiB, 100 B */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? formatNumber(v) : v.toLocaleString('en-US', { maximumFractionDigits: 1 })} ${units[u]}`;
}

/** 850 ms, 12.3 s, 4 min 05 s, 1 h 02 min */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 1000) return `${formatNumber(Math.round(ms))} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.round(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** a table cell: numbers formatted and right-aligned, booleans as yes/no, null as a dash */
export function cellHtml(c: Cell | undefined, tag: 'td' | 'th' = 'td'): string {
  if (c === null || c === undefined) return `<${tag} class="null">—</${tag}>`;
  if (typeof c === 'number') return `<${tag} class="num" title="${escapeHtml(String(c))}">${escapeHtml(formatNumber(c))}</${tag}>`;
  if (typeof c === 'boolean') return `<${tag} class="${c ? 'yes' : 'no'}">${c ? 'yes' : 'no'}</${tag}>`;
  return `<${tag}>${escapeHtml(String(c))}</${tag}>`;
}

/** any JSON value as a cell: scalars as cellHtml, objects and arrays as compact JSON */
export function valueHtml(v: unknown): string {
  if (v === null || v === undefined || typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string') return cellHtml(v as Cell);
  return `<td><code>${escapeHtml(JSON.stringify(v))}</code></td>`;
}

/** a two-column key/value table */
export function kvTable(items: Record<string, unknown> | [string, unknown][], cls = 'kv'): string {
  const entries = Array.isArray(items) ? items : Object.entries(items);
  if (entries.length === 0) return '<p class="muted">(none)</p>';
  return `<table class="${cls}"><tbody>${entries.map(([k, v]) => `<tr><th scope="row">${escapeHtml(k)}</th>${valueHtml(v)}</tr>`).join('')}</tbody></table>`;
}

/** a status pill: pass / fail / unsupported / error (anything else renders neutral) */
export function statusBadge(status: string): string {
  const known = ['pass', 'fail', 'unsupported', 'error'].includes(status) ? status : 'other';
  return `<span class="badge ${known}">${escapeHtml(status)}</span>`;
}

export const CSS = `
:root{--fg:#1d2329;--muted:#6a737d;--line:#e1e4e8;--bg:#fff;--soft:#f6f8fa;
--pass:#1a7f37;--pass-bg:#dafbe1;--fail:#cf222e;--fail-bg:#ffebe9;--unsup:#9a6700;--unsup-bg:#fff8c5;--err:#8250df;--err-bg:#fbefff}
*{box-sizing:border-box}
body{margin:0;background:var(--soft);color:var(--fg);font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI","DejaVu Sans",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px;background:var(--bg);min-height:100vh;box-shadow:0 0 0 1px var(--line)}
h1{font-size:26px;margin:0 0 6px;display:flex;align-items:center;gap:12px;flex-wrap:wrap}
h2{font-size:19px;margin:32px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:20px 0 8px}
p{margin:8px 0}
a{color:#0969da}
code,pre{font-family:"DejaVu Sans Mono",ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:10px 12px;overflow:auto;max-height:480px;margin:8px 0;white-space:pre}
.meta{color:var(--muted);display:flex;flex-wrap:wrap;gap:4px 18px;margin:4px 0 0}
.meta b{color:var(--fg);font-weight:600}
.muted,.null{color:var(--muted)}
.badge{display:inline-block;padding:1px 10px;border-radius:999px;font-size:13px;font-weight:600;text-transform:uppercase;letter-spacing:.03em;border:1px solid currentColor;vertical-align:middle}
h1 .badge{font-size:14px;padding:2px 12px}
.badge.pass{color:var(--pass);background:var(--pass-bg)}
.badge.fail{color:var(--fail);background:var(--fail-bg)}
.badge.unsupported{color:var(--unsup);background:var(--unsup-bg)}
.badge.error{color:var(--err);background:var(--err-bg)}
.badge.other{color:var(--muted);background:var(--soft)}
table{border-collapse:collapse;margin:8px 0 12px;font-size:13px;max-width:100%}
.tablewrap{overflow-x:auto}
th,td{border:1px solid var(--line);padding:5px 10px;text-align:left;vertical-align:top}
thead th{background:var(--soft);font-weight:600;white-space:normal;min-width:4em}
tbody tr:nth-child(even) td{background:#fbfcfd}
table.kv{min-width:360px}
table.kv th{background:var(--soft);font-weight:600;white-space:nowrap}
table.kv td.num{text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table{table-layout:auto;word-break:normal;overflow-wrap:anywhere}
td.yes{color:var(--pass)} td.no{color:var(--fail)}
td code{white-space:pre-wrap;word-break:break-word}
caption{caption-side:top;text-align:left;color:var(--muted);font-size:12.5px;padding:0 0 4px}
table.checks{width:100%}
table.checks td:nth-child(2){white-space:nowrap}
table.checks tr.fail td{background:#fff5f5} table.checks tr.unsupported td{background:#fffdf0}
.summary{margin:4px 0 8px;color:var(--muted)}
.summary b.pass{color:var(--pass)} .summary b.fail{color:var(--fail)} .summary b.unsupported{color:var(--unsup)}
.error-box{border:1px solid var(--fail);background:var(--fail-bg);border-radius:6px;padding:8px 12px;margin:14px 0}
.error-box pre{background:#fff;max-height:300px}
.warn-box{border:1px solid var(--unsup);background:var(--unsup-bg);border-radius:6px;padding:8px 12px;margin:14px 0}
table.headline{width:100%} table.headline td{vertical-align:middle} table.headline .badge{font-size:11px;padding:0 7px;white-space:nowrap}
.tag{display:inline-block;font-size:11.5px;padding:0 6px;border-radius:4px;background:var(--soft);border:1px solid var(--line);color:var(--muted)}
pre.inline{margin:0;padding:4px 6px;max-height:200px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:0 24px;align-items:start}
figure{margin:12px 0}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px;display:block}
figcaption{color:var(--muted);font-size:12.5px;margin-top:4px}
details{margin:8px 0;border:1px solid var(--line);border-radius:6px;padding:6px 12px}
details>summary{cursor:pointer;font-weight:600}
details[open]>summary{margin-bottom:6px}
nav.toc{font-size:13px;margin:14px 0 0;color:var(--muted)}
nav.toc a{margin-right:12px;white-space:nowrap}
footer{margin-top:36px;color:var(--muted);font-size:12px}
@media (max-width:600px){main{padding:16px 14px 32px}table.kv{min-width:0}:not(.tablewrap)>table{display:block;overflow-x:auto}table.kv th,nav.toc a{white-space:normal}p,li,figcaption{overflow-wrap:break-word}table.headline{width:auto}table.headline th,table.headline td{overflow-wrap:normal}}
@media print{body{background:#fff}main{box-shadow:none}pre{max-height:none}}
`;

/** a complete, self-contained HTML page (inline CSS, no scripts, no external resources) */
export function htmlPage(title: string, bodyHtml: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
${bodyHtml}
</main>
</body>
</html>
`;
}

/** "higher is better", or "closer to 1 is better" for a two-sided figure (Headline.ideal) */
export const betterText = (h: { better: string; ideal?: number }) => (typeof h.ideal === 'number' ? `closer to ${formatNumber(h.ideal)} is better` : `${h.better} is better`);
