// `pnpm lab tc …` as a user runs it: usage errors exit 2 with one line and the fix, expected
// failures exit 1 with `error: … / fix: …` and no stack trace. Nothing is started (no root needed).
import { describe, expect, it } from 'vitest';
import net from 'node:net';
import { execa } from 'execa';
import { bpfObjects, describeRoot, expectOneError, labCommand, toolMissing, labCli } from '../../lab/testing.ts';
import { createTopology } from '../../lab/netns.ts';
import { collectOutput, untilReady } from '../../common/child.ts';
import { parseUdpNoPorts } from '../../scenarios/tc-shaping/crash.ts';
import { removePinDir } from '../libbpf/index.ts';

const [NODE, ...LAB] = await labCli();

const tc = labCommand('tc');

const oneError = expectOneError;

/** namespaces a and b of `t` joined by a veth (`dev`+a in a, `dev`+b in b), addressed when `addrs` are given */
async function pair(t: ReturnType<typeof createTopology>, dev: string, addrs?: [string, string]): Promise<void> {
  await t.addNs('a');
  await t.addNs('b');
  await t.veth({ ns: 'a', dev: `${dev}a` }, { ns: 'b', dev: `${dev}b` });
  if (addrs) {
    await t.addr('a', `${dev}a`, addrs[0]);
    await t.addr('b', `${dev}b`, addrs[1]);
  }
}

