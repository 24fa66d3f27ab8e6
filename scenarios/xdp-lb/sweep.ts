// What a killed xdp-lb run leaves that only this scenario knows: its LB instances (xlb<pid>,
// xlbs<pid>, xlbc<pid>) pinned under the pin root, whose XDP links and maps the pins keep alive.
// Every run sweeps them (lab/run.ts sweepDeadRuns), not only this scenario's next one.
import fs from 'node:fs';

// controller/lb/config.ts DEFAULT_PIN_ROOT; not imported: every run of every scenario loads this file
const PIN_ROOT = '/sys/fs/bpf/ebpf-lab';
const PREFIXES = ['xlb', 'xlbs', 'xlbc'];

export async function sweepDead(): Promise<{ removed: string[]; kept: string[] }> {
  let names: string[] = [];
  try {
    names = fs.readdirSync(PIN_ROOT).filter((n) => /^xlb[sc]?\d+$/.test(n));
  } catch { /* no pin root */ }
  if (!names.length) return { removed: [], kept: [] };
  const { sweepStalePins } = await import('./topology.ts');
  return { removed: PREFIXES.flatMap((p) => sweepStalePins(p)), kept: [] };
}
