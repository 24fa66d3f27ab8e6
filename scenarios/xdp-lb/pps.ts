// UDP small-packet forwarding for the xdp-lb bench: the same live-frames generator into the LB's
// veth, with the program on the LB's pinned link alternated (BPF_LINK_UPDATE, atomic) between
// the ceilings and the LB, round by round. Two forwarding paths, each with its own ceiling:
//   XDP_TX  — the LB rewrites MACs and sends the frame back out of lb0 (a NIC's hairpin); on veth
//             the bridge port facing the LB receives it again (counted there by xdp_sink).
//   devmap  — the LB redirects into the chosen backend's own port (backend_ports, a devmap entry
//             per backend: the bridge port pbN, in another namespace); the backend's eth0 receives
//             it (counted there by xdp_sink), no bridge on the way.
// The isolation figures (BPF_PROG_TEST_RUN, no veth) split the LB program's own cost from the
// veth's per-frame receive cost.
import path from 'node:path';
import { Link, libbpf } from '../../controller/libbpf/index.ts';
import { Dataplane } from '../../controller/lb/dataplane.ts';
import { addrBytes, htons } from '../../controller/lb/addr.ts';
import { withNetns } from '../../lab/netns.ts';
import type { ScenarioContext } from '../../lab/scenario.ts';
import { goalByRounds, headlineFromRounds, spreadOf } from '../../lab/rounds.ts';
import { CLIENT4, VIP4, backend4, backend6, type Daemon, type LbTopology } from './topology.ts';

