// The socket LB's desired state (YAML or JSON) and its validation. Pure: it runs before anything is
// loaded or written, so a malformed config changes nothing. Address parsing, backend normalisation
// and the Maglev prime check are the XDP LB's (controller/lb), imported rather than copied.
import fs from 'node:fs';
import { ValidationError, checkLinkLocal, heldAddr, parseHostPort, parseVip, vipString, type VipSpec } from '../lb/addr.ts';
import { DEFAULT_HEALTH, backendKey, normBackend, normHealthCheck, type BackendConfig, type HealthConfig } from '../lb/config.ts';
import { isPrime, nextPrime } from '../lb/maglev.ts';
import { parseJson, parseYamlFile } from '../../common/config-file.ts';
import { socket_lb_limits } from '../../bpf/gen/socket_lb.enums.ts';

export type Algorithm = 'maglev' | 'random';
export const ALGORITHMS: readonly Algorithm[] = ['maglev', 'random'];

export interface ServiceConfig {
  /** tcp://ADDR:PORT or udp://[ADDR6]:PORT */
  vip: string;
  /** ADDR, ADDR:PORT, [ADDR6]:PORT or { address, port, weight } */
  backends: (string | BackendConfig)[];
  algorithm?: Algorithm;
  /** TCP health checks of the backends (default false: the controller may not reach them) */
  healthCheck?: boolean;
}

export interface SvcConfig {
  /** cgroup2 directory (absolute, or relative to the cgroup2 root) whose sockets are balanced */
  cgroup: string;
  /** pins live in /sys/fs/bpf/ebpf-lab/svc-<instance>, state in /run/ebpf-lab/svc-<instance>.json */
  instance?: string;
  /** slots per Maglev ring (a prime); random services use at most this many slots */
  ringSize?: number;
  maxServices?: number;
  maxBackends?: number;
  /** sockets at once whose peer reads as the service's address (getpeername, a UDP reply's
   * source): an LRU table, the oldest socket's entry goes first beyond it */
  maxSockets?: number;
  healthCheck?: Partial<HealthConfig>;
  services: ServiceConfig[];
}

export interface NormBackendS {
  address: string;
  port: number;
  weight: number;
  /** no weight in the config (1 taken): its apply does not end a runtime drain (lb/config.ts NormBackend) */
  weightDefault?: true;
}

export interface NormService extends VipSpec {
  id: string;
  algorithm: Algorithm;
  healthCheck: boolean;
  backends: NormBackendS[];
}

export interface NormSvcConfig {
  cgroup: string;
  instance: string;
  ringSize: number;
  maxServices: number;
  maxBackends: number;
  maxSockets: number;
  health: HealthConfig;
  services: NormService[];
}

export const DEFAULT_RING = socket_lb_limits.SVC_DEFAULT_RING;

/**
 * An instance name becomes part of paths (/sys/fs/bpf/ebpf-lab/svc-NAME, /run/ebpf-lab/svc-NAME.json):
 * a slash or ".." would let `svc stop --instance` remove files outside the lab's directories.
 */
export const INSTANCE_NAME = /^[\w-]{1,40}$/;
export const INSTANCE_RULE = 'letters, digits, _ and -, at most 40';
export const validInstance = (v: unknown): v is string => typeof v === 'string' && INSTANCE_NAME.test(v);
export const MAX_RING = 65537;

function int(v: unknown, what: string, min: number, max: number, dflt: number): number {
  const n = v ?? dflt;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw new ValidationError(`${what} ${JSON.stringify(v)} must be an integer ${min}-${max}`);
  return n;
}

/** f's result; a ValidationError that does not say where it happened gets `where: ` in front */
function at<T>(where: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    // address and port parsing (controller/lb/addr.ts) knows the value, not where it was written
    if (e instanceof ValidationError && !e.message.includes(where)) e.message = `${where}: ${e.message}`; // status and the rest kept
    throw e;
  }
}

const SERVICE_KEYS = ['vip', 'backends', 'algorithm', 'healthCheck'];
const BACKEND_KEYS = ['address', 'port', 'weight'];

/** a misspelt key would otherwise be a setting silently not made (`algoritm: random` ran Maglev) */
function unknownKey(o: object, known: string[], where: string, extra = ''): void {
  const k = Object.keys(o).find((x) => !known.includes(x));
  if (k !== undefined) throw new ValidationError(`${where}: unknown key "${k}" (known: ${known.join(', ')}${extra})`);
}

