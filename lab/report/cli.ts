// `pnpm lab report <outDir>`: re-render outDir/report.html from outDir/results.json (after a
// renderer change, or for a results.json copied from another machine).
import { rerenderReport } from './index.ts';

const USAGE = 'usage: pnpm lab report <outDir>   (re-render <outDir>/report.html from <outDir>/results.json)';

export async function reportCommand(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    console.log(USAGE);
    return 0;
  }
  const dirs = argv.filter((a) => !a.startsWith('-'));
  if (dirs.length === 0 || dirs.length !== argv.length) {
    console.error(USAGE);
    return 2;
  }
  for (const dir of dirs) console.log(await rerenderReport(dir));
  return 0;
}
