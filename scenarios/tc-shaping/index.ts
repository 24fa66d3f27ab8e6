// tc-shaping: bandwidth shaping at TC egress with Earliest Departure Time (bpf/tc_shape + fq,
// controller/tc) against the kernel's HTB and TBF configured for the same rates, side by side in
// one run on one veth (namespace snd → rcv).
//   per rate (10/100/1000 Mbit/s): one iperf3 TCP flow + a ping every 5 ms in the same class,
//     under EDT (horizon auto, and Cilium's 2 s), HTB (default leaf, and an fq_codel leaf), TBF:
//     achieved vs target, retransmits, shaper drops, RTT p50/p99 of the small packets (lost ones
//     count as infinitely late), qdisc backlog and TCP in flight, iperf3 CPU per Gbit/s;
//   two classes competing (60/40 % of 100 Mbit/s): each class vs its target, Jain fairness;
//   a rate changed mid-flow (100 → 30 Mbit/s): EDT by one map write, HTB by `tc class change`;
//   filter rules: exact counter deltas for a counted and a dropped kind of traffic.
// Configurations are interleaved round by round (order rotated); --repeat N rounds (bench: 3).
// Where the kernel has no fq qdisc (the host kernel here), EDT is "unsupported" with the evidence
// and HTB/TBF still run, so the baselines are on record.
import path from 'node:path';
import { execa } from 'execa';
import { createTopology, sweepStale, type Topology } from '../../lab/netns.ts';
import { createCgroup, findCgroup2Root, removeCgroup } from '../../common/cgroup.ts';
import { scaledTimeout, timeScale, type Scenario, type ScenarioContext } from '../../lab/scenario.ts';
import { summary, median } from '../../lab/stats.ts';
import { TcShaper, FqUnsupported } from '../../controller/tc/shaper.ts';
import { validateConfig } from '../../controller/tc/config.ts';
import { edtSelfTest } from '../../controller/tc/selftest.ts';
import { shape, KINDS, latencyHorizonMs, type Kind, type Link, type ClassDef, type Shaping } from './shapers.ts';
import { iperf, pingRtts, inFlow, probeLatency, wireMbit, txBytes, waitFlowing, qdiscBacklog, sampleUntil, tcpSample, type FlowResult } from './flows.ts';
import { crashCheck } from './crash.ts';
import { compTotalFor, judgePair, judgeRttRounds, RTT_JUDGE, type CompRow } from './judge.ts';

const SND = '10.16.0.1';
const RCV = '10.16.0.2';
const SND6 = 'fd00:16::1';
const RCV6 = 'fd00:16::2';
const PORT_A = 5201;
const PORT_B = 5202;

/**
 * The shaper configurations of the per-rate test (one TCP flow + a small-packet probe in one
 * class). `edt` is the lab's EDT as a latency-minded user runs it: the class horizon is a latency
 * budget (latencyHorizonMs). `edt-2s` is the same with Cilium's default 2 s horizon (a guard
 * against runaway SO_TXTIME, never reached here). `htb` is HTB as a user configures it (default
 * leaf) — the goal's comparator; `htb+fq_codel` gives the HTB class per-flow queues and CoDel,
 * the latency-minded HTB setup, shown beside it. TBF as before.
 */
interface RateConfig { label: string; kind: Kind; horizon?: boolean; leaf?: 'fq_codel' }
const RATE_CONFIGS: RateConfig[] = [
  { label: 'edt', kind: 'edt', horizon: true },
  { label: 'edt-2s', kind: 'edt' },
  { label: 'htb', kind: 'htb' },
  { label: 'htb+fq_codel', kind: 'htb', leaf: 'fq_codel' },
  { label: 'tbf', kind: 'tbf' },
];

interface RateRow { round: number; kind: string; target: number; goodput: number; mbit: number; err: number; retransmits: number; drops: number; rttP50: number; rttP99: number; pings: number; lost: number; lateProbes: number; probeFromS: number; probeToS: number; flowExitS: number; cpuPerGbit: number; horizonMs?: number; backlogKB?: number; backlogPkts?: number; tcpUnacked?: number; tcpCwnd?: number }

async function topology(ctx: ScenarioContext): Promise<{ t: Topology; link: Link }> {
  // (a dead run's crash-test instance was swept before the run began, its filters while its
  // namespace still stood: sweep.ts)
  const swept = await sweepStale('tcs');
  if (swept.length) ctx.progress.info(`removed namespaces of dead runs (and what ran in them): ${swept.join(', ')}`);
  const t = createTopology('tcs');
  ctx.defer('remove namespaces', () => t.dispose());
  await t.addNs('snd');
  await t.addNs('rcv');
  await t.veth({ ns: 'snd', dev: 'snd0' }, { ns: 'rcv', dev: 'rcv0' });
  await t.addr('snd', 'snd0', `${SND}/24`);
  await t.addr('rcv', 'rcv0', `${RCV}/24`);
  await t.addr('snd', 'snd0', `${SND6}/64`);
  await t.addr('rcv', 'rcv0', `${RCV6}/64`);
  // permanent neighbours: no neighbour discovery traffic of its own in the exact IPv6 counts
  await t.neigh('snd', 'snd0', RCV6, await t.mac('rcv', 'rcv0'));
  await t.neigh('rcv', 'rcv0', SND6, await t.mac('snd', 'snd0'));
  // a client started before its server listens fails at once: wait for both, not a fixed time
  // (a scaled 500 ms was 5 s of every TCG run; the servers listen well before that)
  await Promise.all([PORT_A, PORT_B].map((p) => t.waitListening(t.spawn('rcv', 'iperf3', ['-s', '-p', String(p)]), [p], scaledTimeout(5000))));
  // lives in the sending namespace for the device counters (txBytes), killed by dispose()
  const anchor = t.spawn('snd', 'sleep', ['infinity']);
  return { t, link: { topo: t, ns: t.ns('snd'), role: 'snd', dev: 'snd0', peer: RCV, ...(anchor.pid !== undefined ? { pid: anchor.pid } : {}) } };
}

/** can fq be put on this device? (the kernel may be built without sch_fq) */
function probeFq(link: Link): { ok: true } | { ok: false; evidence: string } {
  try {
    TcShaper.start({ dev: link.dev, netns: link.ns, ingress: false }).close();
    return { ok: true };
  } catch (e) {
    if (e instanceof FqUnsupported) return { ok: false, evidence: e.evidence };
    throw e;
  }
}

