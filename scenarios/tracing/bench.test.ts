// The bench's pure parts (no root): vegeta's CSV and the quantiles taken from it, the paced-run
// connection count for wrk, and the CPU profile summary.
import { describe, expect, it } from 'vitest';
import { nearestRank } from '../../lab/stats.ts';
import { addedCpuRatio, pacedConnections, parseVegetaCsv, summariseProfile } from './bench.ts';

describe('tracing bench helpers', () => {
  it('nearestRank (lab/stats) is nearest-rank', () => {
    const xs = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect(nearestRank(xs, 0.5)).toBe(500);
    expect(nearestRank(xs, 0.99)).toBe(990);
    expect(nearestRank(xs, 0.999)).toBe(999);
    expect(nearestRank([7], 0.99)).toBe(7);
    expect(Number.isNaN(nearestRank([], 0.5))).toBe(true);
  });

  it('parses vegeta CSV: achieved rate from send times, latencies in µs, non-200 counted apart', () => {
    const t0 = 1_796_018_171_000_000_000;
    const lines = Array.from({ length: 101 }, (_, i) => `${t0 + i * 10_000_000},${i === 5 ? 500 : 200},${(i + 1) * 1000},0,3,,b2sK,,${i},GET,http://127.0.0.1:1/local,`);
    const r = parseVegetaCsv(`${lines.join('\n')}\n`);
    expect(r.requests).toBe(101);
    expect(r.ok).toBe(100);
    expect(r.seconds).toBeCloseTo(1, 6);
    expect(r.p50).toBe(51);
    expect(r.p99).toBe(100);
    expect(r.p999).toBe(101);
  });

  it('added CPU per request: the untraced cost taken out of both sides; no ratio where the SDK added nothing', () => {
    expect(addedCpuRatio(12, 33, 11)).toBeCloseTo(1 / 22, 9);
    expect(addedCpuRatio(10.9, 33, 11)).toBe(0);
    expect(addedCpuRatio(12, 11, 11)).toBeNull();
    expect(addedCpuRatio(12, 10, 11)).toBeNull();
  });

  it('paces wrk with whole-millisecond delays', () => {
    expect(pacedConnections(30_000)).toBe(150);
    expect(pacedConnections(10)).toBe(1);
  });

  it('summarises a CPU profile by self time', () => {
    const p = {
      nodes: [
        { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: [2, 3] },
        { id: 2, callFrame: { functionName: 'parse', url: 'file:///x/http.ts', lineNumber: 9 } },
        { id: 3, callFrame: { functionName: 'serialize', url: 'file:///x/node_modules/.pnpm/a@1/node_modules/a/w.mjs', lineNumber: 0 } },
      ],
      samples: [2, 2, 3, 2],
      timeDeltas: [100, 100, 200, 100],
      startTime: 0,
      endTime: 500,
    };
    const s = summariseProfile(p, 'f');
    expect(s.totalMs).toBeCloseTo(0.5);
    expect(s.top[0]).toMatchObject({ fn: 'parse http.ts:10', pct: 60 });
    expect(s.top[1]!.fn).toBe('serialize npm:a/w.mjs:1');
  });
});
