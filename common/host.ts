// Host plumbing every BPF run needs: the pseudo filesystems (tracefs for tracepoints, bpffs for
// pins, securityfs to read the active LSMs, debugfs), found or mounted, and the cgroup v2 root
// (hybrid hosts mount it at /sys/fs/cgroup/unified, pure v2 hosts and our VMs at /sys/fs/cgroup).
import fs from 'node:fs';
import { execa } from 'execa';

const MOUNTS: [type: string, target: string][] = [
  ['tracefs', '/sys/kernel/tracing'],
  ['debugfs', '/sys/kernel/debug'],
  ['bpf', '/sys/fs/bpf'],
  ['securityfs', '/sys/kernel/security'],
];

function mounts(): { type: string; target: string }[] {
  return fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [, target, type] = l.split(' ');
      return { type: type!, target: target! };
    });
}

/** Mount what is missing (root only; silently skipped otherwise). */
export async function ensureMounts(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const have = mounts();
  for (const [type, target] of MOUNTS) {
    if (have.some((m) => m.type === type && m.target === target)) continue;
    if (type === 'tracefs' && have.some((m) => m.type === 'tracefs')) continue;
    fs.mkdirSync(target, { recursive: true });
    await execa('mount', ['-t', type, type, target], { reject: false });
  }
}

export function cgroup2Root(): string | null {
  const m = mounts().find((x) => x.type === 'cgroup2');
  return m ? m.target : null;
}

export function tracefsRoot(): string | null {
  const m = mounts().filter((x) => x.type === 'tracefs');
  return m.find((x) => x.target === '/sys/kernel/tracing')?.target ?? m[0]?.target ?? null;
}

export function activeLsms(): string[] | null {
  try {
    return fs.readFileSync('/sys/kernel/security/lsm', 'utf8').trim().split(',');
  } catch {
    return null;
  }
}
