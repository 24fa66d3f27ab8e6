// The tc shaper's kernel side and control plane: loads bpf/tc_shape.bpf.o, puts the `fq` qdisc
// at the device's root (with iproute2's `tc`: fq is what enforces skb->tstamp), attaches the
// egress shaper and the ingress filter through libbpf's bpf_tc_* (the binding's attachTc), and
// changes classes, matches and rules only by map writes, so nothing is reloaded for a new rate.
//
// A change is validated completely first (config.ts), then written through an undo journal: a
// write the kernel refuses rolls back the earlier ones, so maps and model stay as they were.
// Filter rules are double-buffered (written to the idle generation, then one flip).
// Everything started is undone by close(), on a failed start, and from a process 'exit' hook:
// the hook runs before the binding's own (registered first), inside the device's namespace, so
// bpf_tc_detach never acts on a same-numbered interface of the caller's namespace.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BpfMap, attachTc, removePinDir, withNetns, type BpfObject, type Link } from '../libbpf/index.ts';
import { objectPath } from '../../bpf/build.ts';
import { LabError } from '../../common/errors.ts';
import { MAX_RULES, latencyHorizonNs, netPort, type ClassPlan, type Match, type Plan, type RulePlan } from './config.ts';
import { tcShape, tc_shape_class_flags, tc_shape_rule_action, type TcShape, type tc_class, type tc_class_stats, type tc_dst_key, type tc_flow_key, type tc_global_stats, type tc_rule, type tc_rule_stats } from '../../bpf/gen/tc_shape.ts';

export const MAP_NAMES = ['classes', 'class_state', 'class_stats', 'flow_class', 'cgroup_class', 'dst_class', 'rules', 'rule_stats', 'filter_gen', 'globals'] as const;
type MapName = (typeof MAP_NAMES)[number];
export type TcMaps = Record<MapName, BpfMap<any, any>>;

export const STATE_DIR = '/run/ebpf-lab/tc';
export const PIN_ROOT = '/sys/fs/bpf/ebpf-lab';
/** distinctive tc handle/priority: a detach can only ever remove our own filter */
const TC_HANDLE = 0x16ed;
const TC_PRIO = 0x16;
const CLASS_ACTIVE = tc_shape_class_flags.TC_CLASS_ACTIVE;

export interface ClassState { name: string; id: number; rateBps: bigint; horizonNs: bigint; horizonAuto?: boolean; matches: Match[] }
export interface Model { classes: ClassState[]; rules: RulePlan[]; gen: number }

export interface ClassStats { name: string; id: number; rateBps: bigint; packets: bigint; bytes: bigint; delayed: bigint; horizonDrops: bigint; idleNs: bigint }
export interface RuleStats { name: string; slot: number; action: 'drop' | 'count'; packets: bigint; bytes: bigint }

// ---- model (de)serialisation for the state file the CLI shares with the daemon ----
const replacer = (_k: string, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? { u8: [...v] } : v);
const reviver = (_k: string, v: unknown) => (typeof v === 'string' && /^\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v && typeof v === 'object' && 'u8' in v ? Uint8Array.from((v as { u8: number[] }).u8) : v);
export const encodeModel = (m: Model & Record<string, unknown>) => JSON.stringify(m, replacer);
export const decodeModel = (s: string) => JSON.parse(s, reviver) as Model & Record<string, unknown>;

function entryKey(m: Match): { map: 'flow_class' | 'cgroup_class' | 'dst_class'; id: string; key: unknown } {
  if (m.kind === 'cgroup') return { map: 'cgroup_class', id: `c${m.id}`, key: m.id };
  if (m.kind === 'dst') {
    // LPM data: port (16 bits), family (8), then the address
    const key: Partial<tc_dst_key> = { prefixlen: 16 + 8 + m.prefixlen, port: netPort(m.port), family: m.family, addr: m.addr };
    return { map: 'dst_class', id: `d${m.family}:${[...m.addr].join('.')}/${m.prefixlen}:${m.port}`, key };
  }
  const key: Partial<tc_flow_key> = { saddr: m.saddr, daddr: m.daddr, sport: netPort(m.sport), dport: netPort(m.dport), proto: m.proto, family: m.family };
  return { map: 'flow_class', id: `f${m.family}:${[...m.saddr].join('.')}:${m.sport}-${[...m.daddr].join('.')}:${m.dport}/${m.proto}`, key };
}

