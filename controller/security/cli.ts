// `pnpm lab policy …`: the operator's view of the security controller. Rules live in maps and
// the programs' links are pinned, so the CLI edits the maps under /sys/fs/bpf/ebpf-lab/security
// whether or not the daemon process is alive; the daemon owns the event stream (appended to
// /run/ebpf-lab/security/events.jsonl). Expected failures are LabErrors (one line + fix, printed
// by lab/cli.ts); usage mistakes are UsageErrors (exit 2).
import fs from 'node:fs';
import path from 'node:path';
import { readPolicyFile, type Policy } from './policy.ts';
import { EVENTS_PATH, LINK_DIR, PIN_DIR, RUN_DIR, HOOKS, SecurityController, WritersBusy, daemonBuild, enforcementGaps, pinnedLinks, pinnedStore, pidMax, procsGap, procsStatus, readTrackingLost, runningDaemon, stopDaemon, trackingLostText, unfinishedStart, withApplyLock, firstLine, type SecurityEvent } from './controller.ts';
import { sec_exec_mode } from '../../bpf/gen/security.ts';
import { fileId, resolveShells, type FileId } from './files.ts';
import { cgroupId } from '../../common/cgroup.ts';
import { closeConnections, closedEvent, describeHeld, heldDeniedConnections, type HeldConnection } from './existing.ts';
import { NOT_APPLIED, entriesNeeded, denyRaw, wouldResolve, type ApplyReport, type PolicyStore, type StoredPolicy } from './store.ts';
import { deferSignalsToCaller, BpfObject } from '../libbpf/index.ts';
import { ensureObject } from '../../bpf/build.ts';
import { parseArgs, suggest, UsageError, type CommandSpec, type Opts } from '../../common/args.ts';
import { LabError } from '../../common/errors.ts';
import { outputClosed } from '../../common/stdio.ts';
import { ensureMounts } from '../../common/host.ts';
import { onStopSignals } from '../../common/signals.ts';
import { jsonLine } from '../../common/printable.ts';
import { AuditLimiter, type SuppressedRecord } from './audit-limit.ts';

const COMMANDS: Record<string, CommandSpec<Opts> & { run: (a: { values: Record<string, unknown>; positionals: string[] }) => Promise<number> }> = {
  daemon: {
    usage: 'pnpm lab policy daemon [--lsm auto|off] [--ia32 check|off] [--require-all] [--log-max-mb N] [--log-rate N]',
    summary: 'Load and attach the programs, pin links and maps (enforcement outlives this process), stream events until Ctrl-C. A restart re-adopts what is pinned.',
    options: {
      lsm: { type: 'string', choices: ['auto', 'off'], default: 'auto', description: 'off: never try BPF LSM (use the tracepoint fallback)' },
      ia32: { type: 'string', choices: ['check', 'off'], default: 'check', description: 'without BPF LSM, the fallbacks see 32-bit (int 0x80) and x32 syscalls only through a check at every syscall\'s exit on the machine; off spares that cost and leaves them unjudged (an enforcement gap)' },
      'require-all': { type: 'boolean', description: 'refuse to start, leaving nothing attached, if any rule kind is not enforced on this kernel (a hook refused, or a fallback weaker than BPF LSM)' },
      'log-max-mb': { type: 'number', min: 0.01, max: 1_000_000, default: 16, valueName: 'N', description: `the audit log (${EVENTS_PATH}) moves to ${EVENTS_PATH}.1 before it would pass N MiB (the one before that is dropped): at most 2N on disk` },
      'log-rate': { type: 'number', min: 0, max: 1_000_000, default: 20, valueName: 'N', description: `records per second each policy may write to the audit log (bursts of 10 s worth); the rest are counted per rule in "suppressed" records, which slows a flood of refusals pushing earlier records out (raise --log-max-mb or ship the log to keep more). 0: no limit. Enforcement is never limited` },
    },
    run: async ({ values }) => daemon(values.lsm === 'off', values.ia32 === 'off', values['require-all'] === true, values['log-max-mb'] as number, values['log-rate'] as number),
  },
  apply: {
    usage: 'pnpm lab policy apply <file> [--close-held]',
    summary: 'Create or update the policies in a YAML/JSON file (live: map writes, no program reload; all or nothing). Connections their processes already hold that the new egress rules deny are listed.',
    options: { 'close-held': { type: 'boolean', description: 'also close those connections (enforce-mode policies; the process sees ECONNABORTED)' } },
    positionals: { names: ['file'], min: 1, max: 1 },
    run: async ({ values, positionals }) => apply(positionals[0]!, values['close-held'] === true),
  },
  connections: {
    usage: 'pnpm lab policy connections [--close] [--json]',
    summary: 'Connections selected processes hold that the egress rules in force deny (made before the rule or the selection: egress is judged at connect and send). Exit 1 while any is open.',
    options: {
      close: { type: 'boolean', description: 'close them (enforce-mode policies), with the kernel\'s socket destroy' },
      json: { type: 'boolean', description: 'machine-readable output' },
    },
    run: async ({ values }) => connections(!!values.close, !!values.json),
  },
  validate: {
    usage: 'pnpm lab policy validate <file>',
    summary: 'Check a policy file and the map capacity it needs, without applying it.',
    options: {},
    positionals: { names: ['file'], min: 1, max: 1 },
    run: async ({ positionals }) => validate(positionals[0]!),
  },
  list: {
    usage: 'pnpm lab policy list [--json]',
    summary: 'What the kernel enforces: pinned links, and per policy its slot, selector and entries (exit 1 when a policy is not enforced).',
    options: { json: { type: 'boolean', description: 'machine-readable output' } },
    run: async ({ values }) => list(!!values.json),
  },
  delete: {
    usage: 'pnpm lab policy delete <name…> | --all',
    summary: 'Remove policies (the programs stay attached; use stop to end enforcement).',
    options: { all: { type: 'boolean', description: 'remove every policy' } },
    positionals: { names: ['name'], max: 64 },
    run: async ({ values, positionals }) => del(positionals, !!values.all),
  },
  events: {
    usage: 'pnpm lab policy events [--follow]',
    summary: 'Decisions (blocked / would-block) as JSON lines.',
    options: { follow: { type: 'boolean', description: 'keep printing new events' } },
    run: async ({ values }) => events(!!values.follow),
  },
  shells: {
    usage: 'pnpm lab policy shells',
    summary: 'The binaries "shells" resolves to on this system.',
    options: {},
    run: async () => {
      for (const s of resolveShells()) console.log(`${s.path}  dev ${s.dev >> 20n}:${s.dev & 0xfffffn} ino ${s.ino}`);
      return 0;
    },
  },
  stop: {
    usage: 'pnpm lab policy stop',
    summary: 'End enforcement: stop the daemon and remove the pinned links and maps. The only command that does.',
    options: {},
    run: async () => {
      const r = await stopDaemon((s) => console.error(s));
      if (!r.links && !r.maps && !r.daemon) {
        console.log(`nothing to stop: no daemon, nothing pinned at ${PIN_DIR}`);
        return 0;
      }
      console.log(`stopped: ${r.links} links detached, ${r.maps} maps unpinned${r.daemon ? `, daemon ${r.daemon} ended` : ''}; nothing is enforced any more`);
      return 0;
    },
  },
};

