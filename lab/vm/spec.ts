// `--kernel` parsed once, at the CLI edge, into what the user meant. Everything after the edge
// switches on `kind` instead of comparing strings: only `host` runs in this process, the other
// three resolve to a kernel image on disk (lab/vm/kernels.ts) and boot a guest.
import { existsSync, statSync } from 'node:fs';
import { UsageError } from '../../common/args.ts';
import { SERIES } from './debian.ts';

export type KernelSpec =
  /** this machine's kernel, no VM */
  | { kind: 'host'; text: 'host' }
  /** newest Debian kernel of a series: 5.10, 6.1, 6.12, 7.x, or any X.Y / X.x a suite carries */
  | { kind: 'series'; text: string; prefix: string; suites?: string[] }
  /** one Debian kernel: a version (6.1.176-1), a release (6.1.0-50-amd64) or a package name */
  | { kind: 'debian'; text: string; version: string }
  /** a bzImage on disk, optionally with its modules directory (path[:modules]) */
  | { kind: 'image'; text: string; path: string; modules?: string };

export type VmKernelSpec = Exclude<KernelSpec, { kind: 'host' }>;

export const HOST: KernelSpec = { kind: 'host', text: 'host' };

export function parseKernelSpec(text: string, what = '--kernel'): KernelSpec {
  const s = text.trim();
  // (`vm fetch ''` is no --kernel: the message names what was given, the fix fits it)
  if (!s) throw new UsageError(`${what} must not be empty`, what === '--kernel' ? 'e.g. --kernel host or --kernel 6.1' : 'e.g. 6.1 (pnpm lab vm kernels lists them)');
  if (s === 'host') return HOST;
  const [img, modules] = s.split(':');
  if (s.includes('/') || (existsSync(img!) && statSync(img!).isFile())) return { kind: 'image', text: s, path: img!, modules: modules || undefined };
  if (SERIES[s] || /^\d+(\.\d+)?(\.x)?$/.test(s)) {
    const prefix = s.endsWith('.x') ? s.slice(0, -1) : `${s}.`;
    return { kind: 'series', text: s, prefix, suites: SERIES[s] ? [SERIES[s]!] : undefined };
  }
  return { kind: 'debian', text: s, version: s };
}

/** A list of kernels (matrix --kernels) parsed the same way. */
export const parseKernelSpecs = (list: string[]): KernelSpec[] => list.map((k) => parseKernelSpec(k));