export function normBackendS(spec: VipSpec, b: string | BackendConfig, where: string): NormBackendS {
  // the XDP LB's normBackend also takes mac and egress, which mean nothing to a socket rewrite
  if (b && typeof b === 'object') unknownKey(b, BACKEND_KEYS, where, ['mac', 'egress'].some((k) => k in b) ? '; mac and egress are the XDP LB\'s' : '');
  const n = at(where, () => normBackend(spec, b, where, 'socket'));
  // the rewrite changes the address a socket connects to, never its family
  if (n.address.includes(':') !== (spec.family === 6)) throw new ValidationError(`${where}: backend ${n.address} is not IPv${spec.family} like the VIP; a socket cannot change its address family`);
  return { address: n.address, port: n.port, weight: n.weight, ...(n.weightDefault ? { weightDefault: true as const } : {}) };
}

export function normService(s: ServiceConfig, where: string, allowEmpty = false): NormService {
  if (!s || typeof s !== 'object' || typeof s.vip !== 'string') throw new ValidationError(`${where}: needs "vip": "tcp://ADDR:PORT"`);
  const spec = at(`${where}.vip`, () => parseVip(s.vip));
  at(`${where}.vip`, () => checkLinkLocal(spec.address, 'VIP'));
  const id = vipString(spec);
  unknownKey(s, SERVICE_KEYS, `${where} (${id})`);
  if (!Array.isArray(s.backends)) throw new ValidationError(`${where} (${id}): "backends" must be a list`);
  if (!allowEmpty && s.backends.length === 0) throw new ValidationError(`${where} (${id}): zero backends; a service needs at least one`);
  const algorithm = s.algorithm ?? 'maglev';
  if (!ALGORITHMS.includes(algorithm)) throw new ValidationError(`${where} (${id}): algorithm ${JSON.stringify(s.algorithm)} must be one of ${ALGORITHMS.join(', ')}`);
  if (s.healthCheck !== undefined && typeof s.healthCheck !== 'boolean') throw new ValidationError(`${where} (${id}): healthCheck must be true or false`);
  // the checks are TCP connects: a UDP backend has no listener to connect to, so every one was
  // marked down and every datagram refused (EPERM)
  if (s.healthCheck && spec.protocol === 'udp') throw new ValidationError(`${where} (${id}): healthCheck is a TCP connect, which a UDP service's backends do not answer (every one would be marked down); set healthCheck: false for UDP services`);
  const backends = s.backends.map((b, i) => normBackendS(spec, b, `${where}.backends[${i}]`));
  const seen = new Set<string>();
  for (const b of backends) {
    const k = backendKey(b);
    if (seen.has(k)) throw new ValidationError(`${where} (${id}): duplicate backend ${k}`, 409);
    seen.add(k);
  }
  if (backends.length && backends.every((b) => b.weight === 0)) throw new ValidationError(`${where} (${id}): every backend has weight 0`);
  return { ...spec, id, algorithm, healthCheck: s.healthCheck ?? false, backends };
}

