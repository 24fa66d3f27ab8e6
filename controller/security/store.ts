// PolicyStore: turns validated policies into map entries and back. Works on the maps of a running
// controller (in-process) or on the pinned maps of a `policy daemon` (from the CLI): rules live in
// maps, so applying never reloads a program.
//
// An update is made visible in one map write: the new version is written into a free slot first
// (rules, then the policy record), then the selector entry is pointed at the new slot, then the old
// slot is emptied. A hook therefore sees either the whole old policy or the whole new one.
//
// Filling slots is all-or-nothing for a whole apply: capacity is checked before the first write
// (old and new versions coexist until the flip), a slot is verified empty before use, and any
// failure while filling clears every slot this apply wrote into before the error leaves, so the
// maps are byte-identical to before. Entries no live policy references (a crashed CLI, an older
// controller) are swept at daemon start and after every failed apply: a later policy never
// inherits rules nobody wrote into it.
import fs from 'node:fs';
import path from 'node:path';
import type { BpfMap } from '../libbpf/index.ts';
import { sec_limits, sec_policy_flag, sec_rule_action, sec_track_fail, type sec_config, type sec_egress_key, type sec_exec_key, type sec_file_key, type sec_policy, type sec_proc, type sec_rule } from '../../bpf/gen/security.ts';
import { cgroup2Root, cgroupDir, cgroupId, cgroupLevel } from '../../common/cgroup.ts';
import { fileId, resolveShells, type FileId } from './files.ts';
import type { Identified } from './identity.ts';
import { cidrBytes, type EgressRule, type Policy } from './policy.ts';
import { LabError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/state-file.ts';

// the C enums (bpf/security.h), read from the object's BTF into bpf/gen/security.ts
export const F_ENFORCE = sec_policy_flag.SEC_F_ENFORCE, F_EXEC_ALLOWLIST = sec_policy_flag.SEC_F_EXEC_ALLOWLIST, F_DENY_ANON_EXEC = sec_policy_flag.SEC_F_DENY_ANON_EXEC;
export const F_EGRESS_ALLOWLIST = sec_policy_flag.SEC_F_EGRESS_ALLOWLIST, F_DENY_RAW = sec_policy_flag.SEC_F_DENY_RAW, F_DENY_PTRACE = sec_policy_flag.SEC_F_DENY_PTRACE;
export const ACTION_ALLOW = sec_rule_action.SEC_ACTION_ALLOW, ACTION_DENY = sec_rule_action.SEC_ACTION_DENY;
export const MAX_POLICIES = sec_limits.SEC_MAX_POLICIES;
export const ANY_UID = 0xffffffff; // SEC_ANY_UID, a #define (too large for a BTF enum value)
const EGRESS_HDR_BITS = sec_limits.SEC_EGRESS_KEY_HDR_BITS;
const PROTO: Record<string, number> = { tcp: 6, udp: 17, any: 0 };

export interface SecMaps {
  config: BpfMap<number, sec_config>;
  oracle: BpfMap<number, sec_file_key>;
  policies: BpfMap<number, sec_policy>;
  cg_sel: BpfMap<bigint, number>;
  exe_sel: BpfMap<sec_file_key, number>;
  procs: BpfMap<number, sec_proc>;
  /** enum sec_track_fail → processes procs could not record where a selection was at stake */
  track_fail: BpfMap<number, bigint>;
  exec_rules: BpfMap<sec_exec_key, sec_rule>;
  egress_rules: BpfMap<sec_egress_key, sec_rule>;
}

export const MAP_NAMES = ['sec_config', 'policies', 'cg_sel', 'exe_sel', 'procs', 'doomed', 'track_fail', 'exec_rules', 'egress_rules', 'oracle', 'events', 'lost', 'stopped_lost'] as const;

export type Identify = (paths: string[]) => Map<string, Identified>;
/** stat(2) identities: right on plain file systems, wrong on overlayfs (see identity.ts) */
export const statIdentify: Identify = (paths) => new Map(paths.map((p) => [p, { ...fileId(p), how: 'stat' as const, why: 'no kernel oracle' }]));

/** Identified.why of a gone file kept as applied by a re-apply (apply's keepGone) */
const KEPT_GONE = 'gone: kept as applied';
/**
 * statDev/statIno of an allowed file that was gone at a re-apply, whose entry was left out: its
 * return under that name is a move whatever inode it gets (identityDrift)
 */
export const NOT_APPLIED = '-';

/** every binary path a policy names ("shells" aside), as written */
function namedPaths(p: Policy): string[] {
  return [...p.exec.deny.filter((d) => d !== 'shells'), ...(p.exec.allow ?? []), ...(p.select.executable ? [p.select.executable] : [])];
}

/**
 * The path a path that no longer exists would have resolved to: its directory resolved, and a
 * dangling symlink at its end followed (the identities of an apply hold resolved paths)
 */
export function wouldResolve(x: string): string {
  let cur = path.resolve(x);
  for (let hops = 0; hops < 40; hops++) {
    let dir: string;
    try {
      dir = fs.realpathSync(path.dirname(cur));
    } catch {
      return cur;
    }
    const at = path.join(dir, path.basename(cur));
    let to: string;
    try {
      to = fs.readlinkSync(at);
    } catch {
      return at;
    }
    cur = path.resolve(dir, to);
  }
  return cur;
}

export interface StoredPolicy {
  policy: Policy;
  id: number;
  slot: number;
  selector: { kind: 'cgroup'; dir: string; cgid: string; level: number } | { kind: 'exe'; dev: string; ino: string; statDev: string; statIno: string };
  /** how each binary of the policy was identified (kernel oracle or stat), for `policy list` */
  identities: {
    path: string; dev: string; ino: string; how: string; why?: string; statDev?: string; statIno?: string;
    /** the path as the policy names it, where it differs from `path` (resolved) */
    named?: string;
    /** on the policy's allowlist */
    allowed?: true;
  }[];
  /** 2: `identities` carry `named` and `allowed` (an older state file's hold resolved paths only) */
  identitiesVersion?: 2;
  execKeys: { dev: string; ino: string }[];
  egressKeys: { prefixlen: number; proto: number; port: number; addr: number[] }[];
  appliedAt: string;
}

export interface StoreState {
  nextId: number;
  policies: Record<string, StoredPolicy>;
  /** rule id → description, kept for deleted/replaced policies too so old events stay readable */
  rules: Record<string, string>;
}

export const emptyState = (): StoreState => ({ nextId: 1, policies: {}, rules: {} });

export interface ResolvedRuleInfo {
  id: number;
  name: string;
}

export interface ApplyReport {
  name: string;
  action: 'created' | 'updated';
  slot: number;
  policyId: number;
  rules: ResolvedRuleInfo[];
  execEntries: number;
  egressEntries: number;
  /** time spent writing maps (the part a hook can observe), ms */
  writeMs: number;
  /** CLOCK_MONOTONIC ns just before the selector flip (comparable with event ts_ns) */
  switchedAtNs: bigint;
  /** running processes of the selected binary that procs could not record (full): killed, not left unselected */
  killedUntracked: number[];
}

interface Plan {
  p: Policy;
  id: number;
  selector: StoredPolicy['selector'];
  flags: number;
  uid: number;
  rules: ResolvedRuleInfo[];
  allowlistRule: number;
  anonRule: number;
  egressRule: number;
  rawRule: number;
  ptraceRule: number;
  exec: { file: Identified; rule: number; action: number }[];
  egress: { key: Omit<sec_egress_key, 'slot'>; rule: number; action: number }[];
}

const EMPTY_POLICY: sec_policy = { id: 0, flags: 0, uid: 0, allowlist_rule: 0, anon_rule: 0, egress_rule: 0, raw_rule: 0, ptrace_rule: 0 };

/** raw/packet sockets are denied when a policy has an egress section and does not allow them */
export function denyRaw(p: Policy): boolean {
  return (p.egress.allow !== undefined || p.egress.deny.length > 0 || p.egress.rawSockets === 'deny') && p.egress.rawSockets !== 'allow';
}

/** map entries a policy needs (exec_rules, egress_rules); `shells` = how many binaries "shells" is here */
export function entriesNeeded(p: Policy, shells: number): { exec: number; egress: number } {
  const exec = p.exec.deny.reduce((a, d) => a + (d === 'shells' ? shells : 1), 0) + (p.exec.allow?.length ?? 0);
  const egress = [...p.egress.deny, ...(p.egress.allow ?? [])].reduce((a, r) => a + Math.max(1, r.ports.length), 0);
  return { exec, egress };
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0]!;
}

