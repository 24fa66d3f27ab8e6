// The NIC-like path of the pps section (issue 14 §2): native XDP on virtio-net, the same five
// configurations as on veth, in the same run. The lab's guests carry a "wire" (lab/vm/wire.ts):
// two virtio-net ports joined by a QEMU hub. Here the DUT port goes into namespace "nic" with a
// second LB daemon (one UDP VIP, one backend behind the same port, so the LB answers with
// XDP_TX as a one-armed NIC LB does); the generator port goes into "nicgen", where the live-frames
// generator sends out of it and xdp_sink counts what the LB sends back across the wire.
//
//   nicgen: gen ──(QEMU hub)── dut :nic   (XDP LB / XDP_DROP / XDP_TX / redirect on dut)
//
// What differs from veth: a transmitted frame is a virtqueue write and a received one a ring read
// by the driver's NAPI (no second XDP receive in the peer, no skb), which is what a NIC does; what
// is not NIC-like: QEMU's device emulation moves each frame (one thread; TCG here, vhost-net only
// with KVM and a tap), so the absolute rates say little and only ratios on this path compare.
import { execFileSync } from 'node:child_process';
import { execa } from 'execa';
import { LabError } from '../../common/errors.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { attachXdp, Link, libbpf, type Link as LinkT } from '../../controller/libbpf/index.ts';
import { Dataplane } from '../../controller/lb/dataplane.ts';
import { htons } from '../../controller/lb/addr.ts';
import type { LbConfig } from '../../controller/lb/config.ts';
import { withNetns } from '../../controller/libbpf/index.ts';
import { scaledTimeout, type ScenarioContext } from '../../lab/scenario.ts';
import { findWire, WIRE_MACS } from '../../lab/vm/wire.ts';
import { CLIENT4, LB4, VIP4, backend4, loadHelpers, startDaemon, type Daemon, type LbTopology } from './topology.ts';
import { measurePath, ppsMetric, reportPath, udpFrame, type PathRig, type PpsResult } from './pps.ts';

export interface NicResult extends PpsResult {
  driver: string;
  xdpMode: string;
}

/** the second LB on the wire's DUT port: one UDP VIP, one backend whose next hop is the generator port */
export function nicLbConfig(dev: string, instance: string, egress?: string): LbConfig {
  return {
    interface: dev,
    instance,
    vips: [{ vip: `udp://${VIP4}:9`, backends: [{ address: backend4(0), port: 80, mac: WIRE_MACS.gen, ...(egress ? { egress } : {}) }], healthCheck: false }],
  };
}

/**
 * The generator on the wire is the kernel's pktgen, not the live-frames test run used on veth:
 * a live-frames run pushes frames into the virtio TX ring (256 slots) far faster than QEMU drains
 * it and drops the rest at the sender without a count, so its rate says nothing about the
 * receiver. pktgen retries a busy ring (backpressure) and times itself. Returns pktgen's seconds.
 */
