// The headline figures a scenario declared (Results.headline), as the first thing a report
// shows under its title: value, unit, spread over rounds, comparator and goal verdict.
import type { Headline } from '../results.ts';
import { escapeHtml, formatNumber } from './html.ts';

export const HEADLINE_CSS = `
.headline{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:10px;margin:14px 0 0}
.headline .fig{border:1px solid var(--line);border-radius:8px;padding:8px 12px;background:var(--bg)}
.headline .fig .label{color:var(--muted);font-size:12.5px}
.headline .fig .value{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.headline .fig .value small{font-size:13px;font-weight:500;color:var(--muted);margin-left:4px}
.headline .fig .more{font-size:12px;color:var(--muted)}
.headline .fig .goal.met{color:var(--pass)} .headline .fig .goal.not-met{color:var(--fail)}
`;

function one(h: Headline): string {
  const more: string[] = [];
  if (h.spread && Number.isFinite(h.spread.min)) more.push(`${formatNumber(h.spread.min)}–${formatNumber(h.spread.max)} over ${h.spread.n} round${h.spread.n === 1 ? '' : 's'}, MAD ${formatNumber(h.spread.mad)}`);
  else if (h.rounds?.length) more.push(`median of ${h.rounds.length} rounds`);
  if (h.comparator) {
    const c = h.comparator;
    const ratio = typeof c.ratio === 'number' ? ` ×${formatNumber(c.ratio)}${c.ci ? ` (CI ${formatNumber(c.ci[0])}–${formatNumber(c.ci[1])})` : ''}` : '';
    more.push(`vs ${c.name}${typeof c.value === 'number' ? ` ${formatNumber(c.value)}` : ''}${ratio}${c.likeForLike === false ? ' (not like-for-like)' : ''}`);
  }
  more.push(`${h.better} is better`);
  const goal = h.goal
    ? `<div class="goal ${escapeHtml(String(h.goal.verdict ?? '').replace(' ', '-'))}">goal: ${h.goal.of === 'ratio' ? 'ratio' : 'value'} ${escapeHtml(h.goal.op)} ${formatNumber(h.goal.target)}${h.goal.verdict ? ` — ${escapeHtml(h.goal.verdict)}` : ''}</div>`
    : '';
  return (
    `<div class="fig" data-headline="${escapeHtml(h.name)}"><div class="label">${escapeHtml(h.label ?? h.name)}</div>` +
    `<div class="value">${escapeHtml(formatNumber(h.value))}<small>${escapeHtml(h.unit ?? '')}</small></div>${goal}` +
    `<div class="more">${more.map((m) => escapeHtml(m)).join(' · ')}</div></div>`
  );
}

/** the headline block, or '' when the scenario declared none */
export function headlineHtml(headline: Headline[] | undefined): string {
  const hs = Array.isArray(headline) ? headline.filter((h) => h && typeof h.value === 'number') : [];
  if (!hs.length) return '';
  return `<style>${HEADLINE_CSS}</style><div class="headline" aria-label="headline figures">${hs.map(one).join('')}</div>`;
}