/** can this qdisc be put on the device? (the host kernel here has neither fq nor fq_codel) */
async function probeQdisc(link: Link, kind: string): Promise<{ ok: true } | { ok: false; evidence: string }> {
  const r = await link.topo.exec(link.role, 'tc', ['qdisc', 'replace', 'dev', link.dev, 'root', kind], { reject: false });
  if (r.exitCode !== 0) return { ok: false, evidence: `tc qdisc replace dev ${link.dev} root ${kind}: ${String(r.stderr).trim()}` };
  await link.topo.exec(link.role, 'tc', ['qdisc', 'del', 'dev', link.dev, 'root'], { reject: false });
  return { ok: true };
}

/** a TCG guest (time scaled ≥5x): where the scenario caps what it judges and samples less */
const isEmulated = () => timeScale() >= 5;

/** a shorter probe than this (100 echoes) would make p99 its worst sample */
const MIN_PROBE_S = 0.5;

/**
 * One iperf3 flow at the class's rate and, once the flow is running (seen on the device, not
 * timed from spawn: a TCG guest starts processes late) and past slow start, a ping every 5 ms in
 * the same class until shortly before the flow ends, so every probe shares the link with the
 * bulk flow. The flow lasts secs + 1 s (iperf3 adds its omitted first second) from about when the
 * device first saw it; the ping's length is what is left of that, less 0.5 s and less the time a
 * process takes to start here (the previous probe's ping, measured from its first echo). Probes
 * sent after the flow's end are still left out (inFlow) and counted (`lateProbes`): ping's pace
 * stretches behind a long queue, and the earlier fixed count (secs − 1.5 s of 5 ms echoes) had
 * probes sent after iperf3 exited in 8 of 10 runs under TCG
 * (reports/20261203-035955-tc-shaping-6.1) and, natively, 308 of 640 under HTB at 10 Mbit/s
 * (reports/20261203-040641-tc-shaping-host: their replies, at least) — where the queue they
 * measured was draining or gone. Sampled meanwhile: the root qdisc's backlog (the queue the probe
 * waits behind) and the sending socket (ss: segments in flight, cwnd), which together say where
 * the bytes sit — in the shaper, or held back in the socket by TSQ / cwnd.
 */
async function rateRun(ctx: ScenarioContext, link: Link, cfg: RateConfig, target: number, secs: number, round: number, probeStart: { s: number }): Promise<RateRow> {
  const horizonMs = cfg.horizon ? latencyHorizonMs(target) : undefined;
  const s = await shape(cfg.kind, link, [{ name: 'bulk', mbit: target, port: null, horizon: cfg.horizon ? 'auto' : undefined, leaf: cfg.leaf }]);
  try {
    const spawnAt = Date.now();
    const flowP = iperf(link.topo, 'snd', RCV, PORT_A, secs).then((f) => ({ f, exitAt: Date.now() }));
    const probe = (async () => {
      const since = await waitFlowing(link.topo, 'snd', link.dev, Math.min(target, 1000) * 0.2, scaledTimeout(5000) / 1000, link.pid);
      await new Promise((r) => setTimeout(r, 1000)); // slow start (iperf3 omits it too)
      const endBy = (since ?? spawnAt) + (secs + 1 - 0.5) * 1000;
      const probeS = Math.max(MIN_PROBE_S, (endBy - Date.now()) / 1000 - probeStart.s);
      const pingAt = Date.now();
      const pingP = pingRtts(link.topo, 'snd', RCV, probeS);
      // each sample is two processes (tc, ss), ~0.4 s of a guest CPU under TCG: fewer there
      const samples = await sampleUntil(pingP, isEmulated() ? 1500 : 500, async () => ({ q: await qdiscBacklog(link.topo, 'snd', link.dev), tcp: await tcpSample(link.topo, 'snd', RCV, PORT_A) }));
      const ping = await pingP;
      // how long ping took to start here (its first echo's send time): the next probe's sizing
      const first = ping.replies[0];
      if (first) probeStart.s = Math.max(0, (first.at - first.rtt - pingAt) / 1000);
      return { ping, samples };
    })();
    const [{ f: flow, exitAt }, { ping, samples }] = await Promise.all([flowP, probe]);
    const drops = await s.drops();
    // iperf3 exits after its results exchange: its exit is an upper bound of the flow's end, less
    // one process start-up as measured here (ping's; ~5 ms natively, ~0.3-1 s under TCG) a closer one
    const inside = inFlow(ping, exitAt - probeStart.s * 1000);
    // the class's L2 rate: the flow's frames (iperf3's own timing) plus the ping's 98-byte
    // requests out of this device (the replies come back on the peer's egress, not shaped here)
    const pingMbit = (inside.rtts.length * 98 * 8) / secs / 1e6; // inside the flow's measured seconds
    const lat = probeLatency(inside.rtts, inside.sent);
    const first = ping.replies[0], last = ping.replies.at(-1);
    const rel = (at: number | undefined) => (at === undefined ? NaN : (at - spawnAt) / 1000);
    const tcp = samples.map((x) => x.tcp).filter((x) => x !== undefined);
    return {
      round, kind: cfg.label, target, goodput: flow.mbit, mbit: wireMbit(flow) + pingMbit, err: (wireMbit(flow) + pingMbit) / target - 1, retransmits: flow.retransmits, drops,
      rttP50: lat.p50, rttP99: lat.p99, pings: inside.rtts.length, lost: lat.lost, lateProbes: inside.late,
      probeFromS: rel(first && first.at - first.rtt), probeToS: rel(last?.at), flowExitS: rel(exitAt), cpuPerGbit: flow.cpuPct / 100 / (flow.mbit / 1000), horizonMs,
      backlogKB: median(samples.map((b) => b.q.bytes)) / 1000, backlogPkts: median(samples.map((b) => b.q.packets)),
      tcpUnacked: median(tcp.map((x) => x.unacked)), tcpCwnd: median(tcp.map((x) => x.cwnd)),
    };
  } finally {
    await s.close();
  }
}

/**
 * One long flow; the device's tx rate sampled every 0.5 s. The rate is changed once the flow has
 * run phaseS seconds as the device sees it (not by a timer from spawn, which a slow VM would
 * skew), and the flow is ended phaseS seconds later. Before/after: medians of the samples with
 * the first second of each phase left out (slow start, settling).
 */
