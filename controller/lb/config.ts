// The LB's desired state as a file (YAML or JSON) and its validation. Validation is pure: it
// runs before anything touches a map, so bad input changes nothing.
import fs from 'node:fs';
import { type ConfigFile, fieldPath, parseJson, parseYamlFile } from '../../common/config-file.ts';
import { ValidationError, addrBytes, checkLinkLocal, familyOf, hostAddr, parseHostPort, parseMac, parsePort, parseVip, vipString, canonical, type VipSpec } from './addr.ts';
import { isPrime, nextPrime } from './maglev.ts';
import { xdp_lb_limits } from '../../bpf/gen/xdp_lb.enums.ts';
import { hostPort } from '../../common/ip.ts';

export interface BackendConfig {
  address: string;
  /** health-check port (and the port proxies use); default: the VIP's port */
  port?: number;
  weight?: number;
  /** skip neighbour resolution */
  mac?: string;
  /**
   * send this backend's frames into this interface's transmit (a backend_ports devmap entry, as
   * a NIC LB with a port per backend segment does) instead of XDP_TX / redirect to the next hop's
   * interface. An interface of the controller's network namespace; the frame keeps the next hop's MAC.
   */
  egress?: string;
}

export interface VipConfig {
  vip: string;
  backends: BackendConfig[];
  /** false: no TCP health checks (e.g. UDP services) */
  healthCheck?: boolean;
  /** this VIP's forwarding; default: the config's "forwarding" */
  forwarding?: Forwarding;
}

export type Forwarding = 'dsr' | 'ipip';

/** outer source addresses of IPIP (ipv4) and IP6IP6 (ipv6) packets: addresses of the LB */
export interface TunnelSource {
  ipv4?: string;
  ipv6?: string;
}

/** what VIP validation needs from the daemon's config */
export interface VipDefaults {
  forwarding: Forwarding;
  tunnelSource: TunnelSource;
}

export const DSR_DEFAULTS: VipDefaults = { forwarding: 'dsr', tunnelSource: {} };

export interface HealthConfig {
  intervalMs: number;
  timeoutMs: number;
  /** consecutive failures that take a backend out */
  fall: number;
  /** consecutive successes that put it back */
  rise: number;
}

export interface LbConfig {
  /** the interface the XDP program is attached to */
  interface: string;
  /** instance name: pins live in <pinRoot>/<instance>, the admin socket is named after it */
  instance?: string;
  pinRoot?: string;
  /** default forwarding of every VIP: L2 direct server return, or IPIP/IP6IP6 encapsulation */
  forwarding?: Forwarding;
  /** required when a VIP uses ipip: the outer source address per family */
  tunnelSource?: TunnelSource;
  ringSize?: number;
  /**
   * flows the conntrack LRU holds in all; its LRU lists are per CPU (each CPU evicts only from
   * its own conntrackEntries ÷ possible CPUs), so size it for the CPUs the traffic lands on
   */
  conntrackEntries?: number;
  /** entries of the backends array (every backend of every VIP takes one); a map size fixed at load */
  backendTableSize?: number;
  xdpMode?: 'auto' | 'native' | 'generic';
  healthCheck?: Partial<HealthConfig>;
  vips: VipConfig[];
  /** admin API on TCP as well as the unix socket (e.g. "127.0.0.1:9100" for /metrics) */
  listen?: string;
  /**
   * the rate of ICMP "fragmentation needed" / "packet too big" answers the LB sends to frames too
   * large for the backend's path (per CPU, token bucket; the kernel's icmp_msgs_per_sec/burst
   * defaults). Their destination is a frame's unchecked source: the limit keeps spoofed large
   * frames from turning the LB into a reflector. perSec 0: no limit.
   */
  icmpTooBig?: Partial<TooBigLimit>;
}

export interface TooBigLimit {
  perSec: number;
  burst: number;
}
export const DEFAULT_TOO_BIG: TooBigLimit = { perSec: 1000, burst: 50 };

