// socket-lb: service load balancing at connect time (bpf/socket_lb.bpf.c + controller/svc), no
// proxy and no per-packet NAT, against what a node runs otherwise: kube-proxy's iptables DNAT rules
// (statistic mode random) and IPVS, side by side in one run on one topology (see topology.ts).
//   functional (run and bench): every backend reached over TCP v4/v6, the VIP visible to the
//     application (getpeername, recvfrom), UDP request/response through the rewrite, an established
//     connection surviving the removal of its backend, drain, malformed changes rejected with the
//     maps unchanged; a `svc daemon` killed with SIGKILL keeps balancing, the next one takes it
//     over, `svc stop` ends it (crash.ts).
//   measured (run: short; bench: --repeat N rounds, longer): at each --services scale, each
//     configuration in its own client namespace/cgroup; every round runs all of them in a shuffled
//     order: connection setup latency (connect → first response byte, p50/p99), CPU per new
//     connection (client + backend on-CPU time, kernel included), and the time to change one
//     backend of one service.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { SvcController } from '../../controller/svc/controller.ts';
import type { ServiceConfig } from '../../controller/svc/config.ts';
import { isPrime } from '../../controller/lb/maglev.ts';
import { median, mad, rng, summary } from '../../lab/stats.ts';
import { goalByRounds } from '../../lab/rounds.ts';
import { timeScale, type Block, type Headline, type Scenario, type ScenarioContext } from '../../lab/scenario.ts';
import { BACKEND_PORT, buildLab, buildTool, CLIENT_PY, PYTHON, type SockLab } from './topology.ts';
import { daemonCrashCheck } from './crash.ts';
import { enableStats } from '../../controller/libbpf/index.ts';
import { mergeSlices, sliceSizes, type Sample } from './slices.ts';
import { ipvsRestore, kubeProxyNat, kubeProxyPartial, natRuleCount, timed, vipOf, type SvcSpec } from './baselines.ts';
import { setTimeout as sleep } from 'node:timers/promises';

type Mech = 'direct' | 'bpf' | 'iptables' | 'ipvs';
interface Cfg { mech: Mech; n: number; ns: string; cgroup?: string; targets: string }
interface Reply { reply?: string; peer?: string; error?: string }

const parseLines = (s: string): Reply[] => s.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Reply);
const schedstat = (pid: number) => Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
const fmt = (x: number, d = 1) => (Number.isFinite(x) ? Number(x.toFixed(d)) : null);

