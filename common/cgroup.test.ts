// The sweep of cgroups dead lab runs left (root: real cgroup2 directories and processes, killed).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeRoot } from '../lab/testing.ts';
import { cgroupOf, createCgroup, findCgroup2Root, removeCgroup, sweepStaleCgroups } from './cgroup.ts';

describeRoot('sweepStaleCgroups', () => {
  it('removes ebpf-lab-<what>-<pid>… of dead pids (its processes killed: the dead run\'s orphans), keeps a live pid\'s and anything not named so', async () => {
    const root = findCgroup2Root()!;
    const dead = spawnSync('true').pid!;
    const stale = path.join(root, `ebpf-lab-cgtest-${dead}-x`);
    const live = path.join(root, `ebpf-lab-cgtest-${process.pid}`);
    const other = path.join(root, `ebpf-lab-cgtest-nopid`);
    let sleeper: ReturnType<typeof spawn> | undefined;
    try {
      // the cgroups first: a sleeper started before them could not join and exited (a flake)
      for (const d of [path.join(stale, 'client'), live, other]) createCgroup(d);
      sleeper = spawn('sh', ['-c', 'echo $$ > "$0" && exec sleep 30', path.join(stale, 'client', 'cgroup.procs')], { stdio: 'ignore' });
      for (let i = 0; i < 100 && !fs.readFileSync(path.join(stale, 'client', 'cgroup.procs'), 'utf8').trim(); i++) await new Promise((r) => setTimeout(r, 20));
      expect(cgroupOf(sleeper.pid!)).toBe(`/ebpf-lab-cgtest-${dead}-x/client`);
      const removed = sweepStaleCgroups(root);
      expect(removed).toContain(`ebpf-lab-cgtest-${dead}-x`);
      expect(removed.filter((n) => n.startsWith('ebpf-lab-cgtest-'))).toEqual([`ebpf-lab-cgtest-${dead}-x`]);
      expect(fs.existsSync(stale)).toBe(false);
      expect(fs.existsSync(live) && fs.existsSync(other)).toBe(true);
      const sig = sleeper.exitCode !== null || sleeper.signalCode !== null ? sleeper.signalCode : await new Promise((r) => sleeper!.once('exit', (_c, s) => r(s)));
      expect(sig).toBe('SIGKILL');
    } finally {
      sleeper?.kill('SIGKILL');
      for (const d of [stale, live, other]) removeCgroup(d, root);
    }
  });
});
