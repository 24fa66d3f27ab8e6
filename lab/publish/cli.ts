// `pnpm lab compare` and `pnpm lab publish`: both read results.json files only (the runner's
// output), so they work on runs copied from other machines, CI artifacts and old nights alike.
import fs from 'node:fs';
import { appendFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs, UsageError } from '../../common/args.ts';
import { LabError } from '../../common/errors.ts';
import { printable } from '../../common/printable.ts';
import { checkOutDir, checkOutFile } from '../../common/out-dir.ts';
import { runKey, classKey, compareRuns, type LoadedRun, DEFAULT_FLOOR, DEFAULT_K, loadRuns, markdownTable, textTable } from './compare.ts';

const compareOptions = {
  k: { type: 'number', min: 0, valueName: 'N', default: DEFAULT_K, description: 'a change must exceed N standard errors of the difference of the medians (both sides\' rounds; and the floor) to count' },
  floor: { type: 'number', min: 0, max: 10, valueName: 'F', default: DEFAULT_FLOOR, description: 'relative floor (0.05 = 5%) for headlines that declare no regressionFloor' },
  window: { type: 'int', min: 1, valueName: 'N', description: 'use only the newest N baseline runs per metric (default: all)' },
  'fail-on-regression': { type: 'boolean', description: 'exit 1 when any headline regressed' },
  format: { type: 'string', choices: ['text', 'markdown', 'json'], default: 'text', description: 'table format on stdout' },
  summary: { type: 'string', valueName: 'FILE', description: 'also append the table as markdown to FILE (e.g. "$GITHUB_STEP_SUMMARY")' },
} as const;

