/// <reference lib="dom" />
// (page.evaluate bodies run in the browser: DOM types for those functions)
// The published site and today's run report, opened in a real browser (Debian's chromium,
// headless, over CDP with puppeteer-core). Skipped with the reason when chromium is missing.
import { mkdtemp, readFile, rm, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatNumber } from '../report/html.ts';
import { sampleResults } from '../report/fixture.ts';
import { writeReport } from '../report/index.ts';
import { auditPage, chromiumPath, launchChromium, type PageAudit } from './browser.ts';
import { kernelLabel } from './compare.ts';
import { fixtureHistory, headlineFrom } from './fixture.ts';
import { publishSite, safeName } from './site.ts';

const CHROMIUM = chromiumPath();
const WIDTHS = [1280, 390];
const fixtures = fixtureHistory();

/** everything a reader would notice on a page, as one list of problems (empty = good) */
function problems(a: PageAudit): string[] {
  return [
    ...a.consoleErrors.map((e) => `console: ${e}`),
    ...a.failedRequests.map((e) => `request failed: ${e}`),
    ...a.remoteRequests.map((e) => `remote request: ${e}`),
    ...a.brokenImages.map((e) => `broken image: ${e}`),
    ...a.deadLinks.map((e) => `dead link: ${e}`),
    ...a.canvases.filter((c) => c.inked < 0.01 || c.colors < 3).map((c) => `blank chart #${c.id} (${(c.inked * 100).toFixed(2)}% inked, ${c.colors} colours)`),
    ...(a.overflowPx > 1 ? [`page ${a.overflowPx}px wider than the ${a.width}px viewport`] : []),
  ];
}

