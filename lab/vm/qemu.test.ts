// Values inside QEMU's and virtiofsd's option lists (pure logic): paths are the user's --out dirs.
import { describe, expect, it } from 'vitest';
import { fuseOpt, qemuOpt } from './qemu.ts';

describe('option-list escaping', () => {
  it('QEMU: a comma is doubled, nothing else changes', () => {
    expect(qemuOpt('/tmp/a,b/c,,d')).toBe('/tmp/a,,b/c,,,,d');
    expect(qemuOpt("/tmp/we ird/it's=x")).toBe("/tmp/we ird/it's=x");
  });
  it('virtiofsd -o (FUSE syntax): a comma and a backslash get a backslash', () => {
    expect(fuseOpt('/tmp/a,b')).toBe('/tmp/a\\,b');
    expect(fuseOpt('/tmp/a\\b')).toBe('/tmp/a\\\\b');
  });
});

describe('KVM probe verdicts', () => {
  // QEMU aborts on its own when KVM refuses the guest ("failed to set MSR 0x10a" here): that is a
  // verdict; a stop from outside (Ctrl-C, a kill) is not, and is not cached
  it('a QEMU that aborted or faulted is a verdict; one stopped from outside is not', async () => {
    const { stoppedFromOutside } = await import('./kvm.ts');
    expect(['SIGABRT', 'SIGSEGV', 'SIGBUS', 'SIGILL'].filter(stoppedFromOutside)).toEqual([]);
    expect(['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGHUP'].every(stoppedFromOutside)).toBe(true);
  });
});
