// The security controller: loads bpf/security.bpf.o, chooses the exec mechanism by trial (BPF LSM
// where it loads and attaches, else the sched_process_exec + SIGKILL fallback), attaches the egress
// hooks at the cgroup2 root, and owns the maps through a PolicyStore. Optionally pins the maps under
// /sys/fs/bpf/ebpf-lab/security so `pnpm lab policy …` can edit a running controller's rules.
import fs from 'node:fs';
import path from 'node:path';
import { BpfMap, BpfObject, RingBuffer, rawCodec, removePinDir, type Codec, type Link } from '../libbpf/index.ts';
import { ensureObject } from '../../bpf/build.ts';
import type { sec_event } from '../../bpf/gen/security.ts';
import { cgroup2Root } from './cgroup.ts';
import { formatAddr } from './policy.ts';
import { MAP_NAMES, PolicyStore, emptyState, type SecMaps, type StoreState } from './store.ts';
import { KernelIdentity } from './identity.ts';

export const PIN_DIR = '/sys/fs/bpf/ebpf-lab/security';
export const RUN_DIR = '/run/ebpf-lab/security';
export const STATE_PATH = path.join(RUN_DIR, 'state.json');
export const EVENTS_PATH = path.join(RUN_DIR, 'events.jsonl');

const LSM_PROGS = ['sec_exec_lsm', 'sec_connect_lsm'];
const EXEC_MODE = { none: 0, lsm: 1, 'tp-kill': 2 } as const;
export const MECHANISM: Record<number, string> = {
  1: 'lsm/bprm_check_security (-EPERM)',
  2: 'tp_btf/sched_process_exec + bpf_send_signal(SIGKILL)',
  3: 'cgroup/connect4',
  4: 'cgroup/connect6',
  5: 'cgroup/sendmsg4',
  6: 'cgroup/sendmsg6',
  7: 'lsm/socket_connect (-EPERM)',
};
const KIND: Record<number, SecurityEvent['kind']> = { 1: 'exec', 2: 'connect', 3: 'sendmsg' };

export interface Mechanisms {
  exec: 'lsm' | 'tp-kill' | 'none';
  /** why LSM was (not) used: the probe's evidence */
  lsmEvidence: string;
  egress: string[];
  lsmConnect: boolean;
  /** binaries are identified by asking the kernel (exec tracepoint attached), else by stat(2) */
  oracle: boolean;
  unsupported: { hook: string; evidence: string }[];
}

export interface SecurityEvent {
  time: string;
  tsNs: string;
  kind: 'exec' | 'connect' | 'sendmsg';
  action: 'blocked' | 'would-block';
  mechanism: string;
  pid: number;
  ppid: number;
  uid: number;
  comm: string;
  cgroupId: string;
  cgroup?: string;
  policy: string;
  ruleId: number;
  rule: string;
  binary?: string;
  file?: string;
  inode?: string;
  argv0?: string;
  destination?: string;
  protocol?: string;
}

export interface ControllerOptions {
  /** pin maps under PIN_DIR and keep state in STATE_PATH (daemon mode) */
  pin?: boolean;
  /** 'off' never tries BPF LSM (e.g. to measure the fallback on an LSM kernel) */
  lsm?: 'auto' | 'off';
  /** cgroup where the egress hooks attach (default: the cgroup2 root, i.e. every process) */
  attachCgroup?: string;
  log?: (s: string) => void;
}

export class SecurityController {
  readonly store: PolicyStore;
  readonly identity: KernelIdentity;
  private rb: RingBuffer<sec_event> | null = null;
  private readonly links: Link[] = [];
  private closed = false;
  private readonly cgPaths = new Map<string, string>();
  private readonly clockOffsetNs: bigint;

  private constructor(
    readonly obj: BpfObject,
    readonly mechanisms: Mechanisms,
    private readonly pinned: boolean,
    state: StoreState,
  ) {
    const maps = mapsOf(obj);
    this.identity = new KernelIdentity(maps, false);
    this.store = new PolicyStore(maps, state, pinned ? STATE_PATH : undefined, (paths) => this.identity.identify(paths));
    this.clockOffsetNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  }

