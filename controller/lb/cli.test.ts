// `pnpm lab lb …` as a user runs it: usage errors exit 2 with one line and the fix, expected
// failures exit 1 with `error: … / fix: …` and no stack trace (no daemon, no root); malformed
// addresses are usage errors before any daemon is looked for. With root: a second daemon of a
// running instance is refused, apply refuses a file whose start settings differ from the running
// daemon's, a daemon under `ip netns exec` names nsenter, and SIGTERM removes the admin socket.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { describeRoot, expectOneError, labCommand, labCli } from '../../lab/testing.ts';
import { createTopology } from '../../lab/netns.ts';
import { collectOutput, untilReady } from '../../common/child.ts';
import { processAlive } from '../../common/host.ts';
import { LbClient } from './client.ts';

const [NODE, ...LAB] = await labCli();

const lb = labCommand('lb');

const oneError = expectOneError;

describe('pnpm lab lb: arguments and errors', () => {
  it('--help lists the commands (exit 0); no command is a usage error (exit 2)', async () => {
    const h = await lb('--help');
    expect(h.exitCode).toBe(0);
    expect(h.stdout).toMatch(/backend add/);
    expect(h.stdout).toMatch(/apply/);
    expect((await lb()).exitCode).toBe(2);
  }, 30_000);

  it('each command has its own --help', async () => {
    for (const c of [['backend', 'add'], ['vip', 'add'], ['apply'], ['stop'], ['daemon']]) {
      const r = await lb(...c, '--help');
      expect(r.exitCode, c.join(' ')).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: pnpm lab lb ${c.join(' ')}`));
    }
  }, 60_000);

  it('usage mistakes exit 2 with one line and the fix', async () => {
    const NO_DAEMON = ['--socket', '/nonexistent/lb.sock'];
    const cases: [string[], RegExp, RegExp][] = [
      [['backend'], /needs a subcommand/, /backend add/],
      [['frobnicate'], /unknown lb command "frobnicate"/, /--help/],
      // options before the command: their values are not the command ("x" was "unknown lb command")
      [['--config', 'x'], /lb needs a command/, /--help/],
      [['--instance', 'x', 'backend', 'lst'], /unknown lb command "backend lst" \(did you mean "backend list"\?\)/, /--help/],
      [['backend', 'add', 'tcp://10.0.0.1:80'], /missing <addr>/, /usage/],
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--wieght', '2'], /unknown option --wieght \(did you mean --weight\?\)/, /--help/],
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--weight', 'heavy'], /--weight "heavy": expected a whole number/, /--weight/],
      // Number() read these as 16, 1000 and 5: decimal digits only, as the help shows
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--weight', '0x10'], /^error: --weight "0x10": expected a whole number in decimal digits \(e\.g\. 16, not 0x10, 1e3, \+16 or 16\.0\)$/, /e\.g\. --weight 1/],
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--weight=1e3'], /--weight "1e3": expected a whole number in decimal digits/, /--weight/],
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--weight', ' 5'], /--weight " 5": expected a whole number in decimal digits/, /--weight/],
      [['backend', 'weight', 'tcp://10.0.0.1:80', '10.0.0.2', '0x10'], /<weight> "0x10": expected a whole number 0-1000/, /backend weight/],
      [['backend', 'weight', 'tcp://10.0.0.1:80', '10.0.0.2', '-1'], /unknown option|expected a whole number/, /./],
      [['vip', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--forwarding', 'gre'], /expected one of dsr, ipip/, /./],
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--mac', 'zz:zz'], /--mac "zz:zz": is not a MAC address/, /six hex pairs/],
      [['stop', '--purge=yes'], /takes no value/, /--purge alone/],
      // the name is a path (socket, lock, pins): a purge under `--instance ../../x` removed files there
      [['stop', '--purge', '--instance', '../../tmp/x'], /--instance "\.\.\/\.\.\/tmp\/x": not an instance name/, /A-Z a-z 0-9 _ -/],
      [['daemon'], /needs --config FILE/, /README/],
      // addresses are checked before any daemon is contacted (none runs at this socket)
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.300', ...NO_DAEMON], /<addr> malformed IP address "10\.0\.0\.300"/, /ADDR:PORT or \[ADDR6\]:PORT/],
      [['backend', 'add', 'tcp://10.0.0.1', '10.0.0.2', ...NO_DAEMON], /<vip> malformed VIP "tcp:\/\/10\.0\.0\.1"/, /tcp:\/\/ADDR:PORT/],
      [['backend', 'remove', 'tcp://10.0.0.1:80', '10.0.0.2:0', ...NO_DAEMON], /<addr> malformed port "0"/, /ADDR:PORT/],
      [['backend', 'drain', 'udp://[fd00::1:53', '10.0.0.2', ...NO_DAEMON], /<vip> malformed VIP/, /udp:\/\/\[ADDR6\]:PORT/],
      [['backend', 'weight', 'tcp://10.0.0.1:80', 'nope', '2', ...NO_DAEMON], /<addr> malformed IP address "nope"/, /ADDR:PORT/],
      [['backend', 'weight', 'tcp://10.0.0.1:80', '10.0.0.2', '1001', ...NO_DAEMON], /<weight> "1001": expected a whole number 0-1000/, /backend weight/],
      [['vip', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '10.0.0.2:80', ...NO_DAEMON], /"10\.0\.0\.2:80" and "10\.0\.0\.2" are the same backend/, /each backend once/],
      [['vip', 'add', 'tcp://10.0.0.1:80', 'fd00::2', '--forwarding', 'ipip', ...NO_DAEMON], /backend fd00::2 is IPv6 but tcp:\/\/10\.0\.0\.1:80 is IPv4/, /IPv4 backends .* or --forwarding dsr/],
      [['vip', 'remove', 'tcp://10.0.0.1:http', ...NO_DAEMON], /<vip> malformed VIP/, /tcp:\/\/ADDR:PORT/],
      [['vip', 'list', 'tcp://10.0.0.999:80', ...NO_DAEMON], /<vip> malformed IP address/, /tcp:\/\/ADDR:PORT/],
      [['backend', 'list', 'http://10.0.0.1:80', ...NO_DAEMON], /<vip> malformed VIP/, /tcp:\/\/ADDR:PORT/],
    ];
    for (const [args, msg, fix] of cases) {
      const r = await lb(...args);
      expect(r.exitCode, args.join(' ')).toBe(2);
      oneError(r.stderr, msg, fix);
    }
  }, 240_000);

  // root: the purge takes the instance's lock under /run/ebpf-lab before it looks at the pins
  it.skipIf(process.getuid?.() !== 0)('stop --purge removes only pins: a --pin-root off the bpffs is refused and its files stay (exit 1)', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-lb-notpins-'));
    try {
      fs.mkdirSync(path.join(root, 'x'));
      for (const f of ['link', 'vips']) fs.writeFileSync(path.join(root, 'x', f), 'not a pin');
      const r = await lb('stop', '--purge', '--pin-root', root, '--instance', 'x', '--socket', '/nonexistent/lb.sock');
      expect(r.exitCode).toBe(1);
      oneError(r.stderr, /is not on a BPF file system: nothing there is an LB pin; nothing was removed/, /\/sys\/fs\/bpf/);
      expect(fs.readdirSync(path.join(root, 'x')).sort()).toEqual(['link', 'vips']);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  }, 30_000);

  it('expected failures exit 1 with the fix: no daemon, missing config file', async () => {
    const r = await lb('backend', 'list', '--socket', '/nonexistent/lb.sock');
    expect(r.exitCode).toBe(1);
    oneError(r.stderr, /no LB daemon at \/nonexistent\/lb\.sock/, /lb daemon --config/);
    const a = await lb('apply', '/nonexistent/lb.yaml', '--socket', '/nonexistent/lb.sock');
    expect(a.exitCode).toBe(1);
    oneError(a.stderr, /config file \/nonexistent\/lb\.yaml does not exist/, /YAML or JSON/);
    // a faulty file is named before the daemon is looked for
    const bad = `/tmp/ebpf-lab-lb-bad-${process.pid}.yaml`;
    fs.writeFileSync(bad, 'interface: lb0\nvips:\n  - vip: tcp://10.0.0.1:80\n    backends: [{ address: 10.0.0.300 }]\n');
    try {
      const f = await lb('apply', bad, '--socket', '/nonexistent/lb.sock');
      expect(f.exitCode).toBe(1);
      oneError(f.stderr, new RegExp(`${bad}:4:.*malformed IP address "10\\.0\\.0\\.300"`), /correct the config file/);
    } finally {
      fs.rmSync(bad, { force: true });
    }
  }, 30_000);
});

describeRoot('pnpm lab lb daemon (root)', () => {
  it('a second daemon of a running instance is refused and changes nothing; SIGTERM removes the admin socket; a SIGKILLed one keeps forwarding, is taken over by the next daemon also when attached by netlink, and lb stop --purge without a daemon removes a pinned link', async () => {
    const t = createTopology('lbcli');
    const inst = `cli${process.pid}`;
    const cfg = `/tmp/ebpf-lab-lb-cli-${process.pid}.json`;
    const sock = `/run/ebpf-lab/lb-${inst}.sock`;
    const cwd = new URL('../..', import.meta.url).pathname;
    const pinRoot3 = `/sys/fs/bpf/ebpf-lab-t${process.pid}`;
    let first: ReturnType<typeof execa> | undefined;
    try {
      await t.addNs('lb');
      await t.addNs('peer');
      await t.veth({ ns: 'lb', dev: 'l0' }, { ns: 'peer', dev: 'p0' });
      await t.addr('lb', 'l0', '10.98.7.1/24');
      fs.writeFileSync(cfg, JSON.stringify({ interface: 'l0', instance: inst, xdpMode: 'generic', vips: [{ vip: 'tcp://10.98.77.1:80', backends: [{ address: '10.98.7.11', mac: '02:00:00:00:07:11' }], healthCheck: false }] }));
      const daemon = () => execa('nsenter', [`--net=/run/netns/${t.ns('lb')}`, '--', NODE, ...LAB, 'lb', 'daemon', '--config', cfg], { reject: false, cwd, all: true, buffer: true, env: { EBPF_LAB_DEBUG: '' } });
      first = daemon();
      let out = '';
      first.all!.on('data', (b: Buffer) => (out += b.toString()));
      for (let i = 0; i < 600 && !out.includes('"ready":true') && first.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      expect(out, out).toContain('"ready":true');
      const second = await daemon();
      expect(second.exitCode).toBe(1);
      oneError(String(second.stderr), new RegExp(`an LB daemon of instance "${inst}" is already running`), /lb stop --instance/);
      // another instance on the same interface: the hook is taken, one line with the fix, nothing left
      const cfg2 = `${cfg}.2.json`;
      fs.writeFileSync(cfg2, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfg, 'utf8')), instance: `${inst}b` }));
      const other = await execa('nsenter', [`--net=/run/netns/${t.ns('lb')}`, '--', NODE, ...LAB, 'lb', 'daemon', '--config', cfg2], { reject: false, cwd, env: { EBPF_LAB_DEBUG: '' } });
      fs.rmSync(cfg2, { force: true });
      expect(other.exitCode).toBe(1);
      oneError(String(other.stderr), /attaching xdp_lb \(xdp l0 \(generic\)\): EBUSY/, /another XDP program is attached/);
      expect(fs.existsSync(`/run/ebpf-lab/lb-${inst}b.sock`)).toBe(false);
      // a config naming an interface that is not there
      fs.writeFileSync(cfg2, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfg, 'utf8')), interface: 'nosuchdev0', instance: `${inst}c` }));
      const noDev = await execa('nsenter', [`--net=/run/netns/${t.ns('lb')}`, '--', NODE, ...LAB, 'lb', 'daemon', '--config', cfg2], { reject: false, cwd, env: { EBPF_LAB_DEBUG: '' } });
      fs.rmSync(cfg2, { force: true });
      expect(noDev.exitCode).toBe(1);
      oneError(String(noDev.stderr), /no interface "nosuchdev0"/, /create it first/);
      const l = await lb('vip', 'list', '--instance', inst);
      expect(l.exitCode, `the first daemon still answers: ${l.stderr}`).toBe(0);
      expect(l.stdout).toMatch(/10\.98\.77\.1:80/);
      // apply of a file whose start settings differ: refused by the daemon, each field named, nothing changed
      const state = async () => JSON.stringify(await new LbClient(sock).state());
      const before = await state();
      const base = JSON.parse(fs.readFileSync(cfg, 'utf8'));
      fs.writeFileSync(cfg2, JSON.stringify({ ...base, interface: 'nosuchdev', ringSize: 1021, vips: [...base.vips, { vip: 'tcp://10.98.77.2:80', backends: [{ address: '10.98.7.12', mac: '02:00:00:00:07:12' }], healthCheck: false }] }));
      const fixed = await lb('apply', cfg2, '--instance', inst);
      expect(fixed.exitCode).toBe(1);
      oneError(fixed.stderr, /differs from the running LB in settings fixed when the daemon starts .*interface: running "l0", file "nosuchdev"; ringSize: running 65537, file 1021; nothing was changed/,
        new RegExp(`pnpm lab lb stop --purge --instance ${inst} .*then nsenter --net=/run/netns/${t.ns('lb')} -- pnpm lab lb daemon --config ${cfg2}`));
      fs.writeFileSync(cfg2, JSON.stringify({ ...base, instance: 'someother' }));
      const wrongInst = await lb('apply', cfg2, '--instance', inst);
      expect(wrongInst.exitCode).toBe(1);
      oneError(wrongInst.stderr, new RegExp(`is for LB instance "someother", this daemon runs instance "${inst}"`), new RegExp(`pnpm lab lb apply ${cfg2} --instance someother`));
      fs.rmSync(cfg2, { force: true });
      expect(await state()).toBe(before);
      // its own file applies (nothing to do)
      const same = await lb('apply', cfg, '--instance', inst);
      expect(same.exitCode, same.stderr).toBe(0);
      expect(JSON.parse(same.stdout)).toEqual({ added: [], removed: [], changed: [] });
      // a backend drained at runtime stays drained through an apply of an unrelated change, and the
      // apply says so (it went back into the ring silently)
      const vip = base.vips[0].vip as string;
      const two = { ...base, vips: [{ ...base.vips[0], backends: [...base.vips[0].backends, { address: '10.98.7.12', mac: '02:00:00:00:07:12' }] }] };
      fs.writeFileSync(cfg2, JSON.stringify(two));
      expect((await lb('apply', cfg2, '--instance', inst)).exitCode).toBe(0);
      expect((await lb('backend', 'drain', vip, '10.98.7.12', '--instance', inst)).exitCode).toBe(0);
      fs.writeFileSync(cfg2, JSON.stringify({ ...two, vips: [...two.vips, { vip: 'tcp://10.98.77.3:80', backends: [{ address: '10.98.7.13', mac: '02:00:00:00:07:13' }], healthCheck: false }] }));
      const kept = await lb('apply', cfg2, '--instance', inst);
      expect(kept.exitCode, kept.stderr).toBe(0);
      expect(JSON.parse(kept.stdout)).toEqual({ added: ['tcp://10.98.77.3:80'], removed: [], changed: [], keptDraining: [`10.98.7.12:80 of ${vip}`] });
      expect(kept.stderr.trim()).toBe(`note: backend 10.98.7.12:80 of ${vip} stays draining (drained at runtime; a file does not end a drain unless it gives a new weight): pnpm lab lb backend weight ${vip} 10.98.7.12:80 WEIGHT --instance ${inst} puts it back`);
      expect((await lb('vip', 'list', vip, '--instance', inst)).stdout).toMatch(/^ {2}10\.98\.7\.12:80 {2}weight 1 {2}draining ring 0\.0%/m);
      // the command it names puts it back
      expect((await lb('backend', 'weight', vip, '10.98.7.12:80', '1', '--instance', inst)).exitCode).toBe(0);
      expect((await lb('vip', 'list', vip, '--instance', inst)).stdout).toMatch(/^ {2}10\.98\.7\.12:80 {2}weight 1 {2}up/m);
      fs.rmSync(cfg2, { force: true });
      const back = await lb('apply', cfg, '--instance', inst);
      expect(JSON.parse(back.stdout)).toEqual({ added: [], removed: ['tcp://10.98.77.3:80'], changed: [vip] });
      first.kill('SIGTERM');
      expect((await first).exitCode).toBe(0);
      expect(fs.existsSync(sock), 'admin socket left after SIGTERM').toBe(false);
      // its pins stay (restart-safe): a new daemon takes them over, and a purge removes them
      first = daemon();
      out = '';
      first.all!.on('data', (b: Buffer) => (out += b.toString()));
      for (let i = 0; i < 600 && !out.includes('"ready":true') && first.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      expect(out, out).toContain('restored 1 VIP');
      // xdpMode generic attaches by netlink: kept through the stop all the same, and taken over
      expect((await new LbClient(sock).state()).attach).toBe('adopted');
      const stopped = await lb('stop', '--purge', '--instance', inst);
      expect(stopped.exitCode, stopped.stderr).toBe(0);
      // it returns once the daemon is gone: the next start is not refused as a second daemon
      expect(stopped.stdout).toBe(`stopped LB daemon pid ${first.pid}: XDP program detached and pins removed`);
      expect(processAlive(first.pid), 'the daemon is gone when stop returns').toBe(false);
      expect((await first).exitCode).toBe(0);
      // a daemon killed outright: its XDP program goes on forwarding (fail static); lb stop says so.
      // Attached by netlink (xdpMode generic: no link to pin), it is taken over by the next daemon
      // (before, that one failed with EBUSY on its own instance's program), and only then purged
      const xdp = async (dev = 'l0') => /\bxdp/.test(String((await t.exec('lb', 'ip', ['-d', 'link', 'show', 'dev', dev])).stdout));
      first = daemon();
      await untilReady(first, collectOutput([first.all]), /"ready":true/, 30_000, 'lb daemon');
      first.kill('SIGKILL');
      await first;
      expect(await xdp()).toBe(true);
      const plain = await lb('stop', '--instance', inst);
      expect(plain.exitCode).toBe(1);
      oneError(plain.stderr, new RegExp(`no LB daemon at ${sock}, but instance "${inst}" still forwards from its pins under /sys/fs/bpf/ebpf-lab/${inst}`), new RegExp(`pnpm lab lb stop --purge --instance ${inst} detaches it`));
      const netlink = await lb('stop', '--purge', '--instance', inst);
      expect(netlink.exitCode).toBe(1);
      oneError(netlink.stderr, /has no pinned XDP link: its daemon attached by netlink .*its program \(id \d+\) is still attached .*nothing was removed/, /start the daemon again .*it takes the program over\), then pnpm lab lb stop --purge/);
      expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/${inst}/vips`)).toBe(true);
      // a command for the instance says it still forwards, not just "no daemon"
      const listDead = await lb('vip', 'list', '--instance', inst);
      expect(listDead.exitCode).toBe(1);
      oneError(listDead.stderr, new RegExp(`no LB daemon at ${sock}, but instance "${inst}" still forwards from its pins under /sys/fs/bpf/ebpf-lab/${inst}`), /start the daemon again \(it adopts them\)/);
      // pins with no record of a finished start (one killed while writing its VIPs holds only some
      // of them): the next daemon applies its config to them instead of taking them as they are
      fs.rmSync(`/run/ebpf-lab/lb-${inst}.pins`);
      const cfgText = fs.readFileSync(cfg, 'utf8');
      const withExtra = JSON.parse(cfgText);
      withExtra.vips.push({ vip: 'tcp://10.98.77.4:80', backends: [{ address: '10.98.7.14', mac: '02:00:00:00:07:14' }], healthCheck: false });
      fs.writeFileSync(cfg, JSON.stringify(withExtra));
      first = daemon();
      const cutOut = collectOutput([first.all]);
      await untilReady(first, cutOut, /"ready":true/, 30_000, 'lb daemon');
      fs.writeFileSync(cfg, cfgText);
      expect(cutOut()).toMatch(new RegExp(`the pins under /sys/fs/bpf/ebpf-lab/${inst} are a start's that was cut short \\(they held 1 VIP\\(s\\), 1 backend\\(s\\)\\): applied this config to them \\(1 VIP\\(s\\) added, 0 changed, 0 removed\\)`));
      expect((await lb('vip', 'list', '--instance', inst)).stdout).toMatch(/10\.98\.77\.4:80/);
      expect((await new LbClient(sock).state()).attach).toBe('adopted');
      expect((await lb('stop', '--purge', '--instance', inst)).exitCode).toBe(0);
      expect((await first).exitCode).toBe(0);
      expect(await xdp()).toBe(false);
      expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/${inst}`)).toBe(false);
      // the default mode pins a bpf_link: with the daemon dead, lb stop --purge removes it all,
      // found under the pinRoot the daemon recorded at its start (the config's, not the default)
      await t.veth({ ns: 'lb', dev: 'l1' }, { ns: 'peer', dev: 'p1' });
      const cfg3 = `${cfg}.3.json`;
      const inst3 = `${inst}d`;
      fs.writeFileSync(cfg3, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfg, 'utf8')), interface: 'l1', instance: inst3, xdpMode: undefined, pinRoot: pinRoot3 }));
      first = execa('nsenter', [`--net=/run/netns/${t.ns('lb')}`, '--', NODE, ...LAB, 'lb', 'daemon', '--config', cfg3], { reject: false, cwd, all: true, env: { EBPF_LAB_DEBUG: '' } });
      await untilReady(first, collectOutput([first.all]), /"ready":true/, 30_000, 'lb daemon');
      first.kill('SIGKILL');
      await first;
      fs.rmSync(cfg3, { force: true });
      expect(await xdp('l1')).toBe(true);
      const purged = await lb('stop', '--purge', '--instance', inst3);
      expect(purged.stderr).toBe('');
      expect(purged.stdout).toBe(`no LB daemon was running: detached its XDP program (pinned link removed), removed 9 map pin(s) under ${pinRoot3}/${inst3}`);
      expect(purged.exitCode).toBe(0);
      expect(await xdp('l1')).toBe(false);
      expect(fs.existsSync(`${pinRoot3}/${inst3}`)).toBe(false);
      expect(fs.existsSync(`/run/ebpf-lab/lb-${inst3}.sock`)).toBe(false);
      expect(fs.existsSync(`/run/ebpf-lab/lb-${inst3}.pins`)).toBe(false);
      expect(fs.existsSync(`/run/ebpf-lab/lb-${inst3}.lock`)).toBe(false);
    } finally {
      first?.kill('SIGKILL');
      await first?.catch(() => {});
      // what a killed daemon keeps (restart-safe): its pins and socket file; the XDP link goes with the namespace
      for (const i of [inst, `${inst}b`, `${inst}c`, `${inst}d`]) {
        fs.rmSync(`/sys/fs/bpf/ebpf-lab/${i}`, { recursive: true, force: true });
        fs.rmSync(`/run/ebpf-lab/lb-${i}.sock`, { force: true });
        fs.rmSync(`/run/ebpf-lab/lb-${i}.pins`, { force: true });
        fs.rmSync(`/run/ebpf-lab/lb-${i}.lock`, { force: true });
      }
      fs.rmSync(pinRoot3, { recursive: true, force: true });
      fs.rmSync(cfg, { force: true });
      fs.rmSync(`${cfg}.2.json`, { force: true });
      await t.dispose();
    }
  }, 120_000);

  // Both found no daemon answering: one made the pins, the other "restored" them while still empty
  // (its config's VIP ignored) and attached first; the first then failed with EBUSY and purged the
  // pins it had made. Left: a daemon balancing nothing, with nothing pinned.
  it('two daemons of one instance started at once: one runs with its config, the other is refused; stop --purge leaves nothing', async () => {
    const t = createTopology('lbrace');
    const inst = `race${process.pid}`;
    const cfg = `/tmp/ebpf-lab-lb-race-${process.pid}.json`;
    const cwd = new URL('../..', import.meta.url).pathname;
    let ds: ReturnType<typeof execa>[] = [];
    try {
      await t.addNs('lb');
      await t.addNs('peer');
      await t.veth({ ns: 'lb', dev: 'l0' }, { ns: 'peer', dev: 'p0' });
      await t.addr('lb', 'l0', '10.98.8.1/24');
      fs.writeFileSync(cfg, JSON.stringify({ interface: 'l0', instance: inst, vips: [{ vip: 'tcp://10.98.88.1:80', backends: [{ address: '10.98.8.11', mac: '02:00:00:00:08:11' }], healthCheck: false }] }));
      const daemon = () => execa('nsenter', [`--net=/run/netns/${t.ns('lb')}`, '--', NODE, ...LAB, 'lb', 'daemon', '--config', cfg], { reject: false, cwd, all: true, env: { EBPF_LAB_DEBUG: '' } });
      ds = [daemon(), daemon()];
      // collected from the start: execa reads the stream for its result, so a listener added once
      // the loser has exited misses what the winner printed before (under load its "ready" line
      // came first, and the wait saw nothing for 30 s)
      const outs = ds.map((d) => collectOutput([d.all]));
      const timeout = new Promise<never>((_, no) => setTimeout(() => no(new Error('neither daemon exited within 60 s')), 60_000).unref());
      const refused = await Promise.race([...ds.map((d) => d.then((r) => ({ d, r }))), timeout]);
      expect(refused.r.exitCode, String(refused.r.all)).toBe(1);
      oneError(String(refused.r.stderr), new RegExp(`an LB daemon of instance "${inst}" is already running`), /lb stop --instance/);
      const owner = ds.find((d) => d !== refused.d)!;
      await untilReady(owner, outs[ds.indexOf(owner)]!, /"ready":true/, 30_000, 'lb daemon');
      const l = await lb('vip', 'list', '--instance', inst);
      expect(l.exitCode, l.stderr).toBe(0);
      expect(l.stdout).toMatch(/10\.98\.88\.1:80 .*1 backend/);
      expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/${inst}/vips`)).toBe(true);
      // a purge that reaches no daemon (here: the wrong socket; or one still starting) while one
      // holds the instance: refused, nothing removed. It purged the running daemon's pins.
      const wrong = await lb('stop', '--purge', '--instance', inst, '--socket', `/tmp/ebpf-lab-lb-nosock-${process.pid}`);
      expect(wrong.exitCode).toBe(1);
      oneError(wrong.stderr, new RegExp(`a daemon of instance "${inst}" \\(pid ${owner.pid}\\) is running but does not answer`), /--socket PATH/);
      expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/${inst}/vips`)).toBe(true);
      expect((await lb('vip', 'list', '--instance', inst)).stdout).toMatch(/10\.98\.88\.1:80 .*1 backend/);
      expect((await lb('stop', '--purge', '--instance', inst)).exitCode).toBe(0);
      expect((await owner).exitCode).toBe(0);
      expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/${inst}`)).toBe(false);
      expect(fs.readdirSync('/run/ebpf-lab').filter((f) => f.startsWith(`lb-${inst}.`))).toEqual([]);
    } finally {
      for (const d of ds) d.kill('SIGKILL');
      await Promise.all(ds.map((d) => d.catch(() => {})));
      fs.rmSync(`/sys/fs/bpf/ebpf-lab/${inst}`, { recursive: true, force: true });
      for (const x of ['sock', 'pins', 'lock']) fs.rmSync(`/run/ebpf-lab/lb-${inst}.${x}`, { force: true });
      fs.rmSync(cfg, { force: true });
      await t.dispose();
    }
  }, 120_000);
});

