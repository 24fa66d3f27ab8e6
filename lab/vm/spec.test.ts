// --kernel parsed once at the edge (pure: no kernel, no root), and the pure parts of a VM row.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../common/args.ts';
import { bootPhases } from './guest.ts';
import { commonDir } from './row.ts';
import { parseKernelSpec } from './spec.ts';

const dir = mkdtempSync(join(tmpdir(), 'ebpf-lab-spec-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseKernelSpec', () => {
  it('host is this machine', () => {
    expect(parseKernelSpec('host')).toEqual({ kind: 'host', text: 'host' });
  });
  it('series: the four the lab knows pin their suite; any X.Y searches every suite', () => {
    expect(parseKernelSpec('6.1')).toEqual({ kind: 'series', text: '6.1', prefix: '6.1.', suites: ['bookworm'] });
    expect(parseKernelSpec('7.x')).toEqual({ kind: 'series', text: '7.x', prefix: '7.', suites: ['sid'] });
    expect(parseKernelSpec('6.6')).toEqual({ kind: 'series', text: '6.6', prefix: '6.6.', suites: undefined });
    // "6.1" must not match 6.12: the prefix carries the dot
    expect((parseKernelSpec('6.1') as { prefix: string }).prefix).not.toBe('6.1');
  });
  it('Debian versions, releases and package names', () => {
    expect(parseKernelSpec('6.1.176-1')).toEqual({ kind: 'debian', text: '6.1.176-1', version: '6.1.176-1' });
    expect(parseKernelSpec('6.1.0-50-amd64').kind).toBe('debian');
    expect(parseKernelSpec('linux-image-6.1.0-50-amd64').kind).toBe('debian');
  });
  it('image paths, with an optional modules dir; an existing file without a slash is a path too', () => {
    expect(parseKernelSpec('/boot/vmlinuz-x:/tmp/mods')).toEqual({ kind: 'image', text: '/boot/vmlinuz-x:/tmp/mods', path: '/boot/vmlinuz-x', modules: '/tmp/mods' });
    expect(parseKernelSpec('./bzImage')).toMatchObject({ kind: 'image', path: './bzImage', modules: undefined });
    const f = join(dir, 'bzImage');
    writeFileSync(f, 'x');
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      expect(parseKernelSpec('bzImage')).toMatchObject({ kind: 'image', path: 'bzImage' });
    } finally {
      process.chdir(cwd);
    }
  });
  it('an empty kernel is a usage error naming the fix', () => {
    expect(() => parseKernelSpec(' ')).toThrow(UsageError);
    expect(() => parseKernelSpec('')).toThrow(/--kernel must not be empty/);
  });
});

describe('boot phases', () => {
  it('split boot-to-ready into QEMU start, kernel, init and root mount from the guest clock', () => {
    // READY at guest uptime 3.0 s; /init started at 2.0; root mount 2.5 → 2.7; host saw READY after 4.2 s
    expect(bootPhases(4200, [3.0, 2.0, 2.5, 2.7])).toEqual({ qemuMs: 1200, kernelMs: 2000, initMs: 800, mountMs: 200, readyMs: 4200 });
  });
  it('an old init without marks still gives QEMU start and the total', () => {
    expect(bootPhases(4200, [3.0])).toMatchObject({ qemuMs: 1200, readyMs: 4200 });
  });
});

describe('a row shares one host directory with its guest', () => {
  it('the deepest common directory of the cells\' out dirs', () => {
    expect(commonDir(['/r/m/a-6.1', '/r/m/b-6.1', '/r/m/c-6.1'])).toBe('/r/m');
    expect(commonDir(['/r/m/a-6.1'])).toBe('/r/m/a-6.1');
    expect(commonDir(['/r/x/a', '/q/y'])).toBe('/');
    expect(commonDir(['/r/ab', '/r/abc'])).toBe('/r'); // by path component, not by character
  });
});