/** a 64-byte UDP frame client → VIP:9, as it arrives at the LB */
export function udpFrame(t: LbTopology): Buffer {
  const f = Buffer.alloc(60);
  Buffer.from(t.macs.lb.replace(/:/g, ''), 'hex').copy(f, 0);
  Buffer.from(t.macs.client.replace(/:/g, ''), 'hex').copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  const ip = f.subarray(14, 34);
  ip[0] = 0x45;
  ip.writeUInt16BE(46, 2);
  ip[8] = 64;
  ip[9] = 17;
  Buffer.from(addrBytes(CLIENT4).subarray(0, 4)).copy(ip, 12);
  Buffer.from(addrBytes(VIP4).subarray(0, 4)).copy(ip, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  f.writeUInt16BE(12345, 34);
  f.writeUInt16BE(9, 36);
  f.writeUInt16BE(26, 38);
  return f;
}

const sumPerCpu = (v: bigint[] | undefined) => Number((v ?? []).reduce((a, b) => a + b, 0n));

/** live frames into the LB's veth from its bridge port; returns frames/s counted by `counter` */
function generate(t: LbTopology, frame: Buffer, repeat: number, counter: () => number): Rate {
  const before = counter();
  const t0 = process.hrtime.bigint();
  withNetns(t.topo.ns('fabric'), () => t.helpers.programs.xdp_gen.testRun({ data: frame, repeat, flags: 2 /* BPF_F_TEST_XDP_LIVE_FRAMES */ }));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const frames = counter() - before;
  return { pps: frames / seconds, frames, seconds };
}

export interface Rate {
  pps: number;
  frames: number;
  seconds: number;
}

/**
 * Point every backend of the daemon's VIPs at its own bridge port (pbN) through backend_ports, or
 * clear that. The devmap resolves ifindexes in the writer's namespace: written from "fabric".
 */
export async function setBackendPorts(t: LbTopology, d: Daemon, on: boolean): Promise<number> {
  const st = await d.api.state();
  const ports = await t.backendPorts();
  const dp = await Dataplane.open({ pinDir: st.pinDir });
  let n = 0;
  try {
    withNetns(t.topo.ns('fabric'), () => {
      for (const v of st.vips) {
        for (const b of v.backends) {
          const i = Array.from({ length: t.n }, (_, k) => k).find((k) => b.address === backend4(k) || b.address === backend6(k));
          if (i === undefined) continue;
          dp.setBackendPort(b.id, on ? ports[i]! : null);
          n++;
        }
      }
    });
  } finally {
    dp.close();
  }
  return n;
}

export interface PpsResult {
  live: boolean;
  rounds: { ceiling: Rate; txOnly: Rate; lbTx: Rate; redirectOnly: Rate; lbDevmap: Rate }[];
  programNs: Record<string, number>;
}

const CONFIGS = ['ceiling', 'txOnly', 'lbTx', 'redirectOnly', 'lbDevmap'] as const;
const LABEL: Record<(typeof CONFIGS)[number], string> = {
  ceiling: 'XDP_DROP ceiling (on lb0)',
  txOnly: 'XDP_TX only, no LB logic (counted at the bridge port)',
  lbTx: 'XDP LB, XDP_TX path (counted at the bridge port)',
  redirectOnly: 'devmap redirect only into a backend port, no LB logic (counted at the backend)',
  lbDevmap: 'XDP LB, devmap path into the backend\'s port (counted at the backend)',
};

export async function forwardingRates(ctx: ScenarioContext, t: LbTopology, d: Daemon, o: { frames: number; rounds: number; threadedNapi?: boolean }): Promise<PpsResult> {
  ctx.progress.step(`UDP 64-byte frames on the LB veth: XDP_DROP ceiling, XDP_TX and devmap paths, alone and with the LB (${o.rounds} alternating rounds × ${o.frames} frames)`);
  const st = await d.api.state();
  const local = await Dataplane.open({ pinDir: st.pinDir }); // same pinned maps
  const lbLink = new Link('lb0 (pinned LB link)', libbpf.bpf_link__open(path.join(local.pinDir, 'link')));
  const sinkMap = t.helpers.maps.sink_config;
  const h = t.helpers.programs;
  const dropCount = () => sumPerCpu(t.helpers.maps.drop_count.getPerCpu(0));
  const sinkCount = () => sumPerCpu(t.helpers.maps.sink_count.getPerCpu(0));
  const frame = udpFrame(t);
  const out: PpsResult = { live: true, rounds: [], programNs: {} };
  const ports = await t.backendPorts();
  try {
    sinkMap.set(0, { udp_port: htons(9), pad: 0, pad2: 0 });
    t.attachPeer();
    t.attachBackendSinks();
    withNetns(t.topo.ns('fabric'), () => t.helpers.maps.bench_ports.set(0, ports[0]!));
    if (o.threadedNapi) await t.setThreadedNapi(true);
    // live-frame test runs (BPF_F_TEST_XDP_LIVE_FRAMES) arrived in 5.18: an older kernel runs the
    // generator without sending anything, so probe with a few frames before measuring
    lbLink.update(h.xdp_drop.ptr);
    if (generate(t, frame, 1000, dropCount).frames === 0) {
      out.live = false;
      ctx.unsupported('UDP pps on the LB veth', 'XDP live-frame test runs (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18+)', `xdp_gen test_run with BPF_F_TEST_XDP_LIVE_FRAMES: 0 of 1000 frames reached xdp_drop on the LB veth on ${ctx.kernel.release}`);
    }
    for (let i = 0; out.live && i < o.rounds && !ctx.signal.aborted; i++) {
      lbLink.update(h.xdp_drop.ptr);
      const ceiling = generate(t, frame, o.frames, dropCount);
      lbLink.update(h.xdp_tx.ptr);
      const txOnly = generate(t, frame, o.frames, sinkCount);
      lbLink.update(local.prog.ptr);
      const lbTx = generate(t, frame, o.frames, sinkCount);
      lbLink.update(h.xdp_redirect_port.ptr);
      const redirectOnly = generate(t, frame, o.frames, sinkCount);
      await setBackendPorts(t, d, true);
      lbLink.update(local.prog.ptr);
      const lbDevmap = generate(t, frame, o.frames, sinkCount);
      await setBackendPorts(t, d, false);
      out.rounds.push({ ceiling, txOnly, lbTx, redirectOnly, lbDevmap });
      ctx.progress.info(`round ${i + 1}: ${CONFIGS.map((c) => `${c} ${(out.rounds[i]![c].pps / 1e6).toFixed(2)}`).join(', ')} Mpps`);
    }
    // the programs' own cost per frame, without veth or cache effects (non-live BPF_PROG_TEST_RUN
    // on the same frame: xdp_lb takes its established-flow path; it counts into the LB's counters)
    for (const [name, prog] of [['xdp_drop', h.xdp_drop], ['xdp_tx', h.xdp_tx], ['xdp_redirect_port', h.xdp_redirect_port], ['xdp_lb', local.prog]] as const) {
      out.programNs[name] = prog.testRun({ data: frame, repeat: 1_000_000 }).durationNs;
    }
  } finally {
    lbLink.update(local.prog.ptr);
    if (o.threadedNapi) await t.setThreadedNapi(false);
    await setBackendPorts(t, d, false).catch(() => 0);
    sinkMap.set(0, { udp_port: 0, pad: 0, pad2: 0 });
    t.detachBackendSinks();
    lbLink.close(); // the pin keeps the attachment
    local.close();
  }
  report(ctx, out, o.frames, !!o.threadedNapi);
  return out;
}

const r2 = (x: number) => Math.round(x * 100) / 100;
const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : 'n/a');

