// cgroup v2 helpers shared by every capability that selects workloads by cgroup (security,
// tracing, socket LB, energy, tc). Hosts differ: pure v2 mounts cgroup2 at /sys/fs/cgroup, hybrid
// systemd hosts at /sys/fs/cgroup/unified; so the mount point is read from /proc/mounts, never
// assumed.
import fs from 'node:fs';
import path from 'node:path';
import { ownerAlive, signalAll } from './host.ts';
import { LabError } from './errors.ts';

/** where cgroup2 is mounted, or null (no cgroup2 mount) */
export function findCgroup2Root(): string | null {
  for (const l of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const f = l.split(' ');
    if (f[2] === 'cgroup2') return f[1]!;
  }
  return null;
}

export function cgroup2Root(): string {
  const root = findCgroup2Root();
  if (root === null) throw new Error('no cgroup2 mount in /proc/mounts (mount -t cgroup2 none /sys/fs/cgroup/unified)');
  return root;
}

/**
 * "/a/b" relative to the cgroup2 root, or an absolute path under it → absolute directory,
 * normalised: "/a" and "a/" are one cgroup, and a path whose ".." leads out of the mount (to
 * /sys/fs, which a policy then "enforced") is refused.
 */
export function cgroupDir(p: string, root = cgroup2Root()): string {
  const dir = p === root || p.startsWith(`${root}/`) ? path.resolve(p) : path.resolve(root, `./${p}`);
  if (dir !== root && !dir.startsWith(`${root}/`)) throw new LabError(`cgroup ${JSON.stringify(p)} leads out of the cgroup2 mount ${root}`, `give a cgroup below ${root} (absolute, or relative to it)`);
  return dir;
}

/** cgroup v2 id = inode number of its directory (kernfs node id): what bpf_get_current_cgroup_id returns */
export function cgroupId(dir: string): bigint {
  return fs.statSync(dir, { bigint: true }).ino;
}

/** depth below the root (root = 0): the level bpf_get_current_ancestor_cgroup_id takes */
export function cgroupLevel(dir: string, root = cgroup2Root()): number {
  const rel = path.relative(root, dir);
  return rel ? rel.split('/').length : 0;
}

/**
 * The directories of the cgroups with these ids (inode numbers; kernfs ids are not reused within a
 * boot, so a removed one is simply absent): one walk of the whole tree for all of them, for the
 * rare case where only ids are known (selectors found in pinned maps that no state file names).
 */
export function cgroupsById(root: string, ids: ReadonlySet<bigint>): Map<bigint, string> {
  const out = new Map<bigint, string>();
  const todo = [root];
  for (let dir; out.size < ids.size && (dir = todo.pop()) !== undefined; ) {
    try {
      const id = cgroupId(dir);
      if (ids.has(id)) out.set(id, dir);
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) todo.push(path.join(dir, e.name));
    } catch {
      /* removed during the walk */
    }
  }
  return out;
}

export function createCgroup(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
}

/** Move a process into a cgroup. */
export function joinCgroup(dir: string, pid: number): void {
  fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
}

/**
 * Remove a cgroup tree (children first), moving stragglers to the root first. A task that is still
 * exiting keeps its cgroup busy for a moment after it left cgroup.procs (EBUSY): retried for ~1 s,
 * moving whatever entered meanwhile, then the error is thrown (the caller's cleanup names it).
 */
export function removeCgroup(dir: string, root = cgroup2Root()): void {
  if (!fs.existsSync(dir)) return;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeCgroup(path.join(dir, e.name), root);
  for (let i = 0; ; i++) {
    try {
      for (const pid of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        try {
          joinCgroup(root, Number(pid));
        } catch {
          /* exited */
        }
      }
    } catch {
      /* gone */
    }
    try {
      fs.rmdirSync(dir);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || i >= 50) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

/** `ebpf-lab-<what>-<pid>…` at the cgroup2 root: a cgroup a lab process made and names itself by */
const OWNED = /^ebpf-lab-[a-z]+(?:-[a-z]+)*-(\d+)(?:-|$)/;

/** SIGKILL every process in a cgroup tree (but this one) */
function killCgroupTree(dir: string): void {
  let entries: fs.Dirent[] = [];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
    signalAll(fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number), 'SIGKILL');
  } catch { /* gone */ }
  for (const e of entries) if (e.isDirectory()) killCgroupTree(path.join(dir, e.name));
}

/** mount points of cgroup v1 hierarchies (hybrid hosts: energy caps CPU through v1's cpu controller) */
export function cgroupV1Roots(): string[] {
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')).filter((f) => f[2] === 'cgroup').map((f) => f[1]!);
}

/**
 * Remove the cgroups lab processes left at the cgroup2 root, and at the roots of v1 hierarchies,
 * when they died without their cleanup (SIGKILL, a second Ctrl-C, a removal that failed): every
 * `ebpf-lab-<what>-<pid>…` whose pid is gone, a zombie, or reused by a process started after the
 * cgroup was made (common/host.ts ownerAlive). Its
 * processes are the dead run's orphans and are killed: moved to the root instead, a SIGKILLed
 * energy run's two busy loops and its fsync writer ran on at a whole CPU into every later run and
 * benchmark (session 34). Returns what was removed (v1 ones by path: that energy run's cpu cgroup on this
 * hybrid host stayed too).
 */
export function sweepStaleCgroups(roots: string | (string | null)[] = [findCgroup2Root(), ...cgroupV1Roots()], only?: RegExp): string[] {
  const removed: string[] = [];
  const v2 = findCgroup2Root();
  for (const root of typeof roots === 'string' ? [roots] : roots) {
    if (!root) continue;
    let names: string[];
    try {
      names = fs.readdirSync(root);
    } catch {
      continue;
    }
    for (const name of names) {
      const m = OWNED.exec(name);
      if (!m || (only && !only.test(name)) || ownerAlive(Number(m[1]), path.join(root, name))) continue;
      try {
        killCgroupTree(path.join(root, name));
        removeCgroup(path.join(root, name), root);
        removed.push(root === v2 ? name : path.join(root, name));
      } catch {
        /* busy: the next run tries again */
      }
    }
  }
  return removed;
}

/** the cgroup2 path of a process (relative to the root) */
export function cgroupOf(pid: number | 'self'): string {
  const l = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((x) => x.startsWith('0::'));
  return l ? l.slice(3) : '/';
}
