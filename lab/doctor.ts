// `pnpm lab doctor`: what this kernel lets the lab do, probed (see lab/probes.ts).
import { parseArgs, suggest, UsageError } from '../common/args.ts';
import { formatProbeTable, probeKernel } from './probes.ts';
import { ensureTools } from './setup.ts';

export async function doctorCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {
    usage: 'pnpm lab doctor [--json] [--no-kvm] [--require ROW,ROW]',
    summary: 'probe the running kernel: BTF, JIT, program/map types, helpers, a real trial attach per hook, BPF LSM, KVM',
    options: {
      json: { type: 'boolean', description: 'print the probe table as JSON' },
      require: { type: 'list', valueName: 'ROW,ROW', description: 'exit 1 unless these rows are usable here (row names as printed, e.g. attach:kprobe,BPF LSM usable): doctor as a gate in a script' },
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
  // it always exited 0, so a script could not gate on it (review, session 57)
  const want = (p.values.require as string[] | undefined) ?? [];
  const unknown = want.filter((k) => !(k in t));
  if (unknown.length) {
    const s = suggest(unknown[0]!, Object.keys(t));
    throw new UsageError(`--require ${JSON.stringify(unknown[0])}: no such row${s ? ` (did you mean ${s}?)` : ''}`, `rows: ${Object.keys(t).join(', ')}`);
  }
  const missing = want.filter((k) => !t[k]!.ok);
  if (missing.length) console.error(`missing here: ${missing.map((k) => `${k} (${t[k]!.detail ?? 'no'})`).join('; ')}`);
  return missing.length ? 1 : 0;
}
