// What a killed tc-shaping run leaves that only this scenario knows: its crash-test shaper
// instance (tcs-crash-<pid>: pins, state, filters, maybe a daemon). Every run sweeps it (lab/run.ts
// sweepDeadRuns, before the namespaces go: the filters are removed where the namespace still is).
import fs from 'node:fs';

// controller/tc/shaper.ts STATE_DIR; not imported: every run loads this file
const STATE_DIR = '/run/ebpf-lab/tc';

export async function sweepDead(): Promise<{ removed: string[]; kept: string[] }> {
  let names: string[] = [];
  try {
    names = fs.readdirSync(STATE_DIR).filter((f) => /^tcs-crash-\d+\.json$/.test(f));
  } catch { /* none */ }
  if (!names.length) return { removed: [], kept: [] };
  const { sweepStaleCrashInstances } = await import('./crash.ts');
  const kept = await sweepStaleCrashInstances();
  let left: string[] = [];
  try {
    left = fs.readdirSync(STATE_DIR);
  } catch { /* all gone */ }
  return { removed: names.map((f) => f.replace(/\.json$/, '')).filter((n) => !left.includes(`${n}.json`)), kept };
}
