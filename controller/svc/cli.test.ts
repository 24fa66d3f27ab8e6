// `pnpm lab svc …` as a user runs it: usage errors exit 2 with one line and the fix; a command
// against an instance that does not run exits 1 with `error: … / fix: …` (no root needed). With
// root: the foreground daemon stays up until SIGTERM, health checks or not.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { expectOneError, labCommand, labCli } from '../../lab/testing.ts';
import { cgroup2Root, findCgroup2Root, createCgroup, removeCgroup } from '../../common/cgroup.ts';

const [NODE, ...LAB] = await labCli();

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

describe.skipIf(process.getuid?.() !== 0 || !findCgroup2Root())('pnpm lab svc daemon (root)', () => {
  it('stays in the foreground without health checks until SIGTERM, then removes its instance', async () => {
    const inst = `fg${process.pid}`;
    const cg = path.join(cgroup2Root(), `ebpf-lab-svc-fg-${process.pid}`);
    createCgroup(cg);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svc-fg-'));
    const cfg = path.join(dir, 'svc.yaml');
    fs.writeFileSync(cfg, `cgroup: ${cg}\ninstance: ${inst}\nservices:\n  - vip: tcp://10.96.77.10:80\n    backends: [10.0.77.11:8080]\n`);
    const d = execa(NODE, [...LAB, 'svc', 'daemon', '--config', cfg], { reject: false, cwd: new URL('../..', import.meta.url).pathname, all: true, buffer: true });
    try {
      let out = '';
      d.all!.on('data', (b: Buffer) => (out += b.toString()));
      for (let i = 0; i < 600 && !out.includes('"ready":true') && d.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      expect(out).toContain('"ready":true');
      await new Promise((r) => setTimeout(r, 1500));
      expect(d.exitCode, `the daemon exited on its own: ${out}`).toBeNull();
      const l = await svc('list', '--instance', inst);
      expect(l.exitCode, l.stderr).toBe(0);
      expect(l.stdout).toMatch(/tcp:\/\/10\.96\.77\.10:80/);
      d.kill('SIGTERM');
      const r = await d;
      expect(r.exitCode).toBe(0);
      expect(fs.existsSync(`/run/ebpf-lab/svc-${inst}.json`)).toBe(false);
    } finally {
      d.kill('SIGKILL');
      await d.catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
      removeCgroup(cg);
    }
  }, 90_000);
});
