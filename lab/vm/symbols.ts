// The guest kernel's text symbols, for naming where a stuck guest's vCPUs are (hang.ts). Debian's
// System.map is a placeholder (the real one is in linux-image-…-dbg, hundreds of MB), but every
// kernel carries its own kallsyms table: vmlinux-to-elf's kallsyms-finder (PyPI, into a lab-owned
// venv like virtme-ng's) reads it out of the vmlinux or bzImage in ~3 s, and the result is cached
// beside the image. Only a hang needs it, so it is made then, within a budget, and a run that
// cannot make it (no PyPI, no python3-venv) still reports the addresses relative to _text.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './exec.ts';
import type { KernelImage } from './kernels.ts';
import { parseSystemMap } from './hang.ts';

export const V2E_PREFIX = () => process.env.EBPF_LAB_V2E_PREFIX || '/opt/ebpf-lab/vmlinux-to-elf';
/** pinned: hang.ts parses its output */
export const V2E_PACKAGE = 'vmlinux-to-elf==1.4.0';

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

/** where the cached symbols of `k` live: beside the image they were read from */
export function symbolsCachePath(k: Pick<KernelImage, 'vmlinux' | 'bzImage'>): string {
  return `${k.vmlinux ?? k.bzImage}.kallsyms`;
}

/**
 * The kernel's text symbols: a System.map that has them, else the cached kallsyms, else read out
 * of the image now (installing kallsyms-finder first if need be), all within `budgetMs`.
 */
export async function kernelSymbols(k: Pick<KernelImage, 'vmlinux' | 'bzImage' | 'config' | 'release'>, systemMap: string | undefined, budgetMs = 30_000): Promise<KernelSymbols> {
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
  if (existsSync(cache)) return { path: cache, text: readFileSync(cache, 'utf8') };
  const signal = AbortSignal.timeout(budgetMs);
  const finder = join(V2E_PREFIX(), 'bin', 'kallsyms-finder');
  try {
    if (!existsSync(finder)) {
      const prefix = V2E_PREFIX();
      const venv = await run('python3', ['-m', 'venv', prefix], { reject: false, signal });
      if (venv.exitCode !== 0) throw new Error(`python3 -m venv ${prefix}: ${venv.stderr.trim().split('\n').pop()}`);
      const pip = await run(join(prefix, 'bin', 'pip'), ['install', '-q', V2E_PACKAGE], { reject: false, signal });
      if (pip.exitCode !== 0) throw new Error(`pip install ${V2E_PACKAGE}: ${pip.stderr.trim().split('\n').pop()}`);
    }
    const r = await run(finder, [k.vmlinux ?? k.bzImage], { reject: false, signal });
    const text = textSymbols(r.stdout.toString());
    if (!parseSystemMap(text).text) throw new Error(`kallsyms-finder found no kallsyms in ${k.vmlinux ?? k.bzImage} (exit ${r.exitCode}: ${r.stderr.trim().split('\n').pop() ?? ''})`);
    writeFileSync(`${cache}.tmp${process.pid}`, text);
    renameSync(`${cache}.tmp${process.pid}`, cache);
    return { path: cache, text };
  } catch (e) {
    const why = signal.aborted ? `not read within ${Math.round(budgetMs / 1000)} s` : (e as Error).message;
    return { note: `${mapNote}, and its kallsyms could not be read (${why})` };
  }
}
