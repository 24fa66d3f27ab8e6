// The sweep of dead runs' crash-test svc instances (root): a socket-lb run SIGKILLed during its
// crash check left its instance pinned — 8 cgroup links balancing a cgroup that no longer exists,
// and a state file — and no later run removed it.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { cgroup2Root, createCgroup, removeCgroup } from '../../common/cgroup.ts';
import { SvcController, pinDir, statePath } from '../../controller/svc/controller.ts';
import { describeRoot } from '../../lab/testing.ts';
import { sweepStaleCrashInstances } from './crash.ts';

describeRoot('socket-lb: sweepStaleCrashInstances', () => {
  it("removes a dead run's instance (state and pins) and one cut short while starting (pins only); keeps a live run's", async () => {
    const dead = spawnSync('true').pid!;
    const cut = spawnSync('true').pid!;
    const names = { dead: `slb-crash-${dead}`, cut: `slb-crash-${cut}`, live: `slb-crash-${process.pid}` };
    const cg = path.join(cgroup2Root(), `ebpf-lab-slbsweep-${process.pid}`);
    createCgroup(cg);
    try {
      for (const [i, [k, instance]] of Object.entries(names).entries()) {
        const c = await SvcController.start({ cgroup: cg, instance, services: [{ vip: `tcp://10.97.99.${i + 1}:80`, backends: ['10.97.98.1:8080'] }] }, { pin: true });
        c.close(); // as a killed run leaves it: pinned, attached
        if (k === 'cut') fs.rmSync(statePath(instance)); // killed before its state file
      }
      const r = await sweepStaleCrashInstances();
      expect(r.kept.filter((k) => k.startsWith('slb-crash-'))).toEqual([]);
      expect(r.removed.sort()).toEqual([names.dead, names.cut].sort());
      for (const n of [names.dead, names.cut]) expect(fs.existsSync(statePath(n)) || fs.existsSync(pinDir(n)), n).toBe(false);
      expect(fs.existsSync(statePath(names.live))).toBe(true);
      // only the live run's programs are still attached to the cgroup
      const attached = spawnSync('bpftool', ['cgroup', 'show', cg], { encoding: 'utf8' }).stdout.split('\n').filter((l) => /svc_/.test(l)).length;
      expect(attached).toBe(fs.readdirSync(path.join(pinDir(names.live), 'links')).length);
    } finally {
      for (const n of Object.values(names)) {
        const c = fs.existsSync(statePath(n)) ? SvcController.open(n) : null;
        c?.close();
      }
      const { stopInstance } = await import('../../controller/svc/controller.ts');
      for (const n of Object.values(names)) if (fs.existsSync(statePath(n))) await stopInstance(n);
      removeCgroup(cg);
    }
  }, 60_000);
});
