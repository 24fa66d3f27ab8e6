// The guest kernel command line (pure): which trims apply where, and lpj from the host's clock.
import { describe, expect, it } from 'vitest';
import { kernelCmdline, presetLpj } from './cmdline.ts';

const CPUINFO = 'processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\ncpu MHz\t\t: 2300.000\n';

describe('guest kernel command line', () => {
  it('presets lpj from the host clock and HZ (what the guest computes: 2299.998 MHz → lpj=9199992 at HZ=250)', () => {
    expect(presetLpj(CPUINFO, 250)).toBe(9_200_000);
    expect(presetLpj(CPUINFO, 1000)).toBe(2_300_000);
    expect(presetLpj('processor: 0\n', 250)).toBeUndefined();
    expect(presetLpj('cpu MHz : 0.000\n', 250)).toBeUndefined();
  });

  it('applies the trims under TCG, lpj only there, and none when switched off', () => {
    const tcg = kernelCmdline({ release: '6.1.0-50-amd64', fs: '9p', accel: 'tcg', hz: 250, cpuinfo: CPUINFO });
    expect(tcg).toContain('lpj=9200000');
    expect(tcg).toContain('init_on_alloc=0');
    expect(tcg).toContain('lab.fs=9p');
    const kvm = kernelCmdline({ release: '6.1.0-50-amd64', fs: 'virtiofs', accel: 'kvm', hz: 250, cpuinfo: CPUINFO });
    expect(kvm.some((a) => a.startsWith('lpj='))).toBe(false);
    expect(kvm).toContain('init_on_alloc=0');
    const off = kernelCmdline({ release: '6.1.0-50-amd64', fs: '9p', accel: 'tcg', hz: 250, cpuinfo: CPUINFO, trims: false });
    expect(off.some((a) => a.startsWith('lpj=') || a.startsWith('init_on_alloc'))).toBe(false);
  });

  it('adds bpf to 5.10\'s LSM list only, and puts extra arguments last so they win', () => {
    expect(kernelCmdline({ release: '5.10.0-32-amd64', fs: '9p', accel: 'tcg' })).toContain('lsm=lockdown,yama,apparmor,bpf');
    expect(kernelCmdline({ release: '6.12.117+deb13-amd64', fs: '9p', accel: 'tcg' }).some((a) => a.startsWith('lsm='))).toBe(false);
    const a = kernelCmdline({ release: '6.1.0-50-amd64', fs: '9p', accel: 'tcg', extra: ['loglevel=4'] });
    expect(a.at(-1)).toBe('loglevel=4');
  });
});

describe('vng boot beside the lab\'s own', () => {
  it('puts both boot-to-ready figures and their phases on one line', async () => {
    const { bootVsLab } = await import('./row.ts');
    const line = bootVsLab(14146, { bootMs: 2961, boot: { qemuMs: 351, kernelMs: 1960, initMs: 630, mountMs: 20, readyMs: 2961 } }, { qemuMs: 4426, kernelMs: 2645, initMs: 7075, readyMs: 14146 });
    expect(line).toBe("vng 14.1 s (QEMU 4.43 + kernel 2.65 + init 7.08) · the lab's own 3.0 s (QEMU 0.35 + kernel 1.96 + init 0.63 + mount 0.02), booted in the same run");
  });
});

describe('QEMU machine', () => {
  it('is q35 without SMM, SATA, SMBus and vmport, and plain q35 with the trims off', async () => {
    const { machineArg } = await import('./cmdline.ts');
    expect(machineArg(true)).toBe('q35,smm=off,vmport=off,sata=off,smbus=off');
    expect(machineArg(false)).toBe('q35');
  });
});

describe('TCG accel', () => {
  it('is single-threaded unless EBPF_LAB_TCG_THREAD asks for multi; anything else is a one-line error naming the fix', async () => {
    const { tcgAccelArg } = await import('./cmdline.ts');
    expect(tcgAccelArg(undefined)).toBe('tcg,thread=single');
    expect(tcgAccelArg('multi')).toBe('tcg,thread=multi');
    expect(() => tcgAccelArg('mult')).toThrow(/EBPF_LAB_TCG_THREAD=mult is not a TCG thread mode/);
  });
});
