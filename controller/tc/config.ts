// The shaping/filter config and its validation. Everything a change needs is checked here, before
// any map is touched: a bad config is refused as a whole with every problem named (path: what is
// wrong), so `pnpm lab tc …` never leaves half a config in the kernel. Pure except for resolving
// cgroup paths to ids (a stat), which the caller passes in.
import fs from 'node:fs';
import path from 'node:path';
import { cgroupId as dirCgroupId } from '../../common/cgroup.ts';
import { parseJson, parseYamlFile } from '../../common/config-file.ts';
import { LabError } from '../../common/errors.ts';
import { UsageError } from '../../common/args.ts';
import { ipTextProblem, parseCidr as parseIpCidr, parseIp, toLeading16, type Family } from '../../common/ip.ts';
import { tc_shape_dir, tc_shape_limits, tc_shape_rule_action } from '../../bpf/gen/tc_shape.enums.ts';

// limits from the enums in bpf/tc_shape.h (read from the object's BTF into bpf/gen/tc_shape.enums.ts)
export const MAX_CLASSES = tc_shape_limits.TC_MAX_CLASSES - 1; // ids 1..255: 0 is "not shaped"
export const MAX_RULES = tc_shape_limits.TC_MAX_RULES;
export const MAX_MATCHES = tc_shape_limits.TC_MAX_MATCHES; // per classification map
export const DEFAULT_HORIZON_NS = 2_000_000_000n; // Cilium's bandwidth manager drops beyond 2 s
const MIN_HORIZON_NS = 1_000_000n;
const MAX_HORIZON_NS = 10_000_000_000n;

/** one maximum-size TSO/GSO packet on the wire: 64 KiB of TCP as 45 segments of 1448 bytes + 66 bytes of headers each */
export const MAX_GSO_WIRE_BYTES = 45n * (1448n + 66n);
/**
 * `horizon: auto` — the horizon as a latency budget: the wire time of one maximum GSO packet at
 * the class's rate +10% (10 Mbit/s: 60 ms), but at least AUTO_HORIZON_FLOOR_NS, within 1 ms-10 s.
 * The program charges a GSO packet as one slot, so a shorter budget would drop a lone 64 KiB
 * packet on an idle class. A drop at the tc hook is local: TCP gets NET_XMIT_DROP, keeps the
 * segment and enters CWR (no retransmission), so the class's queue stays near one GSO packet
 * instead of the ~2 that TCP Small Queues allows a socket, and the rest waits in the socket.
 * The floor: after a CWR cut the queue is ~0.7 of the budget, and it must outlast the flow's
 * unloaded RTT or the link idles until the next ACKs — measured under TCG at 100 Mbit/s, a 6 ms
 * budget lost 3-5% of the rate (reports/20261130-092829-tc-shaping-6.1). Cilium's 2 s default
 * only guards against runaway SO_TXTIME. A live rate change recomputes it. Validation (and
 * setRate) refuse auto below AUTO_HORIZON_MIN_RATE, where the 10 s maximum would cut the budget.
 */
export const AUTO_HORIZON_FLOOR_NS = 8_000_000n;
export function latencyHorizonNs(rateBps: bigint): bigint {
  const gso = (MAX_GSO_WIRE_BYTES * 8n * 11n * 1_000_000_000n + rateBps * 10n - 1n) / (rateBps * 10n);
  const ns = gso < AUTO_HORIZON_FLOOR_NS ? AUTO_HORIZON_FLOOR_NS : gso;
  return ns > MAX_HORIZON_NS ? MAX_HORIZON_NS : ns;
}

/**
 * The lowest rate `horizon: auto` takes: below it one maximum GSO packet's wire time +10% is past
 * the 10 s maximum, and the budget was silently capped at 10 s, so a 64 KiB GSO packet behind
 * another was dropped (in a class kept busy, every time it was sent) — not what auto promises.
 * The maximum is not raised: fq drops a departure more than its horizon (10 s by default) ahead anyway.
 */
export const AUTO_HORIZON_MIN_RATE = (MAX_GSO_WIRE_BYTES * 8n * 11n * 1_000_000_000n + MAX_HORIZON_NS * 10n - 1n) / (MAX_HORIZON_NS * 10n);

