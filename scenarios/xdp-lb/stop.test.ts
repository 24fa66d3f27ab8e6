// A Ctrl-C during xdp-lb's live-change step, where a wrk load runs beside the backend changes. The
// stop kills wrk, and the load's promise, which nobody awaited yet, failed: Node ended the run at
// once — no cleanup, no report; the instance's pins (an XDP link among them) and its temp dir were
// left. The runner now takes such a failure as what it is after a stop (lab/run.ts onUnhandled).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeRoot, runStoppedAt } from '../../lab/testing.ts';
import { listNamespaces } from '../../lab/netns.ts';
import type { Results } from '../../lab/results.ts';

const PIN_ROOT = '/sys/fs/bpf/ebpf-lab';

describeRoot('xdp-lb stopped mid-run', () => {
  it('a Ctrl-C while a load runs beside other steps: cleaned up, ERROR report with the checks so far', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-xlbstop-'));
    const temps = () => new Set(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('ebpf-lab-xlb-')));
    const before = temps();
    try {
      // the step before the live changes under load; then wrk is running, the main path sleeps between changes
      const { code, log, pid } = await runStoppedAt('xdp-lb', out, 'bad input is rejected', 1500);
      expect(code, log).toBe(130); // 128 + SIGINT: stopped, told apart from a failure
      expect(log).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
      const r = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) as Results;
      expect(r.error).toBe('interrupted by SIGINT');
      expect(r.checks.filter((c) => c.status === 'pass').length, log).toBeGreaterThanOrEqual(3);
      expect(fs.existsSync(path.join(out, 'report.html'))).toBe(true);
      // what the run set up is gone: its instance's pins, namespaces and temp dirs
      const pins = fs.existsSync(PIN_ROOT) ? fs.readdirSync(PIN_ROOT).filter((d) => d === `xlb${pid}` || d === `xlbc${pid}`) : [];
      expect(pins).toEqual([]);
      expect((await listNamespaces('xlb')).filter((n) => n.startsWith(`xlb-${pid}-`))).toEqual([]);
      expect([...temps()].filter((f) => !before.has(f))).toEqual([]);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }, 180_000);
});
