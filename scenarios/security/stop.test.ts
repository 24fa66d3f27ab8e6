// A Ctrl-C at the first deny-list-only attack. The scenario's loop went on through the remaining
// attacks after "cleaning up" (each launched in a cgroup being torn down, each check printed as
// "not recorded"), and the positive controls changed the policy of a controller being closed. A
// check or an attack after the stop now ends the scenario (lab/run.ts check, security's keep).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeRoot, runStoppedAt } from '../../lab/testing.ts';
import type { Results } from '../../lab/results.ts';

describeRoot('security stopped mid-run', () => {
  it('a Ctrl-C in the deny-list loop: no attack after the stop, nothing printed after "cleaning up" but the report, ERROR report with the checks so far', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-secstop-'));
    try {
      const { code, log } = await runStoppedAt('security', out, 'deny-list only: exec-sh');
      expect(code, log).toBe(130); // 128 + SIGINT: stopped, told apart from a failure
      expect(log).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
      const after = log.slice(log.indexOf('cleaning up'));
      expect(after, log).not.toMatch(/deny-list only|not recorded|policy update/);
      const r = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) as Results;
      expect(r.error).toBe('interrupted by SIGINT');
      // the attacks and controls before the stop are kept; no deny-list attack after exec-sh ran
      expect(r.checks.filter((c) => c.name.startsWith('attack ') && c.status === 'pass').length, log).toBeGreaterThanOrEqual(20);
      expect(r.checks.filter((c) => c.name.startsWith('deny-list only:')).length, log).toBeLessThanOrEqual(2);
      expect(fs.existsSync(path.join(out, 'report.html'))).toBe(true);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }, 180_000);
});