export class PolicyStore {
  /** tests: called before every rule/record write of an apply; throw to inject a failure part-way */
  beforeWrite?: (map: string) => void;

  constructor(
    readonly maps: SecMaps,
    public state: StoreState = emptyState(),
    private readonly statePath?: string,
    private readonly identify: Identify = statIdentify,
  ) {}

  /** Re-read the state file (another process — the CLI — may have changed it). */
  reload(): void {
    if (!this.statePath || !fs.existsSync(this.statePath)) return;
    try {
      this.state = JSON.parse(fs.readFileSync(this.statePath, 'utf8')) as StoreState;
    } catch (e) {
      // it names what the maps hold: guessing it would apply or list over rules it cannot see
      throw new LabError(`the policy state ${this.statePath} is unreadable (${firstLine(e)}): the kernel keeps enforcing what it holds, but list, apply and delete cannot tell what that is`, `move it away and restart the daemon (stop it with kill <pid>, not policy stop), then pnpm lab policy daemon: it rebuilds the state from the pinned maps, enforcement never stops`);
    }
  }

  saveState(): void {
    this.save();
  }

  private save(): void {
    if (!this.statePath) return;
    fs.mkdirSync(path.dirname(this.statePath), { recursive: true });
    writeFileAtomic(this.statePath, JSON.stringify(this.state, null, 1));
  }

