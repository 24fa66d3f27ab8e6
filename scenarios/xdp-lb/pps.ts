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
import { BpfError, Link, libbpf, type Program } from '../../controller/libbpf/index.ts';
import type { XdpBench } from '../../bpf/gen/xdp_bench.ts';
import { Dataplane } from '../../controller/lb/dataplane.ts';
import { addrBytes, htons } from '../../controller/lb/addr.ts';
import { withNetns } from '../../controller/libbpf/index.ts';
import type { ScenarioContext } from '../../lab/scenario.ts';
import { goalByRounds, headlineFromRounds, spreadOf } from '../../lab/rounds.ts';
import { releaseAtLeast } from '../../common/host.ts';
import { CLIENT4, VIP4, backend4, backend6, type Daemon, type LbTopology } from './topology.ts';

/** a 64-byte UDP frame client → VIP:9, as it arrives at the LB (MACs: the veth topology's, or given) */
export function udpFrame(t: Pick<LbTopology, 'macs'>, macs: { dst: string; src: string } = { dst: t.macs.lb, src: t.macs.client }): Buffer {
  const f = Buffer.alloc(60);
  Buffer.from(macs.dst.replace(/:/g, ''), 'hex').copy(f, 0);
  Buffer.from(macs.src.replace(/:/g, ''), 'hex').copy(f, 6);
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

export const sumPerCpu = (v: bigint[] | undefined) => Number((v ?? []).reduce((a, b) => a + b, 0n));

/** live frames into the LB's receiving port; returns frames/s counted by `counter` */
function generate(rig: PathRig, frame: Buffer, repeat: number, counter: () => number): Rate {
  const before = counter();
  const t0 = process.hrtime.bigint();
  const own = rig.send(frame, repeat);
  const seconds = typeof own === 'number' ? own : Number(process.hrtime.bigint() - t0) / 1e9;
  // frames still in a virtio ring or QEMU's hub when the generator returns belong to this run
  if (rig.settleMs) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, rig.settleMs);
  const frames = counter() - before;
  return { pps: frames / seconds, frames, seconds };
}

export interface Rate {
  pps: number;
  frames: number;
  seconds: number;
}

/**
 * One forwarding path under test: the LB's pinned link on its receiving port (BPF_LINK_UPDATE
 * swaps the program between configurations), the helper programs whose counters count the frames,
 * the generator, and the devmap egress ports of the LB and of the redirect-only ceiling.
 */
