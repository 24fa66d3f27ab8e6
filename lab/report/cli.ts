// `pnpm lab report <outDir|results.json>…`: re-render outDir/report.html from outDir/results.json
// (after a renderer change, or for a results.json copied from another machine).
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, UsageError } from '../../common/args.ts';
import { LabError } from '../../common/errors.ts';
import { rerenderReport } from './index.ts';

export async function reportCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {
    usage: 'pnpm lab report <run dir>…',
    summary: 're-render <run dir>/report.html from <run dir>/results.json (a results.json path works too; boot-times runs included)',
    options: {},
    positionals: { names: ['run dir'], min: 1 },
  });
  if (!p) return 0;
  // every path first: a mistyped one among several must not leave some re-rendered and some not
  for (const dir of p.positionals) if (!fs.existsSync(dir)) throw new UsageError(`cannot read ${dir}: no such file or directory`, 'pass run directories (reports/<run-id>) or their results.json; nothing was re-rendered');
  // …and every results.json read and checked (a broken one after a good one left the good one
  // re-rendered and the command failed)
  for (const dir of p.positionals) {
    if (fs.existsSync(path.join(dir, 'running.json'))) {
      const { runStillGoing } = await import('../run.ts');
      if (runStillGoing(dir)) throw stillGoing(dir);
      // a killed run's report is written from its running.json (and a finished guest's results);
      // one that is no run's record wrote nothing after the others were re-rendered (review, session 57)
      if (!fs.existsSync(path.join(dir, 'results.json'))) {
        const { runningRecordProblem } = await import('../run.ts');
        const problem = runningRecordProblem(dir);
        if (problem) throw new LabError(`${dir}: no results.json, and ${problem}: there is no report to render`, `pass run directories written by pnpm lab run|bench|matrix${p.positionals.length > 1 ? '; nothing was re-rendered' : ''}`);
        continue;
      }
    }
    try {
      await rerenderReport(dir, { checkOnly: true });
    } catch (e) {
      if (e instanceof LabError && p.positionals.length > 1) throw new (e.constructor as typeof LabError)(e.message, `${e.fix ? `${e.fix}; ` : ''}nothing was re-rendered`);
      throw e;
    }
  }
  for (const dir of p.positionals) {
    // a run killed outright left running.json (and no results, or a VM guest's only): its report
    // is written from those
    if (fs.existsSync(path.join(dir, 'running.json'))) {
      const { reportKilledRun } = await import('../run.ts');
      const r = await reportKilledRun(dir, `pnpm lab report (pid ${process.pid})`);
      if (r === 'running') throw stillGoing(dir);
      if (r === 'written') {
        console.log(path.join(dir, 'report.html'));
        continue;
      }
    }
    console.log(await rerenderReport(dir));
  }
  return 0;
}

const stillGoing = (dir: string) => new LabError(`${dir}: its run is still going (running.json names a live process): there is no report to render yet`, 'wait for the run to finish, or stop it (Ctrl-C / kill <pid>)');
