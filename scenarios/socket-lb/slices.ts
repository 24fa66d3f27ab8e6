// The socket-lb bench's rounds: how a configuration's connections are cut into slices that
// interleave with the other configurations', and how the slices are put back together.

export interface Sample { p50Us: number; p99Us: number; cpuNsPerConn: number; errors: number; n: number; replies: Record<string, number> }

/**
 * One round: every configuration's k connections cut into slices, the slices of all configurations
 * interleaved (forward, then backward: A B C C B A …), so each configuration's figure spans the
 * whole round and a drift of the machine's speed (other tenants on a shared host) lands on all of
 * them alike. One slice per configuration, as before, left a ratio of two windows seconds apart:
 * per-round ratios moved ±15% on an idle-looking host (reports/20261207-075727-socket-lb-host).
 */
export function sliceSizes(k: number): number[] {
  const slices = Math.max(1, Math.min(10, Math.floor(k / 500)));
  const base = Math.floor(k / slices);
  return Array.from({ length: slices }, (_, i) => (i < k % slices ? base + 1 : base));
}

/** merges slices of one configuration: CPU summed over connections, percentiles from every latency */
export function mergeSlices(parts: readonly { n: number; errors: number; onCpuNs: number; replies: Record<string, number>; lat?: number[] }[]): Sample {
  const lat = parts.flatMap((p) => p.lat ?? []).sort((a, b) => a - b);
  const n = parts.reduce((a, p) => a + p.n, 0);
  // a connlat built before `lat` existed prints none: its percentiles would read as 0 µs
  if (lat.length !== n) throw new Error(`connlat gave ${lat.length} latencies for ${n} connections: a stale build? (remove ${'`'}socket-lb-connlat${'`'} from the build directory)`);
  const replies: Record<string, number> = {};
  for (const p of parts) for (const [b, c] of Object.entries(p.replies)) replies[b] = (replies[b] ?? 0) + c;
  // the same rank as connlat's own (lat[n/2], lat[n·0.99])
  const at = (q: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * q))]! : 0);
  return { p50Us: at(0.5), p99Us: at(0.99), cpuNsPerConn: parts.reduce((a, p) => a + p.onCpuNs, 0) / Math.max(n, 1), errors: parts.reduce((a, p) => a + p.errors, 0), n, replies };
}
