// apt-get against a lock another apt holds (unattended-upgrades on a user's Debian machine, or a
// second lab run on a fresh one): the lab waits instead of failing with "Could not get lock".
// Real apt-get, real lock files; nothing is installed or downloaded (the package asked for is
// installed already, and `clean` only empties apt's download cache).
import { spawn, spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { aptGet } from './setup.ts';
import { describeRoot } from './testing.ts';

const hasApt = spawnSync('apt-get', ['--version']).status === 0 && spawnSync('python3', ['--version']).status === 0;

/** hold apt's fcntl lock on `file` for `ms` (apt locks with fcntl, which flock(1) does not take) */
async function holdLock(file: string, ms: number) {
  const p = spawn('python3', ['-c', `import fcntl,sys,time\nf=open(${JSON.stringify(file)},'w')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('held',flush=True)\ntime.sleep(${ms / 1000})`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => p.stdout.once('data', () => res()));
  return p;
}

describeRoot('apt-get waits for a lock another apt holds', () => {
  it.skipIf(!hasApt)(`install (the dpkg lock): waits, then succeeds${hasApt ? '' : ' (skipped: no apt-get or python3)'}`, async () => {
    const holder = await holdLock('/var/lib/dpkg/lock-frontend', 3000);
    const t0 = Date.now();
    const r = await aptGet(['install', '-y', '-qq', '--no-install-recommends', 'iproute2'], () => {});
    expect(r.exitCode, r.all).toBe(0);
    expect(Date.now() - t0).toBeGreaterThan(2000);
    holder.kill();
  }, 60_000);

  it.skipIf(!hasApt)(`a lock apt does not wait for itself (clean, update): retried until it is free, said once${hasApt ? '' : ' (skipped: no apt-get or python3)'}`, async () => {
    const holder = await holdLock('/var/cache/apt/archives/lock', 3000);
    const said: string[] = [];
    const t0 = Date.now();
    const r = await aptGet(['clean'], (s) => said.push(s));
    expect(r.exitCode, r.all).toBe(0);
    expect(Date.now() - t0).toBeGreaterThan(2000);
    expect(said).toEqual([expect.stringMatching(/^waiting for another apt to finish \(held by process \d+ \(python3\)\) …$/)]);
    holder.kill();
  }, 60_000);
});
