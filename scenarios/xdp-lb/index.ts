// xdp-lb: the XDP L4 load balancer (bpf/xdp_lb.bpf.c + controller/lb) against HAProxy (mode tcp)
// and nginx stream, side by side in one run on one netns topology (see topology.ts).
//   run:   functional checks (every backend, IPv4/IPv6, bad input, live changes with 0 resets,
//          health checks, controller restart) and a short load through each configuration.
//   bench: the same with longer loads: RPS, p50/p99/p99.9, CPU per request in the LB, memory,
//          and UDP small-packet forwarding rate against the XDP_DROP ceiling on the same veth.
// Order matters for fairness: the proxies run before any XDP program is attached to the LB's
// veths (an XDP program changes the veth's receive path for every packet).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { enableStats } from '../../controller/libbpf/index.ts';
import { LbApiError } from '../../controller/lb/client.ts';
import { sweepStale } from '../../lab/netns.ts';
import { configOption, findOnPath, kernelConfigText } from '../../common/host.ts';
import { numberOption, scaledTimeout, timeScale } from '../../lab/scenario.ts';
import type { Block, Scenario, ScenarioContext } from '../../lab/scenario.ts';
import { cpuTimes, curlMany, processCpuNs, rssBytes, runWrk, totalErrors, type WrkResult } from './load.ts';
import {
  CLIENT4, HAPROXY_PORT, IPIP_CLIENT_MTU, LB4, LB6, NGINX_PORT, VIP4, VIP4_IPIP, VIP6, VIP6_IPIP, backend4, backend6, buildTopology, clientPortConfig, lbConfig, probeIpip,
  setupIpipBackends, startBackend, startDaemon, startHaproxy, startNginxBackends, startNginxStream, stopBackend, sweepStalePins, tunnelRx,
  type Daemon, type LbTopology,
} from './topology.ts';
import { controlPlaneScaling } from './scaling.ts';
import { forwardingRates, setBackendPorts } from './pps.ts';
import { nicForwardingRates } from './nic.ts';
import { PERF_MISSING, addedBy, areaOf, busyNsPerRequest, isIdle, kernelFunction, processOf, readProfile, recordSystemWide, requirePerf, type AddedRow, type Profile } from './profile.ts';
import { goalByRounds, headlineFromRounds, perRoundRatios, spreadOf } from '../../lab/rounds.ts';
import { setTimeout as sleep } from 'node:timers/promises';

function swept0(ns: string[], pins: string[], ctx: ScenarioContext): void {
  if (ns.length + pins.length) ctx.progress.warn(`removed namespaces/pins of a crashed run: ${[...ns, ...pins].join(', ')}`);
}

/** the XDP LB redirecting into each backend's own port (backend_ports devmap) */
const XDP_DEVMAP = 'XDP LB devmap';
/** the XDP LB attached to the client-facing port itself (clientPortConfig), devmap into the backends' ports */
const XDP_CLIENT_PORT = 'XDP LB client port';

/** options are validated and defaulted by the runner (see `options` below) */

interface Row {
  config: string;
  conn: 'keep-alive' | 'new connection';
  /** saturated: wrk as fast as the path answers; paced: every configuration at the same request rate */
  load?: 'saturated' | 'paced';
  rps: number;
  requests: number;
  errors: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  /** the LB's own CPU: proxy process CPU, or the XDP program's run_time_ns */
  lbCpuNsPerReq: number | null;
  softirqNsPerReq: number;
  busyNsPerReq: number;
  memBytes: number | null;
  /** busy share of all CPUs during the load run (1 = every CPU busy all the time) */
  busyShare?: number;
  /** the interleaved round it was measured in */
  round?: number;
  /** paced runs in bench, where perf exists: busy ns per request from perf's cpu-clock samples on
   * every CPU (idle left out), the tick-free figure the paced goals are judged on */
  perfBusyNsPerReq?: number;
  /** the recording behind perfBusyNsPerReq until it is read (then removed) */
  perfFile?: string;
}

async function measure(ctx: ScenarioContext, t: LbTopology, config: string, url: string, close: boolean, o: { durationS: number; connections: number; delayMs?: number }, lbCpu: () => Promise<number | null>, mem: () => Promise<number | null>, perfFile?: string): Promise<Row> {
  const conn = close ? 'new connection' : 'keep-alive';
  ctx.progress.info(`${config}, ${conn}${o.delayMs ? `, paced at ~${Math.round((o.connections * 1000) / o.delayMs)} requests/s` : ''}: wrk -c${o.connections} ${o.durationS}s${o.delayMs ? ` (${o.delayMs} ms between a response and the next request)` : ''}${perfFile ? `, under perf record -a -F ${PROFILE_HZ}` : ''}`);
  // the CPU counters are read around wrk alone, inside perf's recording when there is one
  // (the daemon's API calls outside them, and the share of the machine over the same wall time:
  // over wrk's own duration it read 101–102% busy, review session 58)
  const load = async () => {
    const l0 = await lbCpu();
    const c0 = cpuTimes();
    const t0 = process.hrtime.bigint();
    const r: WrkResult = await runWrk(t, { url, connections: o.connections, durationS: o.durationS, close, delayMs: o.delayMs, signal: ctx.signal });
    const c1 = cpuTimes();
    const wallNs = Number(process.hrtime.bigint() - t0);
    const l1 = await lbCpu();
    return { r, c0, c1, l0, l1, wallNs };
  };
  const { r, c0, c1, l0, l1, wallNs } = perfFile ? await recordSystemWide(perfFile, PROFILE_HZ, load, { signal: ctx.signal }) : await load();
  const m = await mem();
  const n = Math.max(r.requests, 1);
  return {
    config, conn: conn as Row['conn'], load: o.delayMs ? 'paced' : 'saturated', rps: r.rps, requests: r.requests, errors: totalErrors(r),
    p50Us: r.latencyUs.p50, p99Us: r.latencyUs.p99, p999Us: r.latencyUs.p999,
    lbCpuNsPerReq: l0 === null || l1 === null ? null : (l1 - l0) / n,
    softirqNsPerReq: (c1.softirqNs - c0.softirqNs) / n,
    busyNsPerReq: (c1.busyNs - c0.busyNs) / n,
    busyShare: (c1.busyNs - c0.busyNs) / (os.cpus().length * wallNs),
    memBytes: m,
    ...(perfFile ? { perfFile } : {}),
  };
}

const median = (xs: number[]) => spreadOf(xs).median;
const rangeOf = (xs: number[], digits = 0) => {
  const f = xs.filter(Number.isFinite);
  return f.length > 1 ? `${Math.min(...f).toFixed(digits)}–${Math.max(...f).toFixed(digits)}` : '';
};
const us = (ns: number | null) => (ns === null ? null : Math.round(ns / 10) / 100);
const r1 = (x: number) => Math.round(x * 10) / 10;
/** a configuration's name in a file name: "XDP LB client port" → "xdp-lb-client-port" */
const fileSlug = (config: string) => config.replace(/[^A-Za-z]+/g, '-').replace(/-$/, '').toLowerCase();