  ruleName(id: number): string {
    return this.state.rules[String(id)] ?? `rule ${id >>> 16}.${id & 0xffff}`;
  }

  policyName(id: number): string {
    for (const [n, s] of Object.entries(this.state.policies)) if (s.id === id) return n;
    const r = Object.entries(this.state.rules).find(([k]) => Number(k) >>> 16 === id);
    return r ? r[1].split(':')[0]! : `policy ${id}`;
  }

  /** Resolve a policy to map entries without touching any map (all failures happen here). */
  private plan(p: Policy, id: number, ids: Map<string, Identified>, shells: FileId[], kept?: StoredPolicy): Plan {
    let n = 0;
    const rules: ResolvedRuleInfo[] = [];
    const rule = (desc: string) => {
      const r = { id: ((id & 0xffff) << 16) | ++n, name: `${p.name}: ${desc}` };
      rules.push(r);
      return r.id;
    };
    let selector: StoredPolicy['selector'];
    if (p.select.cgroup && kept?.selector.kind === 'cgroup' && !fs.existsSync(kept.selector.dir)) {
      selector = kept.selector; // gone: selects what it did (see apply's `keepGone`)
    } else if (p.select.cgroup) {
      const root = cgroup2Root();
      const dir = cgroupDir(p.select.cgroup, root);
      if (!fs.existsSync(dir)) throw new LabError(`policy ${p.name}: cgroup ${dir} does not exist (nothing was changed)`, `create the workload's cgroup first (mkdir ${dir})`);
      selector = { kind: 'cgroup', dir, cgid: String(cgroupId(dir)), level: cgroupLevel(dir, root) };
      if (selector.level > 15) throw new LabError(`policy ${p.name}: cgroup ${dir} is deeper than 15 levels (nothing was changed)`, 'select a cgroup at most 15 levels below the cgroup2 root');
    } else if (kept?.selector.kind === 'exe' && !fs.existsSync(p.select.executable!)) {
      selector = kept.selector;
    } else {
      const f = ids.get(p.select.executable!)!;
      const st = fileId(p.select.executable!);
      selector = { kind: 'exe', dev: String(f.dev), ino: String(f.ino), statDev: String(st.dev), statIno: String(st.ino) };
    }
    let flags = p.mode === 'enforce' ? F_ENFORCE : 0;
    const exec: Plan['exec'] = [];
    const denied = new Set<string>();
    p.exec.deny.forEach((d, i) => {
      const files = (d === 'shells' ? shells.map((f) => f.path) : [d]).map((x) => ids.get(x)!);
      const r = rule(`exec.deny[${i}] ${d === 'shells' ? `shells (${files.map((f) => path.basename(f.path)).join(', ')})` : d}`);
      for (const f of files) {
        denied.add(`${f.dev}:${f.ino}`);
        exec.push({ file: f, rule: r, action: ACTION_DENY });
      }
    });
    let allowlistRule = 0;
    if (p.exec.allow) {
      flags |= F_EXEC_ALLOWLIST;
      allowlistRule = rule('exec.allow (binary not on the allowlist)');
      for (const a of p.exec.allow) {
        const f = ids.get(a)!;
        // gone, kept for a re-apply: an allow of the inode it had would let whatever file gets
        // that inode next run (inode numbers are reused at once); left out, which denies
        if (f.why === KEPT_GONE) continue;
        // a binary both denied and allowed stays denied: deny is the safer reading
        if (!denied.has(`${f.dev}:${f.ino}`)) exec.push({ file: f, rule: allowlistRule, action: ACTION_ALLOW });
      }
    }
    let anonRule = 0;
    if (p.exec.denyNameless) {
      flags |= F_DENY_ANON_EXEC;
      anonRule = rule('exec.denyNameless (memfd / unlinked file)');
    }
    const egress: Plan['egress'] = [];
    // one trie entry per key: an allow with a deny's very key was written after it and replaced
    // it (review, session 58: "3 entries written", 2 in the kernel, the denied port reachable).
    // At the same key deny wins, as for exec; a more specific allow still carves a hole (the
    // most specific entry decides: README, "egress")
    const deniedKeys = new Set<string>();
    const keyOf = (k: { prefixlen: number; proto: number; port: number; addr: Uint8Array }) => `${k.prefixlen}/${k.proto}/${k.port}/${Buffer.from(k.addr).toString('hex')}`;
    const addEgress = (r: EgressRule, ruleId: number, action: number) => {
      const { addr, bits } = cidrBytes(r.to);
      mask(addr, bits);
      for (const port of r.ports.length ? r.ports : [0]) {
        const key = { prefixlen: EGRESS_HDR_BITS + bits, proto: PROTO[r.protocol]!, _pad: 0, port, addr };
        if (action === ACTION_DENY) deniedKeys.add(keyOf(key));
        else if (deniedKeys.has(keyOf(key))) continue;
        egress.push({ key, rule: ruleId, action });
      }
    };
    p.egress.deny.forEach((r, i) => addEgress(r, rule(`egress.deny[${i}] ${describe(r)}`), ACTION_DENY));
    let egressRule = 0;
    if (p.egress.allow) {
      flags |= F_EGRESS_ALLOWLIST;
      egressRule = rule('egress.allow (destination not on the allowlist)');
      p.egress.allow.forEach((r) => addEgress(r, egressRule, ACTION_ALLOW));
    }
    let rawRule = 0;
    if (denyRaw(p)) {
      flags |= F_DENY_RAW;
      rawRule = rule('egress.rawSockets (raw IP / packet / ICMP / SCTP / DCCP / non-inet network socket or source route: not allowed by this policy)');
    }
    let ptraceRule = 0;
    if (p.ptrace !== 'allow') {
      flags |= F_DENY_PTRACE;
      ptraceRule = rule('ptrace (attaching to another process: not allowed by this policy)');
    }
    return { p, id, selector, flags, uid: p.select.uid ?? ANY_UID, rules, allowlistRule, anonRule, egressRule, rawRule, ptraceRule, exec, egress };
  }

