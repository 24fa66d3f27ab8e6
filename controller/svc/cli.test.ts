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
import { collectOutput, untilReady } from '../../common/child.ts';
import { tryLock, unlock } from '../../common/lockfile.ts';
import { addrBytes, parseVip, vipString } from '../lb/addr.ts';
import { SvcController } from './controller.ts';

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
      [['backend', 'weight', 'tcp://10.0.0.1:80', '10.0.0.2', '+5'], /<weight> "\+5": expected a whole number 0-1000/, /svc backend weight/],
      [['backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--weight', '+5'], /^error: --weight "\+5": expected a whole number in decimal digits/, /--weight 1/],
      [['daemon', '--config', 'x.yaml', '--metrics-port', '0x2382'], /^error: --metrics-port "0x2382": expected a whole number in decimal digits/, /--metrics-port/],
      [['daemon'], /--config FILE is required/, /README/],
      // addresses are checked before any instance is looked for (none runs here)
      [['backend', 'add', 'tcp://10.96.0.10:80', '10.99.0.300'], /^error: <addr>: malformed IP address "10\.99\.0\.300"$/, /svc backend add tcp:/],
      [['backend', 'drain', 'tcp://10.96.0.10:80', 'fd00::1'], /<addr>: backend fd00::1 is not IPv4 like the VIP/, /svc backend drain/],
      [['backend', 'remove', 'tcp://10.96.0.10:99999', '10.0.0.1'], /<vip>: malformed VIP port "99999"/, /svc backend remove/],
      [['backend', 'weight', 'tcp://10.96.0.10:80', '10.0.0.1', '-1'], /<weight> "-1": a weight cannot be negative/, /0 takes a backend out/],
      [['backend', 'add', 'tcp://10.96.0.10:80', '10.0.0.1', '--weight', '-1'], /--weight "-1": must be ≥ 0/, /--weight/],
      [['--instance', 'qa'], /needs a command/, /--help/],
      [['--instance', 'qa', 'lsit'], /unknown svc command "lsit"/, /--help/],
    ];
    for (const [args, msg, fix] of cases) {
      const r = await svc(...args);
      expect(r.exitCode, args.join(' ')).toBe(2);
      oneError(r.stderr, msg, fix);
    }
  }, 120_000);

  // `svc stop --instance 'x/../../../tmp/f'` removed /tmp/f.json (the name was joined into the
  // state path unchecked) and exited 0
  it('--instance is held to the config\'s rule for instance names on every command: a path is a usage error, nothing touched', async () => {
    const base = path.join(os.tmpdir(), `svc-inst-${process.pid}`);
    fs.writeFileSync(`${base}.json`, '{}');
    try {
      const inst = `x/../../..${base}`;
      for (const args of [['stop', '--instance', inst], ['--instance', inst, 'list'], ['backend', 'remove', 'tcp://10.0.0.1:80', '10.0.0.2', `--instance=${inst}`], ['daemon', '--config', '/no/such.yaml', '--instance', 'a b'], ['stats', '--instance', 'x'.repeat(41)]]) {
        const r = await svc(...args);
        expect(r.exitCode, args.join(' ')).toBe(2);
        oneError(r.stderr, /^error: --instance ".*": malformed instance name \(letters, digits, _ and -, at most 40\)$/, /--instance default/);
      }
      expect(fs.existsSync(`${base}.json`), 'a file outside the lab\'s directories').toBe(true);
    } finally {
      fs.rmSync(`${base}.json`, { force: true });
    }
  }, 60_000);

  it('options before the command are the command\'s; --weight 0 is accepted like weight 0 elsewhere', async () => {
    const inst = `nope-${process.pid}`;
    for (const args of [['--instance', inst, 'list'], [`--instance=${inst}`, 'backend', 'add', 'tcp://10.0.0.1:80', '10.0.0.2', '--weight', '0'], ['backend', '--instance', inst, 'weight', 'tcp://10.0.0.1:80', '10.0.0.2', '0']]) {
      // past the argument checks: the instance named is looked for
      const r = await svc(...args);
      expect(r.exitCode, args.join(' ')).toBe(1);
      oneError(r.stderr, new RegExp(`no running socket LB instance "${inst}"`), /svc daemon/);
    }
  }, 60_000);

  it('config faults name the file and where in it, and the fix is the file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svc-cfg-'));
    try {
      const f = path.join(dir, 'svc.yaml');
      fs.writeFileSync(f, 'cgroup: /ebpf-lab/none\nservices:\n  - vip: tcp://10.96.0.10:80\n    backends: [10.0.0.1:8080, 10.0.0.1:8080]\n  - vip: tcp://10.96.0.11:80\n    backends: [10.0.0.2:99999]\n');
      const r = await svc('start', '--config', f);
      expect(r.exitCode).toBe(1);
      oneError(r.stderr, new RegExp(`^error: ${f.replace(/\./g, '\\.')}: services\\[0\\] \\(tcp://10\\.96\\.0\\.10:80\\): duplicate backend 10\\.0\\.0\\.1:8080; services\\[1\\]\\.backends\\[0\\]: malformed port "99999"`), /correct the config file/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('commands against an instance that does not run fail with one line (exit 1)', async () => {
    const r = await svc('backend', 'remove', 'tcp://10.0.0.1:80', '10.0.0.2', '--instance', `nope-${process.pid}`);
    expect(r.exitCode).toBe(1);
    oneError(r.stderr, /no running socket LB instance/, /svc daemon/);
    const s = await svc('start', '--config', '/no/such.yaml');
    expect(s.exitCode).toBe(1);
    oneError(s.stderr, /does not exist/, /config/);
  }, 60_000);
});

