import fs from 'node:fs';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { Topology, createTopology, listNamespaces, listeningPorts, sweepStale, sweepStaleAll } from './netns.ts';
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

  it('runs a batch of ip commands in one namespace in order, and stops at the first bad line naming it', async () => {
    const t = createTopology('nstest');
    try {
      await t.addNs('a');
      await t.batch('a', [Topology.addrCmd('lo', '10.78.0.1/32'), Topology.addrCmd('lo', 'fd78::1/128'), ['route', 'add', 'fd79::/64', 'dev', 'lo']]);
      const addrs = String((await t.exec('a', 'ip', ['-j', 'addr', 'show', 'dev', 'lo'])).stdout);
      expect(addrs).toContain('10.78.0.1');
      expect(addrs).toContain('fd78::1');
      expect(String((await t.exec('a', 'ip', ['-6', 'route', 'show', 'fd79::/64'])).stdout)).toContain('fd79::/64');
      // line 2 fails: line 3 never runs, and the error names the bad value
      const bad = t.batch('a', [Topology.addrCmd('lo', '10.78.0.2/32'), Topology.addrCmd('lo', '10.78.0.300/32'), Topology.addrCmd('lo', '10.78.0.3/32')]);
      await expect(bad).rejects.toThrow(/^ip -batch in namespace nstest-\d+-a: .*"10\.78\.0\.300\/32"/);
      // a kernel refusal (the address is there) is named by its line
      await expect(t.batch('a', [['route', 'add', 'fd7a::/64', 'dev', 'lo'], Topology.addrCmd('lo', '10.78.0.1/32')])).rejects.toThrow(/failed at "ip addr add 10\.78\.0\.1\/32 dev lo": .*already assigned/);
      const after = String((await t.exec('a', 'ip', ['-j', 'addr', 'show', 'dev', 'lo'])).stdout);
      expect(after).toContain('10.78.0.2');
      expect(after).not.toContain('10.78.0.3"');
      await t.sysctls('a', { 'net.ipv4.ip_local_port_range': '20000 30000', 'net.ipv4.tcp_tw_reuse': 1 });
      expect(String((await t.exec('a', 'sysctl', ['-n', 'net.ipv4.ip_local_port_range'])).stdout).trim().split(/\s+/)).toEqual(['20000', '30000']);
    } finally {
      await t.dispose();
    }
  });

  it('creates several namespaces and veth pairs at once, each end renamed and up; a failed create leaves nothing after dispose', async () => {
    const t = createTopology('nstest');
    try {
      await t.create(['x', 'y', 'z'], [[{ ns: 'x', dev: 'eth0' }, { ns: 'y', dev: 'px' }], [{ ns: 'z', dev: 'eth0' }, { ns: 'y', dev: 'pz' }]], { mtu: 1400 });
      const links = async (role: string) => (JSON.parse(String((await t.exec(role, 'ip', ['-j', 'link', 'show'])).stdout)) as { ifname: string; flags: string[]; mtu: number }[]);
      for (const [role, devs] of [['x', ['lo', 'eth0']], ['y', ['lo', 'px', 'pz']], ['z', ['lo', 'eth0']]] as const) {
        const l = await links(role);
        expect(l.map((x) => x.ifname).sort()).toEqual([...devs].sort());
        expect(l.every((x) => x.flags.includes('UP'))).toBe(true);
        expect(l.filter((x) => x.ifname !== 'lo').every((x) => x.mtu === 1400)).toBe(true);
      }
      // a second pair into x named eth0 again: the rename fails inside x, named
      await expect(t.create(['w'], [[{ ns: 'x', dev: 'eth0' }, { ns: 'w', dev: 'px2' }]])).rejects.toThrow(/namespace nstest-\d+-x failed at "ip link set lt\w+ name eth0 up"/);
      expect(t.namespaces).toHaveLength(4);
    } finally {
      await t.dispose();
    }
    expect(await listNamespaces(`nstest-${process.pid}-`)).toEqual([]);
  });

  it('sweeps namespaces left by a dead owner and what runs in them, and only those', async () => {
    const dead = 'nstest-2147483-x';
    const mine = createTopology('nstest');
    let orphan: ReturnType<typeof execa> | undefined;
    try {
      await execa('ip', ['netns', 'add', dead]);
      await mine.addNs('live');
      // left running by the dead owner (detached, as a SIGKILLed run's children are) and by us
      orphan = execa('nsenter', [`--net=/run/netns/${dead}`, 'sleep', '300'], { reject: false, detached: true });
      const ours = mine.spawn('live', 'sleep', ['300']);
      for (let i = 0; i < 50 && !String((await execa('ip', ['netns', 'pids', dead])).stdout).trim(); i++) await new Promise((r) => setTimeout(r, 50));
      const removed = await sweepStale('nstest');
      expect(removed).toEqual([dead]);
      expect(await listNamespaces('nstest-')).toEqual([mine.ns('live')]);
      expect(await Promise.race([orphan.then((r) => r.signal), new Promise((r) => setTimeout(() => r('still running after 5 s'), 5000))])).toBe('SIGKILL');
      expect(ours.exitCode).toBeNull();
    } finally {
      orphan?.kill('SIGKILL');
      await execa('ip', ['netns', 'del', dead], { reject: false });
      await mine.dispose();
    }
  }, 20_000);
});