/** One change's undo log: every write reads the old value first; rollback restores in reverse. */
class Journal {
  private undo: (() => void)[] = [];
  writes = 0;
  constructor(private failAfter: number | null) {}
  private step(): void {
    if (this.failAfter !== null && this.writes >= this.failAfter) throw new Error(`injected fault: map write #${this.writes + 1} refused (test hook)`);
    this.writes++;
  }
  set(m: BpfMap<any, any>, k: unknown, v: unknown): void {
    this.step();
    const old = m.perCpu ? m.getPerCpu(k) : m.get(k);
    m.set(k, v as never);
    this.undo.push(() => (old === undefined ? m.delete(k) : m.set(k, old as never)));
  }
  del(m: BpfMap<any, any>, k: unknown): void {
    this.step();
    const old = m.get(k);
    if (old === undefined) return;
    m.delete(k);
    this.undo.push(() => m.set(k, old as never));
  }
  rollback(): void {
    for (const u of this.undo.reverse()) {
      try {
        u();
      } catch { /* best effort: keep undoing the rest */ }
    }
    this.undo = [];
  }
}

/** The control plane over the maps (owned by a TcShaper, or opened from pins by the CLI). */
export class TcControl {
  /** set by a filter-only shaper (no fq): shaping classes are refused */
  filterOnly = false;
  constructor(
    readonly maps: TcMaps,
    public model: Model,
    /** called after every successful change (the daemon/CLI persist the model) */
    private onChange: (m: Model) => void = () => {},
  ) {}

  private ncpu(): number {
    return this.maps.class_stats.ncpus;
  }

  /** Apply a validated plan as a whole. failAfter: test hook (refuse the n+1-th map write). */
  apply(plan: Plan, opts: { failAfter?: number } = {}): { writes: number } {
    if (this.filterOnly && plan.classes.length) throw new LabError('this instance runs filters only (no fq qdisc): classes would not be enforced', 'remove "classes" from the config, or start without --filter-only on a kernel with sch_fq');
    const j = new Journal(opts.failAfter ?? null);
    const old = this.model;
    const byName = new Map(old.classes.map((c) => [c.name, c]));
    const used = new Set(plan.classes.map((c) => byName.get(c.name)?.id).filter((x): x is number => x !== undefined));
    let next = 1;
    const fresh = (): number => {
      while (used.has(next) || old.classes.some((c) => c.id === next)) next++;
      used.add(next);
      return next;
    };
    const classes: ClassState[] = plan.classes.map((c: ClassPlan) => ({ ...c, id: byName.get(c.name)?.id ?? fresh() }));
    if (classes.some((c) => c.id > 255)) throw new LabError('no free class id (at most 255 classes, ids of removed classes are reused on the next change)', 'apply fewer classes');
    const zeroStats = Array.from({ length: this.ncpu() }, () => ({}));
    let gen = old.gen;
    try {
      for (const c of classes) {
        const prev = byName.get(c.name);
        if (!prev) {
          // a new class (or a reused id) starts with no departure time and zero counters
          j.set(this.maps.class_state, c.id, { t_last: 0n });
          j.set(this.maps.class_stats, c.id, zeroStats);
        }
        if (!prev || prev.rateBps !== c.rateBps || prev.horizonNs !== c.horizonNs) {
          j.set(this.maps.classes, c.id, { rate_bps: c.rateBps, horizon_ns: c.horizonNs, flags: CLASS_ACTIVE } satisfies Partial<tc_class>);
        }
      }
      const want = new Map<string, { map: 'flow_class' | 'cgroup_class' | 'dst_class'; key: unknown; id: number }>();
      for (const c of classes) for (const m of c.matches) {
        const e = entryKey(m);
        want.set(e.id, { ...e, id: c.id });
      }
      const had = new Map<string, { map: 'flow_class' | 'cgroup_class' | 'dst_class'; key: unknown; id: number }>();
      for (const c of old.classes) for (const m of c.matches) {
        const e = entryKey(m);
        had.set(e.id, { ...e, id: c.id });
      }
      for (const [k, e] of want) if (had.get(k)?.id !== e.id) j.set(this.maps[e.map], e.key, e.id);
      for (const [k, e] of had) if (!want.has(k)) j.del(this.maps[e.map], e.key);
      for (const c of old.classes) if (!classes.some((n) => n.id === c.id)) j.set(this.maps.classes, c.id, {});
      if (JSON.stringify(plan.rules, replacer) !== JSON.stringify(old.rules, replacer)) {
        const idle = 1 - old.gen;
        plan.rules.forEach((r, i) => {
          const slot = idle * MAX_RULES + i;
          j.set(this.maps.rule_stats, slot, zeroStats);
          j.set(this.maps.rules, slot, { addr: r.addr, prefixlen: r.prefixlen, port: netPort(r.port), proto: r.proto, action: r.action, dir: r.dir, family: r.family, active: 1 } satisfies Partial<tc_rule>);
        });
        if (plan.rules.length < MAX_RULES) j.set(this.maps.rules, idle * MAX_RULES + plan.rules.length, {});
        j.set(this.maps.filter_gen, 0, idle);
        gen = idle;
      }
    } catch (e) {
      j.rollback();
      throw new LabError(`tc config not applied: ${(e as Error).message} (after ${j.writes} map write(s), all rolled back)`, 'nothing changed; check the kernel message above', { cause: e });
    }
    this.model = { classes, rules: plan.rules, gen };
    this.onChange(this.model);
    return { writes: j.writes };
  }

