// The lab guest's kernel command line, in one pure function so each trim is visible, testable
// and can be switched off for a side-by-side measurement (EBPF_LAB_VM_TRIMS=0 keeps only the
// ones that predate the measurement, see ARCHITECTURE.md "Boot phases").
import { readFileSync } from 'node:fs';
import { LabError } from '../../common/errors.ts';
import { parseConfig, type KernelImage } from './kernels.ts';

/**
 * loops_per_jiffy the guest would compute, from the host's clock: under TCG the guest's TSC is
 * the host's, so this is what it calibrates to. Preset, every CPU skips calibrate_delay (the
 * second CPU's calibrate_delay_direct() fails under TCG and falls back to a slow converge loop).
 */
export function presetLpj(cpuinfo: string, hz: number): number | undefined {
  const m = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(cpuinfo);
  const mhz = m ? Number(m[1]) : NaN;
  if (!Number.isFinite(mhz) || mhz < 100 || !(hz > 0)) return undefined;
  return Math.round((mhz * 1e6) / hz);
}

export interface CmdlineInput {
  release: string;
  fs: '9p' | 'virtiofs';
  accel: 'kvm' | 'tcg';
  /** CONFIG_HZ of the guest kernel (Debian: 250) */
  hz?: number;
  /** /proc/cpuinfo of the host, for lpj= */
  cpuinfo?: string;
  trims?: boolean;
  extra?: string[];
}

export function kernelCmdline(o: CmdlineInput): string[] {
  // loglevel=6 keeps notices (the banner, warnings, oopses) but not the ~300 info lines each
  // written through an emulated UART; no crypto self-tests; expedited RCU grace periods while
  // modules load; no speculative-execution mitigations (no attacker in a throwaway guest).
  const a = ['console=ttyS0', 'loglevel=6', 'panic=-1', 'oops=panic', 'rdinit=/init', `lab.fs=${o.fs}`,
    'mitigations=off', 'tsc=reliable', 'no_timer_check', 'i8042.noaux', 'i8042.nokbd', 'i8042.nopnp', 'random.trust_cpu=on',
    'cryptomgr.notests', 'rcupdate.rcu_expedited=1'];
  if (/^5\.10\./.test(o.release)) a.push('lsm=lockdown,yama,apparmor,bpf'); // 5.10's default LSM list lacks bpf
  if (o.trims !== false) {
    // TCG only: under KVM the guest's TSC may be scaled, and calibration is cheap there
    const lpj = o.accel === 'tcg' && o.cpuinfo ? presetLpj(o.cpuinfo, o.hz ?? 250) : undefined;
    if (lpj) a.push(`lpj=${lpj}`);
    // Debian builds with INIT_ON_ALLOC_DEFAULT_ON: every page the guest allocates is zeroed
    // first, an emulated memset per page at boot and in every node start (hardening a
    // throwaway guest does not need)
    a.push('init_on_alloc=0');
    // no audit subsystem (nothing reads it in a guest) and no x86 PCIe ASPM/AER setup
    a.push('audit=0', 'pcie_aspm=off', 'pci=noaer');
  }
  return [...a, ...(o.extra ?? [])];
}

/** The command line for one guest on this host (reads the kernel config and /proc/cpuinfo). */
export function guestCmdline(k: KernelImage, fs: '9p' | 'virtiofs', accel: 'kvm' | 'tcg', extra: (string | undefined)[]): string {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch { /* no lpj preset */ }
  const hz = Number(parseConfig(k.config).HZ) || 250;
  return kernelCmdline({
    release: k.release, fs, accel, hz, cpuinfo, trims: process.env.EBPF_LAB_VM_TRIMS !== '0',
    extra: extra.filter((x): x is string => !!x),
  }).join(' ');
}

/**
 * QEMU's machine: q35 without what no lab guest uses. smm=off spares SeaBIOS its SMM setup
 * (emulated under TCG); no SATA controller, SMBus or VMware port means fewer PCI functions and
 * ACPI objects for the guest kernel to enumerate. ACPI itself stays: the guest powers off through it.
 */
export function machineArg(trims = process.env.EBPF_LAB_VM_TRIMS !== '0'): string {
  return trims ? 'q35,smm=off,vmport=off,sata=off,smbus=off' : 'q35';
}

/**
 * QEMU's -accel value for an emulated (TCG) guest: single-threaded, every vCPU in one host thread
 * in turn. Multi-threaded TCG loses cross-vCPU code modification: a kernel patching its own text
 * (text_poke_bp: a static key, a tracepoint, an ftrace/fentry site) while the other vCPU runs it
 * leaves that vCPU in the int3 of the patch for good, or crashes it ("Oops: int3"). Seen in a 6.1
 * guest flipping raw_syscalls/sys_enter: 3 of 3 multi-threaded guests stopped at
 * syscall_trace_enter+0xd8 / native_irq_return_iret within the first toggles; 650 toggles in 3
 * single-threaded guests ran clean (lab/vm/vm.test.ts keeps that as a test). It is what hung the
 * "probing kernel features" of vng guests in CI and the boots and runs tcgBootRetry/tcgRunRetry
 * retried. The cost: the guest's vCPUs share one host core (xdp-lb's VM run: 89 → 119 s here).
 * EBPF_LAB_TCG_THREAD=multi brings the old mode back, for a side-by-side measurement.
 */
export function tcgAccelArg(thread = process.env.EBPF_LAB_TCG_THREAD): string {
  return `tcg,thread=${tcgThread(thread)}`;
}

/** the TCG thread mode in use (EBPF_LAB_TCG_THREAD, default single) */
export function tcgThread(thread = process.env.EBPF_LAB_TCG_THREAD): 'single' | 'multi' {
  if (thread !== undefined && thread !== 'single' && thread !== 'multi') {
    throw new LabError(`EBPF_LAB_TCG_THREAD=${thread} is not a TCG thread mode`, 'set it to single (the default) or multi, or unset it');
  }
  return thread ?? 'single';
}