describe.skipIf(!CHROMIUM)(`published site in Chromium${CHROMIUM ? '' : ' (skipped: no chromium — pnpm lab setup publish)'}`, () => {
  let browser: Browser;
  let dir = '';
  let site = '';
  let pages: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lab-site-'));
    site = join(dir, 'site');
    const r = await publishSite(fixtures.map((x) => ({ file: x.runId, results: x })), site);
    pages = r.files;
    browser = await launchChromium(CHROMIUM!);
  }, 180_000);
  afterAll(async () => {
    await browser?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // each page is loaded once per width: the first-screen test reads what the load test saw
  const firstScreens = new Map<string, string>();
  const audited = async (p: string, width: number) => {
    const a = await auditPage(browser, pathToFileURL(join(site, p)).href, width);
    await a.page.close();
    firstScreens.set(`${p}@${width}`, a.firstScreen);
    return a;
  };

  it('has a page per run, per scenario, a home and a kernels page', () => {
    expect(pages).toContain('index.html');
    expect(pages).toContain('kernels.html');
    for (const s of ['xdp-lb', 'hello-openat', 'security']) expect(pages).toContain(`scenarios/${s}.html`);
    for (const r of fixtures) expect(pages).toContain(`runs/${safeName(r.runId)}.html`);
  });

  for (const width of WIDTHS) {
    it(`every page loads at ${width}px with no console errors, failed or remote requests, dead links, blank charts or sideways scrolling`, async () => {
      const bad: Record<string, string[]> = {};
      let charts = 0;
      for (const p of pages) {
        const a = await audited(p, width);
        charts += a.canvases.length;
        const pr = problems(a);
        if (pr.length) bad[p] = pr;
      }
      expect(bad).toEqual({});
      // two scenarios with one headline each: two trend charts
      expect(charts).toBe(2);
    }, 300_000);
  }

  it('home page states the latest verdict per scenario × kernel and flags the injected regression', async () => {
    const a = await auditPage(browser, pathToFileURL(join(site, 'index.html')).href, 1280);
    const text = await a.page.evaluate(() => document.body.innerText);
    await a.page.close();
    expect(text).toMatch(/Regressions in the latest runs[\s\S]*xdp-lb · 6\.18\.0-test · LB CPU per request[\s\S]*REGRESSION/);
    // hello-openat's last night is noise only
    expect(text).not.toMatch(/hello-openat · [^\n]*REGRESSION/);
    for (const k of ['6.18.0-test', '6.1']) expect(text).toContain(k);
  }, 60_000);

  it('trend chart: hover shows value, commit and kernel; clicking a point opens that run', async () => {
    const a = await auditPage(browser, pathToFileURL(join(site, 'scenarios/xdp-lb.html')).href, 1280);
    const page = a.page;
    // the last point of the host kernel's series (datasets: min, spread, line per series)
    const pt = await page.evaluate(() => {
      const canvas = document.querySelector('canvas')!;
      const chart = (window as unknown as { Chart: { getChart(c: HTMLCanvasElement): any } }).Chart.getChart(canvas);
      const i = chart.data.datasets.findIndex((d: { label: string }) => d.label.startsWith('6.18.0-test') && !/ (min|spread)$/.test(d.label));
      const meta = chart.getDatasetMeta(i);
      const el = meta.data[meta.data.length - 1];
      const r = canvas.getBoundingClientRect();
      return { x: r.left + el.x, y: r.top + el.y, url: chart.data.datasets[i].data[meta.data.length - 1].url as string };
    });
    await page.mouse.move(pt.x, pt.y);
    const tip = await page.evaluate(() => {
      const chart = (window as unknown as { Chart: { getChart(c: HTMLCanvasElement): any } }).Chart.getChart(document.querySelector('canvas')!);
      return [...(chart.tooltip.title ?? []), ...(chart.tooltip.body ?? []).flatMap((b: { lines: string[] }) => b.lines)].join(' | ');
    });
    expect(tip).toMatch(/commit [0-9a-f]{8}/);
    expect(tip).toContain('kernel 6.18.0-test');
    expect(tip).toContain('REGRESSION');
    await Promise.all([page.waitForNavigation({ timeout: 30_000 }), page.mouse.click(pt.x, pt.y)]);
    expect(decodeURIComponent(page.url())).toContain(pt.url.replace('../', ''));
    await page.close();
  }, 60_000);

  it('the first screen of every run page states scenario, kernel, verdict and headline numbers (1280 and 390 px)', async () => {
    const bad: string[] = [];
    for (const r of fixtures)
      for (const width of WIDTHS) {
        const p = `runs/${safeName(r.runId)}.html`;
        const first = firstScreens.get(`${p}@${width}`) ?? (await audited(p, width)).firstScreen;
        const want = [r.scenario, r.environment.kernel.release, r.status, ...(r.headline ?? []).map((h) => formatNumber(h.value))];
        const miss = want.filter((w) => !first.toLowerCase().includes(w.toLowerCase()));
        if (miss.length) bad.push(`${r.runId} @${width}: first screen lacks ${miss.join(', ')}`);
      }
    expect(bad).toEqual([]);
  }, 300_000);

  it('kernels page tabulates probes across kernels', async () => {
    const a = await auditPage(browser, pathToFileURL(join(site, 'kernels.html')).href, 1280);
    const heads = await a.page.$$eval('#probes th', (ths) => ths.map((t) => t.textContent));
    await a.page.close();
    expect(heads[0]).toBe('feature');
    expect(new Set(heads.slice(1))).toEqual(new Set(fixtures.map((r) => kernelLabel(r.environment))));
  }, 60_000);
});

