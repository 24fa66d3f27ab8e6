// The socket LB control plane: loads bpf/socket_lb.bpf.o, attaches its cgroup sock_addr programs to
// one cgroup, and owns the maps. Every change is planned on a copy of the model (validation and
// capacity first: nothing is written for a rejected change), then written in an order that keeps
// each step invisible until the last one:
//   1. backend entries for ids that no ring references yet;
//   2. each changed service's new ring into the half of its ring pair the data plane is not reading;
//   3. deletes of removed services (first: the services map has no room beyond maxServices);
//   4. one update per service value (flips half + count): this is what connects see.
// Steps 3 and 4 go through an undo list, so a write the kernel refuses puts every service value back
// and the maps are as they were. Rings are recomputed only for services that changed, which keeps
// one backend change O(ring) however many services exist.
//
// As a daemon (pin: true) maps and links are pinned under /sys/fs/bpf/ebpf-lab/svc-<instance> and the
// model is kept in /run/ebpf-lab/svc-<instance>.json, so `pnpm lab svc backend …` can change a
// running instance from another process (under a lock file) and balancing outlives the process
// until `svc stop`.
import fs from 'node:fs';
import path from 'node:path';
import { BpfMap, BpfError, Errno, Link, attachCgroupFirst, makePinDir, pinnedMapInfo, progInfoById, removePinDir, type ProgInfo } from '../libbpf/index.ts';
import { ensureObject } from '../../bpf/build.ts';
import { LabError } from '../../common/errors.ts';
import { socketLb, socket_lb_alg, socket_lb_limits, socket_lb_stat, type SocketLb, type revnat_key, type revnat_val, type svc_backend, type svc_key, type svc_val } from '../../bpf/gen/socket_lb.ts';
import { addrBytes, heldAddr, parseHostPort, parseVip, PROTO_NUM, vipString, ValidationError } from '../lb/addr.ts';
import { HealthChecker } from '../lb/health.ts';
import { maglevTable } from '../lb/maglev.ts';
import { cgroup2Root, cgroupDir, cgroupId } from '../../common/cgroup.ts';
import { processAlive, procStart, terminate } from '../../common/host.ts';
import { lockHolderAlive, withLockWait } from '../../common/lockfile.ts';
import { instancesIn, instancesNote, writeFileAtomic } from '../../common/state-file.ts';
import { nextPrime } from '../lb/maglev.ts';
import { INSTANCE_RULE, backendKey, normBackendS, normService, validInstance, validateSvcConfig, type Algorithm, type NormService, type NormSvcConfig, type ServiceConfig, type SvcConfig } from './config.ts';

export const PIN_ROOT = '/sys/fs/bpf/ebpf-lab';
export const RUN_DIR = '/run/ebpf-lab';
export const MAP_NAMES = ['services', 'svc_ring', 'backends', 'revnat', 'svc_stats', 'backend_hits', 'service_hits'] as const;
export const PROGRAMS = {
  connect: ['svc_connect4', 'svc_connect6'],
  udp: ['svc_sendmsg4', 'svc_sendmsg6', 'svc_recvmsg4', 'svc_recvmsg6'],
  getpeername: ['svc_getpeername4', 'svc_getpeername6'],
} as const;
const ALG_NUM: Record<Algorithm, number> = { random: socket_lb_alg.SVC_ALG_RANDOM, maglev: socket_lb_alg.SVC_ALG_MAGLEV };
/** the data plane's counters by name, each at its index in svc_stats (enum socket_lb_stat) */
const STAT_INDEX = {
  connect: socket_lb_stat.SVC_ST_CONNECT, sendmsg: socket_lb_stat.SVC_ST_SENDMSG, recvmsg: socket_lb_stat.SVC_ST_RECVMSG,
  getpeername: socket_lb_stat.SVC_ST_PEERNAME, noBackend: socket_lb_stat.SVC_ST_NO_BACKEND, badSlot: socket_lb_stat.SVC_ST_BAD_SLOT,
} as const;
export const STAT_NAMES = Object.keys(STAT_INDEX) as (keyof typeof STAT_INDEX)[];

export type BackendStateName = 'active' | 'draining' | 'down';
export interface BackendState {
  address: string;
  port: number;
  weight: number;
  state: BackendStateName;
}
export interface ServiceState {
  id: string;
  algorithm: Algorithm;
  healthCheck: boolean;
  index: number;
  half: number;
  count: number;
  backends: BackendState[];
}
/** what the state file holds: everything needed to recompute the maps' contents */
export interface Model {
  config: Omit<NormSvcConfig, 'services'>;
  cgroupPath: string;
  /** the cgroup's inode (cgroup id) at start: a cgroup of the same path made later is another one */
  cgroupId?: string;
  getpeername: boolean;
  /** where its programs run among others at the same cgroup (attachCgroupFirst); older state files have none */
  order?: string;
  services: Record<string, ServiceState>;
  backendIds: Record<string, number>;
  /** how many services list each backend: ids are freed at zero, without a scan of every service */
  backendRefs: Record<string, number>;
  /** the `svc daemon` that owns the instance (none: `svc start`); the start time tells a reused pid apart */
  daemon?: { pid: number; startTime: string };
}
/** why a parsed state file is not a Model (undefined: it is one, as far as commands rely on it) */
function modelProblem(m: unknown): string | undefined {
  const obj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!obj(m)) return 'not a JSON object';
  if (!obj(m.config) || typeof m.config.instance !== 'string' || typeof m.config.ringSize !== 'number') return 'no "config" with its instance and ringSize';
  for (const k of ['services', 'backendIds', 'backendRefs'] as const) if (!obj(m[k])) return `no "${k}" object`;
  if (typeof m.cgroupPath !== 'string') return 'no "cgroupPath"';
  return undefined;
}
/** a state file that cannot be read (its JSON, or its shape), with the way out */
function stateUnreadable(instance: string, why: string, cause?: unknown): LabError {
  return new LabError(`socket LB instance "${instance}": its state file ${statePath(instance)} cannot be read (${why})`, `pnpm lab svc stop --instance ${instance} removes the instance (its pinned programs and maps too); then start it again`, cause === undefined ? undefined : { cause });
}
/** a service's value in the services map, as its state has it */
const svcVal = (s: ServiceState): svc_val => ({ index: s.index, count: s.count, alg: ALG_NUM[s.algorithm], half: s.half, _pad: 0 });
/** what a state file keeps of a config: its settings (the services are kept as applied) */
const settingsOf = ({ services: _s, ...rest }: NormSvcConfig): Model['config'] => rest;

export interface Maps {
  services: BpfMap<svc_key, svc_val>;
  svc_ring: BpfMap<number, number>;
  backends: BpfMap<number, svc_backend>;
  revnat: BpfMap<revnat_key, revnat_val>;
  svc_stats: BpfMap<number, bigint>;
  backend_hits: BpfMap<number, bigint>;
  service_hits: BpfMap<number, bigint>;
}

export interface ApplyResult {
  /** services whose value was written (ring flipped) or deleted */
  changed: number;
  /** map writes made (backends + ring slots + service values + deletes) */
  writes: number;
  ms: number;
}

export class InjectedFault extends Error {
  constructor(n: number) {
    super(`injected fault: service write #${n + 1} refused (test hook)`);
  }
}

/** starts hold this while they check for overlapping instances and attach (not an instance name: those are [\w-]) */
const START_LOCK = '.start';
/**
 * The CLI and the config check names first; this is the last line for any other caller: a name
 * with "/" or ".." would put pins, state and their removal outside the lab's directories.
 */