export const DEFAULT_HEALTH: HealthConfig = { intervalMs: 1000, timeoutMs: 500, fall: 2, rise: 2 };
export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/ebpf-lab';
/** Katran's default reals table (LB_DEFAULT_BACKENDS in bpf/xdp_lb.h) */
export const DEFAULT_BACKEND_TABLE = xdp_lb_limits.LB_DEFAULT_BACKENDS;
/** backend ids index a per-CPU stats array too: keep it a size the kernel allocates without fuss */
export const MAX_BACKEND_TABLE = 1 << 20;
/**
 * Map sizes reach bpf_map__set_max_entries as a uint32, which wrapped a larger number (2**32+1024
 * became 1024, and the file then never matched the running size again). 2**26 entries of ~100
 * bytes (key, value, LRU node) are ~6.7 GB of kernel memory: far past what this LB is for.
 */
export const MAX_CONNTRACK = 1 << 26;
/** the longest delay setTimeout honours (~24.8 days) */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** a config's icmpTooBig over the defaults (the bounds Dataplane.open also enforces) */
function normTooBig(raw: unknown): TooBigLimit {
  if (raw === undefined) return DEFAULT_TOO_BIG;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ValidationError('"icmpTooBig" must be { perSec, burst }');
  noUnknownKeys(raw as Record<string, unknown>, Object.keys(DEFAULT_TOO_BIG), 'icmpTooBig');
  const t = { ...DEFAULT_TOO_BIG, ...(raw as Partial<TooBigLimit>) };
  if (!Number.isInteger(t.perSec) || t.perSec < 0 || t.perSec > 1e9) throw new ValidationError(`icmpTooBig.perSec ${JSON.stringify(t.perSec)} must be an integer 0-1000000000 (0: no limit)`);
  if (!Number.isInteger(t.burst) || t.burst < 1 || t.burst > 1e6) throw new ValidationError(`icmpTooBig.burst ${JSON.stringify(t.burst)} must be an integer 1-1000000`);
  return t;
}

/** a config's healthCheck (the XDP LB's and the socket LB's), over the defaults */
export function normHealthCheck(raw: unknown): HealthConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ValidationError('"healthCheck" must be { intervalMs, timeoutMs, fall, rise }');
  noUnknownKeys(raw as Record<string, unknown>, Object.keys(DEFAULT_HEALTH), 'healthCheck');
  const h = { ...DEFAULT_HEALTH, ...(raw as Partial<HealthConfig>) };
  for (const [k, v] of Object.entries(h)) if (!Number.isInteger(v) || v <= 0) throw new ValidationError(`healthCheck.${k} must be a positive integer`);
  // setTimeout takes a longer delay as 1 ms (with a warning): every backend probed every millisecond
  for (const k of ['intervalMs', 'timeoutMs'] as const) if (h[k] > MAX_TIMER_MS) throw new ValidationError(`healthCheck.${k} ${h[k]} must be at most ${MAX_TIMER_MS} (2**31-1 ms, the longest timer Node keeps)`);
  return h;
}

export interface NormBackend {
  address: string;
  port: number;
  weight: number;
  /**
   * the config gave no weight (1 was taken): such a file says nothing about the weight, so its
   * apply does not end a runtime drain (a weight it gives anew does, as `backend weight` does)
   */
  weightDefault?: true;
  mac?: string;
  egress?: string;
}

export interface NormVip extends VipSpec {
  id: string;
  healthCheck: boolean;
  forwarding: Forwarding;
  backends: NormBackend[];
}

export function backendKey(b: { address: string; port: number }): string {
  return hostPort(b.address, b.port);
}

/** f's ValidationError prefixed with where: a config file's error is then placed at its file:line:col */
function at<T>(where: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ValidationError) throw new ValidationError(`${where}: ${e.message}`, e.status, e.parts, e.fix);
    throw e;
  }
}

