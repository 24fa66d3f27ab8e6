// Packet fixtures through BPF_PROG_TEST_RUN: the data plane is loaded unpinned, its maps filled
// the way the controller fills them, and every verdict and rewritten MAC is predicted in TS.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeRoot } from '../../lab/testing.ts';
import { addrBytes, htons } from './addr.ts';
import { BE_ACTIVE, Dataplane, MAX_VIPS } from './dataplane.ts';
import { flowHash } from './flowhash.ts';
import { EMPTY_SLOT, maglevTable } from './maglev.ts';


const XDP_DROP = 1, XDP_PASS = 2, XDP_TX = 3;
const SRC_MAC = Buffer.from('02aaaaaaaaaa', 'hex');
const LB_MAC = Buffer.from('02bbbbbbbbbb', 'hex');
const BMACS = [0, 1, 2].map((i) => Buffer.from(`02000000000${i + 1}`, 'hex'));
const VIP4 = '10.1.0.100', VIP6 = 'fd00:1::100', CLIENT4 = '10.2.0.1', CLIENT6 = 'fd00:2::1';
const RING = 65537;

function eth(type: number): Buffer {
  const b = Buffer.alloc(14);
  LB_MAC.copy(b, 0);
  SRC_MAC.copy(b, 6);
  b.writeUInt16BE(type, 12);
  return b;
}

function l4(proto: number, sport: number, dport: number, flags = 0x02 /* SYN */): Buffer {
  if (proto === 6) {
    const t = Buffer.alloc(20);
    t.writeUInt16BE(sport, 0);
    t.writeUInt16BE(dport, 2);
    t[12] = 5 << 4;
    t[13] = flags;
    return t;
  }
  const u = Buffer.alloc(8 + 18);
  u.writeUInt16BE(sport, 0);
  u.writeUInt16BE(dport, 2);
  u.writeUInt16BE(u.length, 4);
  return u;
}

function ipv4(src: string, dst: string, proto: number, payload: Buffer, o: { options?: Buffer; frag?: number } = {}): Buffer {
  const opt = o.options ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + opt.length);
  h[0] = 0x40 | ((20 + opt.length) / 4);
  h.writeUInt16BE(h.length + payload.length, 2);
  h.writeUInt16BE(o.frag ?? 0, 6);
  h[8] = 64;
  h[9] = proto;
  Buffer.from(addrBytes(src).subarray(0, 4)).copy(h, 12);
  Buffer.from(addrBytes(dst).subarray(0, 4)).copy(h, 16);
  opt.copy(h, 20);
  return Buffer.concat([eth(0x0800), h, payload]);
}

function ipv6(src: string, dst: string, next: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payload.length, 4);
  h[6] = next;
  h[7] = 64;
  Buffer.from(addrBytes(src)).copy(h, 8);
  Buffer.from(addrBytes(dst)).copy(h, 24);
  return Buffer.concat([eth(0x86dd), h, payload]);
}

