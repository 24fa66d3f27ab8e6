// The VM package's one entry point: everything outside lab/vm imports from here.
//   spec.ts      --kernel parsed once into a KernelSpec (host | series | Debian version | image)
//   kernels.ts   a KernelSpec → a kernel on disk (debian.ts fetches and verifies, vmlinux.ts
//                extracts the ELF for PVH boot); cached under vm-images/cache
//   initramfs.ts busybox + boot modules + init.sh, per kernel
//   qemu.ts      one QEMU guest and its control channel; guest.ts picks accel/fs/net and boots
//   cmdline.ts   the guest kernel command line and its boot trims (pure)
//   row.ts       scenarios on one VM kernel, one guest for all of them (run, matrix rows)
//   kvm.ts       does KVM really run a kernel here?   vng.ts: virtme-ng as a second backend
//   matrix.ts, cli.ts: the commands
export { HOST, parseKernelSpec, parseKernelSpecs, type KernelSpec, type VmKernelSpec } from './spec.ts';
export { resolveKernel, cachedKernels, checkKernel, configFacts, type KernelImage } from './kernels.ts';
export { bootTimesHtml, bootTimesProblem, type BootTimesResults } from './boot-times.ts';
export { bootGuest, guestScript, runInVm, vmFacts, BOOT_LOG, type BootedGuest, type BootPhases } from './guest.ts';
export { runVmRow, type RowArgs, type RowCell, type RowRun } from './row.ts';
export { installVng, vngStatus } from './vng.ts';
export { chooseAccel, probeKvm, cachedProbe, type KvmProbe } from './kvm.ts';
export { vmCommand } from './cli.ts';
export { matrixCommand } from './matrix.ts';
