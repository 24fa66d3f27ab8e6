// Does KVM actually run guests here? Opening /dev/kvm proves nothing: on nested hosts with
// page-table based virtualisation (kvm-pvm) guests die with "KVM internal error … emulation
// failure" on instructions like cmpxchg16b/xrstor, or spin. Even a real-mode boot sector runs
// fine there (measured: 1.3 s), so the probe boots a real Linux kernel (any cached one) with a
// tiny initramfs that prints KVMOK, under a short deadline, and reads what QEMU said. Without
// a cached kernel it can only fall back to the boot sector, and says so.
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheDir } from '../../vm-images/paths.ts';
import { buildProbeInitramfs } from '../../vm-images/initramfs.ts';
import { cachedKernels, readKernelMeta } from '../../vm-images/kernels.ts';

export interface KvmProbe {
  ok: boolean;
  note: string;
  ms: number;
  hostKernel: string;
  at: string;
}

/** 16-bit real mode: ds=0; print "KVMOK\r\n" on 0x3f8; out 0xf4 (isa-debug-exit); hlt loop. */
function bootSector(): Buffer {
  const code = [0x31, 0xc0, 0x8e, 0xd8, 0xfc, 0xba, 0xf8, 0x03, 0xbe, 0x1a, 0x7c, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xb0, 0x00, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd];
  const b = Buffer.alloc(512);
  Buffer.from(code).copy(b, 0);
  Buffer.from('KVMOK\r\n\0').copy(b, 0x1a);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/** Run the boot sector under an accelerator; exported so tests can check the probe itself under TCG. */
export async function probeAccel(accel: 'kvm' | 'tcg', deadlineMs: number, kernel?: string): Promise<{ ok: boolean; note: string; ms: number }> {
  const t0 = Date.now();
  const dir = await mkdtemp(join(tmpdir(), 'ebpf-lab-vm-kvmprobe-'));
  try {
    const args = ['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-accel', accel, '-serial', 'stdio'];
    let what = 'a boot sector';
    if (kernel) {
      what = 'a Linux kernel';
      args.push('-cpu', accel === 'kvm' ? 'host' : 'max', '-m', '256M', '-kernel', kernel, '-initrd', await buildProbeInitramfs(),
        '-append', 'console=ttyS0 quiet panic=-1 rdinit=/init');
    } else {
      const img = join(dir, 'boot.img');
      await writeFile(img, bootSector());
      args.push('-m', '16M', '-drive', `file=${img},format=raw,if=ide`, '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04');
    }
    const p = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
    if (out.includes('KVMOK')) return { ok: true, note: `${accel} guest ran ${what} in ${ms} ms`, ms };
    const why = err.split('\n').find((l) => /error|fail|emulation/i.test(l))?.trim();
    if (!finished) return { ok: false, note: `${accel} guest running ${what} printed nothing within ${deadlineMs} ms${why ? ` (${why})` : ' (it hangs)'}`, ms };
    return { ok: false, note: `${accel} guest failed: ${why ?? (err.trim().slice(0, 300) || 'no output')}`, ms };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

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
export async function probeKvm(opts: { force?: boolean; deadlineMs?: number } = {}): Promise<KvmProbe> {
  const hostKernel = release();
  const no = kvmOpenable();
  if (no) return { ok: false, note: no, ms: 0, hostKernel, at: new Date().toISOString() };
  if (!opts.force) {
    try {
      const c = JSON.parse(await readFile(PROBE_FILE(), 'utf8')) as KvmProbe;
      if (c.hostKernel === hostKernel && Date.now() - Date.parse(c.at) < 24 * 3600_000) return c;
    } catch { /* no cached probe */ }
  }
  // A working KVM boots a kernel to init in ~1 s; 6 s leaves room for a loaded host.
  const k = cachedKernels().find((x) => x.source === 'debian' && x.vmlinux);
  const kernel = k ? (await readKernelMeta(join(cacheDir(), k.version))).vmlinux : undefined;
  const r = await probeAccel('kvm', opts.deadlineMs ?? 6000, kernel);
  if (!kernel) r.note += ' (no cached kernel: only a boot sector was tried, which passes on some broken nested hosts)';
  const probe: KvmProbe = { ...r, hostKernel, at: new Date().toISOString() };
  try {
    await mkdir(cacheDir(), { recursive: true });
    await writeFile(PROBE_FILE(), JSON.stringify(probe, null, 2));
  } catch { /* cache is best effort */ }
  return probe;
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