  /** map capacities (max_entries of the kernel's maps) */
  capacity(): { exec: number; egress: number } {
    return { exec: this.maps.exec_rules.meta.maxEntries, egress: this.maps.egress_rules.meta.maxEntries };
  }

  /** entries per slot as the kernel holds them right now (a full scan: the truth, not the state file) */
  slotUsage(): Map<number, { exec: number; egress: number }> {
    const u = new Map<number, { exec: number; egress: number }>();
    const at = (slot: number) => u.get(slot) ?? (u.set(slot, { exec: 0, egress: 0 }), u.get(slot)!);
    for (const k of this.maps.exec_rules.keys()) at(k.slot).exec++;
    for (const k of this.maps.egress_rules.keys()) at(k.slot).egress++;
    return u;
  }

  /** slots a selector points at (the kernel's view of what is enforced) */
  selectedSlots(): Map<number, string> {
    const out = new Map<number, string>();
    for (const [cg, slot] of this.maps.cg_sel.entries() as Iterable<[bigint, number]>) out.set(slot, `cgroup id ${cg}`);
    for (const [f, slot] of this.maps.exe_sel.entries() as Iterable<[sec_file_key, number]>) out.set(slot, `executable ${f.dev >> 20n}:${f.dev & 0xfffffn}:${f.ino}`);
    return out;
  }

  /** a slot no policy, selector, rule or policy record uses; verified against the kernel */
  private freeSlot(taken: Set<number>, usage: Map<number, { exec: number; egress: number }>): number {
    const selected = this.selectedSlots();
    for (let s = 0; s < MAX_POLICIES; s++) {
      if (taken.has(s) || selected.has(s)) continue;
      const u = usage.get(s);
      if (u && (u.exec || u.egress)) continue; // leftovers: the sweep clears them, never reuse them as they are
      if (this.maps.policies.get(s)?.id) continue;
      return s;
    }
    throw new LabError(`no free policy slot (at most ${MAX_POLICIES / 2} policies; each update needs a spare slot) — nothing was changed`, 'delete a policy first (pnpm lab policy delete <name>)');
  }

  /** delete every entry of `slot` and zero its record (a scan: it also removes entries no state lists) */
  private clearSlot(slot: number): number {
    let n = 0;
    for (const k of [...this.maps.exec_rules.keys()]) if (k.slot === slot && this.maps.exec_rules.delete(k) !== false) n++;
    for (const k of [...this.maps.egress_rules.keys()]) if (k.slot === slot && this.maps.egress_rules.delete(k) !== false) n++;
    if (this.maps.policies.get(slot)?.id) this.maps.policies.set(slot, { ...EMPTY_POLICY });
    return n;
  }

  /**
   * Clear every slot that neither a policy of the state nor a selector in the kernel references.
   * Returns what was removed (slot → entries), for the daemon's start-up report.
   */
  sweep(): { slot: number; entries: number }[] {
    const live = new Set(Object.values(this.state.policies).map((s) => s.slot));
    for (const s of this.selectedSlots().keys()) live.add(s);
    const out: { slot: number; entries: number }[] = [];
    const usage = this.slotUsage();
    for (let s = 0; s < MAX_POLICIES; s++) {
      if (live.has(s)) continue;
      const u = usage.get(s);
      const rec = this.maps.policies.get(s);
      if (!u && !rec?.id) continue;
      out.push({ slot: s, entries: this.clearSlot(s) });
    }
    return out;
  }

