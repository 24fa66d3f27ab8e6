// Where things live in the checkout, defined once. A leaf: imports nothing of the lab, so the
// binding, the BPF build, the VM code and the CLI may all use it. (The guest bundle pins each
// module's import.meta.url to its source file, so these paths are the same bundled or not.)
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BPF_DIR = path.join(REPO_ROOT, 'bpf');
/** compiled objects, vmlinux.h, test objects */
export const OUT_DIR = path.join(BPF_DIR, '.output');
/** generated TypeScript (types and skeletons) */
export const GEN_DIR = path.join(BPF_DIR, 'gen');
export const SCENARIOS_DIR = path.join(REPO_ROOT, 'scenarios');
export const REPORTS_DIR = path.join(REPO_ROOT, 'reports');

/**
 * The lab's cache of things built or fetched once (`<repo>/.cache/<what>`, git-ignored;
 * EBPF_LAB_CACHE overrides): read by VM guests too, which see the host's tree read-only.
 */
export function cacheDir(what: string): string {
  return path.join(process.env.EBPF_LAB_CACHE ?? path.join(REPO_ROOT, '.cache'), what);
}

/** bpf/.output/<name>.bpf.o */
export function objectPath(name: string): string {
  return path.join(OUT_DIR, `${name}.bpf.o`);
}
