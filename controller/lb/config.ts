// The LB's desired state as a file (YAML or JSON) and its validation. Validation is pure: it
// runs before anything touches a map, so bad input changes nothing.
import fs from 'node:fs';
import YAML from 'yaml';
import { ValidationError, familyOf, parseHostPort, parseMac, parsePort, parseVip, vipString, canonical, type VipSpec } from './addr.ts';
import { isPrime } from './maglev.ts';

export interface BackendConfig {
  address: string;
  /** health-check port (and the port proxies use); default: the VIP's port */
  port?: number;
  weight?: number;
  /** skip neighbour resolution */
  mac?: string;
}

export interface VipConfig {
  vip: string;
  backends: BackendConfig[];
  /** false: no TCP health checks (e.g. UDP services) */
  healthCheck?: boolean;
}

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
  forwarding?: 'dsr' | 'ipip';
  ringSize?: number;
  conntrackEntries?: number;
  xdpMode?: 'auto' | 'native' | 'generic';
  healthCheck?: Partial<HealthConfig>;
  vips: VipConfig[];
  /** admin API on TCP as well as the unix socket (e.g. "127.0.0.1:9100" for /metrics) */
  listen?: string;
}

export const DEFAULT_HEALTH: HealthConfig = { intervalMs: 1000, timeoutMs: 500, fall: 2, rise: 2 };
export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/ebpf-lab';

export interface NormBackend {
  address: string;
  port: number;
  weight: number;
  mac?: string;
}

export interface NormVip extends VipSpec {
  id: string;
  healthCheck: boolean;
  backends: NormBackend[];
}

export function backendKey(b: { address: string; port: number }): string {
  return `${b.address.includes(':') ? `[${b.address}]` : b.address}:${b.port}`;
}

export function normBackend(vip: VipSpec, b: BackendConfig | string, where: string): NormBackend {
  const raw: BackendConfig = typeof b === 'string' ? { address: b } : b;
  if (!raw || typeof raw !== 'object' || typeof raw.address !== 'string') throw new ValidationError(`${where}: a backend needs an "address"`);
  const hp = parseHostPort(raw.address, raw.port ?? vip.port);
  const port = raw.port !== undefined ? parsePort(raw.port, `${where} port`) : hp.port!;
  const weight = raw.weight ?? 1;
  if (!Number.isInteger(weight) || weight < 0 || weight > 1000) throw new ValidationError(`${where}: weight ${raw.weight} must be an integer 0-1000`);
  if (raw.mac !== undefined) parseMac(raw.mac);
  return { address: hp.address, port, weight, ...(raw.mac ? { mac: raw.mac.toLowerCase() } : {}) };
}

export function normVip(v: VipConfig, where: string, allowEmpty = false): NormVip {
  if (!v || typeof v !== 'object' || typeof v.vip !== 'string') throw new ValidationError(`${where}: needs "vip": "tcp://ADDR:PORT"`);
  const spec = parseVip(v.vip);
  if (!Array.isArray(v.backends)) throw new ValidationError(`${where} (${v.vip}): "backends" must be a list`);
  if (!allowEmpty && v.backends.length === 0) throw new ValidationError(`${where} (${v.vip}): zero backends; a VIP needs at least one`);
  const backends = v.backends.map((b, i) => normBackend(spec, b, `${where}.backends[${i}]`));
  const seen = new Set<string>();
  for (const b of backends) {
    const k = backendKey(b);
    if (seen.has(k)) throw new ValidationError(`${where} (${v.vip}): duplicate backend ${k}`, 409);
    seen.add(k);
  }
  if (backends.length && backends.every((b) => b.weight === 0)) throw new ValidationError(`${where} (${v.vip}): every backend has weight 0`);
  return { ...spec, id: vipString(spec), healthCheck: v.healthCheck ?? spec.protocol === 'tcp', backends };
}

export interface NormConfig {
  interface: string;
  instance: string;
  pinRoot: string;
  forwarding: 'dsr' | 'ipip';
  ringSize: number;
  conntrackEntries: number;
  xdpMode: 'auto' | 'native' | 'generic';
  health: HealthConfig;
  vips: NormVip[];
  listen?: string;
}

export function validateConfig(c: LbConfig): NormConfig {
  if (!c || typeof c !== 'object') throw new ValidationError('config must be an object');
  if (typeof c.interface !== 'string' || !/^[\w.-]{1,15}$/.test(c.interface)) throw new ValidationError(`"interface" must be an interface name, got ${JSON.stringify(c.interface)}`);
  const instance = c.instance ?? 'default';
  if (!/^[\w-]{1,40}$/.test(instance)) throw new ValidationError(`malformed instance name "${instance}"`);
  const ringSize = c.ringSize ?? 65537;
  if (!isPrime(ringSize) || ringSize < 7 || ringSize > 1_000_003) throw new ValidationError(`ringSize ${ringSize} must be a prime between 7 and 1000003`);
  const forwarding = c.forwarding ?? 'dsr';
  if (forwarding !== 'dsr' && forwarding !== 'ipip') throw new ValidationError(`forwarding "${forwarding}" must be dsr or ipip`);
  const health = { ...DEFAULT_HEALTH, ...(c.healthCheck ?? {}) };
  for (const [k, v] of Object.entries(health)) if (!Number.isInteger(v) || v <= 0) throw new ValidationError(`healthCheck.${k} must be a positive integer`);
  if (!Array.isArray(c.vips)) throw new ValidationError('"vips" must be a list');
  const vips = c.vips.map((v, i) => normVip(v, `vips[${i}]`));
  const ids = new Set<string>();
  for (const v of vips) {
    if (ids.has(v.id)) throw new ValidationError(`duplicate VIP ${v.id}`, 409);
    ids.add(v.id);
  }
  const ct = c.conntrackEntries ?? 262144;
  if (!Number.isInteger(ct) || ct < 1024) throw new ValidationError('conntrackEntries must be an integer >= 1024');
  const xdpMode = c.xdpMode ?? 'auto';
  if (!['auto', 'native', 'generic'].includes(xdpMode)) throw new ValidationError(`xdpMode "${xdpMode}" must be auto, native or generic`);
  return { interface: c.interface, instance, pinRoot: c.pinRoot ?? DEFAULT_PIN_ROOT, forwarding, ringSize, conntrackEntries: ct, xdpMode, health, vips, listen: c.listen };
}

export function loadConfigFile(file: string): LbConfig {
  const text = fs.readFileSync(file, 'utf8');
  try {
    return (file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text)) as LbConfig;
  } catch (e) {
    throw new ValidationError(`${file}: ${(e as Error).message}`);
  }
}

export { canonical, familyOf };