  /** everything an apply decides before touching a map: identities, plans, conflicts */
  private resolve(policies: Policy[], keepGone: boolean) {
    let nextId = this.state.nextId;
    // keepGone: a path the applied version names that no longer exists keeps the identity it was
    // applied with (see apply). Found by the path as the policy names it, or as it resolved then
    // (identities hold the resolved path: /bin/x of a merged /usr is /usr/bin/x)
    const kept = new Map<string, StoredPolicy['identities'][number]>();
    if (keepGone) {
      for (const p of policies) {
        const stored = (this.state.policies[p.name]?.identities ?? []).filter((i) => i.statIno !== undefined);
        const at = new Map(stored.map((i) => [i.path, i]));
        for (const x of namedPaths(p)) {
          if (fs.existsSync(x)) continue;
          // by the name it was given (a deleted symlink: /usr/bin/python3 gone, its target not),
          // else by the path it resolved to
          const i = stored.find((s) => s.named === x) ?? at.get(x) ?? at.get(wouldResolve(x));
          if (i) kept.set(x, i);
        }
      }
    }
    // every binary named anywhere, identified in one go (the kernel oracle forks once per binary)
    const shells = policies.some((p) => p.exec.deny.includes('shells')) ? resolveShells() : [];
    const paths = [...shells.map((f) => f.path), ...policies.flatMap(namedPaths)];
    const ids = this.identify(paths.filter((x) => !kept.has(x)));
    for (const [x, i] of kept) ids.set(x, { path: i.path, dev: BigInt(i.dev), ino: BigInt(i.ino), how: i.how === 'kernel' ? 'kernel' : 'stat', why: KEPT_GONE });
    const plans = policies.map((p) => {
      const id = nextId;
      nextId = nextId >= 0xffff ? 1 : nextId + 1;
      return this.plan(p, id, ids, shells, keepGone ? this.state.policies[p.name] : undefined);
    });
    const identities = new Map(plans.map((pl) => {
      // what is gone stays listed as applied (list keeps saying so, and its return is followed as
      // a move), also an allowed file whose entry plan() left out
      const allows = new Set(pl.p.exec.allow ?? []);
      const denies = new Set(pl.p.exec.deny);
      const gone = [...new Map(namedPaths(pl.p).filter((x) => kept.has(x)).map((x) => {
        const { allowed: _a, named: _n, ...i } = kept.get(x)!;
        // an allowed one's entry was left out (plan; one also denied keeps its deny rule): its
        // return is a move whatever its inode
        const entry = { ...i, ...(x !== i.path ? { named: x } : {}), ...(allows.has(x) && !denies.has(x) ? { allowed: true as const, statDev: NOT_APPLIED, statIno: NOT_APPLIED } : {}) };
        return [x, entry];
      })).values()];
      // one per name the policy gives (each watched: two names of one file, and one of them
      // re-pointed, is a move), then the shells' files (no name); keyed as `ids` is
      const live = new Map<string, { named?: string; allowed?: true }>();
      for (const x of namedPaths(pl.p)) {
        if (kept.has(x) || live.has(x)) continue;
        live.set(x, { ...(ids.get(x)!.path !== x ? { named: x } : {}), ...(allows.has(x) ? { allowed: true as const } : {}) });
      }
      for (const e of pl.exec) if (e.file.why !== KEPT_GONE && ![...live.keys()].some((k) => ids.get(k)!.path === e.file.path)) live.set(e.file.path, {});
      return [pl.p.name, [...gone, ...[...live].map(([k, o]) => {
        const i = ids.get(k)!; // every key: a name identified, or a shell's path
        // stat's view as applied: list tells a file replaced since (a package upgrade: its rules
        // name the old inode) by it
        const st = fileId(k);
        return { path: o.named ? i.path : k, dev: String(i.dev), ino: String(i.ino), how: i.how, ...(i.why ? { why: i.why } : {}), statDev: String(st.dev), statIno: String(st.ino), ...o };
      })]] as [string, StoredPolicy['identities']];
    }));
    // two new policies on one workload, named two ways (/a and a/, /bin/dash and /usr/bin/dash):
    // the second silently took the first's selector (review, session 58)
    const mine = new Map<string, string>();
    for (const pl of plans) {
      const other = mine.get(selKey(pl.selector));
      if (other) throw new LabError(`policies "${other}" and "${pl.p.name}" select the same workload (${pl.selector.kind === 'cgroup' ? `cgroup ${pl.selector.dir}` : `executable ${fs.realpathSync(pl.p.select.executable!)}`}) — nothing was changed`, 'one policy per workload: merge the two');
      mine.set(selKey(pl.selector), pl.p.name);
    }
    // a workload selected by two policies (one new, one already applied) is ambiguous: refuse
    for (const pl of plans) {
      for (const [n, s] of Object.entries(this.state.policies)) {
        if (n !== pl.p.name && selKey(s.selector) === selKey(pl.selector)) throw new LabError(`policy ${pl.p.name}: its workload is already selected by policy "${n}" — nothing was changed`, `one policy per workload: change "${n}" instead, or delete it first`);
      }
    }
    return { plans, identities, nextId };
  }

