// The TypeScript binding to the system libbpf. Knows libbpf and BTF, nothing of the lab.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { C, errno } from './ffi.ts';
import { BpfError, errnoName } from './errors.ts';
import { LabError } from '../../common/errors.ts';
import { netnsName } from '../../common/host.ts';
export { BpfObject, Program, enableStats, progInfo, progInfoById, progMapIds, progsUsingMap, XdpFlags, type OpenOptions, type LoadOptions, type TestRunResult, type ProgInfo, type MapShape, type MapSpec } from './object.ts';
export { BpfMap, MapType, UpdateFlags, mapInfo, mapTypeName, pinnedMapInfo, rawCodec } from './map.ts';
export { Skeleton, defineSkeleton, type SkeletonFactory, type SkeletonShape, type SkeletonSpec, type SkeletonMaps, type SkeletonPrograms } from './skeleton.ts';
export { Link } from './link.ts';
export {
  attachAuto, attachTracepoint, attachRawTracepoint, attachTrace, attachLsm, attachKprobe, attachIter, readIter, attachXdp, xdpAttachedId, attachTc, attachCgroup, attachCgroupFirst,
  attachPerfEvent, attachPerfEventAllCpus, perfEventOpen, attachNetns, XDP_MODES, type XdpMode, type XdpOptions, type TcDirection, type TcOptions, type PerfEventAttr,
} from './attach/index.ts';
export { RingBuffer, coalesceDelayMs, type RingBufferOptions } from './ringbuf.ts';
export { Btf, Kind, type Codec, type BtfType } from './btf.ts';
export { ifindexOf } from './attach/internal.ts';
export { BpfError, VerifierError, AttachError, AttachInputError, Errno, errnoCode, errnoName, hintFor, type AttachKind, type ErrnoName } from './errors.ts';
export { closeAll, liveCount, deferSignalsToCaller } from './lifecycle.ts';
export { captureLibbpf } from './log.ts';
export { B as libbpf, C as libc, koffi } from './ffi.ts';

/**
 * Move the calling thread into the network namespace open at `fd` (CLONE_NEWNET). Attaching XDP/tc
 * or BPF_PROG_TEST_RUN with live frames acts on the namespace the calling thread is in; withNetns()
 * below is built on this. Throws when the kernel refuses (needs CAP_SYS_ADMIN).
 */
export function setNetns(fd: number): void {
  if ((C.setns(fd, 0x40000000)) !== 0) throw new BpfError(`setns(CLONE_NEWNET): ${errnoName(errno())}`, errno(), 'needs root');
}

/**
 * Run a synchronous function with the calling thread in network namespace `name` (a name under
 * /run/netns). Only this thread moves, and only for the call: FFI calls made inside (attaching
 * XDP to an interface of that namespace, BPF_PROG_TEST_RUN with live frames) see its devices.
 * Anything asynchronous would run after the thread moved back, so fn must not return a promise.
 */
export function withNetns<T>(name: string, fn: () => T): T {
  const self = fs.openSync('/proc/thread-self/ns/net', 'r');
  const target = fs.openSync(`/run/netns/${name}`, 'r');
  try {
    setNetns(target);
    try {
      const r = fn();
      if (r && typeof (r as { then?: unknown }).then === 'function') throw new Error('withNetns: fn must be synchronous');
      return r;
    } finally {
      setNetns(self);
    }
  } finally {
    fs.closeSync(self);
    fs.closeSync(target);
  }
}

const BPF_FS_MAGIC = 0xcafe4a11;
const BPFFS = '/sys/fs/bpf';

/** the nearest existing ancestor of `p` (itself if it exists) is on a bpffs */
export function onBpffs(p: string): boolean {
  let d = path.resolve(p);
  for (;;) {
    try {
      return fs.statfsSync(d).type === BPF_FS_MAGIC;
    } catch {
      if (d === '/') return false;
      d = path.dirname(d);
    }
  }
}

/**
 * Create a pin directory (and its parents) on the bpffs. Where /sys/fs/bpf has no bpffs mounted
 * (containers, chroots, minimal hosts) it is mounted first, as bpftool does when it pins. Off a
 * bpffs: one error naming the fix. (Node's recursive mkdir never returns there: sysfs refuses the
 * mkdir with ENOENT while its parent exists, and Node retries forever — a tc shaper start hung at
 * 65% CPU on a machine without the bpffs.)
 */
export function makePinDir(dir: string): void {
  const abs = path.resolve(dir);
  mountBpffsFor(abs);
  if (!onBpffs(abs)) {
    const ns = underBpffs(abs) ? netnsName() : undefined;
    if (ns !== undefined) throw new LabError(`${BPFFS} has no bpffs here (network namespace ${ns}; ip netns exec mounts a fresh /sys): pins under ${dir} would vanish with this process`, `run the command with "nsenter --net=/run/netns/${ns} -- …" instead of "ip netns exec", which keeps the host's mounts`);
    throw new LabError(`${dir} is not on a bpffs: pinned maps and links would not outlive this process`, `use a directory under ${BPFFS} (mount -t bpf bpf ${BPFFS} if it has none)`);
  }
  fs.mkdirSync(abs, { recursive: true });
}

const underBpffs = (abs: string) => abs === BPFFS || abs.startsWith(`${BPFFS}/`);

/**
 * makePinDir's mount: the bpffs at /sys/fs/bpf when `dir` is under it and none is mounted. Not in
 * a named network namespace: `ip netns exec` gives its command a mount namespace of its own with a
 * fresh /sys, where a bpffs would vanish with this process and the pins with it (the caller's
 * bpffs check then refuses, naming nsenter). A mount that fails is an error with the fix.
 */
export function mountBpffsFor(dir: string): void {
  const abs = path.resolve(dir);
  if (!onBpffs(abs) && underBpffs(abs) && netnsName() === undefined) {
    try {
      execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
    } catch (e) {
      const why = ((e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message).split('\n')[0];
      throw new LabError(`${BPFFS} has no bpffs mounted and mounting one failed (${why}): ${dir} cannot hold pins`, `mount it as root: mount -t bpf bpf ${BPFFS}`);
    }
  }
}

/**
 * Remove a pin directory and then each parent that is left empty, up to (not including) the bpffs
 * mount: a lab run must not leave e.g. /sys/fs/bpf/ebpf-lab behind. Non-empty directories (someone
 * else's pins) stay.
 */
export function removePinDir(dir: string, bpffs = '/sys/fs/bpf'): void {
  let d = path.resolve(dir);
  while (d.startsWith(`${bpffs}/`)) {
    try {
      fs.rmdirSync(d);
    } catch {
      return;
    }
    d = path.dirname(d);
  }
}
