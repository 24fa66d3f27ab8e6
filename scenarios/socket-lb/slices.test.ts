import { describe, expect, it } from 'vitest';
import { mergeSlices, sliceSizes } from './slices.ts';

describe('socket-lb bench slices (pure)', () => {
  it('cuts k connections into at most 10 slices of at least 500 that add up to k', () => {
    expect(sliceSizes(300)).toEqual([300]);
    expect(sliceSizes(999)).toEqual([999]);
    expect(sliceSizes(2000)).toEqual([500, 500, 500, 500]);
    expect(sliceSizes(2003)).toEqual([501, 501, 501, 500]);
    const big = sliceSizes(1_000_000);
    expect(big.length).toBe(10);
    expect(big.reduce((a, b) => a + b, 0)).toBe(1_000_000);
    for (const k of [20, 501, 1001, 7777, 12345]) expect(sliceSizes(k).reduce((a, b) => a + b, 0)).toBe(k);
  });

  it('merges slices: CPU per connection over all of them, percentiles from every latency, replies and errors summed', () => {
    const a = { n: 2, errors: 1, onCpuNs: 300, replies: { x: 2 }, lat: [10, 20] };
    const b = { n: 2, errors: 0, onCpuNs: 100, replies: { x: 1, y: 1 }, lat: [1, 30] };
    const m = mergeSlices([a, b]);
    expect(m.n).toBe(4);
    expect(m.errors).toBe(1);
    expect(m.cpuNsPerConn).toBe(100);
    expect(m.replies).toEqual({ x: 3, y: 1 });
    // sorted [1, 10, 20, 30]: connlat's own ranks (n/2, n·0.99)
    expect(m.p50Us).toBe(20);
    expect(m.p99Us).toBe(30);
    // a slice of 1 connection next to one of 3: per connection, not per slice
    expect(mergeSlices([{ n: 1, errors: 0, onCpuNs: 1000, replies: {}, lat: [5] }, { n: 3, errors: 0, onCpuNs: 0, replies: {}, lat: [5, 5, 5] }]).cpuNsPerConn).toBe(250);
    expect(mergeSlices([{ n: 0, errors: 3, onCpuNs: 0, replies: {} }]).p50Us).toBe(0);
    // slices without their latencies (a connlat from before `lat`) are refused, not read as 0 µs
    expect(() => mergeSlices([{ n: 2, errors: 0, onCpuNs: 1, replies: {} }])).toThrow(/2 connections/);
  });
});
