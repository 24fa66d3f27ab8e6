// tc (clsact) through libbpf's bpf_tc_* API. The clsact qdisc is created when missing and removed
// on close only if this attach created it (other filters may live on a qdisc someone else made) —
// unless `keepQdisc`: removing a clsact removes every filter on it, so a caller whose device others
// may add filters to after the attach (the tc shaper) keeps it and removes it itself once it is bare.
import koffi from 'koffi';
import { B, bpf_tc_hook, bpf_tc_opts } from '../ffi.ts';
import { AttachError, AttachInputError, Errno } from '../errors.ts';
import type { Link } from '../link.ts';
import { captureLibbpf } from '../log.ts';
import type { Program } from '../object.ts';
import { ifindexOf, netlinkLink, requireLoaded } from './internal.ts';

export const TcAttachPoint = { INGRESS: 1, EGRESS: 2 } as const;
export type TcDirection = 'ingress' | 'egress';

export interface TcOptions {
  /** filter priority, 1 … 65535 */
  priority?: number;
  /** filter handle, > 0 */
  handle?: number;
  /**
   * Replace the filter already at this handle and priority (BPF_TC_F_REPLACE) in one netlink
   * request, so the device is never without one: how a restarted daemon takes over the filter a
   * dead one left enforcing. Where there is none, the filter is added.
   */
  replace?: boolean;
  /** never remove the clsact on close, even one this attach created (see the top) */
  keepQdisc?: boolean;
}

function checkU16(what: string, v: number): number {
  if (!Number.isInteger(v) || v < 1 || v > 0xffff) throw new AttachInputError('tc', `tc ${what} ${v} is not in 1 … 65535`);
  return v;
}

export function attachTc(prog: Program, ifname: string | number, direction: TcDirection, opts: TcOptions = {}): Link {
  if (direction !== 'ingress' && direction !== 'egress') throw new AttachInputError('tc', `tc direction "${direction}" is not ingress or egress`);
  const priority = checkU16('priority', opts.priority ?? 1);
  const handle = opts.handle ?? 1;
  if (!Number.isInteger(handle) || handle <= 0 || handle > 0xffffffff) throw new AttachInputError('tc', `tc handle ${handle} is not a positive 32-bit integer`);
  requireLoaded('tc', prog);
  const ifindex = ifindexOf('tc', ifname);
  const target = `tc ${direction} ${ifname}`;

  const hook = { sz: koffi.sizeof(bpf_tc_hook), ifindex, attach_point: direction === 'ingress' ? TcAttachPoint.INGRESS : TcAttachPoint.EGRESS, parent: 0 };
  const qdisc = { ...hook, attach_point: TcAttachPoint.INGRESS | TcAttachPoint.EGRESS };
  // a clsact already there (the other direction's attach made it) is fine: libbpf's warning about
  // it ("Exclusivity flag on, cannot modify") is captured and dropped, kept for a real failure
  const { result: created, log: hookLog } = captureLibbpf(() => B.bpf_tc_hook_create(hook));
  if (created < 0 && created !== -Errno.EEXIST) throw new AttachError('tc', prog.name, `creating clsact on ${ifname}`, created, undefined, hookLog);
  const removeQdisc = () => {
    if (created === 0 && !opts.keepQdisc) B.bpf_tc_hook_destroy(qdisc);
  };
  const tcOpts = { sz: koffi.sizeof(bpf_tc_opts), prog_fd: prog.fd, flags: opts.replace ? 1 /* BPF_TC_F_REPLACE */ : 0, prog_id: 0, handle, priority };
  const { result: r, log } = captureLibbpf(() => B.bpf_tc_attach(hook, tcOpts));
  if (r < 0) {
    removeQdisc();
    throw new AttachError('tc', prog.name, target, r, undefined, log);
  }
  const detach = { ...tcOpts, prog_fd: 0, prog_id: 0, flags: 0 };
  return netlinkLink(prog, target, () => {
    B.bpf_tc_detach(hook, detach);
    removeQdisc();
  });
}
