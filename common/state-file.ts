// Files that one process writes while others read them (a daemon's record, an instance's model,
// a build's output, a report): written whole or not at all, through a temporary name of this
// process's own. A plain write truncates first, so a reader in between got a half file: `tc
// filter list` beside a `tc filter set` failed with "Unexpected end of JSON input" and a fix that
// said to delete the running instance's state.
import fs from 'node:fs';
import path from 'node:path';
import { ownerAlive } from './host.ts';

/** write data to file through a temporary file in the same directory and a rename */
export function writeFileAtomic(file: string, data: string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, data, { mode });
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  removeDeadWritersTemp(file);
}

/**
 * A writer killed between its write and its rename (SIGKILL, the OOM killer) leaves its temporary
 * file behind: the next write of the same file removes those of writers no longer alive (a pid now
 * held by a process started after the file was made is a reused one: common/host.ts ownerAlive).
 */
function removeDeadWritersTemp(file: string): void {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}.`;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(prefix) || !n.endsWith('.tmp')) continue;
    const pid = Number(n.slice(prefix.length, -'.tmp'.length));
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || ownerAlive(pid, path.join(dir, n))) continue;
    fs.rmSync(path.join(dir, n), { force: true });
  }
}

/**
 * The instances with a file `<prefix><name><suffix>` in dir, for an error about one that is not
 * there: a mistyped --instance then reads "(instances here: a, b)" instead of a bare "none".
 */
export function instancesIn(dir: string, prefix: string, suffix: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((f) => f.startsWith(prefix) && f.endsWith(suffix) && f.length > prefix.length + suffix.length).map((f) => f.slice(prefix.length, f.length - suffix.length)).sort();
}

/** "instances here: a, b", or "no instance has state here" */
export function instancesNote(names: readonly string[]): string {
  return names.length ? `instances here: ${names.join(', ')}` : 'no instance has state here';
}