describe('pnpm lab tc: arguments and errors', () => {
  it('--help everywhere (exit 0); a group without a command is a usage error', async () => {
    const h = await tc('--help');
    expect(h.exitCode).toBe(0);
    expect(h.stdout).toMatch(/shape start/);
    expect(h.stdout).toMatch(/filter set/);
    for (const c of [['shape', 'start'], ['shape', 'set'], ['filter', 'list']]) {
      const r = await tc(...c, '--help');
      expect(r.exitCode, c.join(' ')).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: pnpm lab tc ${c.join(' ')}`));
    }
    expect((await tc('shape')).exitCode).toBe(2);
  }, 60_000);

  it('usage mistakes exit 2 with one line and the fix', async () => {
    const cases: [string[], RegExp, RegExp][] = [
      [['shap'], /unknown tc command "shap" \(did you mean shape\?\)/, /--help/],
      [['shape', 'sett'], /did you mean tc shape set\?/, /--help/],
      [['shape', 'set', 'bulk'], /missing <rate>/, /usage/],
      [['shape', 'set', 'bulk', '10mbps'], /<rate> "10mbps"/, /50mbit/],
      [['shape', '--dev', 'x'], /tc shape needs a command before its options \(start, apply, set, list, metrics, stop\)/, /tc shape start --dev/],
      [['shape', 'start', '--dve', 'x'], /unknown option --dve \(did you mean --dev\?\)/, /--help/],
      [['shape', 'start'], /needs --dev/, /--config/],
      [['shape', 'start', '--dev', 'x', '--metrics-port', '0'], /--metrics-port "0": must be ≥ 1/, /e\.g\./],
      // the device before the program is built or anything is touched
      [['shape', 'start', '--dev', 'nosuchdev0'], /--dev "nosuchdev0": no such device \(Device "nosuchdev0" does not exist\.\)/, /ip link lists the devices; one inside a network namespace needs --netns NAME/],
      [['shape', 'start', '--dev', 'lo', '--netns', 'ebpf-lab-no-such-ns'], /--netns "ebpf-lab-no-such-ns": no such network namespace/, /ip netns lists them/],
      // the name is a path: `stop --instance ../../x` once read a state file of its choosing and signalled its pid
      ...(['stop', 'list', 'metrics', 'apply --config x.yaml', 'set bulk 10mbit'] as const).map((c): [string[], RegExp, RegExp] => [['shape', ...c.split(' '), '--instance', '../../tmp/x'], /--instance "\.\.\/\.\.\/tmp\/x": not an instance name/, /a-z 0-9 _ -/]),
      [['filter', 'list', '--instance', 'A'], /--instance "A": not an instance name/, /a-z 0-9 _ -/],
    ];
    for (const [args, msg, fix] of cases) {
      const r = await tc(...args);
      expect(r.exitCode, args.join(' ')).toBe(2);
      oneError(r.stderr, msg, fix);
    }
  }, 90_000);

  it('tc filter set with a config that has no "filters" list is refused before any instance is touched (exit 2)', async () => {
    const fs = await import('node:fs');
    const f = `/tmp/ebpf-lab-tc-cli-nofilters-${process.pid}.json`;
    fs.writeFileSync(f, '{}');
    try {
      const r = await tc('filter', 'set', '--config', f, '--instance', 'clitest-none');
      expect(r.exitCode).toBe(2);
      oneError(r.stderr, /has no "filters" list: refusing to read a missing list as an empty one/, /"filters: \[\]"/);
    } finally {
      fs.rmSync(f, { force: true });
    }
  }, 30_000);

  it('a malformed config is refused before anything is attached (exit 1, every problem named)', async () => {
    const fs = await import('node:fs');
    const f = `/tmp/ebpf-lab-tc-cli-${process.pid}.json`;
    fs.writeFileSync(f, JSON.stringify({ classes: [{ name: 'a', rate: '1 gazillion' }], filters: [{ action: 'allow' }] }));
    try {
      const r = await tc('shape', 'start', '--dev', 'lo', '--config', f, '--instance', 'clitest');
      expect(r.exitCode).toBe(1);
      oneError(r.stderr, /invalid tc config: classes\[0\]\.rate: .*filters\[0\]\.action/, /nothing was changed/);
      expect(fs.existsSync('/run/ebpf-lab/tc/clitest.json')).toBe(false);
      const nope = await tc('shape', 'list', '--instance', 'clitest');
      expect(nope.exitCode).toBe(1);
      oneError(nope.stderr, /no running tc instance "clitest"/, /shape start/);
    } finally {
      fs.rmSync(f, { force: true });
    }
  }, 60_000);
});

describeRoot('pnpm lab tc: a running daemon', () => {
  it('shape start: a taken --metrics-port fails with nothing attached; it stays up and serves metrics; filter list shows IPv6 rules and counts real IPv6 packets; shape stop removes it all', async (ctx) => {
    const noPing = toolMissing('tc', 'ping');
    if (noPing) ctx.skip(noPing);
    const fs = await import('node:fs');
    const t = createTopology('tccli');
    const f = `/tmp/ebpf-lab-tc-cli6-${process.pid}.json`;
    let daemon: ReturnType<typeof execa> | undefined;
    try {
      await pair(t, 'c', ['fd00:18::1/64', 'fd00:18::2/64']);
      await t.neigh('a', 'ca', 'fd00:18::2', await t.mac('b', 'cb'));
      await t.neigh('b', 'cb', 'fd00:18::1', await t.mac('a', 'ca'));
      fs.writeFileSync(f, JSON.stringify({ filters: [{ name: 'ping6', dir: 'both', cidr: 'fd00:18::/64', proto: 'icmpv6', action: 'count' }] }));
      const state = '/run/ebpf-lab/tc/clitest6.json';
      const start = (port: number) => execa(NODE, [...LAB, 'tc', 'shape', 'start', '--dev', 'ca', '--netns', t.ns('a'), '--filter-only', '--instance', 'clitest6', '--config', f, '--metrics-port', String(port)], { reject: false, all: true });
      // a metrics port that is taken: one line with the fix, and nothing attached or written
      const taken = net.createServer();
      await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
      const port = (taken.address() as net.AddressInfo).port;
      const bad = await start(port);
      await new Promise((r) => taken.close(r));
      expect(bad.exitCode).toBe(1);
      expect(String(bad.all)).toMatch(/^error: cannot serve metrics on 127\.0\.0\.1:\d+: EADDRINUSE\n {2}fix: port \d+ is taken: choose another --metrics-port\n?$/);
      expect(fs.existsSync(state)).toBe(false);
      expect(String((await t.exec('a', 'tc', ['qdisc', 'show', 'dev', 'ca'])).stdout)).not.toMatch(/clsact/);
      daemon = start(port);
      await untilReady(daemon, collectOutput([daemon.all]), /^shaping ca/m, 30_000, 'tc shape start');
      expect(fs.existsSync(state)).toBe(true);
      await new Promise((r) => setTimeout(r, 1000)); // still there a second later
      expect(fs.existsSync(state)).toBe(true);
      expect((await t.exec('a', 'ping', ['-6', '-n', '-q', '-c', '3', '-i', '0.05', 'fd00:18::2'], { reject: false })).exitCode).toBe(0);
      const list = await tc('filter', 'list', '--instance', 'clitest6');
      expect(list.exitCode).toBe(0);
      expect(list.stdout).toMatch(/^ping6\s+count\s+both fd00:18::\/64 proto icmpv6\s+packets 6 /m);
      // the daemon's endpoint counts the same packets
      const scraped = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(scraped).toMatch(/^tc_filter_rule_packets_total\{rule="ping6",action="count"\} 6$/m);
      // stop returns when the daemon has removed what it attached
      const stop = await tc('shape', 'stop', '--instance', 'clitest6');
      expect(stop.stdout).toBe(`stopped tc instance "clitest6": pid ${daemon.pid} exited and removed its qdisc, filters and pins`);
      expect(stop.exitCode).toBe(0);
      expect(fs.existsSync(state)).toBe(false);
      expect((await daemon).exitCode).toBe(0);
      expect(String((await t.exec('a', 'tc', ['filter', 'show', 'dev', 'ca', 'egress'])).stdout)).toBe('');
    } finally {
      daemon?.kill('SIGTERM');
      await daemon;
      fs.rmSync(f, { force: true });
      await t.dispose();
    }
  }, 90_000);
});

describeRoot('pnpm lab tc: a class\'s cgroup made again', () => {
  it('the daemon moves the class to the new cgroup under its path within seconds (a restarted service stays shaped)', async (ctx) => {
    const fs = await import('node:fs');
    const { findCgroup2Root } = await import('../../common/cgroup.ts');
    const root = findCgroup2Root();
    if (!root) ctx.skip('no cgroup2 hierarchy mounted');
    const noTools = toolMissing('tc', 'python3', 'nsenter');
    if (noTools) ctx.skip(noTools);
    const t = createTopology('tccg');
    const f = `/tmp/ebpf-lab-tc-cli-cg-${process.pid}.json`;
    const dir = `${root}/ebpf-lab-tc-cli-cg-${process.pid}`;
    let daemon: ReturnType<typeof execa> | undefined;
    try {
      await pair(t, 'g', ['10.58.0.1/24', '10.58.0.2/24']);
      await t.neigh('a', 'ga', '10.58.0.2', await t.mac('b', 'gb'));
      fs.mkdirSync(dir);
      // 8 kbit/s, 100 ms horizon: of 10 back-to-back 1 KB datagrams the first leaves, 9 are dropped
      fs.writeFileSync(f, JSON.stringify({ classes: [{ name: 'svc', rate: '8kbit', horizon: '100ms', match: [{ cgroup: dir }] }] }));
      daemon = execa(NODE, [...LAB, 'tc', 'shape', 'start', '--dev', 'ga', '--netns', t.ns('a'), '--instance', 'clitestcg', '--config', f], { reject: false, all: true });
      const out = collectOutput([daemon.all]);
      if (!(await untilReady(daemon, out, /^shaping ga/m, 30_000, 'tc shape start').then(() => true, () => false))) {
        await daemon;
        const said = String(out());
        if (/this kernel has no fq qdisc/.test(said)) ctx.skip(`EDT classes need the fq qdisc: ${said.trim().split('\n')[0]}`);
        throw new Error(`tc shape start failed: ${said}`);
      }
      const sendFromCgroup = () => execa('sh', ['-c', `echo $$ > ${dir}/cgroup.procs && exec nsenter --net=/run/netns/${t.ns('a')} python3 -c "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(10): s.sendto(b'x'*1000,('10.58.0.2',7000))"`]);
      // the service restarts: its cgroup is removed and made again under the same path (a new id)
      fs.rmdirSync(dir);
      fs.mkdirSync(dir);
      await untilReady(daemon, out, /^class svc: \S+ is a new cgroup \(id \d+ → \d+\): the class follows it$/m, 10_000, 'the cgroup follow');
      await sendFromCgroup();
      const list = await tc('shape', 'list', '--instance', 'clitestcg');
      expect(list.stdout).toMatch(/^svc\s+id\s+1\s+rate 8kbit\s.*packets 1 .*horizon-drops 9 /m);
      const stop = await tc('shape', 'stop', '--instance', 'clitestcg');
      expect(stop.exitCode).toBe(0);
    } finally {
      daemon?.kill('SIGTERM');
      await daemon;
      fs.rmSync(f, { force: true });
      if (fs.existsSync(dir)) fs.rmdirSync(dir);
      await t.dispose();
    }
  }, 90_000);
});

describeRoot('pnpm lab tc: --egress-only', () => {
  it('attaches no ingress program; a rule for received packets is refused at start (nothing attached) and in filter set (rules unchanged); egress rules still count', async (ctx) => {
    const noPing = toolMissing('tc', 'ping');
    if (noPing) ctx.skip(noPing);
    const fs = await import('node:fs');
    const t = createTopology('tceo');
    const f = `/tmp/ebpf-lab-tc-eo-${process.pid}.json`;
    const name = 'clitesteo';
    let daemon: ReturnType<typeof execa> | undefined;
    const show = async (dir: string) => String((await t.exec('a', 'tc', ['filter', 'show', 'dev', 'ea', dir])).stdout);
    const start = () => execa(NODE, [...LAB, 'tc', 'shape', 'start', '--dev', 'ea', '--netns', t.ns('a'), '--filter-only', '--egress-only', '--instance', name, '--config', f], { reject: false, all: true });
    try {
      await pair(t, 'e', ['10.24.0.1/24', '10.24.0.2/24']);
      // "both" includes received packets: refused before anything is attached
      fs.writeFileSync(f, JSON.stringify({ filters: [{ name: 'pings', dir: 'both', cidr: '10.24.0.0/24', proto: 'icmp', action: 'count' }] }));
      const bad = await start();
      expect(bad.exitCode).toBe(1);
      oneError(String(bad.all), /this instance has no ingress filter \(started with --egress-only\): rule pings would never see a received packet$/, /dir: egress, or start the shaper without --egress-only/);
      expect(await show('egress')).toBe('');
      expect(String((await t.exec('a', 'tc', ['qdisc', 'show', 'dev', 'ea'])).stdout)).not.toMatch(/clsact/);
      expect(fs.existsSync(`/run/ebpf-lab/tc/${name}.json`)).toBe(false);

      fs.writeFileSync(f, JSON.stringify({ filters: [{ name: 'pings-out', dir: 'egress', cidr: '10.24.0.0/24', proto: 'icmp', action: 'count' }] }));
      daemon = start();
      await untilReady(daemon, collectOutput([daemon.all]), /^shaping ea .*egress only/m, 30_000, 'tc shape start');
      expect(await show('egress')).toMatch(/tc_shape_egress/);
      expect(await show('ingress')).toBe('');
      expect((await t.exec('a', 'ping', ['-n', '-q', '-c', '3', '-i', '0.05', '10.24.0.2'], { reject: false })).exitCode).toBe(0);
      // another process's change goes through the same gate (the state file says egress only)
      fs.writeFileSync(f, JSON.stringify({ filters: [{ name: 'pings-in', dir: 'ingress', cidr: '10.24.0.0/24', proto: 'icmp', action: 'drop' }] }));
      const set = await tc('filter', 'set', '--config', f, '--instance', name);
      expect(set.exitCode).toBe(1);
      oneError(set.stderr, /rule pings-in would never see a received packet/, /--egress-only/);
      const list = await tc('filter', 'list', '--instance', name);
      expect(list.stdout).toMatch(/^pings-out\s+count\s+egress 10\.24\.0\.0\/24 proto icmp\s+packets 3 /m);
      expect((await tc('shape', 'stop', '--instance', name)).exitCode).toBe(0);
      expect((await daemon).exitCode).toBe(0);
      expect(await show('egress')).toBe('');
    } finally {
      daemon?.kill('SIGTERM');
      await daemon;
      fs.rmSync(f, { force: true });
      await t.dispose();
    }
  }, 90_000);
});

describeRoot('pnpm lab tc: a daemon killed outright (SIGKILL)', () => {
  it('its filters keep enforcing until shape stop removes exactly what it attached; start under its name takes its filters over in place (the drop rule never lapses); state-less leftovers are refused with the commands that remove them; missing lists are refused', async (ctx) => {
    const noTc = toolMissing('tc', 'tc');
    if (noTc) ctx.skip(noTc);
    const fs = await import('node:fs');
    const t = createTopology('tccrash');
    const name = 'clicrash';
    const state = `/run/ebpf-lab/tc/${name}.json`;
    const pins = `/sys/fs/bpf/ebpf-lab/tc-${name}`;
    const f = `/tmp/ebpf-lab-tc-crash-${process.pid}.json`;
    const daemons: ReturnType<typeof execa>[] = [];
    const show = async (dir: string) => String((await t.exec('a', 'tc', ['filter', 'show', 'dev', 'ka', dir])).stdout);
    const qdiscs = async () => String((await t.exec('a', 'tc', ['qdisc', 'show', 'dev', 'ka'])).stdout);
    /** start a filter-only daemon and wait for its "shaping" line; its stderr so far */
    const start = async (config = true): Promise<string> => {
      const d = execa(NODE, [...LAB, 'tc', 'shape', 'start', '--dev', 'ka', '--netns', t.ns('a'), '--filter-only', '--instance', name, ...(config ? ['--config', f] : [])], { reject: false, all: true });
      daemons.push(d);
      const out = collectOutput([d.all]);
      await untilReady(d, out, /^shaping ka/m, 20_000, 'tc shape start');
      return out();
    };
    /** UDP datagrams b's stack took for port 9 (nobody listens: Udp NoPorts) */
    const noPorts = async () => parseUdpNoPorts(String((await t.exec('b', 'cat', ['/proc/net/snmp'])).stdout));
    /** a steady stream of datagrams a → b:9 (~2k/s) for `secs`: how many were sent */
    const flood = (secs: number) => t.exec('a', 'python3', ['-c', 'import socket, sys, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nn, end = 0, time.time() + float(sys.argv[1])\nwhile time.time() < end:\n    s.sendto(b"x", ("10.23.0.2", 9)); n += 1; time.sleep(0.0005)\nprint(n)', String(secs)]);
    const crash = async () => {
      const pid = JSON.parse(fs.readFileSync(state, 'utf8')).pid as number;
      process.kill(pid, 'SIGKILL');
      await daemons.at(-1);
    };
    try {
      await pair(t, 'k', ['10.23.0.1/24', '10.23.0.2/24']);
      fs.writeFileSync(f, JSON.stringify({ filters: [{ name: 'no-telnet', cidr: '10.0.0.0/8', proto: 'tcp', port: 23, action: 'drop' }, { name: 'no-udp9', dir: 'egress', cidr: '10.23.0.2/32', proto: 'udp', port: 9, action: 'drop' }] }));
      // a device without an Ethernet header (tun, wireguard, ipip): the program would match nothing
      // there and pass everything, so the start is refused with nothing attached
      if ((await t.exec('a', 'ip', ['tuntap', 'add', 'dev', 'tn0', 'mode', 'tun'], { reject: false })).exitCode === 0) {
        const l3 = await execa(NODE, [...LAB, 'tc', 'shape', 'start', '--dev', 'tn0', '--netns', t.ns('a'), '--filter-only', '--instance', name, '--config', f], { reject: false });
        expect(l3.exitCode).toBe(1);
        oneError(String(l3.stderr), /tn0 is a none device \(no Ethernet header\): the shaper parses Ethernet frames and would match nothing there/, /shape an Ethernet device/);
        expect(String((await t.exec('a', 'tc', ['qdisc', 'show', 'dev', 'tn0'])).stdout)).not.toMatch(/clsact/);
        expect(fs.existsSync(state)).toBe(false);
      }
      await start();
      // someone else's filter on the same clsact: never ours to remove (u32 without an action
      // classifies only; where cls_u32 is missing, that half is not exercised)
      const foreign = (await t.exec('a', 'tc', ['filter', 'add', 'dev', 'ka', 'ingress', 'pref', '100', 'u32', 'match', 'u32', '0', '0'], { reject: false })).exitCode === 0;
      await crash();
      // dead daemon, filters still attached: fail closed
      expect(await show('egress')).toMatch(/tc_shape_egress/);
      // its counters can still be read (the filters enforce); a change is refused
      const list = await tc('filter', 'list', '--instance', name);
      expect(list.exitCode, list.stderr).toBe(0);
      expect(list.stdout).toMatch(/no-udp9/);
      expect(list.stderr).toMatch(/^note: tc instance "clicrash" is not running \(pid \d+ is gone\), but its filters still enforce .*pnpm lab tc shape stop --instance clicrash removes what it left/m);
      const set = await tc('filter', 'set', '--config', f, '--instance', name);
      expect(set.exitCode).toBe(1);
      oneError(set.stderr, /tc instance "clicrash" is not running/, /pnpm lab tc shape stop --instance clicrash removes what it left/);

      const stop = await tc('shape', 'stop', '--instance', name);
      expect(stop.exitCode).toBe(0);
      expect(stop.stdout).toMatch(/^tc instance "clicrash" had died \(pid \d+\): removed egress filter on ka \(netns tccrash-[^)]+\) \(prog \d+\), ingress filter on ka .*, 10 map pin\(s\) under \/sys\/fs\/bpf\/ebpf-lab\/tc-clicrash/);
      expect(await show('egress')).toBe('');
      expect(await show('ingress')).not.toMatch(/tc_filter_ingre|pref 22 /);
      if (foreign) {
        expect(stop.stdout).toMatch(/left: clsact qdisc on ka .*\(other filters are on it\)/);
        expect(await show('ingress')).toMatch(/pref 100 u32/);
        expect(await qdiscs()).toMatch(/clsact/);
        await t.exec('a', 'tc', ['filter', 'del', 'dev', 'ka', 'ingress', 'pref', '100']);
        await t.exec('a', 'tc', ['qdisc', 'del', 'dev', 'ka', 'clsact']);
      } else expect(stop.stdout).toMatch(/clsact qdisc on ka/);
      expect(await qdiscs()).not.toMatch(/clsact/);
      expect(fs.existsSync(state)).toBe(false);
      expect(fs.existsSync(pins)).toBe(false);
      // its programs are freed (by id: other test files load tc_shape programs of their own meanwhile)
      const ids = [...stop.stdout.matchAll(/\(prog (\d+)\)/g)].map((m) => Number(m[1]));
      expect(ids).toHaveLength(2);
      let left: number[] = ids;
      for (let i = 0; i < 40 && left.length; i++) {
        const progs = new Set((await bpfObjects()).progs.map((p) => p.id));
        left = ids.filter((id) => progs.has(id));
        if (left.length) await new Promise((r) => setTimeout(r, 50)); // freed after an RCU grace period
      }
      expect(left).toEqual([]);
      const again = await tc('shape', 'stop', '--instance', name);
      expect(again.exitCode).toBe(1);
      oneError(again.stderr, /no running tc instance "clicrash"/, /shape start/);

      // start, crash, start again under the same name: the second start takes the first's filters
      // over in place, with the config already in them, so its drop rule never lapses (a removal
      // and a fresh attach let 69–81 of these datagrams through in between, in 3 runs of 3)
      await start();
      const before = await noPorts();
      const stream = flood(3);
      await new Promise((r) => setTimeout(r, 300));
      await crash();
      const oldIds = [...(await show('egress')).matchAll(/ id (\d+) /g)].map((m) => Number(m[1]));
      expect(await start()).toMatch(new RegExp(`^tc instance "clicrash" had died \\(pid \\d+\\): took over its filters in place, never detached \\(egress prog ${oldIds[0]} → \\d+, ingress prog \\d+ → \\d+\\); this config is live in them`, 'm'));
      const sent = Number(String((await stream).stdout).trim());
      expect(sent).toBeGreaterThan(500);
      expect(await noPorts()).toBe(before); // not one datagram through, while dead or while taken over
      expect((await show('egress')).match(/handle 0x16ed/g)).toHaveLength(1); // one filter: the new daemon's
      expect((await show('egress')).match(/ id (\d+) /)?.[1]).not.toBe(String(oldIds[0]));
      expect(JSON.parse(fs.readFileSync(state, 'utf8')).owned.filters.map((x: { was?: number }) => x.was)).toEqual([undefined, undefined]);
      // a restart without --config keeps what the dead instance enforced (its filters were taken
      // over by ones with empty maps: every drop rule ended)
      await crash();
      expect(await start(false)).toMatch(/^no --config: kept what the dead instance "clicrash" enforced \(0 class\(es\), 2 rule\(s\)\)/m);
      const kept = await noPorts();
      await flood(0.3);
      expect(await noPorts()).toBe(kept);
      expect((await tc('filter', 'list', '--instance', name)).stdout).toMatch(/^no-udp9\s+drop/m);
      // the clsact the first daemon created is the taker's to remove
      expect((await tc('shape', 'stop', '--instance', name)).exitCode).toBe(0);
      expect(await show('egress')).toBe('');
      expect(await qdiscs()).not.toMatch(/clsact/);
      await start();

      // a config with no "filters" list does not wipe the live rules; an explicit [] does
      const g = `${f}.empty.json`;
      fs.writeFileSync(g, '{}');
      for (const c of [['filter', 'set'], ['shape', 'apply']]) {
        const r = await tc(...c, '--config', g, '--instance', name);
        expect(r.exitCode, c.join(' ')).toBe(2);
        oneError(r.stderr, /has no "filters" list/, /"filters: \[\]"/);
      }
      expect((await tc('filter', 'list', '--instance', name)).stdout).toMatch(/^no-telnet\s+drop/m);
      fs.writeFileSync(g, '{"filters": []}');
      const cleared = await tc('filter', 'set', '--config', g, '--instance', name);
      fs.rmSync(g);
      expect(cleared.exitCode).toBe(0);
      expect(cleared.stdout).toMatch(/^0 rule\(s\) live/);

      // a crash whose state file is lost (an older version's stop removed it): nothing proves the
      // filters ours, so start refuses and names the commands that remove them — which then work
      await crash();
      fs.rmSync(state);
      const refused = await execa(NODE, [...LAB, 'tc', 'shape', 'start', '--dev', 'ka', '--netns', t.ns('a'), '--filter-only', '--instance', name, '--config', f], { reject: false });
      expect(refused.exitCode).toBe(1);
      oneError(String(refused.stderr), /ka \(netns tccrash-[^)]+\) has egress and ingress filters of a tc shaper that no instance's state file accounts for/, /remove them: nsenter --net=\/run\/netns\/tccrash-\S+ tc filter del dev ka egress protocol all pref 22 handle 0x16ed bpf; nsenter --net=/);
      expect(fs.existsSync(state)).toBe(false);
      for (const cmd of String(refused.stderr).split('remove them: ')[1]!.trim().split('; ')) await execa(cmd.split(' ')[0]!, cmd.split(' ').slice(1));
      await start();
      expect((await tc('shape', 'stop', '--instance', name)).exitCode).toBe(0);
      expect((await daemons.at(-1))!.exitCode).toBe(0);
      expect(fs.existsSync(state)).toBe(false);
      expect(await show('egress')).toBe('');
      // the control: with the shaper gone the same stream reaches b
      const open = await noPorts();
      await flood(0.3);
      expect(await noPorts()).toBeGreaterThan(open + 50);
    } finally {
      for (const d of daemons) {
        d.kill('SIGKILL');
        await d;
      }
      fs.rmSync(f, { force: true });
      await t.dispose(); // the namespace takes any filter and qdisc with it
      fs.rmSync(pins, { recursive: true, force: true });
      removePinDir(pins); // the parent too, if nothing else is pinned there
      fs.rmSync(state, { force: true });
    }
  }, 120_000);
});

// A start killed after it made its pin directory but before its state file left the directory
// (and any maps pinned so far) behind, which shape stop refused to see ("no running instance").
describeRoot('pnpm lab tc: a start cut short', () => {
  it('shape stop removes the pins a start left before its state file, and says so', async () => {
    const fs = await import('node:fs');
    const name = `cut${process.pid}`;
    const pins = `/sys/fs/bpf/ebpf-lab/tc-${name}`;
    try {
      fs.mkdirSync(pins, { recursive: true });
      const r = await tc('shape', 'stop', '--instance', name);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`stopped: tc instance "${name}" had been cut short while starting (no state, nothing attached): removed 0 map pin(s) under ${pins}`);
      expect(r.exitCode).toBe(0);
      expect(fs.existsSync(pins)).toBe(false);
      const again = await tc('shape', 'stop', '--instance', name);
      expect(again.exitCode).toBe(1);
      oneError(again.stderr, new RegExp(`no running tc instance "${name}"`), /shape start/);
    } finally {
      fs.rmSync(pins, { recursive: true, force: true });
      removePinDir('/sys/fs/bpf/ebpf-lab');
    }
  }, 30_000);

  // A live start pins its maps and writes its state under the writers' lock: a stop between the two
  // had removed the live start's pins as a cut-short start's.
  it('shape stop waits for a start that holds the writers\' lock before it judges pins without state', async () => {
    const fs = await import('node:fs');
    const { STATE_DIR, writerLockPath } = await import('./shaper.ts');
    const { tryLock, unlock } = await import('../../common/lockfile.ts');
    const name = `cutl${process.pid}`;
    const pins = `/sys/fs/bpf/ebpf-lab/tc-${name}`;
    const hadStateDir = fs.existsSync(STATE_DIR);
    fs.mkdirSync(STATE_DIR, { recursive: true });
    try {
      expect(tryLock(writerLockPath(name))).toBe(true); // this test is the start, mid-way
      fs.mkdirSync(pins, { recursive: true });
      let returned = false;
      const stop = tc('shape', 'stop', '--instance', name).finally(() => (returned = true));
      await new Promise((r) => setTimeout(r, 2500));
      expect(returned, 'stop returned while the start held the lock').toBe(false);
      expect(fs.existsSync(pins)).toBe(true);
      unlock(writerLockPath(name)); // the start ends without its state: cut short after all
      const r = await stop;
      expect(r.stdout).toMatch(new RegExp(`^stopped: tc instance "${name}" had been cut short while starting`));
      expect(r.exitCode).toBe(0);
      expect(fs.existsSync(pins)).toBe(false);
    } finally {
      unlock(writerLockPath(name));
      fs.rmSync(pins, { recursive: true, force: true });
      removePinDir('/sys/fs/bpf/ebpf-lab');
      if (!hadStateDir) fs.rmSync(STATE_DIR, { recursive: true, force: true });
    }
  }, 30_000);
});

// Writers read the model from the state file, write the idle rule slots and flip the generation:
// two at once wrote into the same idle slots and flipped in turn, so the kernel could enforce a
// mix of both rule lists (or one being rewritten while live) while the state file, and with it
// `filter list`, named the other.
describeRoot('pnpm lab tc: concurrent writers', () => {
  it('filter set and shape apply from several shells at once: the kernel enforces exactly the rules the state names; the daemon\'s removal waits for a writer', async () => {
    const fs = await import('node:fs');
    const { openInstance } = await import('./shaper.ts');
    const { MAX_RULES, netPort } = await import('./config.ts');
    const t = createTopology('tcrace');
    const inst = `race${process.pid}`;
    const files = ['a', 'b', 'c'].map((x) => `/tmp/ebpf-lab-tc-race-${process.pid}-${x}.json`);
    let daemon: ReturnType<typeof execa> | undefined;
    try {
      await pair(t, 'r');
      // three rule lists of different lengths and ports: any mix of two is none of them
      const lists = [[1001, 1002, 1003, 1004, 1005, 1006, 1007], [2001, 2002], [3001, 3002, 3003, 3004]];
      lists.forEach((ports, i) => fs.writeFileSync(files[i]!, JSON.stringify({ filters: ports.map((p) => ({ name: `r${p}`, proto: 'tcp', port: p, action: 'drop' })) })));
      daemon = execa(NODE, [...LAB, 'tc', 'shape', 'start', '--dev', 'ra', '--netns', t.ns('a'), '--filter-only', '--instance', inst], { reject: false, all: true });
      await untilReady(daemon, collectOutput([daemon.all]), /^shaping ra/m, 30_000, 'tc shape start');
      for (let round = 0; round < 3; round++) {
        const rs = await Promise.all(Array.from({ length: 6 }, (_, k) => k % 2
          ? tc('filter', 'set', '--config', files[(k + round) % 3]!, '--instance', inst)
          : tc('shape', 'apply', '--config', files[(k + round) % 3]!, '--instance', inst)));
        for (const r of rs) expect(r.exitCode, r.stderr).toBe(0);
        using c = openInstance(inst);
        const names = c.model.rules.map((r) => r.name);
        const gen = c.maps.filter_gen.get(0) as number;
        expect(gen).toBe(c.model.gen);
        const live: number[] = [];
        for (let i = 0; i < MAX_RULES; i++) {
          const r = c.maps.rules.get(gen * MAX_RULES + i) as { active: number; port: number } | undefined;
          if (!r?.active) break;
          live.push(r.port);
        }
        expect(lists.map((l) => l.map((p) => `r${p}`))).toContainEqual(names);
        expect(live, `round ${round}: the state names ${names.join(',')}`).toEqual(c.model.rules.map((r) => netPort(r.port)));
      }
      // the daemon's removal waits for a writer (held here by the test), or the writer's state
      // came back after it: an instance "not running" with nothing behind it
      const { tryLock, unlock } = await import('../../common/lockfile.ts');
      const { writerLockPath, statePath } = await import('./shaper.ts');
      expect(tryLock(writerLockPath(inst))).toBe(true);
      const stop = tc('shape', 'stop', '--instance', inst);
      await new Promise((r) => setTimeout(r, 1500));
      const stateDuring = fs.existsSync(statePath(inst));
      unlock(writerLockPath(inst));
      expect(stateDuring, 'the daemon removed its instance under a writer').toBe(true);
      const st = await stop;
      expect(st.exitCode, st.stderr).toBe(0);
      expect(st.stdout).toMatch(/exited and removed its qdisc, filters and pins/);
      expect(fs.existsSync(statePath(inst))).toBe(false);
      expect(fs.existsSync(writerLockPath(inst))).toBe(false);
    } finally {
      daemon?.kill('SIGTERM');
      await daemon;
      for (const f of files) fs.rmSync(f, { force: true });
      await t.dispose();
    }
  }, 120_000);
});
