import { describe, expect, it } from 'vitest';
import { bootTimesHtml, summarizeBoots, type BootSample } from './boot-times.ts';

const boot = (round: number, kernel: string, readyMs: number): BootSample => ({
  round, kernel, release: `${kernel}.0-1-amd64`, accel: 'tcg', totalMs: readyMs + 500,
  phases: { qemuMs: 200, kernelMs: readyMs - 700, initMs: 480, mountMs: 20, readyMs },
});

describe('boot-times', () => {
  it('summarises per kernel and judges ≤3 s boot by boot', () => {
    const s = summarizeBoots([boot(0, '5.10', 2100), boot(0, '6.12', 2900), boot(1, '5.10', 1900), boot(1, '6.12', 3300), boot(2, '5.10', 2000), boot(2, '6.12', 3100)]);
    expect(s.map((k) => k.kernel)).toEqual(['5.10', '6.12']);
    expect(s[0]).toMatchObject({ boots: 3, readyMs: { median: 2000, min: 1900, max: 2100 }, goal: { verdict: 'met', detail: '3/3 boots ≤ 3.0 s' } });
    expect(s[0]!.phasesMedianMs).toEqual({ qemu: 200, kernel: 1300, init: 480, mount: 20 });
    expect(s[1]).toMatchObject({ readyMs: { median: 3100 }, goal: { verdict: 'inconclusive', detail: '1/3 boots ≤ 3.0 s' } });
    expect(summarizeBoots([boot(0, '7.x', 3500)])[0]!.goal.verdict).toBe('not met');
  });

  it('the report leads with the verdict and lists every boot', () => {
    const samples = [boot(0, '5.10', 2100), boot(0, '6.1', 3400)];
    const html = bootTimesHtml({ kind: 'boot-times', runId: 'boot-times-x', startedAt: '2026-12-01T00:00:00Z', durationMs: 9000, rounds: 1, samples, summary: summarizeBoots(samples) });
    expect(html.indexOf('not met')).toBeLessThan(html.indexOf('Per kernel'));
    expect(html).toContain('<td>3.40 s</td>');
    expect(html.match(/<tr><td>1<\/td>/g)).toHaveLength(2);
  });
});
