// Where a command will write, checked before any work: pure file-system checks, no root needed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkNotARun, checkOutDir, checkOutFile } from './out-dir.ts';

const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-outdir-test-'));
afterAll(() => fs.rmSync(d, { recursive: true, force: true }));
const refusal = (f: () => void) => {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  return undefined;
};

describe('out dirs and files', () => {
  it('a link that leads nowhere (dangling, or a loop) is refused by name, not met after the work', () => {
    fs.symlinkSync(path.join(d, 'nowhere'), path.join(d, 'dangling'));
    fs.symlinkSync(path.join(d, 'loop-b'), path.join(d, 'loop-a'));
    fs.symlinkSync(path.join(d, 'loop-a'), path.join(d, 'loop-b'));
    expect(refusal(() => checkOutDir(path.join(d, 'dangling')))).toBe(`--out ${d}/dangling: ${d}/dangling is a symbolic link that leads nowhere (it points to ${d}/nowhere, which does not exist)`);
    expect(refusal(() => checkOutDir(path.join(d, 'loop-a', 'sub')))).toMatch(/loop-a is a symbolic link that leads nowhere \(a loop of links\)$/);
    // a file is written through a link to one not there yet (the file is made), unless its directory is missing
    expect(refusal(() => checkOutFile(path.join(d, 'dangling'), 'summary', 'x.md'))).toBeUndefined();
    fs.symlinkSync('/no/such/dir/x.md', path.join(d, 'dangling-far'));
    expect(refusal(() => checkOutFile(path.join(d, 'dangling-far'), 'summary', 'x.md'))).toBe('--summary /no/such/dir/x.md: no such directory /no/such/dir');
    expect(refusal(() => checkOutFile(path.join(d, 'loop-a'), 'summary', 'x.md'))).toMatch(/\(a loop of links\)$/);
    // a new directory under an existing one, and a new file in it, are fine
    expect(refusal(() => checkOutDir(path.join(d, 'new', 'deeper')))).toBeUndefined();
    expect(refusal(() => checkOutFile(path.join(d, 'x.md'), 'summary', 'x.md'))).toBeUndefined();
  });

  it('procfs takes no file of ours (root may "write" it, and the write fails with EIO)', () => {
    expect(refusal(() => checkOutFile('/proc/version', 'summary', 'x.md'))).toBe('--summary /proc/version: is on procfs, which holds no files of ours');
    expect(refusal(() => checkOutFile('/proc/new-file', 'summary', 'x.md'))).toBe('--summary /proc/new-file: /proc is on procfs, which holds no files of ours');
    expect(refusal(() => checkOutFile(d, 'summary', 'x.md'))).toMatch(/: is a directory$/);
    // a character device is a stream to write, wherever it lives (/dev/stdout on a terminal is on devpts)
    expect(refusal(() => checkOutFile('/dev/null', 'summary', 'x.md'))).toBeUndefined();
  });

  it('a run\'s directory is not another run\'s', () => {
    const run = path.join(d, 'a-run');
    fs.mkdirSync(run);
    expect(refusal(() => checkNotARun(run))).toBeUndefined();
    fs.writeFileSync(path.join(run, 'running.json'), '{}');
    expect(refusal(() => checkNotARun(run))).toBe(`--out ${run} already holds a run (running.json): a run does not write over another`);
  });
});
