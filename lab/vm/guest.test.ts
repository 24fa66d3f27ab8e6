import { describe, expect, it } from 'vitest';
import { guestScript, nodeInRam, tcgBootRetry, tcgRunRetry } from './guest.ts';

describe('node copied into a guest\'s RAM', () => {
  it('only where 9p fills the page cache a page per request (before 5.15) and the root is 9p', () => {
    expect(nodeInRam('5.10.0-32-amd64', '9p')).toBe(true);
    expect(nodeInRam('4.19.0-27-amd64', '9p')).toBe(true);
    expect(nodeInRam('5.15.0-1-amd64', '9p')).toBe(false);
    expect(nodeInRam('6.1.0-50-amd64', '9p')).toBe(false);
    expect(nodeInRam('7.2.13+deb14-amd64', '9p')).toBe(false);
    expect(nodeInRam('5.10.0-32-amd64', 'virtiofs')).toBe(false);
    expect(nodeInRam('not-a-release', '9p')).toBe(false);
  });
});

describe('a failed TCG boot is tried once more', () => {
  // the messages Vm.boot throws, with the console tail it appends
  const hung = 'timed out after 90 s waiting for the guest to boot\n--- guest console (tail) ---\n[    0.121913] random: crng init done\r\n[    1.195139] Asymmetric key parser \'x509\' registered\r\n';
  const crashed = 'QEMU exited while waiting for the guest to boot\n--- guest console (tail) ---\n[    2.1] Oops: int3: 0000 [#1] SMP\n[    2.2] Kernel panic - not syncing: Fatal exception';
  it('a kernel stopped part-way under TCG (the boot had its full budget), naming where its console stopped', () => {
    expect(tcgBootRetry('tcg', hung, 90_000)).toBe('the guest did not finish booting within 90 s under TCG (its console stopped at "[    1.195139] Asymmetric key parser \'x509\' registered"); booting once more');
  });
  it('a kernel crashed by TCG', () => {
    expect(tcgBootRetry('tcg', crashed, 90_000, 'multi')).toMatch(/^the guest kernel crashed during boot \(Oops: int3: 0000 \[#1\] SMP\) under multi-threaded TCG; booting once more$/);
    // single-threaded TCG (the default) does not lose the patching: a crash there is the kernel's
    expect(tcgBootRetry('tcg', crashed, 90_000, 'single')).toBeUndefined();
  });
  it('not a boot budget cut to a caller\'s --timeout, not KVM (its own fallback), not other failures', () => {
    expect(tcgBootRetry('tcg', hung.replace('90 s', '15 s'), 15_000)).toBeUndefined();
    expect(tcgBootRetry('kvm', hung, 90_000)).toBeUndefined();
    expect(tcgBootRetry('tcg', 'QEMU exited while waiting for the guest to boot\n--- guest console (tail) ---\nqemu: could not open kernel', 90_000)).toBeUndefined();
  });
});

describe('a scenario whose guest TCG crashed is run once more', () => {
  // the message Vm.exec throws, and the console of the fresh-check's 6.12 cell that crashed
  const msg = 'QEMU exited while waiting for the guest command\n--- guest console (tail) ---\n[    6.485057] Kernel panic - not syncing: Fatal exception in interrupt';
  const console = '[    6.481377] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n[    6.481911] RIP: 0010:syscall_trace_enter+0xd8/0x1a0\n[    6.485057] Kernel panic - not syncing: Fatal exception in interrupt\n';
  it('an int3 Oops (the emulator\'s code patching) under TCG, named with where it hit', () => {
    expect(tcgRunRetry('tcg', msg, console, 'multi')).toBe('the guest kernel crashed under multi-threaded TCG while the scenario ran (Oops: int3: 0000 [#1] PREEMPT SMP NOPTI at syscall_trace_enter+0xd8/0x1a0: the emulator\'s code patching, as at boot); running it once more on a fresh guest');
  });
  it('not single-threaded (the default), not under KVM, not another crash, not a run that failed on its own', () => {
    expect(tcgRunRetry('tcg', msg, console, 'single')).toBeUndefined();
    expect(tcgRunRetry('tcg', msg, console)).toBeUndefined();
    expect(tcgRunRetry('kvm', msg, console, 'multi')).toBeUndefined();
    expect(tcgRunRetry('tcg', msg, console.replace('int3', 'general protection fault'), 'multi')).toBeUndefined();
    expect(tcgRunRetry('tcg', 'scenario timed out after 600 s in the guest', console, 'multi')).toBeUndefined();
  });
});

describe('kvmBootFault: which failed KVM boots are KVM\'s (a TCG boot, and a day\'s "KVM unusable")', () => {
  it('a hang with a real budget and QEMU dying on KVM are; a guest panic and a caller\'s tight budget are not', async () => {
    const { kvmBootFault } = await import('./guest.ts');
    expect(kvmBootFault('timed out after 90 s waiting for the guest to boot', 90_000)).toBe(true);
    expect(kvmBootFault('QEMU exited while waiting for the guest to boot: qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69', 90_000)).toBe(true);
    expect(kvmBootFault('timed out after 5 s waiting for the guest to boot', 5_000)).toBe(false);
    expect(kvmBootFault('QEMU exited while waiting for the guest to boot\n[    0.9] Kernel panic - not syncing: VFS: Unable to mount root fs', 90_000)).toBe(false);
    expect(kvmBootFault('QEMU exited while waiting for the guest command', 90_000)).toBe(false);
  });
});

// review, session 65: the out dir went unquoted into the guest's error message (a quote ended the
// script with a syntax error; $(…) in a directory name ran in the guest as root when the mount failed)
describe('the guest script', () => {
  it('quotes the out dir everywhere, its error message too', async () => {
    const { execFileSync } = await import('node:child_process');
    const outDir = `/tmp/a"b$(touch /tmp/ebpf-lab-pwned-${process.pid})'c`;
    const b = { accel: 'tcg', fs: '9p', kernel: { release: '6.1.0-50-amd64' } } as unknown as Parameters<typeof guestScript>[0];
    const s = guestScript(b, 'true', { outDir });
    execFileSync('sh', ['-n'], { input: s }); // parses
    const echo = s.split('\n').find((l) => l.includes('cannot mount'))!;
    // the message is one quoted word: echoed, it is the directory as given, nothing run
    const said = execFileSync('sh', ['-c', echo.replace(/^.*\|\| \{ (echo .*) >&2; exit 125; \}$/, '$1')]).toString();
    expect(said).toBe(`lab-vm: cannot mount ${outDir} in the guest\n`);
  });
});

// review, session 65: a probe before `setup vm` (no QEMU yet) was cached for a day as "KVM unusable"
describe('the KVM probe without QEMU', () => {
  it('is not a verdict about KVM (not kept), and says QEMU could not start', async () => {
    const { probeAccel } = await import('./kvm.ts');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const empty = mkdtempSync(join(tmpdir(), 'ebpf-lab-nopath-'));
    const path = process.env.PATH;
    process.env.PATH = empty;
    try {
      const r = await probeAccel('kvm', 5000, '/nonexistent/vmlinux');
      expect(r.ok).toBe(false);
      expect(r.interrupted).toBe(true);
      expect(r.note).toMatch(/QEMU could not be started .*not a verdict about kvm \(pnpm lab setup vm installs it\)/);
    } finally {
      process.env.PATH = path;
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