// Only a scenario's own next run swept its dead namespaces: a SIGKILLed xdp-lb bench's outlived
// the runs of every other scenario. Every prefix a topology used is recorded; any run sweeps them all.
describeRoot('lab/netns sweepStaleAll', () => {
  it('sweeps the dead namespaces of every prefix a topology on this machine has used, and only those', async () => {
    const dead = 'nsall-2147483-x';
    const other = 'nsnever-2147483-x'; // a prefix no topology used: not the lab's to remove
    const mine = createTopology('nsall');
    try {
      await mine.addNs('live');
      await execa('ip', ['netns', 'add', dead]);
      await execa('ip', ['netns', 'add', other]);
      const removed = await sweepStaleAll();
      expect(removed).toContain(dead);
      expect(removed).not.toContain(other);
      expect(await listNamespaces('nsall-')).toEqual([mine.ns('live')]);
      expect(fs.readFileSync('/run/ebpf-lab/netns-prefixes', 'utf8').split('\n')).toContain('nsall');
    } finally {
      await execa('ip', ['netns', 'del', dead], { reject: false });
      await execa('ip', ['netns', 'del', other], { reject: false });
      await mine.dispose();
    }
  }, 20_000);
});

describe('listeningPorts', () => {
  it('takes the local ports of LISTEN rows only, from IPv4 and IPv6 tables', () => {
    const v4 = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 00000000:1451 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0',
      '   1: 0100007F:0016 0100007F:B2C4 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1',
    ].join('\n');
    const v6 = [
      '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 00000000000000000000000000000000:1452 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0',
      '',
    ].join('\n');
    expect(listeningPorts(v4)).toEqual([5201]);
    expect(listeningPorts(v6)).toEqual([5202]);
    expect(listeningPorts('  sl  local_address rem_address   st\n')).toEqual([]);
  });
});

describeRoot('lab/netns waitListening', () => {
  it('returns once a spawned server listens in its namespace, and fails for one that exits first', async () => {
    const t = createTopology('nslisten');
    try {
      await t.addNs('a');
      // a listener on the same port in the caller's namespace must not count
      // (a port the kernel picks: a fixed one another program on the runner holds hung the test)
      const here = execa('/usr/bin/python3', ['-c', 'import socket,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)'], { reject: false });
      const port = await new Promise<number>((r, j) => {
        here.stdout!.once('data', (d: Buffer) => r(Number(String(d).trim())));
        void here.then((x) => j(new Error(`the host listener ended before it bound: ${x.stderr}`))); // reject: false, so its end is a resolve
      });
      const t0 = Date.now();
      try {
        await t.waitListening(t.spawn('a', '/usr/bin/python3', ['-c', `import socket,time; time.sleep(0.3); s=socket.socket(); s.bind(("0.0.0.0",${port})); s.listen(); time.sleep(60)`]), [port], 10_000);
      } finally {
        here.kill('SIGKILL');
      }
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      await expect(t.waitListening(t.spawn('a', 'true'), [5298], 10_000)).rejects.toThrow(/exited before it listened on 5298/);
      await expect(t.waitListening(t.spawn('a', 'sleep', ['30']), [5297], 300)).rejects.toThrow(/did not listen on 5297 within 0.3 s/);
    } finally {
      await t.dispose();
    }
  });
});

// A stopped run's scenario code can still be building when the runner's cleanups dispose its
// topology. Before, a process it spawned while dispose() awaited was never killed (xdp-lb's nginx
// backends outlived a Ctrl-C), and a child's orphaned group members outlived its leader.
describeRoot('lab/netns teardown under a stopped run', () => {
  it('makes nothing once dispose has begun, kills what was spawned before it, and what is left of a leader\'s group', async () => {
    const t = createTopology('nsclose');
    let orphan: number | undefined;
    try {
      await t.addNs('a');
      // a leader that leaves a member of its group behind when it exits (nginx's master and workers)
      // (the member ignores SIGTERM, so only the SIGKILL after the leader's exit ends it)
      const leader = t.spawn('a', 'sh', ['-c', '(trap "" TERM; exec sleep 300) & echo $!; trap "exit 0" TERM; while :; do sleep 0.05; done']);
      orphan = await new Promise<number>((r) => leader.stdout!.once('data', (d: Buffer) => r(Number(String(d).trim()))));
      const closing = t.dispose();
      // while the teardown awaits: what a still-running scenario would do next
      expect(() => t.spawn('a', 'sleep', ['300'])).toThrow(/torn down \(the run is stopping\)/);
      await expect(t.create(['b'])).rejects.toThrow(/torn down/);
      await closing;
      expect(await listNamespaces(`nsclose-${process.pid}-`)).toEqual([]);
      // gone or a zombie (reparented to an init that may not reap)
      const running = () => {
        try {
          return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${orphan}/stat`, 'utf8'));
        } catch {
          return false;
        }
      };
      for (let i = 0; i < 50 && running(); i++) await new Promise((r) => setTimeout(r, 20));
      expect(running()).toBe(false);
    } finally {
      await t.dispose();
      if (orphan) try { process.kill(orphan, 'SIGKILL'); } catch { /* gone */ }
    }
  });
});