/** why `horizon: auto` cannot keep its budget at this rate, or undefined */
export function autoHorizonProblem(rateBps: bigint): string | undefined {
  if (rateBps >= AUTO_HORIZON_MIN_RATE) return undefined;
  return `horizon auto needs a rate of at least ${formatRate(AUTO_HORIZON_MIN_RATE)}: at ${formatRate(rateBps)} one 64 KiB GSO packet's wire time +10% is ${Math.ceil(Number(MAX_GSO_WIRE_BYTES * 88n) / Number(rateBps)) / 10} s, past the 10 s horizon maximum (fq drops departures further ahead), so a GSO packet behind another would be dropped; give a higher rate, or an explicit horizon (e.g. "10s") and accept those drops`;
}

/** a `horizon` value: "auto" or a duration 1ms-10s; undefined if neither */
export function parseHorizon(s: unknown): bigint | 'auto' | undefined {
  if (s === 'auto') return 'auto';
  const h = typeof s === 'string' ? parseDuration(s) : undefined;
  return h === undefined || h < MIN_HORIZON_NS || h > MAX_HORIZON_NS ? undefined : h;
}
const MIN_RATE = 8_000n; // 8 kbit/s: below that one MTU packet waits > 1.5 s
const MAX_RATE = 400_000_000_000n;

/** a match that puts a packet into a class */
export type MatchSpec =
  | { cgroup: string }
  | { dst: string; port?: number }
  | { flow: { src: string; dst: string; sport: number; dport: number; proto: 'tcp' | 'udp' } };

export interface ClassSpec {
  name: string;
  rate: string;
  /** a duration ("2s", "60ms") or "auto" (latencyHorizonNs of the rate) */
  horizon?: string;
  match?: MatchSpec[];
}

export interface RuleSpec {
  name?: string;
  dir?: 'egress' | 'ingress' | 'both';
  /** the remote side: destination on egress, source on ingress */
  cidr?: string;
  port?: number;
  proto?: 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'any';
  action: 'drop' | 'count';
}

export interface TcConfig {
  classes?: ClassSpec[];
  filters?: RuleSpec[];
}

/** the validated form: numbers, bytes, ids resolved */
export type Match =
  | { kind: 'cgroup'; path: string; id: bigint }
  | { kind: 'dst'; family: Family; addr: Uint8Array; prefixlen: number; port: number }
  | { kind: 'flow'; family: Family; saddr: Uint8Array; daddr: Uint8Array; sport: number; dport: number; proto: number };

export interface ClassPlan {
  name: string;
  rateBps: bigint;
  horizonNs: bigint;
  /** horizon: auto — recomputed from the rate whenever it changes */
  horizonAuto?: boolean;
  matches: Match[];
}

export interface RulePlan {
  name: string;
  dir: number; // TC_DIR_* mask
  /** 4 or 6; 0 = any family (no cidr) */
  family: 0 | Family;
  /** 16 bytes, IPv4 in the first 4 */
  addr: Uint8Array;
  prefixlen: number;
  port: number;
  proto: number;
  action: number; // TC_RULE_*
}

export interface Plan {
  classes: ClassPlan[];
  rules: RulePlan[];
}

export class ConfigError extends LabError {
  constructor(readonly problems: string[]) {
    super(`invalid tc config: ${problems.join('; ')}`, 'fix the named fields (see controller/tc/README.md); nothing was changed');
    this.name = 'ConfigError';
  }
}

const UNITS: Record<string, bigint> = { bit: 1n, kbit: 1_000n, mbit: 1_000_000n, gbit: 1_000_000_000n, tbit: 1_000_000_000_000n };

/** "10mbit", "1.5gbit", "800kbit" (SI, bits per second, tc's spelling) → bits/s; undefined if malformed */
export function parseRate(s: string): bigint | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|tbit)\s*$/i.exec(s);
  if (!m) return undefined;
  const [int, frac = ''] = m[1]!.split('.');
  const unit = UNITS[m[2]!.toLowerCase()]!;
  const scale = 10n ** BigInt(frac.length);
  return (BigInt(int!) * scale + BigInt(frac || '0')) * unit / scale;
}

export function formatRate(bps: bigint | number): string {
  const n = Number(bps);
  for (const [u, f] of [['gbit', 1e9], ['mbit', 1e6], ['kbit', 1e3]] as const) if (n >= f) return `${+(n / f).toFixed(3)}${u}`;
  return `${n}bit`;
}