  /**
   * live rate change of one class: one map write, no reload, departure state kept. The horizon:
   * a new one if given ('auto': the latency budget of the new rate), else as it was — an auto
   * horizon follows the rate.
   */
  setRate(name: string, rateBps: bigint, horizon?: bigint | 'auto'): void {
    const c = this.model.classes.find((x) => x.name === name);
    if (!c) throw new LabError(`no class "${name}"`, `classes: ${this.model.classes.map((x) => x.name).join(', ') || '(none)'}`);
    const auto = horizon === 'auto' || (horizon === undefined && !!c.horizonAuto);
    const h = auto ? latencyHorizonNs(rateBps) : (horizon as bigint | undefined) ?? c.horizonNs;
    this.maps.classes.set(c.id, { rate_bps: rateBps, horizon_ns: h, flags: CLASS_ACTIVE } satisfies Partial<tc_class>);
    c.rateBps = rateBps;
    c.horizonNs = h;
    if (auto) c.horizonAuto = true;
    else delete c.horizonAuto;
    this.onChange(this.model);
  }

  private sum<T extends Record<string, bigint>>(m: BpfMap<any, any>, k: number): T {
    const out: Record<string, bigint> = {};
    for (const v of (m.getPerCpu(k) ?? []) as T[]) for (const [f, x] of Object.entries(v)) out[f] = (out[f] ?? 0n) + x;
    return out as T;
  }

  classStats(): ClassStats[] {
    return this.model.classes.map((c) => {
      const s = this.sum<tc_class_stats & Record<string, bigint>>(this.maps.class_stats, c.id);
      return { name: c.name, id: c.id, rateBps: c.rateBps, packets: s.packets ?? 0n, bytes: s.bytes ?? 0n, delayed: s.delayed ?? 0n, horizonDrops: s.horizon_drops ?? 0n, idleNs: s.idle_ns ?? 0n };
    });
  }

  ruleStats(): RuleStats[] {
    return this.model.rules.map((r, i) => {
      const slot = this.model.gen * MAX_RULES + i;
      const s = this.sum<tc_rule_stats & Record<string, bigint>>(this.maps.rule_stats, slot);
      return { name: r.name, slot, action: r.action === tc_shape_rule_action.TC_RULE_DROP ? 'drop' : 'count', packets: s.packets ?? 0n, bytes: s.bytes ?? 0n };
    });
  }

  globals(): tc_global_stats {
    const s = this.sum<tc_global_stats & Record<string, bigint>>(this.maps.globals, 0);
    return { egress_packets: s.egress_packets ?? 0n, ingress_packets: s.ingress_packets ?? 0n, unclassified: s.unclassified ?? 0n, filter_drops: s.filter_drops ?? 0n };
  }
}

export interface ShaperOptions {
  dev: string;
  /** network namespace (a name under /run/netns) the device lives in */
  netns?: string;
  /** pin maps + write a state file so `pnpm lab tc …` from another process can change them */
  instance?: string;
  /** also attach the ingress filter program (default true) */
  ingress?: boolean;
  /**
   * filters only: no fq at the root, and classes are refused (without fq nothing enforces the
   * departure times, so a "shaped" class would silently not be). For kernels built without sch_fq.
   */
  filterOnly?: boolean;
}

