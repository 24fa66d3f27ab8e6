// One guest on a resolved kernel: pick accel/fs/net, build the initramfs, boot to READY, and
// the script prelude every command in it runs under. The guest's root is the host's /
// (read-only, tmpfs overlay), so the same checkout, node_modules, node, libbpf and tools run
// there; only the kernel differs.
import { copyFileSync, existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { LabError } from '../../common/errors.ts';
import { interruptSignal } from '../../common/signals.ts';
import { releaseAtLeast } from '../../common/host.ts';
import type { Progress } from '../../common/progress.ts';
import { configFacts, type KernelImage } from './kernels.ts';
import { buildInitramfs } from './initramfs.ts';
import { REPO_ROOT } from './paths.ts';
import { chooseAccel, recordKvmBootFailure } from './kvm.ts';
import { Vm, shq, type BootOptions } from './qemu.ts';
import { WIRE_MACS, wireEnabled } from './wire.ts';
import { tcgThread } from './cmdline.ts';

export const BOOT_LOG = 'vm-console.log';

export interface GuestSpec {
  kernel: KernelImage;
  progress: Progress;
  /** host dir to share read-write at the same path */
  outDir?: string;
  consoleLog: string;
  bootTimeoutMs?: number;
  signal?: AbortSignal;
  /** a scenario of this guest asked for the virtio-net wire (Scenario.vm.wire) */
  wire?: boolean;
}

function pickFs(k: KernelImage): '9p' | 'virtiofs' {
  const env = process.env.EBPF_LAB_VM_FS;
  if (env === '9p' || env === 'virtiofs') return env;
  const c = configFacts(k);
  // 9p needs no extra daemon; kernels without it (cloud flavours, custom builds) get virtiofs
  if (!Object.keys(c).length || (c.NET_9P_VIRTIO !== 'n' && c['9P_FS'] !== 'n')) return '9p';
  return 'virtiofs';
}

function pickNet(): BootOptions['net'] {
  const env = process.env.EBPF_LAB_VM_NET;
  if (env === 'tap' || env === 'user' || env === 'none') return env;
  return existsSync('/dev/net/tun') && process.getuid?.() === 0 ? 'tap' : 'user';
}

export interface BootedGuest {
  vm: Vm;
  kernel: KernelImage;
  accel: 'kvm' | 'tcg';
  accelNote: string;
  fs: '9p' | 'virtiofs';
  net: BootOptions['net'];
  initramfsModules: string[];
  /** boots retried after the guest kernel crashed during boot (an emulator fault) */
  bootRetries: number;
  /** set when a KVM boot failed or timed out and the guest was booted again under TCG */
  accelFallback?: string;
  phases: BootPhases;
}

/**
 * Where boot-to-ready goes, from QEMU's spawn to the guest's READY: QEMU and firmware until
 * the guest kernel's clock starts, the kernel until /init runs, /init's own work (modules,
 * control ports, mounts of the guest root) and the mount of the host's root over 9p/virtiofs.
 */
export interface BootPhases {
  qemuMs: number;
  kernelMs: number;
  initMs: number;
  mountMs: number;
  readyMs: number;
}

export function bootPhases(bootMs: number, marks: number[]): BootPhases {
  // READY <uptime at READY> <at /init start> <before root mount> <after root mount> (seconds)
  const [ready = 0, init = 0, m0 = 0, m1 = 0] = marks;
  const ms = (s: number) => Math.max(0, Math.round(s * 1000));
  return { qemuMs: Math.max(0, bootMs - ms(ready)), kernelMs: ms(init), initMs: ms(ready - init - (m1 - m0)), mountMs: ms(m1 - m0), readyMs: bootMs };
}

/**
 * Why a failed TCG boot is worth one more try, or undefined. Multi-threaded TCG (no longer the
 * default: cmdline.ts tcgAccelArg) crashed a kernel now and then while it patched its own text at
 * boot (seen: 7.2, "Oops: int3" in sched_clock_cpu, then panic): retried only in that mode, since
 * single-threaded such a crash is the kernel's. A boot that stopped for good part-way (seen: 6.1
 * silent after "Asymmetric key parser 'x509' registered" at 1.2 s, the 90 s boot timeout,
 * reports/20261205-045846-security-6.1, multi-threaded) is retried in either mode: nothing of the
 * run has started, so the guest is booted once more (the run records bootRetries). A kernel that
 * never boots fails after two tries. A boot timeout is retried only where the boot had its own
 * minute or more (see below).
 */
export function tcgBootRetry(accel: 'kvm' | 'tcg', msg: string, bootTimeoutMs: number, thread: 'single' | 'multi' = tcgThread()): string | undefined {
  if (accel !== 'tcg') return undefined;
  if (/QEMU exited while waiting for the guest to boot/.test(msg) && /Kernel panic|Oops:/.test(msg)) {
    return thread === 'multi' ? `the guest kernel crashed during boot (${(/(Oops: [^\n]*|Kernel panic[^\n]*)/.exec(msg)?.[1] ?? 'panic').trim()}) under multi-threaded TCG; booting once more` : undefined;
  }
  const t = /timed out after (\d+) s waiting for the guest to boot/.exec(msg);
  // a hang, not a tight budget: a boot given a minute (they take 2-10 s here) that never got there.
  // A boot budget cut to fit a caller's --timeout is that caller's limit, not tried twice.
  if (t && bootTimeoutMs >= 60_000) {
    const last = msg.split('\n').filter((l) => /^\[\s*\d+\.\d+\]/.test(l)).at(-1)?.trim();
    return `the guest did not finish booting within ${t[1]} s under TCG${last ? ` (its console stopped at "${last.slice(0, 120)}")` : ''}; booting once more`;
  }
  return undefined;
}

/**
 * Why a scenario whose guest crashed under multi-threaded TCG is worth running once more, or
 * undefined. That mode's code patching crashed a kernel after boot too: an "Oops: int3" in
 * syscall_trace_enter while a probe flipped a syscall tracepoint's static key, then a panic, in a
 * fresh-check's 6.12 matrix cell (console: do_sync_core in the trace). The guest is discarded
 * whatever happened in it, so the cell runs again on a fresh one, once, and its report says so
 * (runRetried). Only an int3 Oops (the text patching's breakpoint), and only in that mode (no
 * longer the default): single-threaded, any crash is the run's.
 */
export function tcgRunRetry(accel: 'kvm' | 'tcg', msg: string, consoleText = '', thread: 'single' | 'multi' = tcgThread()): string | undefined {
  if (accel !== 'tcg' || thread !== 'multi' || !/QEMU exited while waiting for the guest command/.test(msg)) return undefined;
  const oops = /Oops: int3[^\n]*/.exec(`${msg}\n${consoleText}`)?.[0];
  if (!oops) return undefined;
  const rip = /RIP: 0010:([^\s]+)/.exec(`${msg}\n${consoleText}`)?.[1];
  return `the guest kernel crashed under multi-threaded TCG while the scenario ran (${oops.trim()}${rip ? ` at ${rip}` : ''}: the emulator's code patching, as at boot); running it once more on a fresh guest`;
}

/**
 * Is a failed KVM boot KVM's fault (a hang, QEMU dying on KVM), rather than the guest kernel's
 * (a panic) or a caller's tight budget? Only then is it worth a TCG boot and a day's "KVM
 * unusable" in the cache.
 */
export function kvmBootFault(msg: string, bootTimeoutMs: number): boolean {
  if (/timed out after \d+ s waiting for the guest to boot/.test(msg)) return bootTimeoutMs >= 20_000;
  if (!/QEMU exited while waiting for the guest to boot/.test(msg)) return false;
  return !/Kernel panic|Oops:/.test(msg);
}

/** Resolve the kernel, pick accel/fs/net, build the initramfs and boot to READY. */
export async function bootGuest(g: GuestSpec): Promise<BootedGuest> {
  const kernel = g.kernel;
  let { accel, note } = await chooseAccel();
  if (accel === 'tcg') g.progress.info(note);
  const fs = pickFs(kernel);
  const ir = await buildInitramfs(kernel);
  if (ir.missing.length) g.progress.warn(`modules not found for ${kernel.release} (assumed built in): ${ir.missing.join(', ')}`);
  let net = pickNet();
  const cpus = Number(process.env.EBPF_LAB_VM_CPUS) || 2;
  const memMB = Number(process.env.EBPF_LAB_VM_MEM_MB) || 1024;
  const base: BootOptions = {
    kernel, initramfs: ir, accel, fs, outDir: g.outDir, net, wire: wireEnabled(g.wire ?? false), cpus, memMB, consoleLog: g.consoleLog,
    bootTimeoutMs: g.bootTimeoutMs ?? (accel === 'kvm' ? 30_000 : 90_000), progress: g.progress, signal: g.signal,
  };
  let vm: Vm;
  let bootRetries = 0;
  let accelFallback: string | undefined;
  // a failed boot's console is the evidence of why: kept beside the log the next attempt writes
  // (QEMU's file chardev truncates it)
  let attempt = 0;
  const keepConsole = () => {
    if (g.consoleLog && existsSync(g.consoleLog)) {
      try {
        copyFileSync(g.consoleLog, `${g.consoleLog}.attempt${attempt - 1}`);
      } catch { /* best effort */ }
    }
  };
  for (;;) {
    if (attempt++ > 0) keepConsole();
    try {
      vm = await Vm.boot({ ...base, accel, net });
      break;
    } catch (e) {
      const msg = (e as Error).message;
      // no tun device or no CAP_NET_ADMIN inside a container: a single-queue user-mode NIC still
      // works. Asked first: under KVM this failure was taken for KVM's and kept for a day, so such
      // a container never got KVM (review, session 58)
      if (net === 'tap' && /tap|tun/i.test(msg)) {
        g.progress.warn(`tap networking failed (${msg.split('\n')[0]}); retrying with user-mode networking (one queue)`);
        net = 'user';
        continue;
      }
      // The KVM probe passed, yet this boot hung or died (nested hosts do that: "KVM internal
      // error", a silent spin). Boot once more under TCG rather than failing the run, and say so.
      // Not KVM's: a guest kernel that panics (it would under TCG too), a budget a caller's
      // --timeout cut below what a KVM boot (1-3 s) could miss only by hanging
      if (accel === 'kvm' && !g.signal?.aborted && kvmBootFault(msg, base.bootTimeoutMs)) {
        accelFallback = `KVM boot failed (${msg.split('\n')[0]!.slice(0, 200)}); booted again under TCG`;
        g.progress.warn(accelFallback);
        await recordKvmBootFailure(msg.split('\n')[0]!.slice(0, 200), process.env.EBPF_LAB_ACCEL === 'kvm');
        accel = 'tcg';
        note = accelFallback;
        // the caller's budget stands where it gave one (its --timeout); else TCG's
        base.bootTimeoutMs = g.bootTimeoutMs ?? 90_000;
        continue;
      }
      const again = bootRetries === 0 && !g.signal?.aborted ? tcgBootRetry(accel, msg, base.bootTimeoutMs) : undefined;
      if (again) {
        bootRetries++;
        g.progress.warn(again);
        continue;
      }
      throw e;
    }
  }
  return { vm, kernel, accel, accelNote: note, fs, net, initramfsModules: ir.modules, bootRetries, accelFallback, phases: bootPhases(vm.bootMs, vm.readyMarks) };
}

/** How long a stopped guest run may take to stop before the host kills the guest: TCG is 10-30x slower */
export const stopGraceMs = (accel: 'kvm' | 'tcg') => (accel === 'kvm' ? 30_000 : 90_000);
/**
 * The guest's timeout(1) kills the run this long after passing it the SIGTERM (its own, or the
 * host's STOP, which init sends it): within the host's grace, so a run that does not stop is
 * killed in the guest, which still answers EXIT and keeps the guest for the next cell (it once
 * killed after 20 s even under TCG, where the host waited 90 s)
 */
export const guestKillAfterS = (accel: 'kvm' | 'tcg') => stopGraceMs(accel) / 1000 - 10;
/**
 * The guest's runner gives up on its own stop this long after it (lab/run.ts stopWatchdog): it
 * writes the checks so far and where it was held, then exits — before timeout(1)'s kill and the
 * host's, either of which takes the results with it (59 s under TCG, 15 s under KVM, where the
 * grace was 20 s and the kill after 10 s came before a 13 s limit).
 */
export const guestStopLimitMs = (accel: 'kvm' | 'tcg') => Math.min(Math.round(stopGraceMs(accel) * 0.65), guestKillAfterS(accel) * 1000 - 5_000);

/** The environment every guest command gets (either backend): the lab's variables, a scaled clock, the stop limit. */
export function guestEnv(accel: 'kvm' | 'tcg'): string[] {
  const pass = Object.entries(process.env).filter(([k]) => /^(CI|NO_COLOR|FORCE_COLOR|DEBUG|EBPF_LAB_.*|GITHUB_.*)$/.test(k) && !/^EBPF_LAB_VM_/.test(k));
  const env = [
    ['PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], ['HOME', '/root'], ['LANG', 'C.UTF-8'], ['TERM', 'dumb'],
    ['EBPF_LAB_IN_VM', '1'],
    // waits inside the guest scale with the emulation (lab/timeouts.ts); a user's own value wins
    ['EBPF_LAB_TIME_SCALE', process.env.EBPF_LAB_TIME_SCALE ?? (accel === 'tcg' ? '10' : '2')],
    ['EBPF_LAB_STOP_LIMIT_MS', String(guestStopLimitMs(accel))],
    ...pass.filter(([k]) => k !== 'EBPF_LAB_TIME_SCALE' && k !== 'EBPF_LAB_STOP_LIMIT_MS'),
  ] as [string, string][];
  return env.map(([k, v]) => `export ${k}=${shq(v!)}`);
}

/**
 * Modules a lab run loads on demand (the probe's veth and tc trials, the scenarios' bridges and
 * qdiscs). Under TCG each first use cost ~0.3–1.5 s inside the run (veth alone ~1.5 s in the
 * probe); loaded while node starts they cost the otherwise idle second vCPU instead. Only
 * modules whose loading changes nothing a run observes: no netfilter hooks (ip_vs, conntrack),
 * no devices made at load (ipip's tunl0, null_blk's nullb0, whose parameters a scenario sets).
 */
export const PRELOAD_MODULES = ['veth', 'bridge', 'sch_ingress', 'cls_bpf', 'sch_htb', 'sch_tbf', 'sch_fq'];
/** made once the preload is over; the guest's runner waits for it before it probes (lab/run.ts) */
export const PRELOAD_DONE = '/run/lab-modules-preloaded';

/**
 * 9p before 5.15 (no netfs) fills the page cache one 4 KiB request at a time: the first `node` of
 * a 5.10 guest took 21–25 s to start, the next 1.4–1.7 s. Read with O_DIRECT (512 KiB requests)
 * into the guest's RAM the same binary took 3.4 s to copy and 0.5 s to start (scratch, `pnpm lab
 * vm exec 5.10`, one window). On 6.1 the copy cost as much as the cold start it saves, so there
 * the binary stays on 9p. The copy is bind-mounted over the path, so every node the run starts
 * (daemons, workers, `#!/usr/bin/env node`) uses it; ~100 MB of the guest's memory.
 */
export function nodeInRam(release: string, fs: BootedGuest['fs']): boolean {
  return fs === '9p' && !releaseAtLeast(release, [5, 15]);
}

/** The guest-side prelude: environment, modules for modprobe, the shared out dir. `runner`: the
 * script starts the lab's runner (preloads the modules runs use; node into RAM where 9p is slow). */
export function guestScript(b: BootedGuest, body: string, opts: { outDir?: string; cwd?: string; runner?: boolean } = {}): string {
  const lines = guestEnv(b.accel);
  const k = b.kernel;
  if (k.modulesDir) {
    // the host's modprobe finds the guest kernel's modules (depmod ran at fetch) for on-demand loads (veth, sch_*, cls_bpf …)
    // one guest runs several scripts (a matrix row): mount once
    const mp = `/lib/modules/${shq(k.release)}`;
    lines.push(`mountpoint -q ${mp} 2>/dev/null || { mkdir -p ${mp} && mount --bind ${shq(k.modulesDir)} ${mp} 2>/dev/null; }`);
    if (opts.runner) {
      // in the background, beside the runner's start; a module that is missing or built in is
      // not an error here (a run that needs it fails where it uses it, with its own message)
      lines.push(`[ -e ${PRELOAD_DONE} ] || { modprobe -a -q ${PRELOAD_MODULES.join(' ')} </dev/null >/dev/null 2>&1; : >${PRELOAD_DONE}; } &`);
      lines.push(`export EBPF_LAB_PRELOAD_DONE=${PRELOAD_DONE}`);
    }
  }
  if (opts.runner && nodeInRam(k.release, b.fs)) {
    // after the module preload has started, beside it; a failed copy leaves the binary where it
    // was: slower, not broken
    const node = shq(process.execPath);
    lines.push(`mountpoint -q ${node} 2>/dev/null || { mkdir -p /run/lab-node && dd if=${node} of=/run/lab-node/node bs=512k iflag=direct status=none && chmod 755 /run/lab-node/node && mount --bind /run/lab-node/node ${node}; } || rm -f /run/lab-node/node`);
  }
  if (opts.outDir) {
    const m = b.fs === 'virtiofs' ? `mount -t virtiofs labout ${shq(opts.outDir)}` : `mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 labout ${shq(opts.outDir)}`;
    lines.push(`mountpoint -q ${shq(opts.outDir)} 2>/dev/null || { mkdir -p ${shq(opts.outDir)} && ${m}; } || { echo ${shq(`lab-vm: cannot mount ${opts.outDir} in the guest`)} >&2; exit 125; }`);
  }
  if (opts.cwd) lines.push(`cd ${shq(opts.cwd)} || exit 125`);
  lines.push(body);
  return lines.join('\n') + '\n';
}

/** What a report says about the guest a run used (results.environment.vm). */
export function vmFacts(b: BootedGuest): Record<string, unknown> {
  const k = b.kernel;
  return {
    kernelSpec: k.spec,
    kernelVersion: k.version,
    kernelRelease: k.release,
    kernelSource: k.source === 'debian' ? `Debian ${k.suite} ${k.packages?.map((p) => p.name).join(' + ')}` : k.bzImage,
    accel: b.accel,
    accelNote: b.accelNote,
    ...(b.accelFallback ? { accelFallback: b.accelFallback } : {}),
    bootMs: b.vm.bootMs,
    bootRetries: b.bootRetries,
    guestBootMs: Math.round(b.vm.guestUptime * 1000),
    /** boot-to-ready by phase: QEMU start, guest kernel, /init, root mount */
    boot: b.phases,
    bootLog: BOOT_LOG,
    rootfs: b.fs,
    net: b.net === 'tap' ? 'virtio-net multiqueue (tap)' : b.net === 'user' ? 'virtio-net (user-mode, one queue)' : 'none',
    wire: b.vm.opts.wire ? `two virtio-net ports on a QEMU hub (${WIRE_MACS.gen}, ${WIRE_MACS.dut})` : 'none (no scenario of this guest asked for it; EBPF_LAB_VM_WIRE=1 adds it)',
    cpus: b.vm.opts.cpus,
    memMB: b.vm.opts.memMB,
    bootModules: b.initramfsModules,
    config: configFacts(k),
  };
}

export function onAbortKill(signal: AbortSignal | undefined, vm: Vm): () => void {
  if (!signal) return () => {};
  const f = () => void vm.close({ force: true });
  signal.addEventListener('abort', f, { once: true });
  return () => signal.removeEventListener('abort', f);
}

export async function runInVm(opts: {
  kernel: KernelImage;
  /** the lab CLI to run in the guest: the bundle's lab/cli.js (ensureBundle) */
  cli: string;
  argv: string[];
  outDir: string;
  progress: Progress;
  timeoutMs?: number;
  signal?: AbortSignal;
}): Promise<{ exitCode: number; vm: Record<string, unknown> }> {
  const t0 = Date.now();
  const timeoutMs = opts.timeoutMs ?? 30 * 60_000;
  // No signal from the caller: Ctrl-C/SIGTERM/SIGHUP still stop the guest and clean up before we return.
  const own = opts.signal ? undefined : interruptSignal();
  try {
    return await runInVmInner({ ...opts, signal: opts.signal ?? own!.signal }, t0, timeoutMs);
  } finally {
    own?.dispose();
  }
}

async function runInVmInner(opts: Parameters<typeof runInVm>[0], t0: number, timeoutMs: number): Promise<{ exitCode: number; vm: Record<string, unknown> }> {
  await mkdir(opts.outDir, { recursive: true });
  const consoleLog = join(opts.outDir, BOOT_LOG);
  const b = await bootGuest({
    kernel: opts.kernel, progress: opts.progress, outDir: opts.outDir, consoleLog, signal: opts.signal,
    bootTimeoutMs: Math.min(timeoutMs, 90_000),
  });
  const unhook = onAbortKill(opts.signal, b.vm);
  try {
    // the prebuilt bundle (lab/bundle.ts, built by the caller before boot): tsx would transpile
    // for 30-77 s under TCG before the runner printed its first line
    const cmd = [process.execPath, opts.cli, ...opts.argv].map(shq).join(' ');
    const script = guestScript(b, `exec ${cmd}`, { outDir: opts.outDir, cwd: REPO_ROOT, runner: true });
    opts.progress.step(`running in the guest: lab ${opts.argv.join(' ')}`);
    const tRun = Date.now();
    const exitCode = await b.vm.exec(script, {
      onStdout: (d) => process.stderr.write(d),
      onStderr: (d) => process.stderr.write(d),
      timeoutMs: Math.max(1000, timeoutMs - (Date.now() - t0)),
      signal: opts.signal,
    });
    const runMs = Date.now() - tRun;
    await b.vm.close();
    return { exitCode, vm: { ...vmFacts(b), runMs, totalMs: Date.now() - t0 } };
  } finally {
    unhook();
    await b.vm.close({ force: true });
  }
}