/** a misspelt key would otherwise be a setting silently not made */
function noUnknownKeys(o: object, allowed: string[], where: string): void {
  const k = Object.keys(o).find((x) => !allowed.includes(x));
  if (k !== undefined) throw new ValidationError(`${where}.${k}: unknown key (allowed: ${allowed.join(', ')})`);
}

/** what kind of address the XDP LB cannot use as a VIP or a backend is, or null */
function specialKind(addr: string): 'unspecified' | 'this-network' | 'broadcast' | 'multicast' | 'loopback' | null {
  const b = addrBytes(addr);
  if (familyOf(addr) === 4) {
    if (b[0] === 0) return b.subarray(0, 4).every((x) => x === 0) ? 'unspecified' : 'this-network';
    if (b.subarray(0, 4).every((x) => x === 255)) return 'broadcast';
    if (b[0]! >= 224 && b[0]! <= 239) return 'multicast';
    return b[0] === 127 ? 'loopback' : null;
  }
  if (b.every((x) => x === 0)) return 'unspecified';
  if (b[0] === 0xff) return 'multicast';
  return b.subarray(0, 15).every((x) => x === 0) && b[15] === 1 ? 'loopback' : null;
}

const KIND_TEXT = {
  unspecified: 'the unspecified address',
  'this-network': 'in 0.0.0.0/8 ("this network", a source address only)',
  broadcast: 'the limited broadcast address',
  multicast: 'a multicast address (224.0.0.0/4, ff00::/8)',
  loopback: 'a loopback address',
} as const;

/**
 * A VIP the XDP program can never see, or whose replies no client takes: no packet is sent to
 * 0.0.0.0, :: or 0.0.0.0/8; TCP never connects to broadcast or multicast, and a DSR backend's reply
 * would come from that address, which receivers drop as a martian; no host puts a loopback
 * destination on the wire. (Link-local ones are refused by checkLinkLocal, for both LBs.) The socket LB
 * does not use this: it rewrites connect() before routing, where a loopback VIP is a normal one.
 */
export function checkXdpVipAddr(address: string): void {
  const k = specialKind(address);
  if (!k) return;
  const why = k === 'loopback'
    ? 'no host sends a loopback destination onto the wire, so the XDP program never sees a packet for it (the socket LB, `pnpm lab svc`, balances loopback VIPs)'
    : k === 'broadcast' || k === 'multicast'
      ? 'TCP cannot connect to it, and a backend\'s reply would come from it, which receivers drop as a martian source'
      : 'no packet is sent to it';
  throw new ValidationError(`VIP address ${address} is ${KIND_TEXT[k]}: ${why}; give a unicast address of the LB that clients connect to`);
}

/**
 * A backend the XDP LB cannot send a frame to: it forwards to one host, by the neighbour entry
 * (or IPIP header) of this address. Loopback addresses are taken: with `mac` given the frame goes
 * to that MAC and the address only names the backend (the controller tests use 127.0.0.0/8 so).
 */
export function checkXdpBackendAddr(address: string): void {
  const k = specialKind(address);
  if (!k || k === 'loopback') return;
  throw new ValidationError(`backend ${address} is ${KIND_TEXT[k]}: a backend is one host the LB forwards frames to; give that host's unicast address`);
}

/**
 * A backend the socket LB would rewrite connect()/sendmsg() to and no socket can reach: the
 * unspecified address (Linux reads a connect to it as one to this host), 0.0.0.0/8, broadcast, and
 * multicast for TCP (no TCP connects to a group; a UDP service may send to one). Loopback is fine:
 * the rewrite happens on this host.
 */
export function checkSocketBackendAddr(address: string, protocol: string): void {
  const k = specialKind(address);
  if (!k || k === 'loopback' || (k === 'multicast' && protocol === 'udp')) return;
  throw new ValidationError(`backend ${address} is ${KIND_TEXT[k]}: no ${protocol.toUpperCase()} socket can reach a service there; give the unicast address of a host that serves it`);
}

/**
 * `lb`: 'socket' when the socket LB normalises (it rewrites connect() and takes any address a
 * socket can connect to without a scope: not a link-local one, checkLinkLocal)
 */