async function rateChange(t: Topology, link: Link, s: Shaping, from: number, to: number, phaseS: number) {
  const child = t.exec('snd', 'iperf3', ['-c', RCV, '-p', String(PORT_A), '-t', String(4 * phaseS + 20), '-i', '0'], { reject: false, timeout: scaledTimeout((4 * phaseS + 40) * 1000) });
  const samples: { end: number; mbit: number }[] = [];
  let prev = await txBytes(t, 'snd', link.dev, link.pid);
  const t0 = prev.t;
  let started = -1;
  let changed = -1;
  const per = 2 * phaseS; // samples per phase
  try {
    for (let i = 0; i < 8 * per && !(changed >= 0 && samples.length - changed >= per); i++) {
      await new Promise((r) => setTimeout(r, 500));
      const cur = await txBytes(t, 'snd', link.dev, link.pid);
      const mbit = ((cur.b - prev.b) * 8) / ((cur.t - prev.t) / 1000) / 1e6;
      prev = cur;
      samples.push({ end: Math.round((cur.t - t0) / 100) / 10, mbit });
      if (started < 0 && mbit > from * 0.2) started = samples.length - 1;
      if (started >= 0 && changed < 0 && samples.length - started >= per) {
        await s.setRate('bulk', to);
        changed = samples.length;
      }
    }
  } finally {
    child.kill('SIGINT');
    await child;
  }
  const before = median(samples.slice(started + 2, changed).map((x) => x.mbit));
  const after = median(samples.slice(changed + 2).map((x) => x.mbit));
  return { before, after, errBefore: before / from - 1, errAfter: after / to - 1, intervals: samples };
}

/**
 * Under emulation (TCG) single-rate accuracy is judged up to this rate; above it the figures are
 * shown with the verdict "inconclusive". One flow at 100 Mbit/s is not carried steadily there by
 * any shaper: HTB and TBF both fell >3% short in a round (reports/20261130-100020- and
 * 20261130-090543-tc-shaping-6.1; the e2e run of a fresh-check on 2026-12-03, not stored), HTB
 * −4.9% beside TBF −0.6% and EDT −0.1% (reports/20261203-010417-tc-shaping-6.1), and EDT −3.6%
 * and −5.4% in the CI and a fresh-check of b58d61e, where HTB and TBF were not both short. At
 * 50 Mbit/s (the IPv6 check) EDT got −0.5%, −0.3%, −0.3% (reports/20261202-213325-,
 * 20261203-010018-, 20261203-010417-tc-shaping-6.1).
 * The same rule as the two-class test's 24+16 Mbit/s cap: a slow machine's limit is not a verdict
 * on the shaper. Natively every reachable rate is judged.
 */
const EMULATED_JUDGE_MBIT = 50;

