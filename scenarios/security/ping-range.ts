// The ICMP ("ping") socket attack needs what systemd machines have by default and this lab's hosts
// and guests do not: net.ipv4.ping_group_range open to every group. Runs that need it hold it open
// together; the last one out puts back the value from before the first one in. A run killed
// outright leaves its holder file, and the next run's take or give sweeps it, so the machine's
// setting is restored once no live run holds it (not before another security run, though).
import fs from 'node:fs';
import path from 'node:path';
import { withLockWaitSync } from '../../common/lockfile.ts';
import { processAlive, procStart } from '../../common/host.ts';
import { LabError } from '../../common/errors.ts';

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

/** Open ping sockets to every group for this process's run; returns the release. */
export function holdPingRangeOpen(files: PingRangeFiles = SYSTEM): () => void {
  const { sysctl, dir } = files;
  const original = path.join(dir, 'ping-range.original');
  const mine = path.join(dir, `ping-range.${process.pid}`);
  const underLock = <T>(fn: () => T): T => {
    fs.mkdirSync(dir, { recursive: true });
    return withLockWaitSync(path.join(dir, 'ping-range.lock'), fn, (pid) => new LabError(`another run (pid ${pid}) holds ${dir}/ping-range.lock`, 'wait for it and run again'));
  };
  // with no live holder left (a killed run's file is removed here), the value from before goes back
  const restoreIfUnheld = () => {
    let live = 0;
    for (const f of fs.readdirSync(dir)) {
      const m = HOLDER.exec(f);
      if (!m) continue;
      const start = fs.readFileSync(path.join(dir, f), 'utf8').trim();
      if (processAlive(Number(m[1]), start || undefined)) live++;
      else fs.rmSync(path.join(dir, f), { force: true });
    }
    if (live || !fs.existsSync(original)) return;
    fs.writeFileSync(sysctl, fs.readFileSync(original, 'utf8'));
    fs.rmSync(original);
  };
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    const n = heldHere.get(dir)! - 1;
    heldHere.set(dir, n);
    if (n > 0) return;
    underLock(() => {
      fs.rmSync(mine, { force: true });
      restoreIfUnheld();
    });
  };
  const n = heldHere.get(dir) ?? 0;
  heldHere.set(dir, n + 1);
  if (n > 0) return release;
  underLock(() => {
    restoreIfUnheld();
    if (!fs.existsSync(original)) fs.writeFileSync(original, norm(fs.readFileSync(sysctl, 'utf8')));
    fs.writeFileSync(mine, `${procStart(process.pid) ?? ''}\n`);
    fs.writeFileSync(sysctl, OPEN);
  });
  return release;
}
