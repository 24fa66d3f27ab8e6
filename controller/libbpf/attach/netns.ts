// Network-namespace hooks (flow dissector, sk_lookup) as bpf_links on a netns file.
import { B } from '../ffi.ts';
import type { Link } from '../link.ts';
import type { Program } from '../object.ts';
import { linkFrom, openTarget, withFd } from './internal.ts';

/** netnsPath: /proc/<pid>/ns/net or /run/netns/<name> */
export function attachNetns(prog: Program, netnsPath: string): Link {
  const fd = openTarget('netns', netnsPath, 0, 'give a network namespace file: /proc/<pid>/ns/net or /run/netns/<name>');
  return withFd(fd, () => linkFrom('netns', prog, `netns ${netnsPath}`, () => B.bpf_program__attach_netns(prog.ptr, fd)));
}