function named(instance: string, lock = false): string {
  if (!validInstance(instance) && !(lock && instance === START_LOCK)) throw new ValidationError(`malformed instance name ${JSON.stringify(instance)} (${INSTANCE_RULE})`);
  return instance;
}
export const pinDir = (instance: string) => path.join(PIN_ROOT, `svc-${named(instance)}`);
export const statePath = (instance: string) => path.join(RUN_DIR, `svc-${named(instance)}.json`);
/** a change in flight: the services it touches, written before its first map write (see commit) */
export const pendingPath = (instance: string) => `${statePath(instance)}.pending`;
export const lockPath = (instance: string) => path.join(RUN_DIR, `svc-${named(instance, true)}.lock`);

/**
 * Programs attached with BPF_F_ALLOW_MULTI run for the cgroup and every cgroup below it, so two
 * instances on nested cgroups (or the same one) both see a socket of the inner one.
 */
export function cgroupsNest(a: string, b: string): 'same' | 'inside' | 'contains' | null {
  const x = path.resolve(a);
  const y = path.resolve(b);
  if (x === y) return 'same';
  if (x.startsWith(`${y}/`)) return 'inside';
  if (y.startsWith(`${x}/`)) return 'contains';
  return null;
}

export interface RunningInstance {
  instance: string;
  cgroupPath: string;
  services: string[];
}

/**
 * The first running instance whose hooks would see the same sockets and rewrite the same services
 * as a new one: both programs would rewrite the VIP, and which wins depends on attach order.
 * Different services on a shared cgroup are fine (each program leaves other addresses alone).
 */
export function findOverlap(cgroupPath: string, services: string[], running: RunningInstance[]): { instance: string; cgroupPath: string; how: 'same' | 'inside' | 'contains'; services: string[] } | null {
  const mine = new Set(services);
  for (const r of running) {
    const how = cgroupsNest(cgroupPath, r.cgroupPath);
    if (!how) continue;
    const both = r.services.filter((id) => mine.has(id));
    if (both.length) return { instance: r.instance, cgroupPath: r.cgroupPath, how, services: both };
  }
  return null;
}

/**
 * pinned instances whose programs are attached: a state file, its pins, and its cgroup still the
 * one it was started on. `unreadable` collects instances with links pinned whose state file cannot
 * be read: attached somewhere, but where and for which services is unknown.
 */
export function runningInstances(unreadable: { instance: string; why: string }[] = []): RunningInstance[] {
  if (!fs.existsSync(RUN_DIR)) return [];
  const out: RunningInstance[] = [];
  for (const f of fs.readdirSync(RUN_DIR)) {
    const m = /^svc-([\w-]+)\.json$/.exec(f);
    if (!m) continue;
    const links = path.join(pinDir(m[1]!), 'links');
    let model: Model;
    try {
      model = JSON.parse(fs.readFileSync(path.join(RUN_DIR, f), 'utf8')) as Model;
      // what the overlap check reads, no more (a state of an older build without later fields still counts)
      const problem = typeof model !== 'object' || model === null ? 'not a JSON object' : typeof model.cgroupPath !== 'string' ? 'no "cgroupPath"' : typeof model.services !== 'object' || model.services === null ? 'no "services" object' : undefined;
      if (problem) throw new Error(problem);
    } catch (e) {
      // removed meanwhile (a stop) or no links: nothing attached from it
      if (fs.existsSync(path.join(RUN_DIR, f)) && fs.existsSync(links)) unreadable.push({ instance: m[1]!, why: (e as Error).message.split('\n')[0]! });
      continue;
    }
    // a removed cgroup took its links with it: a new one of the same path is not balanced
    try {
      if (!fs.existsSync(links) || !fs.existsSync(model.cgroupPath)) continue;
      if (model.cgroupId !== undefined && String(cgroupId(model.cgroupPath)) !== model.cgroupId) continue;
    } catch {
      continue; // its cgroup removed meanwhile
    }
    out.push({ instance: m[1]!, cgroupPath: model.cgroupPath, services: Object.keys(model.services ?? {}) });
  }
  return out;
}

/** refuse a start that would share services and sockets with a running instance (nothing attached yet) */
function checkOverlap(instance: string, cg: string, services: string[], balancedAlready: string[] = []): void {
  const unreadable: { instance: string; why: string }[] = [];
  const running = runningInstances(unreadable).filter((r) => r.instance !== instance);
  // one whose state cannot be read may balance these services on this cgroup: not assumed away.
  // A takeover that adds no service (its pins balance them all already) is not refused for it:
  // refusing would only end its health checks (a daemon restarted by systemd, looping)
  const u = unreadable.find((x) => x.instance !== instance);
  const adds = services.filter((id) => !balancedAlready.includes(id));
  if (u && !adds.length) console.error(`warning: instance "${u.instance}" has programs attached, but its state file ${statePath(u.instance)} cannot be read (${u.why}); pnpm lab svc stop --instance ${u.instance} removes it`);
  else if (u) throw new LabError(`instance "${u.instance}" has programs attached, but its state file ${statePath(u.instance)} cannot be read (${u.why}): whether it balances these services on this cgroup is unknown`, `pnpm lab svc stop --instance ${u.instance} removes it (its pinned programs and maps too); nothing was attached`);
  const o = findOverlap(cg, services, running);
  if (!o) return;
  const where = o.how === 'same' ? `on the same cgroup ${cg}` : o.how === 'inside' ? `on ${o.cgroupPath}, which contains ${cg}` : `on ${o.cgroupPath}, inside ${cg}`;
  const vips = o.services.length > 3 ? `${o.services.slice(0, 3).join(', ')} and ${o.services.length - 3} more` : o.services.join(', ');
  throw new LabError(
    `instance "${o.instance}" already balances ${vips} ${where}; both would rewrite those connections and which one does would depend on attach order`,
    `stop it first (pnpm lab svc stop --instance ${o.instance}), or move this one to a cgroup outside its subtree or drop those services from the config; nothing was attached`,
  );
}

function svcKey(s: { address: string; port: number; protocol: 'tcp' | 'udp'; family: number }): svc_key {
  return { addr: addrBytes(s.address), port: htons(s.port), proto: PROTO_NUM[s.protocol], family: s.family };
}
function htons(n: number): number {
  return ((n & 0xff) << 8) | ((n >> 8) & 0xff);
}

/** the slots of a service's ring: a Maglev table, or for random the live ids repeated by weight */
export function ringOf(s: ServiceState, ids: Record<string, number>, ringSize: number): number[] {
  const live = s.backends.filter((b) => b.state === 'active' && b.weight > 0);
  if (live.length === 0) return [];
  if (s.algorithm === 'maglev') return [...maglevTable(live.map((b) => ({ key: backendKey(b), id: ids[backendKey(b)]!, weight: b.weight })), ringSize)];
  // a ring with fewer slots than backends cannot list them all (validation refuses such services)
  if (live.length > ringSize) throw new ValidationError(`${s.id}: ${live.length} live backends do not fit a ring of ${ringSize} slots`, 409);
  const total = live.reduce((n, b) => n + b.weight, 0);
  let counts = live.map((b) => b.weight);
  if (total > ringSize) {
    // Scaling every weight down and flooring let a heavy backend fill the ring before the light
    // ones got their slot ([1000,1,1] on 251: the third never chosen). Each gets its one slot first;
    // the rest are shared by weight, largest remainders first, so the ring is exactly full.
    const rest = ringSize - live.length;
    const exact = live.map((b) => (b.weight * rest) / total);
    counts = exact.map((x) => 1 + Math.floor(x));
    let left = ringSize - counts.reduce((a, b) => a + b, 0);
    const byRemainder = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    for (const [, i] of byRemainder) {
      if (left-- <= 0) break;
      counts[i]!++;
    }
  }
  const out: number[] = [];
  live.forEach((b, i) => {
    for (let k = 0; k < counts[i]!; k++) out.push(ids[backendKey(b)]!);
  });
  return out;
}