function usage(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return ['usage: pnpm lab policy <command> [options]   (pnpm lab policy <command> --help for more)', '', ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(w)}  ${c.usage.replace(`pnpm lab policy ${n}`, '').trim().padEnd(26)} ${c.summary!.split('. ')[0]!.replace(/\.$/, '')}`)].join('\n');
}

export async function policyCommand(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd) throw new UsageError('policy needs a command', 'pnpm lab policy --help lists the commands');
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(usage());
    return 0;
  }
  const spec = COMMANDS[cmd];
  if (!spec) {
    const near = suggest(cmd, Object.keys(COMMANDS));
    throw new UsageError(`unknown policy command ${JSON.stringify(cmd)}${near ? ` (did you mean "${near}"?)` : ''}`, `commands: ${Object.keys(COMMANDS).join(', ')} (pnpm lab policy --help)`);
  }
  const parsed = parseArgs(rest, spec);
  if (!parsed) return 0; // --help printed
  return spec.run({ values: parsed.values as Record<string, unknown>, positionals: parsed.positionals });
}

async function apply(file: string, closeHeld: boolean): Promise<number> {
  const policies = readPolicyFile(file);
  if (!policies.length) throw new LabError(`nothing was applied: ${file} lists no policies`, 'add a policy under "policies:" (to remove policies: pnpm lab policy delete <name>|--all)');
  const h = await pinnedStore();
  try {
    // written into a half-started daemon's maps, a policy would be reported enforced while the exec
    // programs do nothing (sec_config unset) and hooks are missing
    const unfinished = unfinishedStart(h.store.maps.config.get(0));
    if (unfinished) throw new LabError(`nothing was applied: the security controller's start was cut short (${unfinished}), so what is pinned would not enforce it`, 'start the daemon: pnpm lab policy daemon (it finishes the start), then apply again');
    const reports = withApplyLock(() => h.store.apply(policies));
    for (const r of reports) {
      console.log(`${r.action} ${r.name} (policy ${r.policyId}, slot ${r.slot}): ${r.execEntries} exec and ${r.egressEntries} egress entries written in ${r.writeMs.toFixed(2)} ms`);
      for (const rule of r.rules) console.log(`  rule ${rule.id}: ${rule.name}`);
      if (r.killedUntracked.length) console.error(`warning: procs is full: ${r.killedUntracked.length} running process${r.killedUntracked.length === 1 ? '' : 'es'} of the selected binary could not be recorded and ${r.killedUntracked.length === 1 ? 'was' : 'were'} killed (pid ${r.killedUntracked.join(', ')}) rather than left unselected`);
    }
    if (!runningDaemon()) console.error('note: no daemon process is running: the policy is enforced (links are pinned), but events are not recorded until `pnpm lab policy daemon` runs');
    const held = heldDeniedConnections(h.store, reports.map((r) => r.name));
    if (held.length) {
      const left = await reportHeld(held, closeHeld);
      if (left && !closeHeld) console.error(`note: ${left} connection${left === 1 ? '' : 's'} made before these rules stay${left === 1 ? 's' : ''} open (egress is judged at connect and send): pnpm lab policy connections --close closes them`);
    }
  } finally {
    h.close();
  }
  return 0;
}

