// `pnpm lab lb …` as a user runs it: usage errors exit 2 with one line and the fix, expected
// failures exit 1 with `error: … / fix: …` and no stack trace. No daemon and no root needed.
import { describe, expect, it } from 'vitest';
import { expectOneError, labCommand } from '../../lab/testing.ts';

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