export function normBackend(vip: VipSpec, b: BackendConfig | string, where: string, lb: 'xdp' | 'socket' = 'xdp'): NormBackend {
  const raw: BackendConfig = typeof b === 'string' ? { address: b } : b;
  if (!raw || typeof raw !== 'object' || typeof raw.address !== 'string') throw new ValidationError(`${where}: a backend needs an "address"`);
  noUnknownKeys(raw, ['address', 'port', 'weight', 'mac', 'egress'], where);
  const hp = at(where, () => parseHostPort(raw.address));
  if (lb === 'xdp') at(where, () => checkXdpBackendAddr(hp.address));
  else at(where, () => checkSocketBackendAddr(hp.address, vip.protocol));
  at(where, () => checkLinkLocal(hp.address, 'backend'));
  const port = raw.port !== undefined ? parsePort(raw.port, `${where} port`) : hp.port ?? vip.port;
  // two ports for one backend: taking either silently sends health checks (and proxies) to the wrong one
  if (hp.port !== undefined && raw.port !== undefined && hp.port !== port) throw new ValidationError(`${where}: address "${raw.address}" has port ${hp.port} but "port" is ${port}; give the port once`);
  const weight = raw.weight ?? 1;
  if (!Number.isInteger(weight) || weight < 0 || weight > 1000) throw new ValidationError(`${where}: weight ${raw.weight} must be an integer 0-1000`);
  if (raw.mac !== undefined) at(where, () => parseMac(typeof raw.mac === 'string' ? raw.mac : JSON.stringify(raw.mac)));
  if (raw.egress !== undefined && (typeof raw.egress !== 'string' || !/^[^\s/]{1,15}$/.test(raw.egress))) {
    throw new ValidationError(`${where}: egress ${JSON.stringify(raw.egress)} must be an interface name (at most 15 characters, no blanks or slashes)`);
  }
  return { address: hp.address, port, weight, ...(raw.weight === undefined ? { weightDefault: true as const } : {}), ...(raw.mac ? { mac: raw.mac.toLowerCase() } : {}), ...(raw.egress ? { egress: raw.egress } : {}) };
}

/** a normalized backend as config again (a controller re-applies what it validated): a weight it was not given stays ungiven */
export function backendConfigOf({ weightDefault, weight, ...b }: NormBackend): BackendConfig {
  return weightDefault ? b : { ...b, weight };
}

function checkForwarding(f: unknown, where: string): Forwarding {
  if (f !== 'dsr' && f !== 'ipip') throw new ValidationError(`${where}: forwarding ${JSON.stringify(f)} must be "dsr" or "ipip"`);
  return f;
}

/**
 * IPIP encapsulates IPv4 in IPv4 and IPv6 in IPv6 (IP6IP6), from the LB's tunnel source of that
 * family: a mixed-family backend or a missing tunnel source is a config error, not a data-plane drop.
 */
/**
 * The XDP LB forwards a packet to a backend host unchanged: DSR rewrites the MACs, IPIP wraps it,
 * neither touches the port (the backend answers on the VIP's), and a backend's `port` is only where
 * health checks go. So one host listed on two ports was two backends to Maglev and got twice its
 * share, with each entry health-checked and drained on its own. Refused (409, as a duplicate).
 */
export function sameHost(vipId: string, b: { address: string; port: number }, other: { address: string; port: number }, where: string | null): ValidationError {
  const why = 'the XDP LB forwards packets to a host and never changes their port (the port is only where health checks go)';
  if (where === null) return new ValidationError(`VIP ${vipId} already has backend ${b.address}, as ${backendKey(other)}; ${why}, so ${backendKey(b)} would be the same backend again: change its weight for a larger share`, 409);
  return new ValidationError(`${where} (${vipId}): backend ${b.address} is listed twice (${backendKey(other)} and ${backendKey(b)}); ${why}, so these are one backend with twice the share: list it once, with a weight for a larger share`, 409);
}

