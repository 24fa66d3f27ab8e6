// Address parsing shared by the config, the API and the data plane encoding. The data plane keys
// on raw header bytes, so addresses become 16 network-order bytes (IPv4 in the first 4).
import net from 'node:net';
import { formatIp, fromLeading16, hostPort, ipTextProblem, parseIp, toLeading16, type Family, type Ip } from '../../common/ip.ts';

export type { Family };
export type Protocol = 'tcp' | 'udp';
export const PROTO_NUM: Record<Protocol, number> = { tcp: 6, udp: 17 };

export class ValidationError extends Error {
  constructor(
    message: string,
    /** HTTP status the admin API answers with */
    readonly status: 400 | 404 | 409 = 400,
    /** the separate problems this one reports together (a config with several faults) */
    readonly parts: ValidationError[] = [],
    /** what the user should do, where the generic fix for the status would mislead (the CLI prints it) */
    readonly fix?: string,
  ) {
    super(message);
    this.name = 'ValidationError';
  }

  /** `check(f, fallback)`: f's result, or, where f throws a ValidationError, that error added to `problems` and `fallback` */
  static collector(problems: ValidationError[]): <T>(f: () => T, fallback: T) => T {
    return (f, fallback) => {
      try {
        return f();
      } catch (e) {
        if (!(e instanceof ValidationError)) throw e;
        problems.push(e);
        return fallback;
      }
    };
  }

  /** one error for all `problems` (one line, each named; 409 only when every one is a conflict), or none */
  static of(problems: ValidationError[]): ValidationError | null {
    if (problems.length <= 1) return problems[0] ?? null;
    return new ValidationError(problems.map((p) => p.message).join('; '), problems.every((p) => p.status === 409) ? 409 : 400, problems);
  }
}

export function familyOf(addr: string): Family {
  return ip(addr).family;
}

function ip(addr: string): Ip {
  const p = parseIp(addr);
  if (!p) throw new ValidationError(`malformed IP address "${addr}"`);
  return p;
}

/** canonical text form (so "fd00::0001" and "fd00::1" are the same backend) */
export function canonical(addr: string): string {
  return formatIp(ip(addr));
}

/**
 * canonical(), for a VIP's or a backend's host: a zone id (fe80::1%eth0) was dropped silently,
 * and ::ffff:a.b.c.d (or ::a.b.c.d) became an IPv6 VIP or backend that no IPv4 packet or socket
 * ever matches (the socket LB looks ::ffff: destinations up under the IPv4 service): both are
 * refused, naming what to write.
 */
export function hostAddr(addr: string): string {
  const problem = typeof addr === 'string' ? ipTextProblem(addr) : null;
  // a zone on a link-local address: without it the address is refused too (checkLinkLocal), so
  // "write it without the zone" would only lead to the next refusal
  const zone = problem && addr.indexOf('%');
  if (problem && zone && zone > 0 && isLinkLocal(addr.slice(0, zone))) throw new ValidationError(`"${addr}" has a zone id (${addr.slice(zone)}), which an address here cannot hold, and without it ${canonical(addr.slice(0, zone))} is ${LINK_LOCAL}, reachable only through one interface; ${LINK_LOCAL_FIX}`);
  if (problem) throw new ValidationError(problem);
  return canonical(addr);
}

const LINK_LOCAL = 'an IPv6 link-local address (fe80::/10)';
const LINK_LOCAL_FIX = 'use a global or ULA (fd00::/8) address';

/** fe80::/10: valid on every link at once, so an address alone never says which */
export function isLinkLocal(addr: string): boolean {
  const ip = parseIp(addr);
  return !!ip && ip.family === 6 && ip.bytes[0] === 0xfe && (ip.bytes[1]! & 0xc0) === 0x80;
}

/**
 * An IPv6 link-local VIP, backend or tunnel source, refused with the fix (one line). Such an address
 * is on every link at once and means something only with an interface, which the 16 bytes a map
 * holds cannot name (and zone ids are refused): a socket connect() to a backend fe80::x without a
 * scope id fails with EINVAL (the socket LB's rewrite, the health checks), the route lookup of the
 * XDP LB's next hop picks one link of many, and replies from a link-local VIP or outer packets from a
 * link-local tunnel source are never routed off the link they started on.
 */
