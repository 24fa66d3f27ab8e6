// Python tools the lab installs from PyPI into venvs of its own, outside any home directory (so
// every user can run them): virtme-ng (vng.ts) and vmlinux-to-elf (symbols.ts). One way for both:
// an install counts once pip has finished (a stamp file naming what was installed), so a venv cut
// short (a budget, a kill, PyPI gone mid-way) or broken (its Python removed) is made again instead
// of being taken for installed; and two processes installing at once do not both build it: the
// second waits on the first's lock file (a dead holder's lock is taken over).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LabError } from '../../common/errors.ts';
import { processAlive } from '../../common/host.ts';
import { run } from './exec.ts';

export interface VenvTool {
  prefix: string;
  /** pip's requirement specifiers, in the stamp's name: another set makes the venv again */
  packages: string[];
  /** extra pip install arguments (e.g. --no-deps) */
  pipArgs?: string[];
  /** the program the caller wants, relative to the venv's bin/ */
  bin: string;
}

export const venvBinary = (t: VenvTool) => join(t.prefix, 'bin', t.bin);
const stampOf = (t: VenvTool) => join(t.prefix, `.installed-${t.packages.join('-').replace(/[^A-Za-z0-9_.=-]/g, '_')}`);

/** installed, by this lab, with these packages (no process started: for status lines) */
export function venvInstalled(t: VenvTool): boolean {
  return existsSync(stampOf(t)) && existsSync(venvBinary(t));
}

async function works(t: VenvTool, signal?: AbortSignal): Promise<boolean> {
  if (!venvInstalled(t)) return false;
  const py = await run(join(t.prefix, 'bin', 'python'), ['-c', ''], { reject: false, signal }).catch(() => ({ exitCode: 1 }));
  return py.exitCode === 0;
}

/** The tool's program, installing the venv first if it is missing, cut short or broken. */
export async function ensureVenv(t: VenvTool, opts: { signal?: AbortSignal; log?: (s: string) => void } = {}): Promise<string> {
  const { signal } = opts;
  if (await works(t, signal)) return venvBinary(t);
  const lock = `${t.prefix}.lock`;
  mkdirSync(dirname(t.prefix), { recursive: true });
  for (;;) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder = 0;
      try {
        holder = Number(readFileSync(lock, 'utf8'));
      } catch { /* removed meanwhile */ }
      if (!processAlive(holder)) rmSync(lock, { force: true });
      else await new Promise((ok, fail) => { const tm = setTimeout(ok, 250); signal?.addEventListener('abort', () => (clearTimeout(tm), fail(new Error('aborted'))), { once: true }); });
      if (signal?.aborted) throw new Error('aborted');
    }
  }
  try {
    if (await works(t, signal)) return venvBinary(t); // the other installer finished meanwhile
    opts.log?.(`creating a venv at ${t.prefix} and installing ${t.packages.join(' ')} from PyPI`);
    rmSync(t.prefix, { recursive: true, force: true });
    const venv = await run('python3', ['-m', 'venv', t.prefix], { reject: false, signal });
    if (venv.exitCode !== 0) throw new LabError(`python3 -m venv ${t.prefix} failed: ${venv.stderr.trim().split('\n').pop()}`, 'apt-get install python3-venv');
    const pip = await run(join(t.prefix, 'bin', 'pip'), ['install', '-q', ...(t.pipArgs ?? []), ...t.packages], { reject: false, signal });
    if (pip.exitCode !== 0) throw new LabError(`pip install ${t.packages.join(' ')} failed: ${pip.stderr.trim().split('\n').pop()}`, 'check that PyPI is reachable');
    if (!existsSync(venvBinary(t))) throw new LabError(`pip installed ${t.packages.join(' ')} but there is no ${venvBinary(t)}`, 'report this: the package no longer ships that program');
    writeFileSync(stampOf(t), '');
    return venvBinary(t);
  } finally {
    rmSync(lock, { force: true });
  }
}