  static async start(opts: ControllerOptions = {}): Promise<SecurityController> {
    const log = opts.log ?? (() => {});
    const file = await ensureObject('security', log);
    const mech: Mechanisms = { exec: 'none', lsmEvidence: '', egress: [], lsmConnect: false, oracle: false, unsupported: [] };
    let lsmOk = false;
    if (opts.lsm !== 'off') {
      // probe by trial in a throw-away object: a failed LSM load must not take the rest down
      const probe = BpfObject.open(file);
      try {
        probe.load({ skip: [...probe.programs.keys()].filter((n) => !LSM_PROGS.includes(n)) });
        for (const n of LSM_PROGS) probe.program(n).attachLsm();
        lsmOk = true;
        mech.lsmEvidence = 'lsm/bprm_check_security and lsm/socket_connect load and attach';
      } catch (e) {
        mech.lsmEvidence = `BPF LSM: ${firstLine(e)}`;
      } finally {
        probe.close();
      }
    } else mech.lsmEvidence = 'BPF LSM not tried (lsm: off)';
    if (opts.pin) {
      const other = runningDaemon();
      if (other) throw new Error(`a security controller (pid ${other}) already owns ${PIN_DIR}; stop it first`);
      fs.mkdirSync(PIN_DIR, { recursive: true });
    }
    const obj = BpfObject.open(file);
    try {
      obj.load({ skip: lsmOk ? [] : LSM_PROGS });
      const c = new SecurityController(obj, mech, !!opts.pin, emptyState());
      c.attach(lsmOk, opts.attachCgroup ?? cgroup2Root());
      if (opts.pin) c.pin();
      return c;
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  private attach(lsmOk: boolean, cg: string): void {
    const m = this.mechanisms;
    const tryAttach = (what: string, fn: () => Link): boolean => {
      try {
        this.links.push(fn());
        return true;
      } catch (e) {
        m.unsupported.push({ hook: what, evidence: firstLine(e) });
        return false;
      }
    };
    // lineage tracking is needed by both exec mechanisms (executable selectors, ppid of egress events)
    const tpExec = tryAttach('tp_btf/sched_process_exec', () => this.obj.program('sec_exec_tp').attachTrace());
    tryAttach('tp_btf/sched_process_fork', () => this.obj.program('sec_fork_tp').attachTrace());
    tryAttach('tp_btf/sched_process_exit', () => this.obj.program('sec_exit_tp').attachTrace());
    if (lsmOk && tryAttach('lsm/bprm_check_security', () => this.obj.program('sec_exec_lsm').attachLsm())) m.exec = 'lsm';
    else if (tpExec) m.exec = 'tp-kill';
    if (lsmOk) m.lsmConnect = tryAttach('lsm/socket_connect', () => this.obj.program('sec_connect_lsm').attachLsm());
    for (const [prog, hook] of [['sec_connect4', 'cgroup/connect4'], ['sec_connect6', 'cgroup/connect6'], ['sec_sendmsg4', 'cgroup/sendmsg4'], ['sec_sendmsg6', 'cgroup/sendmsg6']] as const) {
      if (tryAttach(hook, () => this.obj.program(prog).attachCgroup(cg))) m.egress.push(hook);
    }
    this.store.maps.config.set(0, { cg_levels: 0, exec_mode: EXEC_MODE[m.exec], have_exe_selectors: 0, _pad: 0, oracle_cgroup: 0n });
    m.oracle = this.identity.available = tpExec;
  }

  private pin(): void {
    for (const n of MAP_NAMES) {
      const p = path.join(PIN_DIR, n);
      fs.rmSync(p, { force: true }); // a stale pin from a crashed daemon
      this.obj.map(n).pin(p);
    }
    fs.mkdirSync(RUN_DIR, { recursive: true });
    fs.writeFileSync(STATE_PATH, JSON.stringify(this.store.state));
    fs.writeFileSync(path.join(RUN_DIR, 'daemon.json'), JSON.stringify({ pid: process.pid, mechanisms: this.mechanisms, startedAt: new Date().toISOString() }));
  }

  /** the event ring buffer (one consumer per controller) */
  events(): RingBuffer<sec_event> {
    if (!this.rb) {
      const codec = this.obj.btf.codecByName<sec_event>('sec_event');
      this.rb = new RingBuffer<sec_event>(this.obj.map('events'), { decode: (dv, off) => codec.decode(dv, off), lostCounter: this.obj.map('lost') as BpfMap<number, unknown> });
    }
    return this.rb;
  }

  /** drain pending events, formatted */
  drainEvents(): SecurityEvent[] {
    return this.events().drain().map((e) => this.format(e));
  }

  format(e: sec_event): SecurityEvent {
    return formatEvent(e, this.store, this.clockOffsetNs, (id) => this.cgroupPath(id));
  }

  /** cgroup id → path, by walking the selected cgroups' subtrees (events come only from there) */
  cgroupPath(id: bigint): string | undefined {
    const k = String(id);
    if (this.cgPaths.has(k)) return this.cgPaths.get(k);
    const root = cgroup2Root();
    const walk = (dir: string, depth: number) => {
      try {
        this.cgPaths.set(String(fs.statSync(dir, { bigint: true }).ino), `/${path.relative(root, dir)}`);
        if (depth < 4) for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(dir, e.name), depth + 1);
      } catch {
        /* raced with rmdir */
      }
    };
    for (const s of Object.values(this.store.state.policies)) if (s.selector.kind === 'cgroup') walk(s.selector.dir, 0);
    return this.cgPaths.get(k);
  }

  get lostEvents(): number {
    return this.rb?.lost ?? 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.rb?.close();
    if (this.pinned) {
      for (const n of MAP_NAMES) fs.rmSync(path.join(PIN_DIR, n), { force: true });
      removePinDir(PIN_DIR);
      fs.rmSync(path.join(RUN_DIR, 'daemon.json'), { force: true });
      fs.rmSync(STATE_PATH, { force: true });
    }
    for (const l of this.links.reverse()) l.close();
    this.obj.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function mapsOf(obj: BpfObject): SecMaps {
  return {
    config: obj.map('sec_config'),
    oracle: obj.map('oracle'),
    policies: obj.map('policies'),
    cg_sel: obj.map('cg_sel'),
    exe_sel: obj.map('exe_sel'),
    procs: obj.map('procs'),
    exec_rules: obj.map('exec_rules'),
    egress_rules: obj.map('egress_rules'),
  } as SecMaps;
}

/** pid of a live `policy daemon`, if any */
export function runningDaemon(): number | null {
  try {
    const { pid } = JSON.parse(fs.readFileSync(path.join(RUN_DIR, 'daemon.json'), 'utf8')) as { pid: number };
    process.kill(pid, 0);
    return pid === process.pid ? null : pid;
  } catch {
    return null;
  }
}

/** the maps of a running daemon, through their pins (codecs from the object's BTF) */
export async function pinnedStore(): Promise<{ store: PolicyStore; close(): void }> {
  if (!fs.existsSync(path.join(PIN_DIR, 'policies'))) throw new Error(`no security controller is running (nothing pinned at ${PIN_DIR}); start one with: pnpm lab policy daemon`);
  const spec = BpfObject.open(await ensureObject('security'));
  const btf = spec.btf;
  const c = <T>(t: string | number): Codec<T> => (typeof t === 'number' ? (rawCodec(t) as Codec<T>) : btf.codecByName<T>(t));
  const open = <K, V>(name: string, k: string | number, v: string | number) => BpfMap.openPinned<K, V>(path.join(PIN_DIR, name), { key: c<K>(k), value: c<V>(v) });
  const maps = {
    config: open('sec_config', 4, 'sec_config'),
    oracle: open('oracle', 4, 'sec_file_key'),
    policies: open('policies', 4, 'sec_policy'),
    cg_sel: open('cg_sel', 8, 4),
    exe_sel: open('exe_sel', 'sec_file_key', 4),
    procs: open('procs', 4, 'sec_proc'),
    exec_rules: open('exec_rules', 'sec_exec_key', 'sec_rule'),
    egress_rules: open('egress_rules', 'sec_egress_key', 'sec_rule'),
  } as unknown as SecMaps;
  let oracle = false;
  try {
    oracle = !!(JSON.parse(fs.readFileSync(path.join(RUN_DIR, 'daemon.json'), 'utf8')) as { mechanisms: Mechanisms }).mechanisms.oracle;
  } catch {
    /* no daemon facts: stat identities */
  }
  const identity = new KernelIdentity(maps, oracle);
  const store = new PolicyStore(maps, emptyState(), STATE_PATH, (paths) => identity.identify(paths));
  store.reload();
  return {
    store,
    close() {
      for (const m of Object.values(maps)) (m as BpfMap).close();
      spec.close();
    },
  };
}

export function formatEvent(e: sec_event, store: PolicyStore, clockOffsetNs: bigint, cgPath?: (id: bigint) => string | undefined): SecurityEvent {
  const out: SecurityEvent = {
    time: new Date(Number((e.ts_ns + clockOffsetNs) / 1_000_000n)).toISOString(),
    tsNs: String(e.ts_ns),
    kind: KIND[e.kind] ?? 'exec',
    action: e.action === 1 ? 'blocked' : 'would-block',
    mechanism: MECHANISM[e.mech] ?? `mech ${e.mech}`,
    pid: e.pid,
    ppid: e.ppid || ppidOf(e.pid),
    uid: e.uid,
    comm: e.comm,
    cgroupId: String(e.cgroup_id),
    cgroup: cgPath?.(e.cgroup_id),
    policy: store.policyName(e.policy_id),
    ruleId: e.rule_id,
    rule: store.ruleName(e.rule_id),
  };
  if (e.kind === 1) {
    out.binary = e.binary;
    out.file = e.file;
    out.inode = `${e.dev >> 20n}:${e.dev & 0xfffffn}:${e.ino}`;
    out.argv0 = e.argv0 || undefined;
  } else {
    const a = formatAddr(e.daddr);
    const shown = e.family === 10 && a.includes('.') ? `::ffff:${a}` : a;
    out.destination = e.family === 10 ? `[${shown}]:${e.dport}` : `${shown}:${e.dport}`;
    out.protocol = e.proto === 6 ? 'tcp' : e.proto === 17 ? 'udp' : String(e.proto);
  }
  return out;
}

/** processes that joined a cgroup after their last exec have no lineage entry: ask /proc while they live */
function ppidOf(pid: number): number {
  try {
    return Number(/PPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0]!;
}
