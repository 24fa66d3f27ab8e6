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
