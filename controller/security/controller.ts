// The security controller: loads bpf/security.bpf.o, chooses the exec mechanism by trial (BPF LSM
// where it loads and attaches, else the sched_process_exec + SIGKILL fallback), attaches the egress
// hooks at the cgroup2 root, and owns the maps through a PolicyStore.
//
// As a daemon (pin: true) it fails closed: maps and every bpf_link are pinned under
// /sys/fs/bpf/ebpf-lab/security, so enforcement lives in the kernel and outlives the process (a
// crash, kill -9, SIGTERM). A restarted daemon re-adopts the pinned maps, and the pinned links
// whose program is this build's (no gap, no reattach); one of another build is replaced, new before
// old. It reconciles its state file with the kernel and says what it found. Only
// `pnpm lab policy stop` (stopDaemon) removes the pins and with them the enforcement.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Btf, BpfObject, Kind, Link, MapType, RingBuffer, UpdateFlags, attachCgroup, attachLsm, attachTrace, attachTracepoint, enableStats, libbpf, libc, mapInfo, makePinDir, mapTypeName, pinnedMapInfo, progInfoById, removePinDir, type BpfMap } from '../libbpf/index.ts';
import { ensureObject } from '../../bpf/build.ts';
import { sec_call, sec_event_action, sec_event_kind, sec_exec_mode, sec_mech, sec_opt_origin, sec_track_fail, security, type Security as SecuritySkeleton, type SecurityShape, type sec_event, type sec_lost_stop } from '../../bpf/gen/security.ts';
import { cgroup2Root, cgroupLevel, cgroupsById } from '../../common/cgroup.ts';
import { activeLsms, ensureMounts, processAlive, procStart, readPidStat, terminate } from '../../common/host.ts';
import { readLockHolder, tryLock, unlock, withLockWaitSync } from '../../common/lockfile.ts';
import { formatAddr } from './policy.ts';
import { F_ENFORCE, MAP_NAMES, PolicyStore, emptyState, type SecMaps, type StoreState, type StoredPolicy } from './store.ts';
import { KernelIdentity } from './identity.ts';
import { LabError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/state-file.ts';
import type { sec_exec_key, sec_egress_key, sec_file_key } from '../../bpf/gen/security.ts';

export const PIN_DIR = '/sys/fs/bpf/ebpf-lab/security';
/** one pinned bpf_link per attached program, named after the program */
export const LINK_DIR = path.join(PIN_DIR, 'links');
/** suffix of a replacement link pinned beside the one it replaces, until renamed over it */
const NEW_PIN = '-new'; // not '.new': bpffs refuses names with a dot (EPERM)
export const RUN_DIR = '/run/ebpf-lab/security';
export const STATE_PATH = path.join(RUN_DIR, 'state.json');
export const EVENTS_PATH = path.join(RUN_DIR, 'events.jsonl');
/**
 * Held by the daemon from before it looks at the pins until it exits. Two daemons started at once
 * both found no daemon.json (written only once a daemon is up): one pinned every link, the other
 * failed each pin with EEXIST, called the hooks "unsupported" and ran on enforcing nothing of its
 * own; `policy stop` then stopped that one and unpinned, while the first kept its links attached
 * through its fds, unrecorded, after "nothing is enforced any more".
 */
const DAEMON_LOCK = path.join(RUN_DIR, 'daemon.lock');
/**
 * Written when a daemon's start has attached and pinned everything and set sec_config; removed
 * only with the pins (stopDaemon). Pins without it, or missing links it names, are a start killed
 * part-way: some hooks unpinned and sec_config unwritten (its exec mode 0 turns the exec programs
 * off), while `policy apply` and `list` read the pins as enforcing. daemon.json cannot tell: a
 * daemon that ends cleanly removes it and leaves its pins enforcing.
 */
const STARTED_PATH = path.join(RUN_DIR, 'started.json');

const LSM_PROGS = ['sec_exec_lsm', 'sec_connect_lsm', 'sec_socket_lsm', 'sec_ptrace_lsm'];
/** the last line against a source route set past cgroup/setsockopt or given per message, where BPF LSM's send check is missing */
export const ROUTE_GUARD_HOOK = 'cgroup_skb/egress';
/** is the packet guard (ROUTE_GUARD_HOOK) among what refuses source routes here */
export const hasRouteGuard = (m: Pick<Mechanisms, 'sourceRouting'>): boolean => m.sourceRouting.some((h) => h.startsWith(ROUTE_GUARD_HOOK));
/** every program the controller attaches, and where */
export const HOOKS: { prog: SecurityShape['programs']; hook: string; kind: 'trace' | 'lsm' | 'cgroup' | 'tracepoint' }[] = [
  { prog: 'sec_exec_tp', hook: 'tp_btf/sched_process_exec', kind: 'trace' },
  { prog: 'sec_fork_tp', hook: 'tp_btf/sched_process_fork', kind: 'trace' },
  { prog: 'sec_exit_tp', hook: 'tp_btf/sched_process_exit', kind: 'trace' },
  { prog: 'sec_exec_lsm', hook: 'lsm/bprm_check_security', kind: 'lsm' },
  { prog: 'sec_connect_lsm', hook: 'lsm/socket_connect', kind: 'lsm' },
  { prog: 'sec_socket_lsm', hook: 'lsm/socket_create', kind: 'lsm' },
  { prog: 'sec_connect4', hook: 'cgroup/connect4', kind: 'cgroup' },
  { prog: 'sec_connect6', hook: 'cgroup/connect6', kind: 'cgroup' },
  { prog: 'sec_sendmsg4', hook: 'cgroup/sendmsg4', kind: 'cgroup' },
  { prog: 'sec_sendmsg6', hook: 'cgroup/sendmsg6', kind: 'cgroup' },
  { prog: 'sec_sock_create', hook: 'cgroup/sock_create', kind: 'cgroup' },
  { prog: 'sec_setsockopt', hook: 'cgroup/setsockopt', kind: 'cgroup' },
  { prog: 'sec_socket_tp', hook: 'tracepoint/syscalls/sys_enter_socket', kind: 'tracepoint' },
  { prog: 'sec_io_uring_socket', hook: 'tp_btf/io_uring_submit_req', kind: 'trace' },
  { prog: 'sec_io_uring_socket_sqe', hook: 'tp_btf/io_uring_submit_sqe', kind: 'trace' },
  { prog: 'sec_ptrace_lsm', hook: 'lsm/ptrace_access_check', kind: 'lsm' },
  { prog: 'sec_sendmsg_lsm', hook: 'lsm/socket_sendmsg', kind: 'lsm' },
  // where lsm/socket_sendmsg is missing: packets that carry a source route (bpf/security.bpf.c, sec_route_guard)
  { prog: 'sec_route_guard', hook: ROUTE_GUARD_HOOK, kind: 'cgroup' },
  { prog: 'sec_ptrace_tp', hook: 'tracepoint/syscalls/sys_enter_ptrace', kind: 'tracepoint' },
  // a refused PTRACE_ATTACH left its victim stopped: its return names the victim (see resumeStopped)
  { prog: 'sec_ptrace_exit_tp', hook: 'tracepoint/syscalls/sys_exit_ptrace', kind: 'tracepoint' },
  { prog: 'sec_vm_readv_tp', hook: 'tracepoint/syscalls/sys_enter_process_vm_readv', kind: 'tracepoint' },
  { prog: 'sec_vm_writev_tp', hook: 'tracepoint/syscalls/sys_enter_process_vm_writev', kind: 'tracepoint' },
  { prog: 'sec_pidfd_getfd_tp', hook: 'tracepoint/syscalls/sys_enter_pidfd_getfd', kind: 'tracepoint' },
  { prog: 'sec_openat_exit_btf', hook: 'tracepoint/syscalls/sys_exit_openat', kind: 'tracepoint' },
  { prog: 'sec_open_exit_btf', hook: 'tracepoint/syscalls/sys_exit_open', kind: 'tracepoint' },
  { prog: 'sec_openat2_exit_btf', hook: 'tracepoint/syscalls/sys_exit_openat2', kind: 'tracepoint' },
  { prog: 'sec_openat_exit_tp', hook: 'tracepoint/syscalls/sys_exit_openat', kind: 'tracepoint' },
  { prog: 'sec_open_exit_tp', hook: 'tracepoint/syscalls/sys_exit_open', kind: 'tracepoint' },
  { prog: 'sec_openat2_exit_tp', hook: 'tracepoint/syscalls/sys_exit_openat2', kind: 'tracepoint' },
  { prog: 'sec_io_uring_open_btf', hook: 'tp_btf/io_uring_complete', kind: 'trace' },
  { prog: 'sec_io_uring_open', hook: 'tp_btf/io_uring_complete', kind: 'trace' },
  // a child of a selected process that procs could not record dies at its first return from fork;
  // last: attached only where another syscall tracepoint is (see CLONE_EXITS)
  { prog: 'sec_clone_exit_tp', hook: 'tracepoint/syscalls/sys_exit_clone', kind: 'tracepoint' },
  { prog: 'sec_clone3_exit_tp', hook: 'tracepoint/syscalls/sys_exit_clone3', kind: 'tracepoint' },
  { prog: 'sec_fork_exit_tp', hook: 'tracepoint/syscalls/sys_exit_fork', kind: 'tracepoint' },
  { prog: 'sec_vfork_exit_tp', hook: 'tracepoint/syscalls/sys_exit_vfork', kind: 'tracepoint' },
  // the same fallbacks for 32-bit syscalls, which fire no syscalls:* tracepoint; last: attached
  // only where one of those is (see COMPAT_EXIT)
  { prog: 'sec_compat_exit', hook: 'tp_btf/sys_exit', kind: 'trace' },
];
/**
 * The kill of a child procs could not record. Any syscall tracepoint puts every task on the
 * machine on the slow syscall path (getppid 167 → 220 ns on this lab's host, perf bench syscall
 * basic with one enabled; exploratory, no stored run): attached only where the fallbacks (no BPF
 * LSM) have put them there already. Under BPF LSM the child runs under its parent's policy instead
 * (bpf/security.bpf.c, doomed).
 */
const CLONE_EXITS = ['sec_clone_exit_tp', 'sec_clone3_exit_tp', 'sec_fork_exit_tp', 'sec_vfork_exit_tp'];
/**
 * A 32-bit (ia32) syscall fires no syscalls:* tracepoint, and any x86-64 process can make one with
 * int 0x80: ptrace(PTRACE_SEIZE) that way attached to another process past the fallback
 * (scenarios/security's ptrace-inject with IA32=1); so does an x32 one where the kernel takes them
 * (syscall.x32=y; X32=1). Where the fallbacks' tracepoints are attached, this program on the raw
 * sys_exit judges the 32-bit and x32 numbers of the same calls. It runs at every
 * syscall's exit on the machine (a load and a switch for the rest); under BPF LSM, whose hooks
 * see both ABIs, it is not attached.
 */
const COMPAT_EXIT = 'sec_compat_exit';
export const COMPAT_HOOK = 'tp_btf/sys_exit (32-bit and x32 syscalls) + SIGKILL';
/** the tracepoint fallbacks of other processes' access, left out where lsm/ptrace_access_check
 *  attaches (the sys_exit_open* ones catch a descriptor of another process's /proc/<pid>/mem) */
const PTRACE_TPS = ['sec_ptrace_tp', 'sec_vm_readv_tp', 'sec_vm_writev_tp', 'sec_pidfd_getfd_tp', 'sec_openat_exit_btf', 'sec_open_exit_btf', 'sec_openat2_exit_btf', 'sec_openat_exit_tp', 'sec_open_exit_tp', 'sec_openat2_exit_tp', 'sec_io_uring_open_btf', 'sec_io_uring_open'];
/** /proc/<pid>/mem opened through io_uring (IORING_OP_OPENAT/OPENAT2), and a source route set by a
 *  compat ring's setsockopt command (IORING_OP_URING_CMD), where LSM is missing, in two
 *  builds: the opcode, which every io_uring completion's early return reads, by a BTF-typed load
 *  (bpf_rdonly_cast, 6.2+) where that loads, else by a helper read. The first that loads is used. */
const URING_OPEN = ['sec_io_uring_open_btf', 'sec_io_uring_open'];
const URING_OPEN_HOOK = 'tp_btf/io_uring_complete';
/** the same programs judge a setsockopt command of a ring a 32-bit io_uring_setup made */
export const URING_SOCKOPT_HOOK = 'tp_btf/io_uring_complete (a 32-bit ring\'s setsockopt) + SIGKILL';
/** IORING_OP_SOCKET's fallback under the submission tracepoint's two names: the one that loads is loaded */
const URING_PROGS = ['sec_io_uring_socket', 'sec_io_uring_socket_sqe'];
/** the /proc/<pid>/mem check at every open's exit, in two builds of one check: BTF-typed loads
 *  (5.11+/6.2+, less than half the cost per open on this lab's host) where they load, else helper reads */
const MEM_BTF = ['sec_openat_exit_btf', 'sec_open_exit_btf', 'sec_openat2_exit_btf'];
const MEM_HELPER = ['sec_openat_exit_tp', 'sec_open_exit_tp', 'sec_openat2_exit_tp'];
// keyed by the C enums (bpf/security.h), read from the object's BTF into bpf/gen/security.ts
const EXEC_MODE = { none: sec_exec_mode.SEC_EXEC_NONE, lsm: sec_exec_mode.SEC_EXEC_LSM, 'tp-kill': sec_exec_mode.SEC_EXEC_TP_KILL } as const;
export const MECHANISM: Record<number, string> = {
  [sec_mech.SEC_MECH_LSM_BPRM]: 'lsm/bprm_check_security (-EPERM)',
  [sec_mech.SEC_MECH_TP_EXEC_KILL]: 'tp_btf/sched_process_exec + bpf_send_signal(SIGKILL)',
  [sec_mech.SEC_MECH_CGROUP_CONNECT4]: 'cgroup/connect4',
  [sec_mech.SEC_MECH_CGROUP_CONNECT6]: 'cgroup/connect6',
  [sec_mech.SEC_MECH_CGROUP_SENDMSG4]: 'cgroup/sendmsg4',
  [sec_mech.SEC_MECH_CGROUP_SENDMSG6]: 'cgroup/sendmsg6',
  [sec_mech.SEC_MECH_LSM_CONNECT]: 'lsm/socket_connect (-EPERM)',
  [sec_mech.SEC_MECH_CGROUP_SOCK_CREATE]: 'cgroup/sock_create',
  [sec_mech.SEC_MECH_LSM_SOCKET_CREATE]: 'lsm/socket_create (-EPERM)',
  [sec_mech.SEC_MECH_TP_SOCKET_KILL]: 'tracepoint/syscalls/sys_enter_socket + bpf_send_signal(SIGKILL)',
  [sec_mech.SEC_MECH_LSM_PTRACE]: 'lsm/ptrace_access_check (-EPERM)',
  [sec_mech.SEC_MECH_TP_PTRACE_KILL]: 'syscall tracepoint + bpf_send_signal(SIGKILL)',
  [sec_mech.SEC_MECH_CGROUP_SETSOCKOPT]: 'cgroup/setsockopt',
  [sec_mech.SEC_MECH_LSM_SENDMSG]: 'lsm/socket_sendmsg (-EPERM)',
  [sec_mech.SEC_MECH_TP_IO_URING_KILL]: 'tp_btf/io_uring_submit_{req,sqe} (IORING_OP_SOCKET) + bpf_send_signal(SIGKILL)',
  [sec_mech.SEC_MECH_TP_IO_URING_OPEN_KILL]: 'tp_btf/io_uring_complete (IORING_OP_OPENAT/OPENAT2) + bpf_send_signal(SIGKILL)',
  [sec_mech.SEC_MECH_PROCS_EXEC_KILL]: 'tp_btf/sched_process_exec + bpf_send_signal(SIGKILL) (procs full)',
  [sec_mech.SEC_MECH_PROCS_FORK_KILL]: 'tp_btf/sched_process_fork + bpf_send_signal(SIGKILL) (procs full)',
  [sec_mech.SEC_MECH_PROCS_CHILD_KILL]: 'tracepoint/syscalls/sys_exit_{clone,clone3,fork,vfork} + bpf_send_signal(SIGKILL) (procs full)',
  [sec_mech.SEC_MECH_TP_COMPAT_KILL]: 'tp_btf/sys_exit (a 32-bit syscall) + bpf_send_signal(SIGKILL)',
  [sec_mech.SEC_MECH_TP_X32_KILL]: 'tp_btf/sys_exit (an x32 syscall) + bpf_send_signal(SIGKILL)',
  [sec_mech.SEC_MECH_TP_IO_URING_SOCKOPT_KILL]: 'tp_btf/io_uring_complete (a 32-bit ring\'s setsockopt) + bpf_send_signal(SIGKILL)',
  [sec_mech.SEC_MECH_CGROUP_SKB_ROUTE]: 'cgroup_skb/egress (packet dropped)',
};
/** what a tracking event (procs could not record a selected process) says happened, by enum sec_track_fail */
const TRACK_LOST: Record<number, string> = {
  [sec_track_fail.SEC_TRACK_EXEC]: 'procs full: this process exec\'d a selected binary and could not be recorded (killed in enforce mode)',
  [sec_track_fail.SEC_TRACK_FORK]: 'procs full: the child this process forked could not be recorded (parent killed in enforce mode; the child dies before it runs, or under BPF LSM is held to this policy)',
  [sec_track_fail.SEC_TRACK_CHILD]: 'procs full: child of a selected process not recorded, killed before its first instruction (enforce mode)',
};

/**
 * Capacity of `procs` (tgid → selection lineage): kernel.pid_max entries, one per live process at
 * most (an entry goes with its process, a reused pid overwrites), at least PROCS_FLOOR.
 * Preallocated (no allocation in the hooks; ~80 bytes per entry, bpftool map show memlock on 6.18:
 * 2.6 MB for 32768 on this lab's host, 10.5 MB for 131072) up to PROCS_PREALLOC_MAX; above it
 * allocated per entry (BPF_F_NO_PREALLOC): for systemd's pid_max of 4194304 that is 67 MB (the
 * bucket array, plus entries in use) instead of 335 MB up front.
 */
export const PROCS_FLOOR = 1024;
export const PROCS_PREALLOC_MAX = 131072;
const BPF_F_NO_PREALLOC = 1;
export function procsSizing(pidMax: number, override?: number): { maxEntries: number; flags: number } {
  const maxEntries = override ?? Math.max(PROCS_FLOOR, pidMax);
  return { maxEntries, flags: maxEntries > PROCS_PREALLOC_MAX ? BPF_F_NO_PREALLOC : 0 };
}

export function pidMax(): number {
  return Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim());
}

