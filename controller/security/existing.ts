// Connections that selected processes already hold when an egress rule starts to deny them.
//
// Egress rules are checked where a destination is chosen: the cgroup connect and sendmsg hooks (and
// lsm/socket_connect). A connection made before a policy selected the process, or before an apply
// added the deny rule, was never shown to them — a TCP stream, or a connected UDP socket's sends
// (send(2) on a connected socket names no address, so sendmsg4/6 do not run) — and goes on
// carrying data to a destination the policy now denies. This finds those connections by asking the
// kernel's own maps the same questions the hooks ask (which slot selects the process: cg_sel by the
// cgroup's ancestors, deepest first, else procs by tgid; then egress_rules in the hooks' order), so
// the answer is the hooks' answer, and closes them on request with the kernel's socket destroy
// (`ss -K`: SOCK_DESTROY, CONFIG_INET_DIAG_DESTROY), which the process sees as ECONNABORTED.
//
// What counts as egress: a TCP socket that is not a listener and not accepted from one (its local
// address and port are a listener's in the same network namespace), and a connected UDP socket —
// the sockets whose destination a connect hook would have judged.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import type { sec_policy } from '../../bpf/gen/security.ts';
import { sec_limits } from '../../bpf/gen/security.ts';
import { cgroup2Root, cgroupId } from '../../common/cgroup.ts';
import { formatIp, fromMapped16, hostPort } from '../../common/ip.ts';
import type { SecurityEvent } from './controller.ts';
import { ACTION_DENY, ANY_UID, F_EGRESS_ALLOWLIST, F_ENFORCE, type PolicyStore } from './store.ts';

export interface HeldConnection {
  pid: number;
  comm: string;
  policy: string;
  mode: 'enforce' | 'log';
  ruleId: number;
  rule: string;
  proto: 'tcp' | 'udp';
  local: string;
  lport: number;
  remote: string;
  rport: number;
  /** the kernel's state name (TCP), "connected" for UDP */
  state: string;
  /** the socket's inode: one socket held by several processes (fork, SCM_RIGHTS) is listed once per holder */
  inode: string;
  /** an AF_INET6 socket (an IPv4 peer of one is ::ffff:a.b.c.d to ss) */
  v6: boolean;
  /** the interface a link-local connection is on (its zone): /proc/net has no scope, and the same
   *  link-local addresses and ports may be in use on two interfaces at once */
  dev?: string;
  ppid: number;
  uid: number;
  /** the holder's cgroup, relative to the cgroup2 root, and its id */
  cgroup: string;
  cgroupId: string;
}

const TCP_STATES: Record<string, string> = { '01': 'ESTABLISHED', '02': 'SYN_SENT', '03': 'SYN_RECV', '04': 'FIN_WAIT1', '05': 'FIN_WAIT2', '06': 'TIME_WAIT', '07': 'CLOSE', '08': 'CLOSE_WAIT', '09': 'LAST_ACK', '0A': 'LISTEN', '0B': 'CLOSING' };

interface SockRow {
  proto: 'tcp' | 'udp';
  /** from tcp6/udp6: an AF_INET6 socket, whose IPv4 peers are ::ffff:a.b.c.d */
  v6: boolean;
  local: Uint8Array; // 16 bytes, IPv4 as ::ffff:a.b.c.d
  lport: number;
  remote: Uint8Array;
  rport: number;
  st: string;
  inode: string;
}

/** /proc/net/{tcp,udp}[6] address: 32-bit words printed in the machine's byte order */
export function procNetAddr(hex: string): Uint8Array {
  const out = new Uint8Array(16);
  const words = hex.length === 8 ? 1 : 4;
  const base = words === 1 ? 12 : 0;
  if (words === 1) (out[10] = 0xff), (out[11] = 0xff);
  for (let w = 0; w < words; w++) {
    const v = parseInt(hex.slice(w * 8, w * 8 + 8), 16);
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0); // x86-64, arm64: little-endian, as every lab kernel
    out.set(b, base + w * 4);
  }
  return out;
}

/** rows of /proc/<pid>/net/{tcp,tcp6,udp,udp6}: the sockets of that process's network namespace */
export function parseProcNet(text: string, proto: 'tcp' | 'udp', v6: boolean): SockRow[] {
  const rows: SockRow[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [la, lp] = f[1]!.split(':');
    const [ra, rp] = f[2]!.split(':');
    rows.push({ proto, v6, local: procNetAddr(la!), lport: parseInt(lp!, 16), remote: procNetAddr(ra!), rport: parseInt(rp!, 16), st: f[3]!, inode: f[9]! });
  }
  return rows;
}

