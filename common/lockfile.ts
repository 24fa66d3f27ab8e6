// Lock files of the lab's commands (svc instance locks, the policy writers' lock, the Jaeger build):
// a file created exclusively that names its holder by pid and start time.
// - The start time, because a holder killed outright leaves its file behind and by then its pid may
//   name another process (pids are reused quickly in containers): judged by the pid alone, such a
//   lock would never go stale and every later command would wait on a stranger.
// - link(2) of a file already written, because with open(O_EXCL) and a write after it a contender
//   can read the lock between the two, find no pid, and take it for a stale one.
// - A stale lock is renamed away, then checked again, because two contenders that both found it
//   stale must not both delete it: the second would delete the lock the first has just taken.
import fs from 'node:fs';
import { processAlive, procStart } from './host.ts';

export interface LockHolder {
  pid: number;
  /** absent in files written before start times were recorded: then judged by the pid alone */
  startTime?: string;
}

/** The holder a lock file names; null when there is no file, pid 0 when it names none. */
export function readLockHolder(lockPath: string): LockHolder | null {
  let text: string;
  try {
    text = fs.readFileSync(lockPath, 'utf8');
  } catch {
    return null;
  }
  const [p, st] = text.trim().split(/\s+/);
  const pid = Number(p);
  return { pid: Number.isInteger(pid) && pid > 0 ? pid : 0, ...(st ? { startTime: st } : {}) };
}

/** the pid of the live process holding the lock (this process included), or null */
export function lockHolderAlive(lockPath: string): number | null {
  const h = readLockHolder(lockPath);
  return h && processAlive(h.pid, h.startTime) ? h.pid : null;
}

/**
 * Take the lock: true, or the pid of the live process holding it. A lock whose holder is gone (or
 * a zombie, or whose pid now names a process started at another time) is removed and taken.
 */
export function tryLock(lockPath: string): true | number {
  const mine = `${process.pid} ${procStart(process.pid) ?? ''}\n`;
  for (let attempt = 0; ; attempt++) {
    const tmp = `${lockPath}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, mine, { mode: 0o644 });
    try {
      fs.linkSync(tmp, lockPath);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    const h = readLockHolder(lockPath);
    if (h === null) continue; // released meanwhile
    if (processAlive(h.pid, h.startTime)) return h.pid;
    // stale: move it aside; if what was moved is no longer the stale one (another contender
    // removed the stale lock and took it in between), put it back where it was
    const aside = `${lockPath}.${process.pid}.stale`;
    try {
      fs.renameSync(lockPath, aside);
    } catch {
      continue;
    }
    const moved = readLockHolder(aside);
    if (moved && (moved.pid !== h.pid || moved.startTime !== h.startTime) && processAlive(moved.pid, moved.startTime)) {
      try {
        fs.linkSync(aside, lockPath);
      } catch {
        /* yet another contender holds it now: the retry below finds it */
      }
    }
    fs.rmSync(aside, { force: true });
    if (attempt > 100) throw new Error(`cannot take lock ${lockPath}: it keeps changing hands`);
  }
}

/** Release the lock if this process holds it (never another process's, whatever happened meanwhile). */
export function unlock(lockPath: string): void {
  if (readLockHolder(lockPath)?.pid === process.pid) fs.rmSync(lockPath, { force: true });
}

/**
 * Run fn holding the lock, waiting for another holder up to timeoutMs: the CLI's writers of one
 * instance (read the model, write the maps, write the model back) one at a time. busy names the
 * holder in the error when the wait runs out.
 */
export async function withLockWait<T>(
  lockPath: string,
  fn: () => T | Promise<T>,
  busy: (pid: number) => Error,
  timeoutMs = 10_000,
  opts: { pollMs?: number; signal?: AbortSignal; onWait?: (pid: number) => void } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let waited = false; ; waited = true) {
    const holder = tryLock(lockPath);
    if (holder === true) break;
    if (Date.now() > deadline) throw busy(holder);
    opts.signal?.throwIfAborted();
    if (!waited) opts.onWait?.(holder);
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 20));
  }
  try {
    return await fn();
  } finally {
    unlock(lockPath);
  }
}

/** withLockWait for synchronous writers (the policy store): the thread sleeps between tries; timeoutMs ≤ 0 tries once */
export function withLockWaitSync<T>(lockPath: string, fn: () => T, busy: (pid: number) => Error, timeoutMs = 10_000): T {
  for (const deadline = Date.now() + timeoutMs; ; ) {
    const holder = tryLock(lockPath);
    if (holder === true) break;
    // `>` alone let a 0 ms budget sleep 100 ms when the first try fell in the deadline's millisecond
    if (timeoutMs <= 0 || Date.now() > deadline) throw busy(holder);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
  try {
    return fn();
  } finally {
    unlock(lockPath);
  }
}

/**
 * A daemon's removal of its instance at exit: under the writers' lock, so that no change that had
 * opened the instance writes its state back afterwards; but a lock not freed within timeoutMs does
 * not hold the stop up (fn then runs without it). An error of fn itself is not retried.
 */
export async function removeUnderLock(lockPath: string, fn: () => void, timeoutMs = 15_000): Promise<void> {
  const TIMEOUT = new Error('lock not freed');
  try {
    await withLockWait(lockPath, fn, () => TIMEOUT, timeoutMs);
  } catch (e) {
    if (e !== TIMEOUT) throw e;
    fn();
  }
}
