// Module planning for the guest's initramfs on a fake modules tree (no kernel, no root): groups,
// dependency order from .modinfo's depends=, built-ins and missing modules.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOOT_MODULE_GROUPS, planModules } from './initramfs.ts';

// made in beforeAll: the module runs even where every test is filtered out (-t), the hooks do not
let root = '';
beforeAll(() => void (root = mkdtempSync(join(tmpdir(), 'ebpf-lab-initramfs-test-'))));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function ko(name: string, depends: string[]) {
  const dir = join(root, 'kernel', 'drivers');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.ko`), Buffer.from(`\x7fELF....\0license=GPL\0depends=${depends.join(',')}\0name=${name}\0`));
}

describe('initramfs module plan', () => {
  it('loads each group in dependency order, a shared dependency once in its first group', async () => {
    ko('virtio_pci', ['virtio_pci_modern_dev']);
    ko('virtio_pci_modern_dev', []);
    ko('virtio_console', []);
    ko('overlay', []);
    ko('netfs', []);
    ko('9pnet', []);
    ko('9pnet_virtio', ['9pnet']);
    ko('9p', ['9pnet', 'netfs']);
    ko('fuse', []);
    ko('virtiofs', ['fuse']);
    writeFileSync(join(root, 'modules.builtin'), 'kernel/drivers/net/virtio_net.ko\n');
    const plan = await planModules(root, BOOT_MODULE_GROUPS);
    expect(plan.modules.map((m) => `${m.name}:${m.group}`)).toEqual([
      'virtio_pci_modern_dev:boot', 'virtio_pci:boot', 'virtio_console:boot', 'overlay:boot',
      '9pnet:9p', '9pnet_virtio:9p', 'netfs:9p', '9p:9p',
      'fuse:virtiofs', 'virtiofs:virtiofs',
    ]);
    expect(plan.builtin).toEqual(['virtio_net']);
    expect(plan.missing).toEqual([]);
  });

  it('a module that is neither a file nor built in is reported missing (assumed built in by the caller)', async () => {
    const plan = await planModules(root, { boot: ['virtio_pci', 'no_such_mod'] });
    expect(plan.missing).toEqual(['no_such_mod']);
  });

  it('no modules dir: everything wanted is missing', async () => {
    expect((await planModules(undefined, BOOT_MODULE_GROUPS)).missing).toEqual(Object.values(BOOT_MODULE_GROUPS).flat());
  });
});