/** close the enforce-mode ones (with close) and record each closed one in the audit log */
async function closeHeld(held: HeldConnection[], close: boolean): Promise<Map<HeldConnection, string | null>> {
  const closed = await closeConnections(close ? held.filter((c) => c.mode === 'enforce') : []);
  // the audit log records what was closed and why, beside the hooks' decisions
  const audit = [...closed].filter(([, why]) => why === null).map(([c]) => jsonLine(closedEvent(c)) + '\n').join('');
  if (audit) {
    fs.mkdirSync(RUN_DIR, { recursive: true });
    fs.appendFileSync(EVENTS_PATH, audit, { mode: 0o600 });
  }
  return closed;
}

/** print each held connection and, with close, close the enforce-mode ones; returns how many stay open */
async function reportHeld(held: HeldConnection[], close: boolean): Promise<number> {
  const closed = await closeHeld(held, close);
  let left = 0;
  for (const c of held) {
    const why = closed.get(c);
    if (why === null) console.log(`closed: ${describeHeld(c)}`);
    else {
      left++;
      console.log(`held, denied: ${describeHeld(c)}${why ? ` — could not close: ${why}` : close && c.mode === 'log' ? ' (log mode: left open)' : ''}`);
    }
  }
  return left;
}

async function connections(close: boolean, json: boolean): Promise<number> {
  const h = await pinnedStore();
  try {
    const held = heldDeniedConnections(h.store);
    if (json) {
      const closed = await closeHeld(held, close);
      const out = held.map((c) => ({ ...c, closed: closed.get(c) === null, ...(closed.get(c) ? { error: closed.get(c) } : {}) }));
      console.log(JSON.stringify(out, null, 2));
      return out.some((c) => !c.closed) ? 1 : 0;
    }
    if (!held.length) {
      console.log('no connection of a selected process is denied by the egress rules in force');
      return 0;
    }
    const left = await reportHeld(held, close);
    if (left && !close) console.error(`note: ${left} held connection${left === 1 ? '' : 's'} denied by the rules in force: pnpm lab policy connections --close closes them`);
    return left ? 1 : 0;
  } finally {
    h.close();
  }
}

/** capacity of the maps: the daemon's pinned maps when one runs, else the object file's */
async function capacity(): Promise<{ exec: number; egress: number; inUse?: { exec: number; egress: number } }> {
  if (fs.existsSync(path.join(PIN_DIR, 'policies'))) {
    const h = await pinnedStore();
    try {
      let exec = 0;
      let egress = 0;
      for (const u of h.store.slotUsage().values()) (exec += u.exec), (egress += u.egress);
      return { ...h.store.capacity(), inUse: { exec, egress } };
    } finally {
      h.close();
    }
  }
  const spec = BpfObject.open(await ensureObject('security'));
  try {
    return { exec: spec.maxEntries('exec_rules'), egress: spec.maxEntries('egress_rules') };
  } finally {
    spec.close();
  }
}

async function validate(file: string): Promise<number> {
  const policies = readPolicyFile(file);
  if (!policies.length) throw new LabError(`${file} lists no policies: applying it would change nothing`, 'add a policy under "policies:"');
  const shells = policies.some((p) => p.exec.deny.includes('shells')) ? resolveShells().length : 0;
  const cap = await capacity();
  const need = policies.map((p) => ({ p, ...entriesNeeded(p, shells) }));
  const total = need.reduce((a, n) => ({ exec: a.exec + n.exec, egress: a.egress + n.egress }), { exec: 0, egress: 0 });
  console.log(`${file}: ${policies.length} polic${policies.length === 1 ? 'y' : 'ies'} valid`);
  for (const n of need) console.log(`  ${n.p.name}: ${n.exec} exec and ${n.egress} egress entries${denyRaw(n.p) ? '; raw/packet sockets denied' : n.p.egress.rawSockets === 'allow' ? '; raw/packet sockets allowed' : ''}${n.p.ptrace === 'allow' ? '; ptrace of other processes allowed' : '; ptrace of other processes denied'}`);
  console.log(`capacity: exec_rules ${cap.exec}, egress_rules ${cap.egress} entries${cap.inUse ? ` (in use now: ${cap.inUse.exec} exec, ${cap.inUse.egress} egress)` : ''}; an update holds the old and the new version at once`);
  const tooBig = need.filter((n) => n.exec > cap.exec / 2 || n.egress > cap.egress / 2);
  if (total.exec > cap.exec || total.egress > cap.egress || tooBig.length) {
    const n = tooBig[0] ?? need[0]!;
    throw new LabError(`${file}: ${tooBig.length ? `policy ${n.p.name} needs ${n.exec} exec / ${n.egress} egress entries: more than half the capacity, so it could never be updated` : `the file needs ${total.exec} exec / ${total.egress} egress entries: more than the maps hold`}`, `at most ${cap.exec / 2} exec and ${cap.egress / 2} egress entries per policy: use CIDRs instead of single addresses, fewer ports per rule`);
  }
  if (cap.inUse && (cap.inUse.exec + total.exec > cap.exec || cap.inUse.egress + total.egress > cap.egress)) {
    throw new LabError(`${file} does not fit next to the policies in force now (in use: ${cap.inUse.exec} exec, ${cap.inUse.egress} egress)`, 'delete policies no longer needed (pnpm lab policy delete <name>)');
  }
  return 0;
}

interface KernelPolicyView {
  name: string;
  mode: Policy['mode'];
  selector: string;
  slot: number;
  policyId: number;
  enforced: boolean;
  why?: string;
  execEntries: number;
  egressEntries: number;
  rules: { id: number; name: string }[];
  identities: StoredPolicy['identities'];
  appliedAt: string;
  /** what it names by identity moved from under its name (cgroup made again, binary replaced):
   * the kernel still enforces the old ids, and applying it again is the fix, not a restart */
  moved: boolean;
}

