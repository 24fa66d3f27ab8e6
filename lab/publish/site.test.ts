// The site builder without a browser (no root): what it writes, what it refuses to overwrite,
// and that nothing on a page points off the machine.
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixtureHistory } from './fixture.ts';
import { goalTally, publishSite, safeName } from './site.ts';
import { labCli } from '../testing.ts';

const [NODE, ...LAB] = await labCli();

const runs = fixtureHistory().map((r) => ({ file: r.runId, results: r }));

describe('publishSite', () => {
  let dir = '';
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'lab-site-unit-')); });
  afterAll(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

  it('writes home, kernels, a trend page per scenario and a page + results.json per run', async () => {
    const out = join(dir, 'site');
    const r = await publishSite(runs, out);
    expect(r.pages).toBe(2 + 3 + runs.length);
    const files = await readdir(join(out, 'runs'));
    for (const x of runs) expect(files).toEqual(expect.arrayContaining([`${safeName(x.results.runId)}.html`, `${safeName(x.results.runId)}.json`]));
    const trend = await readFile(join(out, 'scenarios/xdp-lb.html'), 'utf8');
    // Chart.js and the data are inline: no src= on any script, no remote URL anywhere in markup
    expect(trend).toContain('id="trend-data"');
    expect(trend).not.toMatch(/<script[^>]+src=/);
    for (const f of ['index.html', 'kernels.html', 'scenarios/xdp-lb.html', `runs/${safeName(runs[0]!.results.runId)}.html`]) {
      const html = await readFile(join(out, f), 'utf8');
      expect(html, f).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);
    }
  });

  it('a trend page says, per kernel, in how many runs each headline goal held', async () => {
    const out = join(dir, 'site-goals');
    await publishSite(runs, out);
    const html = (await readFile(join(out, 'scenarios/hello-openat.html'), 'utf8')).replace(/<[^>]+>/g, '');
    // the fixture's goal held every night except night 3 on 6.1
    expect(html).toMatch(/6\.1 [^:]*: goal ratio ≥ 0\.8 met in 5 of 6 runs, not met in 1; newest: met/);
    expect(html).toMatch(/6\.18\.0-test [^:]*: goal ratio ≥ 0\.8 met in 6 of 6 runs, not met in 0; newest: met/);
    expect(html).toContain('not met (ratio ≥ 0.8)');
  });
  // null is how JSON writes a figure whose measurement failed: one that no run measured crashed
  // the whole site (review, session 57)
  it('a figure no run measured is listed as not measured; the other figures still chart', async () => {
    const mine = runs.filter((x) => x.results.scenario === 'xdp-lb').map((x) => {
      const r = structuredClone(x.results);
      r.headline = [...r.headline!, { name: 'lb.never', label: 'never measured', unit: 'ms', better: 'lower', value: null as unknown as number, rounds: [] }];
      return { file: x.file, results: r };
    });
    const out = join(dir, 'site-null');
    await publishSite(mine, out);
    const html = await readFile(join(out, 'scenarios/xdp-lb.html'), 'utf8');
    expect(html.replace(/<[^>]+>/g, '')).toMatch(/never measured \(ms\)not measured: no run has a value for it/);
    expect(html).toContain('id="chart-0"');
    expect(html).not.toContain('id="chart-1"');
  });
  // review, session 65: runs of the figure in another unit were drawn on the newest unit's axis;
  // a quick run after the nightly hid the nightly's regression from the home page
  it('a trend leaves out runs whose figure had another unit, and names setups apart; the home page lists the newest run\'s regressions of every series', async () => {
    const mine = runs.filter((x) => x.results.scenario === 'xdp-lb').map((x) => ({ file: x.file, results: structuredClone(x.results) }));
    // the two oldest host nights measured in ms (1000x smaller numbers)
    const host = mine.filter((x) => x.results.environment.target === 'host');
    for (const x of host.slice(0, 2)) x.results.headline = x.results.headline!.map((h) => ({ ...h, unit: 'ms', value: h.value / 1000 }));
    // a quick `lab run` of another setup after the nightly with the regression
    const quick = structuredClone(host.at(-1)!.results);
    quick.runId += '-quick';
    quick.mode = 'run';
    quick.startedAt = new Date(Date.parse(quick.startedAt) + 3_600_000).toISOString();
    quick.headline = quick.headline!.map((h) => ({ ...h, value: h.value / 1.15, rounds: h.rounds!.map((v) => v / 1.15) }));
    const out = join(dir, 'site-defs');
    await publishSite([...mine, { file: 'quick', results: quick }], out);
    const trend = await readFile(join(out, 'scenarios/xdp-lb.html'), 'utf8');
    const data = JSON.parse(/<script type="application\/json" id="trend-data">([^<]*)<\/script>/.exec(trend)![1]!) as { series: { name: string; points: { y: number }[] }[] }[];
    const names = data[0]!.series.map((x) => x.name).sort();
    expect(names).toEqual(['6.1 · Synthetic CPU @ 2.0GHz ×2 · vm · tcg · bench', '6.18.0-test · Synthetic CPU @ 2.0GHz ×2 · host · bench', '6.18.0-test · Synthetic CPU @ 2.0GHz ×2 · host · run']);
    const bench = data[0]!.series.find((x) => /6\.18\.0-test.*bench/.test(x.name))!;
    expect(bench.points).toHaveLength(host.length - 2);
    expect(Math.min(...bench.points.map((p) => p.y))).toBeGreaterThan(1);
    expect(trend.replace(/<[^>]+>/g, '')).toContain('2 earlier run(s) left out: the figure had another unit, direction or ideal then.');
    const home = (await readFile(join(out, 'index.html'), 'utf8')).replace(/<[^>]+>/g, ' ');
    expect(home).toMatch(/Regressions in the latest runs\s+metric[\s\S]*xdp-lb · 6\.18\.0-test · LB CPU per request[\s\S]*REGRESSION/);
  });

  it('goal tally: only runs that stated the newest goal are counted; no goal, no tally', () => {
    const g = (verdict: 'met' | 'not met' | 'inconclusive', target = 10) => ({ op: '>=' as const, target, of: 'ratio' as const, verdict });
    const t = goalTally([{ x: 3, run: 'c', goal: g('inconclusive') }, { x: 1, run: 'a', goal: g('met', 5) }, { x: 2, run: 'b', goal: g('not met') }, { x: 0, run: 'z' }]);
    expect(t).toMatchObject({ met: 0, notMet: 1, inconclusive: 1, n: 2, otherGoal: 1, latest: { run: 'c', verdict: 'inconclusive' } });
    expect(goalTally([{ x: 0, run: 'z' }])).toBeUndefined();
  });
  it('replaces its own earlier site but refuses a directory it did not write, leaving it untouched', async () => {
    const out = join(dir, 'site');
    await writeFile(join(out, 'stale.html'), 'old');
    await publishSite(runs.slice(0, 4), out);
    expect(await readdir(out)).not.toContain('stale.html');
    const foreign = join(dir, 'foreign');
    await mkdir(foreign);
    await writeFile(join(foreign, 'keep.txt'), 'mine');
    await expect(publishSite(runs, foreign)).rejects.toThrow(/not a site written by pnpm lab publish/);
    expect(await readdir(foreign)).toEqual(['keep.txt']);
    expect((await readdir(dir)).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('keeps runs whose ids repeat across nights (matrix cells) apart: one page each', async () => {
    const a = structuredClone(runs[0]!.results);
    const b = structuredClone(runs[0]!.results);
    a.runId = b.runId = 'hello-openat-5.10';
    b.startedAt = new Date(Date.parse(a.startedAt) + 86_400_000).toISOString();
    const r = await publishSite([{ file: 'a', results: a }, { file: 'b', results: b }], join(dir, 'dup'));
    expect(r.files.filter((f) => f.startsWith('runs/'))).toHaveLength(2);
    const { loadRuns } = await import('./compare.ts');
    for (const [i, x] of [a, b].entries()) {
      await mkdir(join(dir, 'dupsrc', String(i)), { recursive: true });
      await writeFile(join(dir, 'dupsrc', String(i), 'results.json'), JSON.stringify(x));
    }
    expect(await loadRuns([join(dir, 'dupsrc')])).toHaveLength(2);
  });

  it('pnpm lab publish: builds from a directory of runs; usage errors exit 2', async () => {
    const src = join(dir, 'reports');
    for (const x of runs.slice(0, 6)) {
      await mkdir(join(src, x.results.runId), { recursive: true });
      await writeFile(join(src, x.results.runId, 'results.json'), JSON.stringify(x.results));
    }
    const cwd = join(import.meta.dirname, '../..');
    const ok = await execa(NODE, [...LAB, 'publish', src, '--out', join(dir, 'cli-site')], { cwd, reject: false });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/pages from 6 runs/);
    const bad = await execa(NODE, [...LAB, 'publish', src], { cwd, reject: false });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/^error: --out is required\n  fix: /);
    const empty = await execa(NODE, [...LAB, 'publish', join(dir, 'foreign'), '--out', join(dir, 'x')], { cwd, reject: false });
    expect(empty.exitCode).toBe(1);
    expect(empty.stderr).toMatch(/no results\.json under/);
    // runs kept inside the site directory would be deleted with it when it is replaced
    await mkdir(join(dir, 'cli-site', 'history', 'r1'), { recursive: true });
    await writeFile(join(dir, 'cli-site', 'history', 'r1', 'results.json'), JSON.stringify(runs[0]!.results));
    const inside = await execa(NODE, [...LAB, 'publish', join(dir, 'cli-site', 'history'), '--out', join(dir, 'cli-site')], { cwd, reject: false });
    expect(inside.exitCode).toBe(2);
    expect(inside.stderr).toMatch(/^error: .*history is inside --out .*cli-site, which publish replaces whole: it would delete those runs\n {2}fix: /);
    expect(existsSync(join(dir, 'cli-site', 'history', 'r1', 'results.json'))).toBe(true);
  }, 60_000);
});
