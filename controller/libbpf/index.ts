// The TypeScript binding to the system libbpf. Knows libbpf and BTF, nothing of the lab.
import fs from 'node:fs';
import path from 'node:path';
import { C, errno } from './ffi.ts';
import { BpfError, errnoName } from './errors.ts';
export { BpfObject, Program, enableStats, progInfo, progInfoById, progMapIds, progsUsingMap, XdpFlags, type OpenOptions, type LoadOptions, type TestRunResult, type ProgInfo, type MapShape, type MapSpec } from './object.ts';
export { BpfMap, MapType, UpdateFlags, mapInfo, mapTypeName, pinnedMapInfo, rawCodec } from './map.ts';
export { Skeleton, defineSkeleton, type SkeletonFactory, type SkeletonShape, type SkeletonSpec, type SkeletonMaps, type SkeletonPrograms } from './skeleton.ts';
export { Link } from './link.ts';
export {
  attachAuto, attachTracepoint, attachRawTracepoint, attachTrace, attachLsm, attachKprobe, attachXdp, xdpAttachedId, attachTc, attachCgroup,
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