  /**
   * Create or replace the given policies (others stay). Resolution of every policy happens before
   * the first map write, so a failure leaves the running set untouched.
   *
   * `keepGone` (the daemon applying a policy again because what it names moved, or an allowed file
   * went): a file or cgroup the applied version names that is gone keeps the identity it was
   * applied with, so that it does not fail the apply. It did, and the replaced binary then ran
   * unenforced until a user edited the policy's file (fail open). A denied one's rule stays what
   * the kernel already held; an allowed one's entry is left out (plan). A file put back under
   * that name is a move the daemon follows. A user's apply refuses a missing path as before.
   */
  apply(policies: Policy[], opts: { keepGone?: boolean } = {}): ApplyReport[] {
    this.reload();
    if (!policies.length) throw new LabError('nothing was applied: the file lists no policies', 'add at least one policy under "policies:" (to remove policies: pnpm lab policy delete <name>|--all)');
    let resolved: ReturnType<PolicyStore['resolve']>;
    try {
      resolved = this.resolve(policies, opts.keepGone === true);
    } catch (e) {
      if (e instanceof LabError) throw e;
      throw new LabError(`resolving the policy failed before any map write: ${firstLine(e)} — nothing was changed`, 'check that the paths in the file still exist (pnpm lab policy validate <file>)', { cause: e });
    }
    const { plans, identities, nextId } = resolved;
    const usage = this.slotUsage();
    this.checkCapacity(plans, usage);
    // 1. every new version into a verified-empty slot no selector points at; all or nothing
    const t0 = performance.now();
    const taken = new Set(Object.values(this.state.policies).map((s) => s.slot));
    const filled: number[] = [];
    try {
      for (const pl of plans) {
        const slot = this.freeSlot(taken, usage);
        taken.add(slot);
        filled.push(slot);
        this.fill(pl, slot);
      }
    } catch (e) {
      for (const slot of filled) this.clearSlot(slot);
      this.sweep();
      if (e instanceof LabError) throw e;
      throw new LabError(`writing policy rules failed: ${firstLine(e)} — nothing was changed (every entry written by this apply was removed)`, 'run pnpm lab policy list to see what is enforced; pnpm lab policy validate <file> shows the capacity a file needs', { cause: e });
    }
    this.state.nextId = nextId;
    const out: ApplyReport[] = [];
    const fillMs = performance.now() - t0;
    // the program must look at the new selectors' cgroup levels (and at exec selectors) before the
    // first flip points one there, and keep the old ones' until writeConfig below narrows to the
    // new set: flipped first, a policy moved to a cgroup of another depth selected nothing until
    // every later plan's flip (each a /proc scan for an executable) was done, and for good when the
    // command was killed in between (fail open)
    this.widenConfig(plans);
    plans.forEach((pl, i) => out.push(this.flip(pl, filled[i]!, identities.get(pl.p.name) ?? [], fillMs)));
    this.writeConfig();
    this.save();
    return out;
  }

  /** refuse before the first write when old and new versions could not coexist in the maps */
  private checkCapacity(plans: Plan[], usage: Map<number, { exec: number; egress: number }>): void {
    const cap = this.capacity();
    let exec = 0;
    let egress = 0;
    for (const u of usage.values()) {
      exec += u.exec;
      egress += u.egress;
    }
    const needExec = plans.reduce((a, p) => a + p.exec.length, 0);
    const needEgress = plans.reduce((a, p) => a + p.egress.length, 0);
    const over: string[] = [];
    if (exec + needExec > cap.exec) over.push(`exec_rules: ${needExec} new + ${exec} in use > ${cap.exec}`);
    if (egress + needEgress > cap.egress) over.push(`egress_rules: ${needEgress} new + ${egress} in use > ${cap.egress}`);
    if (over.length) {
      const big = plans.find((p) => p.exec.length > cap.exec / 2 || p.egress.length > cap.egress / 2);
      throw new LabError(
        `policy does not fit: ${over.join('; ')} (an update needs room for the old and the new version at once) — nothing was changed`,
        // said of the policy that is too big, not of the file's total (two policies of 7,000
        // entries were each told "at most 8192", review session 58)
        big ? `shrink policy ${big.p.name}: at most ${cap.exec / 2} exec and ${cap.egress / 2} egress entries so that an update fits (use CIDRs instead of single addresses)` : `apply fewer policies per file (old and new versions of each are held at once), delete policies no longer needed (pnpm lab policy delete <name>), or shrink them`,
      );
    }
  }

