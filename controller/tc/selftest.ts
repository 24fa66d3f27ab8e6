// The shaper's BPF half checked without a device: the kernel runs tc_shape_egress on crafted
// frames (BPF_PROG_TEST_RUN) and the departure times it writes into skb->tstamp are read back.
// Works where fq is missing (it checks the arithmetic, not the enforcement); the tests and the
// scenario use it.
import ipaddr from 'ipaddr.js';
import { Btf, Kind, type BpfObject } from '../libbpf/index.ts';
import { tcShape, type TcShape } from '../../bpf/gen/tc_shape.ts';
import { objectPath } from '../../bpf/build.ts';
import { validateConfig } from './config.ts';
import { TcControl } from './shaper.ts';

/** Ethernet + IPv4 + UDP with `payload` bytes: 42 + payload bytes on the wire */
export function udpFrame(dst: string, dport: number, payload: number, src = '10.0.0.1', sport = 40000): Buffer {
  const b = Buffer.alloc(42 + payload);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(28 + payload, 16);
  b[22] = 64;
  b[23] = 17;
  Buffer.from(src.split('.').map(Number)).copy(b, 26);
  Buffer.from(dst.split('.').map(Number)).copy(b, 30);
  b.writeUInt16BE(sport, 34);
  b.writeUInt16BE(dport, 36);
  b.writeUInt16BE(8 + payload, 38);
  return b;
}

/**
 * Ethernet + IPv6 + `extHeaders` extension headers (a hop-by-hop options header, then destination
 * options ones; 8 bytes each) + UDP with `payload` bytes: 62 + 8·extHeaders + payload bytes
 */
export function udp6Frame(dst: string, dport: number, payload: number, src = 'fd00::1', sport = 40000, extHeaders = 0): Buffer {
  const ext = 8 * extHeaders;
  const b = Buffer.alloc(62 + ext + payload);
  b.writeUInt16BE(0x86dd, 12);
  b[14] = 0x60;
  b.writeUInt16BE(ext + 8 + payload, 18);
  b[20] = extHeaders ? 0 : 17;
  b[21] = 64;
  Buffer.from(ipaddr.parse(src).toByteArray()).copy(b, 22);
  Buffer.from(ipaddr.parse(dst).toByteArray()).copy(b, 38);
  for (let i = 0; i < extHeaders; i++) {
    const o = 54 + 8 * i;
    b[o] = i + 1 < extHeaders ? 60 : 17; // next header: destination options, the last one UDP
    b[o + 2] = 1; // length 0 (8 bytes): a PadN option filling the rest
    b[o + 3] = 4;
  }
  b.writeUInt16BE(sport, 54 + ext);
  b.writeUInt16BE(dport, 56 + ext);
  b.writeUInt16BE(8 + payload, 58 + ext);
  return b;
}

/** A loaded, unattached tc_shape object with its control plane, and a way to run one frame. */
export class EdtBench implements Disposable {
  readonly skel: TcShape;
  readonly obj: BpfObject;
  readonly control: TcControl;
  private ctxSize: number;
  private tstampOff: number;
  private wireLenOff: number;

  constructor() {
    const btf = Btf.vmlinux();
    if (!btf) throw new Error('no kernel BTF: cannot find struct __sk_buff');
    try {
      this.ctxSize = btf.type(btf.findByName('__sk_buff', Kind.STRUCT)).size;
      const l = btf.layout('__sk_buff');
      this.tstampOff = l.tstamp!.offset;
      this.wireLenOff = l.wire_len!.offset;
    } finally {
      btf.close();
    }
    this.skel = tcShape.open(objectPath('tc_shape'));
    this.obj = this.skel.obj;
    try {
      this.skel.load();
    } catch (e) {
      this.skel.close();
      throw e;
    }
    this.control = new TcControl(this.skel.maps, { classes: [], rules: [], gen: 0 });
  }

  /** run the egress program on a frame: its verdict and the departure time it wrote (0: none); `tstamp`: one the sender set (SO_TXTIME) */
  send(frame: Buffer, wireLen = 0, tstamp = 0n): { verdict: number; tstamp: bigint } {
    const ctx = Buffer.alloc(this.ctxSize);
    ctx.writeUInt32LE(wireLen, this.wireLenOff); // a GSO skb's bytes on the wire (0: use len)
    ctx.writeBigUInt64LE(tstamp, this.tstampOff);
    const r = this.skel.programs.tc_shape_egress.testRun({ data: frame, ctx });
    return { verdict: r.retval, tstamp: r.ctxOut!.readBigUInt64LE(this.tstampOff) };
  }

  close(): void {
    this.skel.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Three back-to-back 1042-byte frames in a 83.36 kbit/s class: the 2nd and 3rd must be scheduled
 * exactly 100 ms apart; after a live rate change to 10x, the next one 10 ms after.
 */
export function edtSelfTest(): { gapsNs: bigint[]; expectedNs: bigint[]; ok: boolean } {
  using b = new EdtBench();
  b.control.apply(validateConfig({ classes: [{ name: 'probe', rate: '83360bit', match: [{ dst: '10.0.0.2/32' }] }] }));
  const f = udpFrame('10.0.0.2', 9, 1000);
  b.send(f);
  const t1 = b.send(f).tstamp;
  const t2 = b.send(f).tstamp;
  b.control.setRate('probe', 833_600n);
  const t3 = b.send(f).tstamp;
  const gapsNs = [t2 - t1, t3 - t2];
  const expectedNs = [100_000_000n, 10_000_000n];
  return { gapsNs, expectedNs, ok: gapsNs.every((g, i) => g === expectedNs[i]) };
}