export async function compareCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {
    usage: 'pnpm lab compare [options] <baseline> <candidate>   |   pnpm lab compare [options] <baseline…> -- <candidate…>',
    summary:
      'compare headline figures of candidate runs against baseline runs (results.json files or directories searched recursively), ' +
      'per scenario + kernel + machine class; a regression is a median worse by more than max(k standard errors of the difference, floor)',
    options: compareOptions,
    positionals: { names: ['baseline', 'candidate'] },
    epilog: 'examples:\n  pnpm lab compare reports/20261130-0101-xdp-lb-host reports/20261130-0201-xdp-lb-host\n  pnpm lab compare --fail-on-regression history/ -- reports/matrix/',
  });
  if (!p) return 0;
  let base: string[];
  let cand: string[];
  if (argv.includes('--')) [base, cand] = [p.positionals, p.rest];
  else if (p.positionals.length === 2) [base, cand] = [[p.positionals[0]!], [p.positionals[1]!]];
  else throw new UsageError(p.positionals.length < 2 ? 'need a baseline and a candidate' : `${p.positionals.length} paths: cannot tell baseline from candidate`, 'pnpm lab compare <baseline> <candidate>, or separate several: <baseline…> -- <candidate…>');
  if (!base.length || !cand.length) throw new UsageError('need at least one baseline and one candidate path', 'pnpm lab compare <baseline…> -- <candidate…>');
  // before the table: a summary that cannot be written would fail after it, as an internal error
  if (p.values.summary !== undefined && p.values.summary !== '-') checkOutFile(p.values.summary, 'summary', '"$GITHUB_STEP_SUMMARY" or /tmp/summary.md');
  const [bSkipped, cSkipped] = [{ count: 0 }, { count: 0 }];
  const [b, c] = [await loadRuns(base, undefined, bSkipped), await loadRuns(cand, undefined, cSkipped)];
  if (!c.length) throw new LabError(`no ${cSkipped.count ? 'valid ' : ''}results.json under ${cand.join(', ')}${cSkipped.count ? ` (${cSkipped.count} skipped, above)` : ''}`, 'pass run directories written by pnpm lab run|bench|matrix');
  // only a baseline with no runs at all is a first night: one whose every file is broken is not
  if (!b.length && bSkipped.count) throw new LabError(`no valid results.json under ${base.join(', ')}: all ${bSkipped.count} found are broken (above), so nothing could be judged`, 'repair or remove them; an empty baseline directory is what a first night looks like');
  // A candidate that ended in error measured nothing a gate can vouch for. Alone it made the gate
  // pass with "no headline figures" when the baseline had none either; now it is named, and a
  // comparison whose every candidate erred is an error.
  const erred = c.filter((r) => r.results.status === 'error');
  const errLine = (r: LoadedRun) => `${r.results.runId} (${(r.results.error ?? 'no error recorded').split('\n')[0]})`;
  if (erred.length === c.length) throw new LabError(`nothing to compare: the candidate run${c.length === 1 ? '' : 's'} ended in error: ${erred.map(errLine).join('; ')}`, 'its report.html says why; compare a run that finished');
  // run-supplied text reaches the terminal escaped, as the table's cells do
  for (const r of erred) console.error(printable(`warning: candidate ${errLine(r)} ended in error: its figures are not compared`));
  const candIds = new Set(c.map((r) => runKey(r.results)));
  const baseRuns = b.filter((r) => !candIds.has(runKey(r.results)));
  if (b.length && !baseRuns.length) throw new LabError('nothing to compare: the baseline runs are the candidate runs (a run is never its own baseline)', 'give earlier runs of the same scenario and kernel as the baseline');
  const rows = compareRuns(baseRuns, c, { k: p.values.k, defaultFloor: p.values.floor, window: p.values.window });
  // a gate that compared nothing must not pass: every figure only on one side is a mismatch. An
  // empty baseline is not one: the first night's history has no runs yet, and every figure is new
  // (the nightly failed its first night with "nothing to compare").
  if (!rows.length && p.values['fail-on-regression']) throw new LabError('nothing to compare: no headline figures in the candidate runs', 'compare runs of scenarios that declare headline figures (pnpm lab bench <scenario> records the most)');
  // A figure the baseline has that a finished candidate run of the same scenario, kernel and machine
  // class records as null (JSON's NaN) or no number at all is a measurement that broke: it fails
  // the gate. One the candidate does not declare is said but does not: scenarios declare some
  // figures only when they could be measured, and a renamed figure would fail every night until
  // the window forgot the old name.
  const finished = c.filter((r) => r.results.status !== 'error');
  const ranHere = (r: { scenario: string; kernel: string; machine: string; setup: string }) => finished.filter((x) => classKey(x.results) === classKey(r));
  const unmatched = rows.filter((r) => r.verdict === 'missing' && ranHere(r).length);
  const lost = unmatched.filter((r) => ranHere(r).some((x) => x.results.headline?.some((h) => h?.name === r.metric)));
  for (const r of unmatched) console.error(printable(`warning: ${r.scenario} on ${r.kernel}: "${r.label}" is in the baseline but ${lost.includes(r) ? 'not a number (a failed measurement)' : 'not declared'} in the candidate run${c.length === 1 ? '' : 's'}`));
  // a gate that compared nothing fails: a candidate of the right scenario, kernel and machine class
  // that declares none of the baseline's figures (a `run` against a history of `bench`es, or every
  // figure renamed) compared nothing either
  if (b.length && rows.length && !lost.length && !rows.some((r) => r.baseline && r.candidate) && unmatched.length) {
    const which = [...new Set(unmatched.map((r) => `${r.scenario} on ${r.kernel}`))].join(', ');
    throw new LabError(`nothing to compare: the candidate runs of ${which} declare none of the baseline's figures`, 'compare runs of the same kind (pnpm lab bench records the most figures; a run fewer), or pass the baseline those figures came from');
  }
  if (b.length && rows.length && !unmatched.length && !rows.some((r) => r.baseline && r.candidate)) {
    const side = (v: string) => [...new Set(rows.filter((r) => r.verdict === v).map((r) => `${r.scenario} on ${r.kernel} (${r.machine})`))].join(', ') || 'none with headline figures';
    throw new LabError(`nothing to compare: no baseline run matches a candidate's scenario, kernel, machine class and setup (mode and scenario options) (candidates: ${side('new')}; baseline: ${side('missing')})`, 'compare runs of the same scenario and kernel from the same machine class, run with the same mode and options');
  }
  // a busy candidate's figures are not judged (compare.ts busyRun): said, and a gate that judged
  // nothing because of it does not pass
  const busy = rows.filter((r) => r.verdict === 'busy');
  if (busy.length) {
    const runs = [...new Set(busy.flatMap((r) => r.candidate?.runs ?? []))];
    const why = c.find((r) => r.results.context?.busy?.length && runs.includes(r.results.runId))?.results.context?.busy?.[0];
    console.error(printable(`warning: ${busy.length} figure${busy.length === 1 ? '' : 's'} not judged: candidate run${runs.length === 1 ? '' : 's'} ${runs.join(', ')} ran on a busy machine${why ? ` (${why})` : ''}; their figures compare only inside the run`));
  }
  const redefined = rows.filter((r) => r.verdict === 'redefined');
  for (const r of redefined) console.error(printable(`warning: ${r.scenario} on ${r.kernel}: "${r.label}" changed its unit or direction since the baseline: not compared`));
  if (p.values['fail-on-regression'] && (busy.length || redefined.length) && !rows.some((r) => r.verdict === 'ok' || r.verdict === 'regression' || r.verdict === 'improvement')) {
    throw new LabError(`nothing judged: every figure the two sides share ${busy.length ? 'comes from a candidate run on a busy machine' : 'changed its unit or direction'}`, busy.length ? 'rerun the candidate on a quiet machine (its report\'s "Machine during the run" says what else ran)' : 'compare against a baseline of runs that measure it the same way');
  }
  const regressions = rows.filter((r) => r.verdict === 'regression').length;
  const fmt = p.values.format ?? 'text';
  if (!b.length) console.error(`no baseline runs under ${base.join(', ')} (a first run): every figure is new, none is judged`);
  if (!rows.length) console.log('no headline figures in these runs (scenarios declare them with ctx.headline)');
  // ±∞ (a change from a baseline of 0) as text: JSON has no infinities and wrote null, which reads as "not measured"
  else if (fmt === 'json') console.log(JSON.stringify(rows, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 2));
  else console.log(fmt === 'markdown' ? markdownTable(rows) : textTable(rows));
  if (fmt !== 'json') {
    const machines = [...new Set(rows.map((r) => r.machine))];
    console.log('\n' + printable(`${regressions} regression${regressions === 1 ? '' : 's'}${lost.length ? `, ${lost.length} missing in the candidate` : ''} in ${rows.length} figure${rows.length === 1 ? '' : 's'} (k=${p.values.k}, default floor ${(p.values.floor! * 100).toFixed(0)}%; ${b.length} baseline, ${c.length} candidate run${c.length === 1 ? '' : 's'}; machine class${machines.length === 1 ? '' : 'es'}: ${machines.join('; ') || '—'})`));
  }
  if (p.values.summary) {
    const md = `### Benchmark comparison\n\n${rows.length ? markdownTable(rows) : '_no headline figures_'}\n\n${regressions} regression(s)${lost.length ? `, ${lost.length} missing in the candidate` : ''} in ${rows.length} figure(s).\n`;
    await (p.values.summary === '-' ? writeFile('/dev/stdout', md) : appendFile(p.values.summary, md));
  }
  return (regressions || lost.length) && p.values['fail-on-regression'] ? 1 : 0;
}

