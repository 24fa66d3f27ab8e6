// The lab's venvs (virtme-ng, vmlinux-to-elf) against real PyPI and a real python3 -m venv: an
// install counts only once pip finished, a venv cut short is made again, two installers at once
// build it once, a failed install leaves no stamp and no lock.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureVenv, venvBinary, venvInstalled, type VenvTool } from './venv.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-venv-'));
// a small package with a console script, from the registry the lab installs its tools from
const PKG = 'wheel==0.45.1';
// through a venv's own pip, as the lab installs (Debian's python3 has no pip module of its own)
const pypi = (() => {
  const probe = path.join(tmp, 'probe');
  try {
    execFileSync('python3', ['-m', 'venv', probe], { stdio: 'pipe', timeout: 60_000 });
  } catch (e) {
    return `no venv: ${String((e as { stderr?: Buffer }).stderr ?? e).trim().split('\n').pop()}`;
  }
  try {
    execFileSync(path.join(probe, 'bin', 'pip'), ['download', '-q', '--no-deps', '-d', path.join(tmp, 'dl'), PKG], { stdio: 'pipe', timeout: 60_000 });
    return '';
  } catch (e) {
    return `PyPI not reachable: ${String((e as { stderr?: Buffer }).stderr ?? e).trim().split('\n').pop()}`;
  }
})();

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!!pypi)(`the lab's venvs${pypi ? ` (skipped: ${pypi})` : ''}`, () => {
  const tool = (name: string, packages = [PKG]): VenvTool => ({ prefix: path.join(tmp, name), packages, bin: 'wheel' });

  it('installs once; a venv cut short (no stamp) is made again, not taken for installed', async () => {
    const t = tool('a');
    const logs: string[] = [];
    const bin = await ensureVenv(t, { log: (s) => logs.push(s) });
    expect(bin).toBe(venvBinary(t));
    expect(execFileSync(bin, ['version'], { encoding: 'utf8' })).toMatch(/0\.45\.1/);
    expect(venvInstalled(t)).toBe(true);
    expect(await ensureVenv(t, { log: (s) => logs.push(s) })).toBe(bin);
    expect(logs).toHaveLength(1);
    // pip killed part-way: the program may be there, the stamp is not
    for (const f of fs.readdirSync(t.prefix)) if (f.startsWith('.installed-')) fs.rmSync(path.join(t.prefix, f));
    fs.writeFileSync(path.join(t.prefix, 'half-made'), '');
    expect(venvInstalled(t)).toBe(false);
    await ensureVenv(t, { log: (s) => logs.push(s) });
    expect(logs).toHaveLength(2);
    expect(fs.existsSync(path.join(t.prefix, 'half-made'))).toBe(false);
    expect(venvInstalled(t)).toBe(true);
    // its Python gone (a distribution upgrade): made again
    fs.rmSync(path.join(t.prefix, 'bin', 'python'));
    await ensureVenv(t, { log: (s) => logs.push(s) });
    expect(logs).toHaveLength(3);
    // made before stamps existed, its program runs: adopted (stamped), not deleted
    for (const f of fs.readdirSync(t.prefix)) if (f.startsWith('.installed-')) fs.rmSync(path.join(t.prefix, f));
    fs.writeFileSync(path.join(t.prefix, 'kept'), '');
    expect(await ensureVenv({ ...t, probe: ['version'] }, { log: (s) => logs.push(s) })).toBe(bin);
    expect(logs).toHaveLength(3);
    expect(fs.existsSync(path.join(t.prefix, 'kept'))).toBe(true);
    expect(venvInstalled(t)).toBe(true);
  });

  it('two installers at once build it once; a failed install leaves no stamp and no lock', async () => {
    const t = tool('b');
    const logs: string[] = [];
    const [x, y] = await Promise.all([ensureVenv(t, { log: (s) => logs.push(s) }), ensureVenv(t, { log: (s) => logs.push(s) })]);
    expect(x).toBe(y);
    expect(logs.filter((l) => l.startsWith('creating'))).toHaveLength(1);
    expect(logs.filter((l) => !l.startsWith('creating'))).toEqual([`waiting for pid ${process.pid}, which is installing into the same venv`]);
    const bad = tool('c', ['ebpf-lab-no-such-package-on-pypi==0.0.1']);
    await expect(ensureVenv(bad)).rejects.toThrow(/pip install ebpf-lab-no-such-package-on-pypi==0\.0\.1 failed/);
    expect(venvInstalled(bad)).toBe(false);
    expect(fs.existsSync(`${bad.prefix}.lock`)).toBe(false);
  });
});
