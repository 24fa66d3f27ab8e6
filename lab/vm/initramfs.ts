// The guest's initramfs: static busybox, the few modules needed to reach the host's root
// (virtio, virtio_console, 9p or virtiofs, overlay) plus virtio_net, and /init (init.sh). It is
// an uncompressed newc cpio: under TCG decompressing it would cost more than reading it.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LabError } from '../../common/errors.ts';
import { run } from './exec.ts';
import type { KernelImage } from './kernels.ts';
import { cacheDir } from './paths.ts';

const INIT = join(dirname(fileURLToPath(import.meta.url)), 'init.sh');
const BUSYBOX = ['/usr/bin/busybox', '/bin/busybox'];
/** the kernel's module loader in a guest (init.sh points /proc/sys/kernel/modprobe at it): the host's modprobe inside the guest root */
const LAB_MODPROBE = '#!/bin/sh\nexec /bin/chroot /newroot /sbin/modprobe "$@"\n';

/**
 * Modules /init loads, by group: `boot` always, before the control channel; the root
 * filesystem's group only for the one the kernel command line names (lab.fs=9p|virtiofs);
 * `net` in the background while the host sends the first command (/init waits for it before
 * running one). Each group is in dependency order; a module shared by two groups loads in the first.
 */
export const BOOT_MODULE_GROUPS: Record<string, string[]> = {
  boot: ['virtio_pci', 'virtio_console', 'overlay'],
  '9p': ['9pnet_virtio', '9p'],
  virtiofs: ['virtiofs'],
  net: ['virtio_net'],
};
export const BOOT_MODULES = Object.values(BOOT_MODULE_GROUPS).flat();

// ---- newc cpio -------------------------------------------------------------------------------
class Cpio {
  private parts: Buffer[] = [];
  private ino = 1;
  private entry(name: string, mode: number, data: Buffer = Buffer.alloc(0), rdev: [number, number] = [0, 0]) {
    const hex = (n: number) => n.toString(16).padStart(8, '0');
    const nameBuf = Buffer.from(`${name}\0`);
    const hdr = `070701${hex(this.ino++)}${hex(mode)}${hex(0)}${hex(0)}${hex(1)}${hex(0)}${hex(data.length)}${hex(0)}${hex(0)}${hex(rdev[0])}${hex(rdev[1])}${hex(nameBuf.length)}${hex(0)}`;
    const head = Buffer.concat([Buffer.from(hdr), nameBuf]);
    this.parts.push(head, Buffer.alloc((4 - (head.length % 4)) % 4), data, Buffer.alloc((4 - (data.length % 4)) % 4));
  }
  dir(name: string) { this.entry(name, 0o040755); }
  file(name: string, data: Buffer, mode = 0o644) { this.entry(name, 0o100000 | mode, data); }
  symlink(name: string, target: string) { this.entry(name, 0o120777, Buffer.from(target)); }
  /** the kernel opens /dev/console for init before any devtmpfs exists: without the node, init has no stdout */
  chardev(name: string, major: number, minor: number) { this.entry(name, 0o020600, Buffer.alloc(0), [major, minor]); }
  finish(): Buffer {
    this.entry('TRAILER!!!', 0);
    return Buffer.concat(this.parts);
  }
}

// ---- module dependency resolution ------------------------------------------------------------
const norm = (n: string) => n.replace(/-/g, '_');

function walk(dir: string, out: Map<string, string>) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else {
      const m = /^(.+)\.ko(\.xz|\.zst|\.gz)?$/.exec(e.name);
      if (m) out.set(norm(m[1]!), p);
    }
  }
}

async function moduleBytes(path: string): Promise<Buffer> {
  // busybox insmod cannot load compressed modules (.ko.xz on 6.12+), so they are unpacked here
  if (path.endsWith('.xz')) return (await run('xz', ['-dc', path])).stdout;
  if (path.endsWith('.zst')) return (await run('zstd', ['-dcq', path])).stdout;
  if (path.endsWith('.gz')) return (await run('gzip', ['-dc', path])).stdout;
  return readFile(path);
}

/** depends= from the module's .modinfo; no modules.dep needed (custom kernels may lack one). */
function modinfoDepends(ko: Buffer): string[] {
  const i = ko.indexOf('\0depends=');
  if (i < 0) return [];
  const end = ko.indexOf(0, i + 1);
  return ko.subarray(i + 9, end).toString().split(',').filter(Boolean).map(norm);
}

export interface ModulePlan {
  /** in load order */
  modules: { name: string; data: Buffer; group?: string }[];
  builtin: string[];
  missing: string[];
}

export async function planModules(modulesDir: string | undefined, wanted: string[] | Record<string, string[]>): Promise<ModulePlan> {
  const groups = Array.isArray(wanted) ? { '': wanted } : wanted;
  const plan: ModulePlan = { modules: [], builtin: [], missing: [] };
  if (!modulesDir || !existsSync(modulesDir)) {
    plan.missing = Object.values(groups).flat();
    return plan;
  }
  const builtinFile = join(modulesDir, 'modules.builtin');
  const builtin = new Set(existsSync(builtinFile) ? readFileSync(builtinFile, 'utf8').split('\n').map((l) => norm(basename(l).replace(/\.ko$/, ''))) : []);
  const files = new Map<string, string>();
  walk(join(modulesDir, 'kernel'), files);
  const done = new Set<string>();
  let group = '';
  const visit = async (name: string, top: boolean) => {
    if (done.has(name)) return;
    done.add(name);
    if (builtin.has(name)) { if (top) plan.builtin.push(name); return; }
    const f = files.get(name);
    if (!f) { plan.missing.push(name); return; }
    const data = await moduleBytes(f);
    for (const d of modinfoDepends(data)) await visit(d, false);
    plan.modules.push({ name, data, ...(group ? { group } : {}) });
  };
  for (const [g, names] of Object.entries(groups)) {
    group = g;
    for (const w of names) await visit(norm(w), true);
  }
  return plan;
}