const r2 = (x: number) => (Number.isFinite(x) ? Math.round(x * 100) / 100 : null);
const pct = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%` : null);

const scenario: Scenario = {
  name: 'tc-shaping',
  description: 'EDT bandwidth shaping at TC egress (BPF sets skb->tstamp, fq enforces) vs HTB and TBF at 10/100/1000 Mbit/s: accuracy, fairness, latency, CPU; live rate change; filter counters; a SIGKILLed shaper daemon keeps enforcing, a restart takes its filters over in place, tc shape stop removes them',
  tools: ['tc'],
  options: {
    rates: {
      type: 'string', default: '10,100,1000', valueName: 'MBIT,…', description: 'target rates in Mbit/s',
      check: (v) => (v.split(',').every((x) => /^\d+$/.test(x.trim()) && Number(x) >= 1 && Number(x) <= 100_000) ? undefined : { message: 'expected a comma-separated list of whole Mbit/s values 1-100000', fix: 'e.g. --rates 10,100,1000' }),
    },
    duration: { type: 'int', min: 2, max: 120, default: 4, valueName: 'S', description: 'seconds per flow (the first is omitted: slow start)' },
    repeat: { type: 'int', min: 1, max: 50, valueName: 'N', description: 'interleaved rounds (default: run 1, bench 3)' },
  },
  async run(ctx) {
    if (process.getuid?.() !== 0) {
      ctx.unsupported('tc-shaping', 'root', 'namespaces, qdiscs and BPF programs need root');
      return;
    }
    const rates = String(ctx.options.rates).split(',').map(Number); // validated by the option's check
    const secs = ctx.options.duration as number;
    const rounds = (ctx.options.repeat as number | undefined) ?? (ctx.mode === 'bench' ? 3 : 1);
    ctx.progress.step('topology: two namespaces, one veth, iperf3 servers');
    const { t, link } = await topology(ctx);

    // the BPF half on its own (no device, no fq): departure times to the nanosecond
    const st = edtSelfTest();
    ctx.check('EDT departure times written by the program are len·8/rate apart, also after a live rate change (BPF_PROG_TEST_RUN)', st.ok, `gaps ${st.gapsNs.join(', ')} ns, expected ${st.expectedNs.join(', ')} ns`);
    const fq = probeFq(link);
    const kinds: Kind[] = fq.ok ? KINDS : KINDS.filter((k) => k !== 'edt');
    if (!fq.ok) ctx.unsupported('EDT shaping (bpf skb->tstamp + fq)', 'sch_fq', `kernel ${ctx.kernel.release}: ${fq.evidence}; HTB and TBF still measured below`);
    const fqCodel = await probeQdisc(link, 'fq_codel');
    if (!fqCodel.ok) ctx.unsupported('HTB with an fq_codel leaf (latency baseline)', 'sch_fq_codel', `kernel ${ctx.kernel.release}: ${fqCodel.evidence}`);
    const configs = RATE_CONFIGS.filter((c) => kinds.includes(c.kind) && (!c.leaf || fqCodel.ok));

    // the link's own ceiling: a target above it cannot be judged (and says so)
    ctx.progress.step('unshaped ceiling of the veth');
    const ceiling = wireMbit(await iperf(t, 'snd', RCV, PORT_A, Math.min(secs, 3)));
    ctx.metric('ceilingMbit', ceiling);

    // ---- per rate, configurations interleaved per round ----
    const rows: RateRow[] = [];
    ctx.metric('rates', rows); // filled as the rounds finish: a stopped run keeps the ones it has
    // how long a process takes to start in the namespace (sizes the first probe; each probe then
    // carries its own ping's start-up forward)
    const t0 = performance.now();
    await t.exec('snd', 'true');
    const probeStart = { s: (performance.now() - t0) / 1000 };
    const total = rounds * rates.length * configs.length;
    let n = 0;
    for (let round = 0; round < rounds; round++) {
      for (const target of rates) {
        const order = configs.map((_, i) => configs[(i + round) % configs.length]!);
        for (const cfg of order) {
          ctx.progress.step(`round ${round + 1}/${rounds}: ${cfg.label} at ${target} Mbit/s (${++n}/${total})`);
          if (ctx.signal.aborted) return;
          rows.push(await rateRun(ctx, link, cfg, target, secs, round, probeStart));
        }
      }
    }
    ctx.metric('rates', rows);

    // ---- two classes competing ----
    // The pair's ceiling: two unshaped flows at once on the same path, in the same round (the
    // shaped pairs run right after it). A class's absolute rate is judged only where the pair's
    // targets are below 90% of it, as single rates are; fairness between the classes (each
    // class's share of its own target) is judged always: it does not depend on the machine.
    // Under TCG two shaped flows at 60+40 Mbit/s were CPU-starved (both EDT and HTB 15-27%
    // short while one flow held 100), so an emulated run uses 24+16 Mbit/s.
    const emulated = isEmulated();
    const compTotal = compTotalFor(ceiling, emulated);
    const comp: ClassDef[] = [{ name: 'a', mbit: Math.round(compTotal * 0.6), port: null }, { name: 'b', mbit: Math.round(compTotal * 0.4), port: PORT_B }];
    const compRows: CompRow[] = [];
    const pairCeilings: number[] = [];
    for (let round = 0; round < rounds; round++) {
      ctx.progress.step(`round ${round + 1}/${rounds}: two unshaped flows at once (the pair's ceiling)`);
      const [ua, ub] = await Promise.all([iperf(t, 'snd', RCV, PORT_A, secs), iperf(t, 'snd', RCV, PORT_B, secs)]);
      const pairCeiling = wireMbit(ua) + wireMbit(ub);
      pairCeilings.push(pairCeiling);
      const order = kinds.filter((k) => k !== 'tbf');
      for (const kind of round % 2 ? [...order].reverse() : order) {
        ctx.progress.step(`round ${round + 1}/${rounds}: two classes (${comp[0]!.mbit}+${comp[1]!.mbit} Mbit/s) under ${kind}`);
        const s = await shape(kind, link, comp);
        try {
          const [fa, fb] = await Promise.all([iperf(t, 'snd', RCV, PORT_A, secs), iperf(t, 'snd', RCV, PORT_B, secs)]);
          compRows.push(judgePair(round, kind, comp[0]!.mbit, comp[1]!.mbit, wireMbit(fa), wireMbit(fb), pairCeiling));
        } finally {
          await s.close();
        }
      }
    }
    ctx.metric('competing', { classes: comp, emulated, pairCeilings, rows: compRows });

    // ---- a rate changed mid-flow ----
    // under emulation no higher than single rates are judged (EMULATED_JUDGE_MBIT): at 100 Mbit/s
    // the flow before the change fell 12.8% short in a slow window, every 100 Mbit/s flow of that
    // run 8-30% short under any shaper (reports/20261203-041703-tc-shaping-6.1)
    const changeFrom = Math.min(emulated ? EMULATED_JUDGE_MBIT : 100, Math.max(10, Math.min(100, Math.floor((ceiling * 0.6) / 10) * 10)));
    const changeTo = Math.round(changeFrom * 0.3);
    const phaseS = Math.max(3, Math.ceil(secs / 2) + 1);
    const changeRows: { kind: Kind; before: number; after: number; errBefore: number; errAfter: number; intervals: { end: number; mbit: number }[] }[] = [];
    for (const kind of kinds.filter((k) => k !== 'tbf')) {
      ctx.progress.step(`rate change mid-flow under ${kind}: ${changeFrom} → ${changeTo} Mbit/s`);
      const s = await shape(kind, link, [{ name: 'bulk', mbit: changeFrom, port: null }]);
      try {
        changeRows.push({ kind, ...(await rateChange(t, link, s, changeFrom, changeTo, phaseS)) });
      } finally {
        await s.close();
      }
    }
    ctx.metric('rateChange', { from: changeFrom, to: changeTo, rows: changeRows });

    // ---- filter rules: exact counter deltas ----
    ctx.progress.step('filter rules: count ICMP, drop UDP to one port; exact deltas');
    const f = TcShaper.start({ dev: link.dev, netns: link.ns, filterOnly: true });
    ctx.defer('detach filter programs', () => f.close());
    try {
      f.control.apply(validateConfig({ filters: [{ name: 'icmp-count', dir: 'both', proto: 'icmp', action: 'count' }, { name: 'udp-drop', dir: 'egress', cidr: `${RCV}/32`, proto: 'udp', port: 9, action: 'drop' }] }));
      const pings = 7;
      const p = await t.exec('snd', 'ping', ['-n', '-q', '-c', String(pings), '-i', '0.05', RCV], { reject: false });
      const udp = 5;
      for (let i = 0; i < udp; i++) await t.exec('snd', 'bash', ['-c', `printf x > /dev/udp/${RCV}/9`], { reject: false }).catch(() => {});
      const st = f.control.ruleStats();
      const icmp = Number(st.find((r) => r.name === 'icmp-count')!.packets);
      const drop = Number(st.find((r) => r.name === 'udp-drop')!.packets);
      ctx.check(`filter count rule: exactly ${2 * pings} ICMP packets (${pings} requests out, ${pings} replies in)`, icmp === 2 * pings && p.exitCode === 0, `counted ${icmp}; ping exit ${p.exitCode}`);
      ctx.check(`filter drop rule: exactly ${udp} UDP datagrams to ${RCV}:9 counted and dropped`, drop === udp && Number(f.control.globals().filter_drops) === udp, `rule ${drop}, global drops ${f.control.globals().filter_drops}`);
      ctx.metric('filters', { icmpCounted: icmp, udpDropped: drop, rules: st.map((r) => ({ ...r, packets: Number(r.packets), bytes: Number(r.bytes) })) });
    } finally {
      f.close();
    }

    // ---- IPv6: the same filter rules by IPv6 CIDR, and an EDT class by IPv6 CIDR ----
    ctx.progress.step('IPv6: filter counts by IPv6 CIDR; EDT class by IPv6 CIDR');
    const f6 = TcShaper.start({ dev: link.dev, netns: link.ns, filterOnly: true });
    try {
      f6.control.apply(validateConfig({ filters: [{ name: 'icmp6-count', dir: 'both', cidr: `${RCV6}/128`, proto: 'icmpv6', action: 'count' }, { name: 'udp6-drop', dir: 'egress', cidr: 'fd00:16::/64', proto: 'udp', port: 9, action: 'drop' }] }));
      const pings = 7;
      const p = await t.exec('snd', 'ping', ['-6', '-n', '-q', '-c', String(pings), '-i', '0.05', RCV6], { reject: false });
      const udp = 5;
      for (let i = 0; i < udp; i++) await t.exec('snd', 'bash', ['-c', `printf x > /dev/udp/${RCV6}/9`], { reject: false }).catch(() => {});
      const st = f6.control.ruleStats();
      const icmp = Number(st[0]!.packets);
      const drop = Number(st[1]!.packets);
      ctx.check(`IPv6 filter count rule (${RCV6}/128, icmpv6): exactly ${2 * pings} packets`, icmp === 2 * pings && p.exitCode === 0, `counted ${icmp}; ping -6 exit ${p.exitCode}`);
      ctx.check(`IPv6 filter drop rule (fd00:16::/64 udp/9): exactly ${udp} datagrams dropped`, drop === udp && Number(f6.control.globals().filter_drops) === udp, `rule ${drop}, global drops ${f6.control.globals().filter_drops}`);
      ctx.metric('filters6', { icmpCounted: icmp, udpDropped: drop });
    } finally {
      f6.close();
    }
    if (fq.ok) {
      const r6 = Math.max(10, Math.min(50, Math.floor((ceiling * 0.3) / 10) * 10));
      const s6 = TcShaper.start({ dev: link.dev, netns: link.ns, ingress: false });
      try {
        s6.control.apply(validateConfig({ classes: [{ name: 'v6', rate: `${r6}mbit`, match: [{ dst: 'fd00:16::/64' }] }] }));
        const fl = await iperf(t, 'snd', RCV6, PORT_A, secs);
        const wire = (fl.mbit * (fl.mss + 86)) / fl.mss; // TCP+timestamps 32, IPv6 40, Ethernet 14
        const cs = s6.control.classStats()[0]!;
        ctx.check(`EDT over IPv6: one TCP flow in a class by IPv6 CIDR gets ${r6} Mbit/s within ±3%`, Math.abs(wire / r6 - 1) <= 0.03 && cs.delayed > 0n, `${r2(wire)} Mbit/s (${pct(wire / r6 - 1)}), ${cs.packets} packets classified, ${cs.delayed} delayed`);
        ctx.metric('ipv6', { target: r6, mbit: wire, goodput: fl.mbit, mss: fl.mss, packets: Number(cs.packets), delayed: Number(cs.delayed) });
      } finally {
        s6.close();
      }
    }

    // ---- a class by a parent cgroup (a slice) holds the sockets of the cgroups under it ----
    if (fq.ok) {
      const root = findCgroup2Root();
      if (root) {
        ctx.progress.step('a class by a parent cgroup holds the sockets of the cgroups under it; a class on a child wins for that child');
        const base = path.join(root, `ebpf-lab-tcs-${process.pid}`);
        const [kidA, kidB] = [path.join(base, 'svc-a'), path.join(base, 'svc-b')];
        createCgroup(kidA);
        createCgroup(kidB);
        const sc = TcShaper.start({ dev: link.dev, netns: link.ns, ingress: false });
        try {
          // slow classes (8 kbit/s, 100 ms horizon): each datagram is either sent or dropped, and counted by its class either way
          sc.control.apply(validateConfig({ classes: [{ name: 'slice', rate: '8kbit', horizon: '100ms', match: [{ cgroup: base }] }, { name: 'leaf', rate: '8kbit', horizon: '100ms', match: [{ cgroup: kidB }] }] }));
          const n = 10;
          for (const kid of [kidA, kidB]) await execa('sh', ['-c', `echo $$ > ${kid}/cgroup.procs && exec nsenter --net=/run/netns/${link.ns} bash -c 'for i in $(seq ${n}); do printf x > /dev/udp/${RCV}/7000; done'`], { reject: false });
          const by = Object.fromEntries(sc.control.classStats().map((c) => [c.name, Number(c.packets + c.horizonDrops)]));
          ctx.check(`a class by a parent cgroup (no process in it) takes the datagrams of a process in a cgroup under it; a class on another child cgroup takes that child's (the deepest wins)`, by.slice === n && by.leaf === n, `parent's class ${by.slice} of ${n} from ${path.basename(kidA)}, child's class ${by.leaf} of ${n} from ${path.basename(kidB)}`);
        } finally {
          sc.close();
          removeCgroup(base);
        }
      }
    }

    // ---- a shaper daemon killed outright, then stopped ----
    ctx.progress.step('a tc shaper daemon killed with SIGKILL: still enforcing; a restart takes over in place; then tc shape stop');
    await crashCheck(ctx, link, { fq: fq.ok, rcv: RCV, rcvRole: 'rcv', port: PORT_A, secs: 2 });

    report(ctx, { rows, kinds, configs: configs.map((c) => c.label), rates, ceiling, comp, compRows, emulated, changeFrom, changeTo, changeRows, rounds, secs });
  },
};

