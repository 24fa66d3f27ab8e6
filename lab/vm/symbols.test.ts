// The guest kernel's text symbols for a hang report: a real System.map wins, else the kallsyms
// read out of the image (cached in the lab cache by the image's path, size and mtime). The last
// test reads a real Debian image with kallsyms-finder (installed from PyPI on first need).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
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

  it('uses a System.map that has symbols, else the cached kallsyms of the image, and says why when neither', async () => {
    const d = mkdtempSync(join(tmpdir(), 'ebpf-lab-symtest-'));
    const k = { bzImage: join(d, 'vmlinuz'), vmlinux: join(d, 'vmlinux') };
    writeFileSync(k.vmlinux, 'not really an image');
    const cache = symbolsCachePath(k)!;
    try {
      const real = join(d, 'System.map-x');
      writeFileSync(real, 'ffffffff81000000 T _text\nffffffff81000100 T f\n');
      expect(await kernelSymbols(k, real)).toMatchObject({ path: real });
      const placeholder = join(d, 'System.map-y');
      writeFileSync(placeholder, 'ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n');
      mkdirSync(join(cache, '..'), { recursive: true });
      writeFileSync(cache, 'ffffffff81000000 T _text\nffffffff81000200 t g\n');
      expect(await kernelSymbols(k, placeholder)).toMatchObject({ path: cache });
      // the image changed (a rebuild in place): another cache entry
      writeFileSync(k.vmlinux, 'a rebuilt image, longer than before');
      expect(symbolsCachePath(k)).not.toBe(cache);
      // no image to read: a note naming both misses, and nothing installed or cached
      const none = await kernelSymbols({ bzImage: join(d, 'missing') }, placeholder);
      expect(none.text).toBeUndefined();
      expect(none.note).toBe(`${placeholder} holds no symbols (Debian ships the real one in linux-image-…-dbg), and there is no kernel image to read its kallsyms from (${join(d, 'missing')})`);
    } finally {
      rmSync(d, { recursive: true, force: true });
      rmSync(cache, { force: true });
    }
  });

  // the subject is a fetched Debian kernel: `pnpm lab vm fetch 6.1` makes one
  const cached = join(REPO_ROOT, 'vm-images', 'cache');
  const v61 = existsSync(cached) ? readdirSync(cached).find((v) => v.startsWith('6.1.') && existsSync(join(cached, v, 'vmlinux'))) : undefined;
  it.skipIf(!v61)(`reads a Debian kernel's own kallsyms out of its image${v61 ? '' : ' (skipped: no 6.1 kernel in vm-images/cache; pnpm lab vm fetch 6.1)'}`, async () => {
    // a path of its own: read now, not taken from the cache of an earlier run
    const d = mkdtempSync(join(tmpdir(), 'ebpf-lab-symtest-'));
    const k = { bzImage: '', vmlinux: join(d, 'vmlinux') };
    symlinkSync(join(cached, v61!, 'vmlinux'), k.vmlinux);
    const cache = symbolsCachePath(k)!;
    try {
      expect(existsSync(cache)).toBe(false);
      const s = await kernelSymbols(k, undefined, 150_000);
      expect(s.note).toBeUndefined();
      expect(s.path).toBe(cache);
      const map = parseSystemMap(s.text!);
      expect(map.text).toBe(0xffffffff81000000n);
      expect(map.names.length).toBeGreaterThan(30_000);
      const at = (name: string) => map.addrs[map.names.indexOf(name)]!;
      // a KASLR-moved address resolves by the runtime _text
      expect(symbolize(map, 0xffffffff8ec00000n, at('exc_int3') + 0xdc00000n + 0xan)).toBe('exc_int3+0xa');
    } finally {
      rmSync(d, { recursive: true, force: true });
      rmSync(cache, { force: true });
    }
  }, 180_000);
});