/** A minimal initramfs whose init only prints KVMOK and powers off: the KVM probe's guest. */
export async function buildProbeInitramfs(): Promise<string> {
  const busybox = BUSYBOX.find((p) => existsSync(p));
  if (!busybox) throw new LabError('static busybox not found', 'apt-get install busybox-static   (or: pnpm lab setup vm)');
  const path = join(cacheDir(), 'initramfs', `kvm-probe-${statSync(busybox).size}.cpio`);
  if (existsSync(path)) return path;
  const c = new Cpio();
  c.dir('bin');
  c.dir('dev');
  c.chardev('dev/console', 5, 1);
  c.file('bin/busybox', await readFile(busybox), 0o755);
  c.file('init', Buffer.from('#!/bin/busybox sh\n/bin/busybox echo KVMOK\n/bin/busybox poweroff -f\n'), 0o755);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(`${path}.tmp${process.pid}`, c.finish());
  await rename(`${path}.tmp${process.pid}`, path);
  return path;
}

// ---- build -----------------------------------------------------------------------------------
export interface Initramfs {
  path: string;
  modules: string[];
  builtin: string[];
  missing: string[];
}

/** Build (or reuse) the initramfs for a kernel; cached by content so editing init.sh rebuilds it. */
export async function buildInitramfs(k: KernelImage): Promise<Initramfs> {
  const busybox = BUSYBOX.find((p) => existsSync(p));
  if (!busybox) throw new LabError('static busybox not found', 'apt-get install busybox-static   (or: pnpm lab setup vm)');
  const init = await readFile(INIT);
  const mstamp = k.modulesDir && existsSync(k.modulesDir) ? statSync(k.modulesDir).mtimeMs : 0;
  const key = createHash('sha256').update(init).update(LAB_MODPROBE).update(k.release).update(k.bzImage).update(String(mstamp)).update(JSON.stringify(BOOT_MODULE_GROUPS)).update(String(statSync(busybox).size)).digest('hex').slice(0, 16);
  const dir = join(cacheDir(), 'initramfs');
  const path = join(dir, `${k.release}-${key}.cpio`);
  const metaPath = `${path}.json`;
  if (existsSync(path) && existsSync(metaPath)) return { path, ...JSON.parse(readFileSync(metaPath, 'utf8')) };

  const plan = await planModules(k.modulesDir, BOOT_MODULE_GROUPS);
  const c = new Cpio();
  for (const d of ['bin', 'dev', 'etc', 'proc', 'sys', 'tmp', 'lower', 'rw', 'newroot', 'lib', 'lib/modules']) c.dir(d);
  c.chardev('dev/console', 5, 1);
  c.file('bin/busybox', await readFile(busybox), 0o755);
  // every applet as a link in the archive: `busybox --install` at boot made ~400 symlinks under TCG
  const applets = (await run(busybox, ['--list'])).stdout.toString().split('\n').filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox');
  for (const a of new Set(['sh', ...applets])) c.symlink(`bin/${a}`, 'busybox');
  c.file('init', init, 0o755);
  c.file('bin/lab-modprobe', Buffer.from(LAB_MODPROBE), 0o755);
  for (const m of plan.modules) c.file(`lib/modules/${m.name}.ko`, m.data);
  // "<name> <group>" per line, in load order (init.sh picks the groups it needs)
  c.file('modules.order', Buffer.from(plan.modules.map((m) => `${m.name} ${m.group ?? 'boot'}`).join('\n') + '\n'));
  await mkdir(dir, { recursive: true });
  await writeFile(`${path}.tmp${process.pid}`, c.finish());
  await rename(`${path}.tmp${process.pid}`, path);
  const meta = { modules: plan.modules.map((m) => m.name), builtin: plan.builtin, missing: plan.missing };
  // whole or absent: a parallel boot that found the image read an empty metadata file mid-write
  await writeFile(`${metaPath}.tmp${process.pid}`, JSON.stringify(meta));
  await rename(`${metaPath}.tmp${process.pid}`, metaPath);
  // older builds for this kernel (init.sh or busybox changed) are dead weight once nobody boots
  // them: a day old, because checkouts on other branches may share this cache and boot theirs.
  // This release's exactly (a release "6.1.0" is a prefix of "6.1.0-50-amd64")
  const mine = new RegExp(`^${k.release.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-[0-9a-f]{16}\\.cpio(?:\\.json)?$`);
  for (const f of readdirSync(dir)) {
    const old = join(dir, f);
    if (mine.test(f) && !f.startsWith(basename(path)) && Date.now() - statSync(old).mtimeMs > 24 * 3600_000) await rm(old, { force: true });
  }
  return { path, ...meta };
}
