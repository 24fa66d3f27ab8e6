// The compat-ring check (bpf/security.bpf.c, ring_compat) has 7.0's IO_RING_F_COMPAT built in,
// since CO-RE cannot relocate an anonymous enum: every kernel the lab has (the host's and the
// cached VM kernels') must agree with it, or the controller says unsupported. No root needed.
import fs from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';

import { Btf } from '../libbpf/index.ts';
import { cachedKernels, readKernelMeta } from '../../lab/vm/kernels.ts';
import { cacheDir } from '../../lab/vm/paths.ts';
import { uringCompatUnsound } from './controller.ts';

it('the host kernel\'s io_uring compat bit is read as this build reads it', (t) => {
  if (!fs.existsSync('/sys/kernel/btf/vmlinux')) return t.skip('no kernel BTF on this host');
  expect(uringCompatUnsound()).toBeUndefined();
});

it('every cached VM kernel\'s io_uring compat bit is read as this build reads it (7.x: int_flags, checked against its BTF)', async (t) => {
  const kernels = cachedKernels().filter((k) => k.vmlinux);
  if (!kernels.length) return t.skip('no VM kernel with a vmlinux in the cache (pnpm lab vm fetch <kernel>)');
  for (const k of kernels) {
    const img = await readKernelMeta(join(cacheDir(), k.version));
    const btf = Btf.fromFile(img.vmlinux!);
    expect(btf, `BTF of ${img.vmlinux}`).not.toBeNull();
    expect(uringCompatUnsound(btf), k.version).toBeUndefined();
  }
});