export interface StartOptions {
  /** pin maps and links and keep the state file (daemon / CLI mode) */
  pin?: boolean;
  /**
   * `svc daemon`: record this process as the instance's owner, and take over an instance whose
   * recorded daemon has died (pinned, so it kept balancing, without health checks) instead of
   * refusing it
   */
  daemon?: boolean;
  log?: (s: string) => void;
  /** test hook: a backend table of maxBackends ids, as builds before the spare ids made it */
  testNoSpareIds?: boolean;
  /** tests only: a build of socket_lb.bpf.c other than the lab's own (standing for another release) */
  object?: string;
}

/**
 * The backend table holds this many times maxBackends ids: the ids in use, and as many for new
 * backends written while the rings still read the old ones (commit never rewrites an id a ring may
 * read). Doubling is what replacing every backend at once needs.
 */
export const SPARE_FACTOR = 2;

/** this process as a daemon record (its start time from /proc: a reused pid has another) */
function selfDaemon(): Model['daemon'] {
  return { pid: process.pid, startTime: procStart(process.pid) ?? '' };
}
const daemonAlive = (d: NonNullable<Model['daemon']>) => processAlive(d.pid, d.startTime);
/** the pid of the instance's svc daemon when it is recorded but gone (killed): its pins balance on, unchecked */
export const deadDaemon = (m: Model): number | undefined => (m.daemon && !daemonAlive(m.daemon) ? m.daemon.pid : undefined);

/**
 * Why an instance balances nothing though its state and pins are there: its cgroup was removed
 * (the links went with it; a new cgroup of the same path is another id), or undefined. `svc list`
 * and `backend …` went on as if it balanced (review, session 56).
 */
export function cgroupGoneNote(m: Model): string | undefined {
  if (!m.cgroupPath) return undefined;
  if (!fs.existsSync(m.cgroupPath)) return `its cgroup ${m.cgroupPath} was removed, and its programs with it: it balances nothing`;
  try {
    if (m.cgroupId !== undefined && String(cgroupId(m.cgroupPath)) !== m.cgroupId) return `its cgroup ${m.cgroupPath} was removed and made again (another cgroup now): it balances nothing there`;
  } catch {
    return undefined;
  }
  return undefined;
}

export class SvcController {
  private closed = false;
  private health: HealthChecker | null = null;
  /** test hook: refuse the service-value write after this many */
  failAfter: number | null = null;

  private constructor(
    public model: Model,
    readonly maps: Maps,
    private readonly skel: SocketLb | null,
    private readonly links: Link[],
    readonly pinned: boolean,
    private readonly ownedMaps: BpfMap[] = [],
  ) {}

  /**
   * Validate, load, attach to the config's cgroup and write every service. Anything that fails
   * after the load closes what was made (links, object, pins), so a failed start leaves nothing.
   */
  static async start(raw: SvcConfig, opts: StartOptions = {}): Promise<SvcController> {
    const cfg = validateSvcConfig(raw);
    const root = cgroup2Root();
    // a path into another hierarchy (cgroup v1's /sys/fs/cgroup/cpu) is not one relative to the
    // cgroup2 root: "create it" named /sys/fs/cgroup/unified/sys/fs/cgroup/cpu
    if (cfg.cgroup.startsWith(`${path.dirname(root)}/`) && cfg.cgroup !== root && !cfg.cgroup.startsWith(`${root}/`)) throw new LabError(`cgroup ${cfg.cgroup} is outside the cgroup2 hierarchy (mounted at ${root})`, `"cgroup" is a cgroup2 directory: absolute under ${root}, or relative to it (e.g. /ebpf-lab/clients)`);
    const cg = cgroupDir(cfg.cgroup, root);
    if (fs.existsSync(cg) && !fs.statSync(cg).isDirectory()) throw new LabError(`cgroup ${cfg.cgroup} is a file, not a cgroup (${cg})`, `"cgroup" names a cgroup2 directory, e.g. /ebpf-lab/clients`);
    if (!fs.existsSync(cg)) throw new LabError(`cgroup ${cfg.cgroup} does not exist (${cg})`, `create it (mkdir ${cg}) or correct "cgroup" in the config`);
    const file = opts.object ?? (await ensureObject('socket_lb'));
    // a start registers itself (state file) only at its end: two concurrent starts would each find
    // the other absent, so the check and the attach are one step for pinned instances
    return opts.pin ? withLock(START_LOCK, () => SvcController.startChecked(cfg, cg, file, opts), 120_000) : SvcController.startChecked(cfg, cg, file, opts);
  }

  private static startChecked(cfg: NormSvcConfig, cg: string, file: string, opts: StartOptions): SvcController | Promise<SvcController> {
    const dir = pinDir(cfg.instance);
    if (opts.pin && fs.existsSync(statePath(cfg.instance))) {
      let old: Model | null = null;
      try {
        old = JSON.parse(fs.readFileSync(statePath(cfg.instance), 'utf8')) as Model;
      } catch {
        /* unreadable: refused below like any running instance */
      }
      if (opts.daemon && old?.daemon && !daemonAlive(old.daemon)) return SvcController.adopt(cfg, cg, old, file, opts);
      const stop = `stop it first (pnpm lab svc stop --instance ${cfg.instance}) or give this one another --instance`;
      if (old?.daemon && !daemonAlive(old.daemon)) throw new LabError(`instance "${cfg.instance}" is still balancing, left by svc daemon pid ${old.daemon.pid}, which died (${statePath(cfg.instance)})`, `pnpm lab svc daemon --config FILE --instance ${cfg.instance} takes it over without a gap; or ${stop}`);
      const who = old?.daemon ? `its svc daemon, pid ${old.daemon.pid}, is alive` : 'started by svc start, no daemon';
      throw new LabError(`instance "${cfg.instance}" is already running (${who}; ${statePath(cfg.instance)})`, stop);
    }
    // pins without a state file: a start of this name killed between its pins and its state (its
    // programs still attached). We hold the start lock, so none is in flight: they are removed, as
    // their pin over the old ones (EEXIST) failed this start with an internal error
    if (opts.pin && cutShort(cfg.instance, true)) {
      cleanupPins(cfg.instance);
      opts.log?.(`removed what a start of instance ${cfg.instance} that was cut short left attached (pins under ${dir}, no state)`);
    }
    checkOverlap(cfg.instance, cg, cfg.services.map((s) => s.id));
    // backend ids for maxBackends in use plus as many new ones during a switch (see commit)
    const backendTable = cfg.maxBackends * (opts.testNoSpareIds ? 1 : SPARE_FACTOR);
    const loadWith = (skip: string[]) => {
      const sk = socketLb.open(file);
      try {
        return sk.setRodata({ ring_size: cfg.ringSize }).load({
          skip,
          maxEntries: { services: cfg.maxServices, svc_ring: cfg.maxServices * 2 * cfg.ringSize, backends: backendTable, backend_hits: backendTable, service_hits: cfg.maxServices, revnat: cfg.maxSockets },
        });
      } catch (e) {
        sk.close();
        throw e;
      }
    };
    let skel: SocketLb;
    let getpeername = true;
    try {
      skel = loadWith([]);
    } catch (e) {
      // getpeername4/6 attach types exist from 5.8: without them the rest still balances
      if (!(e instanceof BpfError) || !/getpeername/.test(e.message)) throw e;
      skel = loadWith([...PROGRAMS.getpeername]);
      getpeername = false;
    }
    const links: Link[] = [];
    // Ahead of every program already at this cgroup (an egress policy's, attached at the cgroup2
    // root as well), so that a policy judges the backend whichever started first, as it does
    // where svc sits in a cgroup below the policy's; where the kernel does not order cgroup
    // programs (6.1 here: EINVAL) they run in attach order, and `order` says so.
    let order = 'first at its cgroup (BPF_F_BEFORE)';
    const attach = (p: (typeof PROGRAMS)[keyof typeof PROGRAMS][number]) => {
      const r = attachCgroupFirst(skel.programs[p], cg);
      if (!r.first) order = `in attach order at its cgroup (${r.why})`;
      return r.link;
    };
    try {
      for (const p of [...PROGRAMS.connect, ...PROGRAMS.udp]) links.push(attach(p));
      if (getpeername) {
        try {
          for (const p of PROGRAMS.getpeername) links.push(attach(p));
        } catch (e) {
          opts.log?.(`getpeername hooks not attached: ${(e as Error).message.split('\n')[0]}`);
          getpeername = false;
        }
      }
      const maps: Maps = skel.maps;
      const model: Model = { config: settingsOf(cfg), cgroupPath: cg, cgroupId: String(cgroupId(cg)), getpeername, order, services: {}, backendIds: {}, backendRefs: {}, ...(opts.daemon ? { daemon: selfDaemon() } : {}) };
      const c = new SvcController(model, maps, skel, links, !!opts.pin);
      if (opts.pin) c.pinAll(dir, links);
      c.applyServices(cfg.services, []);
      if (opts.pin) c.saveState();
      return c;
    } catch (e) {
      for (const l of links.reverse()) l.close();
      skel.close();
      if (opts.pin) cleanupPins(cfg.instance);
      throw e;
    }
  }

