// Where kernels, indices and initramfs images are cached. The cache lives in the checkout
// (vm-images/cache, git-ignored) so a machine that keeps the work tree keeps its kernels;
// EBPF_LAB_VM_CACHE moves it (tests use a temp dir so they never touch the real cache).
import { join } from 'node:path';
import { REPO_ROOT } from '../../common/dist.ts';

export { REPO_ROOT };

export function cacheDir(): string {
  return process.env.EBPF_LAB_VM_CACHE || join(REPO_ROOT, 'vm-images', 'cache');
}