describe.skipIf(!CHROMIUM)(`today's report.html in Chromium${CHROMIUM ? '' : ' (skipped: no chromium — pnpm lab setup publish)'}`, () => {
  let browser: Browser;
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lab-report-'));
    browser = await launchChromium(CHROMIUM!);
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('renders, leads with scenario/kernel/verdict/headlines, and screenshots non-blank at 1280 and 390 px', async () => {
    const r = sampleResults();
    r.headline = [headlineFrom('consumer.cpuPerEvent', 'TS consumer CPU per event', 'ns', 'lower', [812, 790, 845, 801, 799]), headlineFrom('events.rate', 'events per second', 'events/s', 'higher', [1.21e6, 1.19e6, 1.25e6])];
    const html = await writeReport(join(dir, r.runId), r);
    const { loadImage, createCanvas } = await import('@napi-rs/canvas');
    const shots = process.env.EBPF_LAB_SCREENSHOTS ?? join(dir, 'shots');
    await mkdir(shots, { recursive: true });
    for (const width of WIDTHS) {
      const a = await auditPage(browser, pathToFileURL(html).href, width, 800);
      const file = join(shots, `report-${width}.png`);
      await a.page.screenshot({ path: file as `${string}.png` });
      await a.page.close();
      expect(problems(a)).toEqual([]);
      for (const w of [r.scenario, r.environment.kernel.release, r.status, ...r.headline.map((h) => formatNumber(h.value))]) expect(a.firstScreen.toLowerCase(), `${w} @${width}px`).toContain(w.toLowerCase());
      // the screenshot is the page, not a blank frame: many colours, most of it not background
      const img = await loadImage(await readFile(file));
      expect(img.width).toBe(width);
      const c = createCanvas(img.width, img.height);
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, img.width, img.height).data;
      const colors = new Set<number>();
      for (let i = 0; i < d.length; i += 16) colors.add((d[i]! << 16) | (d[i + 1]! << 8) | d[i + 2]!);
      expect(colors.size).toBeGreaterThan(50);
    }
    await writeFile(join(shots, 'README'), 'screenshots of a sample report.html, written by lab/publish/browser.test.ts\n');
  }, 120_000);
});

// Real runs (the done-when check): EBPF_LAB_PUBLISH_RUNS=dir[:dir…] publishes those results.json
// files into a site and opens every page. Without the variable there is nothing real to open.
const REAL = process.env.EBPF_LAB_PUBLISH_RUNS?.split(':').filter(Boolean) ?? [];
describe.skipIf(!CHROMIUM || !REAL.length)(`site from real runs in Chromium${!REAL.length ? ' (skipped: set EBPF_LAB_PUBLISH_RUNS=reports/<run>:… to open a site built from real runs)' : ''}`, () => {
  let browser: Browser;
  let dir = '';
  let site = '';
  let pages: string[] = [];
  beforeAll(async () => {
    const { loadRuns } = await import('./compare.ts');
    dir = await mkdtemp(join(tmpdir(), 'lab-site-real-'));
    site = process.env.EBPF_LAB_SITE_OUT ?? join(dir, 'site');
    pages = (await publishSite(await loadRuns(REAL), site)).files;
    browser = await launchChromium(CHROMIUM!);
  }, 300_000);
  afterAll(async () => {
    await browser?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const width of WIDTHS)
    it(`every page at ${width}px: no console errors, failed requests, dead links, blank charts`, async () => {
      const bad: Record<string, string[]> = {};
      for (const p of pages) {
        const a = await auditPage(browser, pathToFileURL(join(site, p)).href, width);
        await a.page.close();
        const pr = problems(a);
        if (pr.length) bad[p] = pr;
      }
      expect(bad).toEqual({});
    }, 600_000);

  it('home page lists what lab compare flagged in the newest runs', async () => {
    const a = await auditPage(browser, pathToFileURL(join(site, 'index.html')).href, 1280);
    const text = await a.page.evaluate(() => document.body.innerText);
    await a.page.close();
    console.log(text.split('Latest verdicts')[0]);
    if (process.env.EBPF_LAB_EXPECT_REGRESSION) expect(text).toMatch(new RegExp(`Regressions in the latest runs[\\s\\S]*${process.env.EBPF_LAB_EXPECT_REGRESSION}[\\s\\S]*REGRESSION`));
  }, 60_000);
});
