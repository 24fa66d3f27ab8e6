import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { CHART_HEIGHT, CHART_WIDTH, PIXEL_RATIO, chartFont, chartPng, escapeHtml, formatBytes, formatDuration, formatNumber, headlineHtml, htmlPage, renderReport, rerenderReport, writeReport, type ChartBlock } from './index.ts';
import { niceTicks } from './chart.ts';
import { reportCommand } from './cli.ts';
import { sampleResults } from './fixture.ts';
import type { Results } from '../results.ts';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function decodePng(uri: string): { width: number; height: number; bytes: Buffer } {
  const m = /^data:image\/png;base64,([A-Za-z0-9+/=]+)$/.exec(uri);
  if (!m) throw new Error(`not a PNG data URI: ${uri.slice(0, 40)}…`);
  const bytes = Buffer.from(m[1]!, 'base64');
  expect(bytes.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
  expect(bytes.subarray(12, 16).toString('latin1')).toBe('IHDR');
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20), bytes };
}

const blockKinds = (r: Results) => new Set(r.sections.flatMap((s) => s.blocks.map((b) => b.kind)));

describe('renderReport', () => {
  let html: string;
  const results = sampleResults();
  beforeAll(async () => {
    html = await renderReport(results);
  });

  it('uses a fixture with every block kind', () => {
    expect([...blockKinds(results)].sort()).toEqual(['chart', 'kv', 'pre', 'table', 'text']);
  });

  it('is self-contained: no external src/href, no scripts, no @import/url()', () => {
    expect(html).toMatch(/^<!DOCTYPE html>/);
    expect(html).not.toMatch(/\b(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i);
    expect(html).not.toMatch(/<link\b/i);
    expect(html).not.toMatch(/<script\b/i);
    expect(html).not.toMatch(/@import|url\(/i);
    for (const [, v] of html.matchAll(/\bsrc="([^"]*)"/g)) expect(v).toMatch(/^data:image\/png;base64,/);
    for (const [, v] of html.matchAll(/\bhref="([^"]*)"/g)) expect(v).toMatch(/^#/);
  });

  it('inlines every chart as a PNG of the right size', () => {
    const uris = [...html.matchAll(/<img src="(data:[^"]+)" width="(\d+)" height="(\d+)"/g)];
    const charts = results.sections.flatMap((s) => s.blocks).filter((b) => b.kind === 'chart');
    expect(uris).toHaveLength(charts.length);
    for (const [, uri, w, h] of uris) {
      const png = decodePng(uri!);
      expect([png.width, png.height]).toEqual([CHART_WIDTH * PIXEL_RATIO, CHART_HEIGHT * PIXEL_RATIO]);
      expect([Number(w), Number(h)]).toEqual([CHART_WIDTH, CHART_HEIGHT]);
    }
  });

  it('escapes text: a <script> in a text block, check name or metric stays text', () => {
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; friends');
    expect(html).toContain('sees openat of &lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('&lt;b&gt;not bold&lt;/b&gt;');
    expect(html).toContain('&lt;xlated 312B  jited 190B&gt;');
  });

  it('escapes a headline\'s better and goal verdict from a hand-edited results.json (no $-patterns either)', () => {
    const h = headlineHtml([{ name: 'n', label: 'l', unit: 'u', better: "'><x-pwn>" as 'higher', value: 1, goal: { op: '<=', target: 1, verdict: "$&'<i>" as 'met' } }]);
    expect(h).not.toContain('<x-pwn>');
    expect(h).toContain('(&#39;&gt;&lt;x-pwn&gt; is better)');
    expect(h).toContain('>$&amp;&#39;&lt;i&gt;<');
  });

  // review, session 57: a rate shown as "397,850 %" beside a % lost; a failing goal fourth
  it('a comparator value carries its own unit; a goal not met leads the headline table', () => {
    const h = headlineHtml([
      { name: 'a', label: 'model identity', unit: '%', better: 'lower', value: 0, goal: { op: '<=', target: 1, verdict: 'met' } },
      { name: 'b', label: 'hook cost', unit: '%', better: 'lower', value: 4.48, comparator: { name: 'hook off', unit: 'switches/s', value: 397850 }, goal: { op: '<=', target: 3, verdict: 'not met' } },
    ]);
    expect(h).toMatch(/hook off[^]*397,850 switches\/s/);
    expect(h).not.toMatch(/397,850 ?%/);
    expect(h.indexOf('hook cost')).toBeLessThan(h.indexOf('model identity'));
  });

  it('shows header, environment, probes, checks, sections in order and raw metrics', () => {
    expect(html).toContain('<span class="badge fail">fail</span>');
    expect(html).toContain('20250101-120000-hello-openat-6.1');
    expect(html).toContain('2 min 05 s');
    expect(html).toContain('6.1.0-28-amd64');
    expect(html).toContain('AMD EPYC 7B13 · 8 cores');
    expect(html).toContain('16 GiB');
    expect(html).toContain('0123456789ab + uncommitted changes');
    expect(html).toContain('Kernel feature probes');
    expect(html).toContain('<code>bpf_lsm</code>');
    expect(html).toContain('<span class="badge unsupported">unsupported</span>');
    expect(html).toContain('CONFIG_BPF_LSM=n');
    expect(html).toContain('1,234,567.9');
    // result first, then checks, then the scenario's sections, environment and raw numbers last
    const order = ['id="result"', 'id="checks"', '>Summary</h2>', '>Throughput</h2>', '>Logs</h2>', 'id="environment"', 'id="metrics"'].map((s) => html.indexOf(s));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(html).toMatch(/<details><summary>[^<]*<\/summary><pre>\{\n {2}&quot;eventsPerSec&quot;: 1234567.891/);
    expect(html).toContain('results.json → metrics: 5 entries');
    expect(html).not.toMatch(/\d+ keys\)/);
  });

  it('leads with the headline: median, spread, comparator with its kind, per-round ratio and goal verdict', () => {
    const result = html.slice(html.indexOf('id="result"'), html.indexOf('id="checks"'));
    expect(result).toContain('TS consumer delivered events/s, flat out');
    expect(result).toContain('410,000 events/s');
    expect(result).toContain('400,000–430,000 events/s · MAD 10,000 · n=3');
    expect(result).toContain('like-for-like');
    expect(result).toContain('<b>0.97×</b>');
    expect(result).toContain('0.95–1.01 · MAD 0.02 · n=3');
    expect(result).toContain('met in 3/3 rounds');
  });

  it('flags a busy machine at the top and keeps environment and probes collapsed', () => {
    expect(html.indexOf('Busy machine:')).toBeLessThan(html.indexOf('id="result"'));
    expect(html).toContain('cc1 0.58');
    const env = html.slice(html.indexOf('id="environment"'));
    expect(env).toMatch(/^id="environment"><h2>Environment<\/h2><details><summary>/);
    expect(env).toContain('<details><summary>Kernel feature probes: 3 of 4 available</summary>');
  });

  it('says a stopped run was stopped, and by what, not that the scenario failed', async () => {
    const stopped = await renderReport({ ...sampleResults(), status: 'error', error: 'interrupted by SIGINT', stoppedBy: 'SIGINT' } as Results);
    expect(stopped).toContain('<b>Stopped (SIGINT) before the scenario finished</b>');
    expect(stopped).not.toContain('The scenario stopped with an error');
    const failed = await renderReport({ ...sampleResults(), status: 'error', error: 'boom' } as Results);
    expect(failed).toContain('The scenario stopped with an error');
  });

  it('formats the start time, shows the VM facts as a table and names no internal tracker', () => {
    expect(html).toContain('2025-01-01 12:00:00 UTC');
    expect(html).not.toContain('2025-01-01T12:00:00.000Z');
    expect(html).toContain('<th scope="row">boot (host side)</th><td>2.35 s</td>');
    expect(html).toContain('CONFIG_DEBUG_INFO_BTF=y\nCONFIG_BPF_LSM=n');
    expect(html).not.toMatch(/issue \d/i);
  });

  it('embeds a stuck guest\'s account (escaped) below the VM facts, not as a table row', async () => {
    const r = sampleResults();
    const text = 'guest tasks: 1 user task (1 in D): modprobe (212) D in folio_wait_bit_common\n\n<sysrq w> task:modprobe state:D';
    r.environment.vm = { ...r.environment.vm, hangLog: 'vm-hang.txt', hang: text };
    const out = await renderReport(r);
    expect(out).toContain(`<details open><summary>What the stuck guest was doing</summary><pre>${escapeHtml(text)}</pre></details>`);
    expect(out).toContain('<th scope="row">what the stuck guest was doing</th><td>vm-hang.txt</td>');
    expect(out).not.toContain('<th scope="row">hang</th>');
    expect(html).not.toContain('What the stuck guest was doing');
  });

  it('drops the evidence column when no check has evidence', async () => {
    const r = sampleResults();
    r.checks = r.checks.filter((c) => !c.evidence);
    const out = await renderReport(r);
    expect(out).not.toContain('<th>evidence</th>');
    expect(html).toContain('<th>evidence</th>');
  });

  it('renders a scenario error and tolerates a block kind it does not know', async () => {
    const r = sampleResults();
    r.status = 'error';
    r.error = 'Error: <boom>';
    r.sections.push({ title: 'Future', blocks: [{ kind: 'heatmap', cells: [] } as never] });
    const out = await renderReport(r);
    expect(out).toContain('<span class="badge error">error</span>');
    expect(out).toContain('Error: &lt;boom&gt;');
    expect(out).toContain('unknown block kind “heatmap”');
  });
});

describe('chartPng', () => {
  const line: ChartBlock = { kind: 'chart', title: 't', type: 'line', labels: [1, 2, 4], datasets: [{ label: 'a', data: [1, null, 3] }], logY: true };

  it('honours width, height and pixel ratio', async () => {
    expect(decodePng(await chartPng(line, 300, 200, 1))).toMatchObject({ width: 300, height: 200 });
    expect(decodePng(await chartPng({ ...line, type: 'bar', labels: ['x', 'y', 'z'] }, 320, 160))).toMatchObject({ width: 640, height: 320 });
  });

  it('has a font and really draws text (the title) with it', async () => {
    expect(chartFont()).toBeTruthy();
    const { createCanvas, loadImage } = await import('@napi-rs/canvas');
    // title only, no data: any dark pixel in the top strip is glyph ink (the title colour is #111)
    const img = await loadImage(decodePng(await chartPng({ ...line, title: 'MMMM WWWW', datasets: [] }, 400, 200, 1)).bytes);
    const c = createCanvas(400, 40);
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, 400, 40).data;
    let dark = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i]! < 80 && px[i + 1]! < 80 && px[i + 2]! < 80) dark++;
    expect(dark).toBeGreaterThan(200); // ~20 without a title, ~600 with
  });

  it('paints an opaque background (white plugin)', async () => {
    const { createCanvas, loadImage } = await import('@napi-rs/canvas');
    const img = await loadImage(decodePng(await chartPng(line, 200, 100, 1)).bytes);
    const c = createCanvas(200, 100);
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    expect([...ctx.getImageData(1, 1, 1, 1).data]).toEqual([255, 255, 255, 255]);
  });
});

