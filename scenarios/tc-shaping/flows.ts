// Traffic for the shaping scenario: iperf3 TCP flows (JSON output) and a small-packet RTT probe
// (ping every 5 ms) sharing the shaped link, both started from the sending namespace.
import { readFile } from 'node:fs/promises';
import { nearestRank } from '../../lab/stats.ts';
import type { Topology } from '../../lab/netns.ts';
import { scaledTimeout } from '../../lab/timeouts.ts';

export interface FlowResult {
  port: number;
  /** receiver's goodput over the measured part (the first second omitted: slow start) */
  mbit: number;
  retransmits: number;
  /** iperf3's process CPU (sender + receiver, % of one core; softirq charged to them included) */
  cpuPct: number;
  /** TCP MSS iperf3 used: payload → frame factor (MSS + 66) / MSS (TCP+timestamps, IPv4, Ethernet) */
  mss: number;
  /** per-interval receiver-side rates (Mbit/s), for mid-flow views */
  intervals: { end: number; mbit: number }[];
}

interface IperfJson {
  start?: { tcp_mss_default?: number; tcp_mss?: number };
  intervals?: { sum: { end: number; bits_per_second: number; omitted?: boolean } }[];
  end?: {
    sum_received?: { bits_per_second: number };
    sum_sent?: { retransmits?: number };
    cpu_utilization_percent?: { host_total: number; remote_total: number };
  };
  error?: string;
}

export async function iperf(t: Topology, from: string, to: string, port: number, seconds: number, intervalS = 1): Promise<FlowResult> {
  const r = await t.exec(from, 'iperf3', ['-c', to, '-p', String(port), '-t', String(seconds), '-O', '1', '-i', String(intervalS), '-J'], {
    reject: false,
    timeout: scaledTimeout((seconds + 20) * 1000),
  });
  let j: IperfJson;
  try {
    j = JSON.parse(String(r.stdout)) as IperfJson;
  } catch {
    throw new Error(`iperf3 to ${to}:${port} printed no JSON (exit ${r.exitCode}): ${String(r.stderr).trim().slice(-300)}`);
  }
  if (j.error || !j.end?.sum_received) throw new Error(`iperf3 to ${to}:${port}: ${j.error ?? 'no result'}`);
  const cpu = j.end.cpu_utilization_percent;
  return {
    port,
    mbit: j.end.sum_received.bits_per_second / 1e6,
    retransmits: j.end.sum_sent?.retransmits ?? 0,
    cpuPct: cpu ? cpu.host_total + cpu.remote_total : NaN,
    mss: j.start?.tcp_mss_default ?? j.start?.tcp_mss ?? 1448,
    intervals: (j.intervals ?? []).filter((i) => !i.sum.omitted).map((i) => ({ end: i.sum.end, mbit: i.sum.bits_per_second / 1e6 })),
  };
}

/** one echo reply: when it arrived (epoch ms, ping -D) and its RTT (ms) */
export interface Reply { at: number; rtt: number }
export interface PingResult { replies: Reply[]; sent: number }

/**
 * ping every 5 ms for about `seconds` (from now): its replies and how many requests were sent.
 * 5 ms, not 10: twice the samples, so p99 is the 1% tail of ~500 probes rather than the 3rd-worst
 * of ~250 (0.16 Mbit/s of probes, counted in the class's rate). A fixed count with a generous
 * deadline (not `-w seconds` alone, which ends with the last replies still in flight) so that
 * every request that got no reply was really lost — by a shaper that drops (EDT's horizon, a
 * leaf's AQM) — and can be counted against the shaper in the percentiles (probeLatency). -D
 * stamps each reply with the wall clock, so echoes sent after the bulk flow had ended can be told
 * apart (inFlow).
 */
