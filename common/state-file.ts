// Files that one process writes while others read them (a daemon's record, an instance's model,
// a build's output, a report): written whole or not at all, through a temporary name of this
// process's own. A plain write truncates first, so a reader in between got a half file: `tc
// filter list` beside a `tc filter set` failed with "Unexpected end of JSON input" and a fix that
// said to delete the running instance's state.
import fs from 'node:fs';

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
}