/** 0.0.0.0 / :: (an unconnected socket's remote, a listener's wildcard) */
const zero = (b: Uint8Array) => b.subarray(0, 10).every((x) => x === 0) && ((b[10] === 0 && b[11] === 0) || (b[10] === 0xff && b[11] === 0xff)) && b.subarray(12).every((x) => x === 0);
const same = (a: Uint8Array, b: Uint8Array) => a.every((x, i) => x === b[i]);

/** sockets whose destination a connect hook judged: connected UDP, TCP neither listening nor accepted */
export function egressSockets(rows: SockRow[]): SockRow[] {
  const listeners = rows.filter((r) => r.proto === 'tcp' && r.st === '0A');
  return rows.filter((r) => {
    if (r.inode === '0' || zero(r.remote)) return false;
    if (r.proto === 'udp') return true;
    if (r.st === '0A' || r.st === '06' || r.st === '07') return false;
    return !listeners.some((l) => l.lport === r.lport && (zero(l.local) || same(l.local, r.local)));
  });
}

/**
 * inode → interface of the link-local IPv6 sockets of the namespace `pid` is in, from ss (sock_diag
 * gives the bound interface, which ss prints as "[fe80::1]%eth0:port"). Only asked where a
 * link-local row is there: one ss per such namespace.
 */
export function parseSsZones(text: string): Map<string, string> {
  const zones = new Map<string, string>();
  for (const line of text.split('\n')) {
    const dev = /\]%([^\s:]+):\d+\s/.exec(line)?.[1];
    const ino = /\bino:(\d+)/.exec(line)?.[1];
    if (dev && ino) zones.set(ino, dev);
  }
  return zones;
}
function linkLocalZones(pid: number, ours: boolean): Map<string, string> | undefined {
  const ss = ['ss', '-H', '-n', '-e', '-a', '-t', '-u', '-6'];
  const argv = ours ? ss : ['nsenter', `--net=/proc/${pid}/ns/net`, ...ss];
  try {
    // (every IPv6 socket of the namespace: ~150 bytes each, far past the default 1 MiB on a busy host)
    return parseSsZones(execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 512 << 20 }));
  } catch {
    return undefined; // no ss, or the process is gone: asked again through the next process there
  }
}
/** fe80::/10, as formatIp writes it: a link-local address, meaningful only with its interface */
const linkLocal = (a: string) => /^fe[89ab][0-9a-f]:/i.test(a);

const read = (p: string) => {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return undefined; // the process exited meanwhile
  }
};

/**
 * The connections selected processes hold that the rules in force deny, as the hooks would judge
 * them now. `only`: policy names to look at (default: every policy in force).
 */
