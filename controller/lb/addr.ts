// Address parsing shared by the config, the API and the data plane encoding. The data plane keys
// on raw header bytes, so addresses become 16 network-order bytes (IPv4 in the first 4).
import net from 'node:net';

export type Family = 4 | 6;
export type Protocol = 'tcp' | 'udp';
export const PROTO_NUM: Record<Protocol, number> = { tcp: 6, udp: 17 };

export class ValidationError extends Error {
  constructor(
    message: string,
    /** HTTP status the admin API answers with */
    readonly status: 400 | 404 | 409 = 400,
  ) {
    super(message);
    this.name = 'ValidationError';
  }
}

export function familyOf(addr: string): Family {
  const f = net.isIP(addr);
  if (f !== 4 && f !== 6) throw new ValidationError(`malformed IP address "${addr}"`);
  return f;
}

/** canonical text form (so "fd00::0001" and "fd00::1" are the same backend) */
export function canonical(addr: string): string {
  return formatAddr(addrBytes(addr), familyOf(addr));
}

export function addrBytes(addr: string): Uint8Array {
  const fam = familyOf(addr);
  const out = new Uint8Array(16);
  if (fam === 4) {
    addr.split('.').forEach((o, i) => (out[i] = Number(o)));
    return out;
  }
  // expand "::" and an embedded IPv4 tail, then write 8 groups
  let s = addr.toLowerCase();
  const v4 = s.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    s = s.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

export function formatAddr(b: Uint8Array, family: number): string {
  if (family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  // longest run of zero groups → "::"
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

export function parsePort(p: string | number, what = 'port'): number {
  const n = typeof p === 'number' ? p : /^\d+$/.test(p) ? Number(p) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new ValidationError(`malformed ${what} "${p}": want 1-65535`);
  return n;
}

export interface VipSpec {
  protocol: Protocol;
  address: string;
  port: number;
  family: Family;
}

/** "tcp://10.0.100.1:80", "udp://[fd00::100]:53" */
export function parseVip(s: string): VipSpec {
  const m = typeof s === 'string' ? s.match(/^(tcp|udp):\/\/(?:\[([^\]]+)\]|([^:/\]]+)):(\d+)$/) : null;
  if (!m) throw new ValidationError(`malformed VIP "${s}": want tcp://ADDR:PORT or udp://[ADDR6]:PORT`);
  const address = canonical(m[2] ?? m[3]!);
  return { protocol: m[1] as Protocol, address, port: parsePort(m[4]!, 'VIP port'), family: familyOf(address) };
}

export function vipString(v: { protocol: Protocol; address: string; port: number }): string {
  return `${v.protocol}://${v.address.includes(':') ? `[${v.address}]` : v.address}:${v.port}`;
}

/** "10.0.0.11", "10.0.0.11:8080", "[fd00::11]:80", "fd00::11" */
export function parseHostPort(s: string, defaultPort?: number): { address: string; port: number | undefined } {
  if (typeof s !== 'string' || !s) throw new ValidationError(`malformed backend address "${s}"`);
  let m = s.match(/^\[([^\]]+)\](?::(\d+))?$/);
  if (m) return { address: canonical(m[1]!), port: m[2] ? parsePort(m[2]) : defaultPort };
  m = s.match(/^([\d.]+):(\d+)$/);
  if (m) return { address: canonical(m[1]!), port: parsePort(m[2]!) };
  return { address: canonical(s), port: defaultPort };
}

export function parseMac(s: string): Uint8Array {
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(s)) throw new ValidationError(`malformed MAC "${s}"`);
  return Uint8Array.from(s.split(':').map((h) => parseInt(h, 16)));
}

export function formatMac(b: Uint8Array): string {
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export function htons(n: number): number {
  return ((n & 0xff) << 8) | ((n >> 8) & 0xff);
}
