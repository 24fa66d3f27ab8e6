// The guest's initramfs: static busybox, the few modules needed to reach the host's root
// (virtio, virtio_console, 9p or virtiofs, overlay) plus virtio_net, and /init (init.sh). It is
// an uncompressed newc cpio: under TCG decompressing it would cost more than reading it.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LabError } from '../common/errors.ts';
import { run } from './exec.ts';
import type { KernelImage } from './kernels.ts';
import { cacheDir } from './paths.ts';

const INIT = join(dirname(fileURLToPath(import.meta.url)), 'init.sh');
const BUSYBOX = ['/usr/bin/busybox', '/bin/busybox'];

/** Loaded by /init before the control channel is up, in dependency order. */
export const BOOT_MODULES = ['virtio_pci', 'virtio_mmio', 'virtio_console', '9pnet_virtio', '9p', 'virtiofs', 'overlay', 'virtio_net'];

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
  modules: { name: string; data: Buffer }[];
  builtin: string[];
  missing: string[];
}

export async function planModules(modulesDir: string | undefined, wanted: string[]): Promise<ModulePlan> {
  const plan: ModulePlan = { modules: [], builtin: [], missing: [] };
  if (!modulesDir || !existsSync(modulesDir)) {
    plan.missing = wanted;
    return plan;
  }
  const builtinFile = join(modulesDir, 'modules.builtin');
  const builtin = new Set(existsSync(builtinFile) ? readFileSync(builtinFile, 'utf8').split('\n').map((l) => norm(basename(l).replace(/\.ko$/, ''))) : []);
  const files = new Map<string, string>();
  walk(join(modulesDir, 'kernel'), files);
  const done = new Set<string>();
  const visit = async (name: string, top: boolean) => {
    if (done.has(name)) return;
    done.add(name);
    if (builtin.has(name)) { if (top) plan.builtin.push(name); return; }
    const f = files.get(name);
    if (!f) { plan.missing.push(name); return; }
    const data = await moduleBytes(f);
    for (const d of modinfoDepends(data)) await visit(d, false);
    plan.modules.push({ name, data });
  };
  for (const w of wanted) await visit(norm(w), true);
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
  const key = createHash('sha256').update(init).update(k.release).update(k.bzImage).update(String(mstamp)).update(BOOT_MODULES.join()).update(String(statSync(busybox).size)).digest('hex').slice(0, 16);
  const dir = join(cacheDir(), 'initramfs');
  const path = join(dir, `${k.release}-${key}.cpio`);
  const metaPath = `${path}.json`;
  if (existsSync(path) && existsSync(metaPath)) return { path, ...JSON.parse(readFileSync(metaPath, 'utf8')) };

  const plan = await planModules(k.modulesDir, BOOT_MODULES);
  const c = new Cpio();
  for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp', 'lower', 'rw', 'newroot', 'lib', 'lib/modules']) c.dir(d);
  c.chardev('dev/console', 5, 1);
  c.file('bin/busybox', await readFile(busybox), 0o755);
  c.symlink('bin/sh', 'busybox');
  c.file('init', init, 0o755);
  for (const m of plan.modules) c.file(`lib/modules/${m.name}.ko`, m.data);
  c.file('modules.order', Buffer.from(plan.modules.map((m) => m.name).join('\n') + '\n'));
  await mkdir(dir, { recursive: true });
  await writeFile(`${path}.tmp${process.pid}`, c.finish());
  await rename(`${path}.tmp${process.pid}`, path);
  const meta = { modules: plan.modules.map((m) => m.name), builtin: plan.builtin, missing: plan.missing };
  await writeFile(metaPath, JSON.stringify(meta));
  // older builds for this kernel (init.sh or busybox changed) are dead weight
  for (const f of readdirSync(dir)) {
    if (f.startsWith(`${k.release}-`) && !f.startsWith(basename(path))) await rm(join(dir, f), { force: true });
  }
  return { path, ...meta };
}
