// `pnpm lab build <name>` as a user meets it: a scenario's name builds its object, a wrong name is
// refused before anything is compiled (exit 2, one line, the names to choose from).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { labCli } from '../lab/testing.ts';

const [NODE, ...LAB] = await labCli();
const ROOT = path.join(import.meta.dirname, '..');

it('an unknown object name is a usage error naming the nearest one and every name', async () => {
  const r = await execa(NODE, [...LAB, 'build', 'hello_openat', 'xdp-lbb'], { reject: false, cwd: ROOT, env: { EBPF_LAB_DEBUG: '' } });
  expect(r.exitCode).toBe(2);
  expect(String(r.stderr)).toMatch(/^error: no BPF source bpf\/xdp-lbb\.bpf\.c \(did you mean "xdp_lb"\?\)\n\s+fix: names: .*hello_openat.*xdp_lb/);
  // checked before the first name was compiled
  expect(String(r.stderr)).not.toMatch(/clang/);
  expect(String(r.stdout)).toBe('');
}, 30_000);

it('a source or object path names its object', async () => {
  const r = await execa(NODE, [...LAB, 'build', 'bpf/probe.bpf.c', 'xdp_bench.bpf.o'], { reject: false, cwd: ROOT, env: { EBPF_LAB_DEBUG: '' } });
  expect([r.exitCode, String(r.stderr)]).toEqual([0, expect.not.stringMatching(/error/)]);
  expect(String(r.stdout)).toMatch(/probe/);
}, 60_000);

// Without kernel BTF on the build machine (the build's fix: a vmlinux.h in bpf/.output), kernel
// structs such as trace_entry went into bpf/gen/*.ts and changed committed files
it.skipIf(process.getuid?.() !== 0)('types generated without the kernel\'s BTF are the same [needs root: a mount namespace]', async () => {
  const gen = () => Object.fromEntries(['hello_openat', 'xdp_lb'].map((n) => [n, fs.readFileSync(path.join(ROOT, 'bpf', 'gen', `${n}.ts`), 'utf8')]));
  const before = gen();
  // propagation unchanged, then /sys private in the new namespace: unshare's default makes / private,
  // which fails in a chroot whose / is no mount point (the fresh-check's)
  const r = await execa('unshare', ['-m', '--propagation', 'unchanged', 'sh', '-c', `mount --make-rprivate /sys && mount --bind /dev/null /sys/kernel/btf/vmlinux && ${NODE} ${LAB.join(' ')} build --force hello_openat xdp_lb`], { reject: false, cwd: ROOT, env: { EBPF_LAB_DEBUG: '' } });
  expect(r.exitCode, String(r.stderr)).toBe(0);
  expect(gen()).toEqual(before);
}, 120_000);

// the missing tool named, not "fix the C error above" over an empty error (review, session 57)
it('a missing clang is named with the fix', async () => {
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-noclang-'));
  try {
    for (const t of ['bpftool', 'llvm-strip']) {
      const w = await execa('sh', ['-c', `command -v ${t}`], { reject: false });
      if (w.exitCode === 0) fs.symlinkSync(String(w.stdout).trim(), path.join(bin, t));
    }
    const r = await execa(NODE, [...LAB, 'build', '--force', 'probe'], { reject: false, cwd: ROOT, env: { EBPF_LAB_DEBUG: '', PATH: bin } });
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/^error: clang is not installed \(not found on PATH\): the BPF objects cannot be built\n {2}fix: pnpm lab setup/m);
  } finally {
    fs.rmSync(bin, { recursive: true, force: true });
  }
}, 60_000);

// Two runs on a fresh clone, or a matrix's parallel cells, build at once. They shared one .tmp
// per object: one renamed it from under the other (llvm-strip: No such file, an internal error)
// or both clangs wrote into it.
it('builds running at once all succeed, and the object is whole', async () => {
  const runs = await Promise.all(Array.from({ length: 4 }, () => execa(NODE, [...LAB, 'build', '--force', 'xdp_bench', 'probe'], { reject: false, cwd: ROOT, env: { EBPF_LAB_DEBUG: '' } })));
  for (const r of runs) expect([r.exitCode, String(r.stderr).split('\n').filter((l) => !l.startsWith('clang ')).join('\n')]).toEqual([0, '']);
  for (const name of ['xdp_bench', 'probe']) {
    const o = await execa('bpftool', ['btf', 'dump', 'file', path.join(ROOT, 'bpf', '.output', `${name}.bpf.o`)], { reject: false });
    expect(o.exitCode, String(o.stderr)).toBe(0);
  }
}, 120_000);