describe('writeReport / rerenderReport / reportCommand', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lab-report-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes results.json and report.html, and re-renders the same file from the JSON', async () => {
    const results = sampleResults();
    const path = await writeReport(dir, results);
    expect(path).toBe(join(dir, 'report.html'));
    const json = await readFile(join(dir, 'results.json'), 'utf8');
    expect(JSON.parse(json)).toEqual(results);
    expect(json).toContain('\n  "schema": 1,');
    const first = await readFile(path, 'utf8');
    await writeFile(path, 'stale');
    expect(await rerenderReport(dir)).toBe(path);
    expect(await readFile(path, 'utf8')).toBe(first);
  });

  it('reportCommand re-renders and validates its arguments', async () => {
    const path = join(dir, 'report.html');
    await writeFile(path, 'stale');
    expect(await reportCommand([dir])).toBe(0);
    expect(await readFile(path, 'utf8')).toMatch(/^<!DOCTYPE html>/);
    await expect(reportCommand([])).rejects.toThrow(/missing <run dir>/);
  });

  it('takes the results.json path as well as its directory', async () => {
    const path = join(dir, 'report.html');
    await writeFile(path, 'stale');
    expect(await rerenderReport(join(dir, 'results.json'))).toBe(path);
    expect(await readFile(path, 'utf8')).toMatch(/^<!DOCTYPE html>/);
  });

  it('re-renders a boot-times run with its own page', async () => {
    const bt = await mkdtemp(join(tmpdir(), 'lab-report-bt-'));
    try {
      const phases = { qemuMs: 400, kernelMs: 1700, initMs: 650, mountMs: 150, readyMs: 2900 };
      const samples = [{ round: 0, kernel: '6.1', release: '6.1.0-50-amd64', accel: 'tcg', phases, totalMs: 4000 }];
      const { summarizeBoots } = await import('../vm/boot-times.ts');
      await writeFile(join(bt, 'results.json'), JSON.stringify({ kind: 'boot-times', runId: 'boot-times-x', startedAt: '2026-01-01T00:00:00Z', durationMs: 4000, rounds: 1, samples, summary: summarizeBoots(samples) }));
      expect(await rerenderReport(bt)).toBe(join(bt, 'report.html'));
      expect(await readFile(join(bt, 'report.html'), 'utf8')).toMatch(/VM boot-to-ready[\s\S]*2\.90 s/);
      await writeFile(join(bt, 'results.json'), JSON.stringify({ kind: 'boot-times', runId: 'x' }));
      await expect(rerenderReport(bt)).rejects.toThrow(/not a boot-times run's results: needs runId, startedAt/);
      // a summary entry without its goal, a context without busy: named, not an internal TypeError
      const good = { kind: 'boot-times', runId: 'boot-times-x', startedAt: '2026-01-01T00:00:00Z', durationMs: 4000, rounds: 1, samples, summary: summarizeBoots(samples) };
      await writeFile(join(bt, 'results.json'), JSON.stringify({ ...good, summary: [{ ...good.summary[0], goal: undefined }] }));
      await expect(rerenderReport(bt)).rejects.toThrow(/summary\[0\] is not a kernel summary/);
      await writeFile(join(bt, 'results.json'), JSON.stringify({ ...good, samples: [{ ...samples[0], phases: null }] }));
      await expect(rerenderReport(bt)).rejects.toThrow(/samples\[0\] is not a boot/);
      await writeFile(join(bt, 'results.json'), JSON.stringify({ ...good, context: { cores: 2 } }));
      await expect(rerenderReport(bt)).rejects.toThrow(/"context" is not a run context/);
    } finally {
      await rm(bt, { recursive: true, force: true });
    }
  });

  it('a run directory it cannot write is one clear error, not an internal one', async (ctx) => {
    const ro = await mkdtemp(join(tmpdir(), 'lab-report-ro-'));
    await writeFile(join(ro, 'results.json'), await readFile(join(dir, 'results.json'), 'utf8'));
    // immutable: root writes through plain permissions
    if (spawnSync('chattr', ['+i', ro]).status !== 0) {
      await rm(ro, { recursive: true, force: true });
      return ctx.skip('chattr +i is not available on this file system');
    }
    try {
      await expect(rerenderReport(ro)).rejects.toThrow(/^cannot write .*report\.html: EPERM$/);
    } finally {
      spawnSync('chattr', ['-i', ro]);
      await rm(ro, { recursive: true, force: true });
    }
  });

  it('fails clearly on a missing or foreign results.json', async () => {
    await expect(rerenderReport(join(dir, 'nope'))).rejects.toThrow(/cannot read .*nope: no such file or directory/);
    const other = await mkdtemp(join(tmpdir(), 'lab-report-'));
    await writeFile(join(other, 'results.json'), '{"schema":2}');
    await expect(rerenderReport(other)).rejects.toThrow(/unsupported results schema 2/);
    await rm(other, { recursive: true, force: true });
  });
});