async function functional(ctx: ScenarioContext, lab: SockLab): Promise<void> {
  ctx.progress.step('functional checks: TCP/UDP v4/v6 through the rewrite, VIP visible, churn, bad input');
  const be4 = lab.backends4.map((a) => `${a}:${BACKEND_PORT}`);
  const be6 = lab.backends6.map((a) => `[${a}]:${BACKEND_PORT}`);
  const svc = await SvcController.start({
    cgroup: lab.cgClientRel,
    instance: `socket-lb-${process.pid}`,
    services: [
      { vip: 'tcp://10.97.0.10:80', backends: be4 },
      { vip: 'tcp://[fd97::10]:80', backends: be6, algorithm: 'random' },
      { vip: 'udp://10.97.0.10:53', backends: be4, algorithm: 'random' },
      { vip: 'udp://[fd97::10]:53', backends: be6 },
    ],
  });
  ctx.defer('close the functional socket LB', () => svc.close());
  // ahead of an egress policy's programs at the same cgroup where the kernel orders them (controller/svc/README.md)
  ctx.progress.info(`svc programs: ${svc.model.order}`);
  const once = async (proto: string, addr: string, port: number, n: number) => parseLines((await lab.exec('bpf', PYTHON, [CLIENT_PY, 'once', proto, addr, String(port), String(n)], { cgroup: true })).stdout);

  for (const [fam, addr, bes, vipText] of [['IPv4', '10.97.0.10', be4, '10.97.0.10:80'], ['IPv6', 'fd97::10', be6, '[fd97::10]:80']] as const) {
    const rs = await once('tcp', addr, 80, 30);
    const seen = new Set(rs.map((r) => r.reply));
    const errs = rs.filter((r) => r.error);
    ctx.check(`TCP ${fam}: every backend reached through the VIP`, errs.length === 0 && bes.every((b) => seen.has(b)), `${rs.length} connections, backends seen: ${[...seen].join(', ')}${errs.length ? `; errors: ${errs[0]!.error}` : ''}`);
    if (svc.model.getpeername) {
      const bad = rs.filter((r) => r.peer !== vipText);
      ctx.check(`TCP ${fam}: getpeername() shows the VIP, not the backend`, rs.length > 0 && bad.length === 0, bad.length ? `saw ${bad[0]!.peer}` : `all ${rs.length} report ${vipText}`);
    }
  }
  if (!svc.model.getpeername) ctx.unsupported('getpeername shows the VIP', 'cgroup/getpeername4/6 (Linux 5.8+)', `loading or attaching svc_getpeername4/6 failed on ${ctx.kernel.release}`);
  for (const [fam, addr, vipText] of [['IPv4', '10.97.0.10', '10.97.0.10:53'], ['IPv6', 'fd97::10', '[fd97::10]:53']] as const) {
    const un = await once('udp', addr, 53, 5);
    const bad = un.filter((r) => r.error || r.peer !== vipText || !/:8080$/.test(r.reply ?? ''));
    ctx.check(`UDP ${fam}: request/response through sendmsg/recvmsg rewrite, reply source is the VIP`, un.length === 5 && bad.length === 0, bad.length ? JSON.stringify(bad[0]) : `5/5 answered by ${[...new Set(un.map((r) => r.reply))].join(', ')}, source ${vipText}`);
    const con = await once('udpc', addr, 53, 3);
    ctx.check(`UDP ${fam}: connected socket (connect rewrite) gets replies`, con.length === 3 && con.every((r) => !r.error), JSON.stringify(con[0]));
  }

  // churn: an established connection keeps its backend when that backend is removed
  const child = execa('sh', ['-c', 'echo $$ > "$0" && exec "$@"', path.join(lab.cgClient, 'cgroup.procs'), 'nsenter', `--net=/run/netns/${lab.clientNs('bpf')}`, '--', PYTHON, CLIENT_PY, 'hold', '10.97.0.10', '80'], { reject: false });
  const lines: Reply[] = [];
  child.stdout!.on('data', (d: Buffer) => lines.push(...parseLines(String(d))));
  const next = async (k: number) => {
    child.stdin!.write('x\n');
    for (let i = 0; i < 200 && lines.length < k; i++) await sleep(25);
    return lines[k - 1];
  };
  const first = await next(1);
  const held = first?.reply;
  if (held) {
    const t = svc.removeBackend('tcp://10.97.0.10:80', held);
    const after = await next(2);
    ctx.check('removing a backend does not break its established connection', after?.reply === held, `held ${held}; after removal (${t.ms.toFixed(2)} ms) the connection answered ${JSON.stringify(after)}`);
    const fresh = await once('tcp', '10.97.0.10', 80, 20);
    ctx.check('new connections avoid the removed backend', fresh.length === 20 && fresh.every((r) => !r.error && r.reply !== held), `backends seen: ${[...new Set(fresh.map((r) => r.reply ?? r.error))].join(', ')}`);
    const other = fresh[0]?.reply ?? be4[0]!;
    svc.drainBackend('tcp://10.97.0.10:80', other);
    const drained = await once('tcp', '10.97.0.10', 80, 20);
    ctx.check('a drained backend gets no new connections', drained.every((r) => !r.error && r.reply !== other), `drained ${other}; seen ${[...new Set(drained.map((r) => r.reply ?? r.error))].join(', ')}`);
    svc.setWeight('tcp://10.97.0.10:80', other, 1);
    svc.addBackend('tcp://10.97.0.10:80', held);
    const back = await once('tcp', '10.97.0.10', 80, 40);
    ctx.check('re-added backends are reached again', new Set(back.map((r) => r.reply)).size === 3, `seen ${[...new Set(back.map((r) => r.reply))].join(', ')}`);
  } else ctx.check('removing a backend does not break its established connection', false, `no first reply: ${JSON.stringify(first)}`);
  child.stdin!.end();
  await child;

  // bad input: rejected, maps unchanged
  const before = JSON.stringify(svc.maps.services.lookupBatch());
  const rejected: string[] = [];
  for (const f of [() => svc.addBackend('tcp://10.97.0.10:80', 'fd91::11'), () => svc.addBackend('tcp://10.97.0.10:80', '10.91.0.300'), () => svc.removeBackend('tcp://10.97.9.9:80', '10.91.0.11'), () => svc.setWeight('tcp://10.97.0.10:80', be4[0]!, 5000)]) {
    try {
      f();
    } catch (e) {
      rejected.push((e as Error).message);
    }
  }
  for (const bad of [{ cgroup: lab.cgClientRel, ringSize: 100, services: [] }, { cgroup: lab.cgClientRel, services: [{ vip: 'tcp://10.97.0.1:80', backends: ['fd91::11'] }] }, { cgroup: lab.cgClientRel, services: [{ vip: 'tcp://10.97.0.1:80', backends: [] }] }] as never[]) {
    try {
      (await SvcController.start(bad)).close();
    } catch (e) {
      rejected.push((e as Error).message);
    }
  }
  ctx.check('malformed changes and configs are rejected with the maps unchanged', rejected.length === 7 && JSON.stringify(svc.maps.services.lookupBatch()) === before, rejected.join(' | '));
  ctx.metric('functional', { stats: svc.stats(), getpeername: svc.model.getpeername, order: svc.model.order });
  svc.close();

  ctx.progress.step('a svc daemon killed with SIGKILL: still balancing; the next daemon takes over; svc stop');
  await daemonCrashCheck(ctx, lab, once);
}