/** processes `procs` could not record where a selection was at stake (bpf/security.h enum sec_track_fail) */
export interface TrackingLost {
  /** exec of a selected binary: killed */
  exec: number;
  /** fork by a selected process: the parent killed */
  fork: number;
  /** that fork's child, killed before its first instruction (none under BPF LSM: held to the parent's policy) */
  child: number;
  /** that fork's child, not even marked (the `doomed` map full): it may run unselected */
  childLost: number;
  /** running processes of a selected binary an apply could not record: killed by the controller */
  adopt: number;
}

export function readTrackingLost(m: BpfMap<number, bigint>): TrackingLost {
  const n = (i: number) => Number(m.get(i) ?? 0n);
  return { exec: n(sec_track_fail.SEC_TRACK_EXEC), fork: n(sec_track_fail.SEC_TRACK_FORK), child: n(sec_track_fail.SEC_TRACK_CHILD), childLost: n(sec_track_fail.SEC_TRACK_CHILD_LOST), adopt: n(sec_track_fail.SEC_TRACK_ADOPT) };
}

/** `procs` as the kernel has it: capacity, entries in use, pid_max now, what could not be recorded */
export function procsStatus(maps: SecMaps): { capacity: number; prealloc: boolean; inUse: number; pidMax: number; lost: TrackingLost; gap?: string } {
  const i = mapInfo(maps.procs.fd);
  let inUse = 0;
  for (const _ of maps.procs.keys()) inUse++;
  const p = { capacity: i.maxEntries, pidMax: pidMax(), prealloc: !(i.flags & BPF_F_NO_PREALLOC) };
  return { ...p, inUse, lost: readTrackingLost(maps.track_fail), gap: procsGap(p)?.evidence };
}

/** one line for a user, or '' when nothing was lost */
export function trackingLostText(t: TrackingLost): string {
  if (!t.exec && !t.fork && !t.child && !t.childLost && !t.adopt) return '';
  // log-mode policies kill nothing: their processes are counted here too, and run on
  const parts = [t.exec && `${t.exec} exec${t.exec === 1 ? '' : 's'} of a selected binary killed`, t.fork && `${t.fork} selected parent${t.fork === 1 ? '' : 's'} killed at fork`, t.child && `${t.child} of their children killed before running`, t.childLost && `${t.childLost} children NOT stopped (may run unselected)`, t.adopt && `${t.adopt} running selected process${t.adopt === 1 ? '' : 'es'} killed at apply`].filter(Boolean);
  return `tracking lost (procs full: processes selected by executable could not be recorded): ${parts.join(', ')} (log-mode policies: reported, not killed)`;
}
// <linux/io_uring.h>: the operations an event's `call` may name (SEC_CALL_IO_URING | opcode)
const IORING_OP: Record<number, string> = { 18: 'IORING_OP_OPENAT', 28: 'IORING_OP_OPENAT2' };
const KIND: Record<number, SecurityEvent['kind']> = { [sec_event_kind.SEC_EV_EXEC]: 'exec', [sec_event_kind.SEC_EV_CONNECT]: 'connect', [sec_event_kind.SEC_EV_SENDMSG]: 'sendmsg', [sec_event_kind.SEC_EV_SOCKET]: 'socket', [sec_event_kind.SEC_EV_PTRACE]: 'ptrace', [sec_event_kind.SEC_EV_SOCKOPT]: 'sockopt', [sec_event_kind.SEC_EV_TRACKING]: 'tracking' };
// the syscalls the ptrace tracepoints watch, by their x86-64 numbers (what the event's `call` holds there)
const SYSCALL_X86_64: Record<number, string> = { 2: 'open', 101: 'ptrace', 257: 'openat', 310: 'process_vm_readv', 311: 'process_vm_writev', 437: 'openat2', 438: 'pidfd_getfd' };
/** the same calls' numbers in the 32-bit table (sec_call.SEC_CALL_IA32 | number) */
const SYSCALL_IA32: Record<number, string> = { 5: 'open', 26: 'ptrace', 295: 'openat', 347: 'process_vm_readv', 348: 'process_vm_writev', 437: 'openat2', 438: 'pidfd_getfd' };
/** x32 numbers (bit 30 taken off): the x86-64 ones, with x32's own ptrace and process_vm_* */
const SYSCALL_X32: Record<number, string> = { ...SYSCALL_X86_64, 521: 'ptrace', 539: 'process_vm_readv', 540: 'process_vm_writev' };
// level << 16 | option of a source route a sockopt event names (bpf/security.bpf.c)
const SOURCE_ROUTE_OPTS: Record<number, string> = { [(0 << 16) | 4]: 'IP_OPTIONS', [(0 << 16) | 7]: 'IP_RETOPTS', [(41 << 16) | 5]: 'IPV6_2292RTHDR', [(41 << 16) | 6]: 'IPV6_2292PKTOPTIONS', [(41 << 16) | 57]: 'IPV6_RTHDR' };
const CMSG_TOO_MANY = 0xffffffff; // SEC_OPT_CMSG_TOO_MANY, a #define
function optionName(o: number): string {
  if (o === CMSG_TOO_MANY) return 'more control messages than are inspected (16)';
  return SOURCE_ROUTE_OPTS[o] ?? `level ${o >>> 16} option ${o & 0xffff}`;
}

