// `pnpm lab tc …` as a user runs it: usage errors exit 2 with one line and the fix, expected
// failures exit 1 with `error: … / fix: …` and no stack trace. Nothing is started (no root needed).
import { describe, expect, it } from 'vitest';
import { expectOneError, labCommand } from '../../lab/testing.ts';

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
