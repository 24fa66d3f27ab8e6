// What every attach kind shares: the program must be loaded, libbpf's output is captured, a NULL
// bpf_link becomes an AttachError naming kind and target, and the link is owned by the object.
import { C, NULL, errno, type Ptr } from '../ffi.ts';
import { AttachError, AttachInputError, Errno, errnoName, type AttachKind } from '../errors.ts';
import { Link } from '../link.ts';
import { captureLibbpf } from '../log.ts';
import type { Program } from '../object.ts';

/** Validate first: an attach of a program that is not loaded fails here, not in the kernel. */
export function requireLoaded(kind: AttachKind, prog: Program): void {
  if (prog.fd < 0) throw new AttachInputError(kind, `program ${prog.name} is not loaded`, 'call load() on its object first (or remove it from LoadOptions.skip)', Errno.EBADF);
}

/** Run a libbpf bpf_program__attach_* call and own the link it returns. */
export function linkFrom(kind: AttachKind, prog: Program, target: string, attach: () => Ptr, hint?: string): Link {
  requireLoaded(kind, prog);
  const { result, log } = captureLibbpf(attach);
  if (result === NULL) throw new AttachError(kind, prog.name, target, errno(), hint, log);
  return prog.object.adopt(new Link(`${prog.name} → ${target}`, result));
}

/** A netlink attachment (no bpf_link): the detach closure runs when the Link is closed. */
export function netlinkLink(prog: Program, target: string, detach: () => void): Link {
  return prog.object.adopt(new Link(`${prog.name} → ${target}`, NULL, detach));
}

/** An interface name (in the calling thread's network namespace) or index, as an index. */
export function ifindexOf(kind: AttachKind, ifname: string | number): number {
  if (typeof ifname === 'number') {
    if (!Number.isInteger(ifname) || ifname <= 0) throw new AttachInputError(kind, `interface index ${ifname} is not a positive integer`);
    return ifname;
  }
  if (!/^[^\s/]{1,15}$/.test(ifname)) throw new AttachInputError(kind, `"${ifname}" is not an interface name`, 'at most 15 characters, no blanks or slashes');
  const ifindex = C.if_nametoindex(ifname);
  if (!ifindex) throw new AttachInputError(kind, `no interface "${ifname}"`, 'create it first, or check the network namespace the controller runs in', Errno.ENODEV);
  return ifindex;
}

/** open(2) a path for an attach target (cgroup or netns); the caller closes the fd. */
export function openTarget(kind: AttachKind, path: string, flags: number, hint?: string): number {
  const fd = C.open(path, flags, 0);
  if (fd < 0) {
    const e = errno();
    throw new AttachInputError(kind, `opening ${kind} ${path}: ${errnoName(e)}`, hint, e);
  }
  return fd;
}

/** Run fn with an fd that is closed afterwards, whatever happens. */
export function withFd<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    C.close(fd);
  }
}
