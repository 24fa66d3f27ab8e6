// XDP. mode 'auto' makes a bpf_link (detached when closed or when the process dies); 'native' /
// 'generic' attach over netlink with the mode flag (the lifecycle module undoes them at exit);
// `replace` swaps the program atomically.
import koffi from 'koffi';
import { B, bpf_xdp_attach_opts } from '../ffi.ts';
import { AttachError, AttachInputError, hintFor } from '../errors.ts';
import type { Link } from '../link.ts';
import { captureLibbpf } from '../log.ts';
import type { Program } from '../object.ts';
import { ifindexOf, linkFrom, netlinkLink, requireLoaded } from './internal.ts';

export const XdpFlags = { UPDATE_IF_NOEXIST: 1, SKB_MODE: 2, DRV_MODE: 4, HW_MODE: 8, REPLACE: 16 } as const;
export const XDP_MODES = ['auto', 'native', 'generic'] as const;
export type XdpMode = (typeof XDP_MODES)[number];

export interface XdpOptions {
  mode?: XdpMode;
  /** the program attached now, to swap atomically (REPLACE) */
  replace?: Program;
  /** the same by a file descriptor of the attached program, when it is not one of ours (bpf_prog_get_fd_by_id) */
  replaceFd?: number;
}

const attachOpts = (oldFd: number) => ({ sz: koffi.sizeof(bpf_xdp_attach_opts), old_prog_fd: oldFd });

/** the id of the program attached to a device in this mode (native/generic), 0 when none */
export function xdpAttachedId(ifname: string | number, mode: 'native' | 'generic'): number {
  const id = [0];
  const r = B.bpf_xdp_query_id(ifindexOf('xdp', ifname), mode === 'native' ? XdpFlags.DRV_MODE : XdpFlags.SKB_MODE, id);
  return r < 0 ? 0 : id[0]!;
}

export function attachXdp(prog: Program, ifname: string | number, opts: XdpOptions = {}): Link {
  const mode = opts.mode ?? 'auto';
  if (!XDP_MODES.includes(mode)) throw new AttachInputError('xdp', `XDP mode "${mode}" is not one of ${XDP_MODES.join(', ')}`);
  if (opts.replace) requireLoaded('xdp', opts.replace);
  requireLoaded('xdp', prog);
  const ifindex = ifindexOf('xdp', ifname);
  const oldFd = opts.replace?.fd ?? opts.replaceFd;
  if (mode === 'auto' && oldFd === undefined) return linkFrom('xdp', prog, `xdp ${ifname}`, () => B.bpf_program__attach_xdp(prog.ptr, ifindex));

  // without `replace`, never over another program: netlink would swap it out silently (a second
  // LB instance on a device took the first one's traffic that way); the kernel says EBUSY instead
  const modeFlags = mode === 'native' ? XdpFlags.DRV_MODE : mode === 'generic' ? XdpFlags.SKB_MODE : 0;
  const flags = modeFlags | (oldFd !== undefined ? XdpFlags.REPLACE : XdpFlags.UPDATE_IF_NOEXIST);
  const { result: r, log } = captureLibbpf(() => B.bpf_xdp_attach(ifindex, prog.fd, flags, attachOpts(oldFd ?? 0)));
  if (r < 0) throw new AttachError('xdp', prog.name, `xdp ${ifname} (${mode})`, r, hintFor(r, log) ?? (mode === 'native' ? 'the driver has no native XDP: try mode generic' : undefined), log);
  const detachFlags = modeFlags | XdpFlags.REPLACE;
  const myFd = prog.fd;
  return netlinkLink(prog, `xdp ${ifname} (${mode})`, () => {
    // detach only if it is still our program (someone may have replaced it); the kernel refuses
    // otherwise, and libbpf's complaint about that is expected, so it is captured and dropped
    captureLibbpf(() => B.bpf_xdp_attach(ifindex, -1, detachFlags, attachOpts(myFd)));
  });
}
