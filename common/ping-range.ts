// The ICMP ("ping") socket attack needs what systemd machines have by default and this lab's hosts
// and guests do not: net.ipv4.ping_group_range open to every group. Runs that need it hold it open
// together; the last one out puts back the value from before the first one in. A run killed
// outright leaves its holder file; the next run of any scenario sweeps it (sweepPingRange, from
// lab/run.ts), as does the next take or give, so the machine's setting is restored once no live
// run holds it.
import fs from 'node:fs';
import path from 'node:path';
import { withLockWaitSync } from './lockfile.ts';
import { processAlive, procStart } from './host.ts';
import { LabError } from './errors.ts';

export const OPEN = '0\t2147483647';
const HOLDER = /^ping-range\.(\d+)$/;
const norm = (v: string) => v.trim().split(/\s+/).join('\t');

export interface PingRangeFiles {
  sysctl: string;
  /** where the holders, the original value and the lock live */
  dir: string;
}
const SYSTEM: PingRangeFiles = { sysctl: '/proc/sys/net/ipv4/ping_group_range', dir: '/run/ebpf-lab' };

/** holds of this process per dir (its holder file is one) */
const heldHere = new Map<string, number>();

function underLock<T>(dir: string, fn: () => T): T {
  fs.mkdirSync(dir, { recursive: true });
  return withLockWaitSync(path.join(dir, 'ping-range.lock'), fn, (pid) => new LabError(`another run (pid ${pid}) holds ${dir}/ping-range.lock`, 'wait for it and run again'));
}

/** With no live holder left (a killed run's file is removed here), the value from before goes back; true if it did. Under the lock. */
function restoreIfUnheld({ sysctl, dir }: PingRangeFiles): boolean {
  const original = path.join(dir, 'ping-range.original');
  let live = 0;
  for (const f of fs.readdirSync(dir)) {
    const m = HOLDER.exec(f);
    if (!m) continue;
    const start = fs.readFileSync(path.join(dir, f), 'utf8').trim();
    if (processAlive(Number(m[1]), start || undefined)) live++;
    else fs.rmSync(path.join(dir, f), { force: true });
  }
  if (live || !fs.existsSync(original)) return false;
  fs.writeFileSync(sysctl, fs.readFileSync(original, 'utf8'));
  fs.rmSync(original);
  return true;
}

/**
 * What a killed run left open: the value from before it, put back if no live run holds the range.
 * Costs one stat when nothing was left. Returns the value restored, if one was.
 */
export function sweepPingRange(files: PingRangeFiles = SYSTEM): string | undefined {
  const original = path.join(files.dir, 'ping-range.original');
  if (!fs.existsSync(original)) return undefined;
  return underLock(files.dir, () => {
    const was = fs.existsSync(original) ? norm(fs.readFileSync(original, 'utf8')) : undefined;
    return restoreIfUnheld(files) ? was : undefined;
  });
}

/** Open ping sockets to every group for this process's run; returns the release. */
export function holdPingRangeOpen(files: PingRangeFiles = SYSTEM): () => void {
  const { sysctl, dir } = files;
  const original = path.join(dir, 'ping-range.original');
  const mine = path.join(dir, `ping-range.${process.pid}`);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    const n = heldHere.get(dir)! - 1;
    heldHere.set(dir, n);
    if (n > 0) return;
    underLock(dir, () => {
      fs.rmSync(mine, { force: true });
      restoreIfUnheld(files);
    });
  };
  const n = heldHere.get(dir) ?? 0;
  heldHere.set(dir, n + 1);
  if (n > 0) return release;
  underLock(dir, () => {
    restoreIfUnheld(files);
    if (!fs.existsSync(original)) fs.writeFileSync(original, norm(fs.readFileSync(sysctl, 'utf8')));
    fs.writeFileSync(mine, `${procStart(process.pid) ?? ''}\n`);
    fs.writeFileSync(sysctl, OPEN);
  });
  return release;
}