function specs(n: number, lab: SockLab): SvcSpec[] {
  const be = lab.backends4.map((a) => `${a}:${BACKEND_PORT}`);
  return Array.from({ length: n }, (_, i) => ({ vip: vipOf(i), port: 80, backends: [be[i % be.length]!, be[(i + 1) % be.length]!] }));
}

async function runConnlat(lab: SockLab, bin: string, c: Cfg, k: number, seed: number, withLat = false): Promise<Sample & { onCpuNs: number; lat?: number[] }> {
  const e0 = schedstat(lab.echoPid);
  const r = await lab.exec(c.ns, bin, [String(k), String(seed), ...(withLat ? ['lat'] : [])], { cgroup: c.cgroup, input: c.targets });
  const e1 = schedstat(lab.echoPid);
  const j = JSON.parse(r.stdout.trim().split('\n').pop() || '{}') as { n: number; errors: number; p50Us: number; p99Us: number; onCpuNs: number; replies: Record<string, number>; lat?: number[] };
  if (j.n === undefined) throw new Error(`connlat in ${c.ns}: ${r.stderr || r.stdout}`);
  const onCpuNs = j.onCpuNs + (e1 - e0);
  return { p50Us: j.p50Us, p99Us: j.p99Us, cpuNsPerConn: onCpuNs / Math.max(j.n, 1), errors: j.errors, n: j.n, replies: j.replies, onCpuNs, lat: j.lat };
}

/** Maglev's permutation needs a prime ring: refused at the CLI edge, before tools, builds or a boot. */
function ringSizeCheck(v: string): { message: string; fix: string } | undefined {
  const n = Number(v);
  if (isPrime(n)) return undefined;
  let lo = n - 1;
  while (lo > 7 && !isPrime(lo)) lo--;
  let hi = n + 1;
  while (!isPrime(hi)) hi++;
  const near = [lo >= 7 && isPrime(lo) ? lo : undefined, hi <= 65537 ? hi : undefined].filter((x) => x !== undefined);
  return { message: 'not a prime (Maglev needs one)', fix: `the nearest primes: --ring-size ${near.join(' or --ring-size ')}` };
}

