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
//
// A daemon killed outright (SIGKILL, OOM) runs none of that: its tc filters stay attached and keep
// enforcing (fail closed: its drop rules go on dropping), its pins stay. So the state file records,
// before anything is attached, what the instance will own — the programs' ids, the filter
// handle/priority, whether it creates the clsact and sets fq — and reapDeadInstance() removes
// exactly that (`tc shape stop` of a dead instance, or a `start` under the same name).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BpfMap, attachTc, makePinDir, removePinDir, withNetns, type BpfObject, type Link } from '../libbpf/index.ts';
import { objectPath } from '../../bpf/build.ts';
import { LabError } from '../../common/errors.ts';
import { processAlive, procStart } from '../../common/host.ts';
import { lockHolderAlive, withLockWaitSync } from '../../common/lockfile.ts';
import { instancesIn, instancesNote, writeFileAtomic } from '../../common/state-file.ts';
import { MAX_RULES, autoHorizonProblem, cgroupIdOf, latencyHorizonNs, matchKey, netPort, type ClassPlan, type Match, type Plan, type RulePlan } from './config.ts';
import { tcShape, tc_shape_class_flags, tc_shape_rule_action, type TcShape, type tc_class, type tc_class_stats, type tc_dst_key, type tc_flow_key, type tc_global_stats, type tc_rule, type tc_rule_stats } from '../../bpf/gen/tc_shape.ts';
import { tc_shape_dir, tc_shape_limits } from '../../bpf/gen/tc_shape.enums.ts';
import { findCgroup2Root } from '../../common/cgroup.ts';

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
  if (m.kind === 'cgroup') return { map: 'cgroup_class', id: matchKey(m), key: m.id };
  if (m.kind === 'dst') {
    // LPM data: port (16 bits), family (8), then the address
    const key: Partial<tc_dst_key> = { prefixlen: 16 + 8 + m.prefixlen, port: netPort(m.port), family: m.family, addr: m.addr };
    return { map: 'dst_class', id: matchKey(m), key };
  }
  const key: Partial<tc_flow_key> = { saddr: m.saddr, daddr: m.daddr, sport: netPort(m.sport), dport: netPort(m.dport), proto: m.proto, family: m.family };
  return { map: 'flow_class', id: matchKey(m), key };
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
  /**
   * `known`: the old value as the model has it ({ old: undefined } = no entry). Needed for an LPM
   * trie, whose lookup is longest-prefix, not exact: a new 10.1.0.0/16 inside a 10.0.0.0/8 read
   * the /8's class as its own old value, and a rollback wrote that back instead of deleting it.
   */
  set(m: BpfMap<any, any>, k: unknown, v: unknown, known?: { old: unknown }): void {
    this.step();
    const old = known ? known.old : m.perCpu ? m.getPerCpu(k) : m.get(k);
    m.set(k, v as never);
    this.undo.push(() => (old === undefined ? m.delete(k) : m.set(k, old as never)));
  }
  del(m: BpfMap<any, any>, k: unknown, known?: { old: unknown }): void {
    this.step();
    const old = known ? known.old : m.get(k);
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
  /** false on an egress-only shaper (no ingress program): rules for received packets are refused */
  ingress = true;
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
    const inbound = this.ingress ? [] : plan.rules.filter((r) => r.dir & tc_shape_dir.TC_DIR_INGRESS);
    if (inbound.length) throw new LabError(`this instance has no ingress filter (started with --egress-only): rule${inbound.length > 1 ? 's' : ''} ${inbound.map((r) => r.name).join(', ')} would never see a received packet`, 'give them dir: egress, or start the shaper without --egress-only');
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
      // Sets before deletes, so that a key moving between nested prefixes never falls to a wider
      // class in between; but a map too full for the new keys beside the old (a swap of thousands
      // of matches at once failed E2BIG/ENOSPC at MAX_MATCHES) has that many of its removals
      // first, and only that many: what they matched is unclassified (or in a wider prefix's
      // class) until the new keys are written. An LPM trie refuses even an in-place update when
      // full on kernels without 6.13's "bpf: Handle in-place update for full LPM trie correctly"
      // (5.10 here: ENOSPC; Debian's 6.1 has it): there a class change needs a free slot too,
      // and changes go before new keys.
      const perMap = (m: Map<string, { map: string }>, keep: (k: string) => boolean) => {
        const n = new Map<string, number>();
        for (const [k, e] of m) if (keep(k)) n.set(e.map, (n.get(e.map) ?? 0) + 1);
        return n;
      };
      const held = perMap(had, () => true);
      const added = perMap(want, (k) => !had.has(k));
      const changed = perMap(want, (k) => had.has(k) && had.get(k)!.id !== want.get(k)!.id);
      const excess = new Map<string, number>();
      for (const m of new Set([...added.keys(), ...changed.keys()])) {
        const need = (held.get(m) ?? 0) + (added.get(m) ?? 0) + (m === 'dst_class' && changed.get(m) ? 1 : 0) - this.maps[m as MapName].meta.maxEntries;
        if (need > 0) excess.set(m, need);
      }
      const removed = [...had].filter(([k]) => !want.has(k));
      const early = new Set<string>();
      for (const [k, e] of removed) {
        const n = excess.get(e.map) ?? 0;
        if (n <= 0) continue;
        early.add(k);
        excess.set(e.map, n - 1);
      }
      // a full trie whose change removes nothing (its keys only move between classes): one moved
      // key is taken out first and written back last, the slot the in-place updates need
      const late = new Set<string>();
      for (const [k, e] of want) {
        if ((excess.get(e.map) ?? 0) <= 0 || !had.has(k) || had.get(k)!.id === e.id) continue;
        late.add(k);
        excess.set(e.map, excess.get(e.map)! - 1);
      }
      // old values from the model (see Journal.set: dst_class is an LPM trie)
      for (const [k, e] of removed) if (early.has(k)) j.del(this.maps[e.map], e.key, { old: e.id });
      for (const k of late) j.del(this.maps[had.get(k)!.map], had.get(k)!.key, { old: had.get(k)!.id });
      const order = (k: string) => (late.has(k) ? 2 : had.has(k) ? 0 : 1);
      const sets = [...want].filter(([k, e]) => had.get(k)?.id !== e.id).sort(([a], [b]) => order(a) - order(b));
      for (const [k, e] of sets) j.set(this.maps[e.map], e.key, e.id, { old: had.get(k)?.id });
      for (const [k, e] of removed) if (!early.has(k)) j.del(this.maps[e.map], e.key, { old: e.id });
      // how deep the program walks a socket's cgroup ancestors for a class (bpf/tc_shape.bpf.c
      // cgroup_class_of); written only when it changes (an instance's map from before it has one slot)
      const deepest = (cs: { matches: Match[] }[]) => Math.max(0, ...cs.flatMap((c) => c.matches.flatMap((m) => (m.kind === 'cgroup' ? [cgroupLevel(m.path)] : []))));
      const [dNew, dOld] = [deepest(classes), deepest(old.classes)];
      if (dNew !== dOld) j.set(this.maps.filter_gen, 1, dNew);
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
      // persisted before it counts as applied: a state file that cannot be written (/run full)
      // rolls the maps back too. Written after, the maps held the new config and the state the old,
      // and the next change took the live rule generation for the idle one and rewrote it in place
      this.onChange({ classes, rules: plan.rules, gen });
    } catch (e) {
      j.rollback();
      throw new LabError(`tc config not applied: ${(e as Error).message} (after ${j.writes} map write(s), all rolled back)`, 'nothing changed; check the kernel message above', { cause: e });
    }
    this.model = { classes, rules: plan.rules, gen };
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
    const low = auto ? autoHorizonProblem(rateBps) : undefined;
    if (low) throw new LabError(`class "${name}": ${low}`, horizon === 'auto' ? 'nothing was changed' : `the class's horizon is auto; nothing was changed (--horizon 10s keeps this rate with a fixed horizon)`);
    const h = auto ? latencyHorizonNs(rateBps) : (horizon as bigint | undefined) ?? c.horizonNs;
    const next: ClassState = { ...c, rateBps, horizonNs: h };
    if (auto) next.horizonAuto = true;
    else delete next.horizonAuto;
    const was = this.maps.classes.get(c.id);
    this.maps.classes.set(c.id, { rate_bps: rateBps, horizon_ns: h, flags: CLASS_ACTIVE } satisfies Partial<tc_class>);
    const model = { ...this.model, classes: this.model.classes.map((x) => (x === c ? next : x)) };
    try {
      this.onChange(model); // persisted, or the rate goes back (see apply)
    } catch (e) {
      this.maps.classes.set(c.id, was);
      throw new LabError(`rate of class "${name}" not changed: ${(e as Error).message}`, 'nothing changed; the state file could not be written (is /run full?)', { cause: e });
    }
    this.model = model;
  }

  /**
   * Classes whose cgroup path now names another cgroup (a service restarted under the same
   * path: systemd, a container runtime, the user's own rmdir+mkdir) are moved to it, as one
   * change through apply (journal, rollback, state written before it counts). A cgroup match is
   * stored by id, which is what the kernel compares: left alone, the class would go on naming the
   * removed cgroup's id, which no socket has any more (cgroup2 ids are never reused), and the
   * workload would run unshaped (fail open). A path that is gone, or no cgroup2 directory now,
   * keeps its id: nothing is sent from a removed cgroup, and the path may come back.
   */
  followCgroups(idOf: (path: string) => bigint | undefined = cgroupIdOf): { moved: CgroupMove[]; refused: (CgroupMove & { why: string })[] } {
    const all = cgroupMoves(this.model, idOf);
    // a move onto an id another match holds (a path that comes to name another class's cgroup:
    // a symlink pointed there, a bind mount; cgroup2 refuses rename), or two moves onto one id,
    // would put one key in two classes: the kernel would follow whichever was written last, the
    // state would name both
    const held = new Map<bigint, string>();
    for (const c of this.model.classes) for (const m of c.matches) if (m.kind === 'cgroup') held.set(m.id, `class ${c.name}'s ${m.path}`);
    const targets = new Map<bigint, number>();
    for (const m of all) targets.set(m.to, (targets.get(m.to) ?? 0) + 1);
    const refused = all.flatMap((m) => (held.has(m.to) ? [{ ...m, why: `${held.get(m.to)} is that cgroup already` }] : targets.get(m.to)! > 1 ? [{ ...m, why: 'another match moves to it too' }] : []));
    const moves = all.filter((m) => !refused.some((r) => r.cls === m.cls && r.path === m.path));
    if (!moves.length) return { moved: moves, refused };
    const to = new Map(moves.map((m) => [`${m.cls}\0${m.path}`, m.to]));
    this.apply({
      classes: this.model.classes.map((c) => ({
        name: c.name, rateBps: c.rateBps, horizonNs: c.horizonNs, ...(c.horizonAuto ? { horizonAuto: true } : {}),
        matches: c.matches.map((m) => (m.kind === 'cgroup' && to.has(`${c.name}\0${m.path}`) ? { ...m, id: to.get(`${c.name}\0${m.path}`)! } : m)),
      })),
      rules: this.model.rules,
    });
    return { moved: moves, refused };
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

/** a class's cgroup match whose path names another cgroup than the id the class holds */
export interface CgroupMove { cls: string; path: string; from: bigint; to: bigint }

/** what followCgroups would move (pure but for idOf, which stats the paths) */
export function cgroupMoves(model: Pick<Model, 'classes'>, idOf: (path: string) => bigint | undefined = cgroupIdOf): CgroupMove[] {
  const out: CgroupMove[] = [];
  for (const c of model.classes) for (const m of c.matches) {
    // a relative path (a state of a build before paths were stored resolved) names nothing
    // certain from here: not followed
    if (m.kind !== 'cgroup' || !path.isAbsolute(m.path)) continue;
    const id = idOf(m.path);
    if (id !== undefined && id !== m.id) out.push({ cls: c.name, path: m.path, from: m.id, to: id });
  }
  return out;
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
  /**
   * The classes and rules to enforce from the first packet: written to the maps after load, before
   * anything is attached (a plan the control refuses leaves nothing changed), and what a takeover of
   * a dead instance's filters switches to in one step.
   */
  plan?: Plan;
}

/** the fq qdisc is missing from this kernel (CONFIG_NET_SCH_FQ): EDT shaping cannot be enforced */
export class FqUnsupported extends LabError {
  constructor(readonly evidence: string) {
    super(`this kernel has no fq qdisc, which EDT shaping needs to enforce departure times (${evidence})`, 'run it on a kernel with CONFIG_NET_SCH_FQ (e.g. in a VM: pnpm lab run tc-shaping --kernel 6.1), or run filters only (--filter-only)');
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
/**
 * a cgroup2 directory's level below the root (the root 0), as bpf_skb_ancestor_cgroup_id counts,
 * at most TC_CG_MAX_LEVEL (a deeper one is still matched as a socket's own cgroup); one that is
 * gone (removed since the config was read) gets that maximum, which only lengthens the walk
 */
export function cgroupLevel(dir: string, root = findCgroup2Root()): number {
  const max = tc_shape_limits.TC_CG_MAX_LEVEL;
  try {
    const rel = path.relative(fs.realpathSync(root ?? '/'), fs.realpathSync(dir));
    if (rel.startsWith('..')) return max;
    return Math.min(max, rel.split('/').filter(Boolean).length);
  } catch {
    return max;
  }
}

/**
 * root qdisc kinds a device gets by default: replacing (and later deleting) them loses nothing —
 * if the kernel put them there (handle 0:). One of these kinds a user added (`tc qdisc add … root
 * fq_codel limit 500` gets a handle such as 8001:) carries the user's parameters, and the shaper's
 * exit (`qdisc del root`) would not bring it back: refused like any configured root.
 */
const DEFAULT_ROOTS = new Set(['noqueue', 'pfifo_fast', 'fq_codel', 'mq', 'fq', 'pfifo']);
export function isDefaultRoot(root: { kind: string; handle?: string } | undefined, ourFq: string | null | undefined): boolean {
  if (!root || root.kind === 'noqueue') return true;
  if (!DEFAULT_ROOTS.has(root.kind)) return false;
  // a dead instance's fq of this name (its state records the handle): taken over or replaced
  return root.handle === '0:' || (root.kind === 'fq' && !!ourFq && root.handle === ourFq);
}

/** the tc commands' exit status without throwing: a missing device is an answer here, not an error */
function tcTry(netns: string | undefined, args: string[]): { ok: true; out: string } | { ok: false; err: string } {
  try {
    return { ok: true, out: tcSync(netns, args) };
  } catch (e) {
    return { ok: false, err: (e as Error).message };
  }
}
const devGone = (err: string) => /cannot find device|no such device/i.test(err);

interface TcFilterRow { pref?: number; kind?: string; options?: { handle?: string; prog?: { id?: number; name?: string } } }
/** the filters on one clsact direction (none without a clsact); undefined when the device is absent */
function listFilters(netns: string | undefined, dev: string, dir: 'egress' | 'ingress'): TcFilterRow[] | undefined {
  const r = tcTry(netns, ['-j', 'filter', 'show', 'dev', dev, dir]);
  if (!r.ok) {
    if (devGone(r.err)) return undefined;
    throw new LabError(r.err, 'is iproute2 installed (pnpm lab setup)?');
  }
  // every row: a priority's head row, and other kinds' filters (u32 names them by "fh", not "handle")
  return JSON.parse(r.out || '[]') as TcFilterRow[];
}
function hasClsact(netns: string | undefined, dev: string): boolean {
  const r = tcTry(netns, ['-j', 'qdisc', 'show', 'dev', dev]);
  return r.ok && (JSON.parse(r.out || '[]') as { kind: string }[]).some((q) => q.kind === 'clsact');
}
/** the device's link type as `ip -j link` names it (ether, loopback, none for wireguard/tun, ipip …); undefined if it cannot be read */
function linkTypeOf(netns: string | undefined, dev: string): string | undefined {
  const [c, a] = netns ? ['nsenter', [`--net=/run/netns/${netns}`, '--', 'ip', '-j', 'link', 'show', 'dev', dev]] : ['ip', ['-j', 'link', 'show', 'dev', dev]];
  try {
    return (JSON.parse(execFileSync(c, a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) || '[]') as { link_type?: string }[])[0]?.link_type;
  } catch {
    return undefined; // a missing device is the qdisc commands' error, with their message
  }
}
function rootQdisc(netns: string | undefined, dev: string): { kind: string; handle: string } | undefined {
  const r = tcTry(netns, ['-j', 'qdisc', 'show', 'dev', dev, 'root']);
  return r.ok ? (JSON.parse(r.out || '[]') as { kind: string; handle: string }[])[0] : undefined;
}
const hex = (n: number) => `0x${n.toString(16)}`;
const isOurs = (f: TcFilterRow, handle: number, prio: number) => f.kind === 'bpf' && f.pref === prio && f.options?.handle !== undefined && Number(f.options.handle) === handle;
/** the filter a state file records: our handle and priority, running its program (or, mid-takeover, the one it replaces) */
const ownFilter = (r: TcFilterRow, o: Owned, f: Owned['filters'][number]) => isOurs(r, o.handle, o.prio) && (r.options?.prog?.id === f.progId || (f.was !== undefined && r.options?.prog?.id === f.was));
/** remove the clsact on a device if no filter is left on it (someone else's may be): whether it was removed */
function removeClsactIfBare(netns: string | undefined, dev: string): boolean {
  if ((listFilters(netns, dev, 'egress') ?? []).length + (listFilters(netns, dev, 'ingress') ?? []).length !== 0) return false;
  tcSync(netns, ['qdisc', 'del', 'dev', dev, 'clsact']);
  return true;
}
/**
 * The command a user runs to remove one of our filters by hand. nsenter, not `tc -n`: that one
 * remounts / and /sys like `ip netns exec`, and fails where / is not a mount point (a chroot).
 */
const filterDelCmd = (netns: string | undefined, dev: string, dir: string) => `${netns ? `nsenter --net=/run/netns/${netns} ` : ''}tc filter del dev ${dev} ${dir} protocol all pref ${TC_PRIO} handle ${hex(TC_HANDLE)} bpf`;

/**
 * Fault injection for one test: runs before each direction's attach. A takeover's second replace
 * can fail on a real kernel (ENOMEM, a netlink error) but not on demand, and what happens then
 * decides whether a direction is left open. Nothing but that test sets it.
 */
export const faults: { beforeAttach?: (dir: 'egress' | 'ingress') => void } = {};

/** What an instance attaches, recorded in its state file before it attaches it (see the header). */
export interface Owned {
  /** /proc/PID/stat start time: a reused pid is not the daemon */
  pidStart: string | null;
  handle: number;
  prio: number;
  /**
   * One per direction; the program id tells our filter from any other, even one with our handle.
   * `was`: the dead instance's program a takeover is replacing there (either is ours until the
   * replace is done and recorded). `leftover`: a dead instance's filter on a direction this one
   * does not attach (a takeover across a direction change), removed once this one's filters are
   * attached — kept enforcing until then, so a switch never leaves a direction open.
   */
  filters: { dir: 'egress' | 'ingress'; progId: number; was?: number; leftover?: true }[];
  /** no clsact was there before: the instance's attach creates it */
  clsactCreated: boolean;
  fqSet: boolean;
  fqHandle: string | null;
}
export type InstanceState = Model & { pid: number; dev: string; netns: string | null; filterOnly: boolean; egressOnly?: boolean; owned?: Owned };

export function readState(instance: string): InstanceState {
  const file = statePath(instance);
  try {
    return decodeModel(fs.readFileSync(file, 'utf8')) as unknown as InstanceState;
  } catch (e) {
    throw new LabError(`cannot read the state of tc instance "${instance}" (${file}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, `remove it (rm ${file}) and check the device's filters (tc filter show dev DEV egress)`);
  }
}

/** the state's daemon is running: its pid exists and, where recorded, started when it did */
export function instanceAlive(st: { pid: unknown; owned?: { pidStart: string | null } }): boolean {
  return processAlive(st.pid, st.owned?.pidStart);
}

/** removed/kept: what was done and left (informational); unproven: commands for shaper filters nothing proves its own */
export interface ReapReport { pid: number; dev: string; netns: string | null; removed: string[]; kept: string[]; unproven: string[] }

/** what a start takes over from a dead instance of its name (see takeoverTarget) */
interface Takeover {
  state: InstanceState;
  raw: string;
  /** the dead instance's filters still attached, by direction: the program each runs now */
  progs: Partial<Record<'egress' | 'ingress', number>>;
  /** its fq is still the device's root */
  fq: boolean;
}

/**
 * A dead instance a start under its name takes over instead of removing: its daemon is gone, it was
 * on this device, and at least one filter its state records is still attached under its program.
 * Then the new filters, with the config already in their maps, replace the old ones in place
 * (BPF_TC_F_REPLACE) where both have a filter; a direction only the new start has is attached
 * beside them, and one only the dead instance had is removed after the new filters are in (as is
 * its fq when the new start runs filters only; one that shapes puts fq at the root before any
 * filter is switched). So the device's drop rules and classes never lapse, where a removal and a
 * fresh attach leave it open in between — across a change of directions or fq use too (that was
 * removed first and attached afresh: 8–11k datagrams of a tight stream got through, the test's).
 * Filters under another handle or priority (another build's) cannot be replaced in place: refused.
 */
function takeoverTarget(instance: string, opts: ShaperOptions): Takeover | undefined {
  if (!fs.existsSync(statePath(instance))) return undefined;
  const raw = fs.readFileSync(statePath(instance), 'utf8');
  const st = readState(instance);
  const o = st.owned;
  if (instanceAlive(st) || !o || st.dev !== opts.dev || (st.netns ?? undefined) !== opts.netns) return undefined;
  if (opts.netns && !fs.existsSync(`/run/netns/${opts.netns}`)) return undefined;
  // a takeover that itself died half way records the program each filter had before (`was`)
  const progs: Partial<Record<'egress' | 'ingress', number>> = {};
  for (const f of o.filters) {
    const id = listFilters(opts.netns, opts.dev, f.dir)?.find((r) => ownFilter(r, o, f))?.options?.prog?.id;
    if (id !== undefined) progs[f.dir] = id;
  }
  // none left attached: nothing enforces, so nothing can lapse; removing the rest is the plain start's
  if (!Object.keys(progs).length) return undefined;
  if (o.handle !== TC_HANDLE || o.prio !== TC_PRIO) {
    throw new LabError(
      `dead tc instance "${instance}" has filters on ${opts.dev} at handle ${hex(o.handle)} pref ${o.prio} (another build's), which this start cannot replace in place; its filters are left enforcing`,
      `pnpm lab tc shape stop --instance ${instance} (removes them), then start again`,
    );
  }
  const root = o.fqSet ? rootQdisc(opts.netns, opts.dev) : undefined;
  const fq = root?.kind === 'fq' && (o.fqHandle === null || root.handle === o.fqHandle);
  return { state: st, raw, progs, fq };
}

/**
 * Remove what a dead instance left behind: the filters its state file names (by handle, priority
 * and program id, so nobody else's), the clsact it created if no filter is left on it, its fq root
 * if that is still the same qdisc, its pins and the state file. undefined: no state file. Throws if
 * the daemon is alive, or if a removal fails (the state file is then kept, so it can be retried).
 */
export function reapDeadInstance(instance: string): ReapReport | undefined {
  if (!fs.existsSync(statePath(instance))) return undefined;
  const st = readState(instance);
  if (instanceAlive(st)) throw new LabError(`tc instance "${instance}" is running (pid ${st.pid})`, `stop it: pnpm lab tc shape stop --instance ${instance}`);
  const { dev, owned: o } = st;
  const netns = st.netns ?? undefined;
  const report: ReapReport = { pid: st.pid, dev, netns: st.netns, removed: [], kept: [], unproven: [] };
  const where = `${dev}${netns ? ` (netns ${netns})` : ''}`;
  try {
    if (netns && !fs.existsSync(`/run/netns/${netns}`)) report.kept.push(`netns ${netns} is gone, and its filters with it`);
    else if (!o) {
      // a state file of an older version records no program ids: nothing here proves a filter ours
      const left = (['egress', 'ingress'] as const).filter((d) => listFilters(netns, dev, d)?.some((f) => isOurs(f, TC_HANDLE, TC_PRIO)));
      report.unproven = left.map((d) => filterDelCmd(netns, dev, d));
    } else {
      for (const f of o.filters) {
        const rows = listFilters(netns, dev, f.dir);
        if (rows === undefined) break; // device gone: its filters went with it
        const row = rows.find((r) => ownFilter(r, o, f));
        if (!row) continue;
        tcSync(netns, ['filter', 'del', 'dev', dev, f.dir, 'protocol', 'all', 'pref', String(o.prio), 'handle', hex(o.handle), 'bpf']);
        // the program it ran: mid-takeover that may still be the one it was replacing (`was`)
        report.removed.push(`${f.dir} filter on ${where} (prog ${row.options?.prog?.id ?? f.progId})`);
      }
      if (o.clsactCreated && hasClsact(netns, dev)) {
        // it may have gained someone else's filters since: then it is theirs too
        if (removeClsactIfBare(netns, dev)) report.removed.push(`clsact qdisc on ${dev}`);
        else report.kept.push(`clsact qdisc on ${where} (other filters are on it)`);
      }
      if (o.fqSet) {
        const root = rootQdisc(netns, dev);
        if (root?.kind === 'fq' && (o.fqHandle === null || root.handle === o.fqHandle)) {
          tcSync(netns, ['qdisc', 'del', 'dev', dev, 'root']);
          report.removed.push(`fq root qdisc on ${dev}`);
        }
      }
    }
  } catch (e) {
    throw new LabError(`could not remove what dead tc instance "${instance}" (pid ${st.pid}) left on ${where}: ${(e as Error).message}`, `its state is kept: fix that and run pnpm lab tc shape stop --instance ${instance} again`, { cause: e });
  }
  const pinned = removeMapPins(instance);
  if (pinned) report.removed.push(`${pinned} map pin(s) under ${pinDir(instance)}`);
  fs.rmSync(statePath(instance), { force: true });
  if (!lockHolderAlive(writerLockPath(instance))) fs.rmSync(writerLockPath(instance), { force: true }); // a killed writer's
  return report;
}

/**
 * Before attaching: filters with our handle/priority already on the device would fail the attach
 * with EEXIST. Name whose they are and how to remove them, instead of the bare errno.
 */
function checkNoForeignShaper(netns: string | undefined, dev: string, want: readonly ('egress' | 'ingress')[]): void {
  const dirs = want.filter((d) => listFilters(netns, dev, d)?.some((f) => isOurs(f, TC_HANDLE, TC_PRIO)));
  if (!dirs.length) return;
  const where = `${dev}${netns ? ` (netns ${netns})` : ''}`;
  for (const f of fs.existsSync(STATE_DIR) ? fs.readdirSync(STATE_DIR) : []) {
    if (!f.endsWith('.json')) continue;
    let st: InstanceState;
    try {
      st = readState(f.slice(0, -5));
    } catch {
      continue;
    }
    if (st.dev === dev && (st.netns ?? undefined) === netns && instanceAlive(st)) throw new LabError(`${where} is shaped by running tc instance "${f.slice(0, -5)}" (pid ${st.pid})`, `stop it first: pnpm lab tc shape stop --instance ${f.slice(0, -5)}`);
  }
  throw new LabError(`${where} has ${dirs.join(' and ')} filters of a tc shaper that no instance's state file accounts for (left by a daemon killed before it recorded them, or a shaper run in-process)`, `if no shaper runs there, remove them: ${dirs.map((d) => filterDelCmd(netns, dev, d)).join('; ')}`);
}

/** remove the instance's map pins and its pin directory (if then empty): how many maps were pinned */
export function removeMapPins(instance: string): number {
  const pins = pinDir(instance);
  const pinned = MAP_NAMES.filter((m) => fs.existsSync(path.join(pins, m)));
  for (const m of pinned) fs.rmSync(path.join(pins, m), { force: true });
  removePinDir(pins);
  return pinned.length;
}

/** what an instance may be called: it names files under STATE_DIR and a pin directory */
export const INSTANCE_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;

export function statePath(instance: string): string {
  return path.join(STATE_DIR, `${instance}.json`);
}
/** held by a CLI writer of the instance (apply, set, filter set) from reading the model to writing it back */
/** the writers' lock of an instance held by another live command */
export function instanceBusy(instance: string, pid: number): LabError {
  return new LabError(`tc instance "${instance}" is being changed by another command (pid ${pid})`, 'wait for it to finish and try again');
}

export function writerLockPath(instance: string): string {
  return path.join(STATE_DIR, `${instance}.lock`);
}
export function pinDir(instance: string): string {
  return path.join(PIN_ROOT, `tc-${instance}`);
}

export class TcShaper {
  private links: Link[] = [];
  private fqSet = false;
  /** the handle of the fq at the root (tc's, e.g. "8001:"): close removes the root only while it is that qdisc */
  private fqHandle: string | null = null;
  /** no clsact was on the device before this start (or the dead daemon it took over) made it */
  private clsactCreated = false;
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
    if (opts.instance && !INSTANCE_NAME.test(opts.instance)) throw new LabError(`bad instance name "${opts.instance}"`, 'use a-z 0-9 _ -');
    // A start given no plan under the name of a dead instance on this device keeps what that
    // instance enforced: its filters are replaced in place (takeoverTarget) by ones whose maps hold
    // the plan, and an empty plan there ended every drop rule and class it had (fail open)
    let plan = opts.plan;
    let carried: { classes: number; rules: number } | undefined;
    if (opts.instance && fs.existsSync(statePath(opts.instance))) {
      const st = readState(opts.instance);
      if (instanceAlive(st)) throw new LabError(`tc instance "${opts.instance}" is already running (pid ${st.pid})`, `stop it first (pnpm lab tc shape stop --instance ${opts.instance}) or pick another --instance`);
      if (!plan && st.dev === opts.dev && (st.netns ?? undefined) === opts.netns && Array.isArray(st.classes) && Array.isArray(st.rules)) {
        plan = { classes: st.classes.map(({ id: _id, ...c }) => c), rules: st.rules };
        carried = { classes: plan.classes.length, rules: plan.rules.length };
        // what the kept config needs that this start would not have: named as the dead instance's,
        // not as a config's (none was given); its filters stay enforcing meanwhile
        const fix = `give --config with what to enforce, or pnpm lab tc shape stop --instance ${opts.instance} first to start empty`;
        if (opts.filterOnly && plan.classes.length) throw new LabError(`no --config: the dead instance "${opts.instance}" had ${plan.classes.length} class(es), which a --filter-only start cannot enforce`, fix);
        const inbound = plan.rules.filter((r) => r.dir & tc_shape_dir.TC_DIR_INGRESS);
        if (opts.ingress === false && inbound.length) throw new LabError(`no --config: the dead instance "${opts.instance}" had rule(s) for received packets (${inbound.map((r) => r.name).join(', ')}), which an --egress-only start would never see`, fix);
      }
    }
    // tc_shape.bpf.c parses an Ethernet header: on an L3 device (wireguard, tun, ipip) it would read
    // the IP header at the wrong offsets, match nothing and pass everything (fail open)
    const linkType = linkTypeOf(opts.netns, opts.dev);
    if (linkType !== undefined && linkType !== 'ether' && linkType !== 'loopback') throw new LabError(`${opts.dev} is a ${linkType} device (no Ethernet header): the shaper parses Ethernet frames and would match nothing there`, 'shape an Ethernet device (a veth, a NIC, a bridge), e.g. the one the tunnel runs over');
    const qdiscs = JSON.parse(tcSync(opts.netns, ['-j', 'qdisc', 'show', 'dev', opts.dev]) || '[]') as { kind: string; handle?: string; root?: boolean }[];
    // The legacy `ingress` qdisc (ffff:) takes clsact's place: bpf_tc_hook_create's EEXIST read as
    // "clsact is there", and the egress program was attached on it — at ingress
    if (qdiscs.some((q) => q.kind === 'ingress')) throw new LabError(`${opts.dev} has an ingress qdisc, where the shaper's filters need clsact (which includes ingress)`, `move its filters to clsact and remove it (tc qdisc del dev ${opts.dev} ingress)`);
    // filters only: the root is never touched
    if (!opts.filterOnly) {
      const root = qdiscs.find((q) => q.root);
      const ourFq = opts.instance && fs.existsSync(statePath(opts.instance)) ? readState(opts.instance).owned?.fqHandle : null;
      if (!isDefaultRoot(root, ourFq)) throw new LabError(`${opts.dev} already has a configured root qdisc (${root!.kind} ${root!.handle ?? ''})`, `remove it first (tc qdisc del dev ${opts.dev} root): the shaper replaces the root with fq and removes it on exit; or run filters only (--filter-only), which leaves the root alone`);
    }
    const skel = tcShape.open(objectPath('tc_shape'));
    let shaper: TcShaper | undefined;
    let reaped: ReapReport | undefined;
    let dead: Takeover | undefined;
    /** a partly replaced takeover's filters, as the dead instance's state (see the attach) */
    let handBack: string | undefined;
    const dirs: ('egress' | 'ingress')[] = opts.ingress !== false ? ['egress', 'ingress'] : ['egress'];
    try {
      skel.load();
      const maps: TcMaps = skel.maps;
      const control = new TcControl(maps, { classes: [], rules: [], gen: 0 });
      control.filterOnly = !!opts.filterOnly;
      control.ingress = opts.ingress !== false;
      // the plan goes into the maps before anything else is touched: one the control refuses
      // (classes on a filter-only instance) leaves a dead instance's filters and state as they were
      if (plan) control.apply(plan);
      // A crashed daemon of this name, on this device, whose filters are still there: take them
      // over in place (below), whatever directions and fq use either has. Otherwise remove what its
      // state file proves it attached, only now that our own program has loaded, so a start that
      // cannot work leaves the old filters enforcing.
      dead = opts.instance ? takeoverTarget(opts.instance, opts) : undefined;
      if (opts.instance && !dead) reaped = reapDeadInstance(opts.instance);
      // filters of a shaper on this device that no state file vouches for: refuse, naming the
      // commands (in a takeover, on the directions where the dead instance has none: attached afresh)
      checkNoForeignShaper(opts.netns, opts.dev, dirs.filter((d) => dead?.progs[d] === undefined));
      const pins = opts.instance ? pinDir(opts.instance) : undefined;
      if (pins) {
        // pins with no state file (a crash before the state was written), or the dead daemon's that
        // is taken over (its filters hold its maps): a fresh map is pinned here
        for (const m of MAP_NAMES) fs.rmSync(path.join(pins, m), { force: true });
      }
      const clsactCreated = dead ? dead.state.owned!.clsactCreated : !hasClsact(opts.netns, opts.dev);
      shaper = new TcShaper(opts, skel, control);
      shaper.reaped = reaped;
      shaper.carried = carried;
      shaper.clsactCreated = clsactCreated;
      process.prependListener('exit', shaper.exitHook);
      const progs = { egress: skel.programs.tc_shape_egress, ingress: skel.programs.tc_filter_ingress };
      /** the dead instance's filters on directions this start does not attach: removed once ours are in */
      const leftover = (['egress', 'ingress'] as const).filter((d) => !dirs.includes(d) && dead?.progs[d] !== undefined);
      if (pins) {
        // What this instance will own, written before it owns it: a SIGKILL between an attach and
        // a later write would otherwise leave filters no state file proves to be ours. In a
        // takeover each filter is ours under either program until the replace is recorded.
        const owned: Owned = {
          pidStart: procStart(process.pid) ?? null,
          handle: TC_HANDLE,
          prio: TC_PRIO,
          filters: [
            ...dirs.map((dir) => ({ dir, progId: progs[dir].info().id, ...(dead?.progs[dir] !== undefined ? { was: dead.progs[dir] } : {}) })),
            ...leftover.map((dir) => ({ dir, progId: dead!.progs[dir]!, leftover: true as const })),
          ],
          // taken over: the clsact is the dead daemon's to remove if it created it, so now ours
          clsactCreated,
          // a dead instance's fq that a filter-only start does not want: ours to remove once our filters are in
          fqSet: !opts.filterOnly || !!dead?.fq,
          fqHandle: dead?.fq ? dead.state.owned!.fqHandle : null,
        };
        shaper.persist = (m) => {
          fs.mkdirSync(STATE_DIR, { recursive: true });
          writeFileAtomic(statePath(opts.instance!), encodeModel({ ...m, pid: process.pid, dev: opts.dev, netns: opts.netns ?? null, filterOnly: !!opts.filterOnly, egressOnly: opts.ingress === false, owned }));
        };
        shaper.owned = owned;
        // pins and state under the writers' lock: `shape stop` takes pins with no state for a start
        // that was cut short and removes them, which of a start between the two is live maps
        fs.mkdirSync(STATE_DIR, { recursive: true });
        withLockWaitSync(writerLockPath(opts.instance!), () => {
          makePinDir(pins);
          for (const m of MAP_NAMES) maps[m].pin(path.join(pins, m));
          shaper!.persist(control.model);
        }, (pid) => instanceBusy(opts.instance!, pid));
        (control as unknown as { onChange: (m: Model) => void }).onChange = (m) => shaper!.persist(m);
      }
      if (!opts.filterOnly) {
        try {
          // a dead daemon's fq stays the same qdisc: replace of a root of the same kind changes it in place
          tcSync(opts.netns, ['qdisc', 'replace', 'dev', opts.dev, 'root', 'fq']);
        } catch (e) {
          if (/qdisc kind is unknown/i.test((e as Error).message)) throw new FqUnsupported(`tc qdisc replace dev ${opts.dev} root fq: "Specified qdisc kind is unknown"`);
          throw e;
        }
        // taken over, the fq is the dead daemon's until the filters are ours (a failure before that
        // leaves it to the dead daemon's state, restored below); one this start put at the root
        // (the dead one ran filters only) is this start's to remove if it fails
        shaper.fqSet = !dead?.fq;
        shaper.fqHandle = dead?.fq ? dead.state.owned!.fqHandle : rootQdisc(opts.netns, opts.dev)?.handle ?? null;
        if (shaper.owned) {
          // the fq's handle: a reaper removes the root only if it is still this fq
          shaper.owned.fqHandle = rootQdisc(opts.netns, opts.dev)?.handle ?? null;
          shaper.persist(control.model);
        }
      }
      const attach = () => {
        for (const dir of dirs) {
          faults.beforeAttach?.(dir);
          shaper!.links.push(attachTc(progs[dir], opts.dev, dir, { handle: TC_HANDLE, priority: TC_PRIO, replace: dead?.progs[dir] !== undefined, keepQdisc: true }));
        }
      };
      try {
        if (opts.netns) withNetns(opts.netns, attach);
        else attach();
      } catch (e) {
        if (!dead || !shaper.links.length) throw e;
        // A takeover that failed after one direction's replace: that filter runs the new program
        // already, the old one is gone. Detaching it (what a failed start does) would leave that
        // direction open until the next start: it stays, and the dead instance's state is written
        // back recording the program each filter runs now, so the next start takes both over and
        // stop removes both (its pins go: the filters hold their maps). A direction attached
        // afresh stays the same way, and so does an fq this start put at the root for them.
        const done = dirs.slice(0, shaper.links.length);
        for (const l of shaper.links) l.disconnect();
        const filters = (['egress', 'ingress'] as const).flatMap((dir) => (done.includes(dir) ? [{ dir, progId: progs[dir].info().id }] : dead!.progs[dir] !== undefined ? [{ dir, progId: dead!.progs[dir]! }] : []));
        const fq = shaper.fqSet ? { fqSet: true, fqHandle: shaper.owned?.fqHandle ?? null } : {};
        shaper.fqSet = false;
        handBack = encodeModel({ ...dead.state, owned: { ...dead.state.owned!, filters, ...fq } } as unknown as Model & Record<string, unknown>);
        const rest = (['egress', 'ingress'] as const).filter((d) => !done.includes(d) && dead!.progs[d] !== undefined);
        throw new LabError(
          `taking over tc instance "${opts.instance}" on ${opts.dev} failed after its ${done.map((d) => `${d} filter was ${dead!.progs[d] !== undefined ? 'replaced' : 'attached'}`).join(' and ')}: ${(e as Error).message}`,
          `nothing is open: that filter enforces this config${rest.length ? `, the ${rest.join(' and ')} one still the dead daemon's` : ''}. Start it again (it takes them over) or pnpm lab tc shape stop --instance ${opts.instance} (removes them)`,
          { cause: e },
        );
      }
      if (dead && shaper.owned) {
        const filters = shaper.owned.filters.filter((f) => !f.leftover).map((f) => ({ dir: f.dir, ...(f.was !== undefined ? { from: f.was } : {}), to: f.progId }));
        shaper.tookOver = { pid: dead.state.pid, filters, removed: [], left: [] };
        for (const f of shaper.owned.filters) delete f.was;
        shaper.fqSet = shaper.owned.fqSet;
        shaper.persist(control.model);
        // only now, with every direction of ours enforcing: what the dead instance had beyond that
        Object.assign(shaper.tookOver, shaper.removeLeftovers());
      }
      return shaper;
    } catch (e) {
      if (shaper) shaper.close();
      else skel.close();
      // a takeover that did not get as far as the replace: the dead daemon's filters still enforce,
      // and its state file is what proves them its own (for stop, or the next start)
      if (dead && !shaper?.tookOver && (!opts.netns || fs.existsSync(`/run/netns/${opts.netns}`))) writeFileAtomic(statePath(opts.instance!), handBack ?? dead.raw);
      throw e;
    }
  }

  /**
   * what start took over from a crashed daemon of the same instance (for the CLI to report): its
   * filters, replaced in place (`from`) or attached beside them; what of it was removed after
   * (a direction or an fq this start does not use), and what could not be (`left`: close and stop retry)
   */
  tookOver?: { pid: number; filters: { dir: 'egress' | 'ingress'; from?: number; to: number }[]; removed: string[]; left: string[] };
  private persist: (m: Model) => void = () => {};
  private owned?: Owned;
  /** what start removed of a crashed daemon of the same instance name (for the CLI to report) */
  reaped?: ReapReport;
  /** started without a plan: the dead instance's classes and rules, kept (see start) */
  carried?: { classes: number; rules: number };

  /**
   * After a takeover, once this instance's filters are in: remove the dead instance's filters on
   * directions this one does not attach, and its fq if this one runs filters only. What fails stays
   * recorded in the state (so stop removes it) and is retried by close.
   */
  private removeLeftovers(): { removed: string[]; left: string[] } {
    const out = { removed: [] as string[], left: [] as string[] };
    const o = this.owned;
    if (!o) return out;
    const { netns, dev } = this.opts;
    for (const f of o.filters.filter((x) => x.leftover)) {
      try {
        const rows = listFilters(netns, dev, f.dir);
        if (rows?.some((r) => ownFilter(r, o, f))) {
          tcSync(netns, ['filter', 'del', 'dev', dev, f.dir, 'protocol', 'all', 'pref', String(o.prio), 'handle', hex(o.handle), 'bpf']);
          out.removed.push(`${f.dir} filter (prog ${f.progId})`);
        }
        o.filters = o.filters.filter((x) => x !== f);
      } catch (e) {
        out.left.push(`its ${f.dir} filter (prog ${f.progId}): ${(e as Error).message}`);
      }
    }
    if (this.opts.filterOnly && o.fqSet) {
      try {
        const root = rootQdisc(netns, dev);
        if (root?.kind === 'fq' && (o.fqHandle === null || root.handle === o.fqHandle)) {
          tcSync(netns, ['qdisc', 'del', 'dev', dev, 'root']);
          out.removed.push('fq root qdisc');
        }
        o.fqSet = false;
        o.fqHandle = null;
        this.fqSet = false;
      } catch (e) {
        out.left.push(`its fq root qdisc: ${(e as Error).message}`);
      }
    }
    this.persist(this.control.model);
    return out;
  }

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
    // a dead instance's filter a takeover could not remove after its own were in
    if (this.owned?.filters.some((f) => f.leftover) && (!netns || fs.existsSync(`/run/netns/${netns}`))) {
      try {
        this.removeLeftovers();
      } catch { /* keep tearing down */ }
    }
    if (this.clsactCreated && (!netns || fs.existsSync(`/run/netns/${netns}`))) {
      // created by this start (or by the dead daemon it took over): removed only once no filter is
      // on it — someone may have added theirs since, and removing a clsact removes its filters
      // (the attach keeps it: keepQdisc)
      try {
        if (hasClsact(netns, dev)) removeClsactIfBare(netns, dev);
      } catch { /* device gone */ }
    }
    if (this.fqSet) {
      try {
        // only the fq this start put there (as the reaper checks): a root someone replaced it with
        // since (`tc qdisc replace … root handle 1: htb`) is theirs, and went with a plain delete
        const root = rootQdisc(netns, dev);
        const handle = this.owned?.fqHandle ?? this.fqHandle;
        if (root?.kind === 'fq' && (handle === null || root.handle === handle)) tcSync(netns, ['qdisc', 'del', 'dev', dev, 'root']);
      } catch { /* device gone */ }
    }
    if (instance) {
      for (const m of MAP_NAMES) fs.rmSync(path.join(pinDir(instance), m), { force: true });
      removePinDir(pinDir(instance));
      fs.rmSync(statePath(instance), { force: true });
      if (!lockHolderAlive(writerLockPath(instance))) fs.rmSync(writerLockPath(instance), { force: true }); // a killed writer's
    }
    this.skel.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The CLI's view of a running instance: its pinned maps and the model from the state file. */
/**
 * `readDead`: a reader (list, metrics) of an instance whose daemon was killed: its filters still
 * enforce, and their counters are what an operator wants then; `dead` says so (a change stays
 * refused: nothing would keep the state and the maps together)
 */
export function openInstance(instance: string, opts: { readDead?: boolean } = {}): TcControl & Disposable & { dead?: string } {
  const file = statePath(instance);
  if (!fs.existsSync(file)) throw new LabError(`no running tc instance "${instance}" (${instancesNote(instancesIn(STATE_DIR, '', '.json'))})`, 'start one: pnpm lab tc shape start --dev DEV --config FILE');
  const st = readState(instance);
  const fix = `pnpm lab tc shape stop --instance ${instance} removes what it left attached; or start it again (pnpm lab tc shape start … --instance ${instance} takes its filters over in place)`;
  const deadText = instanceAlive(st) ? undefined : `tc instance "${instance}" is not running (pid ${st.pid} is gone), but its filters still enforce on ${st.dev}${st.netns ? ` (netns ${st.netns})` : ''}`;
  if (deadText && !opts.readDead) throw new LabError(deadText, fix);
  // (each opened map closed again when a later one fails: the daemon's follower opens each second)
  const opened: BpfMap[] = [];
  try {
    for (const n of MAP_NAMES) opened.push(BpfMap.openPinned(path.join(pinDir(instance), n)));
  } catch (e) {
    opened.forEach((m) => m.close());
    throw e;
  }
  const maps = Object.fromEntries(MAP_NAMES.map((n, i) => [n, opened[i]])) as TcMaps;
  const c = new TcControl(maps, { classes: st.classes, rules: st.rules, gen: st.gen }, (m) => {
    writeFileAtomic(file, encodeModel({ ...st, ...m }));
  });
  c.filterOnly = !!st.filterOnly;
  c.ingress = !st.egressOnly;
  return Object.assign(c, { [Symbol.dispose]: () => Object.values(maps).forEach((m) => m.close()), ...(deadText ? { dead: `${deadText}; ${fix}` } : {}) });
}