// <linux/socket.h>: the families an event may name (every one but unix, netlink and alg is refused
// under rawSockets: deny)
const FAMILY: Record<number, string> = {
  2: 'AF_INET', 3: 'AF_AX25', 4: 'AF_IPX', 5: 'AF_APPLETALK', 6: 'AF_NETROM', 7: 'AF_BRIDGE', 8: 'AF_ATMPVC', 9: 'AF_X25', 10: 'AF_INET6',
  11: 'AF_ROSE', 12: 'AF_DECnet', 13: 'AF_NETBEUI', 14: 'AF_SECURITY', 15: 'AF_KEY', 17: 'AF_PACKET', 18: 'AF_ASH', 19: 'AF_ECONET', 20: 'AF_ATMSVC',
  21: 'AF_RDS', 22: 'AF_SNA', 23: 'AF_IRDA', 24: 'AF_PPPOX', 25: 'AF_WANPIPE', 26: 'AF_LLC', 27: 'AF_IB', 28: 'AF_MPLS', 29: 'AF_CAN', 30: 'AF_TIPC',
  31: 'AF_BLUETOOTH', 32: 'AF_IUCV', 33: 'AF_RXRPC', 34: 'AF_ISDN', 35: 'AF_PHONET', 36: 'AF_IEEE802154', 37: 'AF_CAIF', 39: 'AF_NFC', 40: 'AF_VSOCK',
  41: 'AF_KCM', 42: 'AF_QIPCRTR', 43: 'AF_SMC', 44: 'AF_XDP', 45: 'AF_MCTP',
};
const SOCK_TYPE: Record<number, string> = { 1: 'SOCK_STREAM', 2: 'SOCK_DGRAM', 3: 'SOCK_RAW', 5: 'SOCK_SEQPACKET', 6: 'SOCK_DCCP', 10: 'SOCK_PACKET' };

export interface Mechanisms {
  exec: 'lsm' | 'tp-kill' | 'none';
  /** why LSM was (not) used: the probe's evidence */
  lsmEvidence: string;
  egress: string[];
  lsmConnect: boolean;
  /** how raw IP / packet sockets are refused: lsm/socket_create, else cgroup/sock_create (+ the tracepoint for AF_PACKET) */
  rawSockets: string[];
  /** how source routes (IPv6 routing headers, IPv4 LSRR/SSRR) are refused: cgroup/setsockopt
   *  (set on the socket), lsm/socket_sendmsg (a send's control messages and the socket's options),
   *  lsm/socket_connect (the socket's options) */
  sourceRouting: string[];
  /** how access to other processes in ptrace's attach mode is refused: the LSM hook, else the syscalls' tracepoints */
  ptrace: string[];
  /** what refuses another process's /proc/<pid>/mem opened through io_uring (IORING_OP_OPENAT/OPENAT2):
   *  the LSM hook where io_uring's workers are threads of the submitting process, else
   *  tp_btf/io_uring_complete + SIGKILL; '' where neither does (then listed in `unsupported`) */
  ptraceIoUring: string;
  /** binaries are identified by asking the kernel (exec tracepoint attached), else by stat(2) */
  oracle: boolean;
  /** `procs` (tgid → lineage of processes selected by executable): its capacity against
   *  kernel.pid_max now, and whether its entries are preallocated. A child it cannot record is
   *  `killed` at its first return from fork where the syscall tracepoints are attached anyway (no
   *  BPF LSM), else `governed`: it runs under its parent's policy, read from `doomed` */
  procs: { capacity: number; pidMax: number; prealloc: boolean; unrecordedChild: 'killed' | 'governed' };
  /** what judges the tracepoint fallbacks' calls made as 32-bit syscalls (int 0x80), which fire no
   *  syscalls:* tracepoint: COMPAT_HOOK; 'none needed' where no fallback hangs on a syscall
   *  tracepoint (BPF LSM) or the machine is not x86-64; '' where they are attached and it is not */
  compat: string;
  unsupported: { hook: string; evidence: string }[];
}

/**
 * What a policy can say that this kernel's mechanisms do not enforce: every hook refused
 * (m.unsupported), and what a fallback covers less than BPF LSM would. The daemon prints these at
 * start; `--require-all` refuses to start while any is left.
 */
export function enforcementGaps(m: Mechanisms): { what: string; evidence: string }[] {
  const gaps = m.unsupported.map((u) => ({ what: u.hook, evidence: u.evidence }));
  const had = (h: string) => gaps.some((g) => g.what === h);
  const noLsm = m.lsmEvidence ? `; ${m.lsmEvidence}` : '';
  if (m.exec === 'none') gaps.push({ what: 'exec rules', evidence: `no exec hook attached${noLsm}` });
  if (!m.oracle && m.exec !== 'none') gaps.push({ what: 'binary identity from the kernel', evidence: 'the exec tracepoint is not attached: binaries are identified by stat(2), which disagrees with the kernel on overlayfs' });
  if (!m.egress.length) gaps.push({ what: 'egress rules', evidence: 'no cgroup connect/sendmsg hook attached' });
  if (!m.rawSockets.length) gaps.push({ what: 'rawSockets: deny', evidence: `no socket-creation hook attached${noLsm}` });
  if (!m.ptrace.length) gaps.push({ what: 'ptrace: deny', evidence: `no hook for access to other processes attached${noLsm}` });
  else if (!m.ptraceIoUring && !gaps.some((g) => /io_uring/.test(g.what))) gaps.push({ what: '/proc/<pid>/mem opened through io_uring', evidence: 'neither lsm/ptrace_access_check nor tp_btf/io_uring_complete refuses it here' });
  if (!m.sourceRouting.includes('lsm/socket_sendmsg') && !had('lsm/socket_sendmsg')) {
    // the packet guard judges a route by the socket's cgroup, else by the task sending, which is at
    // hand only in its own send: a socket routed before its process was selected whose packets
    // then leave from softirq alone (ACK-clocked TCP data) is judged by whatever task was interrupted
    if (hasRouteGuard(m)) gaps.push({ what: 'a source route on a socket given it before its process was selected, whose packets then leave only from softirq (TCP data sent ACK-clocked)', evidence: `${ROUTE_GUARD_HOOK} judges by the sending task only in that task's own send${noLsm}` });
    else gaps.push({ what: 'source routes given per message (control messages)', evidence: `only lsm/socket_sendmsg sees them${noLsm}` });
  }
  // the fallbacks' own windows (README, "Known gaps of the fallbacks"): listed there, not here, so
  // --require-all started on them (review, session 58). lsm/ptrace_access_check judges inside the
  // open, in whichever task, and has neither
  if (m.ptrace.length && !m.ptrace.includes('lsm/ptrace_access_check')) {
    gaps.push({ what: 'a /proc/<pid>/mem descriptor another thread uses or moves between the open and its kill', evidence: `the fallbacks judge the open at its return or completion, by the descriptor in the caller's table${noLsm}` });
    if (m.ptraceIoUring.startsWith(URING_OPEN_HOOK)) gaps.push({ what: 'an io_uring open of /proc/<pid>/mem completed as task work after the submitter unshared its file table (IORING_SETUP_DEFER_TASKRUN)', evidence: `${URING_OPEN_HOOK} looks the descriptor up in the current task's table, not the ring's${noLsm}` });
  }
  if (!m.compat && !had('tp_btf/sys_exit')) gaps.push({ what: '32-bit (ia32) syscalls', evidence: 'the syscall tracepoint fallbacks (ptrace, /proc/<pid>/mem, packet sockets, unrecorded children) do not see a call made with int 0x80 (nor an x32 one, where syscall.x32=y), and their check at every syscall\'s exit is off (--ia32 off)' });
  const gap = procsGap(m.procs);
  if (gap) gaps.push(gap);
  return gaps;
}

/**
 * `procs` holds fewer processes than pid_max allows to live at once (pid_max raised with sysctl
 * after the map was made, or a test's capacity): past that many, a process selected by executable
 * cannot be recorded and is killed (fail closed) rather than tracked.
 */
export function procsGap(p: Omit<Mechanisms['procs'], 'unrecordedChild'>): { what: string; evidence: string } | undefined {
  if (p.capacity >= p.pidMax) return undefined;
  return { what: 'selection by executable beyond procs capacity', evidence: `procs holds ${p.capacity} processes but kernel.pid_max is ${p.pidMax}: past ${p.capacity} recorded processes at once, a selected binary's exec or a selected process's fork is killed instead of tracked (the pinned map keeps its size: pnpm lab policy stop, then start the daemon and apply the policies again)` };
}

export interface SecurityEvent {
  time: string;
  tsNs: string;
  /** tracking: a process the policy selects by executable could not be recorded (procs full) */
  kind: 'exec' | 'connect' | 'sendmsg' | 'socket' | 'ptrace' | 'sockopt' | 'tracking' | 'policy';
  /**
   * closed: a connection held from before its deny rule, destroyed by `policy connections --close`
   * (not a hook's decision); resumed: a process a refused PTRACE_ATTACH had stopped, continued by
   * the daemon (ptrace events; see `resumed`); reapplied (kind policy): a policy whose binary was
   * replaced or whose cgroup was made again, applied again by the daemon (`rule` says what moved)
   */
  action: 'blocked' | 'would-block' | 'closed' | 'resumed' | 'reapplied';
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
  /** socket events: e.g. "AF_INET SOCK_RAW" */
  socket?: string;
  /** ptrace events: the process it tried to reach (absent when not known: pidfd_getfd). LSM gives
   *  the host's pid; a syscall tracepoint the pid as the caller named it, in its pid namespace */
  target?: number;
  /** ptrace events decided at a syscall tracepoint: which syscall */
  call?: string;
  /** sockopt events: the source route refused, e.g. "IPV6_RTHDR", "IP_RETOPTS (control message)" */
  option?: string;
  /** resumed events: what the SIGCONT to `target` (its host pid) did */
  resumed?: string;
  /** resumed events the ring had no room for, found in the stopped_lost map instead (sweepLostStops) */
  lostFromRing?: true;
}

export interface ControllerOptions {
  /** pin maps under PIN_DIR and keep state in STATE_PATH (daemon mode) */
  pin?: boolean;
  /** 'off' never tries BPF LSM (e.g. to measure the fallback on an LSM kernel) */
  lsm?: 'auto' | 'off';
  /** cgroup where the egress hooks attach (default: the cgroup2 root, i.e. every process) */
  attachCgroup?: string;
  /** 'off' leaves 32-bit syscalls unjudged where the tracepoint fallbacks run, sparing every
   *  syscall on the machine the check at its exit (COMPAT_EXIT); an enforcement gap. A check a
   *  previous daemon pinned is adopted all the same (`policy stop` first drops it). */
  ia32?: 'check' | 'off';
  /** tests only: a build of security.bpf.c other than the lab's own (standing for another release) */
  object?: string;
  /** tests only: the capacity of `procs` instead of kernel.pid_max (a tiny one fills it with a few processes) */
  procsCapacity?: number;
  /** refuse to start (leaving nothing attached or pinned) if any rule kind is not enforced here:
   *  a hook refused, or a fallback that covers less than BPF LSM (enforcementGaps) */
  requireAll?: boolean;
  log?: (s: string) => void;
}

export class SecurityController {
  readonly store: PolicyStore;
  readonly identity: KernelIdentity;
  private rb: RingBuffer<sec_event> | null = null;
  private readonly links: Link[] = [];
  /** links a refused start leaves as they are: adopted ones, and this build's replacements of them */
  private readonly kept = new Set<Link>();
  /** adopted links this build would not attach (left for retire(), after the start is accepted) */
  private retiring = new Map<string, Link>();
  /** ControllerOptions.ia32 'off': COMPAT_EXIT is not attached (an adopted one stays) */
  private ia32Off = false;
  /** daemon start-up: what was found pinned and how the state file was reconciled */
  readonly adoption: string[] = [];
  /** of the security.bpf.o this controller loaded (daemon.json: `policy list` tells an older daemon) */
  objectSha256 = '';
  private closed = false;
  private readonly cgPaths = new Map<string, string>();
  private readonly clockOffsetNs: bigint;

  readonly obj: BpfObject;

  private constructor(
    readonly skel: SecuritySkeleton,
    readonly mechanisms: Mechanisms,
    private readonly pinned: boolean,
    state: StoreState,
  ) {
    this.obj = skel.obj;
    const maps = mapsOf(skel);
    this.identity = new KernelIdentity(maps, false);
    this.store = new PolicyStore(maps, state, pinned ? STATE_PATH : undefined, (paths) => this.identity.identify(paths));
    this.clockOffsetNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  }

