// The reapers against the real kernel: a Node parent is SIGKILLed (no teardown of its own runs)
// and what it started must die with it. No root needed.
import { spawn, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { dyingWithUs, groupDyingWithUs, SETPRIV } from './reaper.ts';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    // a zombie is dead for our purpose (its reaper may not have waited yet)
    return !/^Z/.test(spawnSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).stdout.trim());
  } catch { return false; }
};

/**
 * A Node parent spawns argv detached (as the VM backends do), prints the pids of what it started
 * (the command prints its own and its child's), then the test SIGKILLs the parent. Resolves with
 * those pids.
 */
async function orphan(argv: [string, string[]]): Promise<number[]> {
  const parentSrc = `const { spawn } = require('node:child_process');
    const [c, a] = JSON.parse(process.argv[1]);
    const p = spawn(c, a, { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    p.stdout.on('data', (d) => process.stdout.write(d));
    setInterval(() => {}, 1000);`;
  const parent = spawn(process.execPath, ['-e', parentSrc, JSON.stringify(argv)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`no pids printed: ${out}`)), 20_000);
    parent.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (/^\d+ \d+\n/.test(out)) { clearTimeout(t); res(); }
    });
  });
  parent.kill('SIGKILL');
  await new Promise((res) => parent.on('close', res));
  return out.trim().split(' ').map(Number);
}

const waitGone = async (pids: number[]) => {
  for (let i = 0; i < 100 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
  return pids.filter(alive);
};

// sh that starts a grandchild (sleep) in the same group, as vng starts QEMU, and prints both pids
const TREE = ['-c', 'sleep 300 & echo "$$ $!"; wait'];

describe.skipIf(!SETPRIV)(`processes die with the lab process${SETPRIV ? '' : ' (skipped: setpriv not installed)'}`, () => {
  it('the group reaper kills the command and its descendants when its parent is SIGKILLed', async () => {
    const pids = await orphan(groupDyingWithUs('/bin/sh', TREE));
    expect(await waitGone(pids), 'left running after the parent died').toEqual([]);
  });

  it('the group reaper passes the command\'s exit status through', () => {
    const [c, a] = groupDyingWithUs('/bin/sh', ['-c', 'exit 7']);
    expect(spawnSync(c, a).status).toBe(7);
  });

  // the control: why vng needed more than pdeathsig on its own process
  it('pdeathsig alone kills the child, not a grandchild', async () => {
    const [shPid, sleepPid] = await orphan(dyingWithUs('/bin/sh', TREE));
    try {
      expect(await waitGone([shPid!])).toEqual([]);
      expect(alive(sleepPid!)).toBe(true);
    } finally {
      try { process.kill(sleepPid!, 'SIGKILL'); } catch { /* gone */ }
    }
  });
});