  /** write a plan's rules and policy record into `slot` (not yet selected); may throw part-way */
  private fill(pl: Plan, slot: number): void {
    const m = this.maps;
    for (const e of pl.exec) {
      this.beforeWrite?.('exec_rules');
      m.exec_rules.set({ slot, _pad: 0, dev: e.file.dev, ino: e.file.ino }, { rule_id: e.rule, action: e.action });
    }
    for (const e of pl.egress) {
      this.beforeWrite?.('egress_rules');
      m.egress_rules.set({ ...e.key, slot }, { rule_id: e.rule, action: e.action });
    }
    this.beforeWrite?.('policies');
    m.policies.set(slot, { id: pl.id, flags: pl.flags, uid: pl.uid, allowlist_rule: pl.allowlistRule, anon_rule: pl.anonRule, egress_rule: pl.egressRule, raw_rule: pl.rawRule, ptrace_rule: pl.ptraceRule });
  }

  /** 2. point the selector at the filled slot (one map write), 3. empty the old version's slot */
  private flip(pl: Plan, slot: number, identities: StoredPolicy['identities'], fillMs: number): ApplyReport {
    const t0 = performance.now();
    const old = this.state.policies[pl.p.name];
    const m = this.maps;
    const switchedAtNs = process.hrtime.bigint();
    if (pl.selector.kind === 'cgroup') m.cg_sel.set(BigInt(pl.selector.cgid), slot);
    else m.exe_sel.set({ dev: BigInt(pl.selector.dev), ino: BigInt(pl.selector.ino) }, slot);
    const killedUntracked = pl.selector.kind === 'exe' ? this.adoptRunning({ dev: pl.selector.statDev, ino: pl.selector.statIno }, old?.slot, slot, pl.flags) : [];
    if (old) {
      if (selKey(old.selector) !== selKey(pl.selector)) this.dropSelector(old);
      this.dropSlot(old);
    }
    const writeMs = fillMs + performance.now() - t0;
    for (const r of pl.rules) this.state.rules[String(r.id)] = r.name;
    this.state.policies[pl.p.name] = {
      policy: pl.p,
      id: pl.id,
      slot,
      selector: pl.selector,
      execKeys: pl.exec.map((e) => ({ dev: String(e.file.dev), ino: String(e.file.ino) })),
      egressKeys: pl.egress.map((e) => ({ prefixlen: e.key.prefixlen, proto: e.key.proto, port: e.key.port, addr: [...e.key.addr] })),
      identities,
      identitiesVersion: 2,
      appliedAt: new Date().toISOString(),
    };
    this.trimRuleHistory();
    return { name: pl.p.name, action: old ? 'updated' : 'created', slot, policyId: pl.id, rules: pl.rules, execEntries: pl.exec.length, egressEntries: pl.egress.length, writeMs, switchedAtNs, killedUntracked };
  }