  static async start(opts: ControllerOptions = {}): Promise<SecurityController> {
    const log = opts.log ?? (() => {});
    // the tracepoint fallbacks attach through tracefs and the pins live on bpffs: on a machine that
    // has not mounted them every fallback was left out, silently (seen on a fresh boot, session 60)
    await ensureMounts();
    const file = opts.object ?? (await ensureObject('security', log));
    const mech: Mechanisms = { exec: 'none', lsmEvidence: '', egress: [], lsmConnect: false, rawSockets: [], sourceRouting: [], ptrace: [], ptraceIoUring: '', oracle: false, procs: { capacity: 0, pidMax: pidMax(), prealloc: true, unrecordedChild: 'governed' }, compat: 'none needed', unsupported: [] };
    // links a previous daemon pinned: kept as they are (no gap in enforcement) where their program
    // is this build's; the others move to `stale`, replaced in attach()
    const adopted = new Map<string, Link>();
    const stale = new Map<string, Link>();
    let unfinished: string | undefined;
    if (opts.pin) {
      fs.mkdirSync(RUN_DIR, { recursive: true });
      const held = tryLock(DAEMON_LOCK);
      const other = held === true ? runningDaemon() : held;
      if (other) {
        if (held === true) unlock(DAEMON_LOCK);
        throw new LabError(`a security controller (pid ${other}) already owns ${PIN_DIR}`, `stop it first (Ctrl-C or kill ${other}; enforcement stays pinned), or use that one`);
      }
      unfinished = unfinishedStart();
      makePinDir(LINK_DIR);
      // a replacement pinned beside the link it replaces (attach) by a daemon that died before the
      // rename: the old link is still pinned in its place, so removing this ends nothing
      for (const d of [LINK_DIR, PIN_DIR]) for (const n of fs.readdirSync(d).filter((x) => x.endsWith(NEW_PIN))) fs.rmSync(path.join(d, n), { force: true });
      for (const h of HOOKS) {
        const l = Link.openPinned(path.join(LINK_DIR, h.prog), `${h.prog} → ${h.hook} (pinned)`);
        if (l) adopted.set(h.prog, l);
      }
      // nothing to adopt: a record left from pins removed by hand would vouch for this start's
      if (!adopted.size) fs.rmSync(STARTED_PATH, { force: true });
    }
    let lsmOk = false;
    const adoptedLsm = [...adopted.keys()].filter((n) => HOOKS.some((h) => h.prog === n && h.kind === 'lsm'));
    // a previous build took LSM programs that never run for working (see lsmInert): its links are
    // retired once this start stands, and the fallbacks attached instead
    const inert = adoptedLsm.length ? lsmInert(() => { const l = adopted.get('sec_exec_lsm'); return l ? progInfoById(l.info().progId)?.runCnt : undefined; }) : undefined;
    if (inert) {
      for (const n of adoptedLsm) (stale.set(n, adopted.get(n)!), adopted.delete(n));
      mech.lsmEvidence = `BPF LSM: the programs the previous controller attached never run: ${inert}`;
    } else if (adoptedLsm.length) {
      lsmOk = true;
      mech.lsmEvidence = 'BPF LSM programs attached by the previous controller (pinned links, re-adopted)';
    } else if (opts.lsm !== 'off') {
      const refused = refusedAlone(file, LSM_PROGS, (o) => {
        LSM_PROGS.forEach((n) => attachLsm(o.program(n)));
        const exec = o.program('sec_exec_lsm');
        const why = lsmInert(() => exec.info().runCnt);
        if (why) throw new Error(`the programs load and attach but never run: ${why}`);
      });
      lsmOk = !refused;
      mech.lsmEvidence = refused ? `BPF LSM: ${refused}` : `${HOOKS.filter((h) => LSM_PROGS.includes(h.prog)).map((h) => h.hook).join(', ')} load and attach`;
    } else mech.lsmEvidence = 'BPF LSM not tried (lsm: off)';
    // lsm/socket_sendmsg walks a send's control messages: probed on its own, so that a verifier
    // that finds it too complex costs the source-routing check, not the other LSM programs
    const sendmsgRefused = lsmOk && !adopted.has('sec_sendmsg_lsm') ? refusedAlone(file, ['sec_sendmsg_lsm'], (o) => attachLsm(o.program('sec_sendmsg_lsm'))) : undefined;
    // under BPF LSM nothing else judges a route a compat call set (sys_exit's check is not attached there)
    if (sendmsgRefused) mech.unsupported.push({ hook: 'lsm/socket_sendmsg', evidence: `${sendmsgRefused} (source routes given per message are not refused, nor one set on a socket by a 32-bit setsockopt or a 32-bit ring's, then used by a UDP send)` });
    // cgroup/setsockopt programs get the helpers the selection needs (the current pid, cgroup
    // ancestors) only on newer kernels (5.10 refuses it: EINVAL): its refusal is stated, and does
    // not unload the whole controller
    const sockoptRefused = adopted.has('sec_setsockopt') ? undefined : refusedAlone(file, ['sec_setsockopt']);
    // the packet guard: only where lsm/socket_sendmsg is missing; probed alone, so that a kernel
    // that refuses it loses this last line, not the whole controller
    const guardWanted = !(lsmOk && !sendmsgRefused);
    const guardRefused = guardWanted && !adopted.has('sec_route_guard') ? refusedAlone(file, ['sec_route_guard']) : undefined;
    if (guardRefused) mech.unsupported.push({ hook: ROUTE_GUARD_HOOK, evidence: `${guardRefused} (a source route set past cgroup/setsockopt reaches the network in a send already on its way when its setter is killed, and one given per message is not refused)` });
    // IORING_OP_SOCKET's fallback: needed only where lsm/socket_create is missing; the operation
    // exists since 5.19, its submission tracepoint is io_uring_submit_sqe until 6.3, then _req
    const uringRefused: string[] = [];
    const tryUring = (p: string) => {
      const why = refusedAlone(file, [p], (o) => attachTrace(o.program(p)).close());
      if (why) uringRefused.push(`${HOOKS.find((h) => h.prog === p)!.hook}: ${why}`);
      return !why;
    };
    const uringProg = lsmOk ? undefined : URING_PROGS.find((p) => adopted.has(p)) ?? URING_PROGS.find(tryUring);
    if (!lsmOk && !uringProg) mech.unsupported.push({ hook: 'tp_btf/io_uring_submit_req', evidence: `${uringRefused.join('; ')} (non-inet sockets made through io_uring IORING_OP_SOCKET are not refused)` });
    // another's /proc/<pid>/mem opened through io_uring: lsm/ptrace_access_check sees it only where
    // io_uring's workers are threads of the submitter, else the completion tracepoint + SIGKILL
    let uringOpen: string | undefined;
    if (lsmOk) {
      const uringWhy = uringOpenUnsound(true);
      if (uringWhy) mech.unsupported.push({ hook: 'lsm/ptrace_access_check (io_uring opens)', evidence: `${uringWhy}: the hook sees the worker, not the selected process (another's /proc/<pid>/mem opened through io_uring is not refused)` });
    } else if (!(uringOpen = URING_OPEN.find((p) => adopted.has(p)))) {
      const unsound = uringOpenUnsound(false);
      const refused: string[] = [];
      if (!unsound) {
        uringOpen = URING_OPEN.find((p) => {
          const why = refusedAlone(file, [p], (o) => attachTrace(o.program(p)).close());
          if (why) refused.push(`${p}: ${why}`);
          return !why;
        });
      }
      if (!uringOpen) mech.unsupported.push({ hook: URING_OPEN_HOOK, evidence: `${unsound ?? refused.join('; ')} (another's /proc/<pid>/mem opened through io_uring IORING_OP_OPENAT/OPENAT2 is not refused, nor a source route set by a 32-bit ring's setsockopt command where the kernel has those, 6.7+)` });
    }
    // the /proc/<pid>/mem check: only where lsm/ptrace_access_check is missing; one build of it
    const memBtf = !lsmOk && !adopted.has('sec_openat_exit_tp') && !refusedAlone(file, ['sec_openat_exit_btf']);
    if (sockoptRefused) mech.unsupported.push({ hook: 'cgroup/setsockopt', evidence: `${sockoptRefused} (source routes set on a socket are refused at the send only, where BPF LSM attaches)` });
    const skel = security.open(file);
    const obj = skel.obj;
    try {
      // without BPF LSM the fallbacks hang on syscall tracepoints: where their links cannot be
      // pinned (before 5.15), refused before anything is loaded, pinned or replaced
      if (opts.pin && !lsmOk) {
        const pinRefused = refusedAlone(file, ['sec_socket_tp'], (o) => {
          const l = attachTracepoint(o.program('sec_socket_tp'), 'syscalls', 'sys_enter_socket');
          try {
            l.pin(path.join(LINK_DIR, `pin-probe${NEW_PIN}`));
            l.unpin();
          } finally {
            l.close();
          }
        });
        if (pinRefused && /EINVAL/.test(pinRefused)) {
          // the directories this start made (a first start): nothing of it stays
          removeEmptyPinDirs(!adopted.size && !stale.size);
          throw unpinnableTracepoints(mech.lsmEvidence);
        }
      }
      const skip = [...(lsmOk ? [] : LSM_PROGS), ...(guardWanted ? ['sec_sendmsg_lsm'] : []), ...(!guardWanted || guardRefused ? ['sec_route_guard'] : []), ...(sockoptRefused ? ['sec_setsockopt'] : []), ...URING_PROGS.filter((p) => p !== uringProg), ...URING_OPEN.filter((p) => p !== uringOpen), ...(memBtf ? MEM_HELPER : MEM_BTF)];
      // what this start pins anew: all that a refused start removes again
      const fresh = opts.pin ? MAP_NAMES.filter((n) => !fs.existsSync(path.join(PIN_DIR, n))) : [];
      // pinned by another build with another shape (type, sizes, flags): made anew and carried over
      // (migrateMaps) rather than refused, which left only `policy stop`, a moment unenforced
      const pinnedInfo = new Map(opts.pin ? MAP_NAMES.filter((n) => !fresh.includes(n)).map((n) => [n, pinnedMapInfo(path.join(PIN_DIR, n))] as const) : []);
      const migrating = [...pinnedInfo].filter(([n, i]) => !pinFits(obj, n, i)).map(([n]) => n);
      for (const n of migrating) {
        const why = uncopyable(obj, n, pinnedInfo.get(n), [...adopted.keys()].filter((p) => skip.includes(p)));
        if (why) throw new LabError(`the map ${n} pinned at ${PIN_DIR} does not match this build of security.bpf.o and cannot be carried over (${why})`, 'pnpm lab policy stop (removes the old enforcement), then start the daemon again');
      }
      // libbpf reuses the maps pinned at these paths (the adopted programs use the same ones) or
      // creates and pins them
      if (opts.pin) for (const n of MAP_NAMES) if (!migrating.includes(n)) obj.setPinPath(n, path.join(PIN_DIR, n));
      // procs sized to pid_max; a pinned one is reused as it is (libbpf reuses only an identical map)
      const procsPin = path.join(PIN_DIR, 'procs');
      const sizing = opts.pin && !fresh.includes('procs') && !migrating.includes('procs') ? pinnedSizing(procsPin, pinnedInfo.get('procs')) : procsSizing(mech.procs.pidMax, opts.procsCapacity);
      mech.procs.capacity = sizing.maxEntries;
      mech.procs.prealloc = !(sizing.flags & BPF_F_NO_PREALLOC);
      try {
        obj.load({ maxEntries: { procs: sizing.maxEntries }, mapFlags: { procs: sizing.flags }, skip });
      } catch (e) {
        if (opts.pin && /reuse|incompatib|EINVAL/i.test(String((e as Error).message))) {
          throw new LabError(`the maps pinned at ${PIN_DIR} do not match this build of security.bpf.o`, 'pnpm lab policy stop (removes the old enforcement), then start the daemon again', { cause: e });
        }
        throw e;
      }
      // an adopted link whose program is not the one this build loads (another release of the
      // lab): replaced in attach(), new before old, so the upgrade leaves no gap
      for (const [n, l] of adopted) {
        const p = skel.program(n as SecurityShape['programs']);
        if (!p.loaded) continue; // not loaded here (a flavour this start did not choose): kept as it is
        if (progInfoById(l.info().progId)?.tag !== p.info().tag) (stale.set(n, l), adopted.delete(n));
      }
      const c = new SecurityController(skel, mech, !!opts.pin, emptyState());
      c.ia32Off = opts.ia32 === 'off';
      c.objectSha256 = fileSha256(file);
      if (migrating.length) {
        // every adopted program uses the old maps: all are replaced
        for (const [n, l] of adopted) stale.set(n, l);
        adopted.clear();
        c.migrateMaps(migrating, () => c.attach(lsmOk, opts.attachCgroup ?? cgroup2Root(), adopted, stale));
      } else {
        try {
          c.attach(lsmOk, opts.attachCgroup ?? cgroup2Root(), adopted, stale);
        } catch (e) {
          // a link that cannot be pinned: nothing of this start stays (maps it pinned included)
          c.undoStart(adopted, fresh);
          throw e;
        }
      }
      const gaps = opts.requireAll ? enforcementGaps(mech) : [];
      if (gaps.length) {
        // before adopt(): the state file and the policies' slots are as the previous daemon left them
        c.undoStart(adopted, fresh);
        throw new LabError(
          `not every rule would be enforced on ${fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()} (--require-all): ${gaps.map((g) => `${g.what} (${g.evidence})`).join('; ')}`,
          'run on a kernel with BPF LSM enabled (CONFIG_BPF_LSM=y and "bpf" in lsm= on its command line), or start without --require-all to enforce what this kernel allows (the gaps are printed at start)',
        );
      }
      if (opts.pin) {
        c.retire();
        c.adopt(adopted.size, unfinished);
      }
      return c;
    } catch (e) {
      for (const l of [...adopted.values(), ...stale.values()]) l.close(); // our fds only: the pins keep them attached
      obj.close();
      if (opts.pin) unlock(DAEMON_LOCK);
      throw e;
    }
  }

