// A Ctrl-C during the tracing scenario's phase B. Its generator returned early and the runner's
// cleanups took the chain and Jaeger down, but the scenario went on into phase C regardless: its
// checks were not recorded, and it started Jaeger again after the cleanups had stopped it (10–16 s
// more before the report under TCG). A stopped scenario now ends at its next step, where the
// runner's ctx.progress.step throws the stop (lab/run.ts), security and socket-lb as well.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeRoot, runStoppedAt } from '../../lab/testing.ts';
import { ensureJaeger, jaegerBuildRunning, jaegerPath } from '../../controller/tracing/backend.ts';
import type { Results } from '../../lab/results.ts';

const jaeger = fs.existsSync(jaegerPath()) || jaegerBuildRunning() !== null;

describeRoot('tracing stopped mid-run', () => {
  it.skipIf(!jaeger)(`a Ctrl-C in phase B ends the run there: no later phase, Jaeger not started again, ERROR report with the checks so far${jaeger ? '' : ' (skipped: Jaeger not built — pnpm lab setup tracing)'}`, async () => {
    await ensureJaeger(() => {});
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-tracestop-'));
    try {
      const { code, log } = await runStoppedAt('tracing', out, 'phase B:');
      expect(code, log).toBe(130); // 128 + SIGINT: stopped, told apart from a failure
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