  /**
   * Processes already running the selected executable join the policy now, not at their next fork,
   * and so do the processes they started before it (a shell one of them runs, a worker of another
   * binary): the hooks pass a selection on at fork only, so those ran on unselected. One of
   * another executable's policy keeps its own. One that procs cannot record (full) would run on
   * unselected: in enforce mode it is killed, as the hooks kill a selected exec they cannot
   * record, and counted (SEC_TRACK_ADOPT). Returns those.
   */
  private adoptRunning(sel: { dev: string; ino: string }, oldSlot: number | undefined, slot: number, flags: number): number[] {
    const killed: number[] = [];
    // an existing key is always rewritten in place (no room needed)
    const moveOld = () => {
      if (oldSlot === undefined) return;
      for (const [pid, v] of [...this.maps.procs.entries()] as [number, sec_proc][]) if (v.slot === oldSlot + 1) this.maps.procs.set(pid, { ...v, slot: slot + 1 });
    };
    moveOld();
    const ppidOf = new Map<number, number>();
    const children = new Map<number, number[]>();
    const order: number[] = [];
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const pid = Number(d);
        const ppid = Number(/PPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${d}/status`, 'utf8'))?.[1] ?? 0);
        ppidOf.set(pid, ppid);
        const kids = children.get(ppid);
        if (kids) kids.push(pid);
        else children.set(ppid, [pid]);
        const f = fileId(`/proc/${d}/exe`);
        if (String(f.dev) === sel.dev && String(f.ino) === sel.ino) order.push(pid);
      } catch {
        /* kernel thread or gone */
      }
    }
    // the binary's processes, then their descendants, parents first (a fork meanwhile is the hooks')
    const seen = new Set(order);
    for (let i = 0; i < order.length; i++) {
      for (const kid of children.get(order[i]!) ?? []) {
        if (seen.has(kid)) continue;
        const own = this.maps.procs.get(kid);
        // another executable's policy: its lineage stays its own. The old version's slot is this
        // policy's (a fork since the rewrite above passed it on): taken over, not left to be emptied
        if (own && own.slot && own.slot !== slot + 1 && !(oldSlot !== undefined && own.slot === oldSlot + 1)) continue;
        seen.add(kid);
        order.push(kid);
      }
    }
    for (const pid of order) {
      try {
        this.maps.procs.set(pid, { ppid: ppidOf.get(pid) ?? 0, slot: slot + 1 });
        // exited since the scan (its exit hook ran before the write): the entry would outlive it
        // and select whatever process gets the pid next
        if (!alive(pid)) this.maps.procs.delete(pid);
      } catch (e) {
        if (!/E2BIG|ENOMEM/.test(String(e))) throw e;
        const k = sec_track_fail.SEC_TRACK_ADOPT;
        this.maps.track_fail.set(k, (this.maps.track_fail.get(k) ?? 0n) + 1n);
        if (!(flags & F_ENFORCE)) continue;
        try {
          process.kill(pid, 'SIGKILL');
          killed.push(pid);
        } catch {
          /* gone */
        }
      }
    }
    // a process of the old version that forked during the scan passed the old slot on, which
    // dropSlot is about to empty (its child and all it starts then unselected): moved as well.
    // A fork between this pass and dropSlot still can (microseconds, not a /proc scan)
    moveOld();
    return killed;
  }

  private dropSelector(s: StoredPolicy): void {
    if (s.selector.kind === 'cgroup') this.maps.cg_sel.delete(BigInt(s.selector.cgid));
    else {
      this.maps.exe_sel.delete({ dev: BigInt(s.selector.dev), ino: BigInt(s.selector.ino) });
      for (const [pid, v] of [...this.maps.procs.entries()] as [number, sec_proc][]) if (v.slot === s.slot + 1) this.maps.procs.delete(pid);
    }
  }

  /** empty a slot completely, also of entries the state file does not list (a scan) */
  private dropSlot(s: StoredPolicy): void {
    this.clearSlot(s.slot);
    this.maps.policies.set(s.slot, { ...EMPTY_POLICY });
  }

  delete(name: string): boolean {
    this.reload();
    const s = this.state.policies[name];
    if (!s) return false;
    this.dropSelector(s);
    this.dropSlot(s);
    delete this.state.policies[name];
    this.writeConfig();
    this.save();
    return true;
  }

  deleteAll(): void {
    this.reload();
    for (const n of Object.keys(this.state.policies)) this.delete(n);
  }

  list(): (StoredPolicy & { name: string; rules: ResolvedRuleInfo[] })[] {
    this.reload();
    return Object.entries(this.state.policies).map(([name, s]) => ({
      ...s,
      name,
      rules: Object.entries(this.state.rules).filter(([k]) => Number(k) >>> 16 === s.id).map(([k, v]) => ({ id: Number(k), name: v })),
    }));
  }

  /** the config's cgroup levels and executable-selector flag with the plans' added (apply, before its flips) */
  private widenConfig(plans: Plan[]): void {
    this.setSelectorConfig(plans.map((p) => p.selector), true);
  }

  /** cgroup levels and the executable-selector flag, from the current set; exec_mode is kept */
  private writeConfig(): void {
    this.setSelectorConfig(Object.values(this.state.policies).map((p) => p.selector), false);
  }

  /** what the program looks at for these selectors: these only, or (widen) these beside the config's */
  private setSelectorConfig(selectors: StoredPolicy['selector'][], widen: boolean): void {
    const cur = this.maps.config.get(0) ?? { cg_levels: 0, exec_mode: 0, have_exe_selectors: 0, lsm_socket: 0, lsm_ptrace: 0, oracle_cgroup: 0n };
    let levels = widen ? cur.cg_levels : 0;
    let exe = widen ? cur.have_exe_selectors : 0;
    for (const sel of selectors) {
      if (sel.kind === 'cgroup') levels |= 1 << sel.level;
      else exe = 1;
    }
    if (!widen || levels !== cur.cg_levels || exe !== cur.have_exe_selectors) this.maps.config.set(0, { ...cur, cg_levels: levels, have_exe_selectors: exe });
  }

  private trimRuleHistory(): void {
    const keys = Object.keys(this.state.rules);
    if (keys.length <= 4096) return;
    const live = new Set(Object.values(this.state.policies).map((s) => s.id));
    for (const k of keys.slice(0, keys.length - 4096)) if (!live.has(Number(k) >>> 16)) delete this.state.rules[k];
  }
}

function selKey(s: StoredPolicy['selector']): string {
  return s.kind === 'cgroup' ? `cg:${s.cgid}` : `exe:${s.dev}:${s.ino}`;
}

function mask(addr: Uint8Array, bits: number): void {
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    addr[i]! &= (0xff << (8 - keep)) & 0xff;
  }
}

function describe(r: EgressRule): string {
  return `${r.protocol} ${r.to}${r.ports.length ? ` ports ${r.ports.join(',')}` : ''}`;
}

/** not gone (a zombie counts as alive: a leader whose other threads run on is one, and keeps its entry) */
function alive(pid: number): boolean {
  return fs.existsSync(`/proc/${pid}`);
}
