// What lab runs killed outright (SIGKILL, the OOM killer, a second Ctrl-C during cleanup) leave in
// the temp dir, found by the owner's pid in the name, as cgroups (common/cgroup.ts) and namespaces
// (lab/netns.ts sweepStale) are. Found in session 34 by SIGKILLing each scenario and running it
// again: security left PostgreSQL running from its temp dir (the next run moved to another port),
// hello-openat and socket-lb their temp files, for good.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ownerAlive, signalAll, terminate } from './host.ts';

/** A temp dir owned by this process: `ebpf-lab-<what>-<pid>-XXXXXX`, swept once the pid is dead. */
export function runTempDir(what: string): string {
  if (!/^[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*$/.test(what)) throw new Error(`temp dir kind "${what}": lowercase words joined by -`);
  return fs.mkdtempSync(path.join(os.tmpdir(), `ebpf-lab-${what}-${process.pid}-`));
}

/** A temp file owned by this process: `ebpf-lab-<what>-<pid>.<ext>` (not created). */
export function runTempFile(what: string, ext: string): string {
  return path.join(os.tmpdir(), `ebpf-lab-${what}-${process.pid}.${ext}`);
}

// the pid is followed by mkdtemp's six characters or an extension: a bare trailing number could
// be mkdtemp's suffix of a dir that names no pid (six random digits)
const OWNED = /^ebpf-lab-[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*-(\d+)(?:-[A-Za-z0-9]{6}|\.[a-z]+)$/;

/** the pid a temp entry name says owns it, or undefined */
export function tempOwner(name: string): number | undefined {
  const m = OWNED.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** pids (not ours) whose command line names a path under dir, or whose working directory is there */
function usersOf(dir: string): number[] {
  const out: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    const pid = Number(p);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      let cwd = '';
      try {
        cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
      } catch { /* a kernel thread, or gone */ }
      if (argv.some((a) => a === dir || a.includes(`${dir}/`)) || cwd === dir || cwd.startsWith(`${dir}/`)) out.push(pid);
    } catch { /* gone */ }
  }
  return out;
}

/**
 * Remove the temp entries of dead owners (ownerAlive: a zombie is dead, and so is an owner whose
 * pid a process started after the entry now holds). What still runs from a dead run's dir (PostgreSQL from
 * its data dir) is its orphan: SIGTERM, then SIGKILL after 2 s. Returns what was removed.
 */
export async function sweepStaleTemp(tmp = os.tmpdir()): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(tmp);
  } catch {
    return removed;
  }
  for (const name of names) {
    const owner = tempOwner(name);
    const p = path.join(tmp, name);
    if (owner === undefined || ownerAlive(owner, p)) continue;
    const users = usersOf(p);
    const ended = await Promise.all(users.map((u) => terminate(u, undefined, 2000)));
    signalAll(users.filter((_, i) => !ended[i]), 'SIGKILL');
    try {
      fs.rmSync(p, { recursive: true, force: true });
      removed.push(name);
    } catch { /* the next run tries again */ }
  }
  return removed;
}

/** sweepStaleTemp before a run (on the host or a VM row), saying what it removed in one line */
export async function sweepStaleTempBeforeRun(info: (line: string) => void): Promise<void> {
  const removed = await sweepStaleTemp();
  if (removed.length) info(`removed ${removed.length} temp dir(s)/file(s) dead lab runs left (and stopped what ran from them): ${removed.join(', ')}`);
}