export async function pingRtts(t: Topology, from: string, to: string, seconds: number): Promise<PingResult> {
  const count = Math.max(1, Math.round(seconds / 0.005));
  const r = await t.exec(from, 'ping', ['-D', '-n', '-i', '0.005', '-s', '56', '-c', String(count), '-w', String(Math.ceil(seconds) + 5), to], { reject: false, timeout: scaledTimeout((seconds + 15) * 1000) });
  return parsePing(String(r.stdout));
}

export function parsePing(out: string): PingResult {
  const replies = [...out.matchAll(/^\[(\d+\.\d+)\].*\btime=([\d.]+) ms/gm)].map((m) => ({ at: Number(m[1]) * 1000, rtt: Number(m[2]) }));
  const sent = Number(/(\d+) packets transmitted/.exec(out)?.[1] ?? replies.length);
  return { replies, sent: Math.max(sent, replies.length) };
}

/**
 * The probes that measured the shaped link while the bulk flow was on it: those sent by `endAt`
 * (epoch ms; reply stamp − RTT). A probe's RTT is the queue it joined when sent, so one sent
 * during the flow counts even if its reply came after the flow ended; one sent after it found the
 * link draining or idle and would lower the percentiles of whichever shaper's run it fell in. It
 * is left out (and out of `sent`) and counted in `late`. ping's pace is not fixed: for a wait
 * shorter than a clock tick with replies outstanding, iputils polls for up to MININTERVAL (10 ms)
 * instead of spinning, so behind a queue longer than the interval the 5 ms became ~8–11 ms
 * (natively too: HTB at 10 Mbit/s), and a probe sized by count outlasted the flow in just the
 * runs with the longest queues (reports/20261203-040641-tc-shaping-host). Lost probes stay
 * counted against the shaper (when they were sent is not known).
 */
export function inFlow(p: PingResult, endAt: number): { rtts: number[]; sent: number; late: number } {
  const kept = p.replies.filter((x) => x.at - x.rtt <= endAt);
  const late = p.replies.length - kept.length;
  return { rtts: kept.map((x) => x.rtt), sent: p.sent - late, late };
}

/**
 * p50/p99 of a probe with its losses counted as infinitely late: a shaper that drops the probe
 * (so the survivors look fast) does not get a better percentile for it. `lost` is kept beside.
 */
export function probeLatency(rtts: number[], sent: number): { p50: number; p99: number; lost: number } {
  const lost = Math.max(0, sent - rtts.length);
  const all = [...rtts, ...Array<number>(lost).fill(Infinity)];
  return { p50: percentile(all, 0.5), p99: percentile(all, 0.99), lost };
}

/**
 * wait (polling every 250 ms, up to `maxS`) until the device transmits at ≥ `mbit`. Returns when
 * the flow was last seen below that (epoch ms of the previous reading: the flow started about
 * then, not at the reading that saw it), or undefined if it never got there. `pid`: see txBytes.
 */
export async function waitFlowing(t: Topology, role: string, dev: string, mbit: number, maxS: number, pid?: number): Promise<number | undefined> {
  let prev = await txBytes(t, role, dev, pid);
  const until = performance.now() + maxS * 1000;
  while (performance.now() < until) {
    await new Promise((r) => setTimeout(r, 250));
    const cur = await txBytes(t, role, dev, pid);
    if (((cur.b - prev.b) * 8) / ((cur.t - prev.t) / 1000) / 1e6 >= mbit) return performance.timeOrigin + prev.t;
    prev = cur;
  }
  return undefined;
}

/** the root qdisc's backlog (bytes, packets) now: what the shaper holds back (HTB/TBF: their queue; fq: packets waiting for their departure time) */
export async function qdiscBacklog(t: Topology, role: string, dev: string): Promise<{ bytes: number; packets: number }> {
  const r = await t.exec(role, 'tc', ['-s', '-j', 'qdisc', 'show', 'dev', dev, 'root'], { reject: false });
  try {
    const q = (JSON.parse(String(r.stdout)) as { backlog?: number; qlen?: number }[])[0];
    return { bytes: q?.backlog ?? NaN, packets: q?.qlen ?? NaN };
  } catch {
    return { bytes: NaN, packets: NaN };
  }
}

