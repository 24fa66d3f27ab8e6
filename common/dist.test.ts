import fs from 'node:fs';
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
  // The "lab" script once ran through the tsx CLI, a parent process that relays a signal to the
  // lab and SIGKILLs it unless the lab acknowledges within ~60 ms — which it cannot while its event
  // loop is busy (a BPF load, a sync tool call). A Ctrl-C there killed the run with no cleanup and
  // no report (the security scenario leaked its cgroups and temp dir that way). The lab process is
  // stopped here (SIGSTOP: as busy as it gets) while the whole process group gets SIGINT, as from a
  // terminal, then continued: it must still stop cleanly and write its ERROR report.
  it('a Ctrl-C that lands while the lab is busy still cleans up and writes the report', async () => {
    const { spawn, execFileSync } = await import('node:child_process');
    const os = await import('node:os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-sigint-'));
    const out = path.join(dir, 'run');
    const temps = () => new Set(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('ebpf-lab-hello-')));
    const before = temps();
    try {
      const p = spawn('pnpm', ['-s', 'lab', 'run', 'hello-openat', '--kernel', 'host', '--out', out], { cwd: REPO_ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      let log = '';
      p.stdout.on('data', (d: Buffer) => (log += d.toString()));
      p.stderr.on('data', (d: Buffer) => (log += d.toString()));
      const exited = new Promise<void>((r) => p.once('close', () => r()));
      for (let i = 0; i < 600 && !log.includes('paced load') && p.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      expect(log).toContain('paced load');
      // the process that runs lab/cli.ts: the last one started with it in its command line
      const pids = execFileSync('pgrep', ['-f', `lab/cli.ts run hello-openat --kernel host --out ${out}`], { encoding: 'utf8' }).trim().split('\n').map(Number);
      const lab = Math.max(...pids);
      process.kill(lab, 'SIGSTOP');
      process.kill(-p.pid!, 'SIGINT');
      await new Promise((r) => setTimeout(r, 300));
      try {
        process.kill(lab, 'SIGCONT');
      } catch { /* killed meanwhile: the failure the next lines show */ }
      await exited;
      for (let i = 0; i < 100; i++) {
        try {
          process.kill(lab, 0);
          await new Promise((r) => setTimeout(r, 100));
        } catch {
          break;
        }
      }
      expect(log, log).toMatch(/SIGINT: stopping and cleaning up/);
      expect(fs.existsSync(path.join(out, 'report.html')), log).toBe(true);
      expect(JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')).error).toMatch(/interrupted by SIGINT/);
      // its cleanups ran: the scenario's temp dir is gone
      expect([...temps()].filter((f) => !before.has(f))).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  // A terminal or ssh session that goes away (SIGHUP, then EIO on every write to it) stops the run
  // like a Ctrl-C. Before, the hangup was ignored and the next progress line crashed the run with no
  // cleanup and no report. `script` gives the run a terminal; killing it hangs that terminal up.
  it('a hung-up terminal stops the run like Ctrl-C: cleaned up, ERROR report written', async (ctx) => {
    const { spawn, spawnSync } = await import('node:child_process');
    if (spawnSync('script', ['--version']).status !== 0) ctx.skip('script(1) (util-linux) is not installed');
    const os = await import('node:os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-sighup-'));
    const out = path.join(dir, 'run');
    const typescript = path.join(dir, 'tty.log');
    const temps = () => new Set(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('ebpf-lab-hello-')));
    const before = temps();
    try {
      const p = spawn('script', ['-qfc', `pnpm -s lab run hello-openat --kernel host --out ${out}`, typescript], { cwd: REPO_ROOT, detached: true, stdio: 'ignore' });
      const log = () => (fs.existsSync(typescript) ? fs.readFileSync(typescript, 'utf8') : '');
      for (let i = 0; i < 600 && !log().includes('paced load'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(log()).toContain('paced load');
      const lab = Math.max(...spawnSync('pgrep', ['-f', `lab/cli.ts run hello-openat --kernel host --out ${out}`], { encoding: 'utf8' }).stdout.trim().split('\n').map(Number));
      process.kill(p.pid!, 'SIGKILL'); // the terminal's master side closes: a hangup
      for (let i = 0; i < 200; i++) {
        try {
          process.kill(lab, 0);
          await new Promise((r) => setTimeout(r, 100));
        } catch {
          break;
        }
      }
      expect(fs.existsSync(path.join(out, 'report.html')), log()).toBe(true);
      expect(JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')).error).toMatch(/interrupted by SIGHUP/);
      expect([...temps()].filter((f) => !before.has(f))).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
