/*
 * Runtime security: the layouts shared by security.bpf.c and controller/security (which reads
 * them from BTF). Policies live in maps; a policy occupies a "slot" (index into `policies`), and
 * every rule table is keyed by slot so an update can fill a fresh slot and flip the selector to it
 * in one map write.
 */
#pragma once

/* an enum so that it reaches BTF and bpf/gen/security.enums.ts (controller/security/store.ts) */
enum sec_limits {
	SEC_MAX_POLICIES = 64,
	/* bits of the egress LPM key before the address: slot (32) + proto (8) + pad (8) + port (16) */
	SEC_EGRESS_KEY_HDR_BITS = 64,
};
/* #defines: 0xffffffff does not fit BTF's signed 32-bit enum values */
#define SEC_ANY_UID 0xffffffffu
/* SEC_EV_SOCKOPT's optname for a send with more control messages than lsm/socket_sendmsg reads */
#define SEC_OPT_CMSG_TOO_MANY 0xffffffffu
#define SEC_COMM_LEN 16
#define SEC_PATH_LEN 160
#define SEC_NAME_LEN 64

enum sec_policy_flag {
	SEC_F_ENFORCE = 1,          /* else log-only: decisions become would-block events */
	SEC_F_EXEC_ALLOWLIST = 2,   /* exec of anything not explicitly allowed is denied */
	SEC_F_DENY_ANON_EXEC = 4,   /* exec of a file with no name (memfd, O_TMPFILE, deleted) */
	SEC_F_EGRESS_ALLOWLIST = 8, /* egress to anything not explicitly allowed is denied */
	/*
	 * creating raw IP sockets (AF_INET/AF_INET6 SOCK_RAW) and packet sockets (AF_PACKET,
	 * SOCK_PACKET) is denied: they build their own headers and never pass connect/sendmsg hooks
	 */
	SEC_F_DENY_RAW = 16,
	/*
	 * access in ptrace's attach mode to another process is denied: PTRACE_ATTACH/SEIZE, writes
	 * and reads through /proc/<pid>/mem, process_vm_readv/writev, pidfd_getfd. Through them a
	 * selected process makes one the policy does not select exec or connect for it.
	 */
	SEC_F_DENY_PTRACE = 32,
};

enum sec_rule_action { SEC_ACTION_ALLOW = 1, SEC_ACTION_DENY = 2 };

/* SEC_EV_TRACKING: a process the policy selects could not be recorded in `procs` (full): killed */
enum sec_event_kind { SEC_EV_EXEC = 1, SEC_EV_CONNECT = 2, SEC_EV_SENDMSG = 3, SEC_EV_SOCKET = 4, SEC_EV_PTRACE = 5, SEC_EV_SOCKOPT = 6, SEC_EV_TRACKING = 7 };

/* SEC_ATTACH_STOPPED: not a decision but its consequence, a SEC_EV_PTRACE whose target (host tgid)
 * a refused PTRACE_ATTACH stopped before its caller was killed: the daemon continues it */
enum sec_event_action { SEC_BLOCKED = 1, SEC_WOULD_BLOCK = 2, SEC_ATTACH_STOPPED = 3 };

