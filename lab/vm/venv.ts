// Python tools the lab installs from PyPI into venvs of its own, outside any home directory (so
// every user can run them): virtme-ng (vng.ts) and vmlinux-to-elf (symbols.ts). One way for both:
// an install counts once pip has finished (a stamp file naming what was installed), so a venv cut
// short (a budget, a kill, PyPI gone mid-way) or broken (its Python removed) is made again instead
// of being taken for installed; and two processes installing at once do not both build it: the
// second waits on the first's lock file (a dead holder's lock is taken over). A venv made before the
// stamps existed is adopted where its program proves it runs.
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LabError } from '../../common/errors.ts';
import { processAlive, procStart } from '../../common/host.ts';
import { run } from './exec.ts';

export interface VenvTool {
  prefix: string;
  /** pip's requirement specifiers, in the stamp's name: another set makes the venv again */
  packages: string[];
  /** extra pip install arguments (e.g. --no-deps) */
  pipArgs?: string[];
  /** the program the caller wants, relative to the venv's bin/ */
  bin: string;
  /** arguments that make the program prove it runs (e.g. --version): a venv made before stamps
   *  existed is adopted when they succeed, not deleted (offline, nothing could replace it) */
  probe?: string[];
}

export const venvBinary = (t: VenvTool) => join(t.prefix, 'bin', t.bin);
const stampOf = (t: VenvTool) => join(t.prefix, `.installed-${t.packages.join('-').replace(/[^A-Za-z0-9_.=-]/g, '_')}`);

/** installed, by this lab, with these packages (no process started: for status lines) */
export function venvInstalled(t: VenvTool): boolean {
  return existsSync(stampOf(t)) && existsSync(venvBinary(t));
}

/** false only for what the venv itself says (its Python or the probe missing or failing); an abort
 *  or a spawn error throws, so that it never leads to removing a venv that works */
async function runs(file: string, args: string[], signal?: AbortSignal): Promise<boolean> {
  if (!existsSync(file)) return false;
  const r = await run(file, args, { reject: false, signal });
  if (signal?.aborted) throw new Error('aborted');
  return r.exitCode === 0;
}
const works = async (t: VenvTool, signal?: AbortSignal) => venvInstalled(t) && (await runs(join(t.prefix, 'bin', 'python'), ['-c', ''], signal));
/** an unstamped venv whose program runs (installed before stamps, or by hand with these packages) */
const adoptable = async (t: VenvTool, signal?: AbortSignal) => !!t.probe && !existsSync(stampOf(t)) && (await runs(join(t.prefix, 'bin', 'python'), ['-c', ''], signal)) && (await runs(venvBinary(t), t.probe, signal));

const LOCK_WAIT_MS = 15 * 60_000;

/** the install lock: pid and start time written whole (link of a complete file), a dead holder's taken over */
async function lock(path: string, signal: AbortSignal | undefined, log?: (s: string) => void): Promise<void> {
  const me = `${process.pid} ${procStart(process.pid) ?? ''}`;
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, me);
  const until = Date.now() + LOCK_WAIT_MS;
  let said = false;
  try {
    for (;;) {
      try {
        linkSync(tmp, path);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      let holder = '';
      try {
        holder = readFileSync(path, 'utf8');
      } catch { /* removed meanwhile: try again */ continue; }
      const [pid, start] = holder.split(' ');
      if (!processAlive(Number(pid), start || undefined)) {
        rmSync(path, { force: true });
        continue;
      }
      if (Date.now() > until) throw new LabError(`another install into ${dirname(path)} (pid ${pid}) has held ${path} for ${LOCK_WAIT_MS / 60_000} min`, `wait for it, or stop pid ${pid} and run the command again`);
      if (!said) (log?.(`waiting for pid ${pid}, which is installing into the same venv`), (said = true));
      await new Promise<void>((ok, fail) => {
        const onAbort = () => (clearTimeout(tm), fail(new Error('aborted')));
        const tm = setTimeout(() => (signal?.removeEventListener('abort', onAbort), ok()), 250);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** The tool's program, installing the venv first if it is missing, cut short or broken. */
export async function ensureVenv(t: VenvTool, opts: { signal?: AbortSignal; log?: (s: string) => void } = {}): Promise<string> {
  const { signal } = opts;
  if (await works(t, signal)) return venvBinary(t);
  const lockPath = `${t.prefix}.lock`;
  mkdirSync(dirname(t.prefix), { recursive: true });
  await lock(lockPath, signal, opts.log);
  try {
    if (await works(t, signal)) return venvBinary(t); // the other installer finished meanwhile
    if (await adoptable(t, signal)) {
      writeFileSync(stampOf(t), '');
      return venvBinary(t);
    }
    if (signal?.aborted) throw new Error('aborted');
    opts.log?.(`creating a venv at ${t.prefix} and installing ${t.packages.join(' ')} from PyPI`);
    rmSync(t.prefix, { recursive: true, force: true });
    // Debian's Python where there is one: a venv's python is a link to the one that made it, and
    // PATH's may live in root's home (pyenv), which no other user can enter (review, session 57)
    const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    const venv = await run(python, ['-m', 'venv', t.prefix], { reject: false, signal });
    if (venv.exitCode !== 0) throw new LabError(`${python} -m venv ${t.prefix} failed: ${venv.stderr.trim().split('\n').pop()}`, 'apt-get install python3-venv');
    const pip = await run(join(t.prefix, 'bin', 'pip'), ['install', '-q', ...(t.pipArgs ?? []), ...t.packages], { reject: false, signal });
    if (pip.exitCode !== 0) throw new LabError(`pip install ${t.packages.join(' ')} failed: ${pip.stderr.trim().split('\n').pop()}`, 'check that PyPI is reachable');
    if (!existsSync(venvBinary(t))) throw new LabError(`pip installed ${t.packages.join(' ')} but there is no ${venvBinary(t)}`, 'report this: the package no longer ships that program');
    writeFileSync(stampOf(t), '');
    return venvBinary(t);
  } finally {
    rmSync(lockPath, { force: true });
  }
}