/** "2s", "500ms", "100us" → ns */
export function parseDuration(s: string): bigint | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|ms|us)\s*$/.exec(s);
  if (!m) return undefined;
  const f = { s: 1e9, ms: 1e6, us: 1e3 }[m[2] as 's' | 'ms' | 'us'];
  return BigInt(Math.round(Number(m[1]) * f));
}

/** an IPv4 or IPv6 address as 16 bytes (IPv4 in the first 4), or undefined */
export function parseAddr(s: string): { family: Family; addr: Uint8Array } | undefined {
  const ip = parseIp(s);
  return ip ? { family: ip.family, addr: toLeading16(ip) } : undefined;
}

/** "10.0.0.0/24", "fd00:16::/64", an address alone = one host; host bits must be zero (a typo like 10.0.0.1/8 is more likely than intent) */
export function parseCidr(s: string): { family: Family; addr: Uint8Array; prefixlen: number } | undefined {
  const c = parseIpCidr(s);
  if (!c) return undefined;
  const addr = toLeading16(c.ip);
  for (let bit = c.bits; bit < (c.ip.family === 4 ? 32 : 128); bit++) if (addr[bit >> 3]! & (0x80 >> (bit & 7))) return undefined;
  return { family: c.ip.family, addr, prefixlen: c.bits };
}

/**
 * An address or CIDR that parses but is not what it says (common/ip.ts ipTextProblem): a zone id
 * was dropped (fe80::1%eth0 matched fe80::1 on every link), and ::ffff:10.0.0.0/120 became an IPv6
 * key that no IPv4 packet — keyed as IPv4 — ever matched: a drop rule that never drops.
 */
function textProblem(v: unknown): string | null {
  return typeof v === 'string' ? ipTextProblem(v) : null;
}

/**
 * A match's identity in its map, from the parsed bytes: the duplicate check must see what the
 * kernel key will be. On the text, fd00::/64 and fd00:0::/64, FD00::/64, 10.0.0.5 and
 * 10.0.0.5/32, /24 and /024, fd00::1 and fd00::0001 were all different, both were accepted, and
 * the later class silently took the traffic. The shaper keys its map entries by it too.
 */
export function matchKey(m: Match): string {
  if (m.kind === 'cgroup') return `c${m.id}`;
  if (m.kind === 'dst') return `d${m.family}:${[...m.addr].join('.')}/${m.prefixlen}:${m.port}`;
  return `f${m.family}:${[...m.saddr].join('.')}:${m.sport}-${[...m.daddr].join('.')}:${m.dport}/${m.proto}`;
}

// Maps, not object literals: a lookup by the user's word found inherited keys, so "proto:
// constructor" or "__proto__" became proto 0 (any) and "dir: toString" mask 0, a rule that never fires
const PROTOS = new Map<string, number>([['any', 0], ['icmp', 1], ['tcp', 6], ['udp', 17], ['icmpv6', 58]]);
export const PROTO_NAMES: Record<number, string> = Object.fromEntries([...PROTOS].map(([k, v]) => [v, k]));
const DIRS = new Map<string, number>([['ingress', tc_shape_dir.TC_DIR_INGRESS], ['egress', tc_shape_dir.TC_DIR_EGRESS], ['both', tc_shape_dir.TC_DIR_INGRESS | tc_shape_dir.TC_DIR_EGRESS]]);
const NAME = /^[a-z][a-z0-9_-]{0,31}$/;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPort = (v: unknown) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;

function unknownKeys(o: Record<string, unknown>, allowed: string[], at: string, problems: string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) problems.push(`${at}.${k}: unknown field (allowed: ${allowed.join(', ')})`);
}

const CGROUP2_SUPER_MAGIC = 0x63677270;
/**
 * the cgroup id of a cgroup2 directory (common/cgroup.ts), undefined where path is not one. A
 * cgroup v1 directory has a cgroup.procs too, but its inode number is no cgroup2 id: v1's root is
 * 1, the cgroup2 root's id, so `/sys/fs/cgroup/cpu` would have shaped every socket of the v2 root
 */
