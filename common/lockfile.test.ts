// Lock files (no root): real processes hold and contend for them.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { procStart } from './host.ts';
import { lockHolderAlive, readLockHolder, tryLock, unlock, withLockWaitSync } from './lockfile.ts';

const exited = async () => {
  const p = spawn('true');
  await new Promise((r) => p.once('exit', r));
  return p.pid!;
};

describe('lock files', () => {
  let dir = '';
  let lock = '';
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-lock-'));
    lock = path.join(dir, 'x.lock');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  // the security daemon tries the writers' lock once a second on the thread of its event pump: a
  // 0 ms budget slept 100 ms when the first try fell in the deadline's own millisecond
  it('withLockWaitSync with a 0 ms budget tries once: a held lock throws at once, a free one runs fn', () => {
    expect(tryLock(lock)).toBe(true); // held by this (live) process
    const busy = new Error('busy');
    // it never sleeps (its sleep is Atomics.wait): asked directly, not timed, which a preempted runner failed
    const wait = vi.spyOn(Atomics, 'wait');
    try {
      for (let i = 0; i < 5; i++) expect(() => withLockWaitSync(lock, () => 1, () => busy, 0)).toThrow(busy);
      expect(wait).not.toHaveBeenCalled();
    } finally {
      wait.mockRestore();
    }
    unlock(lock);
    expect(withLockWaitSync(lock, () => 7, () => busy, 0)).toBe(7);
    expect(fs.existsSync(lock)).toBe(false);
  });

  it('names its holder by pid and start time; a live holder keeps it; unlock never removes another holder\'s lock', async () => {
    expect(tryLock(lock)).toBe(true);
    expect(readLockHolder(lock)).toEqual({ pid: process.pid, startTime: procStart(process.pid) });
    expect(tryLock(lock)).toBe(process.pid); // not re-entrant: the holder is alive
    unlock(lock);
    expect(fs.existsSync(lock)).toBe(false);
    const other = spawn('sleep', ['30']);
    try {
      await new Promise((r) => other.once('spawn', r));
      fs.writeFileSync(lock, `${other.pid} ${procStart(other.pid!)}\n`);
      expect(tryLock(lock)).toBe(other.pid);
      expect(lockHolderAlive(lock)).toBe(other.pid);
      unlock(lock);
      expect(readLockHolder(lock)?.pid).toBe(other.pid);
      // an older file with the pid alone is judged by the pid
      fs.writeFileSync(lock, `${other.pid}\n`);
      expect(tryLock(lock)).toBe(other.pid);
    } finally {
      other.kill('SIGKILL');
    }
    // dead now (and reaped): its lock is stale
    await new Promise((r) => other.once('exit', r));
    expect(lockHolderAlive(lock)).toBeNull();
    expect(tryLock(lock)).toBe(true);
  });

  it('a stale lock is taken: holder gone, pid reused by a process started at another time, no pid at all', async () => {
    for (const content of [`${await exited()}\n`, `${process.pid} 1\n`, '', 'garbage\n']) {
      fs.writeFileSync(lock, content);
      expect(lockHolderAlive(lock)).toBeNull();
      expect(tryLock(lock)).toBe(true);
      expect(readLockHolder(lock)?.pid).toBe(process.pid);
      unlock(lock);
    }
  });

  it('mutual exclusion between processes, starting from a stale lock they all find at once', async () => {
    const counter = path.join(dir, 'n');
    fs.writeFileSync(counter, '0');
    fs.writeFileSync(lock, `${await exited()}\n`);
    const rounds = 40;
    // each contender increments the counter under the lock, with a pause between read and write
    // that loses updates at once if two ever hold it together
    const script = `
      const { tryLock, unlock } = await import(${JSON.stringify(new URL('./lockfile.ts', import.meta.url).pathname)});
      const fs = await import('node:fs');
      const nap = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      for (let i = 0; i < ${rounds}; i++) {
        while (tryLock(${JSON.stringify(lock)}) !== true) nap(1);
        const n = Number(fs.readFileSync(${JSON.stringify(counter)}, 'utf8'));
        nap(1);
        fs.writeFileSync(${JSON.stringify(counter)}, String(n + 1));
        unlock(${JSON.stringify(lock)});
      }`;
    const contenders = Array.from({ length: 4 }, () => execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { reject: false, cwd: new URL('..', import.meta.url).pathname }));
    const rs = await Promise.all(contenders);
    for (const r of rs) expect(r.stderr).toBe('');
    expect(Number(fs.readFileSync(counter, 'utf8'))).toBe(4 * rounds);
    expect(fs.existsSync(lock)).toBe(false);
    expect(fs.readdirSync(dir).sort()).toEqual(['n']); // no temp or set-aside files left
  }, 60_000);
});
