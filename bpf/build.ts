// BPF build pipeline: one .bpf.c per capability → bpf/.output/<name>.bpf.o (CO-RE, BTF kept,
// DWARF stripped), rebuilt only when a source, a shared header or vmlinux.h is newer.
// Then bpf/gen/<name>.ts: TypeScript interfaces generated from each object's BTF for the structs
// the object defines itself (not kernel types), so C stays the one definition of every layout.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { archFacts } from '../common/arch.ts';
import { LabError } from '../common/errors.ts';
import { BPF_DIR, GEN_DIR, OUT_DIR, objectPath } from '../common/paths.ts';
import { writeFileAtomic } from '../common/state-file.ts';

// the paths live in common/paths.ts; re-exported for existing importers
export { BPF_DIR, OUT_DIR, GEN_DIR, objectPath } from '../common/paths.ts';
const VMLINUX_BTF = '/sys/kernel/btf/vmlinux';

export function sources(): string[] {
  return fs
    .readdirSync(BPF_DIR)
    .filter((f) => f.endsWith('.bpf.c'))
    .map((f) => f.slice(0, -'.bpf.c'.length))
    .sort();
}

const mtime = (f: string) => (fs.existsSync(f) ? fs.statSync(f).mtimeMs : 0);

function headers(): string[] {
  const inc = path.join(BPF_DIR, 'include');
  return [
    ...fs.readdirSync(BPF_DIR).filter((f) => f.endsWith('.h')).map((f) => path.join(BPF_DIR, f)),
    ...(fs.existsSync(inc) ? fs.readdirSync(inc).map((f) => path.join(inc, f)) : []),
  ];
}

async function vmlinuxH(log: (s: string) => void): Promise<string> {
  const out = path.join(OUT_DIR, 'vmlinux.h');
  if (fs.existsSync(out)) return out;
  // vmlinux.h is only the compile-time view of kernel types; CO-RE relocates field accesses against
  // the running kernel's BTF at load time, so one object serves 5.10 … 7.x.
  if (!fs.existsSync(VMLINUX_BTF)) {
    throw new LabError(`no ${VMLINUX_BTF} on this build machine`, 'build on a kernel with CONFIG_DEBUG_INFO_BTF=y, or put a vmlinux.h into bpf/.output/');
  }
  log('generating vmlinux.h from kernel BTF');
  // execa is loaded only when something is compiled: daemons that merely check their object stay light
  const { execa } = await import('execa');
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const r = await execa('bpftool', ['btf', 'dump', 'file', VMLINUX_BTF, 'format', 'c'], { reject: false, maxBuffer: 1 << 30 });
  notInstalled(r, 'bpftool');
  if (r.exitCode !== 0) throw new LabError(`bpftool btf dump failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`, 'pnpm lab setup (installs bpftool)');
  // per-process temporary names (writeFileAtomic): two builds at once (two runs on a fresh clone,
  // a matrix's parallel cells) wrote one .tmp together and one renamed it from under the other
  writeFileAtomic(out, r.stdout);
  return out;
}

/** Compile one BPF C file with the lab's flags (also used for test fixtures outside bpf/), plus
 *  `defines` (NAME or NAME=value: tests build variants of a capability's object with them). */
export async function compile(src: string, obj: string, defines: string[] = []): Promise<void> {
  await vmlinuxH(() => {});
  fs.mkdirSync(path.dirname(obj), { recursive: true });
  const tmp = `${obj}.${process.pid}.tmp`; // per process: see vmlinuxH
  const { execa } = await import('execa');
  const cc = await execa(
    'clang',
    ['-O2', '-g', '-target', 'bpf', '-mcpu=v3', `-D__TARGET_ARCH_${archFacts().bpfTargetArch}`, '-Wall', '-Wno-unused-function', '-Werror',
      ...defines.map((d) => `-D${d}`), `-I${OUT_DIR}`, `-I${BPF_DIR}`, `-I${path.join(BPF_DIR, 'include')}`, '-c', src, '-o', tmp],
    { reject: false, all: true },
  );
  if (cc.exitCode !== 0) {
    fs.rmSync(tmp, { force: true });
    notInstalled(cc, 'clang');
    throw new LabError(`compiling ${path.relative(process.cwd(), src)} failed:\n${cc.all}`, 'fix the C error above (pnpm lab setup installs clang and libbpf-dev if they are missing)');
  }
  // keep .BTF/.BTF.ext (CO-RE and our codecs need them), drop DWARF
  const strip = await execa('llvm-strip', ['-g', tmp], { reject: false, all: true });
  if (strip.exitCode !== 0) {
    fs.rmSync(tmp, { force: true });
    notInstalled(strip, 'llvm-strip');
    throw new LabError(`llvm-strip of ${path.basename(obj)} failed: ${strip.all?.trim() || `exit ${strip.exitCode}`}`, 'pnpm lab setup (installs llvm)');
  }
  fs.renameSync(tmp, obj);
}