/**
 * An instance for one test: its name (tag + pid), a cgroup of its own and a config file in a temp
 * dir (`write` fills it). `daemon()` starts `svc daemon --config` on that file; `end()` kills every
 * daemon started, stops the instance, removes the dir and the cgroup.
 */
function instanceUnderTest(tag: string) {
  const inst = `${tag}${process.pid}`;
  const cg = path.join(cgroup2Root(), `ebpf-lab-svc-${tag}-${process.pid}`);
  createCgroup(cg);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `svc-${tag}-`));
  const f = path.join(dir, 'svc.yaml');
  const daemon = () => execa(NODE, [...LAB, 'svc', 'daemon', '--config', f], { reject: false, cwd: new URL('../..', import.meta.url).pathname, all: true, env: { EBPF_LAB_DEBUG: '' } });
  const started: ReturnType<typeof daemon>[] = [];
  return {
    inst, cg, f,
    state: `/run/ebpf-lab/svc-${inst}.json`,
    lock: `/run/ebpf-lab/svc-${inst}.lock`,
    write: (text: string) => fs.writeFileSync(f, text),
    daemon: () => {
      const d = daemon();
      started.push(d);
      return d;
    },
    async end() {
      for (const d of started) {
        d.kill('SIGKILL');
        await d;
      }
      await svc('stop', '--instance', inst);
      fs.rmSync(dir, { recursive: true, force: true });
      removeCgroup(cg);
    },
  };
}

