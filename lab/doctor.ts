// `pnpm lab doctor`: what this kernel lets the lab do, probed (see lab/probes.ts).
import { formatProbeTable, probeKernel } from './probes.ts';
import { ensureTools } from './setup.ts';

export async function doctorCommand(argv: string[]): Promise<number> {
  if (process.getuid?.() === 0) await ensureTools(['build']);
  const t = await probeKernel({ kvm: !argv.includes('--no-kvm') });
  if (argv.includes('--json')) console.log(JSON.stringify(t, null, 2));
  else console.log(formatProbeTable(t));
  return 0;
}
