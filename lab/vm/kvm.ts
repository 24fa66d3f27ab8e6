// Does KVM actually run guests here? Opening /dev/kvm proves nothing: on nested hosts with
// page-table based virtualisation (kvm-pvm) guests die with "KVM internal error … emulation
// failure" on instructions like cmpxchg16b/xrstor, or spin. Even a real-mode boot sector runs
// fine there (measured: 1.3 s) while every Debian kernel hangs, so the probe boots a real Linux
// kernel only — a cached one, or one it fetches first — with a tiny initramfs that prints
// KVMOK, under a short deadline, and reads what QEMU said. There is no boot-sector fallback.
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { cacheDir } from './paths.ts';
import { buildProbeInitramfs } from './initramfs.ts';
import { cachedKernels, readKernelMeta, resolveKernel } from './kernels.ts';
import { createProgress, type Progress } from '../../common/progress.ts';
import { parseKernelSpec, type VmKernelSpec } from './spec.ts';
import { archFacts } from '../../common/arch.ts';
import { dyingWithUs } from './reaper.ts';

/** the kernel fetched for the probe when none is cached: the series the tests and CI use */
const PROBE_SERIES = '6.1';

export interface KvmProbe {
  ok: boolean;
  note: string;
  ms: number;
  hostKernel: string;
  at: string;
}

/** Boot a kernel to a KVMOK-printing init under an accelerator; exported so tests can check the probe itself under TCG. */
export async function probeAccel(accel: 'kvm' | 'tcg', deadlineMs: number, kernel: string): Promise<{ ok: boolean; note: string; ms: number; interrupted?: boolean }> {
  const t0 = Date.now();
  {
    const args = ['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-accel', accel, '-serial', 'stdio'];
    const what = 'a Linux kernel';
    args.push('-cpu', accel === 'kvm' ? 'host' : 'max', '-m', '256M', '-kernel', kernel, '-initrd', await buildProbeInitramfs(),
      '-append', 'console=ttyS0 quiet panic=-1 rdinit=/init');
    // a group of its own (a terminal's Ctrl-C killed it, and that exit was recorded as "KVM
    // unusable" for a day), and killed by the kernel if the lab dies first (review, session 57)
    const [cmd, argv] = dyingWithUs(archFacts().qemu, args);
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d.toString()));
    p.stderr.on('data', (d) => (err += d.toString()));
    const finished = await new Promise<boolean>((res) => {
      const t = setTimeout(() => res(false), deadlineMs);
      p.on('exit', () => { clearTimeout(t); res(true); });
      p.on('error', (e) => { err += String(e); clearTimeout(t); res(true); });
    });
    if (!finished) {
      p.kill('SIGKILL');
      await new Promise((r) => p.once('exit', r));
    }
    const ms = Date.now() - t0;
    const why = err.split('\n').find((l) => /error|fail|emulation/i.test(l))?.trim();
    // the guest's answer first: a QEMU that aborts on its way out after it is still a pass
    if (out.includes('KVMOK')) return { ok: true, note: `${accel} guest ran ${what} in ${ms} ms`, ms };
    // killed by someone else (not our deadline): no verdict about KVM. A QEMU that aborts on its
    // own (SIGABRT after "failed to set MSR 0x10a" on this host) is one: that was not cached
    if (finished && p.signalCode && stoppedFromOutside(p.signalCode)) return { ok: false, note: `the ${accel} probe's QEMU was killed (${p.signalCode}) before it answered: not a verdict`, ms, interrupted: true };
    if (finished && p.signalCode) return { ok: false, note: `${accel} guest crashed QEMU (${p.signalCode})${why ? `: ${why}` : ''}`, ms };
    // QEMU itself could not start (not installed yet: doctor before setup vm): says nothing about
    // KVM, and kept for the day it forced TCG on a host whose KVM works
    if (finished && /failed to execute|spawn \S+ ENOENT/.test(err)) return { ok: false, note: `QEMU could not be started (${why ?? err.trim().split('\n')[0]}): not a verdict about ${accel} (pnpm lab setup vm installs it)`, ms, interrupted: true };
    if (!finished) return { ok: false, note: `${accel} guest running ${what} printed nothing within ${deadlineMs} ms${why ? ` (${why})` : ' (it hangs)'}`, ms };
    return { ok: false, note: `${accel} guest failed: ${why ?? (err.trim().slice(0, 300) || 'no output')}`, ms };
  }
}

/** a signal someone sends to stop a process, not one a process raises on itself (abort, a fault) */
export const stoppedFromOutside = (signal: string) => ['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'].includes(signal);

