// The identity the kernel sees for a binary, asked of the kernel itself.
//
// stat(2) and the hooks can disagree: on overlayfs (containers, the lab's VMs) stat reports the
// lower layer's device and inode while bprm->file carries the overlay's, so a policy built from
// stat would silently match nothing. The oracle: a helper process joins a throw-away cgroup whose id
// is in sec_config.oracle_cgroup, forks one child per binary, and each child execs it; the exec
// tracepoint records (dev, ino) of bprm->file and SIGKILLs the child before it returns to user
// space, so no instruction of the binary runs. A canary (/usr/bin/true) goes first: if it is not
// killed, the oracle is not armed and nothing else is exec'd.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { BpfMap } from '../libbpf/index.ts';
import type { sec_config, sec_file_key } from '../../bpf/gen/security.ts';
import { cgroup2Root, cgroupId, createCgroup, sweepStaleCgroups } from '../../common/cgroup.ts';
import { fileId, type FileId } from './files.ts';
import { LabError } from '../../common/errors.ts';

export type Identified = FileId & { how: 'kernel' | 'stat'; why?: string };

const CANARY = '/usr/bin/true';
const HELPER = `import os,sys
open(sys.argv[1]+'/cgroup.procs','w').write(str(os.getpid()))
null=os.open('/dev/null',os.O_RDWR)
def one(p):
    pid=os.fork()
    if pid==0:
        os.dup2(null,0); os.dup2(null,1); os.dup2(null,2)
        try: os.execve(p,[p],{})
        except OSError: os._exit(127)
    _,st=os.waitpid(pid,0)
    print(pid, os.WIFSIGNALED(st) and os.WTERMSIG(st)==9, p, flush=True)
    return os.WIFSIGNALED(st) and os.WTERMSIG(st)==9
if not one(sys.argv[2]): sys.exit(3)
for p in sys.argv[3:]: one(p)`;

export class KernelIdentity {
  private readonly cache = new Map<string, Identified>();
  constructor(
    private readonly maps: { config: BpfMap<number, sec_config>; oracle: BpfMap<number, sec_file_key> },
    /** the exec tracepoint is attached (else: stat identities, marked as such) */
    public available: boolean,
  ) {}

  identify(paths: string[]): Map<string, Identified> {
    const out = new Map<string, Identified>();
    const ask: { p: string; key: string; st: FileId }[] = [];
    for (const p of new Set(paths)) {
      const st = fileId(p);
      const s = fs.statSync(st.path);
      const key = `${st.dev}:${st.ino}:${s.mtimeMs}:${s.size}`;
      const hit = this.cache.get(key);
      if (hit) out.set(p, { ...hit, path: st.path });
      else if (!this.available) out.set(p, { ...st, how: 'stat', why: 'exec tracepoint not attached' });
      else if (!s.isFile() || !(s.mode & 0o111)) out.set(p, { ...st, how: 'stat', why: 'not an executable file' });
      else if (isScript(st.path)) out.set(p, { ...st, how: 'stat', why: '#! script: exec runs its interpreter' });
      else ask.push({ p, key, st });
    }
    if (!ask.length) return out;
    const got = this.oracle(ask.map((a) => a.st.path));
    for (const a of ask) {
      const k = got.get(a.st.path);
      const id: Identified = k ? { path: a.st.path, dev: k.dev, ino: k.ino, how: 'kernel' } : { ...a.st, how: 'stat', why: 'the oracle exec did not reach the tracepoint' };
      if (k) this.cache.set(a.key, id);
      out.set(a.p, id);
    }
    return out;
  }

  private oracle(files: string[]): Map<string, sec_file_key> {
    const root = cgroup2Root();
    // those of applies killed outright (SIGKILL): only `lab run` swept them, which a user of
    // `lab policy` alone never runs (review, session 58)
    sweepStaleCgroups(root, /^ebpf-lab-security-oracle-\d+$/);
    const dir = path.join(root, `ebpf-lab-security-oracle-${process.pid}`);
    createCgroup(dir);
    const res = new Map<string, sec_file_key>();
    const cfg = this.maps.config.get(0)!;
    this.maps.config.set(0, { ...cfg, oracle_cgroup: cgroupId(dir) });
    try {
      // entries of oracles killed before they read theirs (SIGKILL of an apply): the map holds
      // 1024, and a full one records nothing while the probe exec is still killed
      for (const pid of [...this.maps.oracle.keys()] as number[]) if (!fs.existsSync(`/proc/${pid}`)) this.maps.oracle.delete(pid);
      const r = spawnSync('/usr/bin/python3', ['-c', HELPER, dir, CANARY, ...files], { encoding: 'utf8', timeout: 30_000 + files.length * 500 /* a fork + exec each; slow under TCG */ });
      // every answer read and its entry removed first, however the helper ended
      const unrecorded: string[] = [];
      for (const l of (r.stdout ?? '').split('\n')) {
        const [pid, killed, ...p] = l.split(' ');
        if (!pid || killed !== 'True') continue;
        const k = this.maps.oracle.get(Number(pid));
        if (k) res.set(p.join(' '), k);
        else if (p.join(' ') !== CANARY) unrecorded.push(p.join(' '));
        this.maps.oracle.delete(Number(pid));
      }
      if (r.status === 3) throw new LabError(`identity oracle not armed: ${CANARY} was not stopped at exec (sec_exec_tp is not attached) — nothing was changed`, 'start the controller: pnpm lab policy daemon');
      // stopped part-way (a Ctrl-C reaches it too, in the caller's process group; a timeout): the
      // files it never reached fell back to stat, whose identities match nothing on overlayfs, and
      // the apply went on to exit 0 (review, session 58)
      if (r.status !== 0) throw new LabError(`identifying the policy's binaries was cut short (${r.error ? (r.error as NodeJS.ErrnoException).code ?? r.error.message : r.signal ? `the helper got ${r.signal}` : `the helper exited ${r.status}`}) — nothing was changed`, 'apply the policy again');
      // killed at exec but not recorded: the kernel's record failed (a full oracle map); stat's
      // identity in its place would be the same silent fallback
      if (unrecorded.length) throw new LabError(`the kernel did not record the identity of ${unrecorded.slice(0, 3).join(', ')}${unrecorded.length > 3 ? ' …' : ''} (its oracle map is full?) — nothing was changed`, 'restart the daemon (kill it, then pnpm lab policy daemon) and apply the policy again');
    } finally {
      this.maps.config.set(0, { ...this.maps.config.get(0)!, oracle_cgroup: 0n });
      try {
        fs.rmdirSync(dir);
      } catch {
        /* a straggler: the next oracle sweeps it */
      }
    }
    return res;
  }
}

function isScript(p: string): boolean {
  const fd = fs.openSync(p, 'r');
  try {
    const b = Buffer.alloc(2);
    return fs.readSync(fd, b, 0, 2, 0) === 2 && b.toString() === '#!';
  } finally {
    fs.closeSync(fd);
  }
}