export function checkLinkLocal(address: string, what: 'VIP' | 'backend' | 'tunnel source'): void {
  if (!isLinkLocal(address)) return;
  const why = what === 'backend'
    ? 'it is reachable only through one interface, which an address here cannot name (zone ids are refused)'
    : what === 'VIP'
      ? 'a client reaches it only with a zone id naming its own interface, and replies from it are never routed off that link'
      : 'outer packets from it are never routed off the LB\'s link';
  throw new ValidationError(`${what === 'VIP' ? 'VIP address' : what} ${address} is ${LINK_LOCAL}: ${why}; ${LINK_LOCAL_FIX}`);
}

/**
 * canonical(), for naming an entry a running instance already holds (remove, drain, weight, list):
 * an instance started by an older build may hold a VIP or backend that hostAddr refuses now
 * (::ffff:a.b.c.d, a link-local or multicast one), and a user must still be able to name it to take
 * it out. Only malformed text is refused. A zone id is dropped, as those builds dropped it when
 * they stored the address (fe80::1%eth0 is held as fe80::1). Never for adding: an address that
 * goes into a map is checked by hostAddr and the config's rules.
 */
export function heldAddr(addr: string): string {
  const zone = typeof addr === 'string' ? addr.indexOf('%') : -1;
  return canonical(zone >= 0 && net.isIP(addr) === 6 ? addr.slice(0, zone) : addr);
}

/** 16 network-order bytes, IPv4 in the first 4: the data plane's layout */
export function addrBytes(addr: string): Uint8Array {
  return toLeading16(ip(addr));
}

export function formatAddr(b: Uint8Array, family: number): string {
  return formatIp(fromLeading16(b, family));
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

/**
 * "tcp://10.0.100.1:80", "udp://[fd00::100]:53". `host` reads the address: hostAddr for a VIP to
 * add, heldAddr to name one an instance holds.
 */
export function parseVip(s: string, host: (a: string) => string = hostAddr): VipSpec {
  const m = typeof s === 'string' ? s.match(/^(tcp|udp):\/\/(?:\[([^\]]+)\]|([^:/\]]+)):(\d+)$/) : null;
  if (!m) throw new ValidationError(`malformed VIP "${s}": want tcp://ADDR:PORT or udp://[ADDR6]:PORT`);
  const address = host(m[2] ?? m[3]!);
  return { protocol: m[1] as Protocol, address, port: parsePort(m[4]!, 'VIP port'), family: familyOf(address) };
}

export function vipString(v: { protocol: Protocol; address: string; port: number }): string {
  return `${v.protocol}://${hostPort(v.address, v.port)}`;
}

/** "10.0.0.11", "10.0.0.11:8080", "[fd00::11]:80", "fd00::11"; `host` as in parseVip */
export function parseHostPort(s: string, defaultPort?: number, host: (a: string) => string = hostAddr): { address: string; port: number | undefined } {
  if (typeof s !== 'string' || !s) throw new ValidationError(`malformed backend address "${s}"`);
  let m = s.match(/^\[([^\]]+)\](?::(\d+))?$/);
  if (m) return { address: host(m[1]!), port: m[2] ? parsePort(m[2]) : defaultPort };
  m = s.match(/^([\d.]+):(\d+)$/);
  if (m) return { address: host(m[1]!), port: parsePort(m[2]!) };
  // fd00::1:80 is the address fd00::1:80, and also fd00::1 port 80 written without brackets: it
  // was taken as the address, so a backend meant on port 80 was another host on the default port
  m = s.match(/^(.+):(\d{1,5})$/);
  if (m && s.includes('::') && net.isIPv6(m[1]!) && Number(m[2]) >= 1 && Number(m[2]) <= 65535) {
    throw new ValidationError(`"${s}" is ambiguous: write [${s}] for that IPv6 address, or [${m[1]}]:${m[2]} for ${m[1]} port ${m[2]}`);
  }
  return { address: host(s), port: defaultPort };
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
