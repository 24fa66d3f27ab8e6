// The attack catalog and how one attack is run and judged. Shared by the scenario and the tests.
//
// Judging does not trust the attack's own word alone: an exec attack got through when the marker
// file its shell writes exists; a block counts only with the kernel event that proves it.
import fs from 'node:fs';
import path from 'node:path';
import { ROUTE_GUARD_HOOK, hasRouteGuard, type Mechanisms, type SecurityController, type SecurityEvent } from '../../controller/security/controller.ts';
import { attackArgv, launch, launchBackground, type LaunchResult } from './workload.ts';

export type Expect = 'blocked' | 'allowed';
export interface Attack {
  name: string;
  file: string;
  class: 'exec' | 'egress' | 'ptrace' | 'control';
  what: string;
  expect: Expect;
  /** outcome under a deny-list-only exec policy (no allowlist, no nameless rule) */
  expectDenyOnly?: Expect;
  /** why, when a row's expectation is not the obvious one */
  note?: string;
  /** run as root inside the workload's cgroup (raw and packet sockets need CAP_NET_RAW) */
  asRoot?: boolean;
  /** gets VICTIM_PID: a `sleep` as nobody outside the workload's cgroup, started for this attack */
  victim?: boolean;
  /** the kernel itself may refuse it to every unprivileged process (without an event to prove it
   *  was not the policy): tried outside the workload's cgroup first, see refusedByKernel */
  kernelMayRefuse?: boolean;
  /** more environment for the script: IA32=1 makes its forbidden call a 32-bit syscall (int 0x80), X32=1 an x32 one */
  env?: Record<string, string>;
}