export interface PathRig {
  link: Link;
  lb: Program;
  helpers: XdpBench;
  /** send `repeat` frames from the generator's side; a number returned is the generator's own
   * seconds (else the call is timed) */
  send(frame: Buffer, repeat: number): number | void;
  /** the generator is BPF_PROG_TEST_RUN with live frames (probed first: 5.18+) */
  liveFrames: boolean;
  /** point the LB's backends (backend_ports) at their devmap egress ports, or clear that */
  setPorts(on: boolean): Promise<void>;
  /** wait after each generator run before reading the receiver's counter */
  settleMs: number;
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

export type PpsRound = Record<(typeof CONFIGS)[number], Rate>;

export interface PpsResult {
  live: boolean;
  /** why live frames were not measured (the probe's evidence) */
  unsupported?: string;
  rounds: PpsRound[];
  programNs: Record<string, number>;
}

const CONFIGS = ['ceiling', 'txOnly', 'lbTx', 'redirectOnly', 'lbDevmap'] as const;
const LABEL: Record<(typeof CONFIGS)[number], string> = {
  ceiling: 'XDP_DROP ceiling (on the LB\'s port)',
  txOnly: 'XDP_TX only, no LB logic (counted at the receiver)',
  lbTx: 'XDP LB, XDP_TX path (counted at the receiver)',
  redirectOnly: 'devmap redirect only, no LB logic (counted at the receiver)',
  lbDevmap: 'XDP LB, devmap path (counted at the receiver)',
};

/**
 * The five configurations alternated on one path, round by round (ceiling, XDP_TX alone, LB via
 * XDP_TX, devmap redirect alone, LB via devmap). The LB program is left on the link afterwards.
 * `out.live` is false when the kernel's test runs cannot send live frames (before 5.18).
 */
export async function measurePath(ctx: ScenarioContext, rig: PathRig, frame: Buffer, o: { frames: number; rounds: number; what: string; metric: string }): Promise<PpsResult> {
  const h = rig.helpers.programs;
  const dropCount = () => sumPerCpu(rig.helpers.maps.drop_count.getPerCpu(0));
  const sinkCount = () => sumPerCpu(rig.helpers.maps.sink_count.getPerCpu(0));
  const out: PpsResult = { live: true, rounds: [], programNs: {} };
  // the rounds as they finish (reportPath replaces it with the full figures): a stopped bench keeps
  // them, whatever the teardown that runs beside a stopped scenario does to the code after the loop
  ctx.metric(o.metric, { rounds: out.rounds, framesPerRun: o.frames, note: 'the rounds measured so far: the bench did not finish' });
  try {
    // live-frame test runs (BPF_F_TEST_XDP_LIVE_FRAMES) arrived in 5.18: an older kernel runs the
    // generator without sending anything, so probe with a few frames before measuring
    rig.link.update(h.xdp_drop.ptr);
    if (rig.liveFrames) {
      // a kernel may also refuse them outright: this host's 6.18 answers EPERM to root (session
      // 58), which ended the whole scenario before any of its sections was written
      let evidence: string | null = null;
      try {
        const got = generate(rig, frame, 1000, dropCount).frames;
        if (got === 0) evidence = `0 of 1000 frames reached xdp_drop on ${o.what}`;
      } catch (e) {
        // EINVAL means "no such flag" only before 5.18; after, it is the lab's own call (a bad
        // frame) and must fail the run, not read as an old kernel
        const refused = ['EPERM', 'EOPNOTSUPP', 'ENOTSUPP'].includes(e instanceof BpfError ? e.code ?? '' : '') || (e instanceof BpfError && e.code === 'EINVAL' && !releaseAtLeast(ctx.kernel.release, [5, 18]));
        if (!refused) throw e;
        evidence = `the kernel refused it: ${(e as BpfError).code}`;
      }
      if (evidence) {
        out.live = false;
        out.unsupported = `xdp_gen test_run with BPF_F_TEST_XDP_LIVE_FRAMES: ${evidence} on ${ctx.kernel.release}`;
        ctx.unsupported(`UDP pps on ${o.what}`, 'XDP live-frame test runs (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18+)', out.unsupported);
      }
    }
    for (let i = 0; out.live && i < o.rounds && !ctx.signal.aborted; i++) {
      rig.link.update(h.xdp_drop.ptr);
      const ceiling = generate(rig, frame, o.frames, dropCount);
      rig.link.update(h.xdp_tx.ptr);
      const txOnly = generate(rig, frame, o.frames, sinkCount);
      rig.link.update(rig.lb.ptr);
      const lbTx = generate(rig, frame, o.frames, sinkCount);
      rig.link.update(h.xdp_redirect_port.ptr);
      const redirectOnly = generate(rig, frame, o.frames, sinkCount);
      await rig.setPorts(true);
      rig.link.update(rig.lb.ptr);
      const lbDevmap = generate(rig, frame, o.frames, sinkCount);
      await rig.setPorts(false);
      out.rounds.push({ ceiling, txOnly, lbTx, redirectOnly, lbDevmap });
      ctx.progress.info(`${o.what} round ${i + 1}: ${CONFIGS.map((c) => `${c} ${(out.rounds[i]![c].pps / 1e6).toFixed(3)}`).join(', ')} Mpps`);
    }
    // the programs' own cost per frame, without the port or cache effects (non-live
    // BPF_PROG_TEST_RUN on the same frame: xdp_lb takes its established-flow path)
    for (const [name, prog] of [['xdp_drop', h.xdp_drop], ['xdp_tx', h.xdp_tx], ['xdp_redirect_port', h.xdp_redirect_port], ['xdp_lb', rig.lb]] as const) {
      out.programNs[name] = prog.testRun({ data: frame, repeat: Math.max(10_000, Math.min(1_000_000, o.frames)) }).durationNs;
    }
  } finally {
    rig.link.update(rig.lb.ptr);
    await rig.setPorts(false).catch(() => 0);
  }
  return out;
}

export async function forwardingRates(ctx: ScenarioContext, t: LbTopology, d: Daemon, o: { frames: number; rounds: number; threadedNapi?: boolean }): Promise<PpsResult> {
  ctx.progress.step(`UDP 64-byte frames on the LB veth: XDP_DROP ceiling, XDP_TX and devmap paths, alone and with the LB (${o.rounds} alternating rounds × ${o.frames} frames)`);
  const st = await d.api.state();
  const local = await Dataplane.open({ pinDir: st.pinDir }); // same pinned maps
  let lbLink: Link;
  try {
    lbLink = new Link('lb0 (pinned LB link)', libbpf.bpf_link__open(path.join(local.pinDir, 'link')));
  } catch (e) {
    local.close();
    throw e;
  }
  const sinkMap = t.helpers.maps.sink_config;
  let out: PpsResult;
  try {
    const ports = await t.backendPorts();
    sinkMap.set(0, { udp_port: htons(9), pad: 0, pad2: 0 });
    t.attachPeer();
    t.attachBackendSinks();
    withNetns(t.topo.ns('fabric'), () => t.helpers.maps.bench_ports.set(0, ports[0]!));
    if (o.threadedNapi) await t.setThreadedNapi(true);
    const rig: PathRig = {
      link: lbLink, lb: local.prog, helpers: t.helpers, settleMs: 0, liveFrames: true,
      send: (frame, repeat) => void withNetns(t.topo.ns('fabric'), () => t.helpers.programs.xdp_gen.testRun({ data: frame, repeat, flags: 2 /* BPF_F_TEST_XDP_LIVE_FRAMES */ })),
      setPorts: async (on) => void (await setBackendPorts(t, d, on)),
    };
    out = await measurePath(ctx, rig, udpFrame(t), { frames: o.frames, rounds: o.rounds, what: 'the LB veth', metric: ppsMetric('') });
  } finally {
    try {
      if (o.threadedNapi) await t.setThreadedNapi(false);
    } finally {
      sinkMap.set(0, { udp_port: 0, pad: 0, pad2: 0 });
      t.detachBackendSinks();
      lbLink.close(); // the pin keeps the attachment
      local.close();
    }
  }
  report(ctx, out, o.frames, !!o.threadedNapi);
  return out;
}

/** the results.json metric of a path's rounds, by its PathReport idPrefix */
export const ppsMetric = (idPrefix: string) => (idPrefix ? `pps.${idPrefix.replace(/\.$/, '')}` : 'pps');

const r2 = (x: number) => Math.round(x * 100) / 100;
const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : 'n/a');

