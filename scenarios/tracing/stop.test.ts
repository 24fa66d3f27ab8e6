// A Ctrl-C during the tracing scenario's phase B. Its generator returned early and the runner's
// cleanups took the chain and Jaeger down, but the scenario went on into phase C regardless: its
// checks were not recorded, and it started Jaeger again after the cleanups had stopped it (10–16 s
// more before the report under TCG). A stopped scenario now ends at its next step, where the
// runner's ctx.progress.step throws the stop (lab/run.ts), security and socket-lb as well.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeRoot, labCli } from '../../lab/testing.ts';
import { REPO_ROOT } from '../../common/dist.ts';
import { ensureJaeger, jaegerBuildRunning, jaegerPath } from '../../controller/tracing/backend.ts';
import type { Results } from '../../lab/results.ts';

const jaeger = fs.existsSync(jaegerPath()) || jaegerBuildRunning() !== null;

describeRoot('tracing stopped mid-run', () => {
  it.skipIf(!jaeger)(`a Ctrl-C in phase B ends the run there: no later phase, Jaeger not started again, ERROR report with the checks so far${jaeger ? '' : ' (skipped: Jaeger not built — pnpm lab setup tracing)'}`, async () => {
    await ensureJaeger(() => {});
    const [node, ...cli] = await labCli();
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-tracestop-'));
    try {
      const p = spawn(node, [...cli, 'run', 'tracing', '--kernel', 'host', '--out', out], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let log = '';
      p.stdout.on('data', (d: Buffer) => (log += d.toString()));
      p.stderr.on('data', (d: Buffer) => (log += d.toString()));
      const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
      for (let i = 0; i < 1200 && !log.includes('phase B:') && p.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      expect(log).toContain('phase B:');
      p.kill('SIGINT');
      const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 90_000))]);
      if (code === 'hung') p.kill('SIGKILL');
      expect(code, log).toBe(1);
      // phase C is the one that stops and restarts Jaeger
      expect(log).not.toContain('phase C:');
      expect(log).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
      const r = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) as Results;
      expect(r.error).toBe('interrupted by SIGINT');
      expect(r.checks.filter((c) => c.status === 'pass').length, log).toBeGreaterThanOrEqual(3);
      expect(fs.existsSync(path.join(out, 'report.html'))).toBe(true);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }, 240_000);
});