async function functionalChecks(ctx: ScenarioContext, t: LbTopology, d: Daemon, instance: string): Promise<Daemon> {
  const V4 = `tcp://${VIP4}:80`;
  ctx.progress.step('functional checks');
  for (const [fam, url] of [['IPv4', `http://${VIP4}/`], ['IPv6', `http://[${VIP6}]/`]] as const) {
    const bodies = await curlMany(t, url, 30);
    const seen = [...new Set(bodies)].sort();
    ctx.check(`${fam}: new connections through the VIP reach every backend`, bodies.every((b) => b !== 'FAIL') && seen.length === t.n, `backends seen: ${seen.join(', ')} over ${bodies.length} requests`);
  }
  const before = JSON.stringify(await d.api.state());
  const bad: [string, () => Promise<unknown>][] = [
    ['unknown VIP', () => d.api.addBackend('tcp://10.99.100.9:80', backend4(0))],
    ['duplicate backend', () => d.api.addBackend(V4, backend4(0))],
    ['malformed address', () => d.api.addBackend(V4, '10.99.0.300')],
    ['zero backends', () => d.api.addVip('tcp://10.99.100.2:80', [])],
  ];
  const msgs: string[] = [];
  let allRejected = true;
  for (const [what, fn] of bad) {
    const e = await fn().then(() => null, (x: unknown) => x);
    if (!(e instanceof LbApiError)) allRejected = false;
    msgs.push(`${what}: ${e instanceof LbApiError ? `${e.status} ${e.message}` : 'ACCEPTED'}`);
  }
  ctx.check('bad input is rejected with a clear error and changes nothing', allRejected && JSON.stringify(await d.api.state()) === before, msgs.join('; '));

  // live changes under load: established keep-alive connections must not see a single error
  await d.api.removeBackend(V4, backend4(t.n - 1));
  const load = runWrk(t, { url: `http://${VIP4}/`, connections: 16, durationS: 4, signal: ctx.signal });
  await sleep(1000);
  await d.api.addBackend(V4, backend4(t.n - 1));
  await sleep(800);
  await d.api.removeBackend(V4, backend4(t.n - 1));
  await sleep(800);
  await d.api.addBackend(V4, backend4(t.n - 1));
  const r = await load;
  ctx.check('established connections survive adding/removing other backends (0 resets)', totalErrors(r) === 0 && r.requests > 0, `${r.requests} requests, errors ${JSON.stringify(r.errors)}`);

  const stateOf = async (addr: string) => (await d.api.state()).vips.find((v) => v.vip === V4)?.backends.find((b) => b.address === addr)?.state;
  await stopBackend(t, 0);
  const t0 = Date.now();
  while ((await stateOf(backend4(0))) !== 'down' && Date.now() - t0 < scaledTimeout(8000)) await sleep(100);
  const downAfter = Date.now() - t0;
  const bodies = await curlMany(t, `http://${VIP4}/`, 20);
  ctx.check('a killed backend is taken out by health checks; its new flows go elsewhere', (await stateOf(backend4(0))) === 'down' && bodies.every((b) => b !== 'FAIL' && b !== 'b1'), `down after ${downAfter} ms; 20 new connections went to ${[...new Set(bodies)].join(', ')}`);
  await startBackend(t, 0);
  const t1 = Date.now();
  while ((await stateOf(backend4(0))) !== 'up' && Date.now() - t1 < scaledTimeout(8000)) await sleep(100);
  ctx.check('a recovered backend is put back by health checks', (await stateOf(backend4(0))) === 'up', `up after ${Date.now() - t1} ms`);

  // every VIP watches the recovered backend on its own: let all of them see it up before taking the
  // ring generations, or a late "up" lands during the crash window and bumps a generation
  const t2 = Date.now();
  while ((await d.api.state()).vips.some((v) => v.backends.some((b) => b.state !== 'up')) && Date.now() - t2 < scaledTimeout(8000)) await sleep(100);
  const gens = (await d.api.state()).vips.map((v) => `${v.vip}#${v.generation}`).sort().join(' ');
  const load2 = runWrk(t, { url: `http://${VIP4}/`, connections: 8, durationS: 4, signal: ctx.signal });
  await sleep(800);
  await d.crash();
  await sleep(800);
  const d2 = await startDaemon(t, lbConfig(t, instance));
  const r2 = await load2;
  const s2 = await d2.api.state();
  const gens2 = s2.vips.map((v) => `${v.vip}#${v.generation}`).sort().join(' ');
  ctx.check('a controller crash + restart keeps open connections alive and adopts the pinned state', totalErrors(r2) === 0 && r2.requests > 0 && d2.startedAs === 'restored' && s2.attach === 'adopted' && gens === gens2,
    `${r2.requests} requests over the crash, errors ${JSON.stringify(r2.errors)}; restart: ${d2.startedAs}, link ${s2.attach}; ring generations before ${gens}, after ${gens2}`);
  const ring = await d2.api.ring(V4);
  ctx.check('the Maglev ring in the kernel equals the one computed in TypeScript', JSON.stringify(ring.dataplane) === JSON.stringify(ring.computed), `${ring.computed.length} entries`);
  return d2;
}