/** the sending socket's TCP state toward `to:port` (ss -ti): where the bytes in flight sit */
export interface TcpSample { cwnd: number; unacked: number; notsentKB: number; rttMs: number; pacingMbit: number }
export function parseSs(out: string): TcpSample | undefined {
  // the bulk flow is the connection with data in flight (iperf3's control connection has none)
  let best: TcpSample | undefined;
  for (const block of out.split(/\n(?=ESTAB)/)) {
    const num = (re: RegExp) => Number(re.exec(block)?.[1] ?? NaN);
    const s = { cwnd: num(/\bcwnd:(\d+)/), unacked: num(/\bunacked:(\d+)/), notsentKB: num(/\bnotsent:(\d+)/) / 1000, rttMs: num(/\brtt:([\d.]+)\//), pacingMbit: num(/\bpacing_rate (\d+)bps/) / 1e6 };
    if (Number.isFinite(s.unacked) && (!best || s.unacked > best.unacked)) best = s;
  }
  return best;
}
export async function tcpSample(t: Topology, role: string, to: string, port: number): Promise<TcpSample | undefined> {
  const r = await t.exec(role, 'ss', ['-tin', 'dst', to, 'dport', '=', String(port)], { reject: false });
  return parseSs(String(r.stdout));
}

/** sample `f` every `everyMs` until `stop` resolves */
export async function sampleUntil<T>(stop: Promise<unknown>, everyMs: number, f: () => Promise<T>): Promise<T[]> {
  let done = false;
  void stop.finally(() => (done = true));
  const out: T[] = [];
  while (!done) {
    await Promise.race([stop, new Promise((r) => setTimeout(r, everyMs))]);
    if (!done) out.push(await f());
  }
  return out;
}

export function percentile(xs: number[], q: number): number {
  return nearestRank([...xs].sort((a, b) => a - b), q);
}

/** Jain's fairness index of the classes' shares of their targets (1 = each got the same fraction) */
export function jain(xs: number[]): number {
  const s = xs.reduce((a, b) => a + b, 0);
  const q = xs.reduce((a, b) => a + b * b, 0);
  return q === 0 ? NaN : (s * s) / (xs.length * q);
}

/** the rate on the wire (L2, as qdiscs and the shaper count it) for a goodput */
export const wireMbit = (f: FlowResult) => (f.mbit * (f.mss + 66)) / f.mss;

/** a device's transmitted bytes out of /proc/<pid>/net/dev (pid: any process in its namespace) */
export function parseNetDevTx(text: string, dev: string): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (m?.[1] !== dev) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    return f.length >= 16 ? f[8] : undefined; // 8 receive fields, then tx bytes
  }
  return undefined;
}

/**
 * The device's transmitted bytes (L2) and when they were read. With `pid` (a process living in the
 * device's namespace) read from /proc/<pid>/net/dev, without starting a process: under TCG one
 * `ip` costs ~0.3 s of a guest CPU (tc ~0.18, ss ~0.23; the 6.1 guest, 2 vCPUs), which polling every
 * 250-500 ms took from the flow it was measuring. Without it (or if that read fails), `ip -s link`.
 */
export async function txBytes(t: Topology, role: string, dev: string, pid?: number): Promise<{ b: number; t: number }> {
  if (pid !== undefined) {
    const b = parseNetDevTx(await readFile(`/proc/${pid}/net/dev`, 'utf8').catch(() => ''), dev);
    if (b !== undefined) return { b, t: performance.now() };
  }
  const r = await t.exec(role, 'ip', ['-j', '-s', 'link', 'show', 'dev', dev]);
  return { b: (JSON.parse(String(r.stdout)) as { stats64: { tx: { bytes: number } } }[])[0]!.stats64.tx.bytes, t: performance.now() };
}