export function checkIpipBackend(vip: { id: string; family: number }, b: { address: string }, where: string): void {
  const fam = familyOf(b.address);
  if (fam !== vip.family) {
    throw new ValidationError(`${where}: backend ${b.address} is IPv${fam} but ${vip.id} is IPv${vip.family}; forwarding "ipip" encapsulates IPv4 in IPv4 (IPIP) and IPv6 in IPv6 (IP6IP6) only — use an IPv${vip.family} backend address or forwarding "dsr"`);
  }
}

export function tunnelSourceFor(t: TunnelSource, family: number): string | undefined {
  return family === 6 ? t.ipv6 : t.ipv4;
}

export function normVip(v: VipConfig, where: string, allowEmpty = false, defaults: VipDefaults = DSR_DEFAULTS): NormVip {
  if (!v || typeof v !== 'object' || typeof v.vip !== 'string') throw new ValidationError(`${where}: needs "vip": "tcp://ADDR:PORT"`);
  noUnknownKeys(v, ['vip', 'backends', 'healthCheck', 'forwarding'], where);
  const spec = at(where, () => parseVip(v.vip));
  at(where, () => checkXdpVipAddr(spec.address));
  at(where, () => checkLinkLocal(spec.address, 'VIP'));
  if (!Array.isArray(v.backends)) throw new ValidationError(`${where} (${v.vip}): "backends" must be a list`);
  if (!allowEmpty && v.backends.length === 0) throw new ValidationError(`${where} (${v.vip}): zero backends; a VIP needs at least one`);
  const backends = v.backends.map((b, i) => normBackend(spec, b, `${where}.backends[${i}]`));
  const seen = new Set<string>();
  const hosts = new Map<string, NormBackend>();
  const id = vipString(spec);
  for (const b of backends) {
    const k = backendKey(b);
    if (seen.has(k)) throw new ValidationError(`${where} (${v.vip}): duplicate backend ${k}`, 409);
    seen.add(k);
    const other = hosts.get(b.address);
    if (other) throw sameHost(id, b, other, where);
    hosts.set(b.address, b);
  }
  if (backends.length && backends.every((b) => b.weight === 0)) throw new ValidationError(`${where} (${v.vip}): every backend has weight 0`);
  const forwarding = checkForwarding(v.forwarding ?? defaults.forwarding, `${where} (${v.vip})`);
  if (forwarding === 'ipip') {
    const key = spec.family === 6 ? 'ipv6' : 'ipv4';
    if (!tunnelSourceFor(defaults.tunnelSource, spec.family)) throw new ValidationError(`${where} (${v.vip}): forwarding "ipip" needs tunnelSource.${key}, the LB's IPv${spec.family} address that outer ${spec.family === 6 ? 'IP6IP6' : 'IPIP'} headers come from`);
    backends.forEach((b, i) => checkIpipBackend({ id, family: spec.family }, b, `${where}.backends[${i}]`));
  }
  // a boolean, not whatever YAML made of it: `healthCheck: no` (YAML 1.2: the string "no") read as
  // true, and a per-VIP `{ intervalMs: … }` as true with the global timing (review, session 56)
  if (v.healthCheck !== undefined && typeof v.healthCheck !== 'boolean') throw new ValidationError(`${where} (${v.vip}): healthCheck ${JSON.stringify(v.healthCheck)} must be true or false (timings are the top-level healthCheck's)`);
  return { ...spec, id, healthCheck: v.healthCheck ?? spec.protocol === 'tcp', forwarding, backends };
}

export interface NormConfig {
  interface: string;
  instance: string;
  pinRoot: string;
  forwarding: Forwarding;
  tunnelSource: TunnelSource;
  ringSize: number;
  conntrackEntries: number;
  backendTableSize: number;
  xdpMode: 'auto' | 'native' | 'generic';
  health: HealthConfig;
  vips: NormVip[];
  listen?: string;
  icmpTooBig: TooBigLimit;
}

