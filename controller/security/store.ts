// PolicyStore: turns validated policies into map entries and back. Works on the maps of a running
// controller (in-process) or on the pinned maps of a `policy daemon` (from the CLI): rules live in
// maps, so applying never reloads a program.
//
// An update is made visible in one map write: the new version is written into a free slot first
// (rules, then the policy record), then the selector entry is pointed at the new slot, then the old
// slot is emptied. A hook therefore sees either the whole old policy or the whole new one.
import fs from 'node:fs';
import path from 'node:path';
import type { BpfMap } from '../libbpf/index.ts';
import type { sec_config, sec_egress_key, sec_exec_key, sec_file_key, sec_policy, sec_proc, sec_rule } from '../../bpf/gen/security.ts';
import { cgroup2Root, cgroupDir, cgroupId, cgroupLevel } from './cgroup.ts';
import { fileId, resolveShells, type FileId } from './files.ts';
import type { Identified } from './identity.ts';
import { cidrBytes, type EgressRule, type Policy } from './policy.ts';

// values of the C enums (bpf/security.h; also generated into bpf/gen/security.ts)
export const F_ENFORCE = 1, F_EXEC_ALLOWLIST = 2, F_DENY_ANON_EXEC = 4, F_EGRESS_ALLOWLIST = 8;
export const ACTION_ALLOW = 1, ACTION_DENY = 2;
export const MAX_POLICIES = 64;
export const ANY_UID = 0xffffffff;
const EGRESS_HDR_BITS = 64;
const PROTO: Record<string, number> = { tcp: 6, udp: 17, any: 0 };

export interface SecMaps {
  config: BpfMap<number, sec_config>;
  oracle: BpfMap<number, sec_file_key>;
  policies: BpfMap<number, sec_policy>;
  cg_sel: BpfMap<bigint, number>;
  exe_sel: BpfMap<sec_file_key, number>;
  procs: BpfMap<number, sec_proc>;
  exec_rules: BpfMap<sec_exec_key, sec_rule>;
  egress_rules: BpfMap<sec_egress_key, sec_rule>;
}

export const MAP_NAMES = ['sec_config', 'policies', 'cg_sel', 'exe_sel', 'procs', 'exec_rules', 'egress_rules', 'oracle', 'events', 'lost'] as const;

export type Identify = (paths: string[]) => Map<string, Identified>;
/** stat(2) identities: right on plain file systems, wrong on overlayfs (see identity.ts) */
export const statIdentify: Identify = (paths) => new Map(paths.map((p) => [p, { ...fileId(p), how: 'stat' as const, why: 'no kernel oracle' }]));

interface StoredPolicy {
  policy: Policy;
  id: number;
  slot: number;
  selector: { kind: 'cgroup'; dir: string; cgid: string; level: number } | { kind: 'exe'; dev: string; ino: string; statDev: string; statIno: string };
  /** how each binary of the policy was identified (kernel oracle or stat), for `policy list` */
  identities: { path: string; dev: string; ino: string; how: string; why?: string }[];
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
  exec: { file: FileId; rule: number; action: number }[];
  egress: { key: Omit<sec_egress_key, 'slot'>; rule: number; action: number }[];
}

export class PolicyStore {
  constructor(
    readonly maps: SecMaps,
    public state: StoreState = emptyState(),
    private readonly statePath?: string,
    private readonly identify: Identify = statIdentify,
  ) {}

  /** Re-read the state file (another process — the CLI — may have changed it). */
  reload(): void {
    if (this.statePath && fs.existsSync(this.statePath)) this.state = JSON.parse(fs.readFileSync(this.statePath, 'utf8')) as StoreState;
  }