describeRoot('xdp_lb packet fixtures (BPF_PROG_TEST_RUN)', () => {
  let dp: Dataplane;
  const tables = new Map<number, Uint32Array>();

  beforeAll(async () => {
    dp = await Dataplane.open({ pinDir: '/nonexistent', noPin: true, conntrackEntries: 4096 });
    // backends 0..2 on ifindex 1 (the test run's ingress device, loopback): XDP_TX
    for (let i = 0; i < 3; i++) {
      dp.backends.set(i, { mac: BMACS[i]!, src_mac: LB_MAC, ifindex: 1, addr: addrBytes(`10.3.0.${i + 1}`), port: 80, family: 4, flags: BE_ACTIVE, vip_id: 0, weight: 1 });
    }
    const vips: [string, number, number, number][] = [[VIP4, 80, 6, 0], [VIP4, 53, 17, 1], [VIP6, 80, 6, 2], [VIP6, 53, 17, 3], [VIP4, 81, 6, 4]];
    for (const [addr, port, proto, slot] of vips) {
      const t = slot === 4 ? new Uint32Array(RING).fill(EMPTY_SLOT) : maglevTable([0, 1, 2].map((id) => ({ key: `b${id}`, id, weight: 1 })), RING);
      tables.set(slot, t);
      dp.swapRing(slot, t);
      dp.vips.set({ addr: addrBytes(addr), port: htons(port), proto, family: addr.includes(':') ? 6 : 4 }, { vip_id: slot, ring_size: RING, flags: 1, generation: 1 });
      dp.vipAddrs.set(addrBytes(addr), 1);
    }
    for (let i = 0; i < 3; i++) dp.backends.set(i, { ...dp.backends.get(i)!, vip_id: 0 });
  });
  afterAll(() => dp?.close());

  /** the backend the TS model predicts for a new flow */
  function expected(slot: number, src: string, sport: number, dport: number, proto: number): number {
    return tables.get(slot)![flowHash(addrBytes(src), htons(sport), htons(dport), proto) % RING]!;
  }

  function run(pkt: Buffer) {
    return dp.prog.testRun({ data: pkt });
  }

  function global() {
    return dp.globalStats();
  }

  it('the ring in the kernel equals the TS table', () => {
    for (const [slot, t] of tables) expect(dp.readRing(slot)).toEqual(t);
  });

  const cases: [string, number, string, string, number][] = [
    ['IPv4 TCP', 0, CLIENT4, VIP4, 6],
    ['IPv4 UDP', 1, CLIENT4, VIP4, 17],
    ['IPv6 TCP', 2, CLIENT6, VIP6, 6],
    ['IPv6 UDP', 3, CLIENT6, VIP6, 17],
  ];
  for (const [name, slot, src, dst, proto] of cases) {
    it(`${name} to a VIP goes to the Maglev-chosen backend's MAC (XDP_TX)`, () => {
      const seen = new Set<number>();
      for (let sport = 40000; sport < 40030; sport++) {
        const dport = proto === 6 ? 80 : 53;
        const p = l4(proto, sport, dport);
        const pkt = src.includes(':') ? ipv6(src, dst, proto, p) : ipv4(src, dst, proto, p);
        const r = run(pkt);
        expect(r.retval).toBe(XDP_TX);
        const want = expected(slot, src, sport, dport, proto);
        seen.add(want);
        expect(r.dataOut.subarray(0, 6).toString('hex')).toBe(BMACS[want]!.toString('hex'));
        expect(r.dataOut.subarray(6, 12).toString('hex')).toBe(LB_MAC.toString('hex'));
        // DSR touches nothing but the MACs
        expect(r.dataOut.subarray(12)).toEqual(pkt.subarray(12));
      }
      expect(seen.size).toBe(3);
    });
  }

  it('an established flow keeps its backend when the ring changes (conntrack); a SYN re-hashes', () => {
    const sport = 41234;
    const first = run(ipv4(CLIENT4, VIP4, 6, l4(6, sport, 80)));
    const b = BMACS.findIndex((m) => m.equals(first.dataOut.subarray(0, 6)));
    // a ring without that backend
    const others = [0, 1, 2].filter((x) => x !== b);
    dp.swapRing(0, maglevTable(others.map((id) => ({ key: `b${id}`, id, weight: 1 })), RING));
    const ack = run(ipv4(CLIENT4, VIP4, 6, l4(6, sport, 80, 0x10)));
    expect(ack.retval).toBe(XDP_TX);
    expect(ack.dataOut.subarray(0, 6).equals(BMACS[b]!)).toBe(true);
    const syn = run(ipv4(CLIENT4, VIP4, 6, l4(6, sport, 80)));
    expect(BMACS.findIndex((m) => m.equals(syn.dataOut.subarray(0, 6)))).not.toBe(b);
    dp.swapRing(0, tables.get(0)!);
  });

  it('non-VIP traffic passes untouched', () => {
    for (const pkt of [
      ipv4(CLIENT4, '10.1.0.99', 6, l4(6, 1000, 80)),
      ipv4(CLIENT4, VIP4, 6, l4(6, 1000, 8080)), // VIP address, other port
      ipv4(CLIENT4, VIP4, 17, l4(17, 1000, 80)), // VIP address and port, other protocol
      ipv6(CLIENT6, 'fd00:1::99', 17, l4(17, 1000, 53)),
      Buffer.concat([eth(0x0806), Buffer.alloc(28)]), // ARP
    ]) {
      const r = run(pkt);
      expect(r.retval).toBe(XDP_PASS);
      expect(r.dataOut).toEqual(pkt);
    }
  });

  it('truncated headers never crash or mis-forward', () => {
    const g0 = global();
    const full4 = ipv4(CLIENT4, VIP4, 6, l4(6, 1000, 80));
    // IP header cut: not ours to judge → pass
    expect(run(full4.subarray(0, 14 + 10)).retval).toBe(XDP_PASS);
    expect(run(ipv6(CLIENT6, VIP6, 6, l4(6, 1, 80)).subarray(0, 14 + 30)).retval).toBe(XDP_PASS);
    // VIP traffic with a cut L4 header → drop, counted
    expect(run(full4.subarray(0, 14 + 20 + 2)).retval).toBe(XDP_DROP);
    expect(run(full4.subarray(0, 14 + 20 + 12)).retval).toBe(XDP_DROP);
    expect(run(ipv4(CLIENT4, VIP4, 17, l4(17, 1, 53)).subarray(0, 14 + 20 + 6)).retval).toBe(XDP_DROP);
    // ihl < 5 is malformed
    const bad = Buffer.from(full4);
    bad[14] = 0x44;
    expect(run(bad).retval).toBe(XDP_PASS);
    // just an Ethernet header
    expect(run(eth(0x0800)).retval).toBe(XDP_PASS);
    const g1 = global();
    expect(g1.pass_truncated_ip - g0.pass_truncated_ip).toBe(4n);
    expect(g1.drop_truncated_l4 - g0.drop_truncated_l4).toBe(3n);
  });

  it('IP options are skipped: same backend as without options, header kept', () => {
    const opts = Buffer.from([1, 1, 1, 0]); // NOP NOP NOP EOL
    for (let sport = 42000; sport < 42010; sport++) {
      const pkt = ipv4(CLIENT4, VIP4, 6, l4(6, sport, 80), { options: opts });
      const r = run(pkt);
      expect(r.retval).toBe(XDP_TX);
      expect(r.dataOut.subarray(0, 6).equals(BMACS[expected(0, CLIENT4, sport, 80, 6)]!)).toBe(true);
      expect(r.dataOut.subarray(12)).toEqual(pkt.subarray(12));
    }
  });

  it('fragments to a VIP address are dropped and counted; other fragments pass', () => {
    const g0 = global();
    expect(run(ipv4(CLIENT4, VIP4, 6, l4(6, 1, 80), { frag: 0x2000 })).retval).toBe(XDP_DROP); // MF
    expect(run(ipv4(CLIENT4, VIP4, 17, Buffer.alloc(16), { frag: 0x0010 })).retval).toBe(XDP_DROP); // offset
    expect(run(ipv6(CLIENT6, VIP6, 44, Buffer.alloc(24))).retval).toBe(XDP_DROP);
    expect(run(ipv4(CLIENT4, '10.9.9.9', 6, l4(6, 1, 80), { frag: 0x2000 })).retval).toBe(XDP_PASS);
    expect(global().drop_fragment - g0.drop_fragment).toBe(3n);
  });

  it('unknown protocols to a VIP address pass (the LB host answers ICMP etc.)', () => {
    const g0 = global();
    expect(run(ipv4(CLIENT4, VIP4, 47 /* GRE */, Buffer.alloc(20))).retval).toBe(XDP_PASS);
    expect(run(ipv4(CLIENT4, VIP4, 1 /* ICMP */, Buffer.alloc(20))).retval).toBe(XDP_PASS);
    expect(run(ipv6(CLIENT6, VIP6, 58, Buffer.alloc(20))).retval).toBe(XDP_PASS);
    expect(global().pass_other_proto - g0.pass_other_proto).toBe(3n);
  });

  it('a VIP with an empty ring drops (counted), never forwards to a stale backend', () => {
    const g0 = global();
    expect(run(ipv4(CLIENT4, VIP4, 6, l4(6, 5, 81))).retval).toBe(XDP_DROP);
    expect(global().drop_no_backend - g0.drop_no_backend).toBe(1n);
  });

  it('counts per VIP and per backend', () => {
    const v = dp.sumStats(0);
    expect(v.packets).toBeGreaterThan(0n);
    const perBackend = [0, 1, 2].map((i) => dp.sumStats(MAX_VIPS + i).packets);
    expect(perBackend.every((p) => p > 0n)).toBe(true);
  });
});