/**
 * `listen`: ADDR:PORT, [ADDR6]:PORT or localhost:PORT. Checked with the config, before the data
 * plane is touched: the server parsed it only after XDP was attached, and a YAML number (9100) or
 * a port past 65535 failed there with Node's own messages. A name other than localhost is refused
 * as the listener itself would refuse it in Host (DNS rebinding).
 */
export function parseListen(v: unknown): { host: string; port: number } {
  const m = typeof v === 'string' ? /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(v) : null;
  const host = m ? (m[1] ?? m[2]!) : '';
  const ok = m && (m[1] !== undefined ? familyOrNull(host) === 6 : host === 'localhost' || familyOrNull(host) === 4);
  if (!ok) throw new ValidationError(`listen ${JSON.stringify(v)} must be "HOST:PORT" with HOST an IPv4 address, [IPv6] or localhost (e.g. "127.0.0.1:9100")`);
  return { host, port: parsePort(m![3]!, 'listen port') };
}

function familyOrNull(a: string): number | null {
  try {
    return familyOf(a);
  } catch {
    return null;
  }
}

/**
 * A VIP's backends each need a ring slot of their own: Maglev fills a ring of M slots with at most
 * M backends, and the rest got none, silently (ringSize 7, 10 backends: 3 never chosen). Every
 * listed backend counts (a drained or weight-0 one may serve again without a new check).
 * `fix` names the way out with N (the count) and P (the smallest prime that fits).
 */
export function tooManyForRing(where: string, n: number, ringSize: number, fix: string, status: 400 | 409 = 400): ValidationError {
  return new ValidationError(`${where}: ${n} backends but ringSize is ${ringSize}: each backend needs a ring slot of its own; ${fix.replace('N', String(n)).replace('P', String(nextPrime(n)))}`, status);
}

