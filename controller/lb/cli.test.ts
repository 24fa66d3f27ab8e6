// `pnpm lab lb …` as a user runs it: usage errors exit 2 with one line and the fix, expected
// failures exit 1 with `error: … / fix: …` and no stack trace (no daemon, no root). With root: a
// second daemon of a running instance is refused, and SIGTERM removes the admin socket.
import fs from 'node:fs';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { describeRoot, expectOneError, labCommand, labCli } from '../../lab/testing.ts';
import { createTopology } from '../../lab/netns.ts';

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
    const cases: [string[], RegExp, RegExp][] = [
      [['backend'], /needs a subcommand/, /backend add/],
      [['frobnicate'], /unknown lb command "frobnicate"/, /--help/],
      [['backend', 'add', 'tcp://10.0.0.1:80'], /missing <addr>/, /usage/],
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--wieght', '2'], /unknown option --wieght \(did you mean --weight\?\)/, /--help/],
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--weight', 'heavy'], /--weight "heavy": expected a whole number/, /--weight/],
      [['backend', 'weight', 'tcp://10.0.0.1:80', '10.0.0.2', '-1'], /unknown option|expected a whole number/, /./],
      [['vip', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--forwarding', 'gre'], /expected one of dsr, ipip/, /./],
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--mac', 'zz:zz'], /--mac "zz:zz": is not a MAC address/, /six hex pairs/],
      [['stop', '--purge=yes'], /takes no value/, /--purge alone/],
      [['daemon'], /needs --config FILE/, /README/],
    ];
    for (const [args, msg, fix] of cases) {
      const r = await lb(...args);
      expect(r.exitCode, args.join(' ')).toBe(2);
      oneError(r.stderr, msg, fix);
    }
  }, 120_000);

  it('expected failures exit 1 with the fix: no daemon, missing config file', async () => {
    const r = await lb('backend', 'list', '--socket', '/nonexistent/lb.sock');
    expect(r.exitCode).toBe(1);
    oneError(r.stderr, /no LB daemon at \/nonexistent\/lb\.sock/, /lb daemon --config/);
    const a = await lb('apply', '/nonexistent/lb.yaml', '--socket', '/nonexistent/lb.sock');
    expect(a.exitCode).toBe(1);
    oneError(a.stderr, /config file \/nonexistent\/lb\.yaml does not exist/, /YAML or JSON/);
  }, 30_000);
});

describeRoot('pnpm lab lb daemon (root)', () => {
  it('a second daemon of a running instance is refused and changes nothing; SIGTERM removes the admin socket', async () => {
    const t = createTopology('lbcli');
    const inst = `cli${process.pid}`;
    const cfg = `/tmp/ebpf-lab-lb-cli-${process.pid}.json`;
    const sock = `/run/ebpf-lab/lb-${inst}.sock`;
    const cwd = new URL('../..', import.meta.url).pathname;
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
      first.kill('SIGTERM');
      expect((await first).exitCode).toBe(0);
      expect(fs.existsSync(sock), 'admin socket left after SIGTERM').toBe(false);
      // its pins stay (restart-safe): a new daemon takes them over, and a purge removes them
      first = daemon();
      out = '';
      first.all!.on('data', (b: Buffer) => (out += b.toString()));
      for (let i = 0; i < 600 && !out.includes('"ready":true') && first.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      expect(out, out).toContain('restored 1 VIP');
      expect((await lb('stop', '--purge', '--instance', inst)).exitCode).toBe(0);
      expect((await first).exitCode).toBe(0);
    } finally {
      first?.kill('SIGKILL');
      await first?.catch(() => {});
      // what a killed daemon keeps (restart-safe): its pins and socket file; the XDP link goes with the namespace
      for (const i of [inst, `${inst}b`, `${inst}c`]) {
        fs.rmSync(`/sys/fs/bpf/ebpf-lab/${i}`, { recursive: true, force: true });
        fs.rmSync(`/run/ebpf-lab/lb-${i}.sock`, { force: true });
      }
      fs.rmSync(cfg, { force: true });
      await t.dispose();
    }
  }, 120_000);
});