export function heldDeniedConnections(store: PolicyStore, only?: string[]): HeldConnection[] {
  const m = store.maps;
  const policies = store.list().filter((p) => !only || only.includes(p.name));
  const bySlot = new Map(policies.map((p) => [p.slot, p]));
  if (!bySlot.size) return [];
  const root = cgroup2Root();
  // cgroup (relative path) → its id (null: gone meanwhile), each stat'd once per call
  const cgIds = new Map<string, bigint | null>();
  const idOf = (rel: string): bigint | null => {
    if (!cgIds.has(rel)) {
      try {
        cgIds.set(rel, cgroupId(path.join(root, rel)));
      } catch {
        cgIds.set(rel, null);
      }
    }
    return cgIds.get(rel)!;
  };
  const cgSlot = new Map<string, number | null>();
  const slotOfCgroup = (rel: string): number | null => {
    // deepest selected ancestor first, as cg_slot_walk: a nested selected cgroup wins
    for (let d = rel; ; d = path.posix.dirname(d)) {
      if (!cgSlot.has(d)) {
        const id = idOf(d);
        cgSlot.set(d, (id === null ? undefined : m.cg_sel.get(id)) ?? null);
      }
      const s = cgSlot.get(d)!;
      if (s !== null) return s;
      if (d === '/' || d === '.') return null;
    }
  };
  // a threaded subtree's threads sit in cgroups of their own (cgroup.type other than "domain"):
  // the hooks select by the calling thread's cgroup, and any thread may send on the process's sockets
  const threaded = new Map<string, boolean>();
  const inThreaded = (rel: string): boolean => {
    if (!threaded.has(rel)) threaded.set(rel, (read(path.join(root, rel, 'cgroup.type'))?.trim() ?? 'domain') !== 'domain');
    return threaded.get(rel)!;
  };
  const cgroupOf = (task: string) => read(`${task}/cgroup`)?.split('\n').find((l) => l.startsWith('0::'))?.slice(3);
  const netns = new Map<string, SockRow[]>();
  const zones = new Map<string, Map<string, string>>();
  const ourNs = (() => {
    try {
      return fs.readlinkSync('/proc/self/ns/net');
    } catch {
      return '';
    }
  })();
  const out: HeldConnection[] = [];
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    const pid = Number(ent);
    const leaderCg = cgroupOf(`/proc/${pid}`);
    if (leaderCg === undefined) continue;
    // the tasks that may send on the process's sockets, with their cgroups: the leader, and in a
    // threaded subtree every thread (the hooks select by the calling thread's cgroup, else procs)
    const tasks: [string, string][] = [[`/proc/${pid}`, leaderCg]];
    if (inThreaded(leaderCg)) {
      let tids: string[] = [];
      try {
        tids = fs.readdirSync(`/proc/${pid}/task`);
      } catch { /* gone */ }
      for (const tid of tids) {
        const tcg = tid === ent ? undefined : cgroupOf(`/proc/${pid}/task/${tid}`);
        if (tcg !== undefined) tasks.push([`/proc/${pid}/task/${tid}`, tcg]);
      }
    }
    let procsSlot: number | null | undefined;
    const status = read(`/proc/${pid}/status`) ?? '';
    const uidOf = (task: string) => Number((task === `/proc/${pid}` ? status : read(`${task}/status`) ?? '').match(/^Uid:\s+(\d+)/m)?.[1] ?? -1);
    // every policy that selects one of them (the ones asked about): each judges the sockets
    const selections = new Map<number, { cg: string; uid: number; pol: sec_policy }>();
    for (const [task, tcg] of tasks) {
      let slot = slotOfCgroup(tcg);
      if (slot === null) {
        if (procsSlot === undefined) {
          const p = m.procs.get(pid);
          procsSlot = p?.slot ? p.slot - 1 : null;
        }
        slot = procsSlot;
      }
      if (slot === null || !bySlot.has(slot) || selections.has(slot)) continue;
      const pol: sec_policy | undefined = m.policies.get(slot);
      if (!pol?.id) continue;
      const uid = uidOf(task);
      if (pol.uid !== ANY_UID && uid !== pol.uid) continue;
      selections.set(slot, { cg: tcg, uid, pol });
    }
    if (!selections.size) continue;
    let inodes: Set<string>;
    try {
      inodes = new Set(fs.readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ''; } }).filter((l) => l.startsWith('socket:[')).map((l) => l.slice(8, -1)));
    } catch {
      continue;
    }
    if (!inodes.size) continue;
    let ns: string;
    try {
      ns = fs.readlinkSync(`/proc/${pid}/ns/net`);
    } catch {
      continue;
    }
    if (!netns.has(ns)) netns.set(ns, egressSockets((['tcp', 'tcp6', 'udp', 'udp6'] as const).flatMap((f) => parseProcNet(read(`/proc/${pid}/net/${f}`) ?? '', f.startsWith('tcp') ? 'tcp' : 'udp', f.endsWith('6')))));
    const comm = read(`/proc/${pid}/comm`)?.trim() ?? '?';
    for (const [slot, { cg, uid, pol }] of selections) {
      const sp = bySlot.get(slot)!;
      for (const r of netns.get(ns)!.filter((r) => inodes.has(r.inode))) {
        const rule = verdict(store, slot, pol, r.proto === 'tcp' ? 6 : 17, r.rport, r.remote);
        if (!rule) continue;
        const [local, remote] = [formatIp(fromMapped16(r.local)), formatIp(fromMapped16(r.remote))];
        let dev: string | undefined;
        if (r.v6 && (linkLocal(local) || linkLocal(remote))) {
          if (!zones.has(ns)) {
            const z = linkLocalZones(pid, ns === ourNs);
            if (z) zones.set(ns, z);
          }
          dev = zones.get(ns)?.get(r.inode);
        }
        out.push({
          pid, comm, policy: sp.name, mode: pol.flags & F_ENFORCE ? 'enforce' : 'log', ruleId: rule, rule: store.state.rules[String(rule)] ?? `rule ${rule}`,
          proto: r.proto, local, lport: r.lport, remote, rport: r.rport,
          state: r.proto === 'udp' ? 'connected' : TCP_STATES[r.st] ?? r.st, inode: r.inode, v6: r.v6, ...(dev ? { dev } : {}),
          ppid: Number(status.match(/^PPid:\s+(\d+)/m)?.[1] ?? 0), uid, cgroup: cg, cgroupId: String(idOf(cg) ?? 0n),
        });
      }
    }
  }
  return out;
}