export const ATTACKS: Attack[] = [
  { name: 'exec-sh', file: 'exec-sh.py', class: 'exec', what: '/bin/sh -c', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-bash', file: 'exec-bash.py', class: 'exec', what: '/bin/bash -c', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-dash', file: 'exec-dash.py', class: 'exec', what: '/usr/bin/dash -c', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-busybox-sh', file: 'exec-busybox-sh.py', class: 'exec', what: 'busybox sh -c', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-copied-shell', file: 'exec-copied-shell.py', class: 'exec', what: 'copy of dash, renamed', expect: 'blocked', expectDenyOnly: 'allowed', note: 'a copy is a new inode: only the allowlist stops it' },
  { name: 'exec-symlink', file: 'exec-symlink.py', class: 'exec', what: 'symlink to bash', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-hardlink', file: 'exec-hardlink.py', class: 'exec', what: 'hard link to dash', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-env-sh', file: 'exec-env-sh.py', class: 'exec', what: 'env sh -c', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-shebang-script', file: 'exec-shebang-script.py', class: 'exec', what: 'script with #!/bin/sh', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-python-system', file: 'exec-python-system.py', class: 'exec', what: 'python3 os.system', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-perl-system', file: 'exec-perl-system.pl', class: 'exec', what: 'perl system()', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-node-child-process', file: 'exec-node-child-process.mjs', class: 'exec', what: 'node child_process.execSync', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-memfd', file: 'exec-memfd.py', class: 'exec', what: 'fexecve of a memfd holding dash', expect: 'blocked', expectDenyOnly: 'allowed', note: 'a memfd has no name and a new inode: the nameless-exec rule (i_nlink == 0) stops it' },
  { name: 'exec-ld-so', file: 'exec-ld-so.py', class: 'exec', what: 'ld.so /usr/bin/dash (loader maps the shell, no exec of it)', expect: 'blocked', expectDenyOnly: 'allowed', note: 'the kernel execs ld.so, which maps dash itself: only the allowlist (which does not list ld.so) stops it' },
  { name: 'exec-grandchild', file: 'exec-grandchild.py', class: 'exec', what: 'shell from a forked grandchild', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-leader-exit', file: 'exec-leader-exit.py', class: 'exec', what: 'sh from a thread after the main thread exited', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'exec-after-prctl', file: 'exec-after-prctl.py', class: 'exec', what: 'prctl(PR_SET_NAME) then exec sh', expect: 'blocked', expectDenyOnly: 'blocked' },
  { name: 'tcp-disallowed-port', file: 'tcp-disallowed-port.py', class: 'egress', what: 'TCP to a port not allowed', expect: 'blocked' },
  { name: 'tcp-fastopen', file: 'tcp-fastopen.py', class: 'egress', what: 'TCP Fast Open: sendto(MSG_FASTOPEN) and TCP_FASTOPEN_CONNECT, v4 and v6', expect: 'blocked' },
  { name: 'tcp-mptcp', file: 'tcp-mptcp.py', class: 'egress', what: 'Multipath TCP connect (a subflow the kernel opens), v4 and v6', expect: 'blocked' },
  { name: 'udp-sendto', file: 'udp-sendto.py', class: 'egress', what: 'UDP sendto a port not allowed', expect: 'blocked' },
  { name: 'udp-sendmsg', file: 'udp-sendmsg.py', class: 'egress', what: 'UDP sendmsg a port not allowed', expect: 'blocked' },
  { name: 'ipv6-loopback', file: 'ipv6-loopback.py', class: 'egress', what: 'TCP and UDP to [::1]', expect: 'blocked' },
  { name: 'ipv4-mapped-ipv6', file: 'ipv4-mapped-ipv6.py', class: 'egress', what: 'TCP and UDP to [::ffff:127.0.0.1]', expect: 'blocked' },
  { name: 'unspecified-address', file: 'unspecified-address.py', class: 'egress', what: 'TCP to 0.0.0.0, ::ffff:0.0.0.0 and ::, UDP to 0.0.0.0 (the kernel routes them to loopback)', expect: 'blocked' },
  { name: 'connect-forked-child', file: 'connect-forked-child.py', class: 'egress', what: 'connect from a forked child', expect: 'blocked' },
  { name: 'connect-thread', file: 'connect-thread.py', class: 'egress', what: 'connect from a thread', expect: 'blocked' },
  { name: 'port-zero', file: 'port-zero.py', class: 'egress', what: 'TCP connect / UDP sendto port 0', expect: 'blocked' },
  { name: 'udp-connected-trick', file: 'udp-connected-trick.py', class: 'egress', what: 'connected UDP: sendto elsewhere; connect to a bad port', expect: 'blocked' },
  { name: 'udp-sendmmsg', file: 'udp-sendmmsg.py', class: 'egress', what: 'sendmmsg: 3 UDP datagrams in one call', expect: 'blocked' },
  { name: 'other-families', file: 'other-families.py', class: 'egress', what: 'sockets of non-inet network families (vsock, AppleTalk, PPPoX, Bluetooth, NFC, KCM, SMC, …): no egress hook sees their traffic', expect: 'blocked', kernelMayRefuse: true },
  { name: 'io-uring-socket', file: 'io-uring-socket.py', class: 'egress', what: 'sockets of non-inet network families made through io_uring (IORING_OP_SOCKET), not socket(2)', expect: 'blocked', kernelMayRefuse: true },
  { name: 'sctp-dccp', file: 'sctp-dccp.py', class: 'egress', what: 'SCTP (connect, connectx, sendto a new peer) and DCCP connect to a port not allowed: no cgroup hook sees the last two SCTP ways nor DCCP', expect: 'blocked', kernelMayRefuse: true },
  { name: 'io-uring-connect', file: 'io-uring-connect.py', class: 'egress', what: 'TCP connect submitted through io_uring (IORING_OP_CONNECT)', expect: 'blocked' },
  { name: 'icmp-ping-socket', file: 'icmp-ping-socket.py', class: 'egress', what: 'ICMP echo with a payload from an unprivileged ping socket, v4 and v6', expect: 'blocked', note: 'ping_group_range opened for the run, as systemd machines have it' },
  { name: 'ipv6-routing-header', file: 'ipv6-routing-header.py', class: 'egress', what: 'IPv6 segment routing header on a socket (IPV6_RTHDR), then a datagram to an allowed address: it goes to the first segment', expect: 'blocked' },
  { name: 'ipv6-rthdr-cmsg', file: 'ipv6-rthdr-cmsg.py', class: 'egress', what: 'type 2 routing header per message (control message IPV6_RTHDR) and as IPV6_2292PKTOPTIONS, datagrams to an allowed address: they go to the header\'s', expect: 'blocked', kernelMayRefuse: true },
  { name: 'ipv4-source-route', file: 'ipv4-source-route.py', class: 'egress', what: 'IPv4 loose source route (IP_OPTIONS, control message IP_RETOPTS): UDP and a TCP SYN to allowed addresses go to the first hop', expect: 'blocked', kernelMayRefuse: true },
  { name: 'raw-socket-udp', file: 'raw-socket-udp.py', class: 'egress', what: 'root: AF_INET SOCK_RAW, hand-built UDP to the target netns', expect: 'blocked', asRoot: true },
  { name: 'ptrace-inject', file: 'ptrace-inject.py', class: 'ptrace', what: 'ptrace a process of the same user outside the policy, inject execve of sh into it', expect: 'blocked', victim: true },
  { name: 'proc-mem', file: 'proc-mem.py', class: 'ptrace', what: 'open /proc/<pid>/mem of a process of the same user outside the policy (relative to a /proc/<pid> descriptor), read its stack and write it back', expect: 'blocked', victim: true },
  { name: 'proc-mem-uring', file: 'proc-mem-uring.py', class: 'ptrace', what: 'proc-mem through io_uring, no open syscall: IORING_OP_OPENAT to a descriptor, IORING_OP_OPENAT2 to a direct descriptor (the ring\'s own file table) read by IORING_OP_READ/WRITE', expect: 'blocked', victim: true },
  { name: 'proc-mem-uring-linked', file: 'proc-mem-uring.py', class: 'ptrace', what: 'proc-mem-uring\'s direct descriptor in one submission: IORING_OP_OPENAT2, then IORING_OP_READ and IORING_OP_WRITE linked to it (IOSQE_IO_LINK), which the kernel issues as the open completes, before a kill sent then can land', expect: 'blocked', victim: true, env: { LINKED: '1' } },
  { name: 'packet-socket', file: 'packet-socket.py', class: 'egress', what: 'root: AF_PACKET, hand-built IPv4/UDP frame out of the veth to the target netns', expect: 'blocked', asRoot: true },
  // the same calls as 32-bit syscalls (int 0x80 from the 64-bit interpreter): no syscalls:*
  // tracepoint fires for them, so the fallbacks need the raw sys_exit (Mechanisms.compat)
  { name: 'ptrace-inject-ia32', file: 'ptrace-inject.py', class: 'ptrace', what: 'ptrace-inject with the attach (PTRACE_SEIZE) made as a 32-bit syscall, int 0x80', expect: 'blocked', victim: true, env: { IA32: '1' } },
  { name: 'proc-mem-ia32', file: 'proc-mem.py', class: 'ptrace', what: 'proc-mem with the open made as a 32-bit openat, int 0x80', expect: 'blocked', victim: true, env: { IA32: '1' } },
  { name: 'packet-socket-ia32', file: 'packet-socket.py', class: 'egress', what: 'packet-socket with the socket made as a 32-bit socket(), int 0x80', expect: 'blocked', asRoot: true, env: { IA32: '1' } },
  { name: 'packet-socket-socketcall', file: 'packet-socket.py', class: 'egress', what: 'packet-socket with the socket made as a 32-bit socketcall(SYS_SOCKET), its arguments in memory', expect: 'blocked', asRoot: true, env: { IA32: '1', SOCKETCALL: '1' } },
  // the kernel runs cgroup/setsockopt for native calls only: a 32-bit one set the header past it
  { name: 'ipv6-routing-header-ia32', file: 'ipv6-routing-header.py', class: 'egress', what: 'ipv6-routing-header with the header set by a 32-bit socketcall(SYS_SETSOCKOPT), which no cgroup/setsockopt program sees', expect: 'blocked', env: { IA32: '1' } },
  // …and one a 32-bit io_uring_setup made runs its setsockopt commands as compat calls: no syscall at all
  { name: 'ipv6-routing-header-uring32', file: 'ipv6-routing-header.py', class: 'egress', what: 'ipv6-routing-header with the header set by io_uring\'s socket command (IORING_OP_URING_CMD setsockopt, 6.7+) on a ring made by a 32-bit io_uring_setup, whose commands the kernel runs as compat calls past cgroup/setsockopt', expect: 'blocked', env: { URING32: '1' }, kernelMayRefuse: true },
  // …and a send linked to that command in the same submission runs before the submitter is back in user space, where the kill lands
  { name: 'ipv6-routing-header-uring32-linked', file: 'ipv6-routing-header.py', class: 'egress', what: 'ipv6-routing-header-uring32 with the send to the allowed address an SQE linked to the setsockopt command (IOSQE_IO_LINK) in the same submission: the kernel issues it as the command completes, before a kill sent then can land', expect: 'blocked', env: { URING32: '1', LINKED: '1' }, kernelMayRefuse: true },
  { name: 'ptrace-inject-x32', file: 'ptrace-inject.py', class: 'ptrace', what: 'ptrace-inject with the attach made as an x32 syscall (bit 30 set: where the kernel takes them, syscall.x32=y)', expect: 'blocked', victim: true, env: { X32: '1' }, kernelMayRefuse: true },
  { name: 'ptrace-inject-x32-high', file: 'ptrace-inject.py', class: 'ptrace', what: 'ptrace-inject-x32 with bits above 31 set in the syscall number as well (ignored by the kernel since 5.12)', expect: 'blocked', victim: true, env: { X32: '1', X32_HIGH: '1' }, kernelMayRefuse: true },
  { name: 'proc-mem-x32', file: 'proc-mem.py', class: 'ptrace', what: 'proc-mem with the open made as an x32 openat (where the kernel takes x32 syscalls)', expect: 'blocked', victim: true, env: { X32: '1' }, kernelMayRefuse: true },
  { name: 'packet-socket-x32', file: 'packet-socket.py', class: 'egress', what: 'packet-socket with the socket made as an x32 socket() (where the kernel takes x32 syscalls)', expect: 'blocked', asRoot: true, env: { X32: '1' }, kernelMayRefuse: true },
];

export const CONTROLS: Attack[] = [
  { name: 'pg-query', file: 'pg-query.py', class: 'control', what: 'psql → PostgreSQL on the allowed port answers a query', expect: 'allowed' },
  { name: 'allowed-exec', file: 'allowed-exec.py', class: 'control', what: 'exec of an allowed non-shell binary (/usr/bin/id)', expect: 'allowed' },
];

export interface AttackResult {
  name: string;
  class: Attack['class'];
  what: string;
  expect: Expect;
  outcome: 'blocked' | 'allowed' | 'error';
  ok: boolean;
  detail: string;
  events: SecurityEvent[];
  ms: number;
  /** the kernel lacks what the attack needs (e.g. io_uring disabled): neither pass nor fail */
  unsupported?: boolean;
  /** blocked by the kernel itself, as it is outside every policy (see refusedByKernel) */
  byKernel?: boolean;
}

export interface RunEnv {
  controller: SecurityController;
  cgroupDir: string;
  /** where victims of the ptrace attack run: no policy selects it */
  outsideDir: string;
  scratch: string;
  env: Record<string, string>;
}

/** One attack in the given cgroup; events are drained from the controller right after it exits. */
export async function runAttack(a: Attack, r: RunEnv, opts: { expect?: Expect; label?: string; wouldBlock?: boolean; python?: string } = {}): Promise<AttackResult> {
  const expect = opts.expect ?? a.expect;
  const mark = path.join(r.scratch, `mark-${a.name}-${Date.now()}`);
  r.controller.drainEvents(); // whatever came before is not this attack's
  const file = path.join(r.scratch, 'attacks', a.file); // world-readable copy (see setup.ts)
  const victim = a.victim ? await startVictim(r) : undefined;
  let res: LaunchResult;
  try {
    res = await launch(r.cgroupDir, attackArgv(file, opts.python), { ...r.env, ...a.env, MARK: mark, ...(victim ? { VICTIM_PID: String(victim.pid) } : {}) }, a.asRoot ? { user: { uid: 0, gid: 0 } } : {});
  } finally {
    await victim?.stop();
  }
  // every event of this attack was written before its syscalls returned, hence before it exited
  const events = r.controller.drainEvents();
  const line = res.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  let self: { through: boolean; detail: string; unsupported?: boolean } | undefined;
  try {
    self = line ? JSON.parse(line) : undefined;
  } catch {
    self = undefined;
  }
  const markerSeen = fs.existsSync(mark);
  fs.rmSync(mark, { force: true });
  const through = markerSeen || !!self?.through;
  const proving = events.filter((e) => e.action === (opts.wouldBlock ? 'would-block' : 'blocked'));
  let outcome: AttackResult['outcome'];
  if (self?.unsupported) return { name: opts.label ?? a.name, class: a.class, what: a.what, expect, outcome: 'error', ok: false, unsupported: true, detail: `unsupported: ${self.detail}`, events, ms: res.ms };
  if (!self && !markerSeen) outcome = 'error';
  else if (through) outcome = 'allowed';
  else outcome = proving.length ? 'blocked' : 'error';
  const detail = self ? self.detail : `no report (exit ${res.exitCode ?? res.signal}): ${res.stderr.trim().split('\n').slice(-2).join(' ').slice(0, 200)}`;
  const ok = outcome === expect && (!opts.wouldBlock || proving.length > 0);
  return { name: opts.label ?? a.name, class: a.class, what: a.what, expect, outcome, ok, detail: outcome === 'error' && self && !through ? `${detail} (failed, but no blocking event proves it was the policy)` : detail, events, ms: res.ms };
}

/** the hook an attack needs that this kernel did not attach, or '' */
export function missingHook(a: Attack, m: Mechanisms): string {
  if (a.class === 'exec') return m.exec === 'none' ? 'exec hook (LSM and tp_btf/sched_process_exec)' : '';
  if ((a.env?.IA32 || a.env?.X32) && !m.compat) return 'tp_btf/sys_exit (32-bit and x32 syscalls)';
  if (a.name.startsWith('proc-mem-uring')) return m.ptraceIoUring ? '' : 'lsm/ptrace_access_check seeing io_uring\'s opens, or tp_btf/io_uring_complete';
  if (a.class === 'ptrace') return m.ptrace.length ? '' : 'lsm/ptrace_access_check or the tracepoint syscalls/sys_enter_ptrace';
  // a routing header set on the socket is refused at setsockopt, or at the send; one given per
  // message (a control message) only at the send, by BPF LSM
  // a compat ring's setsockopt command passes no cgroup/setsockopt: refused at its completion, or at the send.
  // Where BPF LSM is missing, the packet guard (cgroup_skb/egress) drops what any of them let out, with an event.
  const guard = hasRouteGuard(m);
  if (a.name.startsWith('ipv6-routing-header-uring32')) return guard || m.sourceRouting.some((h) => h === 'lsm/socket_sendmsg' || h.startsWith('tp_btf/io_uring_complete')) ? '' : `lsm/socket_sendmsg, tp_btf/io_uring_complete or ${ROUTE_GUARD_HOOK}`;
  if (a.name === 'ipv6-routing-header') return guard || m.sourceRouting.some((h) => h === 'cgroup/setsockopt' || h === 'lsm/socket_sendmsg') ? '' : `cgroup/setsockopt, lsm/socket_sendmsg or ${ROUTE_GUARD_HOOK}`;
  if (a.name === 'ipv6-rthdr-cmsg') return guard || m.sourceRouting.includes('lsm/socket_sendmsg') ? '' : `lsm/socket_sendmsg or ${ROUTE_GUARD_HOOK}`;
  // its TCP connect times out whether the guard dropped the SYN or the SYN left (the first hop drops
  // a source-routed packet): the attack can tell them apart only where setsockopt refuses the route
  if (a.name === 'ipv4-source-route') return m.sourceRouting.includes('lsm/socket_sendmsg') || (guard && m.sourceRouting.includes('cgroup/setsockopt')) ? '' : `lsm/socket_sendmsg, or cgroup/setsockopt with ${ROUTE_GUARD_HOOK} (the guard alone drops the TCP SYN, which the attack cannot tell from a SYN that left)`;
  if (a.name === 'icmp-ping-socket' || a.name === 'sctp-dccp') return m.rawSockets.some((x) => /sock_create|socket_create/.test(x)) ? '' : 'cgroup/sock_create or lsm/socket_create';
  if (a.name === 'io-uring-socket') return m.rawSockets.some((x) => /lsm|io_uring/.test(x)) ? '' : 'lsm/socket_create or tp_btf/io_uring_submit_req';
  if (a.name.startsWith('packet-socket') || a.name === 'other-families') return m.rawSockets.some((x) => /lsm|sys_enter_socket/.test(x)) ? '' : 'lsm/socket_create or tracepoint syscalls/sys_enter_socket';
  if (a.asRoot) return m.rawSockets.length ? '' : 'cgroup/sock_create or lsm/socket_create';
  return m.egress.length < 4 ? 'cgroup sock_addr hooks' : '';
}

/**
 * For an attack the kernel may refuse by itself (kernelMayRefuse): the same attack outside every
 * policy. Undefined when it got through there (the policy is what must stop it inside), else why
 * it is moot on this kernel. The run outside is returned too: it is the attack's control.
 */
export async function refusedByKernel(a: Attack, r: RunEnv): Promise<{ refused?: string; control?: AttackResult }> {
  if (!a.kernelMayRefuse) return {};
  const control = await runAttack(a, { ...r, cgroupDir: r.outsideDir }, { expect: 'allowed', label: `${a.name} outside the cgroup` });
  if (control.unsupported) return { refused: control.detail.replace(/^unsupported: /, ''), control };
  if (control.outcome !== 'allowed') return { refused: `the kernel refuses it outside every policy too (${control.detail})`, control };
  return { control };
}

/** a process no policy selects, asleep in a syscall: `sleep` as nobody in the outside cgroup */
async function startVictim(r: RunEnv): Promise<{ pid: number; stop(): Promise<unknown> }> {
  const v = launchBackground(r.outsideDir, ['/bin/sleep', '600'], r.env);
  // (not the subprocess itself: an async function would resolve it, i.e. wait for its end)
  const handle = { pid: v.pid!, stop: () => (v.kill('SIGKILL'), v.then(() => undefined, () => undefined)) };
  // the launcher execs sleep under the same pid: ready once that image sleeps
  for (let i = 0; i < 400; i++) {
    try {
      if (fs.readFileSync(`/proc/${v.pid}/comm`, 'utf8').trim() === 'sleep' && /^State:\s+S/m.test(fs.readFileSync(`/proc/${v.pid}/status`, 'utf8'))) return handle;
    } catch { /* not there yet, or gone */ }
    await new Promise((res) => setTimeout(res, 25));
  }
  await handle.stop();
  throw new Error(`the ptrace victim (pid ${v.pid}) did not start sleeping within 10 s`);
}

/** "exec /bin/sh (file dash) pid 12 ppid 11 uid 65534 → rule … via …" */
export function proof(events: SecurityEvent[]): string {
  const e = events[0];
  if (!e) return '';
  const who = `pid ${e.pid} ppid ${e.ppid} uid ${e.uid} comm ${e.comm} cgroup ${e.cgroup ?? e.cgroupId}`;
  const what = e.kind === 'exec' ? `exec ${e.binary} (file ${e.file}, ${e.inode}${e.argv0 ? `, argv0 ${e.argv0}` : ''})` : e.kind === 'socket' ? `socket ${e.socket} proto ${e.protocol}` : e.kind === 'ptrace' ? `ptrace-mode access to pid ${e.target ?? '?'}${e.call ? ` (${e.call})` : ''}` : e.kind === 'sockopt' ? `${/setsockopt/.test(e.mechanism) ? 'setsockopt' : /sys_exit/.test(e.mechanism) ? 'setsockopt (32-bit or x32)' : /connect/.test(e.mechanism) ? 'connect with' : 'send with'} ${e.option}` : `${e.kind} ${e.protocol} ${e.destination}`;
  return `${e.action}: ${what}; ${who}; rule ${e.ruleId} "${e.rule}" via ${e.mechanism}${events.length > 1 ? ` (+${events.length - 1} more)` : ''}`;
}

export function mechanismShort(events: SecurityEvent[]): string {
  const ms = [...new Set(events.map((e) => e.mechanism.replace(' + bpf_send_signal(SIGKILL)', '+SIGKILL').replace(' (-EPERM)', '')))];
  return ms.join(', ');
}
