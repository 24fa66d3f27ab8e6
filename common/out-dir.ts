// Where a command will write, checked before it does any work: a typo in --out costs nothing
// (a run would otherwise end with a failed write, after all its work; QEMU would refuse a
// missing share with its own message; compare would print its table and then fail).
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from './args.ts';

// statfs magic numbers of file systems that hold no reports (Node's mkdirSync even loops on /proc)
const NOT_FOR_FILES: Record<number, string> = { 0x9fa0: 'procfs', 0x62656572: 'sysfs', 0xcafe4a11: 'bpffs', 0x63677270: 'cgroup2', 0x27e0eb: 'cgroup', 0x64626720: 'debugfs', 0x74726163: 'tracefs', 0x1cd1: 'devpts' };

/** the kind of file system at `p` where it holds no files of ours (procfs, sysfs …: "writable" to root, and a write fails with EIO after the work) */
const fsKind = (p: string): string | undefined => NOT_FOR_FILES[Number(fs.statfsSync(p).type)];

/** Linux's limits (NAME_MAX, PATH_MAX), in bytes: a run once failed only after it had started, with ENAMETOOLONG as an internal error */
function tooLong(abs: string, opt: string, fix: string): void {
  const name = abs.split('/').find((c) => Buffer.byteLength(c) > 255);
  if (name) throw new UsageError(`${opt.length > 80 ? `${opt.slice(0, 60)}…` : opt}: a path component is ${Buffer.byteLength(name)} bytes long (at most 255)`, fix);
  // a run's files go a few levels below it (reports/<run-id>/…)
  if (Buffer.byteLength(abs) > 3800) throw new UsageError(`${opt.slice(0, 60)}…: the path is ${Buffer.byteLength(abs)} bytes long (at most 4095, with room for the files under it)`, fix);
}

/**
 * `--<option> DIR` must be a directory the command can write into (created later unless
 * mustExist: a VM share must exist before QEMU starts).
 */
export function checkOutDir(out: string, o: { option?: string; mustExist?: boolean; example?: string } = {}): void {
  const opt = `--${o.option ?? 'out'} ${out.length > 80 ? `${out.slice(0, 60)}…` : out}`;
  const fix = `give a directory on a normal file system that you can write, e.g. ${o.example ?? '--out /tmp/lab-run'}`;
  const abs = path.resolve(out);
  tooLong(abs, opt, fix);
  let at = abs;
  while (!fs.existsSync(at)) {
    // a name that is there but leads nowhere: a dangling link (mkdir would fail, or a write replace
    // it) or a loop (ELOOP, an internal error after the work)
    if (isLink(at)) throw new UsageError(`${opt}: ${at} is a symbolic link that leads nowhere (${linkTrouble(at)})`, fix);
    at = path.dirname(at);
  }
  if (!fs.statSync(at).isDirectory()) throw new UsageError(`${opt}: ${at} is not a directory`, fix);
  if (o.mustExist && at !== abs) throw new UsageError(`${opt}: no such directory`, `create it first (mkdir -p ${out}), or give an existing directory`);
  const kind = fsKind(at);
  if (kind) throw new UsageError(`${opt}: ${at} is on ${kind}, which holds no report files`, fix);
  try {
    fs.accessSync(at, fs.constants.W_OK);
  } catch {
    throw new UsageError(`${opt}: ${at} is not writable`, fix);
  }
}

/** `--<option> FILE` that is appended to: its directory must exist (appendFile creates no parents). */
export function checkOutFile(file: string, option: string, example: string): void {
  const fix = `give a file in an existing directory that you can write, e.g. --${option} ${example}`;
  const abs = path.resolve(file);
  tooLong(abs, `--${option} ${file.length > 80 ? `${file.slice(0, 60)}…` : file}`, fix);
  // a link to a file not there yet is written through (the file is made); a loop is not
  if (!fs.existsSync(abs) && isLink(abs)) {
    const trouble = linkTrouble(abs);
    if (trouble === 'a loop of links') throw new UsageError(`--${option} ${file}: a symbolic link that leads nowhere (${trouble})`, fix);
    return checkOutFile(path.resolve(path.dirname(abs), fs.readlinkSync(abs)), option, example);
  }
  if (fs.existsSync(abs)) {
    if (fs.statSync(abs).isDirectory()) throw new UsageError(`--${option} ${file}: is a directory`, fix);
    // (a character device is written as a stream: /dev/stdout, /dev/fd/1 on a terminal)
    const kind = fs.statSync(abs).isCharacterDevice() ? undefined : fsKind(abs);
    if (kind) throw new UsageError(`--${option} ${file}: is on ${kind}, which holds no files of ours`, fix);
    try {
      fs.accessSync(abs, fs.constants.W_OK);
    } catch {
      throw new UsageError(`--${option} ${file}: not writable`, fix);
    }
    return;
  }
  const dir = path.dirname(abs);
  if (!fs.existsSync(dir)) throw new UsageError(`--${option} ${file}: no such directory ${dir}`, fix);
  if (!fs.statSync(dir).isDirectory()) throw new UsageError(`--${option} ${file}: ${dir} is not a directory`, fix);
  const kind = fsKind(dir);
  if (kind) throw new UsageError(`--${option} ${file}: ${dir} is on ${kind}, which holds no files of ours`, fix);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new UsageError(`--${option} ${file}: ${dir} is not writable`, fix);
  }
}

/**
 * A run's --out must not hold another run: its results.json, report and files would be written
 * over, or mixed with this one's (a sweep found `run xdp-lb --out reports/<another run>` accepted).
 * What counts as a run: its results.json, its running.json (one still going, or killed), its report.
 */
export function checkNotARun(out: string, option = 'out'): void {
  const abs = path.resolve(out);
  const shown = out.length > 80 ? `${out.slice(0, 60)}…` : out;
  const held = ['results.json', 'running.json', 'report.html'].find((f) => fs.existsSync(path.join(abs, f)));
  if (held) throw new UsageError(`--${option} ${shown} already holds a run (${held}): a run does not write over another`, 'give a new directory (or remove that run\'s first)');
  // A run's directory is its own: results.json and report.html went into the reports root (which
  // publish then took for a run), /, or the checkout (review, session 56)
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(abs);
  } catch {
    /* not there yet (made by the run), or not a directory (checkOutDir says so) */
  }
  if (entries.length) throw new UsageError(`--${option} ${shown} is a directory with other things in it (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''}): a run writes into a directory of its own`, `give a new or empty directory, e.g. --${option} ${path.join(path.basename(abs) === 'reports' ? out : 'reports', 'my-run')}`);
}

function isLink(p: string): boolean {
  try {
    return fs.lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

/** why a link does not resolve: a loop, or the missing target it names */
function linkTrouble(p: string): string {
  try {
    fs.statSync(p);
    return 'it resolves';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ELOOP' ? 'a loop of links' : `it points to ${fs.readlinkSync(p)}, which does not exist`;
  }
}

/**
 * A check's message without its "--option VALUE: " lead, for an option's own `check` (whose
 * error adds that lead again). By the exact text: a value with a space in it was cut at the space.
 */
export function withoutOption(message: string, option: string, value: string): string {
  for (const shown of [value, `${value.slice(0, 60)}…`]) {
    const lead = `--${option} ${shown}: `;
    if (message.startsWith(lead)) return message.slice(lead.length);
  }
  return message;
}
