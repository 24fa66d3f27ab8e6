// cgroup hooks (connect4/6, sendmsg, sock_create …) as bpf_links on a cgroup v2 directory.
import fs from 'node:fs';
import { archFacts } from '../../../common/arch.ts';
import { ownerAlive } from '../../../common/host.ts';
import { B, NULL } from '../ffi.ts';
import { AttachInputError, Errno, errnoName } from '../errors.ts';
import { Link } from '../link.ts';
import type { Program } from '../object.ts';
import { linkFrom, openTarget, withFd } from './internal.ts';

const HINT = 'give a cgroup v2 directory (e.g. /sys/fs/cgroup/unified/… on hybrid hosts)';

export function attachCgroup(prog: Program, cgroupPath: string): Link {
  if (!fs.statSync(cgroupPath, { throwIfNoEntry: false })?.isDirectory()) throw new AttachInputError('cgroup', `no cgroup directory ${cgroupPath}`, HINT, Errno.ENOENT);
  const fd = openTarget('cgroup', cgroupPath, archFacts().O_DIRECTORY, HINT);
  return withFd(fd, () => linkFrom('cgroup', prog, `cgroup ${cgroupPath}`, () => B.bpf_program__attach_cgroup(prog.ptr, fd)));
}

/** BPF_F_BEFORE (uapi bpf.h): with no relative program, before every program attached there */
const BPF_F_BEFORE = 1 << 3;
let tmpSeq = 0;
const WRAP_PIN = 'ebpf-lab-link-';

/** the wrapping pins of processes that died between pin and unpin: each holds its link attached */
function sweepWrapPins(dir: string): void {
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir).filter((n) => n.startsWith(WRAP_PIN));
  } catch { /* no bpffs: the pin fails below and says so */ }
  for (const n of names) {
    const pid = Number(n.slice(WRAP_PIN.length).split('-')[0]);
    if (pid !== process.pid && !ownerAlive(pid, `${dir}/${n}`)) fs.rmSync(`${dir}/${n}`, { force: true });
  }
}

/**
 * attachCgroup, placed before every program already attached to this cgroup (BPF_F_BEFORE, where
 * the kernel orders cgroup programs: Debian's 6.12.117, 7.x and this lab's host, not 6.1), so it runs first at this level whoever attached
 * earlier; a program attached later without the flag goes behind it. Elsewhere the link is
 * attached as attachCgroup does, in attach order, and `why` says what the kernel answered.
 * libbpf 1.1 has no attach call that takes the flag (bpf_program__attach_cgroup_opts came in 1.6),
 * so the link is made by bpf_link_create and wrapped through a pin (bpf_link__open), which is
 * removed at once: the Link then is libbpf's like any other.
 */
export function attachCgroupFirst(prog: Program, cgroupPath: string, pinDir = '/sys/fs/bpf'): { link: Link; first: boolean; why?: string } {
  if (!fs.statSync(cgroupPath, { throwIfNoEntry: false })?.isDirectory()) throw new AttachInputError('cgroup', `no cgroup directory ${cgroupPath}`, HINT, Errno.ENOENT);
  const fallback = (why: string) => ({ link: attachCgroup(prog, cgroupPath), first: false, why });
  if (!prog.loaded) return fallback('not loaded'); // attachCgroup says so
  const fd = openTarget('cgroup', cgroupPath, archFacts().O_DIRECTORY, HINT);
  let lfd: number;
  try {
    // struct bpf_link_create_opts up to flags (sz, flags): libbpf reads no further
    const opts = Buffer.alloc(16);
    opts.writeBigUInt64LE(16n, 0);
    opts.writeUInt32LE(BPF_F_BEFORE, 8);
    lfd = B.bpf_link_create(B.bpf_program__fd(prog.ptr), fd, B.bpf_program__expected_attach_type(prog.ptr), opts);
  } finally {
    fs.closeSync(fd);
  }
  if (lfd < 0) return fallback(`bpf_link_create with BPF_F_BEFORE: ${errnoName(lfd)}`);
  sweepWrapPins(pinDir);
  const tmp = `${pinDir}/${WRAP_PIN}${process.pid}-${tmpSeq++}`; // (bpffs refuses names with a dot)
  let p: ReturnType<typeof B.bpf_link__open> = NULL;
  try {
    if (B.bpf_obj_pin(lfd, tmp) === 0) p = B.bpf_link__open(tmp);
  } finally {
    // unpinned through libbpf: it forgets the path too (a link it thinks pinned refuses bpf_link__pin: EBUSY)
    if (p !== NULL && p !== null && p !== 0n) B.bpf_link__unpin(p);
    else fs.rmSync(tmp, { force: true });
    fs.closeSync(lfd); // the bpf_link holds its own fd; without one, this close detaches it
  }
  if (p === NULL || p === null || p === 0n) return fallback(`cannot wrap the link (no bpffs at ${pinDir}?)`);
  return { link: prog.object.adopt(new Link(`${prog.name} → cgroup ${cgroupPath} (first)`, p)), first: true };
}