const scenario: Scenario = {
  name: 'socket-lb',
  description: 'service load balancing at connect time (cgroup sock_addr hooks, no NAT) vs kube-proxy iptables DNAT and IPVS at 10 / 1,000 / 10,000 services',
  tools: ['build', 'svc'],
  options: {
    services: { type: 'list', default: '10,1000,10000', valueName: 'N,N,…', description: 'service counts to measure at', check: (v) => (v.split(',').map((x) => x.trim()).filter(Boolean).every((x) => /^\d+$/.test(x) && Number(x) >= 1 && Number(x) <= 100_000) ? undefined : { message: 'each count is a whole number 1-100000', fix: '--services 10,1000,10000' }) },
    repeat: { type: 'int', min: 1, max: 50, valueName: 'N', description: 'interleaved rounds (default: run 2, bench 5)' },
    connections: { type: 'int', min: 20, max: 1_000_000, valueName: 'N', description: 'new connections per configuration per round (default: run 300, bench 10000, or 2000 under emulation; in up to 10 interleaved slices)' },
    'ring-size': { type: 'int', min: 7, max: 65537, default: 251, valueName: 'P', description: 'Maglev ring slots per service (a prime)', check: ringSizeCheck },
    algorithm: { type: 'string', choices: ['maglev', 'random'], default: 'maglev', description: 'backend choice of the measured services' },
  },
  async run(ctx) {
    if (process.getuid?.() !== 0) {
      ctx.unsupported('socket-lb scenario', 'root', 'cgroup sock_addr programs, namespaces and iptables need root');
      return;
    }
    const scales = (ctx.options.services as string[]).map(Number);
    if (scales.some((n) => !Number.isInteger(n) || n < 1 || n > 100_000)) throw new Error(`--services ${scales.join(',')}: each must be an integer 1-100000`);
    const ringSize = ctx.options['ring-size'] as number;
    if (!isPrime(ringSize)) throw new Error(`--ring-size ${ringSize} is not a prime (Maglev needs one), e.g. 251`);
    const rounds = (ctx.options.repeat as number | undefined) ?? (ctx.mode === 'bench' ? 5 : 2);
    // bench: 10,000 (ten slices of 1,000) kept per-round ratios within ±1-3% on the 6.18 host, 2,000
    // (four slices) within ±4%; a TCG guest runs a connection 10-30x slower, so 2,000 there
    const k = (ctx.options.connections as number | undefined) ?? (ctx.mode === 'bench' ? (timeScale() >= 5 ? 2000 : 10_000) : 300);
    const alg = ctx.options.algorithm as 'maglev' | 'random';

    ctx.progress.step('topology: backend namespace (echo server), one client namespace per configuration');
    const roles = ['bpf', ...scales.flatMap((n) => [`ipt${n}`, `ipvs${n}`])];
    // (a dead run's crash-test svc instance was swept before the run began: sweep.ts)
    const lab = await buildLab({ clients: roles });
    ctx.defer('remove namespaces and cgroups', () => lab.dispose());
    if (lab.swept.length) ctx.progress.info(`removed namespaces of dead runs (and what ran in them): ${lab.swept.join(', ')}`);
    for (const r of roles) await lab.topo.sysctls(r, { 'net.ipv4.tcp_tw_reuse': 1, 'net.ipv4.ip_local_port_range': '1024 65000' });
    const connlat = await buildTool('connlat');

    await functional(ctx, lab);

    // ---- the configurations at each scale ----
    const cfgs: Cfg[] = [{ mech: 'direct', n: 0, ns: 'bpf', targets: lab.backends4.map((a) => `${a} ${BACKEND_PORT}`).join('\n') }];
    const ctrls = new Map<number, SvcController>();
    const setup: Record<string, Record<number, number | null>> = { bpf: {}, iptables: {}, ipvs: {} };
    const ruleCount: Record<number, number> = {};
    let ipvsOk = true;
    let ipvsWhy = '';
    for (const n of scales) {
      ctx.progress.step(`${n} services: socket LB maps, iptables (kube-proxy rules), IPVS`);
      const sp = specs(n, lab);
      const targets = sp.map((s) => `${s.vip} ${s.port}`).join('\n');
      const services: ServiceConfig[] = sp.map((s) => ({ vip: `tcp://${s.vip}:${s.port}`, backends: s.backends, algorithm: alg }));
      const t0 = performance.now();
      const c = await SvcController.start({ cgroup: lab.cgroup(`bpf${n}`), instance: `socket-lb-${process.pid}-${n}`, ringSize, maxServices: Math.max(n, 16), maxBackends: 64, services });
      setup.bpf![n] = performance.now() - t0;
      ctx.defer(`close the socket LB of ${n} services`, () => c.close());
      ctrls.set(n, c);
      cfgs.push({ mech: 'bpf', n, ns: 'bpf', cgroup: `bpf${n}`, targets });
      const ipt = await timed(lab.clientNs(`ipt${n}`), 'iptables-restore', [], kubeProxyNat(sp));
      if (!ipt.ok) throw new Error(`iptables-restore of ${n} services failed: ${ipt.stderr}`);
      setup.iptables![n] = ipt.ms;
      ruleCount[n] = await natRuleCount(lab.clientNs(`ipt${n}`));
      cfgs.push({ mech: 'iptables', n, ns: `ipt${n}`, targets });
      if (ipvsOk) {
        const v = await timed(lab.clientNs(`ipvs${n}`), 'ipvsadm', ['-R'], ipvsRestore(sp));
        if (!v.ok) {
          ipvsOk = false;
          ipvsWhy = v.stderr;
        } else {
          setup.ipvs![n] = v.ms;
          cfgs.push({ mech: 'ipvs', n, ns: `ipvs${n}`, targets });
        }
      }
      ctx.progress.info(`${n} services: socket LB ${setup.bpf![n]!.toFixed(0)} ms, iptables-restore ${ipt.ms.toFixed(0)} ms (${ruleCount[n]} nat rules)${setup.ipvs![n] !== undefined ? `, ipvsadm -R ${setup.ipvs![n]!.toFixed(0)} ms` : ''}`);
    }
    if (!ipvsOk) ctx.unsupported('IPVS baseline (ipvsadm)', 'ip_vs (CONFIG_IP_VS)', `ipvsadm -R in a fresh namespace on ${ctx.kernel.release}: ${ipvsWhy}`);

    // every configuration balances over every backend (smallest scale: few services, many hits each)
    const n0 = Math.min(...scales);
    for (const c of cfgs.filter((x) => x.n === n0 || x.mech === 'direct')) {
      const s = await runConnlat(lab, connlat, c, 200, 7);
      const seen = Object.keys(s.replies);
      ctx.check(`${c.mech}${c.n ? ` (${n0} services)` : ''}: every backend reached, no failed connection`, s.errors === 0 && lab.backends4.every((b) => seen.includes(`${b}:${BACKEND_PORT}`)), `${s.n} connections, ${s.errors} errors, replies ${JSON.stringify(s.replies)}`);
    }

    // ---- interleaved rounds ----
    const sizes = sliceSizes(k);
    ctx.progress.step(`measuring: ${rounds} round(s) × ${cfgs.length} configurations × ${k} new connections${sizes.length > 1 ? ` (in ${sizes.length} interleaved slices)` : ''}`);
    const samples = new Map<string, Sample[]>();
    const updates: Record<string, Record<number, number[]>> = { bpf: {}, iptables: {}, ipvs: {} };
    // filled as the rounds finish: a stopped bench keeps what it measured
    const recorded: Record<string, Sample[]> = {};
    ctx.metric('rounds', recorded);
    ctx.metric('updatesMs', updates);
    const key = (c: Cfg) => `${c.mech}@${c.n}`;
    const rand = rng(42);
    let step = 0;
    for (let r = 0; r < rounds; r++) {
      const order = [...cfgs];
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      const parts = new Map<string, Awaited<ReturnType<typeof runConnlat>>[]>();
      for (const [si, size] of sizes.entries()) {
        for (const c of si % 2 ? [...order].reverse() : order) {
          if (ctx.signal.aborted) throw new Error('interrupted');
          ctx.progress.update(step++ / (rounds * cfgs.length * sizes.length), `round ${r + 1}: ${c.mech}${c.n ? ` @ ${c.n}` : ''}${sizes.length > 1 ? ` (slice ${si + 1}/${sizes.length})` : ''}`);
          parts.set(key(c), [...(parts.get(key(c)) ?? []), await runConnlat(lab, connlat, c, size, 1000 + r * 100 + si, true)]);
        }
      }
      for (const c of order) samples.set(key(c), (recorded[key(c)] = [...(samples.get(key(c)) ?? []), mergeSlices(parts.get(key(c))!)]));
      // one backend of one service changes: removed, then put back (the removal is what is timed)
      for (const n of scales) {
        const sp = specs(n, lab);
        const i = (r * 7919) % n;
        const s = sp[i]!;
        const less = { ...s, backends: s.backends.slice(1) };
        const c = ctrls.get(n)!;
        const rm = c.removeBackend(`tcp://${s.vip}:80`, s.backends[0]!);
        c.addBackend(`tcp://${s.vip}:80`, s.backends[0]!);
        (updates.bpf![n] ??= []).push(rm.ms);
        const ipt = await timed(lab.clientNs(`ipt${n}`), 'iptables-restore', ['--noflush'], kubeProxyPartial(i, s, less));
        await timed(lab.clientNs(`ipt${n}`), 'iptables-restore', ['--noflush'], kubeProxyPartial(i, less, s));
        if (!ipt.ok) throw new Error(`iptables partial sync failed: ${ipt.stderr}`);
        (updates.iptables![n] ??= []).push(ipt.ms);
        if (ipvsOk) {
          const v = await timed(lab.clientNs(`ipvs${n}`), 'ipvsadm', ['-d', '-t', `${s.vip}:80`, '-r', s.backends[0]!]);
          await timed(lab.clientNs(`ipvs${n}`), 'ipvsadm', ['-a', '-t', `${s.vip}:80`, '-r', s.backends[0]!, '-m', '-w', '1']);
          (updates.ipvs![n] ??= []).push(v.ms);
        }
      }
    }
    ctx.progress.update(1);
    const baseline = await timed(lab.clientNs('bpf'), 'true', []);

    // The program's own share of a connection: connect4's run time per run, in a window of its own
    // after the rounds (kernel.bpf_stats adds two clock reads to every run: kept out of the rounds).
    // What a connection costs over direct beyond this is the rest of the path, or noise.
    const connectNs: Record<number, number | null> = {};
    let connectNsWhy = '';
    ctx.metric('connect4Ns', connectNs);
    if (!ctx.signal.aborted) {
      ctx.progress.step('BPF run time of connect4 per connection (kernel.bpf_stats, a window of its own)');
      let stats: { close(): void } | undefined;
      try {
        stats = enableStats();
      } catch (e) {
        connectNsWhy = `kernel.bpf_stats could not be turned on: ${(e as Error).message.split('\n')[0]}`;
      }
      try {
        for (const c of stats ? cfgs.filter((x) => x.mech === 'bpf') : []) {
          const ctl = ctrls.get(c.n)!;
          const before = ctl.programInfo('svc_connect4');
          await runConnlat(lab, connlat, c, Math.min(k, 2000), 7);
          const after = ctl.programInfo('svc_connect4');
          connectNs[c.n] = before && after && after.runCnt > before.runCnt ? Number(after.runTimeNs - before.runTimeNs) / Number(after.runCnt - before.runCnt) : null;
        }
      } catch (e) {
        // an aside: the rounds are measured, and stay the result
        connectNsWhy = `not measured: ${(e as Error).message.split('\n')[0]}`;
      } finally {
        stats?.close();
      }
    }

    // ---- results ----
    const med = (c: string, f: (s: Sample) => number) => median((samples.get(c) ?? []).map(f));
    const direct = med('direct@0', (s) => s.cpuNsPerConn);
    const rows: (string | number | null)[][] = [];
    /** median, and the rounds' range beside it when there is more than one */
    const withRange = (xs: number[]) => (xs.length > 1 ? `${fmt(median(xs), 2)} (${fmt(Math.min(...xs), 2)} to ${fmt(Math.max(...xs), 2)})` : xs.length ? fmt(xs[0]!, 2) : null);
    for (const c of cfgs) {
      const kk = key(c);
      const ss = samples.get(kk) ?? [];
      const cpu = ss.map((s) => s.cpuNsPerConn / 1000);
      // over direct: per round (the rounds are interleaved), so the range shows when it is noise
      const directRounds = (samples.get('direct@0') ?? []).map((s) => s.cpuNsPerConn / 1000);
      const over = c.mech === 'direct' ? [] : cpu.map((v, i) => v - (directRounds[i] ?? NaN)).filter((x) => !Number.isNaN(x));
      const upd = c.mech === 'direct' ? null : updates[c.mech]?.[c.n] ?? [];
      rows.push([c.mech === 'bpf' ? 'socket LB (BPF)' : c.mech === 'iptables' ? 'iptables DNAT (kube-proxy rules)' : c.mech === 'ipvs' ? 'IPVS (masq)' : 'direct to backends', c.n || '—', c.mech === 'iptables' ? ruleCount[c.n]! : null, fmt(med(kk, (s) => s.p50Us)), fmt(med(kk, (s) => s.p99Us)), withRange(cpu), c.mech === 'direct' ? null : withRange(over), upd === null ? null : withRange(upd), ss.reduce((a, s) => a + s.errors, 0)]);
    }
    const perRound = (mech: Mech, n: number) => (samples.get(`${mech}@${n}`) ?? []).map((s) => s.cpuNsPerConn);
    const nMax = Math.max(...scales);
    const nMin = Math.min(...scales);
    const ratioRounds = perRound('bpf', nMax).map((b, i) => perRound('iptables', nMax)[i]! / b);
    const growth = (mech: Mech) => perRound(mech, nMax).map((v, i) => v / perRound(mech, nMin)[i]!);
    const spread = (xs: number[]) => {
      const s = summary(xs);
      return { n: s.n, min: s.min, max: s.max, mad: s.mad };
    };
    const ratio = median(ratioRounds);
    // what no balancer can beat here: iptables' cost over the path with no balancing at all. The
    // headline's ≥2x goal is only as far from failing as this is above 2 (2.11 on the 6.18 host)
    const ceilingRounds = perRound('iptables', nMax).map((v, i) => v / perRound('direct', 0)[i]!);
    const p50Ratio = (samples.get(`bpf@${nMax}`) ?? []).map((b, i) => b.p50Us / ((samples.get(`iptables@${nMax}`) ?? [])[i]?.p50Us ?? NaN)).filter((x) => !Number.isNaN(x));
    // both goals judged by the same rule, round by round (one judged the median alone and failed a
    // 2-round run on a busy host outright, review session 58); one round settles nothing
    const byRounds = (xs: number[], op: '<=' | '>=', target: number) => {
      const g = goalByRounds(xs, op, target);
      return rounds < 2 ? { verdict: 'inconclusive' as const, detail: `${g.detail}, and one round settles nothing` } : g;
    };
    const hl: Headline[] = [
      {
        name: `cpuPerConn.iptablesOverBpf.${nMax}`,
        label: `CPU per new connection, iptables DNAT ÷ socket LB, at ${nMax.toLocaleString('en')} services`,
        unit: '×',
        better: 'higher',
        value: ratio,
        rounds: ratioRounds,
        spread: spread(ratioRounds),
        // the comparator's own figure is µs per connection, not the headline's ×
        comparator: { name: 'iptables DNAT (kube-proxy rules)', value: median(perRound('iptables', nMax)) / 1000, unit: 'µs / conn', ratio, likeForLike: true, note: 'client + backend on-CPU µs per connection, same topology and load generator, rounds interleaved' },
        // the goal is stated at 10,000 services: a run with fewer cannot meet or miss it
        goal: { op: '>=', target: 2, verdict: nMax < 10_000 ? 'inconclusive' : byRounds(ratioRounds, '>=', 2).verdict, detail: `issue 16: ≥2x lower CPU per new connection than iptables DNAT at 10,000 services${nMax < 10_000 ? ` (this run's largest scale: ${nMax})` : `; ${byRounds(ratioRounds, '>=', 2).detail}`}` },
        regressionFloor: 0.1,
      },
      {
        name: `cpuPerConn.bpfGrowth.${nMin}to${nMax}`,
        label: `socket LB CPU per new connection, ${nMax.toLocaleString('en')} ÷ ${nMin} services`,
        unit: '×',
        better: 'lower',
        value: median(growth('bpf')),
        rounds: growth('bpf'),
        spread: spread(growth('bpf')),
        comparator: { name: 'iptables DNAT, same ratio', value: median(growth('iptables')), likeForLike: true },
        goal: { op: '<=', target: 1.15, verdict: byRounds(growth('bpf'), '<=', 1.15).verdict, detail: `flat cost: within 15% from the smallest to the largest scale; ${byRounds(growth('bpf'), '<=', 1.15).detail}` },
        regressionFloor: 0.1,
      },
      {
        name: `setupP50.bpf.${nMax}`,
        label: `connection setup p50 (connect → first byte) through the socket LB at ${nMax.toLocaleString('en')} services`,
        unit: 'µs',
        better: 'lower',
        value: med(`bpf@${nMax}`, (s) => s.p50Us),
        rounds: (samples.get(`bpf@${nMax}`) ?? []).map((s) => s.p50Us),
        spread: spread((samples.get(`bpf@${nMax}`) ?? []).map((s) => s.p50Us)),
        comparator: { name: 'iptables DNAT', value: med(`iptables@${nMax}`, (s) => s.p50Us), ratio: median(p50Ratio), ratioRounds: p50Ratio, likeForLike: true },
        regressionFloor: 0.15,
      },
      {
        name: `updateMs.bpf.${nMax}`,
        label: `time to remove one backend of one service at ${nMax.toLocaleString('en')} services (socket LB controller, in process)`,
        unit: 'ms',
        better: 'lower',
        value: median(updates.bpf![nMax] ?? []),
        rounds: updates.bpf![nMax],
        spread: spread(updates.bpf![nMax] ?? []),
        comparator: { name: 'iptables-restore --noflush (kube-proxy partial sync)', value: median(updates.iptables![nMax] ?? []), likeForLike: false, note: `the iptables/ipvsadm times include starting the tool (a bare process start in a namespace: ${baseline.ms.toFixed(1)} ms)` },
      },
    ];
    for (const h of hl) ctx.headline(h);
    ctx.section(
      'Per configuration (medians over rounds)',
      { kind: 'table', columns: ['configuration', 'services', 'nat rules', 'setup p50 µs', 'setup p99 µs', 'CPU µs / conn (rounds\' range)', 'over direct µs (per round)', 'one-backend update ms (range)', 'failed conns'], rows, caption: `${rounds} round(s) × ${k} sequential new connections per configuration, order shuffled per round${sizes.length > 1 ? `, each configuration's connections cut into ${sizes.length} slices interleaved with the others' (A B C … C B A), so a drift of the machine's speed lands on all alike` : ''}. "Over direct" is each round's CPU per connection less the direct path's in the same round: a range that crosses 0 is noise, not a saving. CPU = on-CPU time of the client (loop only, /proc/self/schedstat) + the echo backend, kernel work in their context included (tick accounting puts softirq there). Update: BPF = SvcController.removeBackend in process; iptables = iptables-restore --noflush of the service's chains (kube-proxy partial sync, ${'`'}iptables -V${'`'} nf_tables backend); IPVS = one ipvsadm -d. Process start alone: ${baseline.ms.toFixed(1)} ms.` },
      { kind: 'chart', title: 'CPU per new connection (µs)', type: 'bar', labels: scales.map(String), datasets: (['bpf', 'iptables', 'ipvs'] as Mech[]).filter((m) => m !== 'ipvs' || ipvsOk).map((m) => ({ label: m, data: scales.map((n) => fmt(med(`${m}@${n}`, (s) => s.cpuNsPerConn) / 1000, 2)) })), xLabel: 'services', yLabel: 'µs' },
      { kind: 'chart', title: 'Connection setup p50 (µs)', type: 'bar', labels: scales.map(String), datasets: (['bpf', 'iptables', 'ipvs'] as Mech[]).filter((m) => m !== 'ipvs' || ipvsOk).map((m) => ({ label: m, data: scales.map((n) => fmt(med(`${m}@${n}`, (s) => s.p50Us))) })), xLabel: 'services', yLabel: 'µs' },
      { kind: 'kv', items: { 'direct (no LB) CPU µs/conn': fmt(direct / 1000, 2), [`ceiling of the headline ratio at ${nMax.toLocaleString('en')} services (iptables ÷ direct: an LB that cost nothing)`]: withRange(ceilingRounds), 'connect4 run time per connection (kernel.bpf_stats, a window after the rounds)': connectNsWhy || scales.map((n) => `${n.toLocaleString('en')} services: ${connectNs[n] == null ? 'n/a' : `${fmt(connectNs[n]! / 1000, 2)} µs`}`).join(', '), 'setup of all services, ms': (['bpf', 'iptables', 'ipvs'] as const).filter((m) => Object.keys(setup[m] ?? {}).length).map((m) => `${m === 'bpf' ? 'socket LB' : m}: ${Object.entries(setup[m]!).map(([n, v]) => `${Number(n).toLocaleString('en')} → ${v === null ? 'failed' : fmt(v, 1)}`).join(', ')}`).join('; '), 'published anchor': "Cilium's kube-proxy replacement write-ups report per-connection cost that stays flat with the service count while iptables grows linearly; compare the shape, not absolute numbers (different hardware)" } } as Block,
    );
    ctx.metric('setupMs', setup);
    ctx.metric('natRules', ruleCount);
    ctx.metric('processStartMs', baseline.ms);
    ctx.metric('spreadNote', { mad: mad(ratioRounds) });
  },
};

export default scenario;