export function pktgen(ns: string, dev: string, count: number): number {
  const pg = (f: string, c: string) => `echo "${c}" > /proc/net/pktgen/${f}`;
  // the last CPU's pktgen thread: device interrupts mostly land on CPU 0
  const thread = `kpktgend_${os.cpus().length - 1}`;
  const cmds = [
    pg(thread, 'rem_device_all'), pg(thread, `add_device ${dev}`),
    ...[`count ${count}`, 'pkt_size 60', 'clone_skb 1000', 'burst 32', `dst ${VIP4}`, `src_min ${CLIENT4}`, `src_max ${CLIENT4}`, `dst_mac ${WIRE_MACS.dut}`,
      'udp_src_min 12345', 'udp_src_max 12345', 'udp_dst_min 9', 'udp_dst_max 9'].map((c) => pg(dev, c)),
    pg('pgctrl', 'start'), `cat /proc/net/pktgen/${dev}`, pg(thread, 'rem_device_all'),
  ];
  // /proc/net is the reading thread's namespace: run inside "nicgen", where the port is
  const out = execFileSync('ip', ['netns', 'exec', ns, 'sh', '-ec', cmds.join('\n')], { encoding: 'utf8' });
  const m = out.match(/Result: OK: (\d+)\(/);
  if (!m) throw new LabError(`pktgen on ${dev} gave no result: ${out.trim().split('\n').slice(-3).join(' | ')}`);
  return Number(m[1]) / 1e6;
}

/** pktgen is a module on distribution kernels: load it, or say why the NIC path cannot run */
async function havePktgen(): Promise<string | null> {
  if (fs.existsSync('/proc/net/pktgen')) return null;
  const r = await execa('modprobe', ['pktgen'], { reject: false });
  return r.exitCode === 0 ? null : `modprobe pktgen: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`;
}

const XDP_MODES: Record<number, string> = { 1: 'native (driver)', 2: 'generic (skb)', 3: 'offloaded', 4: 'several' };

/**
 * Measure the NIC path when this machine has the wire; null (and a section saying why) when not.
 * Everything it creates is undone here or by the topology's teardown (the namespaces hand the
 * ports back to the root namespace when deleted).
 */
export async function nicForwardingRates(ctx: ScenarioContext, t: LbTopology, o: { frames: number; rounds: number }): Promise<NicResult | null> {
  try {
    return await nicPath(ctx, t, o);
  } catch (e) {
    // the veth results of the same run stand on their own: record the failure, do not lose them
    const msg = (e as Error).message.split('\n').slice(0, 3).join(' ');
    ctx.check('UDP pps on virtio-net (native XDP) was measured', false, msg);
    return null;
  }
}

async function nicPath(ctx: ScenarioContext, t: LbTopology, o: { frames: number; rounds: number }): Promise<NicResult | null> {
  const title = 'UDP small packets on a NIC: native XDP on virtio-net';
  const wire = findWire();
  if (!wire) {
    ctx.section(title, { kind: 'text', text: `Not measured here: this machine has no virtio-net wire (two ports joined by a QEMU hub, lab/vm/wire.ts), which the lab's guests carry. Run it in a guest: \`pnpm lab run xdp-lb --kernel 6.1\` (or \`pnpm lab bench xdp-lb --only pps --kernel 6.1\`).` });
    return null;
  }
  const noPktgen = await havePktgen();
  if (noPktgen) {
    ctx.unsupported('UDP pps on virtio-net', 'the kernel packet generator (pktgen, CONFIG_NET_PKTGEN)', noPktgen);
    ctx.section(title, { kind: 'text', text: `Not measured: the NIC path's generator is pktgen, which this kernel does not offer (${noPktgen}).` });
    return null;
  }
  ctx.progress.step(`UDP 64-byte frames on virtio-net (${wire.dut}, native XDP): the same five configurations, ${o.rounds} rounds × ${o.frames} frames`);
  const driver = path.basename(fs.realpathSync(`/sys/class/net/${wire.dut}/device/driver`));
  await t.topo.addNs('nic');
  await t.topo.addNs('nicgen');
  await execa('ip', ['link', 'set', 'dev', wire.dut, 'netns', t.topo.ns('nic')]);
  await execa('ip', ['link', 'set', 'dev', wire.gen, 'netns', t.topo.ns('nicgen')]);
  await t.topo.addr('nic', wire.dut, `${LB4}/24`);
  await t.topo.exec('nic', 'ip', ['link', 'set', wire.dut, 'up']);
  // promiscuous: the "only" configurations send the frame back unchanged (to the DUT's own MAC),
  // which QEMU's virtio-net receive filter on the generator port would otherwise drop
  await t.topo.exec('nicgen', 'ip', ['link', 'set', wire.gen, 'up', 'promisc', 'on']);
  const genIfindex = await t.topo.ifindex('nicgen', wire.gen);
  const dutIfindex = await t.topo.ifindex('nic', wire.dut);
  const helpers = await loadHelpers(genIfindex);
  let sink: LinkT | null = null;
  let d: Daemon | null = null;
  let local: Dataplane | null = null;
  let link: Link | null = null;
  try {
    const instance = `xlbn${process.pid}`;
    d = await startDaemon(t, nicLbConfig(wire.dut, instance), 'nic');
    const st = await d.api.state();
    local = await Dataplane.open({ pinDir: st.pinDir });
    link = new Link(`${wire.dut} (pinned LB link)`, libbpf.bpf_link__open(path.join(local.pinDir, 'link')));
    const info = JSON.parse(String((await t.topo.exec('nic', 'ip', ['-j', '-d', 'link', 'show', 'dev', wire.dut])).stdout)) as { xdp?: { mode?: number } }[];
    const mode = info[0]?.xdp?.mode ?? 0;
    const xdpMode = XDP_MODES[mode] ?? `none (${mode})`;
    ctx.check(`the LB runs native XDP on ${driver} (${wire.dut})`, mode === 1, `ip -d link: xdp mode ${xdpMode}`);
    // the generator port receives what the DUT sends back: xdp_sink counts UDP to port 9 there
    helpers.maps.sink_config.set(0, { udp_port: htons(9), pad: 0, pad2: 0 });
    sink = withNetns(t.topo.ns('nicgen'), () => attachXdp(helpers.programs.xdp_sink, wire.gen));
    // one port on each side: the devmap path redirects into the DUT port itself (ndo_xdp_xmit
    // instead of the XDP_TX ring write), for the redirect-only ceiling and for the LB's backend
    withNetns(t.topo.ns('nic'), () => helpers.maps.bench_ports.set(0, dutIfindex));
    const api = d.api;
    const rig: PathRig = {
      link, lb: local.prog, helpers, settleMs: scaledTimeout(20), liveFrames: false,
      send: (_frame, repeat) => pktgen(t.topo.ns('nicgen'), wire.gen, repeat),
      // the LB's devmap port is its configuration (backend "egress"), applied through the daemon
      setPorts: async (on) => void (await api.apply(nicLbConfig(wire.dut, instance, on ? wire.dut : undefined))),
    };
    const frame = udpFrame(t, { dst: WIRE_MACS.dut, src: WIRE_MACS.gen });
    const r = await measurePath(ctx, rig, frame, { frames: o.frames, rounds: o.rounds, what: `virtio-net ${wire.dut}`, metric: ppsMetric('nic.') });
    reportPath(ctx, r, o.frames, {
      idPrefix: 'nic.', port: 'virtio-net', title,
      method: `The NIC-like path beside veth, in the same run: the guest's "wire" is two virtio-net ports (${driver}) joined by a QEMU hub. The LB (a second daemon: one UDP VIP, one backend whose next hop is across the wire) runs on ${wire.dut} in namespace "nic" with XDP in ${xdpMode} mode; pktgen sends 64-byte UDP frames (one established flow; pktgen, not the veth path's live-frames test run, because that one overruns the 256-slot virtio TX ring and drops uncounted at the sender) out of ${wire.gen} in namespace "nicgen", where xdp_sink counts what comes back; rates are frames counted at the receiver per second of pktgen's own run time. The five configurations alternate on the LB's link per round, ${o.frames} frames each; the devmap rows redirect into ${wire.dut} itself (the backend's "egress" set to ${wire.dut} in the daemon's config, applied through its API: a devmap entry for the same port, ndo_xdp_xmit instead of the XDP_TX ring). Unlike veth a forwarded frame is received once (a ring read by the driver, no skb); like veth, generator and LB share the guest's CPUs. QEMU emulates the device (its own thread; under TCG the guest's CPUs are emulated too), so the absolute rates are not a NIC's: only the ratios on this path compare, and only with each other.`,
      facts: { driver, xdpMode, settleMs: rig.settleMs, timeScale: process.env.EBPF_LAB_TIME_SCALE ?? '1' },
    });
    return { ...r, driver, xdpMode };
  } finally {
    sink?.close();
    link?.close(); // the pin keeps the attachment until the daemon purges
    local?.close();
    await d?.stop(true);
    helpers.close();
    // hand the ports back (deleting the namespaces would too): a later section must find them
    await t.topo.exec('nic', 'ip', ['link', 'set', 'dev', wire.dut, 'netns', '1'], { reject: false });
    await t.topo.exec('nicgen', 'ip', ['link', 'set', 'dev', wire.gen, 'netns', '1'], { reject: false });
  }
}
