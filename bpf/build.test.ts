// `pnpm lab build <name>` as a user meets it: a scenario's name builds its object, a wrong name is
// refused before anything is compiled (exit 2, one line, the names to choose from).
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