export function validateConfig(c: LbConfig): NormConfig {
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw new ValidationError('config must be an object');
  // every fault is named at once (a VIP by its first): a user fixing a file learns them in one go
  const problems: ValidationError[] = [];
  const check = ValidationError.collector(problems);
  const keys = ['interface', 'instance', 'pinRoot', 'forwarding', 'tunnelSource', 'ringSize', 'conntrackEntries', 'backendTableSize', 'xdpMode', 'healthCheck', 'vips', 'listen', 'icmpTooBig'];
  for (const k of Object.keys(c)) if (!keys.includes(k)) problems.push(new ValidationError(`config.${k}: unknown key (allowed: ${keys.join(', ')})`));
  let health = DEFAULT_HEALTH;
  if (c.healthCheck !== undefined) {
    health = check(() => normHealthCheck(c.healthCheck), DEFAULT_HEALTH);
  }
  if (typeof c.interface !== 'string' || !/^[\w.-]{1,15}$/.test(c.interface)) problems.push(new ValidationError(`"interface" must be an interface name, got ${JSON.stringify(c.interface)}`));
  const instance = c.instance ?? 'default';
  if (!/^[\w-]{1,40}$/.test(instance)) problems.push(new ValidationError(`malformed instance name "${instance}"`));
  // the other control planes pin beside the LB's instances under the default root: one named like
  // theirs would share (and their stop remove) its pins
  else if (instance === 'security' || /^(svc|tc)-/.test(instance)) problems.push(new ValidationError(`instance name "${instance}" is taken: "security", "svc-*" and "tc-*" under ${DEFAULT_PIN_ROOT} are the security, socket LB and tc controllers' pins`, 400, undefined, 'pick another instance name'));
  const ringSize = c.ringSize ?? xdp_lb_limits.LB_DEFAULT_RING;
  if (!isPrime(ringSize) || ringSize < 7 || ringSize > 1_000_003) problems.push(new ValidationError(`ringSize ${ringSize} must be a prime between 7 and 1000003`));
  const forwarding = check(() => checkForwarding(c.forwarding ?? 'dsr', 'config'), 'dsr' as Forwarding);
  const tunnelSource = check(() => normTunnelSource(c.tunnelSource), {});
  const vips: NormVip[] = [];
  if (!Array.isArray(c.vips)) problems.push(new ValidationError('"vips" must be a list'));
  else {
    const ringOk = isPrime(ringSize) && ringSize >= 7 && ringSize <= 1_000_003;
    c.vips.forEach((v, i) => {
      const n = check(() => normVip(v, `vips[${i}]`, false, { forwarding, tunnelSource }), null);
      if (!n) return;
      vips.push(n);
      if (ringOk && n.backends.length > ringSize) problems.push(tooManyForRing(`vips[${i}] (${n.id})`, n.backends.length, ringSize, 'raise ringSize to a prime ≥ N (e.g. P) or split the VIP'));
    });
  }
  const ids = new Set<string>();
  for (const v of vips) {
    if (ids.has(v.id)) problems.push(new ValidationError(`duplicate VIP ${v.id}`, 409));
    ids.add(v.id);
  }
  const ct = c.conntrackEntries ?? xdp_lb_limits.LB_CT_ENTRIES;
  if (!Number.isInteger(ct) || ct < 1024 || ct > MAX_CONNTRACK) problems.push(new ValidationError(`conntrackEntries ${JSON.stringify(c.conntrackEntries)} must be an integer 1024-${MAX_CONNTRACK}`));
  const bt = c.backendTableSize ?? DEFAULT_BACKEND_TABLE;
  if (!Number.isInteger(bt) || bt < 16 || bt > MAX_BACKEND_TABLE) problems.push(new ValidationError(`backendTableSize ${JSON.stringify(c.backendTableSize)} must be an integer 16-${MAX_BACKEND_TABLE}`));
  else {
    const total = vips.reduce((n, v) => n + v.backends.length, 0);
    if (total > bt) problems.push(new ValidationError(`backend table full: the config has ${total} backends but backendTableSize is ${bt}; raise backendTableSize`, 409));
  }
  if (c.listen !== undefined) check(() => parseListen(c.listen), null);
  const icmpTooBig = check(() => normTooBig(c.icmpTooBig), DEFAULT_TOO_BIG);
  const xdpMode = c.xdpMode ?? 'auto';
  if (!['auto', 'native', 'generic'].includes(xdpMode)) problems.push(new ValidationError(`xdpMode "${xdpMode}" must be auto, native or generic`));
  const err = ValidationError.of(problems);
  if (err) throw err;
  return { interface: c.interface, instance, pinRoot: c.pinRoot ?? DEFAULT_PIN_ROOT, forwarding, tunnelSource, ringSize, conntrackEntries: ct, backendTableSize: bt, xdpMode, health, vips, listen: c.listen, icmpTooBig };
}

/**
 * Settings the daemon takes when it starts and cannot change while it runs: the interface the XDP
 * link is on, pin and socket names, map sizes (fixed when the maps are created), the ring size
 * (the model of a restart is rebuilt at the start config's), the attach mode, health-check timing,
 * tunnel sources, the TCP listener and the too-big answer rate (constants of the loaded program).
 * `forwarding` is not one: it is each VIP's default, and apply
 * switches VIPs live.
 */
export type StartSettings = Pick<NormConfig, 'interface' | 'instance' | 'pinRoot' | 'ringSize' | 'conntrackEntries' | 'backendTableSize' | 'xdpMode' | 'health' | 'tunnelSource' | 'listen' | 'icmpTooBig'>;

export interface SettingDiff {
  field: string;
  running: string;
  file: string;
}