  /**
   * A `svc daemon` takes over the instance a dead daemon left: its pinned links kept balancing all
   * along (fail static), so nothing is detached or reloaded — the config's services are applied as
   * a change (rings rewritten only where they differ) and health checks resume. Settings fixed at
   * load (cgroup, ring and map sizes) must match: changing them needs a new instance.
   */
  private static async adopt(cfg: NormSvcConfig, cg: string, old: Model, file: string, opts: StartOptions): Promise<SvcController> {
    const dead = old.daemon!.pid;
    const fix = `pnpm lab svc stop --instance ${cfg.instance}, then start the daemon again (new connections to its services are not balanced in between)`;
    const diff: string[] = [];
    if (path.resolve(old.cgroupPath) !== path.resolve(cg)) diff.push(`cgroup ${old.cgroupPath} → ${cg}`);
    else if (old.cgroupId !== undefined && fs.existsSync(cg) && String(cgroupId(cg)) !== old.cgroupId) diff.push(`cgroup ${cg} was removed and made again (its programs went with the old one)`);
    for (const k of ['ringSize', 'maxServices', 'maxBackends'] as const) if (old.config[k] !== cfg[k]) diff.push(`${k} ${old.config[k]} → ${cfg[k]}`);
    // a state file of a build before maxSockets: its table has the compiled default
    const sockets = old.config.maxSockets ?? socket_lb_limits.SVC_REVNAT_ENTRIES;
    if (sockets !== cfg.maxSockets) diff.push(`maxSockets ${sockets} → ${cfg.maxSockets}`);
    if (diff.length) throw new LabError(`instance "${cfg.instance}" was left by svc daemon pid ${dead}, which died, and cannot be taken over with this config: ${diff.join('; ')}`, fix);
    checkOverlap(cfg.instance, cg, cfg.services.map((s) => s.id), Object.keys(old.services ?? {}));
    return withLock(cfg.instance, () => {
      const c = SvcController.open(cfg.instance);
      try {
        const want = new Set(cfg.services.map((s) => s.id));
        const r = c.applyServices(cfg.services, Object.keys(c.model.services).filter((id) => !want.has(id)));
        c.model = { ...c.model, config: settingsOf(cfg), daemon: selfDaemon() };
        c.saveState();
        // drain is not in the config: what `svc backend drain` took out stays out, and is named
        const drained = Object.values(c.model.services).flatMap((s) => s.backends.filter((b) => b.state === 'draining').map((b) => `${backendKey(b)} of ${s.id}`));
        const programs = upgradePrograms(cfg.instance, file, c.model);
        opts.log?.(`took over instance ${cfg.instance} from svc daemon pid ${dead}, which died (its programs kept balancing): ${r.changed} service(s) changed to match the config${drained.length ? `; kept draining: ${drained.join(', ')} (svc backend weight ends it)` : ''}; ${programs}`);
        return c;
      } catch (e) {
        c.close(); // the instance stays as it was found: pinned, balancing, owned by nobody alive
        throw e;
      }
    });
  }

  /** an instance started elsewhere with pin: true (CLI commands) */
  static open(instance: string): SvcController {
    const sp = statePath(instance);
    if (!fs.existsSync(sp)) {
      const cut = cutShort(instance);
      if (cut) throw new LabError(cut.text, cut.starting ? `wait for pid ${cut.starting} to finish starting, then try again` : `pnpm lab svc stop --instance ${instance} removes it; or start it again, which removes it first`);
      throw new LabError(`no running socket LB instance "${instance}" (no ${sp}; ${instancesNote(instancesIn(RUN_DIR, 'svc-', '.json'))})`, 'start one: pnpm lab svc daemon --config FILE (or svc start), or name it with --instance NAME');
    }
    let model: Model;
    try {
      model = JSON.parse(fs.readFileSync(sp, 'utf8')) as Model;
    } catch (e) {
      // a file cut short or edited by hand: named, with the way out (an internal error before)
      throw stateUnreadable(instance, (e as Error).message.split('\n')[0]!, e);
    }
    const dir = pinDir(instance);
    const opened: BpfMap[] = [];
    try {
      for (const n of MAP_NAMES) opened.push(BpfMap.openPinned(path.join(dir, n)));
    } catch (e) {
      for (const m of opened) m.close();
      if (e instanceof BpfError && e.errno === Errno.ENOENT) {
        throw new LabError(`socket LB instance "${instance}" has a state file but its pins under ${dir} are gone: nothing balances its services`, `pnpm lab svc stop --instance ${instance} removes what is left; then start it again`, { cause: e });
      }
      throw e;
    }
    // valid JSON of another shape ({}, a file edited by hand) failed later as a TypeError
    const problem = modelProblem(model);
    if (problem) {
      for (const m of opened) m.close();
      throw stateUnreadable(instance, problem);
    }
    const maps = Object.fromEntries(MAP_NAMES.map((n, i) => [n, opened[i]])) as unknown as Maps;
    const c = new SvcController(model, maps, null, [], true, opened);
    c.stateKnown = true;
    return c;
  }

  private pinAll(dir: string, links: Link[]): void {
    makePinDir(path.join(dir, 'links'));
    for (const n of MAP_NAMES) (this.maps[n] as BpfMap).pin(path.join(dir, n));
    links.forEach((l, i) => l.pin(path.join(dir, 'links', String(i))));
  }

  /**
   * A pinned instance removed while this controller had it open (svc stop, the state file deleted):
   * a change would write into maps nothing reads any more and put its state file back, so that the
   * instance looked alive with no pins or links behind it.
   */
  private checkNotRemoved(): void {
    if (this.pinned && this.stateKnown && !fs.existsSync(statePath(this.instance))) {
      throw new LabError(`socket LB instance "${this.instance}" was removed (svc stop, or its state file deleted) while this controller had it open; nothing was written`, `start it again: pnpm lab svc daemon --config FILE (or svc start) --instance ${this.instance}`);
    }
  }

  /** the state file has been written or read by this controller (before: a start still making it) */
  private stateKnown = false;

  saveState(): void {
    if (!this.pinned) return;
    this.checkNotRemoved();
    this.stateKnown = true;
    fs.mkdirSync(RUN_DIR, { recursive: true });
    const sp = statePath(this.model.config.instance);
    writeFileAtomic(sp, JSON.stringify(this.model));
    this.seenStamp = this.stateStamp();
  }

  get instance(): string {
    return this.model.config.instance;
  }