  private attach(lsmOk: boolean, cg: string, adopted: Map<string, Link>, stale = new Map<string, Link>()): void {
    const m = this.mechanisms;
    const attached = new Set<string>();
    const replaced: string[] = [];
    /** a fallback on a syscall tracepoint is attached so far: the 32-bit check goes with them */
    const onSyscallTracepoints = () => HOOKS.some((x) => x.kind === 'tracepoint' && attached.has(x.prog));
    const keep = (h: (typeof HOOKS)[number], l: Link) => {
      this.links.push(l);
      this.kept.add(l);
      attached.add(h.prog);
    };
    for (const h of HOOKS) {
      const prior = adopted.get(h.prog);
      if (prior) {
        keep(h, prior);
        continue;
      }
      const old = stale.get(h.prog);
      if (h.kind === 'lsm' && !lsmOk) continue;
      if (m.unsupported.some((u) => u.hook === h.hook)) continue; // refused when probed: not loaded
      // a fallback is only attached where its mechanism is not covered by LSM
      if (h.prog === 'sec_socket_tp' && attached.has('sec_socket_lsm')) continue;
      if (!this.skel.program(h.prog).loaded) continue; // the build of the mem check not chosen
      if (PTRACE_TPS.includes(h.prog) && attached.has('sec_ptrace_lsm')) continue;
      if (h.prog === 'sec_ptrace_exit_tp' && !attached.has('sec_ptrace_tp')) continue;
      if (CLONE_EXITS.includes(h.prog) && !HOOKS.some((x) => x.kind === 'tracepoint' && !CLONE_EXITS.includes(x.prog) && attached.has(x.prog))) continue;
      if (h.prog === COMPAT_EXIT && (this.ia32Off || process.arch !== 'x64' || !onSyscallTracepoints())) continue;
      let l: Link;
      try {
        const p = this.skel.program(h.prog);
        l = h.kind === 'trace' ? attachTrace(p) : h.kind === 'lsm' ? attachLsm(p) : h.kind === 'cgroup' ? attachCgroup(p, cg) : attachTracepoint(p, 'syscalls', h.hook.split('/').pop()!);
      } catch (e) {
        if (old) {
          // the previous release's program goes on enforcing rather than nothing
          keep(h, old);
          this.adoption.push(`kept the previous build's ${h.prog}: this build's does not attach (${firstLine(e)})`);
        } else m.unsupported.push({ hook: h.hook, evidence: firstLine(e) });
        continue;
      }
      if (old) {
        // both run from here until the old one is closed: pinned beside it, then renamed over it
        // (bpffs drops the old pin's reference), then our last reference to the old one closed
        const at = path.join(LINK_DIR, h.prog);
        try {
          l.pin(at + NEW_PIN);
          fs.renameSync(at + NEW_PIN, at);
        } catch (e) {
          l.unpin();
          l.close();
          keep(h, old);
          this.adoption.push(`kept the previous build's ${h.prog}: cannot pin this build's (${firstLine(e)})`);
          continue;
        }
        old.close();
        stale.delete(h.prog);
        this.links.push(l);
        this.kept.add(l);
        attached.add(h.prog);
        replaced.push(h.prog);
        continue;
      }
      // pinned, the attachment lives until the pin is removed: closing our fd (all that libbpf's
      // destroy does for a bpf_link) at exit or on a crash does not detach it. One that cannot be
      // pinned would end with this process: the start fails, never "unsupported" (the kernel has
      // the hook) with the daemon running on without it.
      if (this.pinned) {
        const at = path.join(LINK_DIR, h.prog);
        try {
          l.pin(at);
        } catch (e) {
          l.close();
          for (const made of this.links.filter((x) => !this.kept.has(x))) (made.unpin(), made.close());
          // before 5.15 a tracepoint program is attached through its perf event (an ioctl), not a
          // bpf_link: there is nothing to pin (EINVAL), so the syscall-tracepoint fallbacks cannot
          // outlive the daemon. BPF LSM needs none of them.
          if (h.kind === 'tracepoint' && /EINVAL/.test(firstLine(e))) throw unpinnableTracepoints(m.lsmEvidence);
          throw new LabError(`cannot pin ${h.prog} (${h.hook}) at ${at}: ${firstLine(e)}`, `something else holds that path: pnpm lab policy stop removes the old enforcement, then start the daemon again`);
        }
        // tests only: a start held right after this link's pin, to be killed there (a start cut short)
        if (process.env.EBPF_LAB_TEST_HOLD_START_AFTER && h.prog.startsWith(process.env.EBPF_LAB_TEST_HOLD_START_AFTER)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
      }
      this.links.push(l);
      attached.add(h.prog);
    }
    if (replaced.length) this.adoption.push(`replaced ${replaced.length} pinned links whose program differs from this build's (${replaced.join(', ')}): each new one attached before the old one was detached`);
    this.retiring = stale;
    const has = (p: string) => attached.has(p);
    m.exec = has('sec_exec_lsm') ? 'lsm' : has('sec_exec_tp') ? 'tp-kill' : 'none';
    m.lsmConnect = has('sec_connect_lsm');
    m.egress = HOOKS.filter((h) => h.kind === 'cgroup' && !['sec_sock_create', 'sec_setsockopt', 'sec_route_guard'].includes(h.prog) && has(h.prog)).map((h) => h.hook);
    m.sourceRouting = [['sec_setsockopt', 'cgroup/setsockopt'], ['sec_sendmsg_lsm', 'lsm/socket_sendmsg'], ['sec_connect_lsm', 'lsm/socket_connect']].filter(([p]) => has(p!)).map(([, h]) => h!);
    // a compat ring's setsockopt command passes no cgroup/setsockopt (bpf/security.bpf.c, io_uring_sockopt)
    if (URING_OPEN.some(has)) {
      const why = uringCompatUnsound();
      if (why) m.unsupported.push({ hook: URING_SOCKOPT_HOOK, evidence: `${why} (a source route set by a 32-bit ring's setsockopt command is not refused)` });
      else m.sourceRouting.push(URING_SOCKOPT_HOOK);
    }
    if (has('sec_route_guard')) m.sourceRouting.push(`${ROUTE_GUARD_HOOK} (a packet that carries one)`);
    m.rawSockets = has('sec_socket_lsm') ? ['lsm/socket_create'] : [...(has('sec_sock_create') ? ['cgroup/sock_create'] : []), ...(has('sec_socket_tp') ? ['tracepoint/syscalls/sys_enter_socket + SIGKILL'] : []), ...URING_PROGS.filter(has).map((p) => `${HOOKS.find((h) => h.prog === p)!.hook} (IORING_OP_SOCKET) + SIGKILL`)];
    m.ptrace = has('sec_ptrace_lsm') ? ['lsm/ptrace_access_check'] : PTRACE_TPS.filter(has).map((p) => `${HOOKS.find((h) => h.prog === p)!.hook}${URING_OPEN.includes(p) ? ' (IORING_OP_OPENAT/OPENAT2)' : ''} + SIGKILL`);
    if (!has('sec_ptrace_lsm') && has('sec_ptrace_exit_tp')) m.ptrace.push('tracepoint/syscalls/sys_exit_ptrace (a refused PTRACE_ATTACH\'s victim continued)');
    m.procs.unrecordedChild = CLONE_EXITS.every(has) ? 'killed' : 'governed';
    m.compat = has(COMPAT_EXIT) ? COMPAT_HOOK : process.arch === 'x64' && onSyscallTracepoints() ? '' : 'none needed';
    m.ptraceIoUring = URING_OPEN.some(has) ? `${URING_OPEN_HOOK} + SIGKILL` : has('sec_ptrace_lsm') && !m.unsupported.some((u) => u.hook.startsWith('lsm/ptrace_access_check')) ? 'lsm/ptrace_access_check' : '';
    // keep what an adopted config says about selectors; the mechanisms are this start's
    const cur = this.store.maps.config.get(0) ?? { cg_levels: 0, exec_mode: 0, have_exe_selectors: 0, lsm_socket: 0, lsm_ptrace: 0, oracle_cgroup: 0n };
    this.store.maps.config.set(0, { ...cur, exec_mode: EXEC_MODE[m.exec], lsm_socket: has('sec_socket_lsm') ? 1 : 0, lsm_ptrace: has('sec_ptrace_lsm') ? 1 : 0, oracle_cgroup: 0n });
    m.oracle = this.identity.available = has('sec_exec_tp');
  }

  /**
   * Maps of another build's shape: this build's (loaded unpinned) get the old ones' entries and
   * are pinned in their place (`<name>-new`, renamed over), then its programs are attached
   * (`attach`, which replaces the old links), then the maps get the entries the old programs added
   * meanwhile. Under the writers' lock, so no policy command writes into a map on its way out.
   */
  private migrateMaps(names: string[], attach: () => void): void {
    withApplyLock(() => {
      const old = new Map(names.map((n) => [n, libbpf.bpf_obj_get(path.join(PIN_DIR, n))]));
      try {
        for (const [n, fd] of old) if (fd < 0) throw new LabError(`cannot open the pinned map ${path.join(PIN_DIR, n)}: errno ${-fd}`, 'pnpm lab policy stop (removes the old enforcement), then start the daemon again');
        const copied = names.map((n) => copyEntries(n, old.get(n)!, this.obj.map(n).fd, false));
        // pinned before the links are replaced: should that fail part-way, the pins already name
        // the maps the new programs use, and the next start replaces the old programs left (by tag)
        for (const n of names) {
          const at = path.join(PIN_DIR, n);
          this.obj.map(n).pin(at + NEW_PIN);
          fs.renameSync(at + NEW_PIN, at);
        }
        attach();
        for (const n of names) copyEntries(n, old.get(n)!, this.obj.map(n).fd, true);
        this.adoption.push(`carried over ${names.length} maps whose shape differs from this build's (${names.map((n, i) => `${n}: ${copied[i]} entries`).join(', ')}); every pinned link was replaced, as they used the old ones`);
      } finally {
        for (const fd of old.values()) if (fd >= 0) libc.close(fd);
      }
    }, 60_000);
  }

  /**
   * What the previous release attached and this build does not (a fallback it no longer needs, a
   * program it no longer has): detached once this build's links are in place and the start stands.
   */
  private retire(): void {
    const retired = [...this.retiring.keys()];
    for (const l of this.retiring.values()) (l.unpin(), l.close());
    this.retiring.clear();
    for (const n of fs.readdirSync(LINK_DIR).filter((x) => !HOOKS.some((h) => h.prog === x))) {
      fs.rmSync(path.join(LINK_DIR, n), { force: true });
      retired.push(n);
    }
    if (retired.length) this.adoption.push(`detached ${retired.length} pinned links of the previous build that this one does not attach (${retired.join(', ')})`);
  }

  /**
   * A start refused after attaching: detach what this start attached and unpin what it pinned
   * (links, and maps it created); links adopted from a previous daemon stay as they were, so a
   * refused restart never ends enforcement that was in force.
   */
  private undoStart(adopted: Map<string, Link>, freshMaps: string[]): void {
    for (const l of this.retiring.values()) l.close(); // our fds: their pins stay
    this.retiring.clear();
    for (const l of this.links.filter((x) => !this.kept.has(x))) {
      if (this.pinned) l.unpin();
      l.close();
    }
    this.links.length = 0;
    if (!this.pinned) return;
    for (const n of freshMaps) fs.rmSync(path.join(PIN_DIR, n), { force: true });
    removeEmptyPinDirs(adopted.size === 0);
  }

  /**
   * daemon start: load the state file, reconcile it with the kernel, sweep unreferenced slots —
   * under the writers' lock: a `policy apply` in a restarting daemon's first second wrote its slot
   * and state between this read of the state and its save and sweep, which then dropped the
   * new policy's entries as unreferenced after apply had reported it enforced
   */
  private adopt(readopted: number, unfinished: string | undefined): void {
    fs.mkdirSync(RUN_DIR, { recursive: true });
    withApplyLock(() => this.adoptLocked(readopted, unfinished), 60_000);
  }

  private adoptLocked(readopted: number, unfinished: string | undefined): void {
    const say = (s: string) => this.adoption.push(s);
    let state = emptyState();
    try {
      state = JSON.parse(fs.readFileSync(STATE_PATH, 'utf8')) as StoreState;
    } catch {
      /* none: first start, or removed by policy stop */
    }
    if (unfinished) this.adoption.unshift(`finished a start that was cut short (${unfinished}): re-adopted ${readopted} pinned links, attached the rest, wrote sec_config`);
    else if (readopted) this.adoption.unshift(`re-adopted ${readopted} pinned links from the previous controller (enforcement never stopped)`);
    this.store.state = reconcile(this.store, state, say);
    this.store.saveState();
    for (const sw of this.store.sweep()) say(`swept slot ${sw.slot}: ${sw.entries} entries no live policy references`);
    const startedAt = new Date().toISOString();
    writeFileAtomic(STARTED_PATH, JSON.stringify({ pid: process.pid, startedAt, links: fs.readdirSync(LINK_DIR).sort() }));
    writeFileAtomic(path.join(RUN_DIR, 'daemon.json'), JSON.stringify({ pid: process.pid, startTime: procStart(process.pid), objectSha256: this.objectSha256, mechanisms: this.mechanisms, startedAt }));
  }

  /** the event ring buffer (one consumer per controller) */
  events(): RingBuffer<sec_event> {
    if (!this.rb) {
      const codec = this.obj.btf.codecByName<sec_event>('sec_event');
      this.rb = new RingBuffer<sec_event>(this.skel.maps.events, { decode: (dv, off) => codec.decode(dv, off), lostCounter: this.skel.maps.lost });
    }
    return this.rb;
  }

  /** drain pending events, formatted; then the victims continued from stopped_lost */
  drainEvents(): SecurityEvent[] {
    return [...this.events().drain().map((e) => this.format(e)), ...this.sweepLostStops()];
  }

  /**
   * A refused PTRACE_ATTACH whose event the ring had no room for left its victim in stopped_lost
   * (bpf/security.bpf.c attach_stopped): continue each one as that event would have, and give the
   * event back. Deleted before the signal: an entry the kernel writes again meanwhile (the pid
   * stopped anew) stays for the next sweep. A hash map's keys need no lock with the programs.
   */
  sweepLostStops(): SecurityEvent[] {
    const m = this.skel.maps.stopped_lost;
    const out: SecurityEvent[] = [];
    for (const target of [...m.keys()]) {
      const l = m.get(target);
      if (!l || !m.delete(target)) continue;
      const e = { ts_ns: l.ts_ns, cgroup_id: l.cgroup_id, dev: 0n, ino: 0n, pid: l.pid, ppid: 0, uid: l.uid, policy_id: l.policy_id, rule_id: l.rule_id, kind: sec_event_kind.SEC_EV_PTRACE, action: sec_event_action.SEC_ATTACH_STOPPED, mech: l.mech, proto: 0, family: 0, dport: 0, daddr: new Uint8Array(16), comm: l.comm, binary: '', file: '', argv0: '', sock_type: 0, target, call: l.call, optname: 0, target_start: l.target_start } satisfies sec_event;
      out.push({ ...this.format(e), lostFromRing: true });
    }
    return out;
  }

  format(e: sec_event): SecurityEvent {
    const out = formatEvent(e, this.store, this.clockOffsetNs, (id) => this.cgroupPath(id));
    if (out.action === 'resumed') out.resumed = resumeStopped(e.target, e.target_start);
    return out;
  }

  /**
   * cgroup id → path, by walking the selected cgroups' subtrees (a cgroup-selected process's events
   * come from there), then the whole hierarchy (an executable-selected process runs anywhere). An
   * id found nowhere is remembered as unknown, so a stream of its events walks once.
   */
  cgroupPath(id: bigint): string | undefined {
    const k = String(id);
    if (this.cgPaths.has(k)) return this.cgPaths.get(k) || undefined;
    const root = cgroup2Root();
    const walk = (dir: string, depth: number, maxDepth: number) => {
      try {
        this.cgPaths.set(String(fs.statSync(dir, { bigint: true }).ino), dir === root ? '/' : `/${path.relative(root, dir)}`);
        if (depth < maxDepth) for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(dir, e.name), depth + 1, maxDepth);
      } catch {
        /* raced with rmdir */
      }
    };
    for (const s of Object.values(this.store.state.policies)) if (s.selector.kind === 'cgroup') walk(s.selector.dir, 0, 4);
    if (!this.cgPaths.has(k)) walk(root, 0, 8);
    if (!this.cgPaths.has(k)) this.cgPaths.set(k, '');
    return this.cgPaths.get(k) || undefined;
  }

