// The commands users run, end to end, as CI's proof (issue: xdp-lb --kernel 6.1 once shipped
// green while it failed in every VM). Each is a real `pnpm lab …` process: the scenario in a
// guest under TCG here (KVM where the runner has it), its results.json and report read back.
//   - pnpm lab run xdp-lb --kernel 6.1, pnpm lab run security --kernel 6.1
//   - a capability that arrived later, on 6.1: socket-lb (10 and 1,000 services: 10,000 under
//     TCG alone takes minutes). energy is not here yet: `pnpm lab run energy --kernel 6.1` passed
//     three runs in a row (~1 min under TCG, reports/20261130-064104-energy-6.1), but its first run
//     from this file hung in the guest after starting the workloads until SIGINT at 9 min
//     (reports/e2e-EdhmR5; no kernel message), cause not found
//   - pnpm lab matrix --kernels 5.10,6.1,6.12,7.x,host --scenarios hello-openat
//   - Ctrl-C during a VM run still leaves an ERROR report and no guest
// Slow (minutes); EBPF_LAB_SKIP_E2E=1 skips it for a quick local loop.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { labCliArgv, REPO_ROOT } from './dist.ts';
import type { Results } from './results.ts';

const hasQemu = spawnSync('qemu-system-x86_64', ['--version']).status === 0;
const skip = process.getuid?.() !== 0 ? 'needs root' : !hasQemu ? 'qemu-system-x86_64 is not installed (pnpm lab setup vm)' : process.env.EBPF_LAB_SKIP_E2E ? 'EBPF_LAB_SKIP_E2E is set' : '';
const MIN = 60_000;

interface Ran { code: number | null; out: string; err: string; results?: Results; dir: string }

/** `pnpm lab <args>` with --out DIR; resolves when it exits (or after `onLine` kills it). */
function lab(args: string[], dir: string, onLine?: (l: string, kill: (sig: NodeJS.Signals) => void) => void): Promise<Ran> {
  const [node, ...cli] = labCliArgv();
  return new Promise((resolve) => {
    const p = spawn(node!, [...cli, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      // progress goes to the test log, so a slow CI run shows where it is
      process.stderr.write(d);
      if (onLine) for (const l of d.toString().split('\n')) onLine(l, (sig) => p.kill(sig));
    });
    p.on('close', (code) => {
      const f = path.join(dir, 'results.json');
      resolve({ code, out, err, dir, results: fs.existsSync(f) ? (JSON.parse(fs.readFileSync(f, 'utf8')) as Results) : undefined });
    });
  });
}

const tmp = () => fs.mkdtempSync(path.join(REPO_ROOT, 'reports', 'e2e-'));
const failed = (r: Results | undefined) => JSON.stringify({ status: r?.status, error: r?.error?.split('\n')[0], failed: r?.checks.filter((c) => c.status === 'fail') });
const qemuOf = (dir: string) => spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes('qemu-system') && l.includes(dir));

describe.skipIf(!!skip)(`the commands users run, in VMs ${skip ? `(skipped: ${skip})` : ''}`, () => {
  for (const scenario of ['xdp-lb', 'security']) {
    it(`pnpm lab run ${scenario} --kernel 6.1 passes`, async () => {
      const dir = tmp();
      const r = await lab(['run', scenario, '--kernel', '6.1', '--out', dir], dir);
      expect(r.results?.status, failed(r.results)).toBe('pass');
      expect(r.code).toBe(0);
      expect(r.results!.environment.target).toBe('vm');
      expect(r.results!.environment.kernel.release).toMatch(/^6\.1\./);
      expect(r.results!.checks.length).toBeGreaterThan(3);
      expect(fs.readFileSync(path.join(dir, 'report.html'), 'utf8')).toContain(scenario);
      // one summary line, from the host
      expect(r.out.match(/: PASS — /g)?.length).toBe(1);
      // one definition of duration: host wall time, the guest's own time beside it
      const vm = r.results!.environment.vm as { bootMs: number; inGuestMs: number; runMs: number };
      expect(r.results!.durationMs!).toBeGreaterThan(vm.inGuestMs);
      expect(vm.bootMs).toBeGreaterThan(0);
    }, 25 * MIN);
  }

  for (const [scenario, opts] of [['socket-lb', ['--services', '10,1000', '--connections', '100']], ['tc-shaping', ['--rates', '10,100', '--duration', '3']]] as const) {
    it(`pnpm lab run ${scenario} --kernel 6.1${opts.length ? ` ${opts.join(' ')}` : ''} passes`, async () => {
      const dir = tmp();
      const r = await lab(['run', scenario, '--kernel', '6.1', ...opts, '--out', dir], dir);
      // unsupported is a pass with named gaps (e.g. no RAPL meter in a guest), never a failed check
      expect(['pass', 'unsupported'], failed(r.results)).toContain(r.results?.status);
      expect(r.results!.checks.filter((c) => c.status === 'fail')).toEqual([]);
      expect(r.code).toBe(0);
      expect(r.results!.environment.kernel.release).toMatch(/^6\.1\./);
      expect(r.results!.checks.filter((c) => c.status === 'pass').length).toBeGreaterThan(3);
      expect(r.results!.headline?.length).toBeGreaterThan(0);
    }, 20 * MIN);
  }

  it('hello-openat passes on every kernel of the matrix (5.10, 6.1, 6.12, 7.x, host)', async () => {
    const dir = tmp();
    const r = await lab(['matrix', '--kernels', '5.10,6.1,6.12,7.x,host', '--scenarios', 'hello-openat', '--out', dir], dir);
    const cells = JSON.parse(fs.readFileSync(path.join(dir, 'matrix.json'), 'utf8')) as { kernel: string; status: string; error?: string; dir: string }[];
    expect(cells.map((c) => [c.kernel, c.status, c.error?.split('\n')[0]])).toEqual(['5.10', '6.1', '6.12', '7.x', 'host'].map((k) => [k, 'pass', undefined]));
    expect(r.code).toBe(0);
    expect(cells.every((c) => !path.isAbsolute(c.dir))).toBe(true);
    const junit = fs.readFileSync(path.join(dir, 'junit.xml'), 'utf8');
    expect(junit).not.toMatch(/<failure|<error/);
  }, 25 * MIN);

  it('Ctrl-C during a VM run stops the guest and still writes an ERROR report', async () => {
    const dir = tmp();
    let inGuest = false;
    let sent = false;
    const r = await lab(['run', 'hello-openat', '--kernel', '6.1', '--out', dir], dir, (l, kill) => {
      // once the runner inside the guest is at work
      if (l.includes('running in the guest')) inGuest = true;
      else if (inGuest && !sent && l.includes('probing kernel features')) {
        sent = true;
        kill('SIGINT');
      }
    });
    expect(sent).toBe(true);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/SIGINT: stopping the guest and cleaning up/);
    expect(r.results?.status).toBe('error');
    expect(r.results?.error).toMatch(/interrupted by SIGINT/);
    expect(fs.existsSync(path.join(dir, 'report.html'))).toBe(true);
    expect(qemuOf(dir)).toEqual([]);
    expect(r.err).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  }, 10 * MIN);
});