  /**
   * Replace/insert `upsert` and delete `remove` (service ids) as one change. Validation and
   * capacity are checked on a copy before any write; see the file comment for the write order.
   */
  applyServices(upsert: NormService[], remove: string[]): ApplyResult {
    const t0 = performance.now();
    const old = this.model;
    // the change as an overlay on the model (null = removed): nothing of the 10,000 untouched
    // services is copied, and the model itself is changed only after the last map write
    const changes = new Map<string, ServiceState | null>();
    for (const id of remove) {
      if (!old.services[id]) throw new ValidationError(`unknown service ${id}`, 404);
      changes.set(id, null);
    }
    // An index of a service removed in this same change is free for a new one: commit writes the
    // new ring into the half the removed service is not reading, so a connect that read its value
    // just before the delete still finds its ring. (Kept taken, a takeover that swapped one VIP for
    // another at maxServices was refused.)
    let usedIdx: Set<number> | null = null; // built only when a new service needs an index
    let freeIdx = 0;
    for (const s of upsert) {
      const prev = changes.has(s.id) ? changes.get(s.id) ?? undefined : old.services[s.id];
      const keep = new Map(prev?.backends.map((b) => [backendKey(b), b]) ?? []);
      let index = prev?.index;
      if (index === undefined) {
        usedIdx ??= new Set([...Object.values(old.services).filter((x) => changes.get(x.id) !== null).map((x) => x.index), ...[...changes.values()].flatMap((x) => (x ? [x.index] : []))]);
        while (usedIdx.has(freeIdx)) freeIdx++;
        if (freeIdx >= old.config.maxServices) throw new ValidationError(`service table full (maxServices ${old.config.maxServices}); remove a service or restart with a larger maxServices`, 409);
        index = freeIdx;
        usedIdx.add(index);
      }
      changes.set(s.id, {
        id: s.id,
        algorithm: s.algorithm,
        healthCheck: s.healthCheck,
        index,
        half: prev?.half ?? 1,
        count: prev?.count ?? 0,
        // A backend keeps its draining/down state across a replace (a takeover applying its config,
        // an add): drain is not in a config, so a config states nothing about it, and a restarted
        // daemon must not send new connections to a backend taken out for maintenance. A weight set
        // anew ends draining, as `svc backend weight` does (the default a config without a weight
        // takes is not one: that config says nothing about it); down is the health checks' to end, so
        // a service whose checks this change turns off has none down (nothing would bring them back).
        backends: s.backends.map(({ weightDefault, ...b }) => {
          const had = keep.get(backendKey(b));
          const state = had?.state === 'draining' && !weightDefault && had.weight !== b.weight ? 'active' : had?.state === 'down' && !s.healthCheck ? 'active' : had?.state ?? 'active';
          return { ...b, state };
        }),
      });
    }
    return this.commit(changes, t0);
  }

  /** change backends of existing services through a function on their state (add/remove/drain/down) */
  private mutate(id: string, fn: (s: ServiceState) => void): ApplyResult {
    const t0 = performance.now();
    const s = this.model.services[id];
    if (!s) throw new ValidationError(`unknown service ${id}; pnpm lab svc list shows the services`, 404);
    const copy = structuredClone(s);
    fn(copy);
    return this.commit(new Map([[id, copy]]), t0);
  }

