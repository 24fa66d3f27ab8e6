// IP addresses, once for every control plane. Validity is Node's (net.isIP: strict dotted quad,
// full IPv6 syntax); bytes and the canonical text form (RFC 5952: lower case, longest zero run
// as "::") come from ipaddr.js. BPF maps hold addresses as 16 bytes in one of two layouts, both
// here: IPv4 in the first 4 bytes (the LB's keys) or IPv4-mapped ::ffff:a.b.c.d (one LPM trie for
// both families, the security egress rules).
import net from 'node:net';
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

/** an address: 4 bytes (IPv4) or 16 (IPv6), network order */
export interface Ip {
  family: Family;
  bytes: Uint8Array;
}

export function parseIp(s: unknown): Ip | null {
  if (typeof s !== 'string') return null;
  const family = net.isIP(s);
  if (family !== 4 && family !== 6) return null;
  return { family, bytes: Uint8Array.from(ipaddr.parse(s).toByteArray()) };
}

/** canonical text: dotted quad, or RFC 5952 IPv6 */
/** address and port as a URL authority writes them: an IPv6 address in brackets */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

export function formatIp(ip: Ip): string {
  if (ip.family === 4) return [...ip.bytes.subarray(0, 4)].join('.');
  return ipaddr.fromByteArray([...ip.bytes.subarray(0, 16)]).toString();
}

/** 16 bytes with an IPv4 address in the first 4 (rest zero) */
export function toLeading16(ip: Ip): Uint8Array {
  const out = new Uint8Array(16);
  out.set(ip.bytes);
  return out;
}

export function fromLeading16(b: Uint8Array, family: number): Ip {
  return family === 4 ? { family: 4, bytes: b.slice(0, 4) } : { family: 6, bytes: b.slice(0, 16) };
}

/** 16 bytes with an IPv4 address as ::ffff:a.b.c.d */
export function toMapped16(ip: Ip): Uint8Array {
  if (ip.family === 6) return ip.bytes.slice();
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(ip.bytes, 12);
  return out;
}

/** an IPv4-mapped address back to IPv4; any other as IPv6 */
export function fromMapped16(b: Uint8Array): Ip {
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return mapped ? { family: 4, bytes: b.slice(12, 16) } : { family: 6, bytes: b.slice(0, 16) };
}

/**
 * Why an address (or CIDR) as written is not a key a packet of the family it names can match, or
 * null. Node and ipaddr.js accept both of these and the bytes lose what the text said:
 * - a zone id (fe80::1%eth0): the 16 bytes have no interface, so the zone was silently dropped;
 * - IPv4 in IPv6 form: ::ffff:a.b.c.d (IPv4-mapped) is how an IPv6 socket names an IPv4 peer, and
 *   the packets are IPv4, so an IPv6 key never matches them; ::a.b.c.d (IPv4-compatible,
 *   deprecated by RFC 4291) is even parsed as ::ffff:a.b.c.d by ipaddr.js.
 * The message names the IPv4 form to write (with the prefix length less 96 for a CIDR).
 */
export function ipTextProblem(s: string): string | null {
  const [addr = '', len] = s.split('/');
  const zone = addr.indexOf('%');
  if (zone >= 0 && net.isIP(addr) === 6) return `"${s}" has a zone id (${addr.slice(zone)}): an address here is its 16 bytes, with no interface, so the zone would be dropped; write ${addr.slice(0, zone)}${len === undefined ? '' : `/${len}`} without it, or a global address`;
  const ip = parseIp(addr);
  if (!ip || ip.family !== 6) return null;
  const b = ip.bytes;
  if (!b.subarray(0, 10).every((x) => x === 0) || b[10] !== 0xff || b[11] !== 0xff) return null;
  const v4 = [...b.subarray(12, 16)].join('.');
  const bits = len === undefined ? 128 : Number(len);
  const as4 = len === undefined ? v4 : bits >= 96 && bits <= 128 ? `${v4}/${bits - 96}` : undefined;
  const kind = /ffff/i.test(addr) ? 'an IPv4-mapped IPv6 address (::ffff:a.b.c.d, how an IPv6 socket names an IPv4 peer)' : 'an IPv4-compatible IPv6 address (::a.b.c.d, deprecated by RFC 4291)';
  return `"${s}" is ${kind}: its traffic is IPv4 and never matches an IPv6 key; ${as4 ? `write ${as4}` : 'write the IPv4 prefix it means'}`;
}

/** "a.b.c.d[/n]" or "v6[/n]" (no length: the whole address); null when malformed */
export function parseCidr(s: unknown): { ip: Ip; bits: number } | null {
  if (typeof s !== 'string') return null;
  const [addr, len, ...rest] = s.split('/');
  const ip = rest.length ? null : parseIp(addr);
  if (!ip) return null;
  const max = ip.family === 4 ? 32 : 128;
  const bits = len === undefined ? max : /^\d+$/.test(len) ? Number(len) : NaN;
  return bits >= 0 && bits <= max ? { ip, bits } : null;
}