describe('helpers', () => {
  it('escapeHtml', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });
  it('htmlPage escapes the title and carries a CSP that forbids external loads', () => {
    const p = htmlPage('<t>', '<p>x</p>');
    expect(p).toContain('<title>&lt;t&gt;</title>');
    expect(p).toContain("default-src 'none'");
    expect(p).toContain('<p>x</p>');
  });
  it('formats numbers, bytes and durations', () => {
    expect(formatNumber(1234567)).toBe('1,234,567');
    expect(formatNumber(1234.5678)).toBe('1,234.6');
    expect(formatNumber(12.3456)).toBe('12.35');
    expect(formatNumber(0.0123456)).toBe('0.0123');
    expect(formatNumber(1.5e-7)).toBe('1.50e-7');
    expect(formatNumber(Infinity)).toBe('∞');
    expect(formatNumber(null as unknown as number), 'a failed figure (JSON null) is no −∞').toBe('—');
    expect(formatBytes(17179869184)).toBe('16 GiB');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatDuration(850)).toBe('850 ms');
    expect(formatDuration(1234)).toBe('1.23 s');
    expect(formatDuration(125250)).toBe('2 min 05 s');
  });
  it('niceTicks', () => {
    expect(niceTicks(1, 32)).toEqual([5, 10, 15, 20, 25, 30]);
    expect(niceTicks(0, 1)).toEqual([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]);
  });
});
