// A netlink socket (AF_NETLINK, SOCK_RAW) for callers that talk to the kernel in netlink messages
// (rtnetlink: routes, links, neighbours). Node has no AF_NETLINK sockets, so the syscalls go
// through koffi here; the message formats belong to the caller. Requests are batched: many
// messages in one send(), the kernel answers each into the receive queue before send() returns
// (dumps continue on each recv()), so reading never waits on the network.
import { C, errno } from './ffi.ts';
import { BpfError, errnoName } from './errors.ts';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const EINTR = 4;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_CREATE = 0x400;

export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  /** the payload after the 16-byte header */
  data: Buffer;
}

/** One answer per request: its messages (several for a dump), or the kernel's error (negative errno). */
export interface NlReply {
  seq: number;
  messages: NlMessage[];
  error: number;
}

export class NetlinkSocket implements Disposable {
  fd: number;
  private seq = 1;
  private buf = Buffer.alloc(1 << 16);

  constructor(protocol = 0 /* NETLINK_ROUTE */) {
    this.fd = C.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (this.fd < 0) throw new BpfError(`socket(AF_NETLINK): ${errnoName(errno())}`, errno());
  }

  /** header + payload, padded to 4 bytes; seq assigned here */
  message(type: number, flags: number, payload: Buffer): { seq: number; bytes: Buffer } {
    const seq = this.seq++ >>> 0;
    const len = 16 + payload.length;
    const b = Buffer.alloc((len + 3) & ~3);
    b.writeUInt32LE(len, 0);
    b.writeUInt16LE(type, 4);
    b.writeUInt16LE(flags | NLM_F_REQUEST, 6);
    b.writeUInt32LE(seq, 8);
    payload.copy(b, 16);
    return { seq, bytes: b };
  }

  /**
   * Send the messages in one write and collect the answer to each. A request without NLM_F_ACK
   * that succeeds with no reply message would never finish, so callers ask for an ACK or a reply.
   */
  async exchange(msgs: { seq: number; bytes: Buffer }[]): Promise<Map<number, NlReply>> {
    const out = new Map<number, NlReply>();
    if (msgs.length === 0) return out;
    for (const m of msgs) out.set(m.seq, { seq: m.seq, messages: [], error: 0 });
    const pending = new Set(msgs.map((m) => m.seq));
    const all = Buffer.concat(msgs.map((m) => m.bytes));
    const n = C.send(this.fd, all, all.length, 0);
    if (n < 0) throw new BpfError(`netlink send: ${errnoName(errno())}`, errno());
    let idle = 0;
    while (pending.size) {
      const r = C.recv(this.fd, this.buf, this.buf.length, MSG_DONTWAIT);
      if (r < 0) {
        const e = errno();
        if (e === EINTR) continue;
        if (e !== EAGAIN) throw new BpfError(`netlink recv: ${errnoName(e)}`, e, e === 105 ? 'receive queue overflow (ENOBUFS): send fewer requests per batch' : undefined);
        // answers are normally queued before send() returns; allow the kernel a moment otherwise
        if (++idle > 200) throw new BpfError(`netlink: no answer to ${pending.size} request(s) after 2 s`, EAGAIN);
        await new Promise((res) => setTimeout(res, 10));
        continue;
      }
      idle = 0;
      let off = 0;
      while (off + 16 <= r) {
        const len = this.buf.readUInt32LE(off);
        if (len < 16 || off + len > r) break;
        const type = this.buf.readUInt16LE(off + 4);
        const flags = this.buf.readUInt16LE(off + 6);
        const seq = this.buf.readUInt32LE(off + 8);
        const reply = out.get(seq);
        if (reply && pending.has(seq)) {
          if (type === NLMSG_ERROR) {
            reply.error = this.buf.readInt32LE(off + 16);
            pending.delete(seq);
          } else if (type === NLMSG_DONE) {
            pending.delete(seq);
          } else {
            reply.messages.push({ type, flags, seq, data: Buffer.from(this.buf.subarray(off + 16, off + len)) });
            if (!(flags & NLM_F_MULTI)) pending.delete(seq);
          }
        }
        off += (len + 3) & ~3;
      }
    }
    return out;
  }

  close(): void {
    // once only: the number may be another file's by a second call
    if (this.fd >= 0) C.close(this.fd);
    this.fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** netlink attributes (struct nlattr: u16 len, u16 type, value, padded to 4) */
export function parseAttrs(b: Buffer, off = 0): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  while (off + 4 <= b.length) {
    const len = b.readUInt16LE(off);
    const type = b.readUInt16LE(off + 2) & 0x3fff; // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
    if (len < 4 || off + len > b.length) break;
    if (!m.has(type)) m.set(type, b.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
  return m;
}

export function attr(type: number, value: Uint8Array): Buffer {
  const len = 4 + value.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  Buffer.from(value).copy(b, 4);
  return b;
}