/** the fq qdisc is missing from this kernel (CONFIG_NET_SCH_FQ): EDT shaping cannot be enforced */
export class FqUnsupported extends LabError {
  constructor(readonly evidence: string) {
    super(`this kernel has no fq qdisc, which EDT shaping needs to enforce departure times (${evidence})`, 'use a kernel with CONFIG_NET_SCH_FQ (e.g. --kernel 6.1), or run filters only (--filter-only)');
    this.name = 'FqUnsupported';
  }
}

const tcArgv = (netns: string | undefined, args: string[]): [string, string[]] => (netns ? ['nsenter', [`--net=/run/netns/${netns}`, '--', 'tc', ...args]] : ['tc', args]);
function tcSync(netns: string | undefined, args: string[]): string {
  const [c, a] = tcArgv(netns, args);
  try {
    return execFileSync(c, a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new LabError(`tc ${args.join(' ')}${netns ? ` (netns ${netns})` : ''}: ${(err.stderr || err.message).trim().split('\n')[0]}`, 'is iproute2 installed (pnpm lab setup) and the device present?');
  }
}
/** root qdisc kinds a device gets by default: replacing (and later deleting) them loses nothing */
const DEFAULT_ROOTS = new Set(['noqueue', 'pfifo_fast', 'fq_codel', 'mq', 'fq', 'pfifo']);

export function statePath(instance: string): string {
  return path.join(STATE_DIR, `${instance}.json`);
}
export function pinDir(instance: string): string {
  return path.join(PIN_ROOT, `tc-${instance}`);
}

export class TcShaper {
  private links: Link[] = [];
  private fqSet = false;
  private closed = false;
  private exitHook = () => this.close();

  readonly obj: BpfObject;
  private constructor(readonly opts: ShaperOptions, readonly skel: TcShape, readonly control: TcControl) {
    this.obj = skel.obj;
  }

  /** Start shaping on a device. Any failure undoes what was done (qdisc, filters, pins). */
  static start(opts: ShaperOptions): TcShaper {
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(opts.dev)) throw new LabError(`bad device name "${opts.dev}"`, 'give an interface name (ip link)');
    if (opts.netns && !fs.existsSync(`/run/netns/${opts.netns}`)) throw new LabError(`no network namespace "${opts.netns}"`, 'ip netns list shows them');
    if (opts.instance && !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(opts.instance)) throw new LabError(`bad instance name "${opts.instance}"`, 'use a-z 0-9 _ -');
    const root = JSON.parse(tcSync(opts.netns, ['-j', 'qdisc', 'show', 'dev', opts.dev, 'root']) || '[]') as { kind: string }[];
    const kind = root[0]?.kind ?? 'noqueue';
    if (!DEFAULT_ROOTS.has(kind)) throw new LabError(`${opts.dev} already has a configured root qdisc (${kind})`, `remove it first (tc qdisc del dev ${opts.dev} root): the shaper replaces the root with fq and removes it on exit`);
    if (opts.instance && fs.existsSync(statePath(opts.instance))) {
      const st = decodeModel(fs.readFileSync(statePath(opts.instance), 'utf8'));
      let alive = false;
      try {
        process.kill(st.pid as number, 0);
        alive = true;
      } catch { /* dead: stale state */ }
      if (alive) throw new LabError(`tc instance "${opts.instance}" is already running (pid ${st.pid})`, 'stop it first or pick another --instance');
      fs.rmSync(statePath(opts.instance), { force: true });
    }
    const pins = opts.instance ? pinDir(opts.instance) : undefined;
    if (pins) {
      // a crashed daemon's pins: start clean (its attachments died with its namespace or process)
      for (const m of MAP_NAMES) fs.rmSync(path.join(pins, m), { force: true });
    }
    const skel = tcShape.open(objectPath('tc_shape'));
    let shaper: TcShaper | undefined;
    try {
      skel.load();
      const maps: TcMaps = skel.maps;
      const control = new TcControl(maps, { classes: [], rules: [], gen: 0 });
      shaper = new TcShaper(opts, skel, control);
      process.prependListener('exit', shaper.exitHook);
      if (pins) {
        fs.mkdirSync(pins, { recursive: true });
        for (const m of MAP_NAMES) maps[m].pin(path.join(pins, m));
        shaper.persist = (m) => {
          fs.mkdirSync(STATE_DIR, { recursive: true });
          fs.writeFileSync(statePath(opts.instance!), encodeModel({ ...m, pid: process.pid, dev: opts.dev, netns: opts.netns ?? null, filterOnly: !!opts.filterOnly }));
        };
        shaper.persist(control.model);
        (control as unknown as { onChange: (m: Model) => void }).onChange = (m) => shaper!.persist(m);
      }
      if (!opts.filterOnly) {
        try {
          tcSync(opts.netns, ['qdisc', 'replace', 'dev', opts.dev, 'root', 'fq']);
        } catch (e) {
          if (/qdisc kind is unknown/i.test((e as Error).message)) throw new FqUnsupported(`tc qdisc replace dev ${opts.dev} root fq: "Specified qdisc kind is unknown"`);
          throw e;
        }
        shaper.fqSet = true;
      } else control.filterOnly = true;
      const attach = () => {
        shaper!.links.push(attachTc(skel.programs.tc_shape_egress, opts.dev, 'egress', { handle: TC_HANDLE, priority: TC_PRIO }));
        if (opts.ingress !== false) shaper!.links.push(attachTc(skel.programs.tc_filter_ingress, opts.dev, 'ingress', { handle: TC_HANDLE, priority: TC_PRIO }));
      };
      if (opts.netns) withNetns(opts.netns, attach);
      else attach();
      return shaper;
    } catch (e) {
      if (shaper) shaper.close();
      else skel.close();
      throw e;
    }
  }

  private persist: (m: Model) => void = () => {};

  /** Detach, remove fq (the device gets its default root back), unpin, delete the state file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.removeListener('exit', this.exitHook);
    const { netns, dev, instance } = this.opts;
    const detach = () => {
      for (const l of this.links.reverse()) l.close();
    };
    try {
      if (!netns) detach();
      else if (fs.existsSync(`/run/netns/${netns}`)) withNetns(netns, detach);
      else {
        // the namespace is gone and its devices' filters with it. The links' detach would still
        // run (here or when the object closes) and act on whatever device has that ifindex in
        // the current namespace — even destroy its clsact — so let it run in an empty one.
        const tmp = `tcgone-${process.pid}`;
        execFileSync('ip', ['netns', 'add', tmp], { stdio: 'ignore' });
        try {
          withNetns(tmp, () => {
            detach();
            this.skel.close();
          });
        } finally {
          execFileSync('ip', ['netns', 'del', tmp], { stdio: 'ignore' });
        }
      }
    } catch { /* keep tearing down */ }
    if (this.fqSet) {
      try {
        tcSync(netns, ['qdisc', 'del', 'dev', dev, 'root']);
      } catch { /* device gone */ }
    }
    if (instance) {
      for (const m of MAP_NAMES) fs.rmSync(path.join(pinDir(instance), m), { force: true });
      removePinDir(pinDir(instance));
      fs.rmSync(statePath(instance), { force: true });
    }
    this.skel.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The CLI's view of a running instance: its pinned maps and the model from the state file. */
export function openInstance(instance: string): TcControl & Disposable {
  const file = statePath(instance);
  if (!fs.existsSync(file)) throw new LabError(`no running tc instance "${instance}"`, 'start one: pnpm lab tc shape start --dev DEV --config FILE');
  const st = decodeModel(fs.readFileSync(file, 'utf8'));
  try {
    process.kill(st.pid as number, 0);
  } catch {
    throw new LabError(`tc instance "${instance}" is not running (pid ${st.pid} is gone)`, 'start it again: pnpm lab tc shape start …');
  }
  const maps = Object.fromEntries(MAP_NAMES.map((n) => [n, BpfMap.openPinned(path.join(pinDir(instance), n))])) as TcMaps;
  const c = new TcControl(maps, { classes: st.classes, rules: st.rules, gen: st.gen }, (m) => {
    fs.writeFileSync(file, encodeModel({ ...st, ...m }));
  });
  c.filterOnly = !!st.filterOnly;
  return Object.assign(c, { [Symbol.dispose]: () => Object.values(maps).forEach((m) => m.close()) });
}