/* which kernel mechanism made the decision: the report names it per attack */
enum sec_mech {
	SEC_MECH_LSM_BPRM = 1,      /* lsm/bprm_check_security returned -EPERM: exec failed */
	SEC_MECH_TP_EXEC_KILL = 2,  /* tp_btf/sched_process_exec + bpf_send_signal(SIGKILL) */
	SEC_MECH_CGROUP_CONNECT4 = 3,
	SEC_MECH_CGROUP_CONNECT6 = 4,
	SEC_MECH_CGROUP_SENDMSG4 = 5,
	SEC_MECH_CGROUP_SENDMSG6 = 6,
	SEC_MECH_LSM_CONNECT = 7,
	SEC_MECH_CGROUP_SOCK_CREATE = 8, /* cgroup/sock_create: AF_INET/AF_INET6 only (inet_create calls it) */
	SEC_MECH_LSM_SOCKET_CREATE = 9,  /* lsm/socket_create: every family */
	SEC_MECH_TP_SOCKET_KILL = 10,    /* tracepoint sys_enter_socket + SIGKILL: AF_PACKET where LSM is missing */
	SEC_MECH_LSM_PTRACE = 11,        /* lsm/ptrace_access_check: every attach-mode access */
	SEC_MECH_TP_PTRACE_KILL = 12,    /* tracepoints sys_enter_{ptrace,process_vm_*,pidfd_getfd} + SIGKILL */
	SEC_MECH_CGROUP_SETSOCKOPT = 13, /* cgroup/setsockopt: a source route (IPv6 routing header, IPv4 option) refused (EPERM) */
	SEC_MECH_LSM_SENDMSG = 14,       /* lsm/socket_sendmsg: a source-routed send refused (-EPERM) */
	SEC_MECH_TP_IO_URING_KILL = 15,  /* tp_btf/io_uring_submit_{req,sqe} + SIGKILL: IORING_OP_SOCKET where LSM is missing */
	SEC_MECH_TP_IO_URING_OPEN_KILL = 16, /* tp_btf/io_uring_complete + SIGKILL: another's /proc/<pid>/mem opened by IORING_OP_OPENAT/OPENAT2 */
	SEC_MECH_PROCS_EXEC_KILL = 17,  /* tp_btf/sched_process_exec + SIGKILL: a selected binary's process not recorded (procs full) */
	SEC_MECH_PROCS_FORK_KILL = 18,  /* tp_btf/sched_process_fork + SIGKILL: the child of a selected process not recorded; the parent dies */
	SEC_MECH_PROCS_CHILD_KILL = 19, /* tracepoint syscalls/sys_exit_{clone,clone3,fork,vfork} + SIGKILL: that child, before its first instruction */
	SEC_MECH_TP_COMPAT_KILL = 20,   /* tp_btf/sys_exit + SIGKILL: the fallbacks above for a 32-bit (ia32, int 0x80) syscall, which no syscalls:* tracepoint sees */
	SEC_MECH_TP_X32_KILL = 21,      /* the same for an x32 syscall (bit 30 of the number; syscall.x32=y), which none sees either */
	SEC_MECH_TP_IO_URING_SOCKOPT_KILL = 22, /* tp_btf/io_uring_complete + SIGKILL: a source route set by a compat ring's setsockopt command, which no cgroup/setsockopt sees */
	SEC_MECH_CGROUP_SKB_ROUTE = 23, /* cgroup_skb/egress: a packet that carries a source route dropped (the send fails with EPERM) */
};

/*
 * Index into `track_fail` (u64 counters the controller reads): processes that `procs` could not
 * record where a selection was at stake, and what was done about them.
 */
enum sec_track_fail {
	SEC_TRACK_EXEC = 0,        /* exec of a selected binary not recorded: killed (log mode: reported only) */
	SEC_TRACK_FORK = 1,        /* child of a selected process not recorded: the parent killed, the child marked (log mode: reported only) */
	SEC_TRACK_CHILD = 2,       /* such a child killed at its first return from fork */
	SEC_TRACK_CHILD_LOST = 3,  /* such a child not even marked (`doomed` full): it may run unselected */
	SEC_TRACK_ADOPT = 4,       /* unused by the programs: the controller's own count of running processes it could not adopt */
	SEC_TRACK_N = 5,
};

/* SEC_EV_PTRACE's `call` when io_uring decided: this bit | the io_uring opcode; when a 32-bit
 * syscall did: SEC_CALL_IA32 | its ia32 number; an x32 one: SEC_CALL_X32 | its number without
 * bit 30 (else an x86-64 syscall number) */
enum sec_call { SEC_CALL_IO_URING = 0x10000, SEC_CALL_IA32 = 0x20000, SEC_CALL_X32 = 0x40000 };

/* SEC_EV_SOCKOPT's `call`: where the source route was seen. In the packet, the event cannot tell
 * whether the socket's options or the send's control messages put it there. */
enum sec_opt_origin { SEC_OPT_SOCKET = 0, SEC_OPT_CMSG = 1, SEC_OPT_IN_PACKET = 2 };

/* how exec is enforced on this kernel, chosen by the controller after probing LSM attach */
enum sec_exec_mode { SEC_EXEC_NONE = 0, SEC_EXEC_LSM = 1, SEC_EXEC_TP_KILL = 2 };