function kvmOpenable(): string | undefined {
  if (!existsSync('/dev/kvm')) return '/dev/kvm does not exist';
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return '/dev/kvm is not accessible (add the user to the kvm group)';
  }
  return undefined;
}

const PROBE_FILE = () => join(cacheDir(), 'kvm-probe.json');

/**
 * KVM usable? Cached per host kernel for a day, because on a broken host the probe costs its
 * whole deadline every time. EBPF_LAB_ACCEL=kvm|tcg skips the probe.
 */
export async function probeKvm(opts: { force?: boolean; deadlineMs?: number; progress?: Progress } = {}): Promise<KvmProbe> {
  const hostKernel = release();
  const no = kvmOpenable();
  if (no) return { ok: false, note: no, ms: 0, hostKernel, at: new Date().toISOString() };
  if (!opts.force) {
    try {
      const c = JSON.parse(await readFile(PROBE_FILE(), 'utf8')) as KvmProbe;
      if (c.hostKernel === hostKernel && Date.now() - Date.parse(c.at) < 24 * 3600_000) return c;
    } catch { /* no cached probe */ }
  }
  const kernel = await probeKernel(opts.progress);
  if (!kernel.path) {
    // not cached: the next run probes again once a kernel is there
    return { ok: false, note: `no kernel to probe KVM with (${kernel.why}); the lab uses TCG`, ms: 0, hostKernel, at: new Date().toISOString() };
  }
  // A working KVM boots a kernel to init in ~1 s; 6 s leaves room for a loaded host.
  const r = await probeAccel('kvm', opts.deadlineMs ?? 6000, kernel.path);
  const { interrupted, ...verdict } = r;
  const probe: KvmProbe = { ...verdict, note: `${r.note} (${kernel.release})`, hostKernel, at: new Date().toISOString() };
  if (interrupted) return probe; // not kept: the next run probes again
  try {
    await mkdir(cacheDir(), { recursive: true });
    await writeFile(PROBE_FILE(), JSON.stringify(probe, null, 2));
  } catch { /* cache is best effort */ }
  return probe;
}

/**
 * A real boot under KVM failed (after the probe passed, or with KVM forced): remember that for
 * the day, so the next runs start under TCG instead of paying the KVM boot timeout again.
 */
export async function recordKvmBootFailure(note: string, forced = false): Promise<void> {
  // forced (EBPF_LAB_ACCEL=kvm) there was no probe: "after the probe passed" misled lab doctor's readers
  const probe: KvmProbe = { ok: false, note: `a KVM boot failed ${forced ? 'with KVM forced (EBPF_LAB_ACCEL=kvm, not probed)' : 'after the probe passed'}: ${note}`, ms: 0, hostKernel: release(), at: new Date().toISOString() };
  try {
    await mkdir(cacheDir(), { recursive: true });
    await writeFile(PROBE_FILE(), JSON.stringify(probe, null, 2));
  } catch { /* best effort */ }
}

/** A real kernel for the probe: a cached Debian one, else the default series fetched now. */
async function probeKernel(progress?: Progress): Promise<{ path?: string; release?: string; why?: string }> {
  const k = cachedKernels().find((x) => x.source === 'debian' && x.vmlinux);
  if (k) return { path: (await readKernelMeta(join(cacheDir(), k.version))).vmlinux, release: k.release };
  try {
    const p = progress ?? createProgress(process.stderr, true);
    p.info(`fetching kernel ${PROBE_SERIES} to probe KVM with a real kernel`);
    const f = await resolveKernel(parseKernelSpec(PROBE_SERIES) as VmKernelSpec, p);
    return { path: f.vmlinux ?? f.bzImage, release: f.release };
  } catch (e) {
    return { why: `fetching ${PROBE_SERIES} failed: ${(e as Error).message.split('\n')[0]}` };
  }
}

/** The accelerator to use and why, for the report. */
export async function chooseAccel(): Promise<{ accel: 'kvm' | 'tcg'; note: string }> {
  const forced = process.env.EBPF_LAB_ACCEL;
  if (forced === 'tcg') return { accel: 'tcg', note: 'TCG forced by EBPF_LAB_ACCEL=tcg' };
  if (forced === 'kvm') return { accel: 'kvm', note: 'KVM forced by EBPF_LAB_ACCEL=kvm (not probed)' };
  const p = await probeKvm();
  if (p.ok) return { accel: 'kvm', note: p.note };
  return { accel: 'tcg', note: `KVM unusable (${p.note}); using TCG emulation, expect runs ~10-50x slower than KVM` };
}

export function cachedProbe(): KvmProbe | undefined {
  try {
    return JSON.parse(readFileSync(PROBE_FILE(), 'utf8'));
  } catch {
    return undefined;
  }
}