function report(
  ctx: ScenarioContext,
  d: { rows: RateRow[]; kinds: Kind[]; configs: string[]; rates: number[]; ceiling: number; comp: ClassDef[]; compRows: CompRow[]; emulated: boolean; changeFrom: number; changeTo: number; changeRows: { kind: Kind; before: number; after: number; errBefore: number; errAfter: number; intervals: { end: number; mbit: number }[] }[]; rounds: number; secs: number },
): void {
  const { rows, configs, rates, ceiling } = d;
  const med = (k: string, r: number, f: (x: RateRow) => number) => median(rows.filter((x) => x.kind === k && x.target === r).map(f));
  const reachable = (r: number) => r <= ceiling * 0.9;
  const table = rates.flatMap((r) =>
    configs.map((k) => [
      `${r} Mbit/s`, k, rows.find((x) => x.kind === k && x.target === r)?.horizonMs ?? (k.startsWith('edt') ? 2000 : null), r2(med(k, r, (x) => x.mbit)), r2(med(k, r, (x) => x.goodput)), pct(med(k, r, (x) => x.err)), med(k, r, (x) => x.retransmits), med(k, r, (x) => x.drops),
      `${med(k, r, (x) => x.pings)} (${med(k, r, (x) => x.lateProbes)})`, med(k, r, (x) => x.lost), r2(med(k, r, (x) => x.rttP50)), r2(med(k, r, (x) => x.rttP99)), r2(med(k, r, (x) => x.backlogKB ?? NaN)), med(k, r, (x) => x.tcpUnacked ?? NaN), r2(med(k, r, (x) => x.cpuPerGbit)),
    ]),
  );
  ctx.section(
    'Per rate: one TCP flow + a ping every 5 ms in the same class',
    { kind: 'text', text: `Medians over ${d.rounds} round(s), ${d.secs} s per flow (first second omitted), configurations interleaved per round in rotated order on the same veth. Achieved = the class's L2 rate (what every shaper here counts): iperf3's receiver goodput × (MSS+66)/MSS plus the ping's 98-byte frames. Unshaped ceiling of this veth in this run: ${Math.round(ceiling)} Mbit/s${rates.some((r) => !reachable(r)) ? ` — targets above 90% of it (${rates.filter((r) => !reachable(r)).join(', ')} Mbit/s) are not judged: the machine, not the shaper, is the limit` : ''}. CPU is iperf3's own process CPU (sender + receiver, softirq charged to them included) per Gbit/s of iperf3 goodput: like-for-like between shapers, not the machine's whole cost. Goal: EDT within ±3% of target; EDT RTT p99 ≤ ½ HTB's (HTB with its default leaf, as a user configures it).${d.emulated && rates.some((r) => r > EMULATED_JUDGE_MBIT) ? ` Emulated machine (TCG): accuracy above ${EMULATED_JUDGE_MBIT} Mbit/s (${rates.filter((r) => r > EMULATED_JUDGE_MBIT).join(', ')}) is shown, not judged — one flow there is not carried steadily by any shaper (HTB, TBF and EDT have each fallen more than 3% short in some rounds).` : ''}` },
    { kind: 'text', text: "Latency. The probe (ICMP echo, 98-byte frames) is in the same class as the bulk flow under every configuration, starts once the flow is seen on the device and past slow start, and is sized to end before it; probes sent after the flow had ended (iperf3's exit less one process start-up; reply stamp − RTT) are left out of the percentiles and shown as 'late' (ping's 5 ms pace stretches behind a long queue); same veth, same TCP (the kernel's default, CUBIC), same probe. A probe without a reply counts as infinitely late in the percentiles (a shaper cannot improve its p99 by dropping probes); 'probes lost' is beside it. Configurations: edt — fq at the root with its defaults, the class's horizon set as a latency budget: the wire time of one 64 KiB GSO packet at the class rate + 10%, at least 8 ms (60 ms at 10 Mbit/s, 8 ms at 100 Mbit/s; a shorter horizon would drop a lone GSO packet, which the program charges as one slot, and below the floor the queue left after TCP's cut drains before its next ACKs — a 6 ms budget lost 3-5% of 100 Mbit/s in the runs that set this floor). edt-2s — the same with Cilium's default 2 s horizon, which is a guard against runaway SO_TXTIME and never reached here. htb — rate = ceil, default burst, default leaf (pfifo of txqueuelen 1000 packets): the goal's comparator. htb+fq_codel — the same class with an fq_codel leaf (defaults: 5 ms target, ECN, 1024 flow queues), the latency-minded HTB setup. tbf — burst 4 ms at the rate (≥140 kB), latency 50 ms. Where the probe's delay sits: with a 2 s horizon nothing bounds the class's queue but TCP itself — TSQ (TCP Small Queues) bounds what one socket holds below it; the columns 'qdisc backlog' and 'TCP segments in flight' show what each shaper held in this run. In one class EDT is one departure timeline (a FIFO in time): the probe's timestamp lands behind everything TCP has scheduled, so its wait is that backlog's serialisation time; HTB adds the token debt of the GSO packet that just left (it charges after sending, EDT before). A short horizon changes who holds the bytes: a packet that would leave beyond it is dropped at the tc hook, which returns NET_XMIT_DROP to TCP — a local drop, not a loss: TCP keeps the segment, enters CWR (cwnd reduced, no retransmission) and sends it again later, so the queue stays near one GSO packet and the rest waits in the socket, where it does not delay anyone else. fq's per-flow queues do not help a probe inside the class (its timestamp is already behind the bulk's), which is why HTB with an fq_codel leaf, which schedules flows inside the class, gives the probe a lower RTT than any EDT configuration here; EDT gives that to a latency-sensitive flow only through its own class (a 5-tuple or cgroup match), where fq sends it at once." },
    { kind: 'table', columns: ['target', 'shaper', 'horizon ms', 'achieved Mbit/s (wire)', 'iperf3 goodput Mbit/s', 'vs target', 'retransmits', 'shaper drops', 'probes in flow (late)', 'probes lost', 'RTT p50 ms', 'RTT p99 ms', 'qdisc backlog KB (median)', 'TCP segments in flight (median)', 'CPU cores per Gbit/s'], rows: table },
  );
  for (const r of rates) {
    if (!reachable(r)) continue;
    // under emulation one flow above EMULATED_JUDGE_MBIT is shown, not judged (see the constant)
    const capped = d.emulated && r > EMULATED_JUDGE_MBIT;
    const perRound = (k: string) => rows.filter((x) => x.kind === k && x.target === r).sort((a, b) => a.round - b.round);
    const rttRound = (x: RateRow) => ({ round: x.round, achieved: x.mbit, rttP99: x.rttP99, probes: x.pings });
    const ratio = (a: RateRow[], b: RateRow[], f: (x: RateRow) => number) => a.map((x, i) => f(x) / (b[i] ? f(b[i]!) : NaN)).filter(Number.isFinite);
    // the ±3% check judges EDT with the controller's default horizon (2 s), as before horizon
    // auto existed; auto's accuracy is a headline beside it with its own verdict: under TCG at
    // 100 Mbit/s its short queue cost 2.6-4.7% of the rate (ARCHITECTURE.md), so it is reported,
    // not hidden and not allowed to turn the default configuration's check red
    // a round where the kernel's own shapers (HTB and TBF, same rate, same round) both fall more
    // than 3% short had a starved machine, not a wrong shaper (seen under TCG at 100 Mbit/s with the
    // host loaded: HTB −26%, reports/20261130-100020-tc-shaping-6.1): it is shown, not judged
    const starved = (round: number) => {
      const k = rows.filter((x) => x.round === round && x.target === r && (x.kind === 'htb' || x.kind === 'tbf'));
      return k.length > 0 && k.every((x) => x.mbit / r < 0.97);
    };
    const accuracy = (k: string) => {
      const acc = perRound(k).map((x) => x.mbit / r);
      const s = summary(acc);
      const judged = perRound(k).filter((x) => !starved(x.round)).map((x) => x.mbit / r);
      const sj = judged.length ? summary(judged) : null;
      const skipped = perRound(k).filter((x) => starved(x.round)).map((x) => x.round);
      return {
        acc, s, judged: !!sj, within: sj ? Math.abs(sj.median - 1) <= 0.03 : true,
        detail: `median ${r2(s.median * r)} Mbit/s (${pct(s.median - 1)}) over ${s.n} round(s); per round ${acc.map((x) => pct(x - 1)).join(', ')}; horizon drops per round ${perRound(k).map((x) => x.drops).join(', ')}, retransmits ${perRound(k).map((x) => x.retransmits).join(', ')}${skipped.length ? `; round(s) ${skipped.join(', ')} not judged: HTB and TBF both fell >3% short in the same round (machine starved)${sj ? `; judged median ${pct(sj.median - 1)}` : ''}` : ''}`,
      };
    };
    const htbAcc = median(perRound('htb').map((x) => x.mbit / r));
    if (configs.includes('edt-2s')) {
      const a = accuracy('edt-2s');
      // not judged is not a pass (it passed as true: review, session 57)
      if (!capped && a.judged) ctx.check(`EDT (default horizon 2 s) at ${r} Mbit/s achieves the target within ±3%`, a.within, a.detail);
      else if (!capped) ctx.unsupported(`EDT (default horizon 2 s) at ${r} Mbit/s achieves the target within ±3%`, 'a machine that carries the rate (every round starved: HTB and TBF >3% short too)', a.detail);
      ctx.headline({ name: `edt2s.accuracy.${r}mbit`, label: `EDT (2 s horizon) achieved / target at ${r} Mbit/s`, unit: 'ratio', better: 'higher', ideal: 1, value: a.s.median, rounds: a.acc, spread: { n: a.s.n, min: a.s.min, max: a.s.max, mad: a.s.mad }, comparator: { name: 'HTB', value: htbAcc, likeForLike: true }, goal: { op: '>=', target: 0.97, verdict: capped || !a.judged ? 'inconclusive' : a.within ? 'met' : 'not met', detail: capped ? `not judged: an emulated machine (TCG) does not carry one flow above ${EMULATED_JUDGE_MBIT} Mbit/s steadily for any shaper; ${a.detail}` : 'within ±3% of target (upper bound 1.03 checked in the run checks)' } });
    }
    if (configs.includes('edt')) {
      const a = accuracy('edt');
      ctx.headline({ name: `edt.accuracy.${r}mbit`, label: `EDT (horizon auto, ${perRound('edt')[0]?.horizonMs} ms) achieved / target at ${r} Mbit/s`, unit: 'ratio', better: 'higher', ideal: 1, value: a.s.median, rounds: a.acc, spread: { n: a.s.n, min: a.s.min, max: a.s.max, mad: a.s.mad }, comparator: { name: 'HTB', value: htbAcc, likeForLike: true }, goal: { op: '>=', target: 0.97, verdict: capped || !a.judged ? 'inconclusive' : a.within ? 'met' : 'not met', detail: `${capped ? `not judged under emulation (above ${EMULATED_JUDGE_MBIT} Mbit/s); ` : ''}within ±3% of target; ${a.detail}` } });
    }
    const e = perRound('edt');
    const h = perRound('htb');
    if (!e.length || !h.length) continue;
    const rtt = judgeRttRounds(e.map(rttRound), h.map(rttRound), r);
    const rj = median(rtt.judged);
    const hz = e[0]?.horizonMs;
    const skippedNote = rtt.skipped.length ? `; not judged: ${rtt.skipped.map((x) => `round ${x.round + 1} (${x.why})`).join('; ')}` : '';
    ctx.headline({ name: `edt.rttP99.${r}mbit`, label: `small-packet RTT p99 under EDT at ${r} Mbit/s`, unit: 'ms', better: 'lower', value: median(e.map((x) => x.rttP99)), rounds: e.map((x) => x.rttP99), comparator: { name: 'HTB', value: median(h.map((x) => x.rttP99)), ratio: median(rtt.ratios), likeForLike: true, note: `same flow, same class, same veth, same probe (lost probes count as infinitely late; probes sent after the flow left out); EDT with a ${hz} ms class horizon, HTB with its default leaf; ratio per round (${rtt.ratios.map((x) => x.toFixed(2)).join(', ')}), then median` }, goal: { op: '<=', target: 0.5, of: 'ratio', verdict: rtt.judged.length === 0 ? 'inconclusive' : rj <= 0.5 ? 'met' : 'not met', detail: `median of the judged rounds ${rtt.judged.length ? rj.toFixed(2) : '—'} (${rtt.judged.length} of ${e.length} round(s); a round is judged where both flows carried ≥${RTT_JUDGE.minAchieved * 100}% of the rate and both probes had ≥${RTT_JUDGE.minProbes} in-flow replies)${skippedNote}` } });
    const r50 = ratio(e, h, (x) => x.rttP50);
    ctx.headline({ name: `edt.rttP50.${r}mbit`, label: `small-packet RTT p50 under EDT at ${r} Mbit/s`, unit: 'ms', better: 'lower', value: median(e.map((x) => x.rttP50)), rounds: e.map((x) => x.rttP50), comparator: { name: 'HTB', value: median(h.map((x) => x.rttP50)), ratio: median(r50), likeForLike: true, note: 'as the p99 (no goal: the issue states p99)' } });
    const e2 = perRound('edt-2s');
    if (e2.length) ctx.headline({ name: `edt2s.rttP99.${r}mbit`, label: `small-packet RTT p99 under EDT with a 2 s horizon (Cilium's default) at ${r} Mbit/s`, unit: 'ms', better: 'lower', value: median(e2.map((x) => x.rttP99)), rounds: e2.map((x) => x.rttP99), comparator: { name: 'HTB', value: median(h.map((x) => x.rttP99)), ratio: median(ratio(e2, h, (x) => x.rttP99)), likeForLike: true, note: 'no goal: shown to separate the horizon\'s effect from the timestamping\'s' } });
    const fc = perRound('htb+fq_codel');
    if (fc.length) ctx.headline({ name: `edt.rttP99VsFqCodel.${r}mbit`, label: `small-packet RTT p99 under EDT vs HTB with an fq_codel leaf at ${r} Mbit/s`, unit: 'ms', better: 'lower', value: median(e.map((x) => x.rttP99)), rounds: e.map((x) => x.rttP99), comparator: { name: 'HTB+fq_codel', value: median(fc.map((x) => x.rttP99)), ratio: median(ratio(e, fc, (x) => x.rttP99)), likeForLike: false, note: 'fq_codel schedules flows inside the class and drops (CoDel) where EDT keeps one timeline per class: different queueing, shown for context, no goal' } });
    const cr = ratio(e, h, (x) => x.cpuPerGbit);
    ctx.headline({ name: `edt.cpuPerGbit.${r}mbit`, label: `iperf3 CPU per Gbit/s under EDT at ${r} Mbit/s`, unit: 'cores per Gbit/s', better: 'lower', value: median(e.map((x) => x.cpuPerGbit)), rounds: e.map((x) => x.cpuPerGbit), comparator: { name: 'HTB', value: median(h.map((x) => x.cpuPerGbit)), ratio: median(cr), likeForLike: true, note: "iperf3's process CPU only" } });
  }
  const c0 = d.comp[0]!;
  const c1 = d.comp[1]!;
  ctx.section('Two classes competing', { kind: 'text', text: `Class a ${c0.mbit} Mbit/s (everything to the receiver), class b ${c1.mbit} Mbit/s (TCP port ${PORT_B}), one iperf3 flow each at once; rates are goodput × (MSS+66)/MSS, the L2 rate.${d.emulated ? ' Emulated machine (TCG): the pair runs at 24+16 Mbit/s at most, where two shaped flows still get the CPU they need (at 60+40 both EDT and HTB fell 15-27% short, reports/20261130-041942-tc-shaping-6.1).' : ''} Each round first measures the pair's ceiling: two unshaped flows at once on the same veth. Judged apart: fairness — each class's achieved/target, their ratio a/b within ±10% of 1 (Jain's index of the two shares alongside), which is the shaper's logic and does not depend on the machine; absolute rate — each class within ±10% of its target, judged only where both targets fit in 90% of the pair's ceiling (as single rates are); and no class more than 5% over its target, always. TBF is classless and not in this test.` }, {
    kind: 'table', columns: ['round', 'shaper', 'pair ceiling Mbit/s', 'a Mbit/s', 'a vs target', 'b Mbit/s', 'b vs target', 'share ratio a/b', 'Jain index', 'absolute rate'],
    rows: d.compRows.map((c) => [c.round + 1, c.kind, r2(c.pairCeiling), r2(c.a), pct(c.errA), r2(c.b), pct(c.errB), Math.round(c.shareRatio * 1000) / 1000, Math.round(c.jain * 1000) / 1000, c.absJudged ? (c.absOk ? 'within ±10%' : 'off') : 'not judged (above ceiling)']),
  });
  const ce = d.compRows.filter((c) => c.kind === 'edt');
  if (ce.length) {
    const fmt = (c: CompRow) => `round ${c.round + 1}: a ${pct(c.errA)}, b ${pct(c.errB)}, a/b share ${Math.round(c.shareRatio * 1000) / 1000}`;
    ctx.check('EDT: two competing classes share fairly (each class\'s achieved/target within ±10% of the other\'s)', ce.every((c) => c.fairOk), ce.map(fmt).join('; '));
    ctx.check('EDT: no competing class exceeds its rate by more than 5%', ce.every((c) => c.overOk), ce.map(fmt).join('; '));
    const judged = ce.filter((c) => c.absJudged);
    if (judged.length) ctx.check('EDT: two competing classes each get their own rate (±10%) where the pair\'s ceiling allows', judged.every((c) => c.absOk), judged.map((c) => `${fmt(c)}, pair ceiling ${r2(c.pairCeiling)} Mbit/s`).join('; '));
    else ctx.unsupported('EDT: two competing classes each get their own rate (±10%)', 'a machine that carries both targets', ce.map((c) => `${fmt(c)}; pair ceiling ${r2(c.pairCeiling)} Mbit/s < (${c0.mbit}+${c1.mbit})/0.9`).join('; '));
    const js = ce.map((c) => c.jain);
    const s = summary(js);
    ctx.headline({ name: 'edt.fairness', label: 'Jain fairness between two EDT classes', unit: 'index', better: 'higher', value: s.median, rounds: js, spread: { n: s.n, min: s.min, max: s.max, mad: s.mad }, comparator: { name: 'HTB', value: median(d.compRows.filter((c) => c.kind === 'htb').map((c) => c.jain)), likeForLike: true } });
  }
  ctx.section(`Rate changed mid-flow: ${d.changeFrom} → ${d.changeTo} Mbit/s`, { kind: 'text', text: 'EDT: one write of the class entry (no reload); HTB: tc class change. The device\'s L2 tx rate sampled every 0.5 s; before/after are medians of each phase without its first second.' }, {
    kind: 'table', columns: ['shaper', 'before Mbit/s', 'vs target', 'after Mbit/s', 'vs new target'],
    rows: d.changeRows.map((c) => [c.kind, r2(c.before), pct(c.errBefore), r2(c.after), pct(c.errAfter)]),
  }, { kind: 'chart', type: 'line', title: 'Throughput through the rate change', labels: d.changeRows[0]?.intervals.map((i) => i.end) ?? [], datasets: d.changeRows.map((c) => ({ label: c.kind, data: c.intervals.map((i) => r2(i.mbit)) })), xLabel: 's', yLabel: 'Mbit/s' });
  const ch = d.changeRows.find((c) => c.kind === 'edt');
  if (ch) ctx.check(`EDT live rate change ${d.changeFrom} → ${d.changeTo} Mbit/s takes effect mid-flow (±10%)`, Math.abs(ch.errAfter) <= 0.1 && Math.abs(ch.errBefore) <= 0.1, `before ${r2(ch.before)} Mbit/s, after ${r2(ch.after)} Mbit/s`);
}

export default scenario;