/** how a path is named in the report: headline ids (`lb.pps.` + prefix), labels, the method text */
export interface PathReport {
  /** '' for veth (the ids published since issue 14), 'nic.' for the virtio-net wire */
  idPrefix: string;
  /** "veth", "virtio-net" … */
  port: string;
  title: string;
  method: string;
  /** extra key/values for the section */
  facts?: Record<string, string | number>;
}

function report(ctx: ScenarioContext, r: PpsResult, frames: number, threaded: boolean): void {
  reportPath(ctx, r, frames, {
    idPrefix: '', port: 'veth', title: 'UDP small packets: forwarding vs the ceilings',
    method: `Generator: BPF_PROG_TEST_RUN with live frames in the bridge namespace, redirecting a 64-byte UDP frame (one flow, an established one for the LB) into the LB veth lb0; ${threaded ? 'NAPI threaded (--napi threaded) on lb0, the bridge port facing it and the backends\' eth0: each receive runs in its own kernel thread, free to use the other CPU.' : 'everything runs in the generator\'s softirq on one CPU (NAPI not threaded; --napi threaded moves receives to kernel threads).'} Per round the program on lb0's link alternates (BPF_LINK_UPDATE) through the five configurations below, ${frames} frames each. Rates count frames the receiving program saw per second of generator time. On veth a forwarded frame is received twice (lb0, then the receiver, each a NAPI poll and an XDP run) and a dropped one once, so the "only" rows are the structural limit of each path and LB ÷ "only" is the LB logic's own cost. The XDP_TX path counts at the bridge port facing the LB; the devmap path writes a backend_ports entry per backend (its bridge port pbN) and counts at the backends' eth0.`,
    facts: { napi: threaded ? 'threaded' : 'softirq' },
  });
}