struct sec_config {
	__u32 cg_levels;  /* bit L set: some selected cgroup sits at depth L of the cgroup2 tree */
	__u32 exec_mode;  /* enum sec_exec_mode */
	__u32 have_exe_selectors;
	__u32 lsm_socket; /* lsm/socket_create is attached: the sys_enter_socket fallback stays out */
	__u32 lsm_ptrace; /* lsm/ptrace_access_check is attached: the syscall tracepoints stay out */
	/*
	 * Identity oracle: while non-zero, every exec in this cgroup records the (dev, ino) the kernel
	 * sees for the file exec'd in `oracle` and is killed before it runs. stat(2) can disagree with
	 * the kernel's inode (overlayfs reports the lower layer's), so the controller asks the kernel.
	 */
	__u64 oracle_cgroup;
};

struct sec_policy {
	__u32 id;   /* policy number; rule ids are (id << 16) | n */
	__u32 flags; /* enum sec_policy_flag */
	__u32 uid;  /* SEC_ANY_UID or the only uid this policy applies to */
	__u32 allowlist_rule; /* rule id reported when an exec is not on the allowlist */
	__u32 anon_rule;      /* rule id for nameless (memfd) exec */
	__u32 egress_rule;    /* rule id reported when egress matches no allow entry */
	__u32 raw_rule;       /* rule id reported for a denied raw/packet socket */
	__u32 ptrace_rule;    /* rule id reported for a denied ptrace-mode access */
};

/* a file by identity: kernel dev_t (MAJOR << 20 | MINOR) of its super block, inode number */
struct sec_file_key {
	__u64 dev;
	__u64 ino;
};

struct sec_exec_key {
	__u32 slot;
	__u32 _pad;
	__u64 dev;
	__u64 ino;
};

struct sec_rule {
	__u32 rule_id;
	__u32 action; /* enum sec_rule_action */
};

/* LPM trie key; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d) so v4, v6 and mapped share rules */
struct sec_egress_key {
	__u32 prefixlen;
	__u32 slot;
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP; 0 = any */
	__u8 _pad;
	__u16 port; /* host order; 0 = any */
	__u8 addr[16];
};

/* lineage of selected processes (sock hooks cannot see the task, so ppid comes from here) */
struct sec_proc {
	__u32 ppid;
	__u32 slot; /* slot + 1 when the process is selected by executable, else 0 */
};

struct sec_event {
	__u64 ts_ns; /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u64 cgroup_id;
	__u64 dev;
	__u64 ino;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 policy_id;
	__u32 rule_id;
	__u8 kind;   /* enum sec_event_kind */
	__u8 action; /* enum sec_event_action */
	__u8 mech;   /* enum sec_mech */
	__u8 proto;
	__u16 family;
	__u16 dport;
	__u8 daddr[16];
	char comm[SEC_COMM_LEN];
	char binary[SEC_PATH_LEN]; /* the path exec was asked for (symlink, /dev/fd/N …) */
	char file[SEC_NAME_LEN];   /* name of the file actually executed (dentry), e.g. "dash", "memfd:x" */
	char argv0[SEC_NAME_LEN];
	__u32 sock_type; /* socket(2) type of a SEC_EV_SOCKET event (SOCK_RAW, SOCK_DGRAM …) */
	__u32 target;    /* SEC_EV_PTRACE: the process it tried to reach (tgid; 0 when not known) */
	__u32 call;      /* SEC_EV_PTRACE: the syscall number where a tracepoint decided (SEC_CALL_IO_URING |
	                  * opcode for an io_uring operation), else 0;
	                  * SEC_EV_SOCKOPT: where the option was seen (enum sec_opt_origin);
	                  * SEC_EV_TRACKING: what was not recorded (enum sec_track_fail) */
	__u32 optname;   /* SEC_EV_SOCKOPT: level << 16 | option (or control message type) */
	__u64 target_start; /* SEC_ATTACH_STOPPED: the tracee's start_boottime (ns), so that a late
	                     * event (a daemon restarted) continues no other process of that pid */
};

/* stopped_lost's value: a SEC_ATTACH_STOPPED event the ring had no room for, keyed by the tracee */
struct sec_lost_stop {
	__u64 ts_ns;
	__u64 target_start;
	__u64 cgroup_id;
	__u32 pid; /* the tracer, killed */
	__u32 uid;
	__u32 policy_id;
	__u32 rule_id;
	__u32 call;
	__u8 mech;
	__u8 pad[3];
	char comm[SEC_COMM_LEN];
};