export async function publishCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {
    usage: 'pnpm lab publish <results dir…> --out <site dir>',
    summary: 'build a static site (home, per-scenario trends, kernel feature table, a page per run) from results.json files alone',
    options: {
      out: { type: 'string', valueName: 'DIR', description: 'where to write the site (created; its old pages are replaced)' },
      k: compareOptions.k,
      floor: compareOptions.floor,
      window: { ...compareOptions.window, default: 10, description: 'each run is compared against the N runs before it' },
    },
    positionals: { names: ['results dir'], min: 1 },
  });
  if (!p) return 0;
  if (!p.values.out) throw new UsageError('--out is required', 'pnpm lab publish reports/ --out site/');
  checkOutDir(p.values.out, { example: '--out site/' });
  // the site directory is replaced whole: runs kept inside it would go with it
  const real = (x: string) => {
    try {
      return fs.realpathSync(x);
    } catch {
      return path.resolve(x);
    }
  };
  const outReal = real(p.values.out);
  for (const input of p.positionals) {
    const r = real(input);
    if (r === outReal || r.startsWith(`${outReal}${path.sep}`)) throw new UsageError(`${input} is inside --out ${p.values.out}, which publish replaces whole: it would delete those runs`, 'keep the runs outside the site directory, e.g. pnpm lab publish history/ --out site/');
  }
  const { publishSite } = await import('./site.ts');
  const skipped = { count: 0 };
  const runs = await loadRuns(p.positionals, undefined, skipped);
  if (!runs.length) throw new LabError(`no ${skipped.count ? 'valid ' : ''}results.json under ${p.positionals.join(', ')}${skipped.count ? ` (${skipped.count} skipped, above)` : ''}`, 'pass directories of runs written by pnpm lab run|bench|matrix (e.g. reports/)');
  const r = await publishSite(runs, p.values.out, { k: p.values.k, defaultFloor: p.values.floor, window: p.values.window });
  console.log(`${r.pages} pages from ${runs.length} runs → ${r.index}`);
  return 0;
}