/** the audit record of a connection closed by request, in the daemon's event format */
export function closedEvent(c: HeldConnection): SecurityEvent {
  const now = new Date();
  return {
    time: now.toISOString(), tsNs: String(BigInt(now.getTime()) * 1_000_000n), kind: 'connect', action: 'closed',
    mechanism: 'socket destroy (sock_diag, pnpm lab policy connections --close): a connection held from before the rule',
    pid: c.pid, ppid: c.ppid, uid: c.uid, comm: c.comm, cgroupId: c.cgroupId, cgroup: c.cgroup, policy: c.policy, ruleId: c.ruleId, rule: c.rule,
    destination: c.v6 ? `[${c.remote.includes(':') ? c.remote : `::ffff:${c.remote}`}${c.dev ? `%${c.dev}` : ''}]:${c.rport}` : `${c.remote}:${c.rport}`, protocol: c.proto,
  };
}

/** egress_lookup of bpf/security.bpf.c, on the same map: most specific first, port 0 never a wildcard */
function verdict(store: PolicyStore, slot: number, pol: sec_policy, proto: number, port: number, addr: Uint8Array): number {
  for (let i = 0; i < 4; i++) {
    if (i & 1 && port === 0) continue;
    const r = store.maps.egress_rules.get({ prefixlen: sec_limits.SEC_EGRESS_KEY_HDR_BITS + 128, slot, proto: i & 2 ? 0 : proto, _pad: 0, port: i & 1 ? 0 : port, addr });
    if (r) return r.action === ACTION_DENY ? r.rule_id : 0;
  }
  return pol.flags & F_EGRESS_ALLOWLIST ? pol.egress_rule : 0;
}

/**
 * Close each connection with the kernel's socket destroy, in the holder's network namespace, and
 * check it is gone. Returns why each one that is still there could not be closed.
 */
export async function closeConnections(conns: HeldConnection[]): Promise<Map<HeldConnection, string | null>> {
  const result = new Map<HeldConnection, string | null>();
  const ours = fs.readlinkSync('/proc/self/ns/net');
  const done = new Map<string, string | null>(); // one socket held by several processes is closed once
  for (const c of conns) {
    const key = `${c.inode} ${c.proto}${c.v6 ? '6' : ''}`;
    if (done.has(key)) {
      result.set(c, done.get(key)!);
      continue;
    }
    let ns: string;
    try {
      ns = fs.readlinkSync(`/proc/${c.pid}/ns/net`);
    } catch {
      result.set(c, null); // the process has exited: its sockets went with it (or with another holder, listed too)
      continue;
    }
    // by addresses and ports alone, a link-local one would be closed on every interface that has
    // the same 4-tuple, another process's included
    if (!c.dev && (linkLocal(c.local) || linkLocal(c.remote))) {
      result.set(c, 'not closed: its interface is not known (ss did not name it), and closing it by addresses and ports would close the same link-local 4-tuple on every interface');
      done.set(key, result.get(c)!);
      continue;
    }
    const addr = (a: string) => (c.v6 && !a.includes(':') ? `::ffff:${a}` : a);
    // a link-local 4-tuple may be in use on two interfaces: `dev` picks this one's
    const ss = ['ss', '-K', '-n', '-H', c.proto === 'tcp' ? '-t' : '-u', c.v6 ? '-6' : '-4', ...(c.proto === 'tcp' ? ['state', 'all'] : []), 'src', hostPort(addr(c.local), c.lport), 'dst', hostPort(addr(c.remote), c.rport), ...(c.dev ? ['dev', '=', c.dev] : [])];
    const cmd = ns === ours ? ss : ['nsenter', `--net=/proc/${c.pid}/ns/net`, ...ss];
    const r = await execa(cmd[0]!, cmd.slice(1), { reject: false });
    // a destroyed TCP socket leaves the table; a UDP one stays bound but is no longer connected
    const f = `${c.proto}${c.v6 ? '6' : ''}`;
    const still = egressSockets(parseProcNet(read(`/proc/${c.pid}/net/${f}`) ?? '', c.proto, c.v6)).some((x) => x.inode === c.inode);
    result.set(c, still ? (r.stderr.split('\n').find(Boolean) ?? `ss -K exited ${r.exitCode}`) + (/Operation not supported|Invalid argument/.test(r.stderr) ? ' (socket destroy needs CONFIG_INET_DIAG_DESTROY and the protocol\'s diag module: tcp_diag/udp_diag)' : '') : null);
    done.set(key, result.get(c)!);
  }
  return result;
}

const zoned = (a: string, c: HeldConnection) => (c.dev && linkLocal(a) ? `${a}%${c.dev}` : a);
export const describeHeld = (c: HeldConnection) => `pid ${c.pid} (${c.comm}) ${c.proto} ${hostPort(zoned(c.local, c), c.lport)} → ${hostPort(zoned(c.remote, c), c.rport)} ${c.state}, policy ${c.policy} (${c.mode}), rule ${c.ruleId}: ${c.rule}`;