/** IPIP (IPv4 VIP) and IP6IP6 (IPv6 VIP) through the same LB, to backends with decap devices */
async function ipipCheck(ctx: ScenarioContext, t: LbTopology, d: Daemon): Promise<void> {
  ctx.progress.step('IPIP / IP6IP6 forwarding');
  await setupIpipBackends(t);
  const I4 = `tcp://${VIP4_IPIP}:80`, I6 = `tcp://[${VIP6_IPIP}]:80`;
  const added: string[] = [];
  try {
    // each removed below only once added, and each whatever became of the other: a failure here
    // is a failed check and the run goes on (the caller), so nothing of it may stay behind
    await d.api.addVip(I4, Array.from({ length: t.n }, (_, i) => ({ address: backend4(i) })), true, 'ipip');
    added.push(I4);
    await d.api.addVip(I6, Array.from({ length: t.n }, (_, i) => ({ address: backend6(i) })), true, 'ipip');
    added.push(I6);
    const rx = async () => Promise.all(Array.from({ length: t.n }, (_, i) => tunnelRx(t, i)));
    const g0 = (await d.api.stats()).global;
    const rx0 = await rx();
    const parts: string[] = [];
    let ok = true;
    for (const [fam, url, enc] of [['IPv4', `http://${VIP4_IPIP}/`, 'IPIP'], ['IPv6', `http://[${VIP6_IPIP}]/`, 'IP6IP6']] as const) {
      const bodies = await curlMany(t, url, 30);
      const seen = [...new Set(bodies)].sort();
      ok &&= bodies.length > 0 && bodies.every((b) => b !== 'FAIL') && seen.length === t.n;
      parts.push(`${fam} ${enc}: ${bodies.filter((b) => b !== 'FAIL').length}/${bodies.length} requests answered, backends seen ${seen.join(', ')}`);
    }
    const rx1 = await rx();
    const g1 = (await d.api.stats()).global;
    const tun = rx1.map((r, i) => ({ ipip: r.ipip - rx0[i]!.ipip, ip6tnl: r.ip6tnl - rx0[i]!.ip6tnl }));
    ok &&= tun.every((x) => x.ipip > 0 && x.ip6tnl > 0);
    const encapDrops = (g1.drop_encap ?? 0) - (g0.drop_encap ?? 0);
    ok &&= encapDrops === 0;
    parts.push(`packets received on the backends' decap devices (ipip1/ip6tnl1): ${tun.map((x, i) => `b${i + 1} ${x.ipip}/${x.ip6tnl}`).join(', ')}`);
    parts.push(`drop_encap +${encapDrops}; outer source ${LB4} / ${LB6}`);
    ctx.check('IPIP/IP6IP6 forwarding', ok, parts.join('; '));
    await ipipFullSize(ctx, t, d);
  } catch (e) {
    await Promise.allSettled(added.map((v) => d.api.removeVip(v))); // the first error is the one said
    throw e;
  }
  const removed = await Promise.allSettled(added.map((v) => d.api.removeVip(v)));
  const failed = removed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * A request of full-size segments through the IPIP/IP6IP6 VIPs: the outer header makes each
 * frame 20/40 bytes too big for the LB's interface. The device used to drop them without a
 * trace and the upload hung; the LB now answers with ICMP too-big from the VIP (bpf_check_mtu,
 * 5.12+), the client's TCP lowers its segment size, and the request goes through.
 */
async function ipipFullSize(ctx: ScenarioContext, t: LbTopology, d: Daemon): Promise<void> {
  const [maj, min] = ctx.kernel.release.split('.').map(Number) as [number, number];
  if (maj < 5 || (maj === 5 && min < 12)) {
    ctx.unsupported('IPIP: ICMP too-big for frames over the egress MTU', 'bpf_check_mtu (kernel 5.12+)', `kernel ${ctx.kernel.release}: full-size frames through an IPIP VIP are dropped by the device; clamp the clients' MSS`);
    return;
  }
  ctx.progress.step('IPIP / IP6IP6: a request of full-size segments (path MTU)');
  const body = path.join(t.dir, 'ipip-body');
  fs.writeFileSync(body, Buffer.alloc(256 * 1024, 0x61));
  // the client's routes to these VIPs lock its MTU at 1440 for every other run (the workaround a
  // user without this would need): here they are plain routes, MTU 1500, path MTU discovery on
  const routes = (mtu: string[]) => t.topo.batch('client', [
    ['route', 'replace', `${VIP4_IPIP}/32`, 'via', LB4, ...mtu],
    ['route', 'replace', `${VIP6_IPIP}/128`, 'via', LB6, ...mtu],
  ]);
  const parts: string[] = [];
  let ok = true;
  let tooBig = 0;
  try {
    await routes([]);
    const g0 = (await d.api.stats()).global;
    for (const [fam, url] of [['IPv4', `http://${VIP4_IPIP}/`], ['IPv6', `http://[${VIP6_IPIP}]/`]] as const) {
      // curl's first segment carries the headers and the body's start: dropped, nginx never saw
      // the request and curl timed out
      const r = await t.topo.exec('client', 'curl', ['-s', '-m', String(Math.round(scaledTimeout(10_000) / 1000)), '-o', '/dev/null', '-w', '%{http_code} %{size_upload}', '--data-binary', `@${body}`, url], { reject: false, timeout: scaledTimeout(30_000) });
      const [code, up] = String(r.stdout).trim().split(' ');
      ok &&= r.exitCode === 0 && code === '200' && Number(up) === 256 * 1024;
      parts.push(`${fam}: HTTP ${code || 'none'} (curl exit ${r.exitCode}), ${up ?? 0} of ${256 * 1024} bytes sent`);
    }
    const g1 = (await d.api.stats()).global;
    tooBig = (g1.icmp_too_big ?? 0) - (g0.icmp_too_big ?? 0);
  } catch (e) {
    if (ctx.signal.aborted) throw e;
    ok = false;
    parts.push(`the check failed: ${(e as Error).message.split('\n').slice(0, 3).join(' ')}`);
  } finally {
    fs.rmSync(body, { force: true });
    await routes(['mtu', 'lock', String(IPIP_CLIENT_MTU)]);
  }
  ok &&= tooBig > 0;
  parts.push(`ICMP too-big sent by the LB: ${tooBig}`);
  ctx.check('IPIP/IP6IP6: a request of full-size segments goes through (the LB tells the client its path MTU)', ok, parts.join('; '));
}

const PROFILE_HZ = 999;

/**
 * Paced runs (bench): each connection waits this long after a response before its next request,
 * and the connection count sets the rate (--paced-rps, --paced-rps-close). At saturation wrk is
 * closed-loop and busy time per request approaches cores ÷ RPS, so the saturated figure also
 * carries throughput; at one fixed rate, well below every configuration's maximum, the figure is
 * the CPU a configuration adds per request at that load, which is what capacity is planned on.
 * The two answer different questions and both are reported. The paced figure is judged by perf
 * (`perfBusyNsPerReq`: every paced bench run is recorded system-wide) because /proc/stat charges
 * by ticks, and at this load (work woken by wrk's millisecond timers) its busy time ran 8–38%
 * above perf's sampled figure, unevenly per configuration (2–4% saturated) (--profile's
 * cross-check, reports/20261202-100423-xdp-lb-host); without perf the tick figure is reported
 * with no goal.
 */
const PACE_DELAY_MS: Record<'keep-alive' | 'new connection', number> = { 'keep-alive': 2, 'new connection': 10 };

/** the daemon's config with every VIP cut down to the first k backends (the load runs') */
function loadConfigOf(t: LbTopology, instance: string, k: number) {
  return lbConfig(t, instance, { vips: lbConfig(t, instance).vips.map((v) => ({ ...v, backends: v.backends.slice(0, k) })) });
}

/** a paced run's wrk settings: the delay of its connection kind, connections = rate × delay */
function pacedLoad(ctx: ScenarioContext, durationS: number, conn: Row['conn']): { durationS: number; connections: number; delayMs: number } {
  const delayMs = PACE_DELAY_MS[conn];
  const rate = numberOption(ctx, conn === 'keep-alive' ? 'paced-rps' : 'paced-rps-close', conn === 'keep-alive' ? 20_000 : 4_000);
  return { durationS, delayMs, connections: Math.max(1, Math.round((rate * delayMs) / 1000)) };
}

/**
 * Profiled keep-alive runs of the XDP LB (attached now), then of the direct path and HAProxy with
 * the LB stopped and detached, and of the LB on the client-facing port, each saturated and paced;
 * then the LB is started again for what follows. Reported as each one's added ns per request over
 * the direct path at the same load, by area, process and function.
 */
async function profileConfigs(ctx: ScenarioContext, t: LbTopology, d: Daemon, loads: { saturated: { durationS: number; connections: number }; paced: { durationS: number; connections: number; delayMs: number } }, instance: string, servers: number): Promise<Daemon> {
  requirePerf();
  type Load = keyof typeof loads;
  const profiles: (Profile & { load: Load })[] = [];
  const files: string[] = [];
  const one = async (config: string, url: string) => {
    for (const load of ['saturated', 'paced'] as const) {
      const o = loads[load];
      ctx.progress.info(`profile: ${config}, keep-alive, ${load}: perf record -a -F ${PROFILE_HZ} (cpu-clock) around wrk -c${o.connections} ${o.durationS}s`);
      const file = path.join(ctx.outDir, `perf-${fileSlug(config)}-${load}.data`);
      const c0 = cpuTimes();
      const result = await recordSystemWide(file, PROFILE_HZ, () => runWrk(t, { url, ...o, signal: ctx.signal }), { signal: ctx.signal });
      const c1 = cpuTimes();
      files.push(file);
      profiles.push({ config, load, requests: result.requests, hz: PROFILE_HZ, busyNsPerReq: (c1.busyNs - c0.busyNs) / Math.max(result.requests, 1), samples: [] });
    }
  };
  ctx.progress.step('profile: where the added CPU per request sits (perf, system-wide)');
  await one('XDP LB', `http://${VIP4}/`);
  await d.stop(true);
  t.detachPeer();
  await one('direct (no LB)', `http://${backend4(0)}/`);
  const h = await startHaproxy(t, servers);
  try {
    await one(h.name, `http://${LB4}:${HAPROXY_PORT}/`);
  } finally {
    await h.stop();
  }
  t.attachBackendSinks();
  try {
    const e = await startDaemon(t, clientPortConfig(t, `xlbc${process.pid}`, servers), 'fabric');
    try {
      await one(XDP_CLIENT_PORT, `http://${VIP4}/`);
    } finally {
      await e.stop(true);
    }
  } finally {
    t.detachBackendSinks();
  }
  t.attachPeer();
  const d2 = await startDaemon(t, lbConfig(t, instance));
  // read the recordings only now (see recordSystemWide); the files stay in the report's directory
  for (const [i, f] of files.entries()) profiles[i]!.samples = await readProfile(f);

  const get = (config: string, load: Load) => profiles.find((p) => p.config === config && p.load === load)!;
  const n0 = (x: number) => Math.round(x);
  const out: Record<string, unknown> = { hz: PROFILE_HZ, event: 'cpu-clock' };
  const areaCols: Map<string, number>[] = [];
  const procCols: Map<string, number>[] = [];
  const fnRows = new Map<string, AddedRow[]>();
  const headline: string[] = [];
  const added = (rows: AddedRow[]) => new Map(rows.map((r) => [r.key, r.addedNsPerReq]));
  for (const load of ['saturated', 'paced'] as const) {
    const base = get('direct (no LB)', load), xdp = get('XDP LB', load), prox = get(h.name, load), cport = get(XDP_CLIENT_PORT, load);
    const addedXdp = busyNsPerRequest(xdp) - busyNsPerRequest(base);
    const addedProxy = busyNsPerRequest(prox) - busyNsPerRequest(base);
    const addedCport = busyNsPerRequest(cport) - busyNsPerRequest(base);
    headline.push(`${load}: XDP LB ${n0(addedXdp)} ns, on the client-facing port ${n0(addedCport)} ns, HAProxy ${n0(addedProxy)} ns (HAProxy ÷ XDP LB ${addedXdp > 0 ? (addedProxy / addedXdp).toFixed(1) : 'n/a'}; client port ÷ HAProxy ${(addedCport / addedProxy).toFixed(2)})`);
    const r = {
      byArea: addedBy(base, xdp, areaOf), byAreaHaproxy: addedBy(base, prox, areaOf), byAreaClientPort: addedBy(base, cport, areaOf),
      byProcess: addedBy(base, xdp, processOf), byProcessHaproxy: addedBy(base, prox, processOf), byProcessClientPort: addedBy(base, cport, processOf),
      byFunction: addedBy(base, xdp, kernelFunction), byFunctionHaproxy: addedBy(base, prox, kernelFunction), byFunctionClientPort: addedBy(base, cport, kernelFunction),
    };
    areaCols.push(added(r.byArea), added(r.byAreaClientPort), added(r.byAreaHaproxy));
    procCols.push(added(r.byProcess), added(r.byProcessClientPort), added(r.byProcessHaproxy));
    fnRows.set(`XDP LB ${load}`, r.byFunction);
    fnRows.set(`${XDP_CLIENT_PORT} ${load}`, r.byFunctionClientPort);
    out[load] = {
      totals: [base, xdp, cport, prox].map((p) => ({ config: p.config, requests: p.requests, samples: p.samples.reduce((a, s) => a + s.samples, 0), perfBusyNsPerReq: busyNsPerRequest(p), procStatBusyNsPerReq: p.busyNsPerReq })),
      ...r, byFunction: r.byFunction.slice(0, 60), byFunctionHaproxy: r.byFunctionHaproxy.slice(0, 60), byFunctionClientPort: r.byFunctionClientPort.slice(0, 60),
    };
  }
  ctx.metric('profile', out);
  const thin = profiles.filter((p) => p.requests === 0 || busyNsPerRequest(p) <= 0);
  ctx.check('perf profiled every configuration under load (saturated and paced)', thin.length === 0,
    profiles.map((p) => `${p.config} ${p.load}: ${p.requests} requests, ${p.samples.filter((x) => !isIdle(x)).reduce((a, x) => a + x.samples, 0)} busy samples`).join('; '));
  // columns: XDP LB, client port, HAProxy (saturated), then the same paced; sorted by the XDP LB paced
  const areas = [...new Set(areaCols.flatMap((m) => [...m.keys()]))].sort((a, b) => (areaCols[3]!.get(b) ?? 0) - (areaCols[3]!.get(a) ?? 0));
  const fnTable = (config: string, load: Load) => {
    const rows = fnRows.get(`${config} ${load}`)!;
    const top = [...rows.slice(0, 12), ...rows.slice(-4).filter((r) => r.addedNsPerReq < 0)];
    return { kind: 'table' as const, caption: `${config}, ${load}: the functions that add the most (and the most negative) ns per request over the direct path`, columns: ['function', 'area', 'direct ns/req', `${config} ns/req`, 'added'],
      rows: top.map((r) => [r.key, r.key.endsWith('(user space)') ? 'user space' : areaOf({ comm: '', dso: '[kernel.kallsyms]', kernel: true, sym: r.key, samples: 0 }), n0(r.baseNsPerReq), n0(r.nsPerReq), n0(r.addedNsPerReq)]) };
  };
  ctx.section('Where the added CPU sits (perf profile)',
    { kind: 'text', text: `Keep-alive runs of the direct path, HAProxy, the XDP LB (XDP_TX path) and the XDP LB on the client-facing port, saturated (wrk -c${loads.saturated.connections}) and paced (wrk -c${loads.paced.connections}, ${loads.paced.delayMs} ms between a response and the next request), ${loads.saturated.durationS} s each, recorded on every CPU with perf (cpu-clock, ${PROFILE_HZ} Hz, the function the CPU was in; no call chains). A sample is worth ${(1000 / PROFILE_HZ).toFixed(3)} ms of CPU; samples per request are compared with the direct path's at the same load, function by function. The idle loop is left out; softirq work done on an idle CPU is not. Work that runs with interrupts off is charged where they are enabled again (finish_task_switch, _raw_spin_unlock_irqrestore: mostly the scheduler's context switches). These runs are extra (not the rounds above) and have BPF stats off. Added per request by this profile — ${headline.join('; ')}.` },
    { kind: 'table', caption: 'added ns per request over the direct path at the same load, by area', columns: ['area', 'XDP LB, saturated', 'client port, saturated', 'HAProxy, saturated', 'XDP LB, paced', 'client port, paced', 'HAProxy, paced'],
      rows: areas.map((k) => [k, ...areaCols.map((m) => n0(m.get(k) ?? 0))]) },
    { kind: 'table', caption: 'added ns per request over the direct path at the same load, by process (its kernel and user time; swapper is softirq work done on an idle CPU; ≥ 20 ns somewhere)', columns: ['process', 'XDP LB, saturated', 'client port, saturated', 'HAProxy, saturated', 'XDP LB, paced', 'client port, paced', 'HAProxy, paced'],
      rows: [...new Set(procCols.flatMap((m) => [...m.keys()]))].filter((k) => procCols.some((m) => Math.abs(m.get(k) ?? 0) >= 20)).sort((a, b) => (procCols[3]!.get(b) ?? 0) - (procCols[3]!.get(a) ?? 0)).map((k) => [k, ...procCols.map((m) => n0(m.get(k) ?? 0))]) },
    fnTable('XDP LB', 'saturated'),
    fnTable('XDP LB', 'paced'),
    fnTable(XDP_CLIENT_PORT, 'saturated'),
    fnTable(XDP_CLIENT_PORT, 'paced'),
    { kind: 'table', caption: 'cross-check: busy ns per request by perf (idle left out) against /proc/stat over the same run', columns: ['configuration', 'load', 'requests', 'samples', 'perf busy ns/req', '/proc/stat busy ns/req'],
      rows: profiles.map((p) => [p.config, p.load, p.requests, p.samples.reduce((a, s) => a + s.samples, 0), n0(busyNsPerRequest(p)), n0(p.busyNsPerReq)]) },
  );
  return d2;
}

const scenario: Scenario = {
  name: 'xdp-lb',
  description: 'XDP L4 load balancer (Maglev, conntrack, L2 DSR and IPIP/IP6IP6) vs HAProxy and nginx stream on one netns topology',
  tools: ['build', 'lb'],
  // the NIC-like path (scenarios/xdp-lb/nic.ts): native XDP on virtio-net over the guest's wire
  vm: { wire: true },
  options: {
    backends: { type: 'int', min: 2, max: 64, valueName: 'N', description: 'nginx backends behind the VIPs (default 3; the functional checks take one out, so at least 2)' },
    'load-backends': { type: 'int', min: 1, max: 64, valueName: 'N', description: 'how many of the backends the load runs go to, through every LB alike (default 1: the one the direct path reaches, so the LB hop is the only difference)' },
    duration: { type: 'int', min: 1, max: 3600, valueName: 'S', description: 'seconds per wrk load run (default 2; bench 10)' },
    connections: { type: 'int', min: 1, valueName: 'N', description: 'wrk connections (default 50)' },
    'pps-frames': { type: 'int', min: 1000, valueName: 'N', description: 'frames per UDP pps measurement (default 1000000; bench 5000000)' },
    repeat: { only: 'bench', type: 'int', min: 1, max: 1000, valueName: 'N', description: 'bench: interleaved rounds of direct / HAProxy / nginx / XDP LB and of the pps pair (default 3)' },
    napi: { type: 'string', choices: ['softirq', 'threaded'], description: 'bench, pps section: veth receives in softirq (default) or in NAPI kernel threads on both cores' },
    'paced-rps': { type: 'int', min: 100, valueName: 'N', description: 'bench: the fixed rate of the paced keep-alive runs, requests/s (default 20000; 2 ms between a response and the next request, N/500 connections)' },
    'paced-rps-close': { type: 'int', min: 100, valueName: 'N', description: 'bench: the fixed rate of the paced new-connection runs, requests/s (default 4000; 10 ms between requests, N/100 connections)' },
    profile: { type: 'boolean', description: 'also record keep-alive load runs (saturated and paced) of the direct path, HAProxy and the XDP LB system-wide with perf (cpu-clock) and break the added CPU per request down by area, process and kernel function; the perf.data files stay in the report directory (needs perf: linux-perf)' },
    only: { type: 'string', choices: ['scaling', 'pps', 'profile'], description: 'bench: run only this part (scaling: control-plane apply time and memory for 10/1,000/10,000 backends; pps: UDP forwarding rates against the ceilings, XDP_TX and devmap paths; profile: the --profile section alone)' },
  },
  validate(o) {
    const backends = typeof o.backends === 'number' ? o.backends : 3;
    if (typeof o['load-backends'] === 'number' && o['load-backends'] > backends) return { message: `--load-backends ${o['load-backends']} is more than the ${backends} backends`, fix: `--backends ${o['load-backends']} or fewer --load-backends` };
    if (o.profile !== true && o.only !== 'profile') return undefined;
    if (o.only !== undefined && o.only !== 'profile') return { message: `--profile records the load runs, which --only ${String(o.only)} leaves out`, fix: 'drop --only, or drop --profile' };
    if (!findOnPath('perf')) return PERF_MISSING;
    return undefined;
  },
  async run(ctx) {
    const bench = ctx.mode === 'bench';
    const n = numberOption(ctx, 'backends', 3);
    const load = { durationS: numberOption(ctx, 'duration', bench ? 10 : 2), connections: numberOption(ctx, 'connections', 50) };
    const ppsRepeat = numberOption(ctx, 'pps-frames', bench ? 5_000_000 : 1_000_000);
    const repeat = bench ? numberOption(ctx, 'repeat', 3) : 1;
    const ppsReps = repeat;
    // the virtio-net wire exists only in guests, where QEMU moves every frame: fewer frames per run
    const nicFrames = Math.max(10_000, Math.round(ppsRepeat / timeScale()));
    const instance = `xlb${process.pid}`;
    const loadN = numberOption(ctx, 'load-backends', 1);

    // `pnpm lab bench xdp-lb --only scaling`: the control-plane scaling section alone (~1 min)
    if (ctx.options.only === 'scaling') {
      swept0(await sweepStale('xlb'), sweepStalePins('xlbs'), ctx);
      const t = await buildTopology({ prefix: 'xlb', backends: 0, peerXdp: false, log: (s) => ctx.progress.info(s) });
      ctx.defer('remove namespaces, veths, helper programs', () => t.dispose());
      await controlPlaneScaling(ctx, t);
      return;
    }

    // `pnpm lab bench xdp-lb --only profile`: the perf profile section alone (~1.5 min)
    if (ctx.options.only === 'profile') {
      swept0(await sweepStale('xlb'), [...sweepStalePins('xlb'), ...sweepStalePins('xlbc')], ctx);
      const t = await buildTopology({ prefix: 'xlb', backends: n, peerXdp: true, log: (s) => ctx.progress.info(s) });
      ctx.defer('remove namespaces, veths, helper programs', () => t.dispose());
      await startNginxBackends(t);
      let d = await startDaemon(t, loadConfigOf(t, instance, loadN));
      ctx.defer('stop LB daemon (detach, unpin)', () => d.stop(true));
      d = await profileConfigs(ctx, t, d, { saturated: load, paced: pacedLoad(ctx, load.durationS, 'keep-alive') }, instance, loadN);
      return;
    }

    // `pnpm lab bench xdp-lb --only pps`: the forwarding-rate section alone (~1–2 min)
    if (ctx.options.only === 'pps') {
      swept0(await sweepStale('xlb'), sweepStalePins('xlb'), ctx);
      const t = await buildTopology({ prefix: 'xlb', backends: n, peerXdp: false, log: (s) => ctx.progress.info(s) });
      ctx.defer('remove namespaces, veths, helper programs', () => t.dispose());
      await startNginxBackends(t);
      const d = await startDaemon(t, lbConfig(t, instance));
      ctx.defer('stop LB daemon (detach, unpin)', () => d.stop(true));
      await forwardingRates(ctx, t, d, { frames: ppsRepeat, rounds: ppsReps, threadedNapi: ctx.options.napi === 'threaded' });
      await nicForwardingRates(ctx, t, { frames: nicFrames, rounds: ppsReps });
      return;
    }

    ctx.progress.step(`topology: client, LB, fabric bridge, ${n} nginx backends`);
    const swept = await sweepStale('xlb');
    swept.push(...sweepStalePins('xlb'), ...sweepStalePins('xlbs'), ...sweepStalePins('xlbc'));
    if (swept.length) ctx.progress.warn(`removed namespaces/pins of a crashed run: ${swept.join(', ')}`);
    // (buildTopology reports its own phases' times)
    const t = await buildTopology({ prefix: 'xlb', backends: n, peerXdp: false, log: (s) => ctx.progress.info(s) });
    ctx.defer('remove namespaces, veths, helper programs', () => t.dispose());
    let t0 = performance.now();
    const since = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
    await startNginxBackends(t);
    ctx.progress.info(`${n} nginx backends answering (${since()})`);
    t0 = performance.now();

    // forwarding modes: L2 DSR always (and for every load run); IPIP/IP6IP6 where the kernel can
    // decapsulate on the backends (checked end to end after the DSR checks, on VIPs of its own)
    const ipipMissing = await probeIpip(t);
    if (ipipMissing !== null) ctx.unsupported('IPIP/IP6IP6 forwarding', 'ipip/ip6tnl modules (CONFIG_NET_IPIP, CONFIG_IPV6_TUNNEL)', ipipMissing);
    const offloads: Block = {
      kind: 'table', caption: 'offload state (ethtool -k) at the start; client tx checksum/TSO/GSO/SG off for every configuration',
      columns: ['interface', 'tx-checksumming', 'scatter-gather', 'tcp-segmentation-offload', 'generic-segmentation-offload', 'generic-receive-offload'],
      rows: [],
    };
    for (const [role, dev] of [['client', 'c0'], ['lb', 'lb0'], ['fabric', 'plb'], ['b1', 'eth0']] as const) {
      const o = await t.topo.offloadState(role, dev);
      offloads.rows.push([`${role}/${dev}`, o['tx-checksumming'] ?? '?', o['scatter-gather'] ?? '?', o['tcp-segmentation-offload'] ?? '?', o['generic-segmentation-offload'] ?? '?', o['generic-receive-offload'] ?? '?']);
    }
    ctx.progress.info(`IPIP probe and offload state read (${since()})`);

    // Interleaved rounds: direct, HAProxy, nginx stream, XDP LB, then again. The XDP program (and the
    // peer's xdp_sink) is detached between rounds, so every proxy run sees veths without XDP.
    const rows: Row[] = [];
    ctx.metric('runs', rows); // filled as the runs finish: a stopped run keeps the ones it has
    const none = async () => null;
    // the load runs reach the same loadN backends whatever the path: the direct path goes to
    // backend 1, so by default every LB balances over backend 1 alone. Spread over 3 backends
    // while the direct path used 1, each nginx batched fewer requests per wake-up and that
    // showed as CPU "added" by the LB (--profile: nginx's own CPU per request 1.9x the direct
    // run's at the paced rate, reports/20261202-094810-xdp-lb-host).
    const loadConfig = () => loadConfigOf(t, instance, loadN);
    // bench: after a configuration's saturated runs, the same at a fixed request rate (pacedLoad)
    // the paced runs' CPU by perf's sampling where perf exists: at a paced load tick-based
    // /proc/stat disagreed with it, unevenly per configuration (--profile's cross-check table)
    const pacedPerf = bench && findOnPath('perf') !== null;
    if (bench && !pacedPerf) ctx.progress.warn('perf is not installed: the paced runs\' CPU is tick-based /proc/stat only, informational (apt-get install linux-perf, or `pnpm lab setup lb`)');
    const measureAll = async (config: string, url: string, lbCpu: () => Promise<number | null>, mem: () => Promise<number | null>, round: number) => {
      for (const close of [false, true]) rows.push({ ...(await measure(ctx, t, config, url, close, load, lbCpu, mem)), round });
      if (!bench) return;
      for (const close of [false, true]) {
        const file = pacedPerf ? path.join(ctx.outDir, `paced-${fileSlug(config)}-${close ? 'close' : 'keepalive'}-r${round + 1}.data`) : undefined;
        rows.push({ ...(await measure(ctx, t, config, url, close, pacedLoad(ctx, load.durationS, close ? 'new connection' : 'keep-alive'), lbCpu, mem, file)), round });
      }
    };
    const stats = enableStats(); // run_time_ns accounting, system-wide while open
    ctx.defer('BPF stats off', () => stats.close());
    let d: Daemon | undefined;
    ctx.defer('stop LB daemon (detach, unpin)', () => d?.stop(true));
    let daemonRss = 0;
    for (let round = 0; round < repeat; round++) {
      if (ctx.signal.aborted) break;
      const tag = repeat > 1 ? `round ${round + 1}/${repeat}: ` : '';
      ctx.progress.step(`${tag}reference: client → one backend directly (no LB)`);
      await measureAll('direct (no LB)', `http://${backend4(0)}/`, none, none, round);
      for (const [start, port] of [[startHaproxy, HAPROXY_PORT], [startNginxStream, NGINX_PORT]] as const) {
        const p = await start(t, loadN);
        ctx.progress.step(`${tag}${p.name} in the LB namespace`);
        const cpu = async () => processCpuNs(p.pids());
        const mem = async () => rssBytes(p.pids());
        await measureAll(p.name, `http://${LB4}:${port}/`, cpu, mem, round);
        await p.stop();
      }
      ctx.progress.step(`${tag}XDP load balancer`);
      t.attachPeer();
      d = await startDaemon(t, round === 0 ? lbConfig(t, instance) : loadConfig());
      ctx.progress.info(`LB daemon ready ${(d.readyMs / 1000).toFixed(1)} s after its process started (load, attach, admin API)`);
      if (round === 0) {
        ctx.metric('daemonStartMs', d.readyMs);
        const st0 = await d.api.state();
        ctx.section('Setup',
          { kind: 'kv', items: { kernel: ctx.kernel.release, backends: n, 'forwarding mode': `L2 DSR (MAC rewrite) for every load run, on three paths: the LB on its own veth (lb0) sending frames back out with XDP_TX; the same LB redirecting into the backend's bridge port (devmap); a second LB on the bridge's port towards the client (pclient) redirecting into the backend's port (client port); IPIP/IP6IP6: ${ipipMissing === null ? `functional check on ${VIP4_IPIP} and ${VIP6_IPIP}` : 'unsupported on this kernel (no ipip/ip6tnl modules)'}`, 'XDP attach': `${st0.attach}, bpf_link (native on veth)`, 'Maglev ring size': st0.ringSize, 'load': `wrk -t1 -c${load.connections} -d${load.durationS}s, keep-alive and "Connection: close"`, 'load runs reach': `${loadN === 1 ? 'backend 1 only' : `backends 1–${loadN}`} through every LB (--load-backends); the direct path reaches backend 1`, 'proxies': 'HAProxy mode tcp nbthread 1; nginx stream worker_processes 1', 'cores': (await import('node:os')).cpus().length } },
          offloads,
        );
        d = await functionalChecks(ctx, t, d, instance);
        if (ipipMissing === null) {
          await ipipCheck(ctx, t, d).catch((e: unknown) => {
            if (ctx.signal.aborted) throw e;
            ctx.check('IPIP/IP6IP6: the checks ran to their end (VIPs added, checked and removed)', false, (e as Error).message.split('\n').slice(0, 3).join(' '));
          });
        }
        if (loadN < n) await d.api.apply(loadConfig());
      }
      const dd = d;
      const bpfNs = async () => Number((await dd.api.stats()).prog.runTimeNs);
      const xdpMem = async () => (await dd.api.stats()).mapMemoryBytes;
      ctx.progress.step(`${tag}XDP load balancer under load`);
      await measureAll('XDP LB', `http://${VIP4}/`, bpfNs, xdpMem, round);
      // the devmap path: the same LB redirecting into each backend's own port (its bridge port),
      // no second receive at the LB's bridge port and no bridge; the backends' eth0 run xdp_sink
      // (pass) for it, which this configuration alone pays
      ctx.progress.step(`${tag}XDP load balancer under load, devmap path into the backends' ports`);
      t.attachBackendSinks();
      try {
        await setBackendPorts(t, d, true);
        await measureAll(XDP_DEVMAP, `http://${VIP4}/`, bpfNs, xdpMem, round);
        await setBackendPorts(t, d, false);
        // the client-port path: a second LB, on the bridge's port towards the client, sends VIP
        // frames into the backends' ports before they reach the bridge (no LB hop at all). It
        // runs only for its own load runs, so every other configuration sees that port bare.
        ctx.progress.step(`${tag}XDP load balancer on the client-facing port (VIP frames redirected into the backends' ports, no bridge)`);
        const e = await startDaemon(t, clientPortConfig(t, `xlbc${process.pid}`, loadN), 'fabric');
        try {
          const before = await e.api.stats();
          const n0 = rows.length;
          await measureAll(XDP_CLIENT_PORT, `http://${VIP4}/`, async () => Number((await e.api.stats()).prog.runTimeNs), async () => (await e.api.stats()).mapMemoryBytes, round);
          if (round === 0) {
            const after = await e.api.stats();
            const reqs = rows.slice(n0).reduce((a, r) => a + r.requests, 0);
            const fwd = after.global.forwarded! - before.global.forwarded!;
            const errs = rows.slice(n0).reduce((a, r) => a + r.errors, 0);
            ctx.check('XDP LB on the client-facing port: every request answered, each one forwarded by the program into its backend\'s port', errs === 0 && reqs > 0 && fwd >= reqs && after.global.redirect_fail === before.global.redirect_fail,
              `${reqs} requests, ${errs} errors; the program forwarded ${fwd} frames (at least one per request), redirect failures ${after.global.redirect_fail! - before.global.redirect_fail!}`);
          }
        } finally {
          await e.stop(true);
        }
      } finally {
        t.detachBackendSinks();
      }
      daemonRss = (await d.api.stats()).controllerRssBytes;
      if (round < repeat - 1) {
        await d.stop(true);
        t.detachPeer();
      }
    }
    if (!d) return;

    // UDP pps (pps.ts): BPF stats are off here, they cost two clock reads per program run
    stats.close();
    // --profile: where the added CPU sits, by kernel function (profile.ts); BPF stats off, as the
    // clock reads would show up as XDP cost. The XDP LB is profiled first, while attached.
    if (ctx.options.profile === true) d = await profileConfigs(ctx, t, d, { saturated: load, paced: pacedLoad(ctx, load.durationS, 'keep-alive') }, instance, loadN);
    else if (loadN < n) await d.api.apply(lbConfig(t, instance)); // all backends again for the pps section
    // the load rounds above stand on their own: a failed pps section is a failed check, not a run
    // that ends with nothing reported (as the NIC section below already was)
    const pps = await forwardingRates(ctx, t, d, { frames: ppsRepeat, rounds: ppsReps, threadedNapi: ctx.options.napi === 'threaded' }).catch((e: unknown) => {
      if (ctx.signal.aborted) throw e;
      ctx.check('UDP pps on the LB veth was measured', false, (e as Error).message.split('\n').slice(0, 3).join(' '));
      return null;
    });
    const nic = await nicForwardingRates(ctx, t, { frames: nicFrames, rounds: ppsReps });

    // the paced runs' recordings, read only now that nothing more is measured (parsing and its
    // garbage collection stay out of every window), then deleted: the busy samples per request
    // are what is kept (metrics.runs)
    const recorded = rows.filter((r) => r.perfFile);
    if (recorded.length) ctx.progress.step(`reading the ${recorded.length} perf recordings of the paced runs`);
    for (const r of recorded) {
      const samples = await readProfile(r.perfFile!);
      r.perfBusyNsPerReq = busyNsPerRequest({ config: r.config, requests: r.requests, hz: PROFILE_HZ, busyNsPerReq: r.busyNsPerReq, samples });
      fs.rmSync(r.perfFile!, { force: true });
      delete r.perfFile;
    }

    // ---- results ----
    const nRounds = Math.max(...rows.map((r) => r.round ?? 0)) + 1;
    const perRound = (config: string, conn: Row['conn'], load: Row['load'] = 'saturated') => Array.from({ length: nRounds }, (_, i) => rows.find((r) => r.config === config && r.conn === conn && r.round === i && (r.load ?? 'saturated') === load)).filter((r): r is Row => !!r);
    /** the median of every numeric field over rounds: what the tables and charts show */
    const get = (config: string, conn: Row['conn']): Row => {
      const xs = perRound(config, conn);
      const m = (f: (r: Row) => number | null) => (xs.some((r) => f(r) === null) ? null : spreadOf(xs.map((r) => f(r)!)).median);
      return {
        config, conn, round: -1, rps: m((r) => r.rps)!, requests: m((r) => r.requests)!, errors: Math.max(...xs.map((r) => r.errors)), p50Us: m((r) => r.p50Us)!, p99Us: m((r) => r.p99Us)!, p999Us: m((r) => r.p999Us)!,
        lbCpuNsPerReq: m((r) => r.lbCpuNsPerReq), softirqNsPerReq: m((r) => r.softirqNsPerReq)!, busyNsPerReq: m((r) => r.busyNsPerReq)!, memBytes: m((r) => r.memBytes),
      };
    };
    const CONNS = ['keep-alive', 'new connection'] as const;
    const PROXIES = ['HAProxy', 'nginx stream'] as const;
    // added machine CPU per request over the direct path, inside each round: every configuration
    // is charged the same way (all CPUs' busy time from /proc/stat), whatever context the work ran in
    const added = (config: string, conn: Row['conn'], load: Row['load'] = 'saturated') => {
      const base = perRound('direct (no LB)', conn, load);
      return perRound(config, conn, load).map((r, i) => (base[i] ? r.busyNsPerReq - base[i]!.busyNsPerReq : NaN));
    };
    // a ratio of added CPU needs a positive denominator: a round where the denominator added nothing
    // measurable (noise at or below zero) gives no ratio rather than a negative one. Used for
    // XDP ÷ proxy (a fraction, defined where the XDP path adds ≤ 0) and program-only ratios
    const ratioPos = (num: number[], den: number[]) => num.map((x, i) => (den[i]! > 0 ? x / den[i]! : NaN));
    // proxy ÷ XDP ("times below"): a round where the XDP path added nothing measurable (≤ 0) while
    // the proxy added CPU is ∞ — it meets a "≥ N× below" goal and is counted (goalByRounds), rather
    // than dropped from the rounds as a missing ratio. The median counts it too (spreadOf): most
    // rounds ∞ make the median ∞, which results.json can only write as null ("—" beside the goal's
    // "met in k/n rounds"), rather than the finite ratio that dropping them left
    const timesBelow = (proxy: number[], xdp: number[]) => proxy.map((x, i) => (xdp[i]! > 0 ? x / xdp[i]! : x > 0 && xdp[i]! <= 0 ? Infinity : NaN));
    const ratios: Record<string, number | null> = {};
    const fin = (x: number) => (Number.isFinite(x) ? x : null);
    const slug = (s: string) => s.replace(/ stream$/, '').replace(/[^A-Za-z]/g, '').toLowerCase();
    const connSlug = (c: Row['conn']) => (c === 'keep-alive' ? 'keepAlive' : 'newConnection');
    const pacedRps = (config: string, conn: Row['conn']) => spreadOf(perRound(config, conn, 'paced').map((r) => r.rps)).median;
    // the paced runs are judged on perf's samples where every one was recorded (tick-free);
    // otherwise on /proc/stat's ticks, and then only as information
    const paced = rows.filter((r) => r.load === 'paced');
    const pacedByPerf = paced.length > 0 && paced.every((r) => r.perfBusyNsPerReq !== undefined);
    const addedPaced = (config: string, conn: Row['conn']) => {
      if (!pacedByPerf) return added(config, conn, 'paced');
      const base = perRound('direct (no LB)', conn, 'paced');
      return perRound(config, conn, 'paced').map((r, i) => (base[i] ? r.perfBusyNsPerReq! - base[i]!.perfBusyNsPerReq! : NaN));
    };
    const XDP_PATHS = [['XDP LB', '', 'XDP LB'], [XDP_DEVMAP, '.devmap', 'XDP LB devmap path'], [XDP_CLIENT_PORT, '.clientPort', 'XDP LB on the client-facing port']] as const;
    for (const conn of CONNS) {
      // paced (bench): every configuration at the same request rate, judged on perf's samples. At a
      // fixed rate an XDP path's added CPU can be zero or below (within noise, or less work than
      // the direct path), so every path is put as a fraction of the proxy's (≤ 1/10, ≤ 1/5),
      // which stays defined there; proxy ÷ XDP would not
      for (const [cfg, suffix, what] of XDP_PATHS) {
        const xPaced = addedPaced(cfg, conn);
        if (!xPaced.length) continue;
        for (const p of PROXIES) {
          const pPaced = addedPaced(p, conn);
          const target = conn === 'keep-alive' ? 10 : 5;
          const frac = ratioPos(xPaced, pPaced);
          ratios[`added_machine_cpu paced ${what} / ${p} ${conn}`] = fin(spreadOf(frac).median);
          ctx.headline(headlineFromRounds({
            name: `lb.pacedAddedCpuPerRequest.${connSlug(conn)}.vs${slug(p) === 'haproxy' ? 'Haproxy' : 'Nginx'}${suffix}`,
            label: `${what} at a fixed rate (~${Math.round(pacedRps(cfg, conn))} requests/s, every configuration alike): added machine CPU per request over the direct path (${conn})${pacedByPerf ? ', by perf' : ''}, as a fraction of ${p}'s`, unit: 'µs/request', better: 'lower',
            rounds: xPaced.map((x) => x / 1000),
            comparator: {
              name: p, rounds: pPaced.map((x) => x / 1000), ratioRounds: frac, likeForLike: false,
              note: `ratio = ${what} ÷ ${p} at the same request rate, a fraction ("${target}x below" is ≤ ${1 / target}; ≤ 0 where the path costs no more than the direct one). ${pacedByPerf ? `CPU = perf's cpu-clock samples on every CPU during the run (${PROFILE_HZ} Hz, idle left out), not /proc/stat's ticks, which at a paced load disagree with perf's sampling unevenly per configuration (--profile's cross-check table shows by how much in a run)` : 'Informational, no goal: perf was not available, and /proc/stat charges CPU by ticks, which at a paced load disagrees with perf\'s sampling'}. The XDP LB (L2 DSR) never sees responses; the proxy carries both directions over two connections`,
            },
            ...(pacedByPerf ? { goal: { op: '<=' as const, target: 1 / target, of: 'ratio' as const } } : {}),
          }));
        }
      }
      for (const p of PROXIES) {
        const pAdded = added(p, conn);
        const dAdded = added(XDP_DEVMAP, conn);
        ratios[`added_machine_cpu ${p} ${conn} / XDP devmap`] = fin(spreadOf(timesBelow(pAdded, dAdded)).median);
        ctx.headline(headlineFromRounds({
          name: `lb.addedCpuPerRequest.${connSlug(conn)}.vs${slug(p) === 'haproxy' ? 'Haproxy' : 'Nginx'}.devmap`,
          label: `XDP LB, devmap path, at saturation (wrk closed-loop): added machine CPU per request over the direct path (${conn}) vs ${p}`, unit: 'µs/request', better: 'lower',
          rounds: dAdded.map((x) => x / 1000),
          comparator: { name: p, rounds: pAdded.map((x) => x / 1000), ratioRounds: timesBelow(pAdded, dAdded), likeForLike: false, note: `ratio = ${p} ÷ XDP LB (devmap path); ∞ in a round where the devmap path added ≤ 0 (met). The LB redirects into the backend's own port; the proxy carries both directions over two connections` },
          goal: { op: '>=', target: conn === 'keep-alive' ? 10 : 5, of: 'ratio' },
        }));
      }
      // the client-port path can cost less than the direct path (it skips the bridge), so its
      // added CPU may be zero or negative: the goal is put as a fraction of the proxy's added
      // CPU (≤ 1/10, ≤ 1/5), which stays defined there, instead of proxy ÷ LB
      for (const p of PROXIES) {
        const pAdded = added(p, conn);
        const cAdded = added(XDP_CLIENT_PORT, conn);
        const frac = ratioPos(cAdded, pAdded);
        ratios[`added_machine_cpu XDP client port / ${p} ${conn}`] = fin(spreadOf(frac).median);
        ctx.headline(headlineFromRounds({
          name: `lb.addedCpuPerRequest.${connSlug(conn)}.vs${slug(p) === 'haproxy' ? 'Haproxy' : 'Nginx'}.clientPort`,
          label: `XDP LB on the client-facing port, at saturation (wrk closed-loop): added machine CPU per request over the direct path (${conn}), as a fraction of ${p}'s`, unit: 'µs/request', better: 'lower',
          rounds: cAdded.map((x) => x / 1000),
          comparator: { name: p, rounds: pAdded.map((x) => x / 1000), ratioRounds: frac, likeForLike: false, note: `ratio = XDP LB (client-facing port) ÷ ${p}, a fraction: the goal "${conn === 'keep-alive' ? '10' : '5'}x below" is a ratio ≤ ${conn === 'keep-alive' ? '0.1' : '0.2'}. The LB sits on the port where the client's frames arrive and redirects them into the backend's port, so they skip the bridge the direct path crosses: the figure can be negative. A proxy cannot sit there; it carries both directions over two connections` },
          goal: { op: '<=', target: conn === 'keep-alive' ? 0.1 : 0.2, of: 'ratio' },
        }));
      }
      const xAdded = added('XDP LB', conn);
      const xProg = perRound('XDP LB', conn).map((r) => r.lbCpuNsPerReq ?? NaN);
      for (const p of PROXIES) {
        const key = `${p} ${conn}`;
        const pAdded = added(p, conn);
        const pOwn = perRound(p, conn).map((r) => r.lbCpuNsPerReq ?? NaN);
        ratios[`added_machine_cpu ${key} / XDP`] = fin(spreadOf(timesBelow(pAdded, xAdded)).median);
        ratios[`cpu_per_request (XDP program only, upper bound of the ratio) ${key} / XDP`] = fin(spreadOf(ratioPos(pOwn, xProg)).median);
        ratios[`p99 XDP / ${key}`] = fin(spreadOf(perRoundRatios(perRound('XDP LB', conn).map((r) => r.p99Us), perRound(p, conn).map((r) => r.p99Us))).median);
        ratios[`rps XDP / ${key}`] = fin(spreadOf(perRoundRatios(perRound('XDP LB', conn).map((r) => r.rps), perRound(p, conn).map((r) => r.rps))).median);
        ctx.headline(headlineFromRounds({
          name: `lb.addedCpuPerRequest.${connSlug(conn)}.vs${slug(p) === 'haproxy' ? 'Haproxy' : 'Nginx'}`,
          label: `XDP LB at saturation (wrk closed-loop): added machine CPU per request over the direct path (${conn}) vs ${p}`, unit: 'µs/request', better: 'lower',
          rounds: xAdded.map((x) => x / 1000),
          comparator: { name: p, rounds: pAdded.map((x) => x / 1000), ratioRounds: timesBelow(pAdded, xAdded), likeForLike: false, note: `ratio = ${p} ÷ XDP LB (times more CPU the proxy adds; ∞ in a round where the XDP LB added ≤ 0, met). The XDP LB (L2 DSR) never sees responses; the proxy carries both directions over two connections` },
          goal: { op: '>=', target: conn === 'keep-alive' ? 10 : 5, of: 'ratio' },
        }));
      }
      ctx.headline(headlineFromRounds({ name: `lb.programCpuPerRequest.${connSlug(conn)}`, label: `XDP LB program run time per request (${conn}), a lower bound of its cost`, unit: 'µs/request', better: 'lower', rounds: xProg.map((x) => x / 1000) }));
      const xr = perRound('XDP LB', conn).map((r) => r.rps);
      ctx.headline(headlineFromRounds({ name: `lb.rps.${connSlug(conn)}`, label: `XDP LB requests/s (${conn}), wrk -c${load.connections}`, unit: 'requests/s', better: 'higher', rounds: xr, comparator: { name: 'direct path (no LB)', rounds: perRound('direct (no LB)', conn).map((r) => r.rps), note: 'ratio = XDP LB ÷ direct, same round' } }));
    }
    ctx.metric('runs', rows);
    ctx.metric('rounds', nRounds);
    ctx.metric('ratios', ratios);
    ctx.metric('memory', { xdpMapBytes: get('XDP LB', 'keep-alive').memBytes, controllerRssBytes: daemonRss, haproxyRssBytes: get('HAProxy', 'keep-alive').memBytes, nginxStreamRssBytes: get('nginx stream', 'keep-alive').memBytes });
    ctx.metric('offloads', offloads.rows);

    const configs = ['direct (no LB)', 'HAProxy', 'nginx stream', 'XDP LB', XDP_DEVMAP, XDP_CLIENT_PORT];
    const medRows = configs.flatMap((c) => CONNS.map((conn) => get(c, conn)));
    const roundsNote = nRounds > 1 ? `Medians over ${nRounds} interleaved rounds (direct, HAProxy, nginx stream, XDP LB, then again); every round is in results.json (metrics.runs).` : 'One round (bench mode repeats: --repeat).';
    ctx.section('Requests per second',
      { kind: 'text', text: roundsNote },
      { kind: 'chart', type: 'bar', title: `RPS (wrk -c${load.connections}, ${load.durationS}s)`, labels: configs, datasets: CONNS.map((c) => ({ label: c, data: configs.map((k) => Math.round(get(k, c).rps)) })), yLabel: 'requests/s' },
      { kind: 'table', columns: ['configuration', 'connections', 'RPS', 'RPS range', 'errors (worst round)', 'p50 µs', 'p99 µs', 'p99.9 µs'], rows: medRows.map((r) => [r.config, r.conn, Math.round(r.rps), rangeOf(perRound(r.config, r.conn).map((x) => x.rps)), r.errors, r.p50Us, r.p99Us, r.p999Us]) },
    );
    ctx.section('Latency',
      { kind: 'chart', type: 'bar', title: 'p99 latency (median over rounds)', labels: configs, datasets: CONNS.map((c) => ({ label: c, data: configs.map((k) => get(k, c).p99Us) })), yLabel: 'µs' },
    );
    const lbConfigs = ['HAProxy', 'nginx stream', 'XDP LB', XDP_DEVMAP, XDP_CLIENT_PORT];
    // read from this kernel's config, not assumed (it was stated for every kernel, review session 58)
    const irqTime = configOption(kernelConfigText(), 'IRQ_TIME_ACCOUNTING');
    const irqTimeNote = irqTime === 'n'
      ? 'This kernel accounts CPU by ticks (no IRQ_TIME_ACCOUNTING in its config): softirq work that runs in a proxy\'s context is already in the proxy\'s system time, so adding softirq on top would count it twice.'
      : irqTime === 'y'
        ? 'This kernel accounts IRQ time apart (IRQ_TIME_ACCOUNTING in its config): softirq time is its own /proc/stat column, counted once in the busy time and not in the proxies\' system time.'
        : 'Whether this kernel accounts IRQ time apart (IRQ_TIME_ACCOUNTING) could not be read (no kernel config in /boot or /proc/config.gz); the busy time counts each /proc/stat column once either way.';
    ctx.section('CPU per request',
      { kind: 'text', text: `Headline: added machine CPU per request over the direct path — the busy time of all CPUs (/proc/stat: user, nice, system, irq, softirq) during a configuration's load run, per request, minus the direct run's in the same round. Every configuration is charged the same way, client and backends included, whatever context the work ran in. wrk is closed-loop: when client, LB and backends keep every CPU busy (see "machine busy" below), busy time per request approaches cores ÷ RPS, so on this machine the figure also carries each configuration's throughput. ${irqTimeNote}\n\nThe configurations do not carry the same traffic: the XDP LB forwards with L2 DSR, so responses go from the backends straight to the client and the LB never sees them; HAProxy and nginx carry both directions over two TCP connections (client↔proxy, proxy↔backend). That is the design difference being measured.\n\nLower bound for the XDP LB: its program's own run time (BPF stats run_time_ns) per request, without the veth receive work around it. The proxies' own process CPU is beside it. ${roundsNote}` },
      { kind: 'chart', type: 'bar', title: 'Added machine CPU per request over the direct path (median over rounds)', labels: lbConfigs, datasets: CONNS.map((c) => ({ label: c, data: lbConfigs.map((k) => us(spreadOf(added(k, c)).median)) })), yLabel: 'µs/request' },
      { kind: 'table', columns: ['configuration', 'connections', 'added machine CPU µs/req', 'range', 'own CPU µs/req (proxy process / XDP program)', 'machine busy µs/req', 'machine busy', 'memory'],
        rows: lbConfigs.flatMap((k) => CONNS.map((c) => {
          const r = get(k, c);
          const a = added(k, c);
          const busy = spreadOf(perRound(k, c).map((x) => x.busyShare ?? NaN)).median;
          return [k, c, us(spreadOf(a).median), rangeOf(a.map((x) => x / 1000), 2), us(r.lbCpuNsPerReq), us(r.busyNsPerReq), Number.isFinite(busy) ? `${Math.round(busy * 100)}%` : null, r.memBytes === null ? null : `${(r.memBytes / 1048576).toFixed(1)} MiB${k.startsWith('XDP LB') ? ' (maps)' : ' RSS'}`];
        })) },
      { kind: 'kv', items: { 'XDP LB controller RSS (not on the packet path)': `${(daemonRss / 1048576).toFixed(1)} MiB` } },
    );
    if (rows.some((r) => r.load === 'paced')) {
      ctx.section('CPU per request',
        { kind: 'text', text: `At a fixed request rate (paced runs, bench): wrk waits ${PACE_DELAY_MS['keep-alive']} ms (keep-alive) or ${PACE_DELAY_MS['new connection']} ms (new connection) after each response before that connection's next request, and the number of connections sets the rate, the same for every configuration (--paced-rps, --paced-rps-close) and well below each one's maximum. The saturated figures above also carry throughput (wrk is closed-loop: busy time per request approaches cores ÷ RPS, and a path that answers slower batches fewer requests per wake-up); these are the CPU each configuration adds per request at one load, which is what capacity is planned on. But /proc/stat charges CPU by ticks, and at a paced load (work woken by wrk's millisecond timers) the tick-based busy time disagrees with perf's sampling, unevenly per configuration (the perf profile's cross-check table shows by how much: --profile). ${pacedByPerf ? `So every paced run is recorded with perf (cpu-clock on every CPU, ${PROFILE_HZ} Hz; idle left out), and the added CPU here, its headlines and goals are perf's; the tick-based figure stays beside it as a cross-check. The recordings are read after the last load run and then deleted (the sample counts per run are in results.json).` : 'perf was not available for this run, so these rows are tick-based, informational and carry no goal.'} At this rate nothing is batched: every request pays its wake-ups and softirq work in full, in every configuration. Same rounds, interleaved with the saturated runs. The LB daemon's own background work (health checks of every backend, every interval) is part of the XDP LB's machine CPU; the proxies here run no active health checks.` },
        { kind: 'chart', type: 'bar', title: `Added machine CPU per request over the direct path at a fixed rate${pacedByPerf ? ', by perf' : ''} (median over rounds)`, labels: lbConfigs, datasets: CONNS.map((c) => ({ label: c, data: lbConfigs.map((k) => us(spreadOf(addedPaced(k, c)).median)) })), yLabel: 'µs/request' },
        { kind: 'table', caption: 'paced runs: every configuration at the same request rate', columns: ['configuration', 'connections', 'requests/s (median)', 'range', `added machine CPU µs/req${pacedByPerf ? ' (perf)' : ''}`, 'range', 'added, tick-based /proc/stat', 'machine busy µs/req (perf)', 'machine busy µs/req (/proc/stat)', 'machine busy', 'p99 µs'],
          rows: ['direct (no LB)', ...lbConfigs].flatMap((k) => CONNS.map((c) => {
            const xs = perRound(k, c, 'paced');
            const a = addedPaced(k, c);
            const direct = k === 'direct (no LB)';
            const m = (f: (r: Row) => number) => spreadOf(xs.map(f)).median;
            return [k, c, Math.round(m((r) => r.rps)), rangeOf(xs.map((r) => r.rps)), direct ? null : us(spreadOf(a).median), direct ? '' : rangeOf(a.map((x) => x / 1000), 2), direct ? null : us(spreadOf(added(k, c, 'paced')).median), pacedByPerf ? us(m((r) => r.perfBusyNsPerReq!)) : null, us(m((r) => r.busyNsPerReq)), `${Math.round(m((r) => r.busyShare ?? NaN) * 100)}%`, m((r) => r.p99Us)];
          })) },
      );
    }
    const goalRows: (string | number | null)[][] = [];
    const byRounds = (xs: number[], op: '<=' | '>=', target: number) => {
      const g = goalByRounds(xs, op, target);
      return g.n === 0 ? 'n/a' : `${g.verdict} (${g.detail})`;
    };
    for (const conn of CONNS) {
      for (const p of PROXIES) {
        const a = timesBelow(added(p, conn), added('XDP LB', conn));
        goalRows.push([`added machine CPU per request at saturation, ${p} ÷ XDP LB (${conn})`, conn === 'keep-alive' ? '≥ 10' : '≥ 5', fin(r1(spreadOf(a).median)), byRounds(a, '>=', conn === 'keep-alive' ? 10 : 5)]);
        if (paced.length) {
          const target = conn === 'keep-alive' ? 10 : 5;
          for (const [cfg, , what] of XDP_PATHS) {
            const xp = addedPaced(cfg, conn), pp = addedPaced(p, conn);
            const f = ratioPos(xp, pp);
            goalRows.push([`added machine CPU per request at a fixed rate${pacedByPerf ? ' (perf)' : ', tick-based'}, ${what} ÷ ${p} (${conn}; a fraction, ≤ 0 where the path costs no more than the direct one)`, pacedByPerf ? `≤ ${1 / target}` : '(informational)', fin(Math.round(spreadOf(f).median * 100) / 100), pacedByPerf ? byRounds(f, '<=', 1 / target) : '']);
          }
        }
        const dv = timesBelow(added(p, conn), added(XDP_DEVMAP, conn));
        goalRows.push([`added machine CPU per request at saturation, ${p} ÷ XDP LB devmap path (${conn})`, conn === 'keep-alive' ? '≥ 10' : '≥ 5', fin(r1(spreadOf(dv).median)), byRounds(dv, '>=', conn === 'keep-alive' ? 10 : 5)]);
        const pa = added(p, conn);
        const cf = ratioPos(added(XDP_CLIENT_PORT, conn), pa);
        goalRows.push([`added machine CPU per request at saturation, XDP LB on the client-facing port ÷ ${p} (${conn}; a fraction, ≤ 0 when that path costs less than the direct one)`, conn === 'keep-alive' ? '≤ 0.1' : '≤ 0.2', fin(Math.round(spreadOf(cf).median * 100) / 100), byRounds(cf, '<=', conn === 'keep-alive' ? 0.1 : 0.2)]);
        const po = ratioPos(perRound(p, conn).map((r) => r.lbCpuNsPerReq ?? NaN), perRound('XDP LB', conn).map((r) => r.lbCpuNsPerReq ?? NaN));
        goalRows.push([`${p} process CPU ÷ XDP program run time (${conn}) — the XDP side is a lower bound, so this ratio is an upper bound`, '(informational)', fin(r1(spreadOf(po).median)), '']);
        const l = perRoundRatios(perRound('XDP LB', conn).map((r) => r.p99Us), perRound(p, conn).map((r) => r.p99Us));
        goalRows.push([`p99 latency, XDP LB ÷ ${p} (${conn})`, '≤ 1', fin(Math.round(spreadOf(l).median * 100) / 100), byRounds(l, '<=', 1)]);
      }
    }
    for (const [label, a, b, target] of [['pps forwarded ÷ XDP_DROP ceiling, XDP_TX path', 'lbTx', 'ceiling', 0.7], ['pps forwarded ÷ XDP_TX only, XDP_TX path', 'lbTx', 'txOnly', 0.9], ['pps forwarded ÷ XDP_DROP ceiling, devmap path', 'lbDevmap', 'ceiling', 0.7], ['pps forwarded ÷ redirect only, devmap path', 'lbDevmap', 'redirectOnly', 0.9]] as const) {
      const xs = pps?.rounds.map((x) => x[a].pps / x[b].pps) ?? [];
      goalRows.push([label, `≥ ${target}`, pps?.live ? fin(Math.round(spreadOf(xs).median * 100) / 100) : null, !pps ? 'not measured: the section failed (see the checks)' : pps.live ? byRounds(xs, '>=', target) : 'unsupported on this kernel']);
      if (!nic) continue;
      const ns = nic.rounds.map((x) => x[a].pps / x[b].pps);
      goalRows.push([`${label} — virtio-net, native XDP`, `≥ ${target}`, nic.live ? fin(Math.round(spreadOf(ns).median * 100) / 100) : null, nic.live ? byRounds(ns, '>=', target) : 'unsupported on this kernel']);
    }
    ctx.section('Goals', { kind: 'table', columns: ['goal', 'target', 'measured (median of per-round ratios)', 'result'], rows: goalRows }, { kind: 'text', text: `Measured on ${ctx.kernel.release}, ${(await import('node:os')).cpus().length} shared cores: load generator, LB and backends compete for the same CPUs, and busy time in /proc/stat is machine-wide (other tenants included: see "Machine during the run"), so absolute numbers are noisy; ratios are taken inside each round. A goal is met when every round meets it. Why the added-CPU ratios stay far below the program-only ones on veth: with an XDP program on a veth, every frame goes through that veth's NAPI poll, and an XDP_TX'd frame is received again by the peer, which runs its own XDP program and then builds a fresh skb for the bridge; a NIC would do none of that (XDP runs before any skb exists and XDP_TX is a ring write). The devmap rows redirect into each backend's own port instead: no second receive at the LB's bridge port and no bridge, but the backend's eth0 then runs XDP (xdp_sink, pass) to take redirected frames. The client-port rows put the LB on the bridge's port towards the client, where the client's frames arrive (as an XDP LB on a host's NIC would be), and redirect VIP frames into the backend's port from there: no LB hop and no bridge at all, so this path can cost less than the direct one; what it still pays is XDP on two veths — the copy of every cloned TCP skb into an XDP buffer (veth cannot run XDP on an skb it shares), the NAPI polls, the program and the redirect. The pps section measures the same program and redirect on the LB's own port, so it stands for this path too. Why forwarding pps stays below 70% of XDP_DROP: a forwarded frame is received twice on veth (the XDP_TX-only and redirect-only rows are each path's limit without any LB logic), and the LB's established-flow path still does one hash lookup (the conntrack LRU) plus parsing, array reads, counters and the MAC rewrite per frame — the pps section's isolation figures (BPF_PROG_TEST_RUN) give their cost on this kernel where it was measured.` });
    if (bench) await controlPlaneScaling(ctx, t);
    const memo = await execa('bpftool', ['-j', 'prog', 'show', 'id', String((await d.api.stats()).prog.id)], { reject: false });
    if (memo.exitCode === 0) ctx.metric('xdp_prog', JSON.parse(memo.stdout));
  },
};

export default scenario;
