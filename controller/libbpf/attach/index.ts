// One module per attach kind, as cilium/ebpf's link/*.go: each validates its inputs before any
// syscall (AttachInputError) and reports kernel refusals as AttachError with the errno by name.
export { attachAuto, attachTracepoint, attachRawTracepoint, attachTrace, attachLsm, attachKprobe, attachIter, readIter } from './tracing.ts';
export { attachXdp, xdpAttachedId, XdpFlags, XDP_MODES, type XdpMode, type XdpOptions } from './xdp.ts';
export { attachTc, TcAttachPoint, type TcDirection, type TcOptions } from './tc.ts';
export { attachCgroup, attachCgroupFirst } from './cgroup.ts';
export { attachPerfEvent, attachPerfEventAllCpus, perfEventOpen, type PerfEventAttr } from './perf_event.ts';
export { attachNetns } from './netns.ts';
