import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LAB_V8_FLAGS, REPO_ROOT, labCliArgv } from './dist.ts';

describe('how lab processes start', () => {
  it('`pnpm lab` and a lab child started by labCliArgv() get the same V8 flags', () => {
    const script = (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.lab!;
    const words = script.split(/\s+/);
    // node flags go before the program, or node takes them as the program's arguments
    const cli = words.indexOf('lab/cli.ts');
    expect(cli).toBeGreaterThan(0);
    for (const f of LAB_V8_FLAGS) expect(words.slice(0, cli), `package.json "lab": ${script}`).toContain(f);
    const argv = labCliArgv();
    expect(argv[0]).toBe(process.execPath);
    expect(argv.slice(1, 1 + LAB_V8_FLAGS.length)).toEqual(LAB_V8_FLAGS);
    expect(argv.at(-1)).toMatch(/lab[/\\]cli\.(ts|js)$/);
  });
});

describe.skipIf(process.getuid?.() !== 0)('`pnpm lab` and Ctrl-C (root: runs hello-openat on this kernel)', () => {
  /**
   * the node process that runs lab/cli.ts: not the `sh -c` pnpm puts in front, and not a child the
   * lab is spawning at that moment (between fork and exec a child is a `node` with the lab's command
   * line: CI once caught one), so the node whose parent is not itself a match. Pids wrap, so not the
   * smallest either.
   */
  const labPid = (out: string) => {
    const pids = spawnSync('pgrep', ['-f', `lab/cli.ts run hello-openat --kernel host --out ${out}`], { encoding: 'utf8' }).stdout.trim().split('\n').map(Number);
    const stat = (p: number) => {
      try {
        // comm may hold spaces or parens: the fields after the last ')' are state, ppid, …
        const s = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
        return { comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')), ppid: Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]) };
      } catch {
        return undefined;
      }
    };
    const nodes = new Map(pids.map((p) => [p, stat(p)] as const).filter(([, s]) => s?.comm === 'node'));
    const node = [...nodes].filter(([, s]) => !nodes.has(s!.ppid)).map(([p]) => p);
    expect(node, `pgrep found ${pids.join(', ')}`).toHaveLength(1);
    return node[0]!;
  };
  /** resolves once `pid` has exited (or after 80 s: past the runner's 60 s stop watchdog) */
  const gone = async (pid: number) => {
    for (let i = 0; i < 800; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  /** a live process's threads (name, state, kernel wait channel) and open fds; '' once it is gone */
  const procState = (pid: number) => {
    try {
      const tasks = fs.readdirSync(`/proc/${pid}/task`).map((t) => {
        const r = (f: string) => {
          try {
            return fs.readFileSync(`/proc/${pid}/task/${t}/${f}`, 'utf8').trim();
          } catch {
            return '?';
          }
        };
        return `  ${t} ${r('comm')} ${r('stat').split(') ')[1]?.split(' ')[0] ?? '?'} ${r('wchan')}`;
      });
      const fds = fs.readdirSync(`/proc/${pid}/fd`).map((f) => {
        try {
          return `${f}→${fs.readlinkSync(`/proc/${pid}/fd/${f}`)}`;
        } catch {
          return f;
        }
      });
      return `threads:\n${tasks.join('\n')}\nfds: ${fds.join(' ')}`;
    } catch {
      return '';
    }
  };
  /** package.json's "lab" script: what `pnpm lab` runs through sh */
  const labScript = () => (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.lab!;
  const helloTemps = () => new Set(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('ebpf-lab-hello-')));
  /** the run was stopped by `sig`, wrote its ERROR report, and its cleanups removed its temp dir */
  const stoppedCleanly = (out: string, sig: string, before: Set<string>, log: string) => {
    // the runner's stop watchdog fired: what kept the process alive, for the failure message
    const diag = path.join(out, 'stop-diagnostic.json');
    if (fs.existsSync(diag)) {
      const d = JSON.parse(fs.readFileSync(diag, 'utf8')) as { javascriptStack?: unknown; libuv?: { type: string; is_active?: boolean; is_referenced?: boolean }[] };
      const held = fs.existsSync(path.join(out, 'stop-held.json')) ? fs.readFileSync(path.join(out, 'stop-held.json'), 'utf8') : '(no stop-held.json)';
      expect.fail(`the stop hung until the watchdog: ${held}; stack ${JSON.stringify(d.javascriptStack)}; active libuv handles ${JSON.stringify(d.libuv?.filter((h) => h.is_active))}\n${log}`);
    }
    expect(fs.existsSync(path.join(out, 'report.html')), log).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')).error).toMatch(new RegExp(`interrupted by ${sig}`));
    expect([...helloTemps()].filter((f) => !before.has(f))).toEqual([]);
  };

  // The "lab" script once ran through the tsx CLI, a parent process that relays a signal to the
  // lab and SIGKILLs it unless the lab acknowledges within ~60 ms — which it cannot while its event
  // loop is busy (a BPF load, a sync tool call). A Ctrl-C there killed the run with no cleanup and
  // no report (the security scenario leaked its cgroups and temp dir that way). The lab process is
  // stopped here (SIGSTOP: as busy as it gets) while the whole process group gets SIGINT, as from a
  // terminal, then continued: it must still stop cleanly and write its ERROR report.
  // The same Ctrl-C ends esbuild's service, which tsx transpiles with (a child in the group): the
  // report module, first imported after the stop, failed and the run hung until the stop watchdog
  // with no report. Only with tsx's cache cold (a fresh checkout; the full suite, whose other runs
  // start from the bundle), so the run here has it off. A failure message carries what the
  // watchdog saw (the stop's phase, active resources) and the lab's threads and fds while it hung.
  it('a Ctrl-C that lands while the lab is busy still cleans up and writes the report', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-sigint-'));
    const out = path.join(dir, 'run');
    const before = helloTemps();
    try {
      // tsx's cache off: every module is transpiled on its first import, as on a fresh checkout
      const p = spawn('pnpm', ['-s', 'lab', 'run', 'hello-openat', '--kernel', 'host', '--out', out], { cwd: REPO_ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TSX_DISABLE_CACHE: '1' } });
      let log = '';
      p.stdout.on('data', (d: Buffer) => (log += d.toString()));
      p.stderr.on('data', (d: Buffer) => (log += d.toString()));
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      for (let i = 0; i < 600 && !log.includes('paced load') && p.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      expect(log, `the run ended before its paced load (exit ${p.exitCode}):\n${log}`).toContain('paced load');
      const lab = labPid(out);
      expect(lab).toBeGreaterThan(1);
      process.kill(lab, 'SIGSTOP');
      process.kill(-p.pid!, 'SIGINT');
      await new Promise((r) => setTimeout(r, 300));
      try {
        process.kill(lab, 'SIGCONT');
      } catch { /* killed meanwhile: the failure the next lines show */ }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
      // still there 20 s on: its threads and fds as they are now, for the failure message
      const stuck = procState(lab);
      await gone(lab);
      // what is left of the group, if anything, for the failure message
      const left = spawnSync('ps', ['-o', 'pid,ppid,stat,args', '-g', String(p.pid)], { encoding: 'utf8' }).stdout;
      expect(log, `${log}\nleft in the group:\n${left}`).toMatch(/SIGINT: stopping and cleaning up/);
      stoppedCleanly(out, 'SIGINT', before, `${log}${stuck ? `\nthe lab 20 s after the stop:\n${stuck}` : ''}`);
      // what a shell sees of a Ctrl-C'd run through pnpm: 128 + SIGINT, not a failure's 1
      expect(p.exitCode, log).toBe(130);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);

  // A stop that does not finish (a cleanup that hangs) ends at the runner's watchdog; the checks
  // made before the stop are still written, with where it was held. In a guest the host kills a
  // run that does not stop within its grace (90 s under TCG): CI once saw a Ctrl-C'd guest run
  // held past it, and its report had no checks. The guest's runner now gets a limit inside that
  // grace (EBPF_LAB_STOP_LIMIT_MS, lab/vm/guest.ts); here a short one and a cleanup that holds.
  it('a stop held past its limit still writes the checks made before it, and where it was held', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-held-'));
    const out = path.join(dir, 'run');
    try {
      const env = { ...process.env, EBPF_LAB_STOP_LIMIT_MS: '4000', EBPF_LAB_TEST_HOLD_STOP_MS: '600000' };
      // the lab itself (no pnpm in front), so its exit code is the run's
      const [node, ...cli] = labCliArgv();
      const p = spawn(node!, [...cli, 'run', 'hello-openat', '--kernel', 'host', '--out', out], { cwd: REPO_ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
      let log = '';
      p.stdout.on('data', (d: Buffer) => (log += d.toString()));
      p.stderr.on('data', (d: Buffer) => (log += d.toString()));
      const exited = new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
      for (let i = 0; i < 600 && !log.includes('paced load') && p.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      expect(log, `the run ended before its paced load (exit ${p.exitCode}):\n${log}`).toContain('paced load');
      const t0 = Date.now();
      process.kill(-p.pid!, 'SIGINT');
      const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 60_000))]);
      if (code === 'hung') process.kill(-p.pid!, 'SIGKILL');
      expect(code, log).toBe(130); // 128 + SIGINT: stopped, told apart from a failure
      // the limit, not the 10-minute hold
      expect(Date.now() - t0, log).toBeLessThan(40_000);
      expect(log).toMatch(/the stop did not finish within 4 s: exiting now/);
      const r = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) as { status: string; error: string; stoppedBy?: string; checks: { name: string; status: string }[] };
      expect(r.status).toBe('error');
      expect(r.stoppedBy, 'a stop, told apart from a failure').toBe('SIGINT');
      expect(r.error).toMatch(/^interrupted by SIGINT; the stop did not finish within 4 s \(held in the cleanups, cleanup "a held stop/);
      expect(r.checks.filter((c) => c.status === 'pass').map((c) => c.name)).toEqual(['openat event arrives through the ring buffer', 'event carries our pid, thread and comm']);
      expect(JSON.parse(fs.readFileSync(path.join(out, 'stop-held.json'), 'utf8')).cleanup).toMatch(/^a held stop/);
      // the scenario's own cleanups ran before the held one: no generator left
      expect(spawnSync('pgrep', ['-f', out], { encoding: 'utf8' }).stdout.trim()).toBe('');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);

  // A run killed outright (SIGKILL: no cleanup, no report) left an empty reports/<run-id>/ for
  // good. The next run writes the report it could not, saying it was killed.
  it('the report of a run killed outright is written by the next run, saying so', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-killed-'));
    const reports = path.join(REPO_ROOT, 'reports');
    let killedDir = '';
    try {
      const [node, ...cli] = labCliArgv();
      const p = spawn(node!, [...cli, 'run', 'hello-openat', '--kernel', 'host', '--load-ms', '30000'], { cwd: REPO_ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      let log = '';
      p.stdout.on('data', (d: Buffer) => (log += d.toString()));
      p.stderr.on('data', (d: Buffer) => (log += d.toString()));
      const exited = new Promise((r) => p.once('exit', r));
      for (let i = 0; i < 600 && !log.includes('paced load') && p.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      expect(log, `the run ended before its paced load:\n${log}`).toContain('paced load');
      const mine = () => fs.readdirSync(reports).find((d) => {
        try {
          return JSON.parse(fs.readFileSync(path.join(reports, d, 'running.json'), 'utf8')).pid === p.pid;
        } catch {
          return false;
        }
      });
      killedDir = mine() ?? '';
      expect(killedDir, 'the running run names itself in its directory').not.toBe('');
      process.kill(-p.pid!, 'SIGKILL');
      await exited;
      expect(fs.existsSync(path.join(reports, killedDir, 'results.json'))).toBe(false);
      const next = spawnSync(node!, [...cli, 'run', 'hello-openat', '--kernel', 'host', '--out', path.join(dir, 'next')], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 120_000 });
      expect(next.status, next.stdout + next.stderr).toBe(0);
      expect(next.stdout + next.stderr).toMatch(new RegExp(`wrote the report of \\d+ run\\(s\\) killed outright before they could: .*reports/${killedDir}`));
      const r = JSON.parse(fs.readFileSync(path.join(reports, killedDir, 'results.json'), 'utf8'));
      expect([r.status, r.stoppedBy, r.scenario]).toEqual(['error', 'killed', 'hello-openat']);
      expect(r.error).toMatch(new RegExp(`^killed outright \\(pid ${p.pid}: `));
      expect(fs.readFileSync(path.join(reports, killedDir, 'report.html'), 'utf8')).toContain('Stopped (killed) before the scenario finished');
      expect(fs.existsSync(path.join(reports, killedDir, 'running.json'))).toBe(false);
      // a finished run leaves no running.json behind
      expect(fs.readdirSync(path.join(dir, 'next'))).not.toContain('running.json');
    } finally {
      if (killedDir) fs.rmSync(path.join(reports, killedDir), { recursive: true, force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);

  // A terminal or ssh session that goes away (SIGHUP, then EIO on every write to it) stops the run
  // like a Ctrl-C. Before, the hangup was ignored and the next progress line crashed the run with no
  // cleanup and no report. `script` gives the run a terminal; killing it hangs that terminal up.
  it('a hung-up terminal stops the run like Ctrl-C: cleaned up, ERROR report written', async (ctx) => {
    if (spawnSync('script', ['--version']).status !== 0) ctx.skip('script(1) (util-linux) is not installed');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-sighup-'));
    const out = path.join(dir, 'run');
    const typescript = path.join(dir, 'tty.log');
    const before = helloTemps();
    try {
      // tsx's cache off, as in the Ctrl-C test above: the hangup reaches esbuild's service too.
      // package.json's "lab" command as pnpm runs it (sh -c), under a shell that outlives the
      // hangup to record the lab's exit status: a hangup once crashed the lab at exit (SIGSEGV in
      // Node's terminal reset, after the report; common/stdio.ts releaseDeadTerminalAtExit)
      const rcFile = path.join(dir, 'rc');
      const cmd = `${labScript()} run hello-openat --kernel host --out ${out}`;
      // (`; true`: the shell script starts stays the session leader, whose exit on the hangup sends
      // the foreground group its SIGHUP, as a login shell's does)
      // (the script in a shell of its own, as pnpm runs it: it execs node, which would replace the
      // shell that records the status)
      const p = spawn('script', ['-qfc', `sh -c 'trap "" HUP; sh -c "${cmd}"; echo $? > ${rcFile}'; true`, typescript], { cwd: REPO_ROOT, detached: true, stdio: 'ignore', env: { ...process.env, TSX_DISABLE_CACHE: '1' } });
      const log = () => (fs.existsSync(typescript) ? fs.readFileSync(typescript, 'utf8') : '');
      for (let i = 0; i < 600 && !log().includes('paced load'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(log()).toContain('paced load');
      const lab = labPid(out);
      process.kill(p.pid!, 'SIGKILL'); // the terminal's master side closes: a hangup
      await gone(lab);
      stoppedCleanly(out, 'SIGHUP', before, log());
      for (let i = 0; i < 50 && !fs.existsSync(rcFile); i++) await new Promise((r) => setTimeout(r, 100));
      expect(fs.readFileSync(rcFile, 'utf8').trim(), 'exit status of the stopped run (139: crashed at exit)').toBe('129'); // 128 + SIGHUP
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
