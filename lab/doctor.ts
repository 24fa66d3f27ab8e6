// `pnpm lab doctor`: what this kernel lets the lab do, probed (see lab/probes.ts).
import { parseArgs } from '../common/args.ts';
import { formatProbeTable, probeKernel } from './probes.ts';
import { ensureTools } from './setup.ts';

export async function doctorCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {
    usage: 'pnpm lab doctor [--json] [--no-kvm]',
    summary: 'probe the running kernel: BTF, JIT, program/map types, helpers, a real trial attach per hook, BPF LSM, KVM',
    options: {
      json: { type: 'boolean', description: 'print the probe table as JSON' },
      'no-kvm': { type: 'boolean', description: 'skip the KVM probe (where /dev/kvm opens it boots a guest, first fetching a Debian 6.1 kernel (~470 MB unpacked) if none is cached; its verdict is kept for a day)' },
    },
  });
  if (!p) return 0;
  if (process.getuid?.() === 0) await ensureTools(['build']);
  const t = await probeKernel({ kvm: !p.values['no-kvm'] });
  // the second VM backend: can `--vm-backend vng` run here, and if not, why
  const { vngStatus } = await import('./vm/index.ts');
  const vng = await vngStatus();
  if (p.values.json) console.log(JSON.stringify({ ...t, vng }, null, 2));
  else {
    console.log(formatProbeTable(t));
    console.log(`virtme-ng (--vm-backend vng): ${vng.ok ? `usable (${vng.version})` : `unavailable — ${vng.why}`}`);
  }
  return 0;
}