export function cgroupIdOf(path: string): bigint | undefined {
  try {
    return fs.statSync(path).isDirectory() && fs.statfsSync(path).type === CGROUP2_SUPER_MAGIC && fs.existsSync(`${path}/cgroup.procs`) ? dirCgroupId(path) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Validate a parsed config (JSON/YAML value) completely and return the plan, or throw ConfigError
 * naming every problem. `cgroupId` resolves cgroup paths (injectable for tests).
 */
export function validateConfig(raw: unknown, cgroupId: (p: string) => bigint | undefined = cgroupIdOf): Plan {
  const problems: string[] = [];
  if (!isObj(raw)) throw new ConfigError(['the config must be an object with "classes" and/or "filters"']);
  unknownKeys(raw, ['classes', 'filters'], 'config', problems);
  const classes: ClassPlan[] = [];
  const seenMatch = new Map<string, string>();
  const rawClasses = raw.classes ?? [];
  if (!Array.isArray(rawClasses)) problems.push('classes: must be a list');
  else if (rawClasses.length > MAX_CLASSES) problems.push(`classes: ${rawClasses.length} classes, at most ${MAX_CLASSES}`);
  const names = new Set<string>();
  let matchCount = { cgroup: 0, dst: 0, flow: 0 };
  for (const [i, c] of (Array.isArray(rawClasses) ? rawClasses : []).entries()) {
    const at = `classes[${i}]`;
    if (!isObj(c)) {
      problems.push(`${at}: must be an object with name, rate, match`);
      continue;
    }
    unknownKeys(c, ['name', 'rate', 'horizon', 'match'], at, problems);
    const name = c.name;
    if (typeof name !== 'string' || !NAME.test(name)) problems.push(`${at}.name: ${JSON.stringify(name)} must be 1-32 of a-z 0-9 _ - starting with a letter`);
    else if (names.has(name)) problems.push(`${at}.name: "${name}" is used twice`);
    else names.add(name);
    const rate = typeof c.rate === 'string' ? parseRate(c.rate) : undefined;
    if (rate === undefined) problems.push(`${at}.rate: ${JSON.stringify(c.rate)} is not a rate (e.g. "10mbit", "1gbit")`);
    else if (rate < MIN_RATE || rate > MAX_RATE) problems.push(`${at}.rate: ${c.rate} is outside 8kbit-400gbit`);
    let horizon = DEFAULT_HORIZON_NS;
    let horizonAuto = false;
    if (c.horizon !== undefined) {
      const h = parseHorizon(c.horizon);
      if (h === undefined) problems.push(`${at}.horizon: ${JSON.stringify(c.horizon)} must be a duration 1ms-10s (e.g. "2s") or "auto"`);
      else if (h === 'auto') horizonAuto = true;
      else horizon = h;
    }
    if (horizonAuto && rate !== undefined && rate >= MIN_RATE && rate <= MAX_RATE) {
      const p = autoHorizonProblem(rate);
      if (p) problems.push(`${at}.horizon: ${p}`);
      horizon = latencyHorizonNs(rate);
    }
    const matches: Match[] = [];
    const rawMatch = c.match ?? [];
    if (!Array.isArray(rawMatch)) problems.push(`${at}.match: must be a list`);
    for (const [j, m] of (Array.isArray(rawMatch) ? rawMatch : []).entries()) {
      const mat = `${at}.match[${j}]`;
      if (!isObj(m)) {
        problems.push(`${mat}: must be an object ({dst, port} | {cgroup} | {flow})`);
        continue;
      }
      let key: string | undefined;
      if ('cgroup' in m) {
        unknownKeys(m, ['cgroup'], mat, problems);
        const id = typeof m.cgroup === 'string' ? cgroupId(m.cgroup) : undefined;
        if (id === undefined) problems.push(`${mat}.cgroup: ${JSON.stringify(m.cgroup)} is not a cgroup2 directory`);
        else {
          // absolute: the daemon follows the path (cgroupMoves) from its own working directory
          matches.push({ kind: 'cgroup', path: path.resolve(m.cgroup as string), id });
          key = matchKey(matches.at(-1)!);
          matchCount.cgroup++;
        }
      } else if ('dst' in m) {
        unknownKeys(m, ['dst', 'port'], mat, problems);
        const odd = textProblem(m.dst);
        const cidr = typeof m.dst === 'string' && !odd ? parseCidr(m.dst) : undefined;
        if (odd) problems.push(`${mat}.dst: ${odd}`);
        else if (!cidr) problems.push(`${mat}.dst: ${JSON.stringify(m.dst)} is not an IPv4/IPv6 CIDR with zero host bits (e.g. "10.0.0.0/24", "fd00::/64")`);
        if (m.port !== undefined && !isPort(m.port)) problems.push(`${mat}.port: ${JSON.stringify(m.port)} must be 1-65535`);
        if (cidr && (m.port === undefined || isPort(m.port))) {
          const port = (m.port as number | undefined) ?? 0;
          matches.push({ kind: 'dst', ...cidr, port });
          key = matchKey(matches.at(-1)!);
          matchCount.dst++;
        }
      } else if ('flow' in m) {
        unknownKeys(m, ['flow'], mat, problems);
        const f = m.flow;
        if (!isObj(f)) problems.push(`${mat}.flow: must be {src, dst, sport, dport, proto}`);
        else {
          unknownKeys(f, ['src', 'dst', 'sport', 'dport', 'proto'], `${mat}.flow`, problems);
          const oddS = textProblem(f.src), oddD = textProblem(f.dst);
          const s = typeof f.src === 'string' && !oddS ? parseAddr(f.src) : undefined;
          const d = typeof f.dst === 'string' && !oddD ? parseAddr(f.dst) : undefined;
          if (!s) problems.push(`${mat}.flow.src: ${oddS ?? `${JSON.stringify(f.src)} is not an IPv4/IPv6 address`}`);
          if (!d) problems.push(`${mat}.flow.dst: ${oddD ?? `${JSON.stringify(f.dst)} is not an IPv4/IPv6 address`}`);
          if (s && d && s.family !== d.family) problems.push(`${mat}.flow: src is IPv${s.family}, dst is IPv${d.family}`);
          if (!isPort(f.sport)) problems.push(`${mat}.flow.sport: must be 1-65535`);
          if (!isPort(f.dport)) problems.push(`${mat}.flow.dport: must be 1-65535`);
          if (f.proto !== 'tcp' && f.proto !== 'udp') problems.push(`${mat}.flow.proto: must be tcp or udp`);
          if (s && d && s.family === d.family && isPort(f.sport) && isPort(f.dport) && (f.proto === 'tcp' || f.proto === 'udp')) {
            matches.push({ kind: 'flow', family: s.family, saddr: s.addr, daddr: d.addr, sport: f.sport as number, dport: f.dport as number, proto: PROTOS.get(f.proto as string)! });
            key = matchKey(matches.at(-1)!);
            matchCount.flow++;
          }
        }
      } else problems.push(`${mat}: needs one of dst, cgroup, flow`);
      if (key && typeof name === 'string') {
        const other = seenMatch.get(key);
        if (other !== undefined) problems.push(`${mat}: the same match is already in class "${other}"`);
        else seenMatch.set(key, name);
      }
    }
    if (typeof name === 'string' && rate !== undefined) classes.push({ name, rateBps: rate, horizonNs: horizon, ...(horizonAuto ? { horizonAuto } : {}), matches });
  }
  for (const [k, n] of Object.entries(matchCount)) if (n > MAX_MATCHES) problems.push(`classes: ${n} ${k} matches, at most ${MAX_MATCHES}`);
  matchCount = { cgroup: 0, dst: 0, flow: 0 };

  const rules: RulePlan[] = [];
  const rawRules = raw.filters ?? [];
  if (!Array.isArray(rawRules)) problems.push('filters: must be a list');
  else if (rawRules.length > MAX_RULES) problems.push(`filters: ${rawRules.length} rules, at most ${MAX_RULES}`);
  const ruleNames = new Set<string>();
  const unnamed = new Map<string, number>();
  for (const [i, r] of (Array.isArray(rawRules) ? rawRules : []).entries()) {
    const at = `filters[${i}]`;
    if (!isObj(r)) {
      problems.push(`${at}: must be an object with action and cidr/port/proto`);
      continue;
    }
    unknownKeys(r, ['name', 'dir', 'cidr', 'port', 'proto', 'action'], at, problems);
    const name = r.name ?? `rule${i}`;
    if (typeof name !== 'string' || !NAME.test(name)) problems.push(`${at}.name: ${JSON.stringify(name)} must be 1-32 of a-z 0-9 _ - starting with a letter`);
    // an unnamed rule is called rule<index>: say so where a name the user wrote meets one
    else if (ruleNames.has(name)) problems.push(`${at}.name: "${name}" is used twice${unnamed.has(name) ? ` (filters[${unnamed.get(name)}] has no name and is called that)` : ''}`);
    else ruleNames.add(name);
    if (r.name === undefined) unnamed.set(name as string, i);
    const dir = DIRS.get((r.dir as string) ?? 'egress');
    if (dir === undefined) problems.push(`${at}.dir: ${JSON.stringify(r.dir)} must be egress, ingress or both`);
    const odd = textProblem(r.cidr);
    const cidr = r.cidr === undefined ? { family: 0 as const, addr: new Uint8Array(16), prefixlen: 0 } : typeof r.cidr === 'string' && !odd ? parseCidr(r.cidr) : undefined;
    if (odd) problems.push(`${at}.cidr: ${odd}`);
    else if (!cidr) problems.push(`${at}.cidr: ${JSON.stringify(r.cidr)} is not an IPv4/IPv6 CIDR with zero host bits`);
    if (r.port !== undefined && !isPort(r.port)) problems.push(`${at}.port: ${JSON.stringify(r.port)} must be 1-65535`);
    const proto = PROTOS.get((r.proto as string) ?? 'any');
    if (proto === undefined) problems.push(`${at}.proto: ${JSON.stringify(r.proto)} must be tcp, udp, icmp, icmpv6 or any`);
    else if (cidr && ((proto === 1 && cidr.family === 6) || (proto === 58 && cidr.family === 4))) problems.push(`${at}.proto: ${r.proto} never matches an IPv${cidr.family} cidr (IPv4 has icmp, IPv6 icmpv6)`);
    if (r.port !== undefined && proto !== 6 && proto !== 17) problems.push(`${at}.port: a port needs proto tcp or udp`);
    const action = r.action === 'drop' ? tc_shape_rule_action.TC_RULE_DROP : r.action === 'count' ? tc_shape_rule_action.TC_RULE_COUNT : undefined;
    if (action === undefined) problems.push(`${at}.action: ${JSON.stringify(r.action)} must be drop or count`);
    if (typeof name === 'string' && dir !== undefined && cidr && proto !== undefined && action !== undefined) {
      rules.push({ name, dir, ...cidr, port: (r.port as number | undefined) ?? 0, proto, action });
    }
  }
  if (problems.length) throw new ConfigError(problems);
  return { classes, rules };
}

/**
 * For the commands that replace live lists (`tc filter set`, `tc shape apply`): a key the file
 * does not have (or leaves empty, `filters:` in YAML) is not read as an empty list, or a file with
 * a typo or the wrong file would silently remove every live rule — fail-open for a filter. An
 * explicit `[]` clears. `live`: per key, how many entries are live (a missing key is refused only
 * when it would remove some), or 'always' (the command is about that key). Usage error (exit 2).
 */
export function checkReplaceKeys(file: string, raw: unknown, live: Partial<Record<'classes' | 'filters', number | 'always'>>): void {
  const has = (k: string) => isObj(raw) && raw[k] !== undefined && raw[k] !== null;
  const noun = { classes: 'class(es)', filters: 'rule(s)' } as const;
  const missing = (Object.entries(live) as ['classes' | 'filters', number | 'always'][]).filter(([k, n]) => !has(k) && (n === 'always' || n > 0));
  if (!missing.length) return;
  const keys = missing.map(([k]) => `"${k}"`).join(' or ');
  const counted = missing.filter(([, n]) => n !== 'always').map(([k, n]) => `${n} ${noun[k]}`);
  throw new UsageError(
    `--config ${file} has no ${keys} list${counted.length ? `, and ${counted.join(' and ')} are live` : ''}: refusing to read a missing list as an empty one (nothing was changed)`,
    `give the list in full; to remove them all write ${missing.map(([k]) => `"${k}: []"`).join(' and ')}`,
  );
}

/** read a YAML or JSON config file; parse errors name the file */
export function loadConfigFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new LabError(`cannot read tc config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'give the path of a YAML or JSON file');
  }
  if (file.endsWith('.json')) return parseJson(text, file, (m) => new LabError(m, 'fix the JSON syntax; nothing was changed'));
  return parseYamlFile(text, file, (m) => new LabError(m, 'fix the YAML syntax; nothing was changed')).value;
}

/** network-order u16 as the BPF side reads it from the packet (a little-endian load) */
export function netPort(p: number): number {
  return ((p & 0xff) << 8) | (p >> 8);
}
