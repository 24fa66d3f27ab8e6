// The guest kernel's text symbols, for naming where a stuck guest's vCPUs are (hang.ts). Debian's
// System.map is a placeholder (the real one is in linux-image-…-dbg, hundreds of MB), but every
// kernel carries its own kallsyms table: vmlinux-to-elf's kallsyms-finder (PyPI, into a lab-owned
// venv like virtme-ng's) reads it out of the vmlinux or bzImage in ~3 s, and the result is cached
// in the lab cache, keyed by the image's path, size and mtime (a custom bzImage rebuilt in place
// is read again). Only a hang needs it, so it is made then, within a budget; a diagnosis must not
// fail for it: every miss is a note, and the addresses stay relative to _text.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from '../../common/paths.ts';
import { writeFileAtomic } from '../../common/state-file.ts';
import { run } from './exec.ts';
import { ensureVenv } from './venv.ts';
import type { KernelImage } from './kernels.ts';
import { parseSystemMap, systemMapPath } from './hang.ts';

export const V2E_PREFIX = () => process.env.EBPF_LAB_V2E_PREFIX || '/opt/ebpf-lab/vmlinux-to-elf';
/** pinned: hang.ts parses its output */
export const V2E_PACKAGE = 'vmlinux-to-elf==1.4.0';
/**
 * What kallsyms-finder imports, as wheels: its declared dependency minilzo (only for LZO kernels,
 * imported when one is met) has no wheel and needs Python's headers to build, which a bare Debian
 * lacks (the install failed in a fresh chroot), so the package goes in with --no-deps and these
 */
const V2E_DEPS = ['peewee==4.5.3', 'lz4==4.4.5', 'zstandard==0.25.0'];

export interface KernelSymbols {
  /** where the symbols came from (a System.map, or the cache of the kernel's own kallsyms) */
  path?: string;
  /** System.map-format text ("addr t name" lines) */
  text?: string;
  /** why there are none */
  note?: string;
}

/** the System.map-format text symbols (t/T/w/W) of kallsyms-finder's output */
export function textSymbols(out: string): string {
  return out.split('\n').filter((l) => /^[0-9a-f]{16} [tTwW] \S+$/.test(l)).join('\n') + '\n';
}

/** the image kallsyms are read from: the ELF vmlinux where there is one, else the bzImage */
const imageOf = (k: Pick<KernelImage, 'vmlinux' | 'bzImage'>) => k.vmlinux ?? k.bzImage;

/** where the symbols of `k`'s image are cached (undefined: no image to read) */
export function symbolsCachePath(k: Pick<KernelImage, 'vmlinux' | 'bzImage'>): string | undefined {
  const img = imageOf(k);
  let st;
  try {
    st = statSync(img);
  } catch {
    return undefined;
  }
  return join(cacheDir('kallsyms'), `${createHash('sha256').update(`${img}:${st.size}:${st.mtimeMs}`).digest('hex').slice(0, 16)}.txt`);
}

/** one reading per image at a time in this process (a grace timer's and a timeout's diagnosis can meet) */
const inFlight = new Map<string, Promise<KernelSymbols>>();

/**
 * The kernel's text symbols: a System.map that has them, else the cached kallsyms, else read out
 * of the image now (installing kallsyms-finder first if need be), all within `budgetMs`. Never throws.
 */
export async function kernelSymbols(k: Pick<KernelImage, 'vmlinux' | 'bzImage'> & { config?: string; release?: string }, systemMap = k.release === undefined ? undefined : systemMapPath({ config: k.config, release: k.release }), budgetMs = 30_000): Promise<KernelSymbols> {
  let mapNote = 'no System.map for this kernel';
  if (systemMap) {
    try {
      const text = readFileSync(systemMap, 'utf8');
      if (parseSystemMap(text).text) return { path: systemMap, text };
      mapNote = `${systemMap} holds no symbols (Debian ships the real one in linux-image-…-dbg)`;
    } catch {
      mapNote = `${systemMap} could not be read`;
    }
  }
  const cache = symbolsCachePath(k);
  if (!cache) return { note: `${mapNote}, and there is no kernel image to read its kallsyms from (${imageOf(k) || 'none given'})` };
  let p = inFlight.get(cache);
  if (!p) {
    p = readSymbols(imageOf(k), cache, budgetMs).finally(() => inFlight.delete(cache));
    inFlight.set(cache, p);
  }
  const r = await p;
  return r.text ? r : { note: `${mapNote}, and its kallsyms could not be read (${r.note})` };
}

async function readSymbols(img: string, cache: string, budgetMs: number): Promise<KernelSymbols> {
  try {
    const text = readFileSync(cache, 'utf8');
    if (parseSystemMap(text).text) return { path: cache, text };
  } catch { /* not cached yet */ }
  const signal = AbortSignal.timeout(budgetMs);
  try {
    const finder = await ensureVenv(finderTool(), { signal });
    const r = await run(finder, [img], { reject: false, signal });
    const text = textSymbols(r.stdout.toString());
    if (!parseSystemMap(text).text) return { note: `kallsyms-finder found none in ${img} (exit ${r.exitCode}: ${r.stderr.trim().split('\n').pop() ?? ''})` };
    try {
      // (another process may be writing the same entry: each through a temporary name of its own)
      mkdirSync(cacheDir('kallsyms'), { recursive: true });
      writeFileAtomic(cache, text);
    } catch { /* symbols in hand; the next hang reads them again */ }
    return { path: cache, text };
  } catch (e) {
    return { note: signal.aborted ? `not read within ${Math.round(budgetMs / 1000)} s` : (e as Error).message };
  }
}

/** vmlinux-to-elf's venv (lab/vm/venv.ts): kallsyms-finder, installed at the first hang */
const finderTool = () => ({ prefix: V2E_PREFIX(), packages: [V2E_PACKAGE, ...V2E_DEPS], pipArgs: ['--no-deps', '--only-binary=:all:'], bin: 'kallsyms-finder' });
