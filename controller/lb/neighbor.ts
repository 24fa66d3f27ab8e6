// Where to send a backend's frames: the egress interface (route lookup), its MAC, and the next
// hop's MAC (neighbour table), asked of the kernel over one rtnetlink socket. Batched: one
// RTM_GETROUTE per distinct backend address (many per send), one RTM_GETLINK per distinct egress
// interface, one neighbour dump per round — no process per backend, so 10,000 backends cost
// milliseconds, not minutes. A backend given with its MAC skips the neighbour part entirely.
import { setImmediate as yieldNow } from 'node:timers/promises';
import { NetlinkSocket, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, parseAttrs, attr } from '../libbpf/netlink.ts';
import { errnoName } from '../libbpf/index.ts';
import { ValidationError, addrBytes, familyOf, formatAddr, formatMac } from './addr.ts';

export interface NextHop {
  dev: string;
  ifindex: number;
  srcMac: string;
  mac: string;
}

export interface HopRequest {
  address: string;
  /** given: no neighbour lookup */
  mac?: string;
}

const RTM_NEWLINK = 16, RTM_GETLINK = 18, RTM_GETROUTE = 26, RTM_NEWNEIGH = 28, RTM_GETNEIGH = 30;
const RTA_DST = 1, RTA_OIF = 4, RTA_GATEWAY = 5;
const IFLA_ADDRESS = 1, IFLA_IFNAME = 3;
const NDA_DST = 1, NDA_LLADDR = 2;
const NUD_INCOMPLETE = 0x01, NUD_FAILED = 0x20;
const NTF_USE = 0x01;
const AF_INET = 2, AF_INET6 = 10;
/** requests per send(): each answer is its own skb in the receive queue (~1 KiB truesize) */
const BATCH = 64;
/** neighbours solicited at once: the kernel queues one ARP/ND per entry */
const SOLICIT_BATCH = 256;

const af = (addr: string) => (familyOf(addr) === 6 ? AF_INET6 : AF_INET);
const raw = (addr: string) => addrBytes(addr).subarray(0, familyOf(addr) === 6 ? 16 : 4);

export interface ResolveOptions {
  /** how long to wait for ARP/ND answers of backends without a MAC */
  neighbourTimeoutMs?: number;
}

/**
 * Resolve every request; all-or-nothing: throws a ValidationError naming the first backend that
 * has no route or whose MAC cannot be learned. Results are in request order.
 */