function report(ctx: ScenarioContext, r: PpsResult, frames: number, threaded: boolean): void {
  if (!r.live) {
    ctx.section('UDP small packets: forwarding vs the ceilings', { kind: 'text', text: `Not measured on ${ctx.kernel.release}: the generator needs live-frame test runs (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18+).` });
    return;
  }
  const col = (c: (typeof CONFIGS)[number]) => r.rounds.map((x) => x[c].pps);
  const ratio = (a: (typeof CONFIGS)[number], b: (typeof CONFIGS)[number]) => r.rounds.map((x) => x[a].pps / x[b].pps);
  ctx.check('UDP frames to the VIP are forwarded on both paths (counted at the receiver)', r.rounds.every((x) => x.lbTx.frames > 0 && x.lbDevmap.frames > 0),
    r.rounds.map((x) => `XDP_TX ${x.lbTx.frames}, devmap ${x.lbDevmap.frames} of ${frames}`).join('; '));
  const goals: [string, (typeof CONFIGS)[number], (typeof CONFIGS)[number], number][] = [
    ['XDP_TX path: LB ÷ XDP_DROP ceiling', 'lbTx', 'ceiling', 0.7],
    ['XDP_TX path: LB ÷ XDP_TX only', 'lbTx', 'txOnly', 0.9],
    ['devmap path: LB ÷ XDP_DROP ceiling', 'lbDevmap', 'ceiling', 0.7],
    ['devmap path: LB ÷ redirect only', 'lbDevmap', 'redirectOnly', 0.9],
    ['XDP_TX only ÷ XDP_DROP ceiling (the veth\'s second receive, no LB)', 'txOnly', 'ceiling', NaN],
    ['redirect only ÷ XDP_DROP ceiling', 'redirectOnly', 'ceiling', NaN],
  ];
  ctx.headline(headlineFromRounds({ name: 'lb.pps.forwarded', label: 'UDP 64-byte frames forwarded by the XDP LB (XDP_TX path)', unit: 'frames/s', better: 'higher', rounds: col('lbTx'), comparator: { name: 'XDP_DROP ceiling on the same veth', rounds: col('ceiling'), likeForLike: true, note: 'ratio = forwarded ÷ ceiling, alternated on the same link' }, goal: { op: '>=', target: 0.7, of: 'ratio' } }));
  ctx.headline(headlineFromRounds({ name: 'lb.pps.forwardedVsTxOnly', label: 'XDP LB forwarding (XDP_TX path) vs XDP_TX alone on the same veth', unit: 'frames/s', better: 'higher', rounds: col('lbTx'), comparator: { name: 'XDP_TX only', rounds: col('txOnly'), likeForLike: true, note: 'ratio = LB ÷ XDP_TX-only: the LB logic\'s own share' }, goal: { op: '>=', target: 0.9, of: 'ratio' } }));
  ctx.headline(headlineFromRounds({ name: 'lb.pps.forwardedDevmap', label: 'UDP 64-byte frames forwarded by the XDP LB (devmap path into the backend\'s port)', unit: 'frames/s', better: 'higher', rounds: col('lbDevmap'), comparator: { name: 'XDP_DROP ceiling on the same veth', rounds: col('ceiling'), likeForLike: true, note: 'ratio = forwarded ÷ ceiling' }, goal: { op: '>=', target: 0.7, of: 'ratio' } }));
  ctx.headline(headlineFromRounds({ name: 'lb.pps.forwardedDevmapVsRedirectOnly', label: 'XDP LB forwarding (devmap path) vs devmap redirect alone', unit: 'frames/s', better: 'higher', rounds: col('lbDevmap'), comparator: { name: 'devmap redirect only', rounds: col('redirectOnly'), likeForLike: true, note: 'ratio = LB ÷ redirect-only' }, goal: { op: '>=', target: 0.9, of: 'ratio' } }));
  const med = (xs: number[]) => spreadOf(xs).median;
  const ns = r.programNs;
  ctx.metric('pps', {
    napi: threaded ? 'threaded' : 'softirq', rounds: r.rounds, framesPerRun: frames, frameBytes: 60, programNsPerFrameTestRun: ns,
    medianPps: Object.fromEntries(CONFIGS.map((c) => [c, med(col(c))])),
    ratios: Object.fromEntries(goals.map(([k, a, b]) => [k, med(ratio(a, b))])),
  });
  ctx.section('UDP small packets: forwarding vs the ceilings',
    { kind: 'text', text: `Generator: BPF_PROG_TEST_RUN with live frames in the bridge namespace, redirecting a 64-byte UDP frame (one flow, an established one for the LB) into the LB veth lb0; ${threaded ? 'NAPI threaded (--napi threaded) on lb0, the bridge port facing it and the backends\' eth0: each receive runs in its own kernel thread, free to use the other CPU.' : 'everything runs in the generator\'s softirq on one CPU (NAPI not threaded; --napi threaded moves receives to kernel threads).'} Per round the program on lb0's link alternates (BPF_LINK_UPDATE) through the five configurations below, ${frames} frames each. Rates count frames the receiving program saw per second of generator time. On veth a forwarded frame is received twice (lb0, then the receiver, each a NAPI poll and an XDP run) and a dropped one once, so the "only" rows are the structural limit of each path and LB ÷ "only" is the LB logic's own cost. The devmap path writes a backend_ports entry per backend (its bridge port pbN) and counts at the backends' eth0.` },
    { kind: 'table', columns: ['configuration', 'Mpps (median)', 'rounds', 'ns/frame (median)'],
      rows: CONFIGS.map((c) => [LABEL[c], r2(med(col(c)) / 1e6), col(c).map((x) => (x / 1e6).toFixed(2)).join(', '), Math.round(1e9 / med(col(c)))]) },
    { kind: 'table', columns: ['ratio (per round, then median)', 'goal', 'median', 'rounds', 'result'],
      rows: goals.map(([k, a, b, target]) => {
        const xs = ratio(a, b);
        const g = Number.isFinite(target) ? goalByRounds(xs, '>=', target) : null;
        return [k, Number.isFinite(target) ? `≥ ${target}` : '(structure)', pct(med(xs)), xs.map(pct).join(', '), g ? `${g.verdict} (${g.detail})` : ''];
      }) },
    { kind: 'kv', items: {
      ...Object.fromEntries(Object.entries(ns).map(([k, v]) => [`${k}: ns per frame in isolation (BPF_PROG_TEST_RUN, 1M repeats)`, v])),
      'LB logic in isolation (xdp_lb − xdp_tx)': `${(ns.xdp_lb ?? 0) - (ns.xdp_tx ?? 0)} ns`,
      'LB on veth (XDP_TX path: 1/LB − 1/XDP_TX-only, medians)': `${Math.round(1e9 / med(col('lbTx')) - 1e9 / med(col('txOnly')))} ns`,
      'LB on veth (devmap path: 1/LB − 1/redirect-only, medians)': `${Math.round(1e9 / med(col('lbDevmap')) - 1e9 / med(col('redirectOnly')))} ns`,
    } },
  );
}