/** a tool that is not there said as such: clang's "error above" was empty (review, session 57) */
function notInstalled(r: { code?: string; exitCode?: number }, tool: string): void {
  if (r.code === 'ENOENT') throw new LabError(`${tool} is not installed (not found on PATH): the BPF objects cannot be built`, 'pnpm lab setup (as root) installs clang, llvm, bpftool and libbpf-dev');
}

export interface BuildResult {
  built: string[];
  upToDate: string[];
  objects: Record<string, string>;
}

export async function buildBpf(opts: { only?: string[]; force?: boolean; log?: (s: string) => void; gen?: boolean } = {}): Promise<BuildResult> {
  const log = opts.log ?? ((s: string) => console.error(s));
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const vmlinux = await vmlinuxH(log);
  const deps = Math.max(mtime(vmlinux), ...headers().map(mtime), mtime(fileURLToPath(import.meta.url)));
  const names = opts.only ?? sources();
  const res: BuildResult = { built: [], upToDate: [], objects: {} };
  for (const name of names) {
    const src = path.join(BPF_DIR, `${name}.bpf.c`);
    if (!fs.existsSync(src)) throw new LabError(`no BPF source bpf/${name}.bpf.c`, `available: ${sources().join(', ')}`);
    const obj = objectPath(name);
    res.objects[name] = obj;
    if (!opts.force && mtime(obj) > Math.max(mtime(src), deps)) {
      res.upToDate.push(name);
      continue;
    }
    log(`clang  bpf/${name}.bpf.c`);
    await compile(src, obj);
    res.built.push(name);
  }
  if (opts.gen !== false) {
    // only where the object or the generator is newer than the types: rendering opens the
    // object's BTF, ~0.5 s per controller start under TCG for a file that comes out the same
    const generator = mtime(path.join(BPF_DIR, 'gen-types.ts'));
    const stale = names.filter((n) => res.built.includes(n) || mtime(path.join(GEN_DIR, `${n}.ts`)) < Math.max(mtime(res.objects[n]!), generator));
    if (stale.length) {
      const { generateTypes } = await import('./gen-types.ts');
      for (const name of stale) generateTypes(name, res.objects[name]!);
    }
  }
  return res;
}

export async function buildCommand(argv: string[]): Promise<number> {
  const { parseArgs } = await import('../common/args.ts');
  const p = parseArgs(argv, {
    usage: 'pnpm lab build [name…] [--force]',
    summary: `compile bpf/<name>.bpf.c (CO-RE) to bpf/.output and regenerate bpf/gen/<name>.ts from BTF; names: ${sources().join(', ')}`,
    options: { force: { type: 'boolean', description: 'rebuild even when up to date' } },
    positionals: { names: ['name'] },
  });
  if (!p) return 0;
  // names are checked before anything is built; a scenario's name (hello-openat) names its object
  const { suggest, UsageError } = await import('../common/args.ts');
  const have = sources();
  const only = p.positionals.map((given) => {
    // a file's path names its object too (bpf/xdp_lb.bpf.c, xdp_lb.bpf.o)
    const n = path.basename(given).replace(/\.bpf\.[co]$/, '');
    if (have.includes(n)) return n;
    if (have.includes(n.replaceAll('-', '_'))) return n.replaceAll('-', '_');
    const near = suggest(n, have);
    throw new UsageError(`no BPF source bpf/${n}.bpf.c${near ? ` (did you mean "${near}"?)` : ''}`, `names: ${have.join(', ')}`);
  });
  const r = await buildBpf({ force: p.values.force === true, only: only.length ? only : undefined });
  console.log(`built: ${r.built.join(', ') || '-'}; up to date: ${r.upToDate.join(', ') || '-'}`);
  return 0;
}

/** For controllers: the object path, building it first if needed. */
export async function ensureObject(name: string, log?: (s: string) => void): Promise<string> {
  const r = await buildBpf({ only: [name], log: log ?? (() => {}) });
  return r.objects[name]!;
}