describe.skipIf(process.getuid?.() !== 0 || !findCgroup2Root())('pnpm lab svc daemon (root)', () => {
  // --instance had a default of 'default', so an explicit `--instance default` could not be told
  // from none, and a config naming another instance won over it
  it('--instance wins over the config\'s instance, --instance default too; without it the config\'s is used', async (t) => {
    if (fs.existsSync('/run/ebpf-lab/svc-default.json')) return t.skip('a socket LB instance "default" runs on this machine: not touched');
    const named = `qc${process.pid}`;
    const cg = path.join(cgroup2Root(), `ebpf-lab-svc-in-${process.pid}`);
    createCgroup(cg);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svc-in-'));
    const f = path.join(dir, 'c.yaml');
    fs.writeFileSync(f, `instance: ${named}\ncgroup: ${cg}\nservices:\n  - vip: tcp://10.96.79.10:80\n    backends: [10.0.79.11:8080]\n`);
    try {
      for (const [args, used, not] of [[['--instance', 'default'], 'default', named], [[], named, 'default']] as const) {
        const r = await svc('start', '--config', f, ...args);
        expect(r.exitCode, r.stderr).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`started instance ${used}:`));
        expect(fs.existsSync(`/run/ebpf-lab/svc-${used}.json`), `instance ${used} runs`).toBe(true);
        expect(fs.existsSync(`/run/ebpf-lab/svc-${not}.json`), `instance ${not} does not`).toBe(false);
        expect((await svc('stop', '--instance', used)).exitCode).toBe(0);
      }
    } finally {
      for (const i of ['default', named]) if (fs.existsSync(`/run/ebpf-lab/svc-${i}.json`)) await svc('stop', '--instance', i);
      fs.rmSync(dir, { recursive: true, force: true });
      removeCgroup(cg);
    }
  }, 120_000);

  it('a second instance for the same services on the same or a nested cgroup is refused before it attaches anything', async () => {
    const [qa, qb] = [`qa${process.pid}`, `qb${process.pid}`];
    const cg = path.join(cgroup2Root(), `ebpf-lab-svc-ov-${process.pid}`);
    createCgroup(path.join(cg, 'kid'));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svc-ov-'));
    const cfg = (name: string, cgroup: string, vip: string) => {
      const f = path.join(dir, `${name}.yaml`);
      fs.writeFileSync(f, `cgroup: ${cgroup}\nservices:\n  - vip: ${vip}\n    backends: [10.0.78.11:8080]\n`);
      return f;
    };
    /** links on exactly this cgroup (bpftool cgroup show: a header line, then one per program) */
    const hooks = async (dir: string) => String((await execa('bpftool', ['cgroup', 'show', dir], { reject: false })).stdout).split('\n').filter((l) => /^\d+\s/.test(l.trim())).length;
    try {
      const a = await svc('start', '--config', cfg('a', cg, 'tcp://10.96.78.10:80'), '--instance', qa);
      expect(a.exitCode, a.stderr).toBe(0);
      const n = await hooks(cg);
      expect(n).toBeGreaterThanOrEqual(6);
      for (const [f, where] of [[cfg('same', cg, 'tcp://10.96.78.10:80'), /on the same cgroup/], [cfg('kid', path.join(cg, 'kid'), 'tcp://10.96.78.10:80'), /on \S+, which contains \S+\/kid;/]] as const) {
        const b = await svc('start', '--config', f, '--instance', qb);
        expect(b.exitCode).toBe(1);
        oneError(b.stderr, new RegExp(`instance "${qa}" already balances tcp://10\\.96\\.78\\.10:80 ${where.source}`), new RegExp(`svc stop --instance ${qa}.*nothing was attached`));
        expect(fs.existsSync(`/run/ebpf-lab/svc-${qb}.json`)).toBe(false);
        expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/svc-${qb}`)).toBe(false);
      }
      expect(await hooks(cg)).toBe(n);
      expect(await hooks(path.join(cg, 'kid'))).toBe(0);
      // qa's state unreadable: which cgroup and services it balances is unknown, so a start that
      // may overlap it is refused (it was skipped, as if nothing ran there)
      const st = `/run/ebpf-lab/svc-${qa}.json`;
      const good = fs.readFileSync(st, 'utf8');
      fs.writeFileSync(st, '{}');
      const u = await svc('start', '--config', cfg('other', cg, 'tcp://10.96.78.11:80'), '--instance', qb);
      fs.writeFileSync(st, good);
      expect(u.exitCode).toBe(1);
      oneError(u.stderr, new RegExp(`instance "${qa}" has programs attached, but its state file \\S+ cannot be read \\(no "cgroupPath"\\)`), new RegExp(`svc stop --instance ${qa} removes it.*nothing was attached`));
      expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/svc-${qb}`)).toBe(false);
      expect(await hooks(cg)).toBe(n);
      // other services on the same cgroup: each program leaves the other's VIPs alone
      const c = await svc('start', '--config', cfg('other', cg, 'tcp://10.96.78.11:80'), '--instance', qb);
      expect(c.exitCode, c.stderr).toBe(0);
      expect(await hooks(cg)).toBe(2 * n);
      // weight 0 on add, as in a config or svc backend weight: listed, no new connections
      const z = await svc('backend', 'add', 'tcp://10.96.78.10:80', '10.0.78.12:8080', '--weight', '0', '--instance', qa);
      expect(z.exitCode, z.stderr).toBe(0);
      expect((await svc('--instance', qa, 'list')).stdout).toMatch(/^ {2}10\.0\.78\.12:8080 {2}weight 0 {2}active$/m);
      const d = await svc('backend', 'add', 'tcp://10.96.78.10:80', '10.0.78.12:8080', '--instance', qa);
      expect(d.exitCode).toBe(1);
      oneError(d.stderr, /^error: tcp:\/\/10\.96\.78\.10:80 already has backend 10\.0\.78\.12:8080$/, new RegExp(`svc list --instance ${qa}`));
    } finally {
      for (const i of [qa, qb]) await svc('stop', '--instance', i);
      fs.rmSync(dir, { recursive: true, force: true });
      removeCgroup(cg);
    }
    expect(fs.existsSync(cg)).toBe(false);
  }, 120_000);

  // `svc stop` removed the pins and state without the instance's lock: a `svc backend add` that had
  // opened the instance wrote its state back afterwards, and the instance looked alive with no
  // pins behind it (its next command: an internal error opening a pinned map)
  it('svc stop waits for a writer holding the instance; a state file without pins is one line with the fix', async () => {
    const t = instanceUnderTest('sw');
    const { inst, f, lock } = t;
    t.write(`cgroup: ${t.cg}\nservices:\n  - vip: tcp://10.96.79.10:80\n    backends: [10.0.79.11:8080]\n`);
    let held = false;
    try {
      expect((await svc('start', '--config', f, '--instance', inst)).exitCode).toBe(0);
      expect(tryLock(lock)).toBe(true);
      held = true;
      const stop = svc('stop', '--instance', inst);
      await new Promise((r) => setTimeout(r, 1500));
      expect(fs.existsSync(`/run/ebpf-lab/svc-${inst}.json`), 'stop removed the instance under its lock').toBe(true);
      unlock(lock);
      held = false;
      const r = await stop;
      expect(r.exitCode, r.stderr).toBe(0);
      expect(fs.existsSync(`/run/ebpf-lab/svc-${inst}.json`)).toBe(false);
      expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/svc-${inst}`)).toBe(false);
      // a state file whose pins are gone (removed by hand, or by the race above)
      fs.writeFileSync(`/run/ebpf-lab/svc-${inst}.json`, '{}');
      const ghost = await svc('backend', 'add', 'tcp://10.96.79.10:80', '10.0.79.12:8080', '--instance', inst);
      expect(ghost.exitCode).toBe(1);
      oneError(ghost.stderr, new RegExp(`^error: socket LB instance "${inst}" has a state file but its pins under \\S+ are gone`), new RegExp(`svc stop --instance ${inst} removes what is left`));
      expect((await svc('stop', '--instance', inst)).exitCode).toBe(0);
      expect(fs.existsSync(`/run/ebpf-lab/svc-${inst}.json`)).toBe(false);
    } finally {
      if (held) unlock(lock);
      await t.end();
    }
  }, 60_000);

  // found by review (session 56): `svc start` took healthCheck: true and ran no checks, `list`
  // saying "health-checked"; a corrupt state file was "an internal error of the lab"; an instance
  // whose cgroup was removed (its programs with it) listed and changed as if it balanced
  it('svc start refuses health-checked services; a corrupt state file and a removed cgroup are named, with the way out', async () => {
    const t = instanceUnderTest('hq');
    const { inst, f } = t;
    try {
      t.write(`cgroup: ${t.cg}\nservices:\n  - vip: tcp://10.96.79.20:80\n    healthCheck: true\n    backends: [10.0.79.11:8080]\n`);
      const hc = await svc('start', '--config', f, '--instance', inst);
      expect(hc.exitCode).toBe(1);
      oneError(hc.stderr, /^error: tcp:\/\/10\.96\.79\.20:80 has healthCheck: true, and svc start runs no health checks/, new RegExp(`pnpm lab svc daemon --config ${f.replace(/[.]/g, '\\.')} --instance ${inst}, which checks them; or set healthCheck: false`));
      expect(fs.existsSync(t.state)).toBe(false);
      expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/svc-${inst}`)).toBe(false);
      t.write(`cgroup: ${t.cg}\nservices:\n  - vip: tcp://10.96.79.20:80\n    backends: [10.0.79.11:8080]\n`);
      expect((await svc('start', '--config', f, '--instance', inst)).exitCode).toBe(0);
      const good = fs.readFileSync(t.state, 'utf8');
      fs.writeFileSync(t.state, good.slice(0, Math.floor(good.length / 2)));
      const bad = await svc('list', '--instance', inst);
      expect(bad.exitCode).toBe(1);
      oneError(bad.stderr, new RegExp(`^error: socket LB instance "${inst}": its state file ${t.state.replace(/[.]/g, '\\.')} cannot be read`), new RegExp(`svc stop --instance ${inst} removes the instance`));
      // valid JSON of another shape: the same error, not a TypeError (review, session 63)
      fs.writeFileSync(t.state, '{}');
      const shape = await svc('list', '--instance', inst);
      expect(shape.exitCode).toBe(1);
      oneError(shape.stderr, new RegExp(`^error: socket LB instance "${inst}": its state file \\S+ cannot be read \\(no "config" with its instance and ringSize\\)`), new RegExp(`svc stop --instance ${inst} removes the instance`));
      fs.writeFileSync(t.state, good);
      removeCgroup(t.cg);
      const list = await svc('list', '--instance', inst);
      expect(list.exitCode).toBe(0);
      expect(list.stderr).toMatch(new RegExp(`note: instance ${inst}: its cgroup ${t.cg} was removed, and its programs with it: it balances nothing`));
      const add = await svc('backend', 'add', 'tcp://10.96.79.20:80', '10.0.79.12:8080', '--instance', inst);
      expect(add.exitCode).toBe(0);
      expect(add.stderr).toMatch(/its cgroup .* was removed/);
      // every backend drained: said, since every connect is then refused
      await svc('backend', 'drain', 'tcp://10.96.79.20:80', '10.0.79.11:8080', '--instance', inst);
      const last = await svc('backend', 'drain', 'tcp://10.96.79.20:80', '10.0.79.12:8080', '--instance', inst);
      expect(last.stderr).toMatch(/note: tcp:\/\/10\.96\.79\.20:80 has no active backend with a weight: every connection to it is refused/);
      expect((await svc('stop', '--instance', inst)).exitCode).toBe(0);
    } finally {
      createCgroup(t.cg);
      await t.end();
    }
  }, 90_000);

  // svc stop read the daemon record (a dead daemon's) before its lock and not again under it: a
  // daemon B that took the instance over in between (under the lock) had its pins and state
  // removed, and went on running with nothing balanced. The race is made certain here: the test
  // holds the lock while stop waits, with the record as it was before B's takeover, and puts B's
  // record back (what B's takeover does under the lock) before letting stop in.
  it('svc stop racing a daemon\'s takeover stops the daemon that owns the instance by then', async () => {
    const t = instanceUnderTest('tk');
    const { inst, state, lock } = t;
    t.write(`cgroup: ${t.cg}\ninstance: ${inst}\nservices:\n  - vip: tcp://10.96.76.10:80\n    backends: [10.0.76.11:8080]\n`);
    let held = false;
    try {
      const a = t.daemon();
      await untilReady(a, collectOutput([a.all]), /"ready":true/, 30_000, 'svc daemon A');
      const beforeTakeover = fs.readFileSync(state, 'utf8');
      a.kill('SIGKILL');
      await a;
      const b = t.daemon();
      const out = collectOutput([b.all]);
      await untilReady(b, out, /"ready":true/, 30_000, 'svc daemon B');
      expect(out()).toMatch(/took over instance/);
      const afterTakeover = fs.readFileSync(state, 'utf8');
      expect(tryLock(lock)).toBe(true);
      held = true;
      fs.writeFileSync(state, beforeTakeover);
      const stop = svc('stop', '--instance', inst);
      await new Promise((r) => setTimeout(r, 1500)); // stop has read the dead daemon's record and waits for the lock
      fs.writeFileSync(state, afterTakeover);
      unlock(lock);
      held = false;
      const r = await stop;
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`stopped instance ${inst}: its svc daemon (pid ${b.pid}) exited and removed it`);
      expect(r.exitCode).toBe(0);
      const end = await b;
      expect(end.exitCode).toBe(0);
      expect(fs.existsSync(state)).toBe(false);
      expect(fs.existsSync(`/sys/fs/bpf/ebpf-lab/svc-${inst}`)).toBe(false);
    } finally {
      if (held) unlock(lock);
      await t.end();
    }
  }, 90_000);

  // A start killed between pinning its links and writing its state left programs attached that
  // `svc list` and `svc stop` could not see ("no running instance"), and the next start failed with
  // an internal EEXIST pinning over them. The state a killed start leaves: a started instance whose
  // state file is gone.
  it('an instance cut short while starting (pins, no state): list names it, stop and a new start remove it', async () => {
    const t = instanceUnderTest('cut');
    const { inst } = t;
    const pins = `/sys/fs/bpf/ebpf-lab/svc-${inst}`;
    const ours = async () => (await execa('bpftool', ['cgroup', 'show', t.cg], { reject: false })).stdout.split('\n').filter((l) => /svc_/.test(l)).length;
    const startCut = async () => {
      const r = await svc('start', '--config', t.f);
      expect(r.exitCode, r.stderr).toBe(0);
      fs.rmSync(t.state);
      expect(await ours()).toBeGreaterThan(0);
    };
    try {
      t.write(`cgroup: ${t.cg}\ninstance: ${inst}\nservices:\n  - vip: tcp://10.96.76.10:80\n    backends: [10.0.76.11:8080]\n`);
      await startCut();
      const l = await svc('list', '--instance', inst);
      expect(l.exitCode).toBe(1);
      oneError(l.stderr, new RegExp(`socket LB instance "${inst}" was cut short while starting: \\d+ program\\(s\\) still attached from its pins under ${pins}`), new RegExp(`pnpm lab svc stop --instance ${inst} removes it`));
      const st = await svc('stop', '--instance', inst);
      expect(st.exitCode, st.stderr).toBe(0);
      expect(st.stdout).toMatch(new RegExp(`^stopped: instance ${inst} had been cut short while starting; its \\d+ program\\(s\\) detached and its pins removed$`));
      expect(fs.existsSync(pins)).toBe(false);
      expect(await ours()).toBe(0);
      // a new start over what one cut short left: removed first, then started as usual
      await startCut();
      const again = await svc('start', '--config', t.f);
      expect(again.exitCode, again.stderr).toBe(0);
      expect(again.stderr).toMatch(new RegExp(`removed what a start of instance ${inst} that was cut short left attached`));
      expect((await svc('list', '--instance', inst)).stdout).toMatch(/^tcp:\/\/10\.96\.76\.10:80/m);
      expect((await svc('stop', '--instance', inst)).exitCode).toBe(0);
      expect(await ours()).toBe(0);
      expect(fs.existsSync(pins)).toBe(false);
    } finally {
      await t.end();
    }
  }, 90_000);

  // A takeover that swapped one VIP for another at maxServices was refused ("service table full"):
  // the removed service's index stayed taken during the change. And the fix line of such an error
  // named --instance default, not the config's instance. A backend swap at maxBackends was refused
  // too ("backend table full"): the new backend needs an id no ring reads until the switch, and the
  // table had only maxBackends ids, all read. It has as many spare ones now.
  it('takeovers swapping a VIP at maxServices and a backend at maxBackends are applied; the freed id is reused by a later change', async () => {
    const t = instanceUnderTest('sx');
    const { inst } = t;
    const write = (vip: string, backend: string) => t.write(`cgroup: ${t.cg}\ninstance: ${inst}\nmaxServices: 1\nmaxBackends: 1\nservices:\n  - vip: ${vip}\n    backends: [${backend}]\n`);
    const takeOver = async (name: string, prev: ReturnType<typeof t.daemon>) => {
      prev.kill('SIGKILL');
      await prev;
      // meanwhile the list says who is not checking its backends any more
      const orphan = await svc('list', '--instance', inst);
      expect(orphan.exitCode).toBe(0);
      expect(orphan.stderr).toMatch(new RegExp(`^note: its svc daemon \\(pid ${prev.pid}\\) is gone: the services below are balanced as listed, but no health check runs`));
      const d = t.daemon();
      const out = collectOutput([d.all]);
      await untilReady(d, out, /"ready":true/, 30_000, `svc daemon ${name}`);
      expect(out()).toMatch(new RegExp(`took over instance ${inst} from svc daemon pid ${prev.pid}`));
      return { d }; // not the subprocess itself: awaiting that waits for its exit
    };
    /** the backend every slot of the service's live ring names, as the kernel holds it: its id and address */
    const inForce = (vip: string) => {
      const c = SvcController.open(inst);
      try {
        const spec = parseVip(vip);
        const v = c.maps.services.get({ addr: addrBytes(spec.address), port: ((spec.port & 0xff) << 8) | (spec.port >> 8), proto: 6, family: 4 })!;
        const base = (v.index * 2 + v.half) * c.model.config.ringSize;
        const ids = new Set(Array.from({ length: v.count }, (_, i) => c.maps.svc_ring.get(base + i)));
        expect(ids.size).toBe(1);
        const id = [...ids][0]!;
        const b = c.maps.backends.get(id)!;
        return `${id} ${[...b.addr.subarray(0, 4)].join('.')}:${(b.port >> 8) | ((b.port & 0xff) << 8)}`;
      } finally {
        c.close();
      }
    };
    try {
      write('tcp://10.96.75.10:80', '10.0.75.11:8080');
      const a = t.daemon();
      await untilReady(a, collectOutput([a.all]), /"ready":true/, 30_000, 'svc daemon A');
      write('tcp://10.96.75.20:80', '10.0.75.11:8080');
      const { d: b } = await takeOver('B', a);
      expect((await svc('list', '--instance', inst)).stdout).toMatch(/^tcp:\/\/10\.96\.75\.20:80 {2}\(maglev/m);
      expect((await svc('list', '--instance', inst)).stdout).not.toMatch(/10\.96\.75\.10/);
      expect(inForce('tcp://10.96.75.20:80')).toBe('0 10.0.75.11:8080');
      // the swap: the new backend takes a spare id, written before the service switches to it
      write('tcp://10.96.75.20:80', '10.0.75.12:8080');
      const { d: c } = await takeOver('C', b);
      expect((await svc('list', '--instance', inst)).stdout).toMatch(/^ {2}10\.0\.75\.12:8080 {2}weight 1 {2}active$/m);
      expect((await svc('list', '--instance', inst)).stdout).not.toMatch(/10\.0\.75\.11/);
      expect(inForce('tcp://10.96.75.20:80')).toBe('1 10.0.75.12:8080');
      // and back: id 0, read by no ring since the last switch, is free again
      write('tcp://10.96.75.20:80', '10.0.75.11:8080');
      await takeOver('D', c);
      expect(inForce('tcp://10.96.75.20:80')).toBe('0 10.0.75.11:8080');
      // past maxBackends once the change is in: refused, naming the limit and the instance in use
      const over = await svc('backend', 'add', 'tcp://10.96.75.20:80', '10.0.75.13:8080', '--instance', inst);
      expect(over.exitCode).toBe(1);
      oneError(over.stderr, /^error: backend table full \(maxBackends 1\): the change would list 2 distinct backends$/, new RegExp(`^ {2}fix: remove a backend first \\(pnpm lab svc backend remove …\\), or restart the instance with a larger maxBackends in its config \\(pnpm lab svc stop --instance ${inst}, then start it again\\); nothing was changed$`));
    } finally {
      await t.end();
    }
  }, 90_000);

  // An instance started before the spare ids has a table of maxBackends ids: a swap at the limit
  // cannot be made safely there. The refusal says what to do (restart) and names the instance.
  it('a backend swap at maxBackends on a table without spare ids is refused with the fix, the instance left as it was', async () => {
    const t = instanceUnderTest('sn');
    const { inst } = t;
    const cfg = (backend: string) => ({ cgroup: t.cg, instance: inst, maxBackends: 1, services: [{ vip: 'tcp://10.96.73.10:80', backends: [backend] }] });
    try {
      // the old build's instance, left by a daemon that died (its record names a process that is gone)
      const old = await SvcController.start(cfg('10.0.73.11:8080'), { pin: true, daemon: true, testNoSpareIds: true });
      expect(old.maps.backends.meta.maxEntries).toBe(1);
      old.model.daemon = { pid: old.model.daemon!.pid, startTime: 'gone' };
      old.saveState();
      old.close();
      const before = fs.readFileSync(`/run/ebpf-lab/svc-${inst}.json`, 'utf8');
      t.write(JSON.stringify(cfg('10.0.73.12:8080')));
      const d = await t.daemon();
      expect(d.exitCode).toBe(1);
      oneError(String(d.all), /^error: backend table full during the switch: the new backend\(s\) need ids of their own while the rings still read the ones they replace, and this instance's table has only maxBackends \(1\) ids/, new RegExp(`^ {2}fix: restart the instance to get a table with room for the switch: pnpm lab svc stop --instance ${inst}, then start it again`));
      expect(fs.readFileSync(`/run/ebpf-lab/svc-${inst}.json`, 'utf8')).toBe(before);
      expect((await svc('list', '--instance', inst)).stdout).toMatch(/^ {2}10\.0\.73\.11:8080 /m);
    } finally {
      await t.end();
    }
  }, 90_000);

  // Validation refuses ::ffff:a.b.c.d and zone ids now, but an instance started by an older build
  // still lists such entries in its state file: `svc backend remove` failed with the parser's
  // refusal, so only `svc stop` (or a takeover's config) could take them out.
  it('backends and services an older build took are removed, drained and weighted by name; adding them stays refused', async () => {
    const t = instanceUnderTest('ho');
    const { inst, f } = t;
    t.write(`cgroup: ${t.cg}\ninstance: ${inst}\nservices:\n  - vip: tcp://10.96.74.20:80\n    backends: [10.0.74.11:8080]\n`);
    const OLD = 'tcp://[::ffff:10.96.74.10]:80';
    try {
      expect((await svc('start', '--config', f)).exitCode).toBe(0);
      // what the old parse made of the service: an IPv6 VIP over the mapped bytes, a mapped backend,
      // and fe80::1 from fe80::1%eth0 (the zone dropped); written through the controller, past validation
      const c = SvcController.open(inst);
      try {
        const spec = { protocol: 'tcp' as const, address: '::ffff:a60:4a0a', port: 80, family: 6 as const };
        c.applyServices([{ ...spec, id: vipString(spec), algorithm: 'maglev', healthCheck: false, backends: ['::ffff:a00:4a0b', 'fe80::1', 'fd00::74:12'].map((address) => ({ address, port: 8080, weight: 1 })) }], []);
      } finally {
        c.close();
      }
      const held = () => (JSON.parse(fs.readFileSync(`/run/ebpf-lab/svc-${inst}.json`, 'utf8')) as { services: Record<string, { backends: { address: string; weight: number; state: string }[] }> }).services['tcp://[::ffff:a60:4a0a]:80']!.backends;
      expect(held().map((b) => b.address)).toEqual(['::ffff:a00:4a0b', 'fe80::1', 'fd00::74:12']);
      const add = await svc('backend', 'add', OLD, '[fd00::74:13]:8080', '--instance', inst);
      expect(add.exitCode).toBe(2);
      oneError(add.stderr, /IPv4-mapped IPv6 address .*; write 10\.96\.74\.10$/, /svc backend add/);
      const notHeld = await svc('backend', 'remove', OLD, '[::ffff:10.0.74.99]:8080', '--instance', inst);
      expect(notHeld.exitCode).toBe(1);
      oneError(notHeld.stderr, /IPv4-mapped IPv6 address .*; write 10\.0\.74\.99$/, /./);
      for (const args of [['drain', '[fe80::1%eth0]:8080'], ['weight', '[::ffff:10.0.74.11]:8080', '2']]) {
        const r = await svc('backend', ...args.slice(0, 1), OLD, ...args.slice(1), '--instance', inst);
        expect(r.exitCode, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      }
      expect(held().map((b) => `${b.address} ${b.weight} ${b.state}`)).toEqual(['::ffff:a00:4a0b 2 active', 'fe80::1 1 draining', 'fd00::74:12 1 active']);
      for (const a of ['[::ffff:10.0.74.11]:8080', '[fe80::1%eth0]:8080']) {
        const r = await svc('backend', 'remove', OLD, a, '--instance', inst);
        expect(r.exitCode, `${a}: ${r.stderr}`).toBe(0);
      }
      expect(held().map((b) => b.address)).toEqual(['fd00::74:12']);
      // and the service itself, as a takeover whose config lacks it removes it
      const c2 = SvcController.open(inst);
      try {
        c2.removeService(OLD);
        expect(c2.maps.services.get({ addr: addrBytes('::ffff:10.96.74.10'), port: 80 << 8, proto: 6, family: 6 })).toBeUndefined();
      } finally {
        c2.close();
      }
      expect((await svc('list', '--instance', inst)).stdout).not.toMatch(/ffff/);
    } finally {
      await t.end();
    }
  }, 90_000);

  it('stays in the foreground without health checks until SIGTERM, then removes its instance', async () => {
    const t = instanceUnderTest('fg');
    const { inst } = t;
    t.write(`cgroup: ${t.cg}\ninstance: ${inst}\nservices:\n  - vip: tcp://10.96.77.10:80\n    backends: [10.0.77.11:8080]\n`);
    const d = t.daemon();
    try {
      const out = collectOutput([d.all]);
      await untilReady(d, out, /"ready":true/, 30_000, 'svc daemon');
      await new Promise((r) => setTimeout(r, 1500));
      expect(d.exitCode, `the daemon exited on its own: ${out()}`).toBeNull();
      const l = await svc('list', '--instance', inst);
      expect(l.exitCode, l.stderr).toBe(0);
      expect(l.stdout).toMatch(/tcp:\/\/10\.96\.77\.10:80/);
      d.kill('SIGTERM');
      const r = await d;
      expect(r.exitCode).toBe(0);
      expect(fs.existsSync(`/run/ebpf-lab/svc-${inst}.json`)).toBe(false);
    } finally {
      await t.end();
    }
  }, 90_000);
});