export async function resolveNextHops(reqs: HopRequest[], opts: ResolveOptions = {}): Promise<NextHop[]> {
  if (reqs.length === 0) return [];
  using nl = new NetlinkSocket();
  // 1. routes, one per distinct address
  const addrs = [...new Set(reqs.map((r) => r.address))];
  const routes = new Map<string, { oif: number; gateway?: string }>();
  for (let i = 0; i < addrs.length; i += BATCH) {
    const chunk = addrs.slice(i, i + BATCH);
    const msgs = chunk.map((a) => {
      const rtm = Buffer.alloc(12);
      rtm[0] = af(a);
      rtm[1] = familyOf(a) === 6 ? 128 : 32; // rtm_dst_len
      return nl.message(RTM_GETROUTE, 0, Buffer.concat([rtm, attr(RTA_DST, raw(a))]));
    });
    const replies = await nl.exchange(msgs);
    chunk.forEach((a, j) => {
      const r = replies.get(msgs[j]!.seq)!;
      const m = r.messages[0];
      if (r.error || !m) throw new ValidationError(`no route to backend ${a}${r.error ? ` (${errnoName(r.error)})` : ''}: add a route or an address on the LB's interface`);
      const at = parseAttrs(m.data, 12);
      const oif = at.get(RTA_OIF)?.readUInt32LE(0);
      if (!oif) throw new ValidationError(`no route to backend ${a} (no output interface)`);
      const gw = at.get(RTA_GATEWAY);
      routes.set(a, { oif, ...(gw ? { gateway: formatAddr(padAddr(gw), gw.length === 16 ? 6 : 4) } : {}) });
    });
    await yieldNow(); // let the admin API answer reads between batches
  }
  // 2. egress interfaces, one per distinct ifindex
  const links = new Map<number, { name: string; mac: string }>();
  const oifs = [...new Set([...routes.values()].map((r) => r.oif))];
  for (let i = 0; i < oifs.length; i += BATCH) {
    const chunk = oifs.slice(i, i + BATCH);
    const msgs = chunk.map((ifindex) => {
      const ifi = Buffer.alloc(16);
      ifi.writeInt32LE(ifindex, 4);
      return nl.message(RTM_GETLINK, 0, ifi);
    });
    const replies = await nl.exchange(msgs);
    chunk.forEach((ifindex, j) => {
      const m = replies.get(msgs[j]!.seq)!.messages.find((x) => x.type === RTM_NEWLINK);
      if (!m) throw new ValidationError(`egress interface ${ifindex} vanished while resolving backends`);
      const at = parseAttrs(m.data, 16);
      const name = at.get(IFLA_IFNAME)?.toString('utf8').replace(/\0.*$/, '') ?? `if${ifindex}`;
      const mac = at.get(IFLA_ADDRESS);
      links.set(ifindex, { name, mac: mac && mac.length === 6 ? formatMac(mac) : '00:00:00:00:00:00' });
    });
  }
  // 3. neighbours, only for backends without a MAC: dump, solicit the missing ones, poll
  const hopOf = (a: string) => routes.get(a)!.gateway ?? a;
  const want = new Map<string, { hop: string; oif: number }>();
  for (const r of reqs) if (!r.mac) want.set(`${routes.get(r.address)!.oif} ${hopOf(r.address)}`, { hop: hopOf(r.address), oif: routes.get(r.address)!.oif });
  let neigh = want.size ? await dumpNeighbours(nl) : new Map<string, string>();
  const missing = () => [...want.entries()].filter(([k]) => !neigh.has(k));
  if (missing().length) {
    const deadline = Date.now() + (opts.neighbourTimeoutMs ?? 2000);
    for (let round = 0; missing().length && Date.now() < deadline; round++) {
      // NTF_USE asks the kernel to start ARP/ND for the entry (neigh_event_send) without a packet
      // to the backend; re-solicit every 500 ms (one ARP is easily lost on a busy segment)
      if (round % 10 === 0) {
        const m = missing();
        for (let i = 0; i < m.length; i += SOLICIT_BATCH) {
          const msgs = m.slice(i, i + SOLICIT_BATCH).map(([, { hop, oif }]) => {
            const nd = Buffer.alloc(12);
            nd[0] = af(hop);
            nd.writeInt32LE(oif, 4);
            nd[10] = NTF_USE;
            return nl.message(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_ACK, Buffer.concat([nd, attr(NDA_DST, raw(hop))]));
          });
          for (let j = 0; j < msgs.length; j += BATCH) await nl.exchange(msgs.slice(j, j + BATCH));
        }
      }
      await new Promise((res) => setTimeout(res, 50));
      neigh = await dumpNeighbours(nl);
    }
  }
  return reqs.map((r) => {
    const rt = routes.get(r.address)!;
    const link = links.get(rt.oif)!;
    const mac = r.mac ?? neigh.get(`${rt.oif} ${hopOf(r.address)}`);
    if (!mac) throw new ValidationError(`cannot resolve the MAC of backend ${r.address} on ${link.name} (no neighbour entry after ${opts.neighbourTimeoutMs ?? 2000} ms): is it up? or give "mac"`);
    return { dev: link.name, ifindex: rt.oif, srcMac: link.mac, mac };
  });
}

/** every usable neighbour entry, keyed "ifindex address" */
async function dumpNeighbours(nl: NetlinkSocket): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const msg = nl.message(RTM_GETNEIGH, NLM_F_DUMP, Buffer.alloc(12));
  const r = (await nl.exchange([msg])).get(msg.seq)!;
  if (r.error) throw new ValidationError(`neighbour dump failed: ${errnoName(r.error)}`);
  for (const m of r.messages) {
    if (m.type !== RTM_NEWNEIGH || m.data.length < 12) continue;
    const family = m.data[0];
    const ifindex = m.data.readInt32LE(4);
    const state = m.data.readUInt16LE(8);
    if (state & (NUD_INCOMPLETE | NUD_FAILED)) continue;
    const at = parseAttrs(m.data, 12);
    const dst = at.get(NDA_DST);
    const ll = at.get(NDA_LLADDR);
    if (!dst || !ll || ll.length !== 6) continue;
    out.set(`${ifindex} ${formatAddr(padAddr(dst), family === AF_INET6 ? 6 : 4)}`, formatMac(ll));
  }
  return out;
}

function padAddr(b: Buffer): Uint8Array {
  const out = new Uint8Array(16);
  out.set(b.subarray(0, 16));
  return out;
}

/** one backend (kept for callers that resolve a single address) */
export async function resolveNextHop(address: string, mac?: string): Promise<NextHop> {
  return (await resolveNextHops([{ address, ...(mac ? { mac } : {}) }]))[0]!;
}