/**
 * What the policy names by identity that is no longer there under its name: a cgroup re-created
 * (a service restart: a new id, which no selector holds) or a file replaced (a package upgrade: a
 * new inode, which no rule names). list said "enforce" and exited 0 while neither was enforced
 * (review, session 58). The fix is the same for both: apply the policy again, which a running
 * daemon does itself (`moved`); one that is gone has nothing to apply to (`gone`).
 */
export function identityDrift(p: StoredPolicy): { kind: 'moved' | 'gone'; text: string }[] {
  const out: { kind: 'moved' | 'gone'; text: string }[] = [];
  const again = `pnpm lab policy apply <its file> again`;
  if (p.selector.kind === 'cgroup') {
    let now: string | null = null;
    try {
      now = String(cgroupId(p.selector.dir));
    } catch { /* gone */ }
    if (now === null) out.push({ kind: 'gone', text: `cgroup ${p.selector.dir} no longer exists (one made again under that name gets a new id, which nothing selects: make it, then ${again}; or delete the policy)` });
    else if (now !== p.selector.cgid) out.push({ kind: 'moved', text: `cgroup ${p.selector.dir} was made again (id ${now}; the policy selects id ${p.selector.cgid}: ${again})` });
  }
  for (const i of p.identities ?? []) {
    if (i.statIno === undefined) continue; // applied by a build that did not record it
    // by the name the policy gives it: a deleted link whose target stays is gone, and one pointed
    // at another file is a move (the target it names now is another inode)
    const name = i.named ?? i.path;
    let st: FileId | null = null;
    try {
      st = fileId(name);
    } catch { /* gone */ }
    if (!st) out.push({ kind: 'gone', text: i.statIno === NOT_APPLIED ? `${name} no longer exists (its allow entry was left out: put it back, or take it out of the policy's file)` : `${name} no longer exists (its rule names the file that was there: ${again})` });
    else if (i.statIno === NOT_APPLIED) out.push({ kind: 'moved', text: `${name} is back (its allow entry was left out while it was gone: ${again})` });
    else if (String(st.dev) !== i.statDev || String(st.ino) !== i.statIno) out.push({ kind: 'moved', text: `${name} was replaced since the policy was applied (its rule names the old file: ${again})` });
  }
  return out;
}

/**
 * Allowed files that are gone while their allow entry is still written: the inode it names may be
 * the next new file's (inode numbers are reused at once), which the allowlist would then let run.
 * The daemon applies such a policy again, which leaves the entry out (PolicyStore.apply keepGone).
 */
function allowedGone(p: StoredPolicy): string[] {
  const ids = p.identities ?? [];
  // a state file of a build before `allowed` and `named`: its identities hold resolved paths
  // only, matched to the allowlist as a re-apply would resolve it (a name also denied keeps its
  // deny rule, so it is no reason)
  const deny = new Set(p.policy.exec.deny);
  const legacy = p.identitiesVersion !== 2;
  const resolvedAllow = legacy ? new Set((p.policy.exec.allow ?? []).filter((a) => !deny.has(a)).map(wouldResolve)) : new Set<string>();
  return ids.filter((i) => i.statIno !== undefined && i.statIno !== NOT_APPLIED && (i.allowed || (legacy && i.named === undefined && resolvedAllow.has(i.path))) && !deny.has(i.named ?? i.path) && !fs.existsSync(i.named ?? i.path)).map((i) => i.named ?? i.path);
}

/**
 * The daemon's half of identityDrift: a policy whose binary was replaced or whose cgroup was made
 * again is applied again from its stored form, under the writers' lock. Until then a deny rule
 * named an inode nothing runs any more (a package upgrade let the denied program run: fail open)
 * and a selector an id no process has. Checked inside the lock against the state as it is then: a
 * policy applied meanwhile by a user (another version) is theirs, not re-applied over. The lock is
 * tried once, not waited for: the daemon's event pump shares this thread.
 *
 * `skip`: policies not to try now (the daemon's back-off after a failed try: an apply runs the
 * identity oracle, a process per uncached binary, and one that keeps failing must not do so every
 * second). Returns what was tried: a policy whose try found the writers' lock taken is not in it
 * (the next check takes it up).
 */
