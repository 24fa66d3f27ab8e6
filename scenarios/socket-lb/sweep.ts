// What a killed socket-lb run leaves that only this scenario knows: its crash-test svc instance
// (slb-crash-<pid>: pinned cgroup links, state, maybe a daemon). Every run sweeps it (lab/run.ts
// sweepDeadRuns), not only this scenario's next one.
import fs from 'node:fs';

// controller/svc/controller.ts RUN_DIR and PIN_ROOT; not imported: every run loads this file
const DIRS = ['/run/ebpf-lab', '/sys/fs/bpf/ebpf-lab'];

export async function sweepDead(): Promise<{ removed: string[]; kept: string[] }> {
  const any = DIRS.some((d) => {
    try {
      return fs.readdirSync(d).some((f) => /^svc-slb-crash-\d+(\.json)?$/.test(f));
    } catch {
      return false;
    }
  });
  if (!any) return { removed: [], kept: [] };
  const { sweepStaleCrashInstances } = await import('./crash.ts');
  return sweepStaleCrashInstances();
}