/** each start setting where `want` differs from `running`, by its config path (healthCheck.fall, tunnelSource.ipv4) */
export function startSettingsDiff(running: StartSettings, want: StartSettings): SettingDiff[] {
  const show = (v: unknown) => (v === undefined ? 'unset' : typeof v === 'string' ? JSON.stringify(v) : String(v));
  const out: SettingDiff[] = [];
  const cmp = (field: string, r: unknown, w: unknown) => {
    if (r !== w) out.push({ field, running: show(r), file: show(w) });
  };
  for (const k of ['interface', 'instance', 'pinRoot', 'ringSize', 'conntrackEntries', 'backendTableSize', 'xdpMode'] as const) cmp(k, running[k], want[k]);
  for (const k of Object.keys(DEFAULT_HEALTH) as (keyof HealthConfig)[]) cmp(`healthCheck.${k}`, running.health[k], want.health[k]);
  for (const k of ['ipv4', 'ipv6'] as const) cmp(`tunnelSource.${k}`, running.tunnelSource[k], want.tunnelSource[k]);
  cmp('listen', running.listen, want.listen);
  for (const k of Object.keys(DEFAULT_TOO_BIG) as (keyof TooBigLimit)[]) cmp(`icmpTooBig.${k}`, running.icmpTooBig[k], want.icmpTooBig[k]);
  return out;
}

function normTunnelSource(t: unknown): TunnelSource {
  if (t === undefined) return {};
  if (!t || typeof t !== 'object' || Array.isArray(t)) throw new ValidationError('"tunnelSource" must be { ipv4: ADDR, ipv6: ADDR6 }');
  const out: TunnelSource = {};
  for (const [k, v] of Object.entries(t)) {
    if (k !== 'ipv4' && k !== 'ipv6') throw new ValidationError(`tunnelSource.${k}: unknown key (want ipv4 / ipv6)`);
    if (typeof v !== 'string') throw new ValidationError(`tunnelSource.${k} must be an address string`);
    const fam = familyOf(at(`tunnelSource.${k}`, () => hostAddr(v)));
    if (fam !== (k === 'ipv6' ? 6 : 4)) throw new ValidationError(`tunnelSource.${k}: "${v}" is an IPv${fam} address`);
    if (addrBytes(v).every((x) => x === 0)) throw new ValidationError(`tunnelSource.${k}: "${v}" is unspecified; give an address of the LB`);
    at(`tunnelSource.${k}`, () => checkLinkLocal(canonical(v), 'tunnel source'));
    out[k] = canonical(v);
  }
  return out;
}

/** The config in a file, not yet validated (validateConfigFile also places errors in the file). */
export function loadConfigFile(file: string): LbConfig {
  return readConfigFile(file).config;
}

function readConfigFile(file: string): { config: LbConfig; source: () => ConfigFile } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ValidationError(`${file}: ${readProblem(e)}`);
  }
  const parsed = () => parseYamlFile(text, file, (m) => new ValidationError(m)).source;
  if (file.endsWith('.json')) {
    return { config: parseJson<LbConfig>(text, file, (m) => new ValidationError(m)), source: parsed };
  }
  const source = parsed();
  return { config: source.value as LbConfig, source: () => source };
}

/**
 * Read and validate a config file; a validation error names file:line:col of the field it is
 * about (every message starts with that field's path, e.g. "vips[0].backends[1]: …").
 * `adjust` changes the config before validation (the daemon's apply fixes the backend table).
 */
export function validateConfigFile(file: string, adjust: (c: LbConfig) => LbConfig = (c) => c): { config: LbConfig; norm: NormConfig } {
  const { config, source } = readConfigFile(file);
  try {
    return { config, norm: validateConfig(adjust(config)) };
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    const placed = (x: ValidationError) => {
      const field = /^"?([A-Za-z]\w*(?:\[\d+\]|\.\w+)*)/.exec(x.message)?.[1];
      // "config.k" (an unknown top-level key) is at k
      const path = field ? fieldPath(field.replace(/^config\./, '')) : [];
      const known = path.length > 0 && typeof config === 'object' && config !== null && String(path[0]) in config;
      return new ValidationError(`${known ? source().where(path) : file}: ${x.message}`, x.status);
    };
    throw e.parts.length ? ValidationError.of(e.parts.map(placed))! : placed(e);
  }
}

export { canonical, familyOf };

/** why a config file could not be read, in words ("EISDIR: illegal operation on a directory, read" was the raw message) */
function readProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory, not a config file' : code === 'EACCES' ? 'not readable (permission denied)' : (e as Error).message;
}