// A daemon whose TCP `listen` address was taken said so, then stayed up: its unix admin server
// was left open, serving a model whose pins it had removed, and SIGTERM was ignored (review, session 56)
describeRoot('pnpm lab lb daemon: a taken listen address (root)', () => {
  it('exits 1 with the fix at once, leaving no socket, pins or attached program', async () => {
    const n = process.pid % 100_000;
    const [a, b] = [`lbta${n}`, `lbtb${n}`];
    const inst = `taken${process.pid}`;
    const cfg = `/tmp/ebpf-lab-lb-taken-${process.pid}.json`;
    const cwd = new URL('../..', import.meta.url).pathname;
    const taken = (await import('node:net')).createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    try {
      await execa('ip', ['link', 'add', a, 'up', 'type', 'veth', 'peer', 'name', b]);
      fs.writeFileSync(cfg, JSON.stringify({ interface: a, instance: inst, listen: `127.0.0.1:${(taken.address() as { port: number }).port}`, vips: [{ vip: 'tcp://10.98.99.1:80', backends: [{ address: '10.98.9.11', mac: '02:00:00:00:09:11' }], healthCheck: false }] }));
      const r = await execa(NODE, [...LAB, 'lb', 'daemon', '--config', cfg], { reject: false, cwd, all: true, env: { EBPF_LAB_DEBUG: '' }, timeout: 60_000 });
      expect(r.timedOut, String(r.all)).toBe(false);
      expect(r.exitCode, String(r.all)).toBe(1);
      expect(String(r.stderr)).toMatch(/admin API on .*EADDRINUSE/);
      expect(fs.existsSync(`/run/ebpf-lab/lb-${inst}.sock`)).toBe(false);
      expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/${inst}`)).toBe(false);
      expect(String((await execa('ip', ['-d', 'link', 'show', 'dev', a])).stdout)).not.toMatch(/prog\/xdp/);
    } finally {
      taken.close();
      fs.rmSync(`/sys/fs/bpf/ebpf-lab/${inst}`, { recursive: true, force: true });
      for (const x of ['sock', 'pins', 'lock']) fs.rmSync(`/run/ebpf-lab/lb-${inst}.${x}`, { force: true });
      fs.rmSync(cfg, { force: true });
      await execa('ip', ['link', 'del', a], { reject: false });
    }
  }, 90_000);
});

describeRoot('pnpm lab lb daemon under ip netns exec (root)', () => {
  it('names the nsenter command that starts it instead, and leaves nothing', async (ctx) => {
    const t = createTopology('lbnsx');
    const inst = `nsx${process.pid}`;
    const cfg = `/tmp/ebpf-lab-lb-nsx-${process.pid}.json`;
    try {
      await t.addNs('lb');
      // `ip netns exec` remounts / and /sys; where / is not a mount point (a chroot) it cannot run at all
      const probe = await execa('ip', ['netns', 'exec', t.ns('lb'), 'true'], { reject: false });
      if (probe.exitCode !== 0) ctx.skip(`ip netns exec cannot run here: ${String(probe.stderr).trim().split('\n')[0]}`);
      fs.writeFileSync(cfg, JSON.stringify({ interface: 'lo', instance: inst, xdpMode: 'generic', vips: [{ vip: 'tcp://10.98.77.1:80', backends: [{ address: '10.98.7.11', mac: '02:00:00:00:07:11' }], healthCheck: false }] }));
      // a fresh /sys under ip netns exec: no bpffs at /sys/fs/bpf
      const r = await execa('ip', ['netns', 'exec', t.ns('lb'), NODE, ...LAB, 'lb', 'daemon', '--config', cfg], { reject: false, cwd: new URL('../..', import.meta.url).pathname, env: { EBPF_LAB_DEBUG: '' } });
      expect(r.exitCode).toBe(1);
      oneError(String(r.stderr), /\/sys\/fs\/bpf\/ebpf-lab is not on a bpffs \(it is on sysfs mounted at \/sys\)/, new RegExp(`nsenter --net=/run/netns/${t.ns('lb')} -- pnpm lab lb daemon --config FILE" instead of "ip netns exec"`));
      expect(fs.existsSync(`/run/ebpf-lab/lb-${inst}.sock`)).toBe(false);
      expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/${inst}`)).toBe(false);
    } finally {
      fs.rmSync(cfg, { force: true });
      fs.rmSync(`/run/ebpf-lab/lb-${inst}.sock`, { force: true });
      await t.dispose();
    }
  }, 60_000);
});