export function validateSvcConfig(c: SvcConfig): NormSvcConfig {
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw new ValidationError('config must be an object');
  // every fault is named at once (a service by its first), as the XDP LB's config does
  const problems: ValidationError[] = [];
  const check = ValidationError.collector(problems);
  const known = new Set(['cgroup', 'instance', 'ringSize', 'maxServices', 'maxBackends', 'maxSockets', 'healthCheck', 'services']);
  for (const k of Object.keys(c)) if (!known.has(k)) problems.push(new ValidationError(`unknown key "${k}" (known: ${[...known].join(', ')})`));
  if (typeof c.cgroup !== 'string' || !c.cgroup || c.cgroup.includes('..')) problems.push(new ValidationError(`"cgroup" must be a cgroup2 path such as /ebpf-lab/clients, got ${JSON.stringify(c.cgroup)}`));
  const instance = c.instance ?? 'default';
  if (!validInstance(instance)) problems.push(new ValidationError(`malformed instance name ${JSON.stringify(instance)} (${INSTANCE_RULE})`));
  const ringSize = check(() => {
    const r = int(c.ringSize, 'ringSize', 7, MAX_RING, DEFAULT_RING);
    if (!isPrime(r)) throw new ValidationError(`ringSize ${r} must be a prime (Maglev needs one), e.g. 251 or 1021`);
    return r;
  }, null);
  const maxServices = check(() => int(c.maxServices, 'maxServices', 1, 1 << 20, socket_lb_limits.SVC_DEFAULT_SERVICES), null);
  const maxBackends = check(() => int(c.maxBackends, 'maxBackends', 1, 1 << 20, socket_lb_limits.SVC_DEFAULT_BACKENDS), null);
  const maxSockets = check(() => int(c.maxSockets, 'maxSockets', 1024, 1 << 24, socket_lb_limits.SVC_REVNAT_ENTRIES), null);
  if (maxServices !== null && ringSize !== null && maxServices * 2 * ringSize > 1 << 28) problems.push(new ValidationError(`maxServices × 2 × ringSize = ${maxServices * 2 * ringSize} ring slots is too large (limit ${1 << 28}); lower ringSize or maxServices`));
  // the XDP LB's rules: known keys only (a misspelt intervalMS was kept and ignored), timers Node can keep
  const health = c.healthCheck === undefined ? DEFAULT_HEALTH : check(() => normHealthCheck(c.healthCheck), DEFAULT_HEALTH);
  const services: NormService[] = [];
  if (!Array.isArray(c.services)) problems.push(new ValidationError('"services" must be a list'));
  else {
    c.services.forEach((s, i) => {
      const n = check(() => normService(s, `services[${i}]`), null);
      if (!n) return;
      services.push(n);
      // a ring lists every backend at least once (random and Maglev alike): with more backends
      // than slots some would never be chosen, and nothing would say so
      if (ringSize !== null && n.backends.length > ringSize) problems.push(new ValidationError(`services[${i}] (${n.id}): ${n.backends.length} backends but ringSize is ${ringSize}: each backend needs a ring slot of its own; raise ringSize to a prime ≥ ${n.backends.length} (e.g. ${nextPrime(n.backends.length)}) or split the service`));
    });
  }
  const ids = new Set<string>();
  for (const s of services) {
    if (ids.has(s.id)) problems.push(new ValidationError(`duplicate service ${s.id}`, 409));
    ids.add(s.id);
  }
  if (maxServices !== null && services.length > maxServices) problems.push(new ValidationError(`${services.length} services but maxServices is ${maxServices}; raise maxServices`, 409));
  const distinct = new Set(services.flatMap((s) => s.backends.map(backendKey)));
  if (maxBackends !== null && distinct.size > maxBackends) problems.push(new ValidationError(`${distinct.size} distinct backends but maxBackends is ${maxBackends}; raise maxBackends`, 409));
  const err = ValidationError.of(problems);
  if (err) throw err;
  // (each null above is a problem: none is left here)
  return { cgroup: c.cgroup, instance, ringSize: ringSize!, maxServices: maxServices!, maxBackends: maxBackends!, maxSockets: maxSockets!, health, services };
}


/**
 * `svc backend … <vip> <addr>` as typed, checked before the instance is opened: a malformed address
 * is the caller's mistake, named by the argument it was given as, whatever the instance holds.
 */
export function checkBackendArgs(vip: string, addr: string): { spec: VipSpec; id: string; backend: NormBackendS } {
  const spec = at('<vip>', () => parseVip(vip));
  return { spec, id: vipString(spec), backend: normBackendS(spec, addr, '<addr>') };
}

/**
 * `svc backend remove|drain|weight <vip> <addr>`: names of entries the instance holds, checked before
 * it is opened for malformed text only. A state file written by an older build may hold a service or
 * backend in a form the parser refuses now (::ffff:a.b.c.d, a zone id it dropped), and it must stay
 * removable; the controller matches what it holds and gives a name that matches nothing the
 * parser's refusal. (A backend of the other family was never taken, so that is still refused here.)
 */
export function checkHeldBackendArgs(vip: string, addr: string): void {
  const spec = at('<vip>', () => parseVip(vip, heldAddr));
  const hp = at('<addr>', () => parseHostPort(addr, spec.port, heldAddr));
  if (hp.address.includes(':') !== (spec.family === 6)) throw new ValidationError(`<addr>: backend ${hp.address} is not IPv${spec.family} like the VIP; a socket cannot change its address family`);
}

export function loadSvcConfigFile(file: string): SvcConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ValidationError(`${file}: ${readProblem(e)}`);
  }
  if (file.endsWith('.json')) return parseJson<SvcConfig>(text, file, (m) => new ValidationError(m));
  return parseYamlFile(text, file, (m) => new ValidationError(m)).value as SvcConfig;
}

export { backendKey, ValidationError };

/** why a config file could not be read, in words ("EISDIR: illegal operation on a directory, read" was the raw message) */
function readProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory, not a config file' : code === 'EACCES' ? 'not readable (permission denied)' : (e as Error).message;
}