/** the programs' own cost per frame (non-live BPF_PROG_TEST_RUN), as the report shows it */
function isolationItems(ns: Record<string, number>): Record<string, string | number> {
  return {
    ...Object.fromEntries(Object.entries(ns).map(([k, v]) => [`${k}: ns per frame in isolation (BPF_PROG_TEST_RUN)`, v])),
    'LB logic in isolation (xdp_lb − xdp_tx)': `${(ns.xdp_lb ?? 0) - (ns.xdp_tx ?? 0)} ns`,
  };
}

export function reportPath(ctx: ScenarioContext, r: PpsResult, frames: number, pr: PathReport): void {
  if (!r.live) {
    // the probe's evidence where there is some (a 6.18 that refuses them is no "before 5.18")
    const why = `not measured on ${ctx.kernel.release}: ${r.unsupported ? `the generator's live-frame test runs failed (${r.unsupported.replace(/ on \S+$/, '')})` : 'the generator needs live-frame test runs (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18+)'}`;
    // the programs' own cost needs no live frames: kept, the report's text refers to it
    const ns = r.programNs;
    ctx.metric(ppsMetric(pr.idPrefix), { live: false, note: why, programNsPerFrameTestRun: ns }); // over measurePath's "so far"
    ctx.section(pr.title, { kind: 'text', text: `${why[0]!.toUpperCase()}${why.slice(1)}.` },
      ...(Object.keys(ns).length ? [{ kind: 'kv' as const, items: isolationItems(ns) }] : []));
    return;
  }
  const col = (c: (typeof CONFIGS)[number]) => r.rounds.map((x) => x[c].pps);
  const ratio = (a: (typeof CONFIGS)[number], b: (typeof CONFIGS)[number]) => r.rounds.map((x) => x[a].pps / x[b].pps);
  // the figures first, the checks last: a stopped bench (a check then throws the stop) keeps the
  // rounds it completed (it recorded none: reports of `--timeout` runs held no figures)
  if (!r.rounds.length) {
    ctx.check(`UDP pps on ${pr.port} measured`, false, 'no round finished');
    return;
  }
  const goals: [string, (typeof CONFIGS)[number], (typeof CONFIGS)[number], number][] = [
    ['XDP_TX path: LB ÷ XDP_DROP ceiling', 'lbTx', 'ceiling', 0.7],
    ['XDP_TX path: LB ÷ XDP_TX only', 'lbTx', 'txOnly', 0.9],
    ['devmap path: LB ÷ XDP_DROP ceiling', 'lbDevmap', 'ceiling', 0.7],
    ['devmap path: LB ÷ redirect only', 'lbDevmap', 'redirectOnly', 0.9],
    [`XDP_TX only ÷ XDP_DROP ceiling (${pr.port === 'veth' ? 'the veth\'s second receive, ' : ''}no LB)`, 'txOnly', 'ceiling', NaN],
    ['redirect only ÷ XDP_DROP ceiling', 'redirectOnly', 'ceiling', NaN],
  ];
  ctx.headline(headlineFromRounds({ name: `lb.pps.${pr.idPrefix}forwarded`, label: `UDP 64-byte frames forwarded by the XDP LB on ${pr.port} (XDP_TX path)`, unit: 'frames/s', better: 'higher', rounds: col('lbTx'), comparator: { name: `XDP_DROP ceiling on the same ${pr.port}`, rounds: col('ceiling'), likeForLike: true, note: 'ratio = forwarded ÷ ceiling, alternated on the same link' }, goal: { op: '>=', target: 0.7, of: 'ratio' } }));
  ctx.headline(headlineFromRounds({ name: `lb.pps.${pr.idPrefix}forwardedVsTxOnly`, label: `XDP LB forwarding (XDP_TX path) vs XDP_TX alone on the same ${pr.port}`, unit: 'frames/s', better: 'higher', rounds: col('lbTx'), comparator: { name: 'XDP_TX only', rounds: col('txOnly'), likeForLike: true, note: 'ratio = LB ÷ XDP_TX-only: the LB logic\'s own share' }, goal: { op: '>=', target: 0.9, of: 'ratio' } }));
  ctx.headline(headlineFromRounds({ name: `lb.pps.${pr.idPrefix}forwardedDevmap`, label: `UDP 64-byte frames forwarded by the XDP LB on ${pr.port} (devmap path)`, unit: 'frames/s', better: 'higher', rounds: col('lbDevmap'), comparator: { name: `XDP_DROP ceiling on the same ${pr.port}`, rounds: col('ceiling'), likeForLike: true, note: 'ratio = forwarded ÷ ceiling' }, goal: { op: '>=', target: 0.7, of: 'ratio' } }));
  ctx.headline(headlineFromRounds({ name: `lb.pps.${pr.idPrefix}forwardedDevmapVsRedirectOnly`, label: `XDP LB forwarding (devmap path) vs devmap redirect alone on ${pr.port}`, unit: 'frames/s', better: 'higher', rounds: col('lbDevmap'), comparator: { name: 'devmap redirect only', rounds: col('redirectOnly'), likeForLike: true, note: 'ratio = LB ÷ redirect-only' }, goal: { op: '>=', target: 0.9, of: 'ratio' } }));
  const med = (xs: number[]) => spreadOf(xs).median;
  const ns = r.programNs;
  ctx.metric(ppsMetric(pr.idPrefix), {
    ...pr.facts, rounds: r.rounds, framesPerRun: frames, frameBytes: 60, programNsPerFrameTestRun: ns,
    medianPps: Object.fromEntries(CONFIGS.map((c) => [c, med(col(c))])),
    ratios: Object.fromEntries(goals.map(([k, a, b]) => [k, med(ratio(a, b))])),
  });
  ctx.section(pr.title,
    { kind: 'text', text: pr.method },
    { kind: 'table', columns: ['configuration', 'Mpps (median)', 'rounds', 'ns/frame (median)'],
      rows: CONFIGS.map((c) => [LABEL[c], r2(med(col(c)) / 1e6), col(c).map((x) => (x / 1e6).toFixed(2)).join(', '), Math.round(1e9 / med(col(c)))]) },
    { kind: 'table', columns: ['ratio (per round, then median)', 'goal', 'median', 'rounds', 'result'],
      rows: goals.map(([k, a, b, target]) => {
        const xs = ratio(a, b);
        const g = Number.isFinite(target) ? goalByRounds(xs, '>=', target) : null;
        return [k, Number.isFinite(target) ? `≥ ${target}` : '(structure)', pct(med(xs)), xs.map(pct).join(', '), g ? `${g.verdict} (${g.detail})` : ''];
      }) },
    { kind: 'kv', items: {
      ...isolationItems(ns),
      [`LB on ${pr.port} (XDP_TX path: 1/LB − 1/XDP_TX-only, medians)`]: `${Math.round(1e9 / med(col('lbTx')) - 1e9 / med(col('txOnly')))} ns`,
      [`LB on ${pr.port} (devmap path: 1/LB − 1/redirect-only, medians)`]: `${Math.round(1e9 / med(col('lbDevmap')) - 1e9 / med(col('redirectOnly')))} ns`,
    } },
  );
  ctx.check(`UDP frames to the VIP are forwarded on both paths on ${pr.port} (counted at the receiver)`, r.rounds.every((x) => x.lbTx.frames > 0 && x.lbDevmap.frames > 0),
    r.rounds.map((x) => `XDP_TX ${x.lbTx.frames}, devmap ${x.lbDevmap.frames} of ${frames}`).join('; '));
  // a ceiling that counted nothing would make every ratio against it meaningless
  ctx.check(`every ceiling configuration on ${pr.port} reached its counter`, r.rounds.every((x) => x.ceiling.frames > 0 && x.txOnly.frames > 0 && x.redirectOnly.frames > 0),
    r.rounds.map((x) => `XDP_DROP ${x.ceiling.frames}, XDP_TX only ${x.txOnly.frames}, redirect only ${x.redirectOnly.frames} of ${frames}`).join('; '));
}
