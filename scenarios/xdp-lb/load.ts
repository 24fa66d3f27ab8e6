// Load generation from the client namespace: wrk (HTTP, keep-alive or a new connection per
// request) with a Lua hook that reports exact percentiles as JSON, and CPU accounting helpers.
import fs from 'node:fs';
import path from 'node:path';
import type { LbTopology } from './topology.ts';
import { readPidStat } from '../../common/host.ts';
import { scaledTimeout } from '../../lab/scenario.ts';

export interface WrkResult {
  requests: number;
  durationS: number;
  rps: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyUs: { p50: number; p99: number; p999: number; mean: number; max: number };
  /** X-Backend bodies seen by a sample of responses (only when countBackends) */
}

const LUA = `
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p99":%d,"p999":%d,"mean":%f,"max":%d}\\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
`;

/**
 * `delayMs`: each connection waits that long after a response before its next request (wrk's Lua
 * `delay`), so the load is paced at about connections × 1000 / delayMs requests/s instead of as
 * fast as the path answers — the rate no longer depends on the configuration under test.
 */
export async function runWrk(t: LbTopology, o: { url: string; connections: number; durationS: number; threads?: number; close?: boolean; delayMs?: number; signal?: AbortSignal }): Promise<WrkResult> {
  const script = path.join(t.dir, o.delayMs ? `report-delay${o.delayMs}.lua` : 'report.lua');
  if (!fs.existsSync(script)) fs.writeFileSync(script, o.delayMs ? `${LUA}\ndelay = function()\n  return ${o.delayMs}\nend\n` : LUA);
  const args = ['-t', String(o.threads ?? 1), '-c', String(o.connections), '-d', `${o.durationS}s`, '--timeout', '5s', '-s', script, ...(o.close ? ['-H', 'Connection: close'] : []), o.url];
  const r = await t.topo.exec('client', 'wrk', args, { reject: false, timeout: (o.durationS + 30) * 1000, cancelSignal: o.signal });
  const m = String(r.stdout).match(/WRKJSON (\{.*\})/);
  if (!m) throw new Error(`wrk ${args.join(' ')} failed (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
  const j = JSON.parse(m[1]!);
  const durationS = j.duration_us / 1e6;
  return {
    requests: j.requests, durationS, rps: j.requests / durationS,
    errors: { connect: j.connect, read: j.read, write: j.write, status: j.status, timeout: j.timeout },
    latencyUs: { p50: j.p50, p99: j.p99, p999: j.p999, mean: j.mean, max: j.max },
  };
}

export function totalErrors(r: WrkResult): number {
  return r.errors.connect + r.errors.read + r.errors.write + r.errors.status + r.errors.timeout;
}

/** `n` requests, each on a new connection; returns the body of each (the backend's name) */
export async function curlMany(t: LbTopology, url: string, n: number): Promise<string[]> {
  // One curl for all n (a process costs ~0.4 s in a TCG guest: 140 of them took ~55 s of a 6.1
  // run). `Connection: close` ends each connection after its response, so every request is a new
  // connection (a new flow for the LB to place), as with one curl per request. A request that got
  // no response (refused, timed out after 2 s) has status 000: "FAIL".
  const mark = '\u0001status=';
  const r = await t.topo.exec('client', 'curl', ['-s', '-m', '2', '-H', 'Connection: close', '-w', `${mark}%{http_code}\n`, ...Array<string>(n).fill(url)], { reject: false, timeout: scaledTimeout(60_000) });
  const out = [...String(r.stdout).matchAll(new RegExp(`([^\u0001]*)${mark}(\\d{3})`, 'g'))].map((m) => (m[2] === '000' ? 'FAIL' : m[1]!.trim()));
  return [...out, ...Array<string>(Math.max(0, n - out.length)).fill('FAIL')];
}

// ---- CPU accounting ----

export const CLK_TCK = 100;

/** utime+stime of processes, in ns */
export function processCpuNs(pids: number[]): number {
  let ticks = 0;
  for (const p of pids) {
    ticks += readPidStat(`/proc/${p}/stat`)?.ticks ?? 0; // 0: gone
  }
  return (ticks * 1e9) / CLK_TCK;
}

export function rssBytes(pids: number[]): number {
  let kb = 0;
  for (const p of pids) {
    try {
      kb += Number(fs.readFileSync(`/proc/${p}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)?.[1] ?? 0);
    } catch { /* gone */ }
  }
  return kb * 1024;
}

/** machine-wide softirq and busy time (all CPUs), ns */
export function cpuTimes(): { softirqNs: number; busyNs: number } {
  const l = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const [user, nice, system, , , irq, softirq, steal] = l as [number, number, number, number, number, number, number, number];
  const toNs = (x: number) => (x * 1e9) / CLK_TCK;
  return { softirqNs: toNs(softirq), busyNs: toNs(user + nice + system + irq + softirq + (steal ?? 0) * 0) };
}
