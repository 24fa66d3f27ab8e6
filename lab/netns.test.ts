import fs from 'node:fs';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { createTopology, listNamespaces, sweepStale } from './netns.ts';
import { withNetns } from '../controller/libbpf/index.ts';
import { describeRoot } from './testing.ts';

describeRoot('lab/netns', () => {
  it('builds namespaces and a veth pair, runs commands inside, tears everything down', async () => {
    const t = createTopology('nstest');
    try {
      await t.addNs('a');
      await t.addNs('b');
      await t.veth({ ns: 'a', dev: 'va' }, { ns: 'b', dev: 'vb' });
      await t.addr('a', 'va', '10.77.0.1/24');
      await t.addr('b', 'vb', '10.77.0.2/24');
      await t.neigh('a', 'va', '10.77.0.2', await t.mac('b', 'vb'));
      // nothing listens on port 9: a quick "refused" (a RST came back) proves the path both ways
      const probe = await t.exec('a', 'bash', ['-c', 'exec 3<>/dev/tcp/10.77.0.2/9'], { reject: false, timeout: 5000 });
      expect(String(probe.stderr)).toMatch(/refused/);
      // the device exists only inside its namespace
      expect(fs.existsSync('/sys/class/net/va')).toBe(false);
      const idx = await t.ifindex('a', 'va');
      const seen = withNetns(t.ns('a'), () => fs.readFileSync('/proc/thread-self/net/dev', 'utf8').includes('va:'));
      expect(seen).toBe(true);
      expect(idx).toBeGreaterThan(1);
      expect(() => withNetns(t.ns('a'), () => Promise.resolve(1))).toThrow(/synchronous/);
      // a spawned process dies with the topology
      const child = t.spawn('b', 'sleep', ['300']);
      await new Promise((r) => setTimeout(r, 100));
      expect(child.pid).toBeGreaterThan(0);
      await t.dispose();
      await child;
      expect(child.exitCode !== 0 || child.signalCode !== null).toBe(true);
      expect(await listNamespaces(`nstest-${process.pid}-`)).toEqual([]);
    } finally {
      await t.dispose();
    }
  });

  it('sweeps namespaces left by a dead owner, and only those', async () => {
    const dead = 'nstest-2147483-x';
    const mine = createTopology('nstest');
    try {
      await execa('ip', ['netns', 'add', dead]);
      await mine.addNs('live');
      const removed = await sweepStale('nstest');
      expect(removed).toEqual([dead]);
      expect(await listNamespaces('nstest-')).toEqual([mine.ns('live')]);
    } finally {
      await execa('ip', ['netns', 'del', dead], { reject: false });
      await mine.dispose();
    }
  });
});