export function reapplyMoved(store: PolicyStore, skip: (name: string, why: string) => boolean = () => false): { name: string; why: string; report?: ApplyReport; error?: string; gone?: string[] }[] {
  const out: { name: string; why: string; report?: ApplyReport; error?: string; gone?: string[] }[] = [];
  store.reload();
  // why a policy is applied again ('' when it is not): what moved, without each reason's own fix
  // (the caller says what happened instead), and allowed files gone while their entry is written
  const whyOf = (p: StoredPolicy, drift = identityDrift(p)) => [...drift.filter((x) => x.kind === 'moved').map((x) => x.text.replace(/ \(.*$/, '')), ...allowedGone(p).map((x) => `${x} (allowed) no longer exists`)].join('; ');
  const moved = Object.entries(store.state.policies).filter(([, p]) => whyOf(p));
  for (const [name, seen] of moved) {
    if (skip(name, whyOf(seen))) continue;
    try {
      withApplyLock(() => {
        store.reload();
        const cur = store.state.policies[name];
        if (!cur || cur.id !== seen.id) return; // deleted or applied anew meanwhile
        const drift = identityDrift(cur);
        const why = whyOf(cur, drift);
        if (!why) return;
        // what is gone keeps the identity it was applied with (keepGone): it used to fail the
        // whole apply, and the moved one stayed unenforced
        const gone = drift.filter((d) => d.kind === 'gone').map((d) => d.text.replace(/ \(.*$/, ''));
        try {
          out.push({ name, why, report: store.apply([cur.policy], { keepGone: true })[0], ...(gone.length ? { gone } : {}) });
        } catch (e) {
          out.push({ name, why, error: firstLine(e), ...(gone.length ? { gone } : {}) });
        }
      }, 0);
    } catch (e) {
      // the writers' lock taken (a user's apply): the next check takes it up
      if (!(e instanceof WritersBusy)) throw e;
    }
  }
  return out;
}

async function list(json: boolean): Promise<number> {
  const h = await pinnedStore();
  let out: { daemon: number | null; unfinishedStart?: string; daemonBuild: ReturnType<typeof daemonBuild>; links: ReturnType<typeof pinnedLinks>; missingLinks: string[]; policies: KernelPolicyView[]; unlistedSlots: number[]; procs: ReturnType<typeof procsStatus> };
  try {
    const links = pinnedLinks();
    const s = h.store;
    const usage = s.slotUsage();
    const selected = s.selectedSlots();
    const cfg = s.maps.config.get(0);
    const have = new Set(links.map((l) => l.prog));
    // the exec programs act only in the mode sec_config names (a start cut short left it 0: off)
    const execEnforced = (have.has('sec_exec_lsm') && cfg?.exec_mode === sec_exec_mode.SEC_EXEC_LSM) || (have.has('sec_exec_tp') && cfg?.exec_mode === sec_exec_mode.SEC_EXEC_TP_KILL);
    const unfinished = unfinishedStart(cfg);
    const egressEnforced = ['sec_connect4', 'sec_connect6', 'sec_sendmsg4', 'sec_sendmsg6'].every((p) => have.has(p));
    const policies = s.list().map((p): KernelPolicyView => {
      const rec = s.maps.policies.get(p.slot);
      const u = usage.get(p.slot) ?? { exec: 0, egress: 0 };
      const problems: string[] = [];
      if (unfinished) problems.push(`the daemon's start was cut short (${unfinished}): pnpm lab policy daemon finishes it`);
      if (rec?.id !== p.id) problems.push(`slot ${p.slot} holds ${rec?.id ? `policy id ${rec.id}` : 'nothing'}`);
      if (!selected.has(p.slot)) problems.push('no selector points at its slot');
      if (p.selector.kind === 'cgroup' && cfg && !(cfg.cg_levels & (1 << p.selector.level))) problems.push(`cgroup depth ${p.selector.level} not enabled in sec_config`);
      if ((p.policy.exec.deny.length || p.policy.exec.allow || p.policy.exec.denyNameless) && !execEnforced) problems.push(have.has('sec_exec_lsm') || have.has('sec_exec_tp') ? `the exec program is off (sec_config exec mode ${cfg?.exec_mode ?? 'unset'})` : 'no exec program attached');
      if ((p.policy.egress.allow || p.policy.egress.deny.length) && !egressEnforced) problems.push('egress programs not all attached');
      const drift = identityDrift(p).map((d) => d.text);
      problems.push(...drift);
      return {
        name: p.name, mode: p.policy.mode, selector: `${p.selector.kind === 'cgroup' ? `cgroup ${p.selector.dir}` : `executable ${p.policy.select.executable}`}${p.policy.select.uid !== undefined ? ` uid ${p.policy.select.uid}` : ''}`,
        slot: p.slot, policyId: p.id, enforced: problems.length === 0, why: problems.join('; ') || undefined, moved: drift.length > 0,
        execEntries: u.exec, egressEntries: u.egress, rules: p.rules, identities: p.identities ?? [], appliedAt: p.appliedAt,
      };
    });
    // slots the kernel selects that the state file does not list (it was lost or moved away):
    // "no policies" was said, exit 0, while they were enforced (review, session 58)
    const known = new Set(policies.map((p) => p.slot));
    const unlisted = [...selected.keys()].filter((x) => !known.has(x)).sort((a, b) => a - b);
    out = { daemon: runningDaemon(), unfinishedStart: unfinished, daemonBuild: daemonBuild(await ensureObject('security')), links, missingLinks: HOOKS.filter((x) => !have.has(x.prog)).map((x) => x.prog), policies, unlistedSlots: unlisted, procs: procsStatus(s.maps) };
  } finally {
    h.close();
  }
  const bad = out.policies.filter((p) => !p.enforced);
  // processes selected by executable that procs could not record (killed, not tracked), or a
  // capacity below pid_max: a user sees it here, not only in the daemon's output
  const lost = trackingLostText(out.procs.lost);
  const procsBad = !!(lost || out.procs.gap);
  if (json) {
    console.log(JSON.stringify(out, null, 2));
    return bad.length || procsBad || out.unfinishedStart || out.unlistedSlots.length ? 1 : 0;
  }
  console.log(`daemon: ${out.daemon ? `pid ${out.daemon}` : out.unfinishedStart ? `not running, and its start was cut short (${out.unfinishedStart}): what is pinned does not enforce every rule; pnpm lab policy daemon finishes the start` : 'not running (enforcement continues in the kernel; events are not recorded: pnpm lab policy daemon)'}`);
  if (out.daemonBuild === 'other' || out.daemonBuild === 'unknown') {
    console.error(`note: the daemon (pid ${out.daemon}) ${out.daemonBuild === 'other' ? 'runs another build of security.bpf.o than this lab has' : 'predates the lab recording which build it runs'}: its programs stay in force until it is restarted\n  fix: kill ${out.daemon}, then pnpm lab policy daemon (enforcement stays pinned meanwhile; the new daemon replaces the programs that differ, new before old)`);
  }
  console.log(`links (kernel): ${out.links.map((l) => `${l.prog}#${l.linkId}`).join(', ') || 'none'}  [${LINK_DIR}]`);
  if (!out.policies.length) console.log(out.unlistedSlots.length ? 'no policies in the state file' : 'no policies');
  if (out.unlistedSlots.length) console.log(`enforced by the kernel, not in the state file: slot${out.unlistedSlots.length === 1 ? '' : 's'} ${out.unlistedSlots.join(', ')}`);
  for (const p of out.policies) {
    const state = p.enforced ? (p.mode === 'enforce' ? 'enforce' : 'log') : `NOT ENFORCED (${p.why})`;
    console.log(`${p.name}  ${state}  ${p.selector}  kernel: slot ${p.slot}, policy id ${p.policyId}, ${p.execEntries} exec + ${p.egressEntries} egress entries  (applied ${p.appliedAt})`);
    for (const r of p.rules) console.log(`  rule ${r.id}: ${r.name}`);
    for (const i of p.identities) console.log(`  binary ${i.named ? `${i.named} → ` : ''}${i.path}: ${i.statIno === NOT_APPLIED ? 'not applied (allowed, gone at the last re-apply)' : `${BigInt(i.dev) >> 20n}:${BigInt(i.dev) & 0xfffffn}:${i.ino} (${i.how}${i.why ? `: ${i.why}` : ''})`}`);
  }
  const pr = out.procs;
  console.log(`procs (processes selected by executable, and the parents of selected ones): ${pr.inUse} of ${pr.capacity} entries (${pr.prealloc ? 'preallocated' : 'allocated per entry'}), kernel.pid_max ${pr.pidMax}`);
  if (bad.length) {
    const moved = bad.filter((p) => p.moved);
    const other = bad.length - moved.length;
    // each its own fix: a restart reconciles the state with the kernel; it does nothing for a
    // cgroup made again or a binary replaced, which only an apply picks up
    if (moved.length) console.error(`error: ${moved.map((p) => p.name).join(', ')}: what ${moved.length === 1 ? 'it names' : 'they name'} moved from under ${moved.length === 1 ? 'its' : 'their'} name since the apply (the kernel still enforces the old ids)\n  fix: apply ${moved.length === 1 ? 'it' : 'them'} again (pnpm lab policy apply <file>); see each reason above${out.daemon ? `. The running daemon (pid ${out.daemon}) applies a replaced binary or a cgroup made again by itself within a second: if this stays, its log says why it cannot` : ''}`);
    if (other) console.error(`error: ${other} polic${other === 1 ? 'y is' : 'ies are'} listed but not enforced by the kernel\n  fix: restart the daemon (pnpm lab policy daemon) to reconcile, then apply the policy again`);
  }
  if (lost) console.error(`error: ${lost}\n  fix: see the tracking events (pnpm lab policy events); ${pr.gap ? 'procs is smaller than pid_max (below)' : 'more processes were tracked at once than procs holds'}`);
  if (pr.gap) console.error(`error: not enforced: ${pr.gap}`);
  if (out.unlistedSlots.length) console.error(`error: the kernel enforces ${out.unlistedSlots.length} polic${out.unlistedSlots.length === 1 ? 'y' : 'ies'} the state file does not list (slot ${out.unlistedSlots.join(', ')})\n  fix: restart the daemon (kill it, then pnpm lab policy daemon): it adopts them as unknown-slot-N, which list shows and delete removes`);
  return bad.length || procsBad || out.unfinishedStart || out.unlistedSlots.length ? 1 : 0;
}

async function del(names: string[], all: boolean): Promise<number> {
  if (!all && !names.length) throw new UsageError('name the policies to delete, or give --all', 'usage: pnpm lab policy delete <name…> | --all');
  if (all && names.length) throw new UsageError('give policy names or --all, not both', 'usage: pnpm lab policy delete <name…> | --all');
  const h = await pinnedStore();
  try {
    withApplyLock(() => {
      if (all) {
        const n = Object.keys(h.store.state.policies).length;
        h.store.deleteAll();
        const swept = h.store.sweep();
        console.log(`deleted ${n} polic${n === 1 ? 'y' : 'ies'}${swept.length ? `; cleared ${swept.reduce((a, s) => a + s.entries, 0)} unreferenced entries` : ''}`);
        return;
      }
      names = [...new Set(names)]; // one name given twice is one delete ("deleted x" was said twice)
      const have = Object.keys(h.store.state.policies);
      const missing = names.filter((n) => !have.includes(n));
      // all names checked before the first delete: nothing half-applied
      if (missing.length) {
        const near = suggest(missing[0]!, have);
        throw new LabError(`no policy "${missing[0]}"${near ? ` (did you mean "${near}"?)` : ''} — nothing was deleted`, `policies in force: ${have.join(', ') || 'none'} (pnpm lab policy list)`);
      }
      for (const n of names) {
        h.store.delete(n);
        console.log(`deleted ${n}`);
      }
    });
  } finally {
    h.close();
  }
  return 0;
}

async function daemon(lsmOff: boolean, ia32Off: boolean, requireAll: boolean, logMaxMb: number, logRate: number): Promise<number> {
  // our stop path closes handles in order; the binding's default would just exit
  deferSignalsToCaller();
  await ensureMounts(); // bpffs for the pins, tracefs for the socket tracepoint
  const c = await SecurityController.start({ pin: true, lsm: lsmOff ? 'off' : 'auto', ia32: ia32Off ? 'off' : 'check', requireAll });
  const m = c.mechanisms;
  console.error(`security controller ${process.pid}: exec via ${m.exec} (${m.lsmEvidence}); egress via ${m.egress.join(', ') || 'nothing'}; raw/packet sockets via ${m.rawSockets.join(', ') || 'nothing'}; other processes via ${m.ptrace.join(', ') || 'nothing'}`);
  for (const a of c.adoption) console.error(`adopt: ${a}`);
  const kernel = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  for (const u of m.unsupported) console.error(`unsupported: ${u.hook} on ${kernel}: ${u.evidence}`);
  // what the fallbacks cover less than BPF LSM would: said at every start, not only in the docs
  for (const g of enforcementGaps(m).filter((g) => !m.unsupported.some((u) => u.hook === g.what))) console.error(`not enforced on ${kernel}: ${g.what} (${g.evidence})`);
  console.error(`links and maps are pinned under ${PIN_DIR}: enforcement continues if this process ends; \`pnpm lab policy stop\` ends it`);
  // a policy applied by a build that recorded no stat identities cannot be followed (reapplyMoved)
  const unfollowed = Object.entries(c.store.state.policies).filter(([, p]) => (p.identities ?? []).some((i) => i.statIno === undefined)).map(([n]) => n);
  if (unfollowed.length) console.error(`note: ${unfollowed.join(', ')}: applied by an older build, which did not record what its binaries were; apply ${unfollowed.length === 1 ? 'its file' : 'their files'} again so that this daemon follows a replaced binary`);
  // the audit log (who ran what, where they connected) is root's alone, as the kernel's pins are
  fs.writeFileSync(EVENTS_PATH, '', { flag: 'a', mode: 0o600 });
  fs.chmodSync(EVENTS_PATH, 0o600); // one an older daemon made world-readable
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  // a hangup too (the terminal went away): the pins keep enforcing, only this process ends
  const offSignals = onStopSignals(() => stop());
  // pid_max can be raised at runtime (sysctl) past what procs holds, and tracking can be lost
  // (procs full): looked at every 10 s, said once when it changes
  let said = { gap: procsGap(m.procs)?.evidence ?? '', lost: trackingLostText(readTrackingLost(c.store.maps.track_fail)) };
  if (said.lost) console.error(`warning: ${said.lost}`);
  const watch = setInterval(() => {
    const now = { gap: procsGap({ ...m.procs, pidMax: pidMax() })?.evidence ?? '', lost: trackingLostText(readTrackingLost(c.store.maps.track_fail)) };
    if (now.gap && now.gap !== said.gap) console.error(`not enforced on ${kernel}: selection by executable beyond procs capacity (${now.gap})`);
    if (now.lost && now.lost !== said.lost) console.error(`warning: ${now.lost} (pnpm lab policy list)`);
    said = now;
  }, 10_000);
  watch.unref();
  // file names and argv are the watched processes' to choose: no raw control or bidi character
  // reaches the terminal of whoever reads the log (jsonLine)
  // the log of a busy or attacked machine grew without end: before a line would take it past the
  // limit it moves aside (one old file kept), so neither holds more than the limit. A write that
  // fails (a full /run) is said once and the events still go to stdout: the pump must go on.
  const maxBytes = Math.round(logMaxMb * 1024 * 1024);
  let logSize = fs.statSync(EVENTS_PATH).size;
  let writeFailed = '';
  const moveAside = () => {
    fs.renameSync(EVENTS_PATH, `${EVENTS_PATH}.1`);
    logSize = 0;
  };
  if (logSize > maxBytes) moveAside(); // an older daemon's, or one kept under a larger limit
  // a selected process's refusals cost it nothing: per policy, what passes the limit is counted
  // instead of written (audit-limit.ts)
  const limiter = new AuditLimiter({ rate: logRate, burst: Math.max(1, Math.round(logRate * 10)), summaryMs: 10_000 });
  const record = (evs: (SecurityEvent | SuppressedRecord)[]) => {
    if (!evs.length) return;
    let chunk = '';
    let chunkBytes = 0;
    const flush = () => {
      process.stdout.write(chunk);
      try {
        fs.appendFileSync(EVENTS_PATH, chunk, { mode: 0o600 });
        logSize += chunkBytes;
        writeFailed = '';
      } catch (e) {
        const why = firstLine(e);
        if (why !== writeFailed) console.error(`warning: ${EVENTS_PATH}: ${why}: events go to stdout only until it can be written again`);
        writeFailed = why;
      }
      chunk = '';
      chunkBytes = 0;
    };
    for (const e of evs) {
      const line = `${jsonLine(e)}\n`;
      const n = Buffer.byteLength(line);
      if (logSize + chunkBytes + n > maxBytes && logSize + chunkBytes > 0) {
        flush();
        try {
          moveAside();
        } catch (err) {
          if (!writeFailed) console.error(`warning: could not move ${EVENTS_PATH} aside: ${firstLine(err)}`);
        }
      }
      chunk += line;
      chunkBytes += n;
    }
    flush();
  };
  // victims whose event a full ring lost: at start (stopped while no daemon ran), after each batch
  // (the ring was full: this daemon is catching up) and each second (no event follows the loss)
  record(limiter.admit(c.sweepLostStops()));
  const sweep = setInterval(() => record(limiter.admit(c.sweepLostStops())), 1000);
  sweep.unref();
  // a named binary replaced or a selected cgroup made again: applied again within a second
  // (reapplyMoved). A failed try is said once per policy and error, and tried again after a back-off
  // (5 s, doubling to 5 min) or at once when what moved changes; an error of the check itself (an
  // unreadable state file) is said once and the daemon goes on enforcing
  const failed = new Map<string, { error: string; why: string; next: number; wait: number }>();
  let checkError = '';
  const follow = setInterval(() => {
    let tried: ReturnType<typeof reapplyMoved>;
    try {
      tried = reapplyMoved(c.store, (name, why) => {
        const f = failed.get(name);
        return !!f && f.why === why && Date.now() < f.next;
      });
      checkError = '';
    } catch (e) {
      if (firstLine(e) !== checkError) console.error(`warning: checking the policies' binaries and cgroups failed: ${firstLine(e)} (enforcement goes on; pnpm lab policy list)`);
      checkError = firstLine(e);
      return;
    }
    for (const r of tried) {
      if (r.report) {
        failed.delete(r.name);
        console.error(`re-applied policy ${r.name}: ${r.why} (policy ${r.report.policyId}, slot ${r.report.slot}: ${r.report.execEntries} exec and ${r.report.egressEntries} egress entries)${r.gone ? `; gone, as applied (a denied file's rule kept, an allowed one's entry left out): ${r.gone.join('; ')}` : ''}`);
        const now = new Date();
        record([{ time: now.toISOString(), tsNs: String(BigInt(now.getTime()) * 1_000_000n), kind: 'policy', action: 'reapplied', mechanism: 'policy daemon: what the policy names by identity moved, so it was applied again', pid: process.pid, ppid: process.ppid, uid: process.getuid?.() ?? 0, comm: 'policy daemon', cgroupId: '', policy: r.name, ruleId: 0, rule: r.why }]);
        continue;
      }
      const f = failed.get(r.name);
      const wait = f && f.why === r.why ? Math.min(f.wait * 2, 300_000) : 5000;
      if (!f || f.error !== r.error || f.why !== r.why) {
        console.error(`warning: policy ${r.name} is not enforced on what moved (${r.why}): applying it again failed: ${r.error} (retried every ${wait / 1000} s up to 5 min; pnpm lab policy list)`);
      }
      failed.set(r.name, { error: r.error!, why: r.why, next: Date.now() + wait, wait });
    }
  }, 1000);
  follow.unref();
  const rb = c.events();
  const pump = (async () => {
    for await (const batch of rb.batches()) {
      c.store.reload(); // rule names may have changed through the CLI
      record(limiter.admit([...batch.map((e) => c.format(e)), ...c.sweepLostStops()]));
    }
  })();
  await stopped;
  clearInterval(watch);
  clearInterval(sweep);
  clearInterval(follow);
  c.close(); // closes the ring buffer (ends the pump) and our handles; pinned links keep enforcing
  await pump.catch(() => {});
  record(limiter.flush()); // counts not yet written would be lost with this process
  offSignals();
  return 0;
}

async function events(follow: boolean): Promise<number> {
  if (!fs.existsSync(EVENTS_PATH)) throw new LabError(`no events file ${EVENTS_PATH}`, 'start the controller: pnpm lab policy daemon');
  // the file outlives its daemon: say so, or a past run's events read as what is happening now
  if (!runningDaemon()) console.error(`note: no daemon is running: these events were recorded up to ${fs.statSync(EVENTS_PATH).mtime.toISOString()}; new ones are recorded only while \`pnpm lab policy daemon\` runs`);
  // read through a descriptor, so that a log the daemon moves aside (--log-max-mb) is read to its
  // end before the new one: by name, its unread tail went with it
  let fd = fs.openSync(EVENTS_PATH, 'r');
  let pos = 0;
  const readNew = () => {
    const size = fs.fstatSync(fd).size;
    if (size < pos) pos = 0; // truncated
    if (size === pos) return;
    const buf = Buffer.alloc(size - pos);
    fs.readSync(fd, buf, 0, buf.length, pos);
    const end = buf.lastIndexOf(10) + 1; // whole lines only
    process.stdout.write(buf.subarray(0, end));
    pos += end;
  };
  const dump = () => {
    readNew();
    if (!follow) return;
    let ino: number;
    try {
      ino = fs.statSync(EVENTS_PATH).ino;
    } catch {
      return; // moved aside, the next one not written yet
    }
    if (ino === fs.fstatSync(fd).ino) return;
    readNew();
    fs.closeSync(fd);
    fd = fs.openSync(EVENTS_PATH, 'r');
    pos = 0;
    readNew();
  };
  try {
    dump();
    while (follow && !outputClosed()) {
      await new Promise((r) => setTimeout(r, 200));
      dump();
    }
  } finally {
    fs.closeSync(fd);
  }
  return 0;
}
