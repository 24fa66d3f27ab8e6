// cgroup hooks (connect4/6, sendmsg, sock_create …) as bpf_links on a cgroup v2 directory.
import fs from 'node:fs';
import { archFacts } from '../../../common/arch.ts';
import { B } from '../ffi.ts';
import { AttachInputError, Errno } from '../errors.ts';
import type { Link } from '../link.ts';
import type { Program } from '../object.ts';
import { linkFrom, openTarget, withFd } from './internal.ts';

const HINT = 'give a cgroup v2 directory (e.g. /sys/fs/cgroup/unified/… on hybrid hosts)';

export function attachCgroup(prog: Program, cgroupPath: string): Link {
  if (!fs.statSync(cgroupPath, { throwIfNoEntry: false })?.isDirectory()) throw new AttachInputError('cgroup', `no cgroup directory ${cgroupPath}`, HINT, Errno.ENOENT);
  const fd = openTarget('cgroup', cgroupPath, archFacts().O_DIRECTORY, HINT);
  return withFd(fd, () => linkFrom('cgroup', prog, `cgroup ${cgroupPath}`, () => B.bpf_program__attach_cgroup(prog.ptr, fd)));
}
