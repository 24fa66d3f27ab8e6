// The guest kernel's text symbols for a hang report: a real System.map wins, else the kallsyms
// read out of the image (cached beside it). The last test reads a real Debian image.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSystemMap, symbolize } from './hang.ts';
import { kernelSymbols, symbolsCachePath, textSymbols } from './symbols.ts';
import { REPO_ROOT } from './paths.ts';

describe('kernel symbols', () => {
  it('keeps the text symbols of kallsyms-finder\'s output, in System.map form', () => {
    const out = 'some banner\nffffffff81000000 T _text\nffffffff81002000 d some_data\nffffffff81145e40 t syscall_trace_enter.constprop.0\nffffffffc0000000 t mod_fn\t[mod]\n';
    expect(textSymbols(out)).toBe('ffffffff81000000 T _text\nffffffff81145e40 t syscall_trace_enter.constprop.0\n');
  });

  it('uses a System.map that has symbols, else the cache beside the image, and says why when neither', async () => {
    const d = mkdtempSync(join(tmpdir(), 'ebpf-lab-symtest-'));
    try {
      const k = { release: 'x', bzImage: join(d, 'vmlinuz'), vmlinux: join(d, 'vmlinux') };
      const real = join(d, 'System.map-x');
      writeFileSync(real, 'ffffffff81000000 T _text\nffffffff81000100 T f\n');
      expect(await kernelSymbols(k, real)).toMatchObject({ path: real });
      expect(symbolsCachePath(k)).toBe(join(d, 'vmlinux.kallsyms'));
      writeFileSync(join(d, 'vmlinux.kallsyms'), 'ffffffff81000000 T _text\nffffffff81000200 t g\n');
      const placeholder = join(d, 'System.map-y');
      writeFileSync(placeholder, 'ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n');
      expect(await kernelSymbols(k, placeholder)).toMatchObject({ path: join(d, 'vmlinux.kallsyms') });
      rmSync(join(d, 'vmlinux.kallsyms'));
      // no image to read: a note naming both misses, no cache written
      const none = await kernelSymbols(k, placeholder, 60_000);
      expect(none.text).toBeUndefined();
      expect(none.note).toMatch(/^.*System.map-y holds no symbols \(Debian ships the real one in linux-image-…-dbg\), and its kallsyms could not be read \(.+\)$/);
      expect(readdirSync(d).sort()).toEqual(['System.map-x', 'System.map-y']);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }, 120_000);

  // the subject is a fetched Debian kernel: `pnpm lab vm fetch 6.1` makes one
  const cached = join(REPO_ROOT, 'vm-images', 'cache');
  const v61 = existsSync(cached) ? readdirSync(cached).find((v) => v.startsWith('6.1.') && existsSync(join(cached, v, 'vmlinux'))) : undefined;
  it.skipIf(!v61)(`reads a Debian kernel's own kallsyms out of its image${v61 ? '' : ' (skipped: no 6.1 kernel in vm-images/cache; pnpm lab vm fetch 6.1)'}`, async () => {
    const s = await kernelSymbols({ release: '6.1', bzImage: '', vmlinux: join(cached, v61!, 'vmlinux') }, undefined, 120_000);
    expect(s.note).toBeUndefined();
    const map = parseSystemMap(s.text!);
    expect(map.text).toBe(0xffffffff81000000n);
    expect(map.names.length).toBeGreaterThan(30_000);
    const at = (name: string) => map.addrs[map.names.indexOf(name)]!;
    // a KASLR-moved address resolves by the runtime _text
    expect(symbolize(map, 0xffffffff8ec00000n, at('exc_int3') + 0xdc00000n + 0xan)).toBe('exc_int3+0xa');
  }, 180_000);
});
