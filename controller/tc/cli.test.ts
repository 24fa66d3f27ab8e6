// `pnpm lab tc …` as a user runs it: usage errors exit 2 with one line and the fix, expected
// failures exit 1 with `error: … / fix: …` and no stack trace. Nothing is started (no root needed).
import { describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { describeRoot, expectOneError, labCommand, toolMissing, labCli } from '../../lab/testing.ts';
import { createTopology } from '../../lab/netns.ts';

const [NODE, ...LAB] = await labCli();

const tc = labCommand('tc');

const oneError = expectOneError;

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
      [['shape', 'start', '--dve', 'x'], /unknown option --dve \(did you mean --dev\?\)/, /--help/],
      [['shape', 'start'], /needs --dev/, /--config/],
      [['shape', 'start', '--dev', 'x', '--metrics-port', '0'], /--metrics-port "0": must be ≥ 1/, /e\.g\./],
    ];
    for (const [args, msg, fix] of cases) {
      const r = await tc(...args);
      expect(r.exitCode, args.join(' ')).toBe(2);
      oneError(r.stderr, msg, fix);
    }
  }, 90_000);

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
  it('shape start stays up without --metrics-port; filter list shows IPv6 rules and counts real IPv6 packets; shape stop removes it all', async (ctx) => {
    const noPing = toolMissing('tc', 'ping');
    if (noPing) ctx.skip(noPing);
    const fs = await import('node:fs');
    const t = createTopology('tccli');
    const f = `/tmp/ebpf-lab-tc-cli6-${process.pid}.json`;
    let daemon: ReturnType<typeof execa> | undefined;
    try {
      await t.addNs('a');
      await t.addNs('b');
      await t.veth({ ns: 'a', dev: 'ca' }, { ns: 'b', dev: 'cb' });
      await t.addr('a', 'ca', 'fd00:18::1/64');
      await t.addr('b', 'cb', 'fd00:18::2/64');
      await t.neigh('a', 'ca', 'fd00:18::2', await t.mac('b', 'cb'));
      await t.neigh('b', 'cb', 'fd00:18::1', await t.mac('a', 'ca'));
      fs.writeFileSync(f, JSON.stringify({ filters: [{ name: 'ping6', dir: 'both', cidr: 'fd00:18::/64', proto: 'icmpv6', action: 'count' }] }));
      daemon = execa(NODE, [...LAB, 'tc', 'shape', 'start', '--dev', 'ca', '--netns', t.ns('a'), '--filter-only', '--instance', 'clitest6', '--config', f], { reject: false });
      const state = '/run/ebpf-lab/tc/clitest6.json';
      for (let i = 0; i < 100 && !fs.existsSync(state); i++) await new Promise((r) => setTimeout(r, 100));
      expect(fs.existsSync(state)).toBe(true);
      await new Promise((r) => setTimeout(r, 1000)); // still there a second later
      expect(fs.existsSync(state)).toBe(true);
      expect((await t.exec('a', 'ping', ['-6', '-n', '-q', '-c', '3', '-i', '0.05', 'fd00:18::2'], { reject: false })).exitCode).toBe(0);
      const list = await tc('filter', 'list', '--instance', 'clitest6');
      expect(list.exitCode).toBe(0);
      expect(list.stdout).toMatch(/^ping6\s+count\s+both fd00:18::\/64 proto icmpv6\s+packets 6 /m);
      expect((await tc('shape', 'stop', '--instance', 'clitest6')).exitCode).toBe(0);
      expect((await daemon).exitCode).toBe(0);
      expect(fs.existsSync(state)).toBe(false);
      expect(String((await t.exec('a', 'tc', ['filter', 'show', 'dev', 'ca', 'egress'])).stdout)).toBe('');
    } finally {
      daemon?.kill('SIGTERM');
      await daemon;
      fs.rmSync(f, { force: true });
      await t.dispose();
    }
  }, 90_000);
});