  private save(): void {
    if (!this.statePath) return;
    fs.mkdirSync(path.dirname(this.statePath), { recursive: true });
    fs.writeFileSync(`${this.statePath}.tmp`, JSON.stringify(this.state, null, 1));
    fs.renameSync(`${this.statePath}.tmp`, this.statePath);
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
  private plan(p: Policy, id: number, ids: Map<string, Identified>, shells: FileId[]): Plan {
    let n = 0;
    const rules: ResolvedRuleInfo[] = [];
    const rule = (desc: string) => {
      const r = { id: ((id & 0xffff) << 16) | ++n, name: `${p.name}: ${desc}` };
      rules.push(r);
      return r.id;
    };
    let selector: StoredPolicy['selector'];
    if (p.select.cgroup) {
      const root = cgroup2Root();
      const dir = cgroupDir(p.select.cgroup, root);
      if (!fs.existsSync(dir)) throw new Error(`policy ${p.name}: cgroup ${dir} does not exist`);
      selector = { kind: 'cgroup', dir, cgid: String(cgroupId(dir)), level: cgroupLevel(dir, root) };
      if (selector.level > 15) throw new Error(`policy ${p.name}: cgroup ${dir} is deeper than 15 levels`);
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
    const addEgress = (r: EgressRule, ruleId: number, action: number) => {
      const { addr, bits } = cidrBytes(r.to);
      mask(addr, bits);
      for (const port of r.ports.length ? r.ports : [0]) {
        egress.push({ key: { prefixlen: EGRESS_HDR_BITS + bits, proto: PROTO[r.protocol]!, _pad: 0, port, addr }, rule: ruleId, action });
      }
    };
    p.egress.deny.forEach((r, i) => addEgress(r, rule(`egress.deny[${i}] ${describe(r)}`), ACTION_DENY));
    let egressRule = 0;
    if (p.egress.allow) {
      flags |= F_EGRESS_ALLOWLIST;
      egressRule = rule('egress.allow (destination not on the allowlist)');
      p.egress.allow.forEach((r) => addEgress(r, egressRule, ACTION_ALLOW));
    }
    return { p, id, selector, flags, uid: p.select.uid ?? ANY_UID, rules, allowlistRule, anonRule, egressRule, exec, egress };
  }

  private freeSlot(taken: Set<number>): number {
    for (let s = 0; s < MAX_POLICIES; s++) if (!taken.has(s)) return s;
    throw new Error(`no free policy slot (at most ${MAX_POLICIES / 2} policies, each update needs a spare slot)`);
  }

  /**
   * Create or replace the given policies (others stay). Resolution of every policy happens before
   * the first map write, so a failure leaves the running set untouched.
   */
  apply(policies: Policy[]): ApplyReport[] {
    this.reload();
    let nextId = this.state.nextId;
    // every binary named anywhere, identified in one go (the kernel oracle forks once per binary)
    const shells = policies.some((p) => p.exec.deny.includes('shells')) ? resolveShells() : [];
    const paths = [...shells.map((f) => f.path), ...policies.flatMap((p) => [...p.exec.deny.filter((d) => d !== 'shells'), ...(p.exec.allow ?? []), ...(p.select.executable ? [p.select.executable] : [])])];
    const ids = this.identify(paths);
    const plans = policies.map((p) => {
      const id = nextId;
      nextId = nextId >= 0xffff ? 1 : nextId + 1;
      return this.plan(p, id, ids, shells);
    });
    const identities = new Map(plans.map((pl) => [pl.p.name, [...new Set([...pl.exec.map((e) => e.file.path), ...(pl.p.select.executable ? [pl.p.select.executable] : [])])].map((x) => {
      const i = [...ids.values()].find((v) => v.path === x || v.path === fs.realpathSync(x))!;
      return { path: x, dev: String(i.dev), ino: String(i.ino), how: i.how, why: i.why };
    })]));
    // a workload selected by two policies (one new, one already applied) is ambiguous: refuse
    for (const pl of plans) {
      for (const [n, s] of Object.entries(this.state.policies)) {
        if (n !== pl.p.name && selKey(s.selector) === selKey(pl.selector)) throw new Error(`policy ${pl.p.name}: its workload is already selected by policy "${n}"`);
      }
    }
    this.state.nextId = nextId;
    const out: ApplyReport[] = [];
    for (const pl of plans) out.push(this.write(pl, identities.get(pl.p.name) ?? []));
    this.writeConfig();
    this.save();
    return out;
  }

  private write(pl: Plan, identities: StoredPolicy['identities']): ApplyReport {
    const t0 = performance.now();
    const old = this.state.policies[pl.p.name];
    const taken = new Set(Object.values(this.state.policies).map((s) => s.slot));
    const slot = this.freeSlot(taken);
    const m = this.maps;
    // 1. rules of the new version, in a slot no selector points at yet
    m.exec_rules.updateBatch(pl.exec.map((e) => [{ slot, _pad: 0, dev: e.file.dev, ino: e.file.ino }, { rule_id: e.rule, action: e.action }]));
    for (const e of pl.egress) m.egress_rules.set({ ...e.key, slot }, { rule_id: e.rule, action: e.action });
    m.policies.set(slot, { id: pl.id, flags: pl.flags, uid: pl.uid, allowlist_rule: pl.allowlistRule, anon_rule: pl.anonRule, egress_rule: pl.egressRule });
    // 2. the switch: one map write
    const switchedAtNs = process.hrtime.bigint();
    if (pl.selector.kind === 'cgroup') m.cg_sel.set(BigInt(pl.selector.cgid), slot);
    else m.exe_sel.set({ dev: BigInt(pl.selector.dev), ino: BigInt(pl.selector.ino) }, slot);
    if (pl.selector.kind === 'exe') this.adoptRunning({ dev: pl.selector.statDev, ino: pl.selector.statIno }, old?.slot, slot);
    // 3. the old version goes
    if (old) {
      if (selKey(old.selector) !== selKey(pl.selector)) this.dropSelector(old);
      this.dropSlot(old);
    }
    const writeMs = performance.now() - t0;
    for (const r of pl.rules) this.state.rules[String(r.id)] = r.name;
    this.state.policies[pl.p.name] = {
      policy: pl.p,
      id: pl.id,
      slot,
      selector: pl.selector,
      execKeys: pl.exec.map((e) => ({ dev: String(e.file.dev), ino: String(e.file.ino) })),
      egressKeys: pl.egress.map((e) => ({ prefixlen: e.key.prefixlen, proto: e.key.proto, port: e.key.port, addr: [...e.key.addr] })),
      identities,
      appliedAt: new Date().toISOString(),
    };
    this.trimRuleHistory();
    return { name: pl.p.name, action: old ? 'updated' : 'created', slot, policyId: pl.id, rules: pl.rules, execEntries: pl.exec.length, egressEntries: pl.egress.length, writeMs, switchedAtNs };
  }

  /** processes already running the selected executable join the policy now, not at their next fork */
  private adoptRunning(sel: { dev: string; ino: string }, oldSlot: number | undefined, slot: number): void {
    for (const [pid, v] of [...this.maps.procs.entries()] as [number, sec_proc][]) {
      if (oldSlot !== undefined && v.slot === oldSlot + 1) this.maps.procs.set(pid, { ...v, slot: slot + 1 });
    }
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const f = fileId(`/proc/${d}/exe`);
        if (String(f.dev) !== sel.dev || String(f.ino) !== sel.ino) continue;
        const ppid = Number(/PPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${d}/status`, 'utf8'))?.[1] ?? 0);
        this.maps.procs.set(Number(d), { ppid, slot: slot + 1 });
      } catch {
        /* kernel thread or gone */
      }
    }
  }

  private dropSelector(s: StoredPolicy): void {
    if (s.selector.kind === 'cgroup') this.maps.cg_sel.delete(BigInt(s.selector.cgid));
    else {
      this.maps.exe_sel.delete({ dev: BigInt(s.selector.dev), ino: BigInt(s.selector.ino) });
      for (const [pid, v] of [...this.maps.procs.entries()] as [number, sec_proc][]) if (v.slot === s.slot + 1) this.maps.procs.delete(pid);
    }
  }

  private dropSlot(s: StoredPolicy): void {
    this.maps.policies.set(s.slot, { id: 0, flags: 0, uid: 0, allowlist_rule: 0, anon_rule: 0, egress_rule: 0 });
    for (const k of s.execKeys) this.maps.exec_rules.delete({ slot: s.slot, _pad: 0, dev: BigInt(k.dev), ino: BigInt(k.ino) });
    for (const k of s.egressKeys) this.maps.egress_rules.delete({ ...k, _pad: 0, slot: s.slot, addr: Uint8Array.from(k.addr) });
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

  /** cgroup levels and the executable-selector flag, from the current set; exec_mode is kept */
  private writeConfig(): void {
    const cur = this.maps.config.get(0) ?? { cg_levels: 0, exec_mode: 0, have_exe_selectors: 0, _pad: 0, oracle_cgroup: 0n };
    let levels = 0;
    let exe = 0;
    for (const s of Object.values(this.state.policies)) {
      if (s.selector.kind === 'cgroup') levels |= 1 << s.selector.level;
      else exe++;
    }
    this.maps.config.set(0, { ...cur, cg_levels: levels, have_exe_selectors: exe ? 1 : 0 });
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