  get lostEvents(): number {
    return this.rb?.lost ?? 0;
  }

  /**
   * Release this process's handles. In-process controllers (tests, scenarios) detach everything;
   * a daemon leaves its pinned links and maps enforcing (only stopDaemon removes them).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.rb?.close();
    if (this.pinned) fs.rmSync(path.join(RUN_DIR, 'daemon.json'), { force: true });
    for (const l of this.links.reverse()) l.close();
    this.obj.close();
    if (this.pinned) unlock(DAEMON_LOCK);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function mapsOf(skel: SecuritySkeleton): SecMaps {
  const m = skel.maps;
  return { config: m.sec_config, oracle: m.oracle, policies: m.policies, cg_sel: m.cg_sel, exe_sel: m.exe_sel, procs: m.procs, track_fail: m.track_fail, exec_rules: m.exec_rules, egress_rules: m.egress_rules };
}

/** the live `policy daemon` (not this process), if any */
function daemonRecord(): { pid: number; startTime?: string; objectSha256?: string } | null {
  try {
    const d = JSON.parse(fs.readFileSync(path.join(RUN_DIR, 'daemon.json'), 'utf8')) as { pid: number; startTime?: string; objectSha256?: string };
    // the start time: a daemon killed outright leaves the file, and its pid may name another process by now
    if (processAlive(d.pid, d.startTime) && d.pid !== process.pid) return d;
  } catch {
    /* no file: no daemon, or one still starting (below) */
  }
  // a daemon still starting holds the lock before it writes daemon.json
  const h = readLockHolder(DAEMON_LOCK);
  return h && processAlive(h.pid, h.startTime) && h.pid !== process.pid ? h : null;
}

/**
 * Whether the live daemon runs the security.bpf.o at `file` (this lab's build): 'same', 'other', or
 * 'unknown' for a daemon of a release that did not record it; null without a live daemon. A daemon
 * started before the lab was upgraded keeps the old programs until it is restarted (which then
 * replaces them, new before old).
 */
export function daemonBuild(file: string): 'same' | 'other' | 'unknown' | null {
  const d = daemonRecord();
  if (!d) return null;
  // no digest: a daemon still starting (known by its lock only), or of an older release
  if (!d.objectSha256) return 'unknown';
  return d.objectSha256 === fileSha256(file) ? 'same' : 'other';
}

function fileSha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/**
 * Why the pinned enforcement is not what a finished start leaves (see STARTED_PATH), or undefined:
 * nothing pinned, a daemon alive (running, or starting: it finishes), or a finished start's links
 * all pinned.
 */
export function unfinishedStart(cfg?: { exec_mode: number } | null): string | undefined {
  const pinned = fs.existsSync(LINK_DIR) ? fs.readdirSync(LINK_DIR).filter((n) => !n.endsWith(NEW_PIN)) : [];
  if (!pinned.length || runningDaemon()) return undefined;
  let rec: { pid?: number; links?: string[] };
  try {
    rec = JSON.parse(fs.readFileSync(STARTED_PATH, 'utf8'));
  } catch {
    // pins of a release from before the record: its start wrote sec_config last, so an exec mode
    // that names the exec program pinned is a finished start's
    if (cfg && ((cfg.exec_mode === sec_exec_mode.SEC_EXEC_LSM && pinned.includes('sec_exec_lsm')) || (cfg.exec_mode === sec_exec_mode.SEC_EXEC_TP_KILL && pinned.includes('sec_exec_tp')))) return undefined;
    return `${pinned.length} links pinned at ${LINK_DIR} but no daemon start finished (${STARTED_PATH} missing: one was killed while starting, or these pins predate that record)`;
  }
  const missing = (rec.links ?? []).filter((n) => !pinned.includes(n));
  return missing.length ? `${missing.length} of the links the last finished start pinned are gone (${missing.join(', ')})` : undefined;
}

/** pid of a live `policy daemon`, if any */
export function runningDaemon(): number | null {
  return daemonRecord()?.pid ?? null;
}

/**
 * The state file checked against the kernel: a policy counts only when its slot holds its record
 * and its selector points there; a selected slot the file does not know is kept (under the name
 * unknown-slot-N, rebuilt from the maps) so that it can be listed and deleted. Messages go to `say`.
 */
export function reconcile(store: PolicyStore, state: StoreState, say: (s: string) => void): StoreState {
  const out: StoreState = { nextId: state.nextId ?? 1, policies: {}, rules: state.rules ?? {} };
  const selected = store.selectedSlots();
  const m = store.maps;
  for (const [name, sp] of Object.entries(state.policies ?? {})) {
    const rec = m.policies.get(sp.slot);
    const target = sp.selector.kind === 'cgroup' ? m.cg_sel.get(BigInt(sp.selector.cgid)) : m.exe_sel.get({ dev: BigInt(sp.selector.dev), ino: BigInt(sp.selector.ino) });
    if (rec?.id === sp.id && target === sp.slot) {
      out.policies[name] = sp;
      say(`policy ${name}: enforced by the kernel (slot ${sp.slot}, policy id ${sp.id}): adopted`);
    } else {
      say(`policy ${name}: listed in the state file but not enforced by the kernel (slot ${sp.slot} holds ${rec?.id ? `policy id ${rec.id}` : 'nothing'}, selector → ${target ?? 'none'}): dropped from the state`);
    }
  }
  const known = new Set(Object.values(out.policies).map((p) => p.slot));
  // the directories of the cgroups unknown slots select: one walk of the tree for all of them
  const unknownCg = new Set<bigint>();
  for (const [id, s] of m.cg_sel.entries() as Iterable<[bigint, number]>) if (!known.has(s)) unknownCg.add(id);
  const cgDirs = unknownCg.size ? cgroupsById(cgroup2Root(), unknownCg) : new Map<bigint, string>();
  for (const [slot, sel] of selected) {
    if (known.has(slot)) continue;
    const rec = m.policies.get(slot);
    const name = `unknown-slot-${slot}`;
    const execKeys = [...m.exec_rules.keys()].filter((k: sec_exec_key) => k.slot === slot).map((k) => ({ dev: String(k.dev), ino: String(k.ino) }));
    const egressKeys = [...m.egress_rules.keys()].filter((k: sec_egress_key) => k.slot === slot).map((k) => ({ prefixlen: k.prefixlen, proto: k.proto, port: k.port, addr: [...k.addr] }));
    const cg = [...(m.cg_sel.entries() as Iterable<[bigint, number]>)].find(([, s]) => s === slot)?.[0];
    const exe = [...(m.exe_sel.entries() as Iterable<[sec_file_key, number]>)].find(([, s]) => s === slot)?.[0];
    // its real depth: writeConfig builds cg_levels from the stored levels, and a 0 here took the
    // cgroup's level out at the next apply or delete of any policy (its processes unselected)
    const cgDir = cg !== undefined ? (cgDirs.get(cg) ?? null) : null;
    const selector: StoredPolicy['selector'] = cg !== undefined
      ? { kind: 'cgroup', dir: cgDir ?? `(cgroup id ${cg}, removed)`, cgid: String(cg), level: cgDir ? cgroupLevel(cgDir) : 0 }
      : { kind: 'exe', dev: String(exe!.dev), ino: String(exe!.ino), statDev: String(exe!.dev), statIno: String(exe!.ino) };
    out.policies[name] = {
      policy: { name, mode: (rec?.flags ?? 0) & F_ENFORCE ? 'enforce' : 'log', select: cg !== undefined ? { cgroup: selector.kind === 'cgroup' ? selector.dir : '' } : { executable: `(inode ${sel})` }, exec: { deny: [], denyNameless: false }, egress: { deny: [] } },
      id: rec?.id ?? 0, slot, selector, identities: [], execKeys, egressKeys, appliedAt: 'unknown (found in the kernel)',
    };
    say(`slot ${slot}: enforced by the kernel (${sel}, policy id ${rec?.id ?? 0}, ${execKeys.length} exec + ${egressKeys.length} egress entries) but not in the state file: kept as "${name}" (pnpm lab policy delete ${name} removes it)`);
  }
  if (Object.keys(out.policies).length === 0 && Object.keys(state.policies ?? {}).length === 0) say('no policies in the kernel or the state file');
  // ids in use must not be handed out again
  for (const p of Object.values(out.policies)) if (p.id >= out.nextId) out.nextId = p.id + 1;
  return out;
}

/**
 * Serialise the writers of the pinned maps and state (the CLI's apply and delete, a daemon's start):
 * a sweep in one must never clear the slot another is filling.
 */
export function withApplyLock<T>(fn: () => T, timeoutMs = 10_000): T {
  fs.mkdirSync(RUN_DIR, { recursive: true });
  return withLockWaitSync(path.join(RUN_DIR, 'apply.lock'), fn, (holder) => new WritersBusy(`another policy command (pid ${holder}) is changing the maps`, 'wait for it to finish and retry'), timeoutMs);
}

/** the writers' lock stayed taken for the whole wait */
export class WritersBusy extends LabError {}

/** Facts about the pinned links, from the kernel: which programs are attached right now. */
export function pinnedLinks(): { prog: string; hook: string; linkId: number; progId: number }[] {
  const out: { prog: string; hook: string; linkId: number; progId: number }[] = [];
  for (const h of HOOKS) {
    const l = Link.openPinned(path.join(LINK_DIR, h.prog));
    if (!l) continue;
    try {
      const i = l.info();
      out.push({ prog: h.prog, hook: h.hook, linkId: i.id, progId: i.progId });
    } finally {
      l.close();
    }
  }
  return out;
}

/**
 * `policy stop`: the one path that ends enforcement. Stops a running daemon, then removes the
 * pinned links (the kernel detaches a link when its last reference goes) and maps.
 */
export async function stopDaemon(log: (s: string) => void = () => {}): Promise<{ links: number; maps: number; daemon: number | null }> {
  const d = daemonRecord();
  const pid = d?.pid ?? null;
  if (d) {
    if (await terminate(d.pid, d.startTime)) log(`daemon ${d.pid} stopped`);
    else {
      // A daemon that ignores SIGTERM (stopped, wedged) holds every link through its fds: with the
      // pins gone its programs would stay attached, enforcing, after "nothing is enforced any more".
      // Stop is the one way to end enforcement, so it is killed; one that survives even that (stuck
      // in the kernel) leaves everything as it was.
      if (!(await terminate(d.pid, d.startTime, 5000, 'SIGKILL'))) {
        throw new LabError(`the policy daemon (pid ${d.pid}) outlived SIGTERM and SIGKILL; nothing was removed, enforcement goes on`, `see where it is stuck (cat /proc/${d.pid}/stack), then run pnpm lab policy stop again`);
      }
      log(`daemon ${d.pid} did not exit within 10 s of SIGTERM: killed`);
    }
  }
  let links = 0;
  let maps = 0;
  // victims of refused attaches no daemon continued: their events unread in the ring, or lost to a
  // full one (stopped_lost). Continued once the links are gone (nothing adds to either after
  // that), before the maps go with the pins. Best effort: stop is the one way to end enforcement,
  // and nothing here may keep it from removing the pins.
  const rescue = await openRescue().catch((e) => (log(`could not look for processes a refused attach left stopped: ${firstLine(e)}`), null));
  const remove = () => {
    if (fs.existsSync(LINK_DIR)) for (const f of fs.readdirSync(LINK_DIR)) (fs.rmSync(path.join(LINK_DIR, f), { force: true }), links++);
    fs.rmSync(LINK_DIR, { recursive: true, force: true });
    if (rescue) {
      try {
        for (const e of rescue.ring?.drain() ?? []) {
          if (e.action === sec_event_action.SEC_ATTACH_STOPPED) log(`pid ${e.target}, stopped by a refused PTRACE_ATTACH of pid ${e.pid} (its event unread): ${resumeStopped(e.target, e.target_start)}`);
        }
        for (const pid of rescue.lost ? [...rescue.lost.keys()] : []) {
          const l = rescue.lost!.get(pid);
          if (l) log(`pid ${pid}, stopped by a refused PTRACE_ATTACH of pid ${l.pid} whose event was lost: ${resumeStopped(pid, l.target_start)}`);
        }
      } catch (e) {
        log(`could not continue every process a refused attach left stopped: ${firstLine(e)}`);
      } finally {
        rescue.close();
      }
    }
    for (const n of MAP_NAMES) if (fs.existsSync(path.join(PIN_DIR, n))) (fs.rmSync(path.join(PIN_DIR, n), { force: true }), maps++);
    if (fs.existsSync(PIN_DIR)) removePinDir(PIN_DIR);
    fs.rmSync(STATE_PATH, { force: true });
    fs.rmSync(STARTED_PATH, { force: true });
    fs.rmSync(path.join(RUN_DIR, 'daemon.json'), { force: true });
    fs.rmSync(DAEMON_LOCK, { force: true });
  };
  // Between the writers: an apply in flight would otherwise write its state file after this removed
  // everything, and the next daemon would take that stale file for the policies in force. Stop is
  // the one way to end enforcement, so a writer that holds the lock for good does not block it.
  try {
    withApplyLock(remove, 15_000);
  } catch (e) {
    if (!(e instanceof WritersBusy)) throw e;
    log(`${e.message} for 15 s: removing the pins anyway`);
    remove();
    fs.rmSync(path.join(RUN_DIR, 'apply.lock'), { force: true });
  }
  return { links, maps, daemon: pid };
}

/** the pinned events ring and stopped_lost, those that are there and of this build's layout */
async function openRescue(): Promise<{ ring?: RingBuffer<sec_event>; lost?: BpfMap<number, sec_lost_stop>; close(): void } | null> {
  const pinned = (n: string) => (fs.existsSync(path.join(PIN_DIR, n)) ? path.join(PIN_DIR, n) : undefined);
  if (!pinned('events') && !pinned('stopped_lost')) return null;
  const spec = security.open(await ensureObject('security'));
  const out: { ring?: RingBuffer<sec_event>; lost?: BpfMap<number, sec_lost_stop>; close(): void } = { close: () => {} };
  let events: BpfMap | undefined;
  try {
    const codec = spec.obj.btf.codecByName<sec_event>('sec_event');
    const at = pinned('events');
    if (at) {
      events = spec.openPinned('events', at);
      out.ring = new RingBuffer<sec_event>(events, { decode: (dv, off) => codec.decode(dv, off) });
    }
    const lostAt = pinned('stopped_lost');
    if (lostAt) out.lost = spec.openPinned('stopped_lost', lostAt);
  } catch {
    /* another build's layout: what opened is used */
  } finally {
    spec.close();
  }
  out.close = () => {
    out.ring?.close();
    events?.close();
    out.lost?.close();
  };
  return out;
}

/** the maps of a running daemon, through their pins (codecs from the object's BTF) */
export async function pinnedStore(): Promise<{ store: PolicyStore; close(): void }> {
  if (!fs.existsSync(path.join(PIN_DIR, 'policies'))) throw new LabError(`no security controller: nothing is pinned at ${PIN_DIR}`, 'start one: pnpm lab policy daemon');
  const spec = security.open(await ensureObject('security'));
  const opened: BpfMap[] = [];
  const open = <N extends keyof SecurityShape['maps'] & string>(name: N) => {
    const m = spec.openPinned(name, path.join(PIN_DIR, name));
    opened.push(m);
    return m;
  };
  let maps: SecMaps;
  try {
    maps = {
      config: open('sec_config'), oracle: open('oracle'), policies: open('policies'), cg_sel: open('cg_sel'),
      exe_sel: open('exe_sel'), procs: open('procs'), track_fail: open('track_fail'), exec_rules: open('exec_rules'), egress_rules: open('egress_rules'),
    };
  } catch (e) {
    opened.forEach((m) => m.close());
    spec.close();
    throw e;
  }
  // the exec tracepoint's link is pinned: the oracle works whether or not a daemon process runs
  const oracle = fs.existsSync(path.join(LINK_DIR, 'sec_exec_tp'));
  const identity = new KernelIdentity(maps, oracle);
  const store = new PolicyStore(maps, emptyState(), STATE_PATH, (paths) => identity.identify(paths));
  store.reload();
  return {
    store,
    close() {
      opened.forEach((m) => m.close());
      spec.close();
    },
  };
}

export function formatEvent(e: sec_event, store: PolicyStore, clockOffsetNs: bigint, cgPath?: (id: bigint) => string | undefined): SecurityEvent {
  const out: SecurityEvent = {
    time: new Date(Number((e.ts_ns + clockOffsetNs) / 1_000_000n)).toISOString(),
    tsNs: String(e.ts_ns),
    kind: KIND[e.kind] ?? 'exec',
    action: e.action === sec_event_action.SEC_BLOCKED ? 'blocked' : e.action === sec_event_action.SEC_ATTACH_STOPPED ? 'resumed' : 'would-block',
    mechanism: MECHANISM[e.mech] ?? `mech ${e.mech}`,
    pid: e.pid,
    ppid: e.ppid || (e.pid ? ppidOf(e.pid) : 0),
    uid: e.uid,
    comm: e.comm,
    cgroupId: String(e.cgroup_id),
    cgroup: cgPath?.(e.cgroup_id),
    policy: store.policyName(e.policy_id),
    ruleId: e.rule_id,
    rule: store.ruleName(e.rule_id),
  };
  if (e.kind === sec_event_kind.SEC_EV_TRACKING) {
    out.rule = TRACK_LOST[e.call] ?? `procs full (${e.call})`;
  } else if (e.kind === sec_event_kind.SEC_EV_SOCKET) {
    out.socket = `${FAMILY[e.family] ?? `family ${e.family}`} ${SOCK_TYPE[e.sock_type] ?? `type ${e.sock_type}`}`;
    out.protocol = ({ 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmpv6', 255: 'raw', 132: 'sctp', 33: 'dccp' } as Record<number, string>)[e.proto] ?? String(e.proto);
  } else if (e.kind === sec_event_kind.SEC_EV_SOCKOPT) {
    out.option = optionName(e.optname) + (e.call === sec_opt_origin.SEC_OPT_CMSG ? ' (control message)' : e.call === sec_opt_origin.SEC_OPT_IN_PACKET ? (e.family === 10 ? ' (a routing header in the packet)' : ' (a source route option in the packet)') : '');
  } else if (e.kind === sec_event_kind.SEC_EV_PTRACE) {
    if (e.target) out.target = e.target;
    if (e.call & sec_call.SEC_CALL_IO_URING) out.call = `io_uring ${IORING_OP[e.call & 0xff] ?? `opcode ${e.call & 0xff}`}`;
    else if (e.call & sec_call.SEC_CALL_IA32) out.call = `${SYSCALL_IA32[e.call & 0xffff] ?? `syscall ${e.call & 0xffff}`} (32-bit)`;
    else if (e.call & sec_call.SEC_CALL_X32) out.call = `${SYSCALL_X32[e.call & 0xffff] ?? `syscall ${e.call & 0xffff}`} (x32)`;
    else if (e.call) out.call = (process.arch === 'x64' ? SYSCALL_X86_64[e.call] : undefined) ?? `syscall ${e.call}`;
  } else if (e.kind === sec_event_kind.SEC_EV_EXEC) {
    out.binary = e.binary;
    out.file = e.file;
    out.inode = `${e.dev >> 20n}:${e.dev & 0xfffffn}:${e.ino}`;
    out.argv0 = e.argv0 || undefined;
  } else {
    const a = formatAddr(e.daddr);
    const shown = e.family === 10 && a.includes('.') ? `::ffff:${a}` : a;
    out.destination = e.family === 10 ? `[${shown}]:${e.dport}` : `${shown}:${e.dport}`;
    out.protocol = ({ 6: 'tcp', 17: 'udp', 132: 'sctp', 33: 'dccp' } as Record<number, string>)[e.proto] ?? String(e.proto);
  }
  return out;
}

/**
 * Where BPF LSM is missing, a refused PTRACE_ATTACH has attached by the time its caller is killed:
 * the attach's SIGSTOP then stops the victim for good (the dead tracer's detach leaves the stop in
 * place), a denial of service the policy handed the attacker. The exit of the call names the
 * tracee (bpf/security.bpf.c attach_stopped) and every event passes through format(), the daemon's
 * and the tests' alike, which continues it here. A victim stopped on purpose before the attack is
 * continued too (the attach's stop and an earlier one cannot be told apart afterwards).
 */
function resumeStopped(pid: number, startNs: bigint): string {
  if (!(pid > 1)) return `not continued: no pid (${pid})`; // kill(0) would signal the daemon's own group
  // the events ring is pinned: a daemon started later reads events of a victim that may be gone,
  // its pid reused. So the victim's start too (/proc/<pid>/stat, USER_HZ ticks since boot). Not its
  // state: the attach's SIGSTOP may not have stopped it yet (SIGCONT then drops the pending stop).
  const st = readPidStat(`/proc/${pid}/stat`);
  if (!st || st.startTime !== String(startNs / 10_000_000n)) return 'not continued: the process is gone (its pid names another process now, or none)';
  try {
    process.kill(pid, 'SIGCONT');
    return 'continued (SIGCONT): the attach had stopped it';
  } catch (e) {
    return `not continued: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
  }
}

/** processes that joined a cgroup after their last exec have no lineage entry: ask /proc while they live */
function ppidOf(pid: number): number {
  try {
    return Number(/PPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * Why a /proc/<pid>/mem opened through io_uring cannot be told apart and refused on this kernel, from
 * its BTF, or undefined; `lsm`: by lsm/ptrace_access_check, else by the completion tracepoint.
 * Before 5.12 (upstream; Debian's 5.10.223 has 5.15's io_uring) io_uring's workers are kernel threads in
 * the root cgroup, borrowing the submitter's files: no hook sees the selected process, and
 * bpf_send_signal refuses kernel threads. Before 5.18 io_uring_complete carries no request, so not
 * what operation completed.
 */
function uringOpenUnsound(lsm: boolean): string | undefined {
  const btf = Btf.vmlinux();
  if (!btf) return 'no kernel BTF';
  try {
    if (btf.findByName('create_io_thread', Kind.FUNC) < 0) return "io_uring's workers are kernel threads here (no create_io_thread in the kernel's BTF, 5.12+)";
    if (lsm) return undefined;
    const req = btf.findByName('io_kiocb', Kind.STRUCT);
    if (req < 0 || !btf.type(req).members.some((m) => m.name === 'cqe')) return 'io_uring_complete carries no request here (struct io_kiocb has no cqe, 5.18+): the operation is unknown';
    return undefined;
  } finally {
    btf.close();
  }
}

/**
 * Why io_uring_sockopt (bpf/security.bpf.c) cannot tell a compat ring here, or undefined. From 7.0
 * the ring's compat bit is IO_RING_F_COMPAT in io_ring_ctx.int_flags, an enumerator of an
 * anonymous enum that CO-RE cannot relocate: the program has its 7.0 value, checked here against
 * the kernel's BTF (a scan of every type: 31–45 ms for 7.2's, done only on such kernels). Before, a bitfield
 * that CO-RE reads.
 */
const IO_RING_F_COMPAT = 2048;
export function uringCompatUnsound(btf = Btf.vmlinux()): string | undefined {
  if (!btf) return 'no kernel BTF';
  try {
    const ctx = btf.findByName('io_ring_ctx', Kind.STRUCT);
    if (ctx < 0) return 'no struct io_ring_ctx in the kernel\'s BTF';
    const fields = (id: number): string[] => btf.resolve(id).members.flatMap((m) => (m.name ? [m.name] : fields(m.type)));
    const names = fields(ctx);
    if (!names.includes('int_flags')) return names.includes('compat') ? undefined : 'struct io_ring_ctx has neither compat nor int_flags here';
    for (let id = 1; id < btf.typeCount; id++) {
      const t = btf.type(id);
      const v = t.kind === Kind.ENUM && !t.name ? t.enumValues?.find((e) => e.name === 'IO_RING_F_COMPAT') : undefined;
      if (v) return Number(v.value) === IO_RING_F_COMPAT ? undefined : `IO_RING_F_COMPAT is ${v.value} in this kernel, ${IO_RING_F_COMPAT} in this build`;
    }
    return 'io_ring_ctx has int_flags but the kernel\'s BTF names no IO_RING_F_COMPAT';
  } finally {
    btf.close();
  }
}

/**
 * Why attached LSM programs would never run, or undefined where they do. They load and attach
 * wherever the kernel has CONFIG_BPF_LSM, but run only where bpf is among the active LSMs (lsm= at
 * boot; 5.10's default list, Debian bullseye's, leaves it out): there, attached, they enforced
 * nothing, and the fallbacks were left out. The kernel's list says which; where securityfs is not
 * mounted, an exec under run counts does (`execRuns`: lsm/bprm_check_security's count, undefined
 * when no such program is at hand). What cannot be told counts as not running: the fallbacks then
 * enforce.
 */
function lsmInert(execRuns: () => bigint | undefined): string | undefined {
  const lsms = activeLsms();
  if (lsms) return lsms.includes('bpf') ? undefined : `bpf is not among the active LSMs (${lsms.join(',')}); boot with lsm=${[...lsms, 'bpf'].join(',')}`;
  const unknown = (why: string) => `whether they run cannot be told (/sys/kernel/security/lsm is not readable; ${why})`;
  try {
    const stats = enableStats();
    try {
      const before = execRuns();
      if (before === undefined) return unknown('no lsm/bprm_check_security program to try');
      spawnSync('/bin/true');
      return execRuns() !== before ? undefined : 'an exec did not run lsm/bprm_check_security (/sys/kernel/security/lsm is not readable): bpf is not among the active LSMs; boot with lsm=…,bpf';
    } finally {
      stats.close();
    }
  } catch (e) {
    return unknown(firstLine(e));
  }
}

/** a refused start's empty pin directories: the links one only where no link was there before it */
function removeEmptyPinDirs(linkDirToo: boolean): void {
  if (linkDirToo && fs.existsSync(LINK_DIR) && fs.readdirSync(LINK_DIR).length === 0) fs.rmdirSync(LINK_DIR);
  if (fs.existsSync(PIN_DIR) && fs.readdirSync(PIN_DIR).length === 0) removePinDir(PIN_DIR);
}

/** the pinned daemon's refusal where its tracepoint fallbacks cannot be pinned, with the fix BPF LSM's state calls for */
function unpinnableTracepoints(lsmEvidence: string): LabError {
  const fix = /lsm: off/.test(lsmEvidence)
    ? 'start without --lsm off: BPF LSM needs none of the tracepoint fallbacks'
    : /never run/.test(lsmEvidence)
      ? `make BPF LSM active, which needs none of them: boot with bpf added to lsm= (${lsmEvidence})`
      : `run a kernel with BPF LSM (CONFIG_BPF_LSM=y, bpf in lsm=), which needs none of them, or 5.15+, which pins them (${lsmEvidence})`;
  return new LabError(`cannot pin the syscall-tracepoint fallbacks used without BPF LSM on ${fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}: this kernel attaches tracepoint programs without a bpf_link (5.15+), so they would end with this process`, fix);
}

/**
 * Load only `progs` of the object, in a throw-away copy, and run `then` on it: what the kernel
 * said when it refused, or undefined. Probed by trial so that a program one kernel refuses does
 * not take the others down with it.
 */
function refusedAlone(file: string, progs: string[], then: (o: BpfObject) => void = () => {}): string | undefined {
  const probe = BpfObject.open(file);
  try {
    probe.load({ skip: [...probe.programs.keys()].filter((n) => !progs.includes(n)) });
    then(probe);
    return undefined;
  } catch (e) {
    return firstLine(e);
  } finally {
    probe.close();
  }
}

/** the size and flags of the pinned procs map, which a restarted daemon reuses as they are */
function pinnedSizing(pin: string, i: ReturnType<typeof pinnedMapInfo> | undefined): { maxEntries: number; flags: number } {
  if (!i) throw new LabError(`cannot open the pinned map ${pin}`, 'pnpm lab policy stop (removes the old enforcement), then start the daemon again');
  return { maxEntries: i.maxEntries, flags: i.flags };
}

/** whether libbpf would reuse the map pinned for `name`: the comparison it makes (type, sizes, flags);
 *  procs is sized at load from its pin, so only its type and entry sizes count */
function pinFits(obj: BpfObject, name: string, i: ReturnType<typeof pinnedMapInfo> | undefined): boolean {
  if (!i) return true; // the load reports it
  const s = obj.mapSpec(name);
  return i.type === s.type && i.keySize === s.keySize && i.valueSize === s.valueSize && (name === 'procs' || (i.maxEntries === s.maxEntries && i.flags === s.flags));
}

/** why the entries of map `name` cannot be carried over to this build's, or undefined */
function uncopyable(obj: BpfObject, name: string, i: ReturnType<typeof pinnedMapInfo> | undefined, notLoaded: string[]): string | undefined {
  if (!i) return 'it cannot be opened';
  const s = obj.mapSpec(name);
  const copied: number[] = [MapType.HASH, MapType.LRU_HASH, MapType.ARRAY, MapType.LPM_TRIE];
  if (notLoaded.length) return `the pinned ${notLoaded.join(', ')} would go on using the old one`;
  if (!copied.includes(i.type) || !copied.includes(s.type)) return `${mapTypeName(i.type)} → ${mapTypeName(s.type)}: entries of this type are not copied`;
  if (i.keySize !== s.keySize || i.valueSize !== s.valueSize) return `entries ${i.keySize}+${i.valueSize} → ${s.keySize}+${s.valueSize} bytes: their layout changed`;
  return undefined;
}

/**
 * Copy the entries of one map into another of the same entry layout: all of them, or only keys
 * the target lacks (array slots always exist: skipped then). procs keeps live processes only (an
 * old LRU could hold more entries than the new table, dead ones among them).
 */
function copyEntries(name: string, from: number, to: number, onlyMissing: boolean): number {
  const i = mapInfo(from);
  if (onlyMissing && i.type === MapType.ARRAY) return 0;
  const key = Buffer.alloc(i.keySize);
  const next = Buffer.alloc(i.keySize);
  const val = Buffer.alloc(i.valueSize);
  let n = 0;
  // a key deleted under the walk restarts it from the first key: bounded
  for (let k = 0, first = true; k < 4 * i.maxEntries + 16 && libbpf.bpf_map_get_next_key(from, first ? null : key, next) === 0; k++, first = false) {
    next.copy(key);
    if (libbpf.bpf_map_lookup_elem(from, key, val) !== 0) continue; // deleted meanwhile
    if (name === 'procs' && !fs.existsSync(`/proc/${key.readUInt32LE(0)}`)) continue;
    const r = libbpf.bpf_map_update_elem(to, key, val, onlyMissing ? UpdateFlags.NOEXIST : UpdateFlags.ANY);
    if (r === 0) n++;
    else if (!(onlyMissing && r === -17 /* EEXIST */)) throw new LabError(`carrying the map ${name} over to this build's failed after ${n} entries: errno ${-r}`, 'pnpm lab policy stop (removes the old enforcement), then start the daemon again');
  }
  return n;
}

export function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0]!;
}
