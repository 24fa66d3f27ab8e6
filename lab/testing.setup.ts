// vitest's global setup: the pseudo filesystems every BPF test needs (tracefs, bpffs, …), mounted
// as `pnpm lab run` and the daemons mount them. Without it a file run alone on a freshly booted
// machine failed to attach its tracepoints (ENOENT) while the whole suite passed, because an
// earlier file had mounted them.
import { ensureMounts } from '../common/host.ts';

export default async function setup(): Promise<void> {
  await ensureMounts();
}