  /**
   * A change killed between its first map write and its state file (SIGKILL, OOM) left services
   * switched to rings and backend ids the state file does not know: the next change took those ids
   * for new backends, and a service's live ring then sent its new connections to another
   * service's backend (review, session 63). Its services are put back to the state file's values
   * here, under the instance lock, before the next change: its rings went into halves the state's
   * values do not read and its new backends under ids no state ring names, so those values name
   * exactly the rings and backends the state file lists. A pending file that cannot be read: every
   * service of the map is checked against the state.
   */
  private repairCutShort(): void {
    if (!this.pinned) return;
    const pp = pendingPath(this.instance);
    let keys: svc_key[] | undefined;
    try {
      const p = JSON.parse(fs.readFileSync(pp, 'utf8')) as { services?: unknown };
      // ids that do not parse (a file edited by hand, another build's): the whole map is checked
      if (Array.isArray(p.services)) keys = p.services.map((id) => svcKey(parseVip(String(id), heldAddr)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    }
    const canon = (k: svc_key) => `${k.family}|${k.proto}|${k.port}|${Buffer.from(k.addr).toString('hex')}`;
    const want = new Map<string, [svc_key, svc_val]>();
    for (const st of Object.values(this.model.services)) {
      const k = svcKey(parseVip(st.id, heldAddr));
      want.set(canon(k), [k, svcVal(st)]);
    }
    if (!keys) keys = [...this.maps.services.keys(), ...[...want.values()].map(([k]) => k)];
    // deletes first: the map holds maxServices entries, and a change cut short at that limit that
    // swapped one VIP for another left the new one in; putting the old one back before deleting the
    // new one failed (E2BIG) in every later change (review, session 63)
    for (const k of keys) if (!want.has(canon(k)) && this.maps.services.get(k)) this.maps.services.delete(k);
    for (const k of keys) {
      const w = want.get(canon(k));
      if (w) this.maps.services.set(w[0], w[1]);
    }
    fs.rmSync(pp, { force: true });
  }

  /**
   * A failed change's service writes undone, newest first; its pending record goes with them when
   * every undo went through (else the next change repairs what is left)
   */
  private undoAll(undo: (() => void)[]): void {
    let clean = true;
    for (const u of undo.reverse()) {
      try {
        u();
      } catch {
        clean = false; // best effort: the caller reports the original error
      }
    }
    if (clean && this.pinned) fs.rmSync(pendingPath(this.instance), { force: true });
  }

  private commit(changes: Map<string, ServiceState | null>, t0: number): ApplyResult {
    this.checkNotRemoved(); // before any map write
    this.repairCutShort();
    const R = this.model.config.ringSize;
    const touched = [...changes].filter(([, v]) => v).map(([k]) => k);
    const removed = [...changes].filter(([, v]) => !v).map(([k]) => k);
    const after = (id: string) => changes.get(id)!;
    // backend references: only the touched and removed services change them
    const refs = { ...this.model.backendRefs };
    for (const id of changes.keys()) for (const b of this.model.services[id]?.backends ?? []) refs[backendKey(b)] = (refs[backendKey(b)] ?? 0) - 1;
    for (const id of touched) for (const b of after(id).backends) refs[backendKey(b)] = (refs[backendKey(b)] ?? 0) + 1;
    // every backend still referenced keeps its id; new ones take free ids
    const ids: Record<string, number> = {};
    for (const [k, n] of Object.entries(refs)) {
      if (n <= 0) delete refs[k];
      else if (this.model.backendIds[k] !== undefined) ids[k] = this.model.backendIds[k]!;
    }
    // maxBackends bounds the backends listed once the change is in
    const max = this.model.config.maxBackends;
    const listed = Object.keys(refs).length;
    if (listed > max) throw new ValidationError(`backend table full (maxBackends ${max}): the change would list ${listed} distinct backends`, 409, [], `remove a backend first (pnpm lab svc backend remove …), or restart the instance with a larger maxBackends in its config (pnpm lab svc stop --instance ${this.instance}, then start it again); nothing was changed`);
    // Ids the current maps still reference stay taken until the next change: rewriting one now would
    // point a live ring at a different backend before its service flips (and a connect reading the
    // entry while it is written could see half of each address). So the table has room for a whole
    // table of new ids beside the one in use (SPARE_FACTOR): a change that fits maxBackends once it is
    // in, swaps included, always finds ids no ring reads; the freed ones are reused by a later change.
    const taken = new Set([...Object.values(ids), ...Object.values(this.model.backendIds)]);
    const cap = this.maps.backends.meta.maxEntries;
    const fresh: string[] = [];
    let nextId = 0;
    for (const k of Object.keys(refs)) {
      if (ids[k] !== undefined) continue;
      while (taken.has(nextId)) nextId++;
      if (nextId >= cap) {
        // only a table made before the spare ids (cap == maxBackends) gets here
        throw new ValidationError(`backend table full during the switch: the new backend(s) need ids of their own while the rings still read the ones they replace, and this instance's table has only maxBackends (${max}) ids (it was started by a build without spare ids)`, 409, [], `restart the instance to get a table with room for the switch: pnpm lab svc stop --instance ${this.instance}, then start it again with the config (new connections are not balanced in between); or make the change in two steps that each fit`);
      }
      ids[k] = nextId;
      taken.add(nextId);
      fresh.push(k);
    }
    // every listed backend (drained and down ones too: they may come back) needs a slot of its own
    for (const id of touched) {
      const n = after(id).backends.length;
      if (n > R) throw new ValidationError(`${id}: ${n} backends but the instance's ringSize is ${R}: each backend needs a ring slot of its own; remove one, or start the instance again with a ringSize of at least ${nextPrime(n)}`, 409);
    }
    // rings of touched services; unchanged rings are not rewritten
    const rings = new Map<string, number[]>();
    const freedIdx = new Map(removed.map((id) => [this.model.services[id]!.index, this.model.services[id]!]));
    for (const id of touched) {
      const s = after(id);
      const ring = ringOf(s, ids, R);
      const prev = this.model.services[id];
      if (prev && prev.algorithm === s.algorithm && prev.count === ring.length && sameRing(ringOf(prev, this.model.backendIds, R), ring)) continue;
      // a new service on the index of one removed in this change: the half that one is not reading.
      // The half connects read now is the services map's, not the model's: the two differ where a
      // switch went in and its state did not (a SIGKILL between them), and a ring written into the
      // model's "idle" half would then be rewritten under live connects (review, session 56)
      const freed = prev ? undefined : freedIdx.get(s.index);
      const liveHalf = prev ? (this.maps.services.get(svcKey(parseVip(id, heldAddr)))?.half ?? prev.half) : undefined;
      s.half = liveHalf !== undefined ? 1 - liveHalf : freed ? 1 - freed.half : 0;
      s.count = ring.length;
      rings.set(id, ring);
    }
    let writes = 0;
    // the services this change touches, on disk before its first map write: killed before its state
    // file is written, the change is undone by the next one (repairCutShort)
    if (this.pinned) writeFileAtomic(pendingPath(this.instance), JSON.stringify({ services: [...changes.keys()] }));
    // keys and ids here are the model's, checked when they came in: read as held (heldAddr), so a
    // service or backend an older build took (::ffff:a.b.c.d) can still be changed and removed
    // 1. backends (fresh ids: nothing reads them yet)
    for (const k of fresh) {
      const hp = parseHostPort(k, undefined, heldAddr);
      this.maps.backends.set(ids[k]!, { addr: addrBytes(hp.address), port: htons(hp.port!), family: hp.address.includes(':') ? 6 : 4, _pad: 0 });
      this.maps.backend_hits.set(ids[k]!, 0n); // the id's counter starts at zero for its new owner
      writes += 2;
    }
    // a new service's counter likewise (its index is not read before the switch below; on a
    // reused index the removed service's last connects before its delete count to the new one)
    for (const id of touched) {
      if (this.model.services[id]) continue;
      this.maps.service_hits.set(after(id).index, 0n);
      writes++;
    }
    // 2. rings into the inactive halves
    const batch: [number, number][] = [];
    for (const [id, ring] of rings) {
      const s = after(id);
      const base = (s.index * 2 + s.half) * R;
      ring.forEach((b, i) => batch.push([base + i, b]));
    }
    for (let i = 0; i < batch.length; i += 65536) this.maps.svc_ring.updateBatch(batch.slice(i, i + 65536));
    writes += batch.length;
    // 3 + 4. deletes and service values (the switch), undone together on failure
    const undo: (() => void)[] = [];
    let n = 0;
    try {
      // deletes first: the services map holds maxServices entries, so a change that swaps a VIP for
      // another at that limit has no room for the new key until the old one is gone (E2BIG)
      for (const id of removed) {
        if (this.failAfter !== null && n >= this.failAfter) throw new InjectedFault(n);
        const k = svcKey(parseVip(id, heldAddr));
        const before = this.maps.services.get(k);
        this.maps.services.delete(k);
        if (before) undo.push(() => this.maps.services.set(k, before));
        n++;
      }
      for (const id of rings.keys()) {
        if (this.failAfter !== null && n >= this.failAfter) throw new InjectedFault(n);
        const s = after(id);
        const k = svcKey(parseVip(id, heldAddr));
        const before = this.maps.services.get(k);
        this.maps.services.set(k, svcVal(s));
        undo.push(() => (before ? this.maps.services.set(k, before) : this.maps.services.delete(k)));
        n++;
      }
    } catch (e) {
      this.undoAll(undo);
      throw e;
    }
    writes += n;
    const was = { services: { ...this.model.services }, backendIds: this.model.backendIds, backendRefs: this.model.backendRefs };
    for (const [id, st] of changes) {
      if (st) this.model.services[id] = st;
      else delete this.model.services[id];
    }
    this.model.backendIds = ids;
    this.model.backendRefs = refs;
    try {
      this.saveState();
      if (this.pinned) fs.rmSync(pendingPath(this.instance), { force: true });
    } catch (e) {
      // the state file could not be written (a full disk, the instance removed meanwhile): the
      // switch is undone, so that the maps and the state file, which the next change and every
      // other command go by, name the same rings
      this.undoAll(undo);
      Object.assign(this.model, was);
      throw e;
    }
    this.syncHealth();
    // removed services count: a takeover whose config dropped services said "0 service(s) changed"
    return { changed: rings.size + removed.length, writes, ms: performance.now() - t0 };
  }

  // ---- operations (CLI, scenario, tests) ----

  addService(s: ServiceConfig): ApplyResult {
    const n = normService(s, 'service');
    if (this.model.services[n.id]) throw new ValidationError(`service ${n.id} exists`, 409);
    return this.applyServices([n], []);
  }

  removeService(vip: string): ApplyResult {
    return this.applyServices([], [this.heldId(vip)]);
  }

  /** weight 0 is allowed as in setWeight: listed, but no new connections (what drain does) */
  addBackend(vip: string, addr: string, weight = 1): ApplyResult {
    const spec = parseVip(vip);
    const id = vipString(spec);
    const s = this.model.services[id];
    if (!s) throw new ValidationError(`unknown service ${id}; pnpm lab svc list shows the services`, 404);
    // only the new backend is checked: the others were when they came, and a service whose
    // backends all have weight 0 (set one by one) may get another one at 0
    const b = normBackendS(spec, { address: addr, weight }, `new backend of ${id}`);
    if (s.backends.some((x) => backendKey(x) === backendKey(b))) throw new ValidationError(`${id} already has backend ${backendKey(b)}`, 409);
    const n: NormService = { ...spec, id, algorithm: s.algorithm, healthCheck: s.healthCheck, backends: [...s.backends.map(({ address, port, weight: w }) => ({ address, port, weight: w })), b] };
    return this.applyServices([n], []);
  }

  /**
   * A backend of s by name, as the instance holds it: a state file written by an older build may
   * list one the parser refuses now (::ffff:a.b.c.d in an IPv6 service, a zone id it dropped), and
   * it must stay removable. A name that matches nothing gets the parser's refusal, else a 404.
   */
  private findBackend(s: ServiceState, addr: string): BackendState {
    const spec = parseVip(s.id, heldAddr);
    const hp = parseHostPort(addr, spec.port, heldAddr);
    const b = s.backends.find((x) => x.address === hp.address && x.port === hp.port);
    if (b) return b;
    parseHostPort(addr, spec.port);
    throw new ValidationError(`${s.id} has no backend ${backendKey({ address: hp.address, port: hp.port! })}; it has ${s.backends.map(backendKey).join(', ') || 'none'}`, 404);
  }

  /** the id of the service named `vip`, found as findBackend finds a backend */
  private heldId(vip: string): string {
    const id = vipString(parseVip(vip, heldAddr));
    return this.model.services[id] ? id : vipString(parseVip(vip));
  }

  /** remove: out of the ring; established connections are untouched (they never pass through here) */
  removeBackend(vip: string, addr: string): ApplyResult {
    const id = this.heldId(vip);
    return this.mutate(id, (s) => {
      const b = this.findBackend(s, addr);
      s.backends = s.backends.filter((x) => x !== b);
    });
  }

  /** drain: out of the ring for new connections, still listed (re-enable with setWeight) */
  drainBackend(vip: string, addr: string): ApplyResult {
    const id = this.heldId(vip);
    return this.mutate(id, (s) => {
      this.findBackend(s, addr).state = 'draining';
    });
  }

  setWeight(vip: string, addr: string, weight: number): ApplyResult {
    if (!Number.isInteger(weight) || weight < 0 || weight > 1000) throw new ValidationError(`weight ${weight} must be an integer 0-1000`);
    const id = this.heldId(vip);
    return this.mutate(id, (s) => {
      const b = this.findBackend(s, addr);
      b.weight = weight;
      if (b.state === 'draining') b.state = 'active';
    });
  }

  setDown(vip: string, addr: string, down: boolean): ApplyResult {
    const id = this.heldId(vip);
    return this.mutate(id, (s) => {
      const b = this.findBackend(s, addr);
      if (down && b.state === 'active') b.state = 'down';
      if (!down && b.state === 'down') b.state = 'active';
    });
  }

  /** the kernel's view of one of this controller's programs (run time and count while kernel.bpf_stats is on); null when opened from pins */
  programInfo(name: (typeof PROGRAMS)[keyof typeof PROGRAMS][number]): ProgInfo | null {
    return this.skel ? this.skel.programs[name].info() : null;
  }

  /** per-CPU counters summed */
  stats(): Record<(typeof STAT_NAMES)[number], number> {
    const out = {} as Record<(typeof STAT_NAMES)[number], number>;
    for (const n of STAT_NAMES) out[n] = (this.maps.svc_stats.getPerCpu(STAT_INDEX[n]) ?? []).reduce((a, b) => a + Number(b), 0);
    return out;
  }

  /** connections/datagrams rewritten per service and per backend, summed over CPUs (one batch read each) */
  hits(): { services: Map<string, number>; backends: Map<string, number> } {
    const sum = (m: BpfMap<number, bigint>): Map<number, number> => {
      const out = new Map<number, number>();
      for (const [k, v] of m.entries()) out.set(k, (v as bigint[]).reduce((a, b) => a + Number(b), 0));
      return out;
    };
    const byIndex = sum(this.maps.service_hits);
    const byId = sum(this.maps.backend_hits);
    return {
      services: new Map(Object.values(this.model.services).map((s) => [s.id, byIndex.get(s.index) ?? 0])),
      backends: new Map(Object.entries(this.model.backendIds).map(([k, id]) => [k, byId.get(id) ?? 0])),
    };
  }

  list(): ServiceState[] {
    return Object.values(this.model.services).sort((a, b) => a.index - b.index);
  }

  /** TCP health checks (reused from the XDP LB) for services with healthCheck: true */
  enableHealthChecks(log: (s: string) => void = () => {}): void {
    this.healthLog = log;
    this.health ??= new HealthChecker(this.model.config.health, (key, up) => {
      const [id, addr] = key.split('|') as [string, string];
      const change = () => {
        this.reload(); // a CLI command may have changed the instance since
        if (!this.model.services[id]) return;
        this.setDown(id, addr, !up);
        log(`${id} backend ${addr} ${up ? 'up' : 'down'}`);
      };
      (this.pinned ? withLock(this.instance, change) : Promise.resolve().then(change)).catch((e: Error) => log(`health change of ${key} not applied: ${e.message}`));
    });
    this.syncHealth();
    // `svc backend add/remove` from another shell change only the state file: without a look at it
    // here a backend added so was never checked (a dead one kept its connections) and a removed one
    // was probed forever. A stat per interval is cheap; the file is re-read only when it changed.
    if (this.pinned && !this.stateTimer) {
      this.stateTimer = setInterval(() => {
        try {
          if (this.stateStamp() !== this.seenStamp) this.reload();
        } catch (e) {
          log(`state file not re-read: ${(e as Error).message}`);
        }
      }, this.model.config.health.intervalMs);
      this.stateTimer.unref();
    }
  }

  private stateTimer: NodeJS.Timeout | null = null;
  /** the state file as last read or written here (inode, size, mtime: writes replace it by rename) */
  private seenStamp = '';
  private stateStamp(): string {
    try {
      const st = fs.statSync(statePath(this.instance), { bigint: true });
      return `${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch {
      return '';
    }
  }

  /** the health checks' watch keys (service|backend), for tests and diagnostics */
  healthWatched(): string[] {
    return [...this.watched].sort();
  }

  private syncHealth(): void {
    if (!this.health) return;
    const want = new Set<string>();
    const fixes: [string, string, boolean][] = [];
    for (const s of Object.values(this.model.services)) {
      if (!s.healthCheck) continue;
      for (const b of s.backends) {
        const key = `${s.id}|${backendKey(b)}`;
        want.add(key);
        this.health.watch({ key, address: b.address, port: b.port }, b.state !== 'down');
        // The model against what the probe found: a "down" the checks reported while the backend
        // was draining is dropped (drain outranks it), and `backend weight` then made it active
        // again — a dead backend back in the ring for good, since the checker had told its news
        // once (review, session 56). So wherever the two differ the probe's answer is applied again.
        const up = this.health.probeState(key);
        if ((up === false && b.state === 'active') || (up === true && b.state === 'down')) fixes.push([s.id, backendKey(b), up]);
      }
    }
    for (const key of this.watched) if (!want.has(key)) this.health.unwatch(key);
    this.watched = want;
    for (const [id, addr, up] of fixes) this.reassert(id, addr, up);
  }

  private watched = new Set<string>();
  private healthLog: (s: string) => void = () => {};
  /** watch keys whose probe state is being applied again (one at a time each) */
  private reasserting = new Set<string>();

  /** apply a probe's state to a backend whose model state disagrees (see syncHealth) */
  private reassert(id: string, addr: string, up: boolean): void {
    const key = `${id}|${addr}`;
    if (this.reasserting.has(key)) return;
    this.reasserting.add(key);
    const change = () => {
      this.reload();
      const b = this.model.services[id]?.backends.find((x) => backendKey(x) === addr);
      if (!b || this.health?.probeState(key) !== up || !((up === false && b.state === 'active') || (up === true && b.state === 'down'))) return;
      const was = b.state;
      this.setDown(id, addr, !up);
      this.healthLog(`${id} backend ${addr} ${up ? 'up' : 'down'} (the health checks' state, applied again: it was ${was})`);
    };
    (this.pinned ? withLock(this.instance, change) : Promise.resolve().then(change))
      .catch((e: Error) => this.healthLog(`health state of ${key} not applied again: ${e.message}`))
      .finally(() => this.reasserting.delete(key));
  }

  /**
   * Re-read the state file of a pinned instance (another process may have changed it), and follow
   * its backends with the health checks: the watched set is the model's, whichever process wrote it.
   */
  reload(): void {
    if (!this.pinned) return;
    const stamp = this.stateStamp();
    if (!stamp) return;
    const m = JSON.parse(fs.readFileSync(statePath(this.instance), 'utf8')) as Model;
    const problem = modelProblem(m);
    if (problem) throw stateUnreadable(this.instance, problem);
    this.model = m;
    this.seenStamp = stamp;
    this.syncHealth();
  }

  /** detach and free everything this controller made (and, pinned, its pins and state file) */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.stateTimer) clearInterval(this.stateTimer);
    this.health?.stop();
    for (const l of this.links.reverse()) l.close();
    for (const m of this.ownedMaps) m.close();
    this.skel?.close();
  }

  /** close and, for a pinned instance, remove its pins and state: balancing ends */
  stop(): void {
    const inst = this.instance;
    this.close();
    if (this.pinned) cleanupPins(inst);
  }
}

function sameRing(a: number[], b: number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * `svc stop`. An instance whose daemon is alive is stopped through its daemon (SIGTERM: it detaches
 * and removes everything itself, as on Ctrl-C): removed under it, the daemon would go on health-
 * checking an instance that no longer exists. Otherwise (svc start, or a daemon that died) the pins
 * and state are removed here. Returns what was done.
 */
export async function stopInstance(instance: string): Promise<string> {
  const owner = (): Model['daemon'] => {
    try {
      const d = (JSON.parse(fs.readFileSync(statePath(instance), 'utf8')) as Model).daemon;
      return d && daemonAlive(d) ? d : undefined;
    } catch {
      return undefined; // unreadable or gone: its pins are removed below
    }
  };
  // A daemon may take the instance over between a look at its record and the lock (it writes itself
  // in under the lock): the removal went ahead on the dead daemon's record read before, and the new
  // daemon kept running with nothing behind it. So the record is read again under the lock, and a
  // live owner found there is stopped through itself, like one found before.
  for (let round = 0; round < 3; round++) {
    const d = owner();
    if (d) return stopDaemon(instance, d);
    const took = await withLock(instance, () => {
      const now = owner();
      if (!now) cleanupPins(instance);
      return now;
    });
    if (!took) return `stopped instance ${instance}`;
  }
  throw new LabError(`instance "${instance}" changed owner three times while svc stop ran; nothing was removed`, `pnpm lab svc list --instance ${instance} shows who runs it now; run pnpm lab svc stop --instance ${instance} again`);
}

/** an instance whose daemon is alive: SIGTERM, and it removes the instance itself */
async function stopDaemon(instance: string, d: NonNullable<Model['daemon']>): Promise<string> {
  if (!(await terminate(d.pid, d.startTime))) throw new LabError(`the svc daemon of instance "${instance}" (pid ${d.pid}) did not exit within 10 s of SIGTERM; nothing was removed`, `find out why from its log, or end it with kill -9 ${d.pid} and run pnpm lab svc stop --instance ${instance} again`);
  // it removes its instance on the way out; what one that failed at that left is removed here
  const left = fs.existsSync(statePath(instance));
  if (left) cleanupPins(instance);
  return `stopped instance ${instance}: its svc daemon (pid ${d.pid}) exited${left ? '; what it left was removed' : ' and removed it'}`;
}

/**
 * An instance with pins but no state file: a start killed between pinning its links and writing
 * its state (its programs stay attached, balancing with whatever services it wrote). Undefined when
 * there are none, or the directory holds anything an svc instance does not pin (another control
 * plane's: an LB instance may be named svc-x under the same root). `starting`: a start holds the
 * start lock (one for every instance, so it may be another's); the caller cannot tell, and waits.
 * `locked`: the caller holds that lock itself.
 */
export function cutShort(instance: string, locked = false): { text: string; starting?: number } | undefined {
  // the lock first: a start that finishes between the two checks is then seen as starting, not cut short
  const starting = locked ? null : lockHolderAlive(lockPath(START_LOCK));
  const dir = pinDir(instance);
  if (fs.existsSync(statePath(instance)) || !fs.existsSync(dir)) return undefined;
  const ours = new Set<string>([...MAP_NAMES, 'links']);
  if (!fs.readdirSync(dir).every((f) => ours.has(f))) return undefined;
  if (starting) return { text: `socket LB instance "${instance}" has pins but no state yet, and a start is under way (pid ${starting})`, starting };
  const links = fs.existsSync(path.join(dir, 'links')) ? fs.readdirSync(path.join(dir, 'links')).length : 0;
  return { text: `socket LB instance "${instance}" was cut short while starting: ${links} program(s) still attached from its pins under ${dir}, no state (${statePath(instance)})` };
}

/** remove what a start cut short left (see cutShort), under the start lock: none is in flight */
export async function removeCutShort(instance: string): Promise<number | undefined> {
  return withLock(START_LOCK, () => {
    if (!cutShort(instance, true)) return undefined;
    const ld = path.join(pinDir(instance), 'links');
    const links = fs.existsSync(ld) ? fs.readdirSync(ld).length : 0;
    cleanupPins(instance);
    return links;
  }, 30_000);
}

/** remove an instance's pins (links first: that detaches) and its state file */
export function cleanupPins(instance: string): void {
  const dir = pinDir(instance);
  const ld = path.join(dir, 'links');
  if (fs.existsSync(ld)) for (const f of fs.readdirSync(ld)) fs.rmSync(path.join(ld, f), { force: true });
  if (fs.existsSync(dir)) for (const f of fs.readdirSync(dir)) if (f !== 'links') fs.rmSync(path.join(dir, f), { force: true });
  removePinDir(ld);
  removePinDir(dir);
  fs.rmSync(statePath(instance), { force: true });
  fs.rmSync(pendingPath(instance), { force: true });
  fs.rmSync(lockPath(instance), { force: true });
}

/** Run fn holding the instance's lock file (CLI commands and the daemon's health checks serialise here). */
export async function withLock<T>(instance: string, fn: () => T | Promise<T>, timeoutMs = 10_000): Promise<T> {
  fs.mkdirSync(RUN_DIR, { recursive: true });
  return withLockWait(lockPath(instance), fn, (holder) => new LabError(`${instance === START_LOCK ? 'another svc start' : `instance "${instance}"`} is locked by pid ${holder}`, `wait for pid ${holder} to finish (another svc command or the daemon's health check) and try again`), timeoutMs);
}

/**
 * A takeover keeps the dead daemon's links (fail static) but not necessarily its programs: where
 * the lab was upgraded since, its programs (and their bugs) went on balancing until `svc stop`, a
 * gap in balancing. This build's programs are loaded over the pinned maps and swapped into the
 * pinned links where their tag (the instructions' hash) differs: BPF_LINK_UPDATE, atomic per hook.
 * Where this build cannot use those maps (their shape changed) the old programs stay, said so.
 */
function upgradePrograms(instance: string, file: string, model: Model): string {
  const dir = pinDir(instance);
  const progs = [...PROGRAMS.connect, ...PROGRAMS.udp, ...(model.getpeername ? PROGRAMS.getpeername : [])];
  const sk = socketLb.open(file);
  try {
    for (const n of MAP_NAMES) sk.obj.setPinPath(n, path.join(dir, n));
    // sized as pinned: libbpf reuses a pinned map only when it is identical
    const pinned = Object.fromEntries(MAP_NAMES.map((n) => {
      const i = pinnedMapInfo(path.join(dir, n));
      if (!i) throw new BpfError(`cannot open the pinned map ${path.join(dir, n)}`);
      return [n, i.maxEntries];
    }));
    sk.setRodata({ ring_size: model.config.ringSize }).load({ skip: model.getpeername ? [] : [...PROGRAMS.getpeername], maxEntries: pinned });
    const replaced: string[] = [];
    progs.forEach((p, i) => {
      const l = Link.openPinned(path.join(dir, 'links', String(i)));
      if (!l) return;
      try {
        const prog = sk.programs[p];
        if (progInfoById(l.info().progId)?.tag !== prog.info().tag) (l.update(prog.ptr), replaced.push(p));
      } finally {
        l.close(); // our reference: the pin keeps the link
      }
    });
    return replaced.length ? `${replaced.length} of its programs replaced by this build's (${replaced.join(', ')}; link update, no gap)` : 'its programs are this build\'s';
  } catch (e) {
    return `its programs kept: this build's cannot take over its maps (${String((e as Error).message).split('\n')[0]}); svc stop and start again to upgrade them`;
  } finally {
    sk.close();
  }
}
