// `pnpm lab svc …` as a user runs it: usage errors exit 2 with one line and the fix; a command
// against an instance that does not run exits 1 with `error: … / fix: …`. No root needed.
import { describe, expect, it } from 'vitest';
import { expectOneError, labCommand } from '../../lab/testing.ts';

const svc = labCommand('svc');

const oneError = expectOneError;

describe('pnpm lab svc: arguments and errors', () => {
  it('--help lists the commands; each command has its own --help', async () => {
    const h = await svc('--help');
    expect(h.exitCode).toBe(0);
    expect(h.stdout).toMatch(/backend drain/);
    const b = await svc('backend', 'add', '--help');
    expect(b.exitCode).toBe(0);
    expect(b.stdout).toMatch(/^usage: pnpm lab svc backend add/);
  }, 60_000);

  it('usage mistakes exit 2 with one line and the fix', async () => {
    const cases: [string[], RegExp, RegExp][] = [
      [[], /needs a command/, /--help/],
      [['backend'], /needs a subcommand/, /backend add/],
      [['lsit'], /unknown svc command "lsit" \(did you mean "list"\?\)/, /--help/],
      [['backend', 'add', 'tcp://10.0.0.1:80'], /missing <addr>/, /usage/],
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--wieght', '2'], /unknown option --wieght \(did you mean --weight\?\)/, /--help/],
      [['backend', 'weight', 'tcp://10.0.0.1:80', '10.0.0.2', 'heavy'], /expected a whole number/, /svc backend weight/],
      [['daemon'], /--config FILE is required/, /README/],
    ];
    for (const [args, msg, fix] of cases) {
      const r = await svc(...args);
      expect(r.exitCode, args.join(' ')).toBe(2);
      oneError(r.stderr, msg, fix);
    }
  }, 120_000);

  it('commands against an instance that does not run fail with one line (exit 1)', async () => {
    const r = await svc('backend', 'remove', 'tcp://10.0.0.1:80', '10.0.0.2', '--instance', `nope-${process.pid}`);
    expect(r.exitCode).toBe(1);
    oneError(r.stderr, /no running socket LB instance/, /svc daemon/);
    const s = await svc('start', '--config', '/no/such.yaml');
    expect(s.exitCode).toBe(1);
    oneError(s.stderr, /does not exist/, /config/);
  }, 60_000);
});
