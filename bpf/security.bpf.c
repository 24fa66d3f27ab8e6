// Runtime security: exec and egress policies for selected workloads, enforced in the kernel.
//
// Selection: a process is under a policy when its cgroup2 ancestor at some depth is in `cg_sel`
// (so a cgroup selects itself and its descendants), or when it — or an ancestor process — exec'd
// a binary listed in `exe_sel` (tracked in `procs`, inherited at fork), optionally narrowed by uid.
//
// Exec: lsm/bprm_check_security returns -EPERM where BPF LSM attaches. Elsewhere the fallback is
// tp_btf/sched_process_exec + bpf_send_signal(SIGKILL): the tracepoint fires after the new image
// is installed but before the task returns to user space, and the pending SIGKILL is delivered on
// that return, so no instruction of the forbidden binary runs. The controller writes which one is
// active into config.exec_mode so exactly one of them enforces.
//
// Identity of a binary is the (dev, ino) of the file the kernel executes (bprm->file), which for a
// #! script is the interpreter, for a symlink its target and for a hard link the same inode.
// Copies and memfds have new inodes: an exec allowlist and the nameless-file rule (i_nlink == 0)
// cover those.
//
// Egress: cgroup/connect{4,6} and sendmsg{4,6} attached at the cgroup2 root; addresses are looked
// up IPv4-mapped in one LPM trie so v4, v6 and ::ffff:a.b.c.d cannot disagree. Raw IP and packet
// sockets carry hand-built headers past those hooks, and non-inet network families (vsock,
// AppleTalk, Bluetooth, …) never meet them, so (unless a policy allows them) they are not
// created at all: lsm/socket_create where BPF LSM attaches; else cgroup/sock_create (inet families
// only: inet_create is where the kernel runs it) plus, for AF_PACKET and the other families, the
// sys_enter_socket tracepoint + SIGKILL, which kills the task before socket(2) returns the descriptor.
//
// Other processes: a selected process that could attach to one the policy does not select would
// have it exec or connect in its place (inject an execve through ptrace, write its memory). Access
// in ptrace's attach mode is denied: lsm/ptrace_access_check where BPF LSM attaches (PTRACE_ATTACH
// and SEIZE, /proc/<pid>/mem, process_vm_readv/writev, pidfd_getfd all ask it); else the syscalls'
// tracepoints + SIGKILL for ptrace attach/seize, process_vm_readv/writev, pidfd_getfd and, at the
// return of open/openat/openat2 or the completion of io_uring's IORING_OP_OPENAT/OPENAT2, a
// descriptor (or io_uring direct descriptor) of another process's /proc/<pid>/mem.
#include "include/lab.h"
#include "security.h"

#define EPERM 1
#define SIGKILL 9
#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define SOCK_RAW 3
#define SOCK_PACKET 10
#define SOCK_DGRAM 2
#define SOCK_SEQPACKET 5
#define SOCK_DCCP 6
#define IPPROTO_DCCP 33
#define IPPROTO_SCTP 132
#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58
#define SOL_IP 0
#define SOL_IPV6 41
#define IP_OPTIONS 4
#define IP_RETOPTS 7
#define IPV6_2292RTHDR 5
#define IPV6_2292PKTOPTIONS 6
#define IPV6_RTHDR 57
#define IPOPT_END 0
#define IPOPT_NOOP 1
#define IPOPT_LSRR 131
#define IPOPT_SSRR 137
#define IP_OPTS_MAX 40
#define PAGE_SIZE 4096
#define PTRACE_MODE_ATTACH 0x02
#define PTRACE_ATTACH 16
#define PTRACE_SEIZE 0x4206
#define PROC_SUPER_MAGIC 0x9fa0

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sec_config);
} sec_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SEC_MAX_POLICIES);
	__type(key, __u32);
	__type(value, struct sec_policy);
} policies SEC(".maps");

/* cgroup id → slot */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
} cg_sel SEC(".maps");

/* executable (dev, ino) → slot */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct sec_file_key);
	__type(value, __u32);
} exe_sel SEC(".maps");

/*
 * tgid → lineage of selected processes. A plain hash, not an LRU: an LRU evicts without a word when
 * it fills, and an evicted entry of a process selected by executable was that process no longer
 * under its policy (fail open). The controller sizes it at load to kernel.pid_max (floor 1024): one
 * entry per live process at most, since an entry goes with its process's last thread and a reused
 * pid overwrites; preallocated up to 131072 entries, BPF_F_NO_PREALLOC above. Measured on 6.18
 * (bpftool map show, memlock): 2.6 MB preallocated for 32768 (this lab's host), 10.5 MB for 131072;
 * for systemd's 4194304, 335 MB preallocated against 67 MB without (the bucket array, 16 bytes per
 * entry rounded up to a power of two, plus the entries in use). An update of an existing key never fails for room (prealloc uses a spare
 * element, no-prealloc may exceed while replacing). Should it still fill (pid_max raised after the
 * map was made: an enforcement gap the controller reports), every insert where a selection is at
 * stake fails closed: see track_lost().
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct sec_proc);
} procs SEC(".maps");

/*
 * Children of selected processes that `procs` could not record: tgid → slot + 1. The child has not
 * run yet at sched_process_fork (wake_up_new_task comes after the tracepoint) and bpf_send_signal
 * reaches only the current task, so it is marked here. Where the syscall tracepoints are attached
 * anyway (no BPF LSM: the ptrace and socket fallbacks), it is killed at its first return to user
 * space, the exit of the clone/clone3/fork/vfork syscall it was born in (ret_from_fork runs the
 * syscall exit work, tracepoint included, before any signal or instruction). Under BPF LSM none is
 * attached: one syscall tracepoint puts every task on the machine on the slow syscall path (getppid
 * 167 → 220 ns on this lab's host with one enabled, perf bench syscall basic; exploratory, no stored
 * run). There the child lives on under its parent's policy, read from this map (select_current),
 * so whatever the policy governs it is refused like any selected process. 8192 at once: each
 * parent that failed is killed at the same moment and forks no more.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u32);
} doomed SEC(".maps");

/*
 * Threads whose PTRACE_ATTACH the fallback refused (killed on their return): the attach itself went
 * through, and its SIGSTOP stops the victim for good once the killed tracer detaches. Their
 * sys_exit_ptrace finds the tracee and tells the daemon, which continues it (SIGCONT).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} attach_refused SEC(".maps");

/*
 * The victims of such attaches whose event the ring had no room for (a full ring: a daemon behind,
 * or none running), by host tgid. Without it a lost event left the victim stopped for good, and an
 * attacker that filled the ring first (refused connects cost it nothing) kept the stop the fallback
 * meant to undo. Pinned, so a daemon started later finds them too; it continues each one, records
 * the event the ring lost, and deletes the entry. One entry per victim process: as many as the
 * default pid_max, allocated as they come (the bucket array alone is preallocated, 512 KiB).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct sec_lost_stop);
} stopped_lost SEC(".maps");

/* enum sec_track_fail → count, read by the controller ("tracking lost") */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SEC_TRACK_N);
	__type(key, __u32);
	__type(value, __u64);
} track_fail SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sec_exec_key);
	__type(value, struct sec_rule);
} exec_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sec_egress_key);
	__type(value, struct sec_rule);
} egress_rules SEC(".maps");

/* tgid of an oracle child → identity of what it exec'd (see sec_config.oracle_cgroup) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct sec_file_key);
} oracle SEC(".maps");

/*
 * Sockets the packet guard has reported under a log-mode policy (by socket cookie): there the
 * packet passes, and a source-routed TCP stream would write one event per segment into the ring
 * every policy shares, pushing other policies' enforcement events out. One event per socket.
 * Not pinned: a daemon that loads new programs starts afresh.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} guard_logged SEC(".maps");

/*
 * Sockets the packet guard found sent from by a task under a policy that denies source routes,
 * where no selected cgroup holds the socket: by what that task was selected, for the socket's
 * later packets, which may leave from any context (a TCP SYN's retransmission leaves from a timer,
 * in whatever task it interrupted). The selector, not the policy's slot: an update moves a policy
 * to another slot, and the judgement holds across it. Only denials are kept (a task interrupted
 * in softirq cannot lift one). Socket storage: it goes with the socket and nothing evicts it. Not
 * pinned: a daemon that loads new programs starts afresh.
 */
struct sec_guard_sock {
	__u64 sel_cgroup;    /* the selected cgroup (cg_sel key) the sender sat in or under; 0: by executable */
	__u64 sender_cgroup; /* the sender's own cgroup, for the events */
	__u32 tgid;          /* the sender (procs key), where selected by executable */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sec_guard_sock);
} guard_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

LAB_LOST_COUNTER(lost);
LAB_EXPORT(sec_event);
LAB_EXPORT(sec_lost_stop);
/* enums only used as constants would be dropped from BTF; the TS side reads them from there */
LAB_EXPORT_ENUM(sec_policy_flag);
LAB_EXPORT_ENUM(sec_rule_action);
LAB_EXPORT_ENUM(sec_event_kind);
LAB_EXPORT_ENUM(sec_event_action);
LAB_EXPORT_ENUM(sec_mech);
LAB_EXPORT_ENUM(sec_exec_mode);
LAB_EXPORT_ENUM(sec_limits);
LAB_EXPORT_ENUM(sec_call);
LAB_EXPORT_ENUM(sec_track_fail);
LAB_EXPORT_ENUM(sec_opt_origin);

struct selected {
	struct sec_policy *pol;
	struct sec_config *cfg;
	__u32 slot;
};

static __always_inline struct sec_config *get_config(void)
{
	__u32 k = 0;
	return bpf_map_lookup_elem(&sec_config, &k);
}

/*
 * Slot of the selected cgroup the current task sits in or under. Two ways to the ancestors:
 * socket hooks have bpf_get_current_ancestor_cgroup_id on every kernel we run; tracing and LSM
 * programs only from ~5.15 (5.10 rejects it: "unknown func"), so there we walk the task's cgroup2
 * parents through CO-RE reads, which every kernel allows.
 */
static __always_inline __u32 *cg_slot_helper(__u32 levels)
{
	/* deepest first, as cg_slot_walk: a nested selected cgroup's policy wins over its parent's (from
	 * the root down, the socket hooks took the outer policy where the tracing hooks took the inner) */
	for (int l = 15; l >= 0; l--) {
		/* levels is never written: clearing each bit seen made every path through the loop a
		 * different state to the verifier (2^16 of them, ~0.6 s per program on a 6.18 host) */
		if (!(levels & ((2u << l) - 1)))
			break;
		if (!(levels & (1u << l)))
			continue;
		__u64 id = bpf_get_current_ancestor_cgroup_id(l);
		__u32 *slotp = bpf_map_lookup_elem(&cg_sel, &id);
		if (slotp)
			return slotp;
	}
	return NULL;
}

/* `sel`, where given, gets the id of the selected cgroup the walk stopped at */
static __always_inline __u32 *cg_slot_walk_at(__u32 levels, __u64 *sel)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct cgroup *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);
	int level = BPF_CORE_READ(cg, level);

	for (int i = 0; i < 16; i++) {
		if (!cg || level < 0 || level > 15)
			break;
		/* nothing selected at this depth or above: stop climbing */
		if (!(levels & ((2u << level) - 1)))
			break;
		if (levels & (1u << level)) {
			__u64 id = BPF_CORE_READ(cg, kn, id);
			__u32 *slotp = bpf_map_lookup_elem(&cg_sel, &id);
			if (slotp) {
				if (sel)
					*sel = id;
				return slotp;
			}
		}
		/* css "self" is the first member of struct cgroup: the parent css is the parent cgroup */
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
		level--;
	}
	return NULL;
}

static __always_inline __u32 *cg_slot_walk(__u32 levels)
{
	return cg_slot_walk_at(levels, NULL);
}

/*
 * A child `procs` could not record, marked at fork (see `doomed`): under its parent's policy until
 * it dies. Looked for only once a fork has failed so (the count never goes down): until then a
 * process procs does not hold costs one array read more.
 */
static __always_inline __u32 *marked_child(__u32 tgid)
{
	__u32 k = SEC_TRACK_FORK;
	__u64 *n = bpf_map_lookup_elem(&track_fail, &k);

	if (!n || !*n)
		return NULL;
	return bpf_map_lookup_elem(&doomed, &tgid);
}

/*
 * The policy the current task is under, or false. Costs, for an unselected task: the cgroup
 * lookups at depths that have a selected cgroup (usually one), and one lookup in `procs` only
 * while some policy selects by executable. `tracing` is a constant at each call site.
 */
static __always_inline bool select_current(struct selected *s, bool tracing)
{
	struct sec_config *cfg = get_config();
	__u32 *slotp = NULL;
	__u32 slot = 0;

	if (!cfg)
		return false;
	s->cfg = cfg;
	if (cfg->cg_levels)
		slotp = tracing ? cg_slot_walk(cfg->cg_levels) : cg_slot_helper(cfg->cg_levels);
	if (slotp) {
		slot = *slotp;
	} else if (cfg->have_exe_selectors) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		struct sec_proc *p = bpf_map_lookup_elem(&procs, &tgid);
		if (p) {
			if (!p->slot)
				return false;
			slot = p->slot - 1;
		} else {
			__u32 *mark = marked_child(tgid);
			if (!mark)
				return false;
			slot = *mark - 1;
		}
	} else {
		return false;
	}
	struct sec_policy *pol = bpf_map_lookup_elem(&policies, &slot);
	if (!pol || !pol->id)
		return false;
	if (pol->uid != SEC_ANY_UID && (__u32)bpf_get_current_uid_gid() != pol->uid)
		return false;
	s->pol = pol;
	s->slot = slot;
	return true;
}

static __always_inline struct sec_event *ev_begin(struct selected *s, __u32 rule_id, __u8 kind, __u8 mech)
{
	struct sec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		lab_count(&lost);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->policy_id = s->pol->id;
	e->rule_id = rule_id;
	e->kind = kind;
	e->mech = mech;
	e->action = (s->pol->flags & SEC_F_ENFORCE) ? SEC_BLOCKED : SEC_WOULD_BLOCK;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

/* socket-side events: the parent as the exec/fork tracepoints recorded it */
static __always_inline void ev_ppid_from_procs(struct sec_event *e)
{
	__u32 tgid = e->pid;
	struct sec_proc *pp = bpf_map_lookup_elem(&procs, &tgid);
	if (pp)
		e->ppid = pp->ppid;
}

static __always_inline void track_count(__u32 what)
{
	__u64 *c = bpf_map_lookup_elem(&track_fail, &what);
	if (c)
		__sync_fetch_and_add(c, 1);
}

/*
 * `procs` could not record a process whose selection depends on it (slot: its policy's): fail
 * closed. The current task is killed (enforce mode; a log-mode policy blocks nothing and only
 * reports it), with an event saying why; the count is what `policy list` shows as tracking lost.
 */
static __always_inline bool track_lost(__u32 slot, __u32 what, __u8 mech, __u32 ppid)
{
	struct selected s = {};

	track_count(what);
	s.pol = bpf_map_lookup_elem(&policies, &slot);
	if (!s.pol || !s.pol->id)
		return false;
	s.slot = slot;
	struct sec_event *e = ev_begin(&s, 0, SEC_EV_TRACKING, mech);
	if (e) {
		e->ppid = ppid;
		e->call = what;
		bpf_ringbuf_submit(e, 0);
	}
	if (!(s.pol->flags & SEC_F_ENFORCE))
		return false;
	bpf_send_signal(SIGKILL);
	return true;
}

/* ---------------------------------------------------------------- exec */

/* 0 = allowed, else the rule id that denies executing `f` */
static __always_inline __u32 exec_verdict(struct selected *s, struct file *f, __u64 *dev, __u64 *ino)
{
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	struct sec_exec_key k = {};

	k.slot = s->slot;
	k.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	k.ino = BPF_CORE_READ(inode, i_ino);
	*dev = k.dev;
	*ino = k.ino;
	struct sec_rule *r = bpf_map_lookup_elem(&exec_rules, &k);
	if (r) {
		if (r->action == SEC_ACTION_DENY)
			return r->rule_id;
		if (r->action == SEC_ACTION_ALLOW)
			return 0;
	}
	/* memfd_create and O_TMPFILE files are born unlinked: no path a deny list could name */
	if ((s->pol->flags & SEC_F_DENY_ANON_EXEC) && BPF_CORE_READ(inode, __i_nlink) == 0)
		return s->pol->anon_rule;
	if (s->pol->flags & SEC_F_EXEC_ALLOWLIST)
		return s->pol->allowlist_rule;
	return 0;
}

static __always_inline void fill_exec_event(struct sec_event *e, struct linux_binprm *bprm, struct file *f, __u64 dev, __u64 ino)
{
	e->dev = dev;
	e->ino = ino;
	bpf_probe_read_kernel_str(e->binary, sizeof(e->binary), BPF_CORE_READ(bprm, filename));
	bpf_probe_read_kernel_str(e->file, sizeof(e->file), BPF_CORE_READ(f, f_path.dentry, d_name.name));
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sec_exec_tp, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	LAB_VARIANT_MARK(); /* the exec programs differ in a -DLAB_VARIANT build */
	struct selected s = {};
	struct sec_config *cfg = get_config();

	if (cfg && cfg->oracle_cgroup && bpf_get_current_cgroup_id() == cfg->oracle_cgroup) {
		/* the file exec runs (the controller never asks about #! scripts: here that is the interpreter) */
		struct file *x = BPF_CORE_READ(bprm, file);
		struct sec_file_key fk = {};
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		fk.dev = BPF_CORE_READ(x, f_inode, i_sb, s_dev);
		fk.ino = BPF_CORE_READ(x, f_inode, i_ino);
		bpf_map_update_elem(&oracle, &tgid, &fk, BPF_ANY);
		bpf_send_signal(SIGKILL);
		return 0;
	}
	bool sel = select_current(&s, true);

	/* the common case, every exec on the machine: nothing selected, no executable selectors */
	if (!cfg || (!sel && !cfg->have_exe_selectors))
		return 0;
	struct file *f = BPF_CORE_READ(bprm, file);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 ppid = BPF_CORE_READ(p, real_parent, tgid);

	if (sel && cfg->exec_mode == SEC_EXEC_TP_KILL) {
		__u64 dev, ino;
		__u32 rule = exec_verdict(&s, f, &dev, &ino);
		if (rule) {
			struct sec_event *e = ev_begin(&s, rule, SEC_EV_EXEC, SEC_MECH_TP_EXEC_KILL);
			if (e) {
				e->ppid = ppid;
				fill_exec_event(e, bprm, f, dev, ino);
				unsigned long arg_start = BPF_CORE_READ(p, mm, arg_start);
				bpf_probe_read_user_str(e->argv0, sizeof(e->argv0), (void *)arg_start);
				bpf_ringbuf_submit(e, 0);
			}
			if (s.pol->flags & SEC_F_ENFORCE) {
				/* delivered on the return to user space: the new image never runs */
				bpf_send_signal(SIGKILL);
				return 0;
			}
		}
	}
	if (cfg->have_exe_selectors) {
		struct sec_file_key fk = {};
		fk.dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
		fk.ino = BPF_CORE_READ(f, f_inode, i_ino);
		__u32 *slot = bpf_map_lookup_elem(&exe_sel, &fk);
		if (slot) {
			struct sec_proc v = { .ppid = ppid, .slot = *slot + 1 };
			/* not recorded, the process would run its selected binary unselected */
			if (bpf_map_update_elem(&procs, &tgid, &v, BPF_ANY))
				track_lost(*slot, SEC_TRACK_EXEC, SEC_MECH_PROCS_EXEC_KILL, ppid);
			return 0;
		}
	}
	if (sel) {
		/* remember the parent for the socket hooks, which cannot see the task */
		struct sec_proc *old = bpf_map_lookup_elem(&procs, &tgid);
		/* a marked child is selected by its mark: an entry of slot 0 would unselect it */
		if (!old && !marked_child(tgid)) {
			struct sec_proc v = { .ppid = ppid, .slot = 0 };
			/* may fail when full: only the parent's pid is lost (selected by cgroup, not by this entry) */
			bpf_map_update_elem(&procs, &tgid, &v, BPF_ANY);
		}
	}
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sec_fork_tp, struct task_struct *parent, struct task_struct *child)
{
	struct selected s = {};
	__u32 pid = BPF_CORE_READ(child, pid);

	if (pid != BPF_CORE_READ(child, tgid)) /* a thread, not a process */
		return 0;
	struct sec_config *cfg = get_config();
	if (!cfg)
		return 0;
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	struct sec_proc v = { .ppid = ptgid, .slot = 0 };
	/*
	 * A lineage of a selected executable passes on whatever the parent's uid: a policy narrowed by
	 * uid selects the processes of that lineage that run as it, and a child may switch to it after
	 * the fork. Asked of select_current (uid included), a root parent of `select: { executable,
	 * uid: 65534 }` recorded no child, and the child's setuid(65534) shell ran.
	 */
	if (cfg->have_exe_selectors) {
		struct sec_proc *pp = bpf_map_lookup_elem(&procs, &ptgid);
		if (pp) {
			v.slot = pp->slot;
		} else {
			/* a marked child forking (under BPF LSM it lives on): its children inherit its mark's policy */
			__u32 *mark = marked_child(ptgid);
			if (mark)
				v.slot = *mark;
		}
	}
	/* else only the parent's pid is kept, for a process selected now (by its cgroup) */
	if (!v.slot && !select_current(&s, true))
		return 0;
	/* slot 0: selected by its cgroup, which the child shares; a missing entry loses only the ppid */
	if (!bpf_map_update_elem(&procs, &pid, &v, BPF_ANY) || !v.slot)
		return 0;
	/* the child would run unselected: kill the parent, mark the child to die before its first
	 * instruction (a log-mode policy kills neither: both run on, reported) */
	if (!track_lost(v.slot - 1, SEC_TRACK_FORK, SEC_MECH_PROCS_FORK_KILL, BPF_CORE_READ(parent, real_parent, tgid)))
		return 0;
	__u32 mark = v.slot;
	if (bpf_map_update_elem(&doomed, &pid, &mark, BPF_ANY))
		track_count(SEC_TRACK_CHILD_LOST);
	return 0;
}

/*
 * A child marked in `doomed`, at its first return to user space: the exit of the syscall it was
 * forked by (x86-64 and arm64 alike: ret_from_fork runs the syscall exit work of the parent's
 * syscall number). The parent's own return passes here too and finds nothing; so does every other
 * fork on the machine (one lookup in a small map).
 */
static __always_inline int doomed_child(__u8 mech)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 *mark = bpf_map_lookup_elem(&doomed, &tgid);

	if (!mark)
		return 0;
	__u32 slot = *mark - 1;
	bpf_map_delete_elem(&doomed, &tgid);
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	/* with the policy deleted or switched to log mode since, it runs on, reported */
	track_lost(slot, SEC_TRACK_CHILD, mech, BPF_CORE_READ(t, real_parent, tgid));
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_clone")
int sec_clone_exit_tp(void *ctx) { return doomed_child(SEC_MECH_PROCS_CHILD_KILL); }

SEC("tracepoint/syscalls/sys_exit_clone3")
int sec_clone3_exit_tp(void *ctx) { return doomed_child(SEC_MECH_PROCS_CHILD_KILL); }

SEC("tracepoint/syscalls/sys_exit_fork")
int sec_fork_exit_tp(void *ctx) { return doomed_child(SEC_MECH_PROCS_CHILD_KILL); }

SEC("tracepoint/syscalls/sys_exit_vfork")
int sec_vfork_exit_tp(void *ctx) { return doomed_child(SEC_MECH_PROCS_CHILD_KILL); }

/*
 * A process's entry goes with its last thread, whichever that is: do_exit() has counted this one
 * out of signal->live before the tracepoint (every kernel since 5.10), so 0 means the group is
 * dead. Keyed by "the leader exits" (pid == tgid) as it was, a selected process whose main thread
 * called SYS_exit (pthread_exit) lost its selection while its other threads ran on: a shell from
 * one of them was not denied (controller.test.ts, "selects by executable").
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(sec_exit_tp, struct task_struct *p)
{
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	__u32 tgid = BPF_CORE_READ(p, tgid);
	/* lookup first: it is lock-free, a delete takes the bucket's lock, and most exits are not ours */
	if (bpf_map_lookup_elem(&procs, &tgid))
		bpf_map_delete_elem(&procs, &tgid);
	/* a marked child always passes its syscall exit first; this only keeps a mark from outliving it */
	if (bpf_map_lookup_elem(&doomed, &tgid))
		bpf_map_delete_elem(&doomed, &tgid);
	return 0;
}

/*
 * Since 6.12 the verifier checks that an LSM program's return value, all 64 bits of r0, lies in
 * [-4095, 0], and it must be able to prove it. clang computes `-EPERM` as a 32-bit negation of the
 * flag bit (EPERM is 1), which zero-extends out of range; and an earlier hook's verdict arrives as
 * an int of unknown range. So these programs return long, read their arguments from ctx, return a
 * -EPERM the compiler cannot fold (barrier_var), and turn an earlier denial into -EPERM.
 */
static __always_inline long lsm_deny(void)
{
	long rc = -EPERM;

	barrier_var(rc);
	return rc;
}

/*
 * argv[0] as the exec's caller passed it, for the event of an exec refused at bprm_check: the new
 * image's arguments are in an mm no task runs yet, but bprm_check comes before the point of no
 * return, so the caller's own memory, and the argv array its execve/execveat named, is still
 * current's. Kernels without bpf_task_pt_regs (before 5.15) leave it empty, as does an ia32 task.
 */
static __always_inline void caller_argv0(char *dst, __u32 len)
{
#if defined(__TARGET_ARCH_x86)
	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		return;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs)
		return;
	long nr = regs->orig_ax;
	/* execve(path, argv, envp) = 59, execveat(dirfd, path, argv, envp, flags) = 322 */
	unsigned long argv = nr == 59 ? regs->si : nr == 322 ? regs->dx : 0;
	const char *a0 = NULL;
	if (argv && !bpf_probe_read_user(&a0, sizeof(a0), (void *)argv) && a0)
		bpf_probe_read_user_str(dst, len, a0);
#endif
}

SEC("lsm/bprm_check_security")
long sec_exec_lsm(unsigned long long *ctx)
{
	LAB_VARIANT_MARK(); /* the exec programs differ in a -DLAB_VARIANT build */
	struct linux_binprm *bprm = (struct linux_binprm *)ctx[0];
	int ret = (int)ctx[1];
	struct selected s = {};

	if (ret)
		return lsm_deny();
	if (!select_current(&s, true) || s.cfg->exec_mode != SEC_EXEC_LSM)
		return 0;
	/* called once per binfmt round: for a #! script first with the script, then the interpreter */
	struct file *f = BPF_CORE_READ(bprm, file);
	__u64 dev, ino;
	__u32 rule = exec_verdict(&s, f, &dev, &ino);
	if (!rule)
		return 0;
	struct sec_event *e = ev_begin(&s, rule, SEC_EV_EXEC, SEC_MECH_LSM_BPRM);
	if (e) {
		struct task_struct *t = (struct task_struct *)bpf_get_current_task();
		e->ppid = BPF_CORE_READ(t, real_parent, tgid);
		fill_exec_event(e, bprm, f, dev, ino);
		caller_argv0(e->argv0, sizeof(e->argv0));
		bpf_ringbuf_submit(e, 0);
	}
	if (s.pol->flags & SEC_F_ENFORCE)
		return lsm_deny();
	return 0;
}

/* ---------------------------------------------------------------- egress */

/*
 * connect/sendto to the unspecified address reaches this host: the kernel routes 0.0.0.0 (and
 * ::ffff:0.0.0.0) to 127.0.0.1 and :: to ::1. Looked up as given, a deny rule for loopback was
 * passed by naming the unspecified address instead. The rules are looked up for the loopback
 * address it stands for; the event keeps the address the process gave.
 */
static __always_inline bool loopback_for_unspecified(__u8 *a)
{
	__u64 hi, lo;

	__builtin_memcpy(&hi, a, 8);
	__builtin_memcpy(&lo, a + 8, 8);
	if (hi)
		return false;
	if (!lo) {
		a[15] = 1; /* :: → ::1 */
		return true;
	}
	if (a[8] || a[9] || a[10] != 0xff || a[11] != 0xff || a[12] || a[13] || a[14] || a[15])
		return false;
	a[12] = 127; /* ::ffff:0.0.0.0 → ::ffff:127.0.0.1 */
	a[15] = 1;
	return true;
}

static __always_inline __u32 egress_lookup(struct selected *s, struct sec_egress_key *k)
{
	__u8 proto = k->proto;
	__u16 port = k->port;

	k->slot = s->slot;
	k->prefixlen = SEC_EGRESS_KEY_HDR_BITS + 128;
	/* most specific first: proto+port, proto+any port, any proto+port, any */
#pragma unroll
	for (int i = 0; i < 4; i++) {
		k->proto = (i & 2) ? 0 : proto;
		k->port = (i & 1) ? 0 : port;
		if (i & 1 && port == 0)
			continue; /* port 0 is not a wildcard on the wire: never matched twice */
		struct sec_rule *r = bpf_map_lookup_elem(&egress_rules, k);
		if (r) {
			k->proto = proto;
			k->port = port;
			return r->action == SEC_ACTION_DENY ? r->rule_id : 0;
		}
	}
	k->proto = proto;
	k->port = port;
	if (s->pol->flags & SEC_F_EGRESS_ALLOWLIST)
		return s->pol->egress_rule;
	return 0;
}

static __always_inline __u32 egress_verdict(struct selected *s, struct sec_egress_key *k)
{
	__u8 given[16];
	bool swapped;
	__u32 rule;

	__builtin_memcpy(given, k->addr, 16);
	swapped = loopback_for_unspecified(k->addr);
	rule = egress_lookup(s, k);
	if (swapped)
		__builtin_memcpy(k->addr, given, 16);
	return rule;
}

/* 1 allow, 0 deny (the cgroup hook's contract: the syscall fails with EPERM) */
static __always_inline int egress_decide(struct selected *s, struct sec_egress_key *k, __u16 family, __u8 kind, __u8 mech)
{
	__u32 rule = egress_verdict(s, k);
	if (!rule)
		return 1;
	struct sec_event *e = ev_begin(s, rule, kind, mech);
	if (e) {
		ev_ppid_from_procs(e);
		e->family = family;
		e->proto = k->proto;
		e->dport = k->port;
		__builtin_memcpy(e->daddr, k->addr, 16);
		bpf_ringbuf_submit(e, 0);
	}
	return (s->pol->flags & SEC_F_ENFORCE) ? 0 : 1;
}

static __always_inline int sock4(struct bpf_sock_addr *ctx, __u8 kind, __u8 mech)
{
	struct selected s = {};
	struct sec_egress_key k = {};

	if (!select_current(&s, false))
		return 1;
	__u32 mapped = bpf_htonl(0xffff);
	__u32 ip = ctx->user_ip4;
	__builtin_memcpy(&k.addr[8], &mapped, 4);
	__builtin_memcpy(&k.addr[12], &ip, 4);
	k.proto = ctx->protocol;
	k.port = bpf_ntohs((__u16)ctx->user_port);
	return egress_decide(&s, &k, AF_INET, kind, mech);
}

static __always_inline int sock6(struct bpf_sock_addr *ctx, __u8 kind, __u8 mech)
{
	struct selected s = {};
	struct sec_egress_key k = {};

	if (!select_current(&s, false))
		return 1;
	__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
	__builtin_memcpy(&k.addr[0], &w0, 4);
	__builtin_memcpy(&k.addr[4], &w1, 4);
	__builtin_memcpy(&k.addr[8], &w2, 4);
	__builtin_memcpy(&k.addr[12], &w3, 4);
	k.proto = ctx->protocol;
	k.port = bpf_ntohs((__u16)ctx->user_port);
	return egress_decide(&s, &k, AF_INET6, kind, mech);
}

SEC("cgroup/connect4")
int sec_connect4(struct bpf_sock_addr *ctx) { return sock4(ctx, SEC_EV_CONNECT, SEC_MECH_CGROUP_CONNECT4); }

SEC("cgroup/connect6")
int sec_connect6(struct bpf_sock_addr *ctx) { return sock6(ctx, SEC_EV_CONNECT, SEC_MECH_CGROUP_CONNECT6); }

SEC("cgroup/sendmsg4")
int sec_sendmsg4(struct bpf_sock_addr *ctx) { return sock4(ctx, SEC_EV_SENDMSG, SEC_MECH_CGROUP_SENDMSG4); }

SEC("cgroup/sendmsg6")
int sec_sendmsg6(struct bpf_sock_addr *ctx) { return sock6(ctx, SEC_EV_SENDMSG, SEC_MECH_CGROUP_SENDMSG6); }

/* ---------------------------------------------------------------- source routing */

/*
 * Source routing: a packet sent with a routing header (IPv6) or a loose/strict source route
 * option (IPv4) goes to the route's first hop, while connect and sendmsg are shown the final
 * address: under an allowlist that allows the final one, the payload went to any address named
 * as a hop (seen on lo: sendto 2001:db8::1 left for ::1). None of it needs privilege on the
 * kernels in the lab, except IPv4's where a 2026 stable fix made the kernel refuse it (5.10 still
 * takes it). It is set on the socket (setsockopt IPV6_RTHDR, IPV6_2292PKTOPTIONS, IP_OPTIONS) or
 * per message (sendmsg cmsg IPV6_RTHDR / IPV6_2292RTHDR, IP_RETOPTS; Debian's kernels take a
 * type 2 header there). Refused like raw sockets: at setsockopt (cgroup/setsockopt), and where
 * BPF LSM attaches at every send and connect, which checks the socket's options and the message's.
 */

/*
 * An IPv4 option list (at most 40 bytes, as the kernel takes it) that holds a source route. Walked
 * by byte position, not by a pointer that jumps from option to option: the verifier then follows
 * one path per position instead of one per way of getting there (that ran it out of budget).
 */
static __always_inline bool ip_opts_srr(const __u8 *b, __u32 n)
{
	__u32 next = 0;

	for (__u32 k = 0; k < IP_OPTS_MAX; k++) {
		if (k >= n)
			break;
		if (k != next)
			continue;
		__u8 t = b[k];
		if (t == IPOPT_END)
			break;
		if (t == IPOPT_LSRR || t == IPOPT_SSRR)
			return true;
		if (t == IPOPT_NOOP) {
			next = k + 1;
			continue;
		}
		if (k + 1 >= IP_OPTS_MAX)
			break;
		__u8 l = b[k + 1];
		if (l < 2)
			break;
		next = k + l;
	}
	return false;
}

/* 1 allow, 0 deny; emits the event for a denial (or would-block in log mode) */
static __always_inline int route_decide(struct selected *s, __u32 family, __u32 opt, bool cmsg, __u8 mech)
{
	if (!(s->pol->flags & SEC_F_DENY_RAW))
		return 1;
	struct sec_event *e = ev_begin(s, s->pol->raw_rule, SEC_EV_SOCKOPT, mech);
	if (e) {
		ev_ppid_from_procs(e);
		e->family = family;
		e->optname = opt;
		e->call = cmsg ? SEC_OPT_CMSG : SEC_OPT_SOCKET;
		bpf_ringbuf_submit(e, 0);
	}
	return (s->pol->flags & SEC_F_ENFORCE) ? 0 : 1;
}

/* level << 16 | option of the source route the socket's own options hold, or 0 */
static __always_inline __u32 sticky_source_route(struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (family != AF_INET && family != AF_INET6)
		return 0;
	struct inet_sock *inet = (struct inet_sock *)sk;
	struct ip_options_rcu *o = BPF_CORE_READ(inet, inet_opt);
	if (o && BPF_CORE_READ(o, opt.srr)) /* an IPv6 socket sends to v4-mapped peers with these too */
		return SOL_IP << 16 | IP_OPTIONS;
	if (family == AF_INET6) {
		struct ipv6_pinfo *np = BPF_CORE_READ(inet, pinet6);
		struct ipv6_txoptions *t = np ? BPF_CORE_READ(np, opt) : NULL;
		if (t && BPF_CORE_READ(t, srcrt))
			return SOL_IPV6 << 16 | IPV6_RTHDR;
	}
	return 0;
}

/* Defence in depth where BPF LSM attaches: runs before the cgroup hook, for every connect(2). */
SEC("lsm/socket_connect")
long sec_connect_lsm(unsigned long long *ctx)
{
	struct socket *sock = (struct socket *)ctx[0];
	struct sockaddr *address = (struct sockaddr *)ctx[1];
	int ret = (int)ctx[3];
	struct selected s = {};
	struct sec_egress_key k = {};
	__u16 family;

	if (ret)
		return lsm_deny();
	if (!select_current(&s, true))
		return 0;
	family = BPF_CORE_READ(address, sa_family);
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)address;
		__u32 mapped = bpf_htonl(0xffff);
		__u32 ip = BPF_CORE_READ(a, sin_addr.s_addr);
		__builtin_memcpy(&k.addr[8], &mapped, 4);
		__builtin_memcpy(&k.addr[12], &ip, 4);
		k.port = bpf_ntohs(BPF_CORE_READ(a, sin_port));
	} else if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)address;
		BPF_CORE_READ_INTO(&k.addr, a, sin6_addr.in6_u.u6_addr8);
		k.port = bpf_ntohs(BPF_CORE_READ(a, sin6_port));
	} else {
		return 0;
	}
	k.proto = BPF_CORE_READ(sock, sk, sk_protocol);
	if (!egress_decide(&s, &k, family, SEC_EV_CONNECT, SEC_MECH_LSM_CONNECT))
		return lsm_deny();
	/* a source route on the socket sends the SYN to its first hop (see sticky_source_route) */
	__u32 opt = (s.pol->flags & SEC_F_DENY_RAW) ? sticky_source_route(BPF_CORE_READ(sock, sk)) : 0;
	if (opt && !route_decide(&s, family, opt, false, SEC_MECH_LSM_CONNECT))
		return lsm_deny();
	return 0;
}

/* ---------------------------------------------------------------- raw and packet sockets */

/*
 * Packet paths that bypass connect/sendmsg: raw IP (inet families), packet sockets, and ICMP
 * datagram ("ping") sockets, whose sendto the kernel never shows the cgroup sendmsg hooks (only
 * their connect): open to every user where ping_group_range allows it (systemd's default), an
 * echo's payload went to any address past an egress allowlist. SCTP and DCCP, modules any user
 * loads by opening a socket: SCTP's connectx (a setsockopt) and its sendto to a new peer (an
 * association set up by the send) reached a port the allowlist did not allow in the 6.1 guest, no
 * cgroup hook running; DCCP's connect has no cgroup hook either (its proto has no pre_connect).
 * socket(AF_INET, SOCK_SEQPACKET, 0) is SCTP, SOCK_DCCP is DCCP, whatever the protocol given (LSM
 * sees the arguments, cgroup/sock_create the socket made). Every other family that is not local
 * to the machine is a path no egress hook sees either: AF_VSOCK reaches the hypervisor's host
 * (opened as nobody on this lab's host, a Firecracker guest), and the Debian guests let any user
 * open AppleTalk datagram, PPPoX, Bluetooth, NFC, KCM, QIPCRTR and SMC sockets (modules loaded on
 * demand). So only the local families stay allowed besides inet: unix, netlink (glibc's
 * getaddrinfo uses its SOCK_RAW) and alg (the kernel's crypto API).
 */
#define AF_UNIX 1
#define AF_NETLINK 16
#define AF_ALG 38
static __always_inline bool raw_or_packet(__u32 family, __u32 type, __u32 proto)
{
	type &= 0xf; /* SOCK_NONBLOCK / SOCK_CLOEXEC live in the high bits */
	if (family == AF_PACKET || type == SOCK_PACKET)
		return true;
	if (family != AF_INET && family != AF_INET6)
		return family != AF_UNIX && family != AF_NETLINK && family != AF_ALG;
	if (proto == IPPROTO_SCTP || proto == IPPROTO_DCCP || type == SOCK_SEQPACKET || type == SOCK_DCCP)
		return true;
	if (type == SOCK_DGRAM)
		return (family == AF_INET && proto == IPPROTO_ICMP) || (family == AF_INET6 && proto == IPPROTO_ICMPV6);
	return type == SOCK_RAW;
}

/* 1 allow, 0 deny; emits the event for a denial (or would-block in log mode) */
static __always_inline int socket_decide(struct selected *s, __u32 family, __u32 type, __u32 proto, __u8 mech)
{
	if (!(s->pol->flags & SEC_F_DENY_RAW) || !raw_or_packet(family, type, proto))
		return 1;
	struct sec_event *e = ev_begin(s, s->pol->raw_rule, SEC_EV_SOCKET, mech);
	if (e) {
		ev_ppid_from_procs(e);
		e->family = family;
		e->proto = proto;
		e->sock_type = type & 0xf;
		bpf_ringbuf_submit(e, 0);
	}
	return (s->pol->flags & SEC_F_ENFORCE) ? 0 : 1;
}

SEC("cgroup/sock_create")
int sec_sock_create(struct bpf_sock *ctx)
{
	struct selected s = {};

	if (!select_current(&s, false))
		return 1;
	return socket_decide(&s, ctx->family, ctx->type, ctx->protocol, SEC_MECH_CGROUP_SOCK_CREATE);
}

SEC("lsm/socket_create")
long sec_socket_lsm(unsigned long long *ctx)
{
	int family = (int)ctx[0], type = (int)ctx[1], protocol = (int)ctx[2], kern = (int)ctx[3];
	int ret = (int)ctx[4];
	struct selected s = {};

	if (ret)
		return lsm_deny();
	if (kern || !select_current(&s, true))
		return 0;
	if (!socket_decide(&s, family, type, protocol, SEC_MECH_LSM_SOCKET_CREATE))
		return lsm_deny();
	return 0;
}

/*
 * Fallback for packet sockets and the other non-inet families where BPF LSM is missing
 * (cgroup/sock_create never sees them). The SIGKILL is delivered on the return from socket(2), so
 * the descriptor never reaches user space. io_uring's IORING_OP_SOCKET, which creates sockets
 * without this syscall, is caught at its submission (below).
 */
SEC("tracepoint/syscalls/sys_enter_socket")
int sec_socket_tp(struct trace_event_raw_sys_enter *ctx)
{
	struct sec_config *cfg = get_config();
	struct selected s = {};
	__u32 family = (__u32)ctx->args[0], type = (__u32)ctx->args[1];

	/* inet families are denied with EPERM by cgroup/sock_create; LSM, where attached, covers all.
	 * socket(AF_INET, SOCK_PACKET) is turned into AF_PACKET by the kernel: that one is ours. */
	if (!cfg || cfg->lsm_socket)
		return 0;
	if ((family == AF_INET || family == AF_INET6) && (type & 0xf) != SOCK_PACKET)
		return 0;
	if (!raw_or_packet(family, type, (__u32)ctx->args[2]) || !select_current(&s, true))
		return 0;
	if (!socket_decide(&s, family, type, (__u32)ctx->args[2], SEC_MECH_TP_SOCKET_KILL))
		bpf_send_signal(SIGKILL);
	return 0;
}

/*
 * io_uring's IORING_OP_SOCKET (5.19+) makes a socket without socket(2), so where BPF LSM is missing
 * the tracepoint above never sees it (a vsock socket came through that way on this lab's host). The
 * submission tracepoint fires after the request's prep has read the SQE (domain, type and protocol
 * in struct io_socket, which overlays the start of the request) and before it is issued; the
 * SIGKILL is delivered when the submitter returns to user space from io_uring_enter, before it
 * reads the completion that names the descriptor. With SQPOLL the submitter is the ring's thread
 * of the process, and the kill still reaches the whole process. Inet families are refused by
 * cgroup/sock_create inside the operation itself.
 */
static __always_inline int io_uring_socket(struct io_kiocb *req)
{
	struct sec_config *cfg = get_config();
	struct selected s = {};

	if (!cfg || cfg->lsm_socket)
		return 0;
	if (BPF_CORE_READ(req, opcode) != bpf_core_enum_value(enum io_uring_op, IORING_OP_SOCKET))
		return 0;
	struct io_socket *op = (struct io_socket *)req;
	__u32 family = BPF_CORE_READ(op, domain), type = BPF_CORE_READ(op, type), proto = BPF_CORE_READ(op, protocol);
	if ((family == AF_INET || family == AF_INET6) && (type & 0xf) != SOCK_PACKET)
		return 0;
	if (!raw_or_packet(family, type, proto) || !select_current(&s, true))
		return 0;
	if (!socket_decide(&s, family, type, proto, SEC_MECH_TP_IO_URING_KILL))
		bpf_send_signal(SIGKILL);
	return 0;
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(sec_io_uring_socket, struct io_kiocb *req) { return io_uring_socket(req); }

/* the same tracepoint's name from 5.19 (IORING_OP_SOCKET's first kernel) to 6.3 */
SEC("tp_btf/io_uring_submit_sqe")
int BPF_PROG(sec_io_uring_socket_sqe, struct io_kiocb *req, bool force_nonblock) { return io_uring_socket(req); }

/*
 * Whether a setsockopt of a selected process sets a source route (1 allow, 0 deny). ctx holds what
 * the programs before this one in the cgroup chain left (another controller's, or this one's
 * attached lower down): optlen is the caller's length, a new value's, 0 for "the caller's value"
 * or -1 for "nothing is applied". Taken as the caller's length, a 0 from a program ahead (this
 * program used to set it on every call) let a source route through unexamined. With a positive
 * optlen the kernel applies the buffer judged here; with 0 it reads the caller's memory again
 * after the programs, where a second thread may have changed it since: so a value let through
 * with 0 goes on as the copy judged here, or as nothing.
 */
static __always_inline int sockopt_route(struct bpf_sockopt *ctx, struct selected *s)
{
	int level = ctx->level, optname = ctx->optname, optlen = ctx->optlen;
	__u8 opts[IP_OPTS_MAX] = {};
	__u8 *p = ctx->optval, *end = ctx->optval_end;
	/* the buffer: the caller's value, at least 16 bytes whatever its length (zeros past it);
	 * pointers subtract in a privileged program */
	__u64 avail = (__u64)end - (__u64)p;
	bool v4 = level == SOL_IP && optname == IP_OPTIONS;

	if (!v4 && (level != SOL_IPV6 || (optname != IPV6_RTHDR && optname != IPV6_2292PKTOPTIONS)))
		return 1;
	if (optlen < 0) /* not applied */
		return 1;
	if (v4) {
		/* the bytes the kernel takes; past IP_OPTS_MAX it refuses the call */
		__u64 n = optlen > 0 ? (__u64)optlen : avail;
		if (n > IP_OPTS_MAX)
			n = IP_OPTS_MAX;
		if (p + n > end || bpf_probe_read_kernel(opts, n, p))
			return 1;
		if (ip_opts_srr(opts, n))
			goto refuse;
		/* options, with 0: the copy judged here (zeros past the caller's value are END options,
		 * the same options). Led by END it is empty: a caller's 0 clears the options, and
		 * only a program ahead that set 0 leaves the kernel's second read open to a swap */
		if (optlen == 0 && avail <= IP_OPTS_MAX && opts[0] != IPOPT_END)
			ctx->optlen = avail;
		return 1;
	}
	/*
	 * IPv6, with 0: a value led by 8 zero bytes sets no route (a routing header or a cmsg that
	 * long is malformed; an empty one clears the option). Over 16 bytes the caller's value was
	 * longer than that (a program ahead set 0): applied as nothing, not read again. The kernel's
	 * second read of a value of 16 bytes or less cannot hold a route (24 bytes at least).
	 */
	if (optlen == 0 && p + 8 <= end && !*(__u64 *)p) {
		if (avail > 16)
			ctx->optlen = -1;
		return 1;
	}
refuse:
	/* IPV6_2292PKTOPTIONS: sticky options as a cmsg list, a routing header among them; refused
	 * whole (the old API; nothing needs it that the per-option calls do not do) */
	return route_decide(s, v4 ? AF_INET : AF_INET6, level << 16 | optname, false, SEC_MECH_CGROUP_SETSOCKOPT);
}

SEC("cgroup/setsockopt")
int sec_setsockopt(struct bpf_sockopt *ctx)
{
	struct selected s = {};
	int verdict = 1;

	/* selected first, for every call, on one path: several ways into the selection's cgroup walk
	 * took the verifier past its budget; setsockopt is no hot path */
	if (select_current(&s, false) && (s.pol->flags & SEC_F_DENY_RAW))
		verdict = sockopt_route(ctx, &s);
	/* a value longer than the buffer shown (over a page) goes on as "the caller's value": left as
	 * it came it failed the call with EFAULT on older kernels */
	int optlen = ctx->optlen;
	__u8 *p = ctx->optval, *end = ctx->optval_end;
	if (optlen > 0 && (optlen > 0xffff || p + optlen > end))
		ctx->optlen = 0;
	return verdict;
}

#define CMSG_MAX 16

struct cmsg_head {
	__u64 len;
	int level;
	int type;
};

static __always_inline long read_ctl(void *dst, __u64 n, const void *src, bool user)
{
	return user ? bpf_probe_read_user(dst, n, src) : bpf_probe_read_kernel(dst, n, src);
}

/*
 * level << 16 | type of the first control message that source-routes this message, SEC_OPT_CMSG_TOO_MANY
 * past CMSG_MAX messages (not looked at: refused rather than let through), or 0. Walked as the
 * kernel walks them (8-byte aligned; a malformed one ends the list: the kernel fails the call).
 */
static __always_inline __u32 cmsg_source_route(struct msghdr *msg)
{
	const __u8 *ctl = BPF_CORE_READ(msg, msg_control);
	__u64 len = BPF_CORE_READ(msg, msg_controllen), off = 0;
	bool user = false;

	if (bpf_core_field_exists(msg->msg_control_is_user))
		user = BPF_CORE_READ_BITFIELD_PROBED(msg, msg_control_is_user);
	if (!ctl)
		return 0;
	for (int i = 0; i < CMSG_MAX; i++) {
		struct cmsg_head h;
		if (off + sizeof(h) > len)
			return 0;
		if (read_ctl(&h, sizeof(h), ctl + off, user))
			return 0;
		if (h.len < sizeof(h) || h.len > len - off)
			return 0;
		if (h.level == SOL_IPV6 && (h.type == IPV6_RTHDR || h.type == IPV6_2292RTHDR))
			return SOL_IPV6 << 16 | h.type;
		/* IPv4 options for this message alone: refused whole, like IPV6_2292PKTOPTIONS (walking
		 * them for a source route inside this walk took 5.10's verifier past its budget) */
		if (h.level == SOL_IP && h.type == IP_RETOPTS && h.len > sizeof(h))
			return SOL_IP << 16 | IP_RETOPTS;
		off += (h.len + 7) & ~7ULL;
	}
	return off + sizeof(struct cmsg_head) <= len ? SEC_OPT_CMSG_TOO_MANY : 0;
}

/*
 * every send on a socket (sendmsg, sendto, send, write; io_uring's too): the message's control
 * messages and the socket's own options. A send with neither (no control messages, no source route
 * on the socket) has nothing this program refuses, whoever sends it: it returns before the
 * selection (select_current's cgroup walk: reads and map lookups) and the control-message walk.
 * Every send of every process pays this program: on a 16-byte connected UDP send in the 6.1 guest
 * (TCG) it takes 621 ns per run for a process not selected and 683 ns for a selected one, about 5%
 * of the send (pnpm lab bench security --kernel 6.1 --ops sendto,send,tcp-send; reports/
 * 20261205-030840-security-6.1). Without the early return it was 0.9 and 1.4-1.9 µs, 8.5% and up to
 * 17% (runs of the same bench that were not kept).
 */
SEC("lsm/socket_sendmsg")
long sec_sendmsg_lsm(unsigned long long *ctx)
{
	struct socket *sock = (struct socket *)ctx[0];
	struct msghdr *msg = (struct msghdr *)ctx[1];
	int ret = (int)ctx[3];
	struct selected s = {};
	__u32 opt = 0, sticky;
	bool cmsg = false;

	if (ret)
		return lsm_deny();
	struct sock *sk = BPF_CORE_READ(sock, sk);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	/* cmsg_source_route finds nothing in an empty control buffer either: it is only not walked */
	bool ctl = BPF_CORE_READ(msg, msg_controllen) != 0;
	sticky = sticky_source_route(sk);
	if (!ctl && !sticky)
		return 0;
	if (!select_current(&s, true) || !(s.pol->flags & SEC_F_DENY_RAW))
		return 0;
	if (ctl) {
		opt = cmsg_source_route(msg);
		cmsg = opt != 0;
	}
	if (!opt)
		opt = sticky;
	if (opt && !route_decide(&s, family, opt, cmsg, SEC_MECH_LSM_SENDMSG))
		return lsm_deny();
	return 0;
}

/*
 * Where BPF LSM is missing, a source route set past cgroup/setsockopt (a 32-bit setsockopt, a
 * 32-bit ring's setsockopt command) is judged after the fact: the setter is killed at that call's
 * exit or completion. A send already on its way then still leaves: an SQE linked to the command
 * (IOSQE_IO_LINK) is issued as the command completes, before the kill lands on the way back to
 * user space (the attack ipv6-routing-header-uring32-linked got its datagram out so), and another
 * thread's send may slip between the setsockopt and its exit; a route given per message (a
 * control message) no cgroup hook sees at all. This last line judges the packet: one that carries
 * a routing header (IPv6) or a loose/strict source route option (IPv4), from a socket in a cgroup
 * an enforcing policy that denies raw sockets and source routes selects, is dropped (the send
 * fails with EPERM). It selects by the socket's cgroup first: no task is at hand here on every
 * kernel (a TCP segment may leave from a timer), so a policy's uid does not narrow that (the other
 * users of its cgroup lose their source-routed packets too: it fails closed). Where that finds no
 * policy that denies routes, the task sending is judged (cgroup, executable, uid: guard_sender_judge)
 * and a denial kept with the socket for its packets from softirq (guard_socks). Every dropped
 * packet writes an event (in log mode, where the packet passes, one would-block event per socket):
 * its uid is the socket's; its cgroup the socket's, or the sender's where the sender was judged;
 * its pid and comm the current task's only where that task sits in that cgroup.
 * That is the sender for a datagram or a connect's SYN, sent in its syscall; a TCP segment sent
 * from softirq (a retransmission, an ACK-clocked send) names the task of that cgroup it
 * interrupted, which need not be the sender, or else 0. Every packet the machine sends passes
 * it; one without IP options or extension headers returns at the first load.
 */
#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ROUTING_ 43
#define IPPROTO_DSTOPTS_ 60
#define IPOPT_LSRR_ 0x83
#define IPOPT_SSRR_ 0x89

/* the option a source route in this packet is set with (level << 16 | option), or 0 */
static __always_inline __u32 skb_source_route(struct __sk_buff *skb)
{
	__u8 b[2];
	/* the first word of the IP header, read in place where it is in the linear data (a local
	 * packet's always is): IPv4's IHL, IPv6's next header are all most packets need to look at */
	__u8 *data = (__u8 *)(long)skb->data;
	bool direct = data + 8 <= (__u8 *)(long)skb->data_end;

	if (skb->protocol == bpf_htons(0x86DD)) {
		__u8 nh;
		__u32 off = 40;
		if (direct)
			nh = data[6];
		else if (bpf_skb_load_bytes(skb, 6, &nh, 1))
			return 0;
		/* the routing header may follow hop-by-hop and destination options (RFC 8200 §4.1) */
		for (int i = 0; i < 4; i++) {
			if (nh == IPPROTO_ROUTING_)
				return SOL_IPV6 << 16 | IPV6_RTHDR;
			if (nh != IPPROTO_HOPOPTS_ && nh != IPPROTO_DSTOPTS_)
				return 0;
			if (bpf_skb_load_bytes(skb, off, b, 2))
				return 0;
			nh = b[0];
			off += ((__u32)b[1] + 1) * 8;
		}
		return 0;
	}
	if (skb->protocol != bpf_htons(0x0800))
		return 0;
	if (direct)
		b[0] = data[0];
	else if (bpf_skb_load_bytes(skb, 0, b, 1))
		return 0;
	__u32 end = (__u32)(b[0] & 0xf) * 4;
	if (end <= 20)
		return 0;
	/* options: EOL ends them, NOP is one byte, every other one is type, length, data */
	__u32 off = 20;
	for (int i = 0; i < 20 && off + 1 < end; i++) {
		if (bpf_skb_load_bytes(skb, off, b, 2))
			return 0;
		if (b[0] == 0)
			return 0;
		if (b[0] == IPOPT_LSRR_ || b[0] == IPOPT_SSRR_)
			return SOL_IP << 16 | IP_OPTIONS;
		off += b[0] == 1 ? 1 : (b[1] < 2 ? 40 : b[1]);
	}
	return 0;
}

/* a socket's guard_socks entry (flags: BPF_SK_STORAGE_GET_F_CREATE to make one), NULL for none or no full socket */
static __always_inline struct sec_guard_sock *guard_sock(struct __sk_buff *skb, __u64 flags)
{
	struct bpf_sock *sk = skb->sk;
	if (sk)
		sk = bpf_sk_fullsock(sk);
	return sk ? bpf_sk_storage_get(&guard_socks, sk, 0, flags) : NULL;
}

/* in route_guard_event's `opt`: the packet was judged by its sender's policy, not its socket's cgroup */
#define GUARD_BY_SENDER 0x80000000u

/* a policy slot's record, if that policy is in force and denies source routes (rawSockets: deny) */
static __always_inline struct sec_policy *route_denier(__u32 slot)
{
	struct sec_policy *pol = bpf_map_lookup_elem(&policies, &slot);
	return pol && pol->id && (pol->flags & SEC_F_DENY_RAW) ? pol : NULL;
}

/*
 * The slot + 1 of a policy that denies source routes and selects the task sending, 0 for none
 * (sec_route_guard's look past the socket's cgroup): select_current through CO-RE reads, since
 * 5.10 refuses the get_current_* helpers in cgroup_skb. In process context that is the sender (a
 * datagram, a connect's SYN, data its write pushes out); in softirq, whatever task was interrupted.
 * A denial is kept with the socket (guard_socks), for its packets from any context. A global
 * function, verified once: inlined beside the guard's walk of the socket's cgroups, the verifier
 * gave up (E2BIG).
 */
__noinline int guard_sender_judge(struct __sk_buff *skb)
{
	struct sec_config *cfg = get_config();
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u64 sender_cg = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
	__u64 sel_cg = 0;
	__u32 tgid = 0;
	__u32 slot = 0;

	if (!skb || !cfg)
		return 0;
	__u32 *slotp = cfg->cg_levels ? cg_slot_walk_at(cfg->cg_levels, &sel_cg) : NULL;
	if (slotp) {
		slot = *slotp;
	} else if (cfg->have_exe_selectors) {
		tgid = BPF_CORE_READ(t, tgid);
		struct sec_proc *p = bpf_map_lookup_elem(&procs, &tgid);
		if (p) {
			if (!p->slot)
				return 0;
			slot = p->slot - 1;
		} else {
			__u32 *mark = marked_child(tgid);
			if (!mark)
				return 0;
			slot = *mark - 1;
		}
	} else {
		return 0;
	}
	struct sec_policy *pol = route_denier(slot);
	if (!pol)
		return 0;
	if (pol->uid != SEC_ANY_UID && BPF_CORE_READ(t, cred, uid.val) != pol->uid)
		return 0;
	struct sec_guard_sock *gs = guard_sock(skb, BPF_SK_STORAGE_GET_F_CREATE);
	if (gs) {
		gs->sel_cgroup = sel_cg;
		gs->sender_cgroup = sender_cg;
		gs->tgid = tgid;
	}
	return slot + 1;
}

/* the slot + 1 of the policy a kept judgement (guard_socks) names now, if it denies source routes */
__noinline int guard_kept_slot(struct __sk_buff *skb)
{
	if (!skb)
		return 0;
	struct sec_guard_sock *gs = guard_sock(skb, 0);
	__u32 *slotp = NULL;
	__u32 slot = 0;
	if (!gs)
		return 0;
	if (gs->sel_cgroup) {
		__u64 id = gs->sel_cgroup;
		slotp = bpf_map_lookup_elem(&cg_sel, &id);
		if (!slotp)
			return 0;
		slot = *slotp;
	} else {
		__u32 tgid = gs->tgid;
		struct sec_proc *p = bpf_map_lookup_elem(&procs, &tgid);
		if (p && p->slot) {
			slot = p->slot - 1;
		} else {
			__u32 *mark = p ? NULL : marked_child(tgid);
			if (!mark)
				return 0;
			slot = *mark - 1;
		}
	}
	return route_denier(slot) ? slot + 1 : 0;
}

/* a global function: verified once on its own. Inlined, the verifier walked the task reads once per
 * path through the header walk and the cgroup walk above it and gave up (1M instructions). */
__noinline int route_guard_event(struct __sk_buff *skb, __u32 policy_id, __u32 rule_id, __u32 enforce, __u32 opt)
{
	if (!skb)
		return 0;
	struct sec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		lab_count(&lost);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = bpf_skb_cgroup_id(skb);
	e->uid = bpf_get_socket_uid(skb);
	/* the task through CO-RE reads: 5.10 refuses the get_current_{pid_tgid,comm,cgroup_id} helpers
	 * in cgroup_skb (EINVAL), bpf_get_current_task it allows */
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u64 task_cg = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
	/* judged by its sender (GUARD_BY_SENDER): the sender's cgroup as guard_socks keeps it, and its
	 * pid and comm where the current task is in that cgroup */
	if (opt & GUARD_BY_SENDER) {
		struct sec_guard_sock *gs = guard_sock(skb, 0);
		e->cgroup_id = gs ? gs->sender_cgroup : task_cg;
	}
	opt &= ~GUARD_BY_SENDER;
	if (task_cg == e->cgroup_id) {
		e->pid = BPF_CORE_READ(t, tgid);
		BPF_CORE_READ_INTO(&e->comm, t, comm);
		ev_ppid_from_procs(e);
	}
	e->policy_id = policy_id;
	e->rule_id = rule_id;
	e->kind = SEC_EV_SOCKOPT;
	e->mech = SEC_MECH_CGROUP_SKB_ROUTE;
	e->action = enforce ? SEC_BLOCKED : SEC_WOULD_BLOCK;
	e->family = skb->protocol == bpf_htons(0x86DD) ? AF_INET6 : AF_INET;
	e->optname = opt;
	e->call = SEC_OPT_IN_PACKET;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("cgroup_skb/egress")
int sec_route_guard(struct __sk_buff *skb)
{
	struct sec_config *cfg = get_config();
	__u32 opt;

	if (!cfg || !(cfg->cg_levels || cfg->have_exe_selectors) || !(opt = skb_source_route(skb)))
		return 1;
	__u32 levels = cfg->cg_levels;
	/*
	 * cg_slot_helper's walk with the socket's ancestors instead of the task's: not shared through
	 * a "skb or not" argument, since clang kept the other helper's call behind the test, and 5.10
	 * refuses bpf_get_current_ancestor_cgroup_id in a cgroup_skb program even where it never runs
	 */
	__u32 *slot = NULL;
	for (int l = 15; l >= 0; l--) { /* deepest first, as cg_slot_helper */
		if (!(levels & ((2u << l) - 1)))
			break;
		if (!(levels & (1u << l)))
			continue;
		__u64 id = bpf_skb_ancestor_cgroup_id(skb, l);
		slot = bpf_map_lookup_elem(&cg_sel, &id);
		if (slot)
			break;
	}
	/* out of the loop: the verifier then walks the event's code once, not once per path through it */
	struct sec_policy *pol = slot ? bpf_map_lookup_elem(&policies, slot) : NULL;
	if (!pol || !pol->id || !(pol->flags & SEC_F_DENY_RAW)) {
		/*
		 * No selected cgroup holds the socket under a policy that denies routes: its sender may be
		 * under one. A socket made before its process was selected or handed to it, a process
		 * selected by executable, and on 5.10 every socket once net_cls or net_prio (cgroup v1)
		 * is in use: the kernel then stops matching sockets to cgroup2 and files them all under
		 * the root. A judgement kept with the socket first (its packets from softirq), else the
		 * task sending.
		 */
		int by = guard_kept_slot(skb);
		if (by <= 0)
			by = guard_sender_judge(skb);
		__u32 s = by > 0 ? by - 1 : 0;
		pol = by > 0 ? bpf_map_lookup_elem(&policies, &s) : NULL;
		if (pol)
			opt |= GUARD_BY_SENDER;
	}
	if (!pol || !pol->id || !(pol->flags & SEC_F_DENY_RAW))
		return 1;
	__u32 enforce = pol->flags & SEC_F_ENFORCE;
	if (!enforce) {
		__u64 cookie = bpf_get_socket_cookie(skb);
		__u8 one = 1;
		if (bpf_map_update_elem(&guard_logged, &cookie, &one, BPF_NOEXIST))
			return 1; /* reported already */
	}
	route_guard_event(skb, pol->id, pol->raw_rule, enforce, opt);
	return enforce ? 0 : 1;
}

/* ---------------------------------------------------------------- other processes */

/* 1 allow, 0 deny; emits the event for a denial (or would-block in log mode) */
static __always_inline int ptrace_decide(struct selected *s, __u32 target, __u32 call, __u8 mech)
{
	if (!(s->pol->flags & SEC_F_DENY_PTRACE))
		return 1;
	struct sec_event *e = ev_begin(s, s->pol->ptrace_rule, SEC_EV_PTRACE, mech);
	if (e) {
		ev_ppid_from_procs(e);
		e->target = target;
		e->call = call;
		bpf_ringbuf_submit(e, 0);
	}
	return (s->pol->flags & SEC_F_ENFORCE) ? 0 : 1;
}

/* Every attach-mode access asks this hook; a process's access to its own thread group never does. */
SEC("lsm/ptrace_access_check")
long sec_ptrace_lsm(unsigned long long *ctx)
{
	struct task_struct *child = (struct task_struct *)ctx[0];
	unsigned int mode = (unsigned int)ctx[1];
	int ret = (int)ctx[2];
	struct selected s = {};

	if (ret)
		return lsm_deny();
	if (!(mode & PTRACE_MODE_ATTACH) || !select_current(&s, true))
		return 0;
	if (!ptrace_decide(&s, BPF_CORE_READ(child, tgid), 0, SEC_MECH_LSM_PTRACE))
		return lsm_deny();
	return 0;
}

/* the caller's tgid as its own pid namespace numbers it (what getpid() returns there) */
static __always_inline __u32 current_vtgid(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct pid *p = BPF_CORE_READ(t, group_leader, thread_pid);
	unsigned int level = BPF_CORE_READ(p, level);

	return BPF_CORE_READ(p, numbers[level].nr);
}

/*
 * Fallback where BPF LSM is missing: the SIGKILL is delivered on the return from the syscall, before
 * the caller can use what it got (the attached tracee, the bytes, the descriptor). /proc/<pid>/mem,
 * opened like any file, is caught at the open's return (below).
 */
/* true when the caller was refused (and is killed on its return) */
static __always_inline bool ptrace_check(__u32 target, bool by_pidfd, __u32 call, __u8 mech)
{
	struct sec_config *cfg = get_config();
	struct selected s = {};

	if (!cfg || cfg->lsm_ptrace || !select_current(&s, true))
		return false;
	/* its own process, which the kernel never asks about: compared in the caller's pid namespace,
	 * where getpid() is not the host's tgid (a container). A thread of its own named by its tid is
	 * taken for another process here. No pid (<= 0) finds no process: the call fails by itself. */
	if (!by_pidfd && ((int)target <= 0 || target == current_vtgid()))
		return false;
	if (ptrace_decide(&s, target, call, mech))
		return false;
	bpf_send_signal(SIGKILL);
	return true;
}

static __always_inline int ptrace_tp(struct trace_event_raw_sys_enter *ctx, __u32 target, bool by_pidfd)
{
	ptrace_check(target, by_pidfd, (__u32)ctx->id, SEC_MECH_TP_PTRACE_KILL);
	return 0;
}

/*
 * A refused PTRACE_ATTACH that succeeded: the tracee it stopped (SIGSTOP), the newest on the
 * caller's ptraced list (ptrace_link adds at the head), for the daemon to continue. Its host tgid:
 * the pid the caller named is its own pid namespace's.
 */
static __always_inline void attach_stopped(__u32 call, __u8 mech)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	void *head = (void *)t + bpf_core_field_offset(struct task_struct, ptraced);
	void *first = BPF_CORE_READ(t, ptraced.next);
	struct selected s = {};

	if (!first || first == head || !select_current(&s, true))
		return;
	struct task_struct *tracee = (void *)first - bpf_core_field_offset(struct task_struct, ptrace_entry);
	__u32 target = BPF_CORE_READ(tracee, tgid);
	__u64 start = BPF_CORE_READ(tracee, group_leader, start_boottime);
	struct sec_event *e = ev_begin(&s, s.pol->ptrace_rule, SEC_EV_PTRACE, mech);
	if (!e) {
		struct sec_lost_stop l = {
			.ts_ns = bpf_ktime_get_ns(),
			.target_start = start,
			.cgroup_id = bpf_get_current_cgroup_id(),
			.pid = bpf_get_current_pid_tgid() >> 32,
			.uid = (__u32)bpf_get_current_uid_gid(),
			.policy_id = s.pol->id,
			.rule_id = s.pol->ptrace_rule,
			.call = call,
			.mech = mech,
		};
		bpf_get_current_comm(l.comm, sizeof(l.comm));
		bpf_map_update_elem(&stopped_lost, &target, &l, BPF_ANY);
		return;
	}
	e->action = SEC_ATTACH_STOPPED;
	e->target = target;
	e->target_start = start;
	e->call = call;
	bpf_ringbuf_submit(e, 0);
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int sec_ptrace_tp(struct trace_event_raw_sys_enter *ctx)
{
	long req = (long)ctx->args[0];

	if (req != PTRACE_ATTACH && req != PTRACE_SEIZE)
		return 0;
	if (ptrace_check((__u32)ctx->args[1], false, (__u32)ctx->id, SEC_MECH_TP_PTRACE_KILL) && req == PTRACE_ATTACH) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		__u8 one = 1;
		bpf_map_update_elem(&attach_refused, &tid, &one, BPF_ANY);
	}
	return 0;
}

/* attached with sec_ptrace_tp: a refused PTRACE_ATTACH's return */
SEC("tracepoint/syscalls/sys_exit_ptrace")
int sec_ptrace_exit_tp(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (!bpf_map_lookup_elem(&attach_refused, &tid))
		return 0;
	bpf_map_delete_elem(&attach_refused, &tid);
	if (ctx->ret == 0)
		attach_stopped((__u32)ctx->id, SEC_MECH_TP_PTRACE_KILL);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_process_vm_readv")
int sec_vm_readv_tp(struct trace_event_raw_sys_enter *ctx) { return ptrace_tp(ctx, (__u32)ctx->args[0], false); }

SEC("tracepoint/syscalls/sys_enter_process_vm_writev")
int sec_vm_writev_tp(struct trace_event_raw_sys_enter *ctx) { return ptrace_tp(ctx, (__u32)ctx->args[0], false); }

/* the target is a pidfd here: its pid is not known without a lookup, so target stays 0 */
SEC("tracepoint/syscalls/sys_enter_pidfd_getfd")
int sec_pidfd_getfd_tp(struct trace_event_raw_sys_enter *ctx) { return ptrace_tp(ctx, 0, true); }

/*
 * /proc/<pid>/mem (and /proc/<pid>/task/<tid>/mem) of another process, where BPF LSM is missing: the
 * open itself is the attach-mode check (mem_open → proc_mem_open(PTRACE_MODE_ATTACH)), with no
 * tracepoint of its own, so the descriptor the open returned is looked at on the syscall's exit
 * and the caller killed before it returns to use it. The file is known by what it is, not by the
 * path asked for (a dirfd, a symlink, /proc/self/../<pid> all end there): procfs, named "mem", its
 * private_data the mm it reads. Its own memory (the same mm: itself, its threads, a CLONE_VM child)
 * is no other process. An open through io_uring runs no open syscall: io_uring_complete (further
 * below) looks at it. Not covered: a second thread that moves the descriptor away between the
 * open's install and its return.
 */
/* another process's mem file is open: the caller, if selected, is refused. `dir` names the
 * directory above, /proc/<pid> or task/<tid>: the event's target; `call` what opened it. */
static __always_inline int proc_mem_decide(__u32 call, __u8 mech, const unsigned char *dir)
{
	struct selected s = {};
	char num[11] = {};
	__u32 target = 0;

	if (!select_current(&s, true))
		return 0;
	bpf_probe_read_kernel_str(num, sizeof(num), dir);
	for (int i = 0; i < 10; i++) {
		if (num[i] < '0' || num[i] > '9') {
			if (num[i])
				target = 0;
			break;
		}
		target = target * 10 + (num[i] - '0');
	}
	if (!ptrace_decide(&s, target, call, mech))
		bpf_send_signal(SIGKILL);
	return 0;
}

/* the name of the directory above `f` (the event's target) when `f` is another process's mem
 * file (procfs, "mem", an mm not t's), else NULL */
static __always_inline const unsigned char *other_mem_dir(struct file *f, struct task_struct *t)
{
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	char name[4] = {};

	if (BPF_CORE_READ(d, d_sb, s_magic) != PROC_SUPER_MAGIC || BPF_CORE_READ(d, d_name.len) != 3)
		return NULL;
	bpf_probe_read_kernel(name, 3, BPF_CORE_READ(d, d_name.name));
	if (name[0] != 'm' || name[1] != 'e' || name[2] != 'm')
		return NULL;
	void *mm = BPF_CORE_READ(f, private_data);
	if (!mm || mm == (void *)BPF_CORE_READ(t, mm))
		return NULL;
	return BPF_CORE_READ(d, d_parent, d_name.name);
}

/* the file at descriptor `fd` of t's table, or NULL */
static __always_inline struct file *fd_file(struct task_struct *t, long fd)
{
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	struct file **fds;
	struct file *f = NULL;

	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return NULL;
	return f;
}

static __always_inline int proc_mem_fd(long fd, __u32 call, __u8 mech)
{
	struct sec_config *cfg;
	struct task_struct *t;
	struct file *f;
	const unsigned char *dir;

	if (fd < 0)
		return 0;
	cfg = get_config();
	if (!cfg || cfg->lsm_ptrace)
		return 0;
	t = (struct task_struct *)bpf_get_current_task();
	f = fd_file(t, fd);
	if (!f || !(dir = other_mem_dir(f, t)))
		return 0;
	return proc_mem_decide(call, mech, dir);
}

static __always_inline int proc_mem_exit(struct trace_event_raw_sys_exit *ctx)
{
	return proc_mem_fd(ctx->ret, (__u32)ctx->id, SEC_MECH_TP_PTRACE_KILL);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int sec_openat_exit_tp(struct trace_event_raw_sys_exit *ctx) { return proc_mem_exit(ctx); }

SEC("tracepoint/syscalls/sys_exit_open")
int sec_open_exit_tp(struct trace_event_raw_sys_exit *ctx) { return proc_mem_exit(ctx); }

SEC("tracepoint/syscalls/sys_exit_openat2")
int sec_openat2_exit_tp(struct trace_event_raw_sys_exit *ctx) { return proc_mem_exit(ctx); }

/*
 * The same check with BTF-typed loads instead of a helper call per pointer (bpf_get_current_task_btf,
 * 5.11; bpf_rdonly_cast, 6.2): it runs at the exit of every open on the machine, and on this lab's
 * host its own time per open+close fell from 11% to 5% (pnpm lab bench security --ops open:
 * reports/20261205-022125-security-host, reports/20261205-022800-security-host). The controller
 * loads it where it loads, else the variants above.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

static __always_inline int proc_mem_exit_btf(struct trace_event_raw_sys_exit *ctx)
{
	long fd = ctx->ret;
	struct sec_config *cfg;
	struct file *raw = NULL;

	if (fd < 0)
		return 0;
	cfg = get_config();
	if (!cfg || cfg->lsm_ptrace)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	struct fdtable *fdt = t->files->fdt;
	if (fd >= fdt->max_fds)
		return 0;
	/* a variable index into a BTF-typed array is not allowed: one helper read */
	if (bpf_probe_read_kernel(&raw, sizeof(raw), &fdt->fd[fd]) || !raw)
		return 0;
	struct file *f = bpf_rdonly_cast(raw, bpf_core_type_id_kernel(struct file));
	struct dentry *d = f->f_path.dentry;
	if (d->d_sb->s_magic != PROC_SUPER_MAGIC || d->d_name.len != 3)
		return 0;
	const unsigned char *n = d->d_name.name;
	if (n[0] != 'm' || n[1] != 'e' || n[2] != 'm')
		return 0;
	void *mm = f->private_data;
	if (!mm || mm == (void *)t->mm)
		return 0;
	return proc_mem_decide((__u32)ctx->id, SEC_MECH_TP_PTRACE_KILL, d->d_parent->d_name.name);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int sec_openat_exit_btf(struct trace_event_raw_sys_exit *ctx) { return proc_mem_exit_btf(ctx); }

SEC("tracepoint/syscalls/sys_exit_open")
int sec_open_exit_btf(struct trace_event_raw_sys_exit *ctx) { return proc_mem_exit_btf(ctx); }

SEC("tracepoint/syscalls/sys_exit_openat2")
int sec_openat2_exit_btf(struct trace_event_raw_sys_exit *ctx) { return proc_mem_exit_btf(ctx); }

/*
 * /proc/<pid>/mem opened through io_uring (IORING_OP_OPENAT, IORING_OP_OPENAT2), where BPF LSM is
 * missing: no open syscall runs, so the checks above never see it. io_uring_complete fires once the
 * open has installed its file and set the request's result, before the completion is published to
 * the ring, in a task of the submitting process: the submitter (inline, or running its task work),
 * its SQPOLL thread or an io-wq worker, the last two threads of that process sharing its file table
 * and mm (create_io_thread: CLONE_FILES | CLONE_VM | CLONE_THREAD, 5.12+). The file is looked at as
 * the syscall exit does: a descriptor (res) in the current task's table; a direct descriptor (a
 * file_slot in the SQE) in the ring's fixed-file table, at the slot asked for (file_slot - 1) or the
 * one the kernel chose (IORING_FILE_INDEX_ALLOC: res). SIGKILL goes to the current task's thread
 * group, i.e. the submitting process also from a worker, and is pending before the completion can
 * be read. Not covered, as at the syscall's exit: a second thread that uses or moves the descriptor
 * (or the direct descriptor, by its own submission) between the install and the completion; and a
 * completion run as the submitter's task work (DEFER_TASKRUN) after it unshared its file table
 * from the io-wq worker that opened the file (res is looked up in the wrong table). Before 5.18 the tracepoint carries no request (so no opcode) and before 5.12 io-wq
 * workers are kernel threads that bpf_send_signal refuses: the controller states those kernels as
 * unsupported. This tracepoint fires for every io_uring completion on the machine: the opcode test
 * comes first and returns for everything else.
 */
#define IORING_FILE_INDEX_ALLOC (~0U)

/* the fixed-file table before 6.13: an array of io_fixed_file (file_ptr with flag bits below 8) */
struct io_fixed_file___old {
	unsigned long file_ptr;
} __attribute__((preserve_access_index));
struct io_file_table___old {
	struct io_fixed_file___old *files;
} __attribute__((preserve_access_index));
struct io_ring_ctx___old {
	struct io_file_table___old file_table;
	unsigned int nr_user_files;
} __attribute__((preserve_access_index));

static __always_inline struct file *fixed_file(struct io_ring_ctx *ring, __u32 slot)
{
	unsigned long ptr;

	if (bpf_core_field_exists(ring->file_table.data)) {
		/* 6.13+: one io_rsrc_node per slot */
		if (slot >= BPF_CORE_READ(ring, file_table.data.nr))
			return NULL;
		struct io_rsrc_node **nodes = BPF_CORE_READ(ring, file_table.data.nodes);
		struct io_rsrc_node *n = NULL;
		if (bpf_probe_read_kernel(&n, sizeof(n), &nodes[slot]) || !n)
			return NULL;
		ptr = BPF_CORE_READ(n, file_ptr);
	} else {
		struct io_ring_ctx___old *old = (void *)ring;
		if (slot >= BPF_CORE_READ(old, nr_user_files))
			return NULL;
		struct io_fixed_file___old *files = BPF_CORE_READ(old, file_table.files);
		if (bpf_probe_read_kernel(&ptr, sizeof(ptr), &files[slot].file_ptr))
			return NULL;
	}
	return (struct file *)(ptr & ~7UL);
}

/* after the early return: `op` is an open's opcode */
static __always_inline int io_uring_open(struct io_kiocb *req, __u8 op)
{
	struct sec_config *cfg = get_config();
	if (!cfg || cfg->lsm_ptrace)
		return 0;
	int res = BPF_CORE_READ(req, cqe.res);
	if (res < 0)
		return 0;
	/* struct io_open overlays the start of the request */
	__u32 slot = BPF_CORE_READ((struct io_open *)req, file_slot);
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct file *f;
	if (!slot)
		f = fd_file(t, res);
	else
		f = fixed_file(BPF_CORE_READ(req, ctx), slot == IORING_FILE_INDEX_ALLOC ? (__u32)res : slot - 1);
	const unsigned char *dir;
	if (!f || !(dir = other_mem_dir(f, t)))
		return 0;
	return proc_mem_decide(SEC_CALL_IO_URING | op, SEC_MECH_TP_IO_URING_OPEN_KILL, dir);
}

static __always_inline bool io_uring_is_open(__u8 op)
{
	return op == bpf_core_enum_value(enum io_uring_op, IORING_OP_OPENAT) || op == bpf_core_enum_value(enum io_uring_op, IORING_OP_OPENAT2);
}

/* IORING_OP_URING_CMD (5.19+; its socket commands 6.7+), where this kernel has it */
static __always_inline bool io_uring_is_cmd(__u8 op)
{
	return bpf_core_enum_value_exists(enum io_uring_op, IORING_OP_URING_CMD) && op == bpf_core_enum_value(enum io_uring_op, IORING_OP_URING_CMD);
}

#define SOCKET_URING_OP_SETSOCKOPT 3

/*
 * The ring's compat bit: a bitfield of io_ring_ctx up to 6.x, a bit of its int_flags from 7.0, whose
 * enumerator (IO_RING_F_COMPAT) lives in an anonymous enum that CO-RE cannot relocate: the value
 * here is checked against the kernel's BTF by the controller, which reports this check as
 * unsupported where they differ (controller/security/controller.ts, uringCompatUnsound).
 */
#define IO_RING_F_COMPAT 2048
struct io_ring_ctx___int_flags {
	unsigned int int_flags;
} __attribute__((preserve_access_index));

static __always_inline bool ring_compat(struct io_ring_ctx *ring)
{
	if (bpf_core_field_exists(struct io_ring_ctx___int_flags, int_flags))
		return BPF_CORE_READ((struct io_ring_ctx___int_flags *)ring, int_flags) & IO_RING_F_COMPAT;
	return BPF_CORE_READ_BITFIELD_PROBED(ring, compat);
}

/* the socket behind file f, or NULL if it is not one */
static __always_inline struct socket *file_socket(struct file *f)
{
	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	return BPF_CORE_READ(f, private_data);
}

/* a compat setsockopt (no cgroup/setsockopt ran) succeeded on sock: a source route it holds now is
 * judged, and refused by killing the caller (its return to user space comes first) */
static __always_inline int route_set(struct socket *sock, __u8 mech)
{
	struct selected s = {};
	__u32 opt = sticky_source_route(BPF_CORE_READ(sock, sk));

	if (!opt || !select_current(&s, true))
		return 0;
	if (!route_decide(&s, opt >> 16 == SOL_IP ? AF_INET : AF_INET6, opt, false, mech))
		bpf_send_signal(SIGKILL);
	return 0;
}

/*
 * A setsockopt made by io_uring's socket command (IORING_OP_URING_CMD, SOCKET_URING_OP_SETSOCKOPT,
 * 6.7+) on a compat ring, one a 32-bit io_uring_setup made (any 64-bit process can, by int 0x80):
 * the kernel passes such a ring's commands to do_sock_setsockopt as compat calls, which skip the
 * cgroup setsockopt programs, and no syscall runs for them, so sys_exit's compat check never sees
 * one either. A native ring's command passed cgroup/setsockopt (not judged again here: one event
 * per refusal). Judged as compat_setsockopt does, by the socket's own options once the command has
 * succeeded (the SQE that named the option is user memory, rewritable until the kernel read it),
 * and the kill lands before the submitter is back in user space; under BPF LSM (where this
 * program is not attached) lsm/socket_sendmsg and lsm/socket_connect refuse the route's use.
 * A command whose file is not a socket (NVMe passthrough, ublk, …) numbers its commands otherwise:
 * the file type comes first.
 */
static __always_inline int io_uring_sockopt(struct io_kiocb *req)
{
	if (BPF_CORE_READ(req, cqe.res) != 0)
		return 0;
	struct socket *sock = file_socket(BPF_CORE_READ(req, file));
	if (!sock || BPF_CORE_READ((struct io_uring_cmd *)req, cmd_op) != SOCKET_URING_OP_SETSOCKOPT)
		return 0;
	if (!ring_compat(BPF_CORE_READ(req, ctx)))
		return 0;
	return route_set(sock, SEC_MECH_TP_IO_URING_SOCKOPT_KILL);
}

SEC("tp_btf/io_uring_complete")
int sec_io_uring_open(unsigned long long *ctx)
{
	/* (ring, req, …) since 5.18; req is NULL for completions no request makes (6.0+) */
	struct io_kiocb *req = (struct io_kiocb *)ctx[1];
	__u8 op;

	if (!req)
		return 0;
	op = BPF_CORE_READ(req, opcode);
	if (io_uring_is_open(op))
		return io_uring_open(req, op);
	if (io_uring_is_cmd(op))
		return io_uring_sockopt(req);
	return 0;
}

/*
 * The same with the opcode read as a BTF-typed load instead of a helper call (bpf_rdonly_cast,
 * 6.2+): this early return is what every other io_uring completion on the machine pays. The
 * controller loads it where it loads, else the build above.
 */
SEC("tp_btf/io_uring_complete")
int sec_io_uring_open_btf(unsigned long long *ctx)
{
	struct io_kiocb *req = bpf_rdonly_cast((void *)ctx[1], bpf_core_type_id_kernel(struct io_kiocb));
	__u8 op;

	if (!req)
		return 0;
	op = req->opcode;
	if (io_uring_is_open(op))
		return io_uring_open((struct io_kiocb *)ctx[1], op);
	if (io_uring_is_cmd(op))
		return io_uring_sockopt((struct io_kiocb *)ctx[1]);
	return 0;
}

/* ---------------------------------------------------------------- 32-bit syscalls */

/*
 * A 32-bit syscall (int 0x80, sysenter, or a 32-bit binary's syscall; any 64-bit process can use
 * int 0x80 where the kernel has IA32_EMULATION) fires no syscalls:* tracepoint: the kernel looks
 * its number up in the 64-bit table only (ARCH_TRACE_IGNORE_COMPAT_SYSCALLS). So every fallback
 * above that hangs on one was open to five bytes of machine code: ptrace(PTRACE_SEIZE) through
 * int 0x80 attached to another process past sys_enter_ptrace (scenarios/security's
 * ptrace-inject with IA32=1). The raw sys_exit tracepoint fires for every syscall of both ABIs;
 * this program judges the 32-bit numbers of the calls the fallbacks cover, on the way out (the
 * arguments are still in the saved registers: ebx, ecx, edx; the result in ret) with the same
 * checks, and the SIGKILL lands before the caller returns to user space, as theirs does. Every
 * other syscall exit on the machine pays a load of the number and a switch; only the listed
 * numbers (mostly rare 64-bit calls at the same values) go on to read the task's TS_COMPAT.
 * Attached only where the fallbacks' tracepoints are (no BPF LSM), never under LSM, whose hooks
 * see both ABIs. The x32 ABI's calls (numbers with bit 30, from any 64-bit process, where the
 * kernel takes them: syscall.x32=y, off by default in Debian's kernels) fire no syscalls:*
 * tracepoint either; they are judged here too, by their own numbers (the x86-64 ones, ptrace and
 * process_vm_* at 521, 539, 540) and the 64-bit argument registers. Their test costs every exit
 * one bit test more.
 */
#if defined(__TARGET_ARCH_x86)
#define IA32_FORK 2
#define IA32_OPEN 5
#define IA32_PTRACE 26
#define IA32_SOCKETCALL 102
#define IA32_CLONE 120
#define IA32_VFORK 190
#define IA32_OPENAT 295
#define IA32_PROCESS_VM_READV 347
#define IA32_PROCESS_VM_WRITEV 348
#define IA32_SOCKET 359
#define IA32_SETSOCKOPT 366
#define IA32_CLONE3 435
#define IA32_OPENAT2 437
#define IA32_PIDFD_GETFD 438
#define SYS_SOCKET 1 /* socketcall's call numbers for socket() and setsockopt() */
#define SYS_SETSOCKOPT 14
#define X32_SYSCALL_BIT 0x40000000
#define X32_OPEN 2
#define X32_SOCKET 41
#define X32_CLONE 56
#define X32_FORK 57
#define X32_VFORK 58
#define X32_OPENAT 257
#define X32_CLONE3 435
#define X32_OPENAT2 437
#define X32_PIDFD_GETFD 438
#define X32_PTRACE 521
#define X32_PROCESS_VM_READV 539
#define X32_PROCESS_VM_WRITEV 540
#define X32_SETSOCKOPT 541

/* the current task's descriptor fd if it is a socket, else NULL */
static __always_inline struct socket *fd_socket(long fd)
{
	return file_socket(fd_file((struct task_struct *)bpf_get_current_task(), fd));
}

/* the socket the call just returned as `fd`, judged by what the kernel made (the family and type
 * of its sock), so socketcall's arguments in user memory are not trusted; `proto` is the call's
 * protocol argument, for the event alone (only an inet socket's verdict depends on it, and those
 * were judged already) */
static __always_inline int compat_socket(long fd, __u32 proto, __u8 mech)
{
	struct sec_config *cfg = get_config();
	struct selected s = {};

	if (fd < 0 || !cfg || cfg->lsm_socket)
		return 0;
	struct socket *sock = fd_socket(fd);
	if (!sock)
		return 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	__u32 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u32 type = BPF_CORE_READ(sock, type);
	/* inet sockets were judged by cgroup/sock_create, which runs for both ABIs (a refused one
	 * never got a descriptor); socket(AF_INET, SOCK_PACKET) is an AF_PACKET sock by now */
	if (family == AF_INET || family == AF_INET6)
		return 0;
	if (!raw_or_packet(family, type, proto) || !select_current(&s, true))
		return 0;
	if (!socket_decide(&s, family, type, proto, mech))
		bpf_send_signal(SIGKILL);
	return 0;
}

/*
 * A setsockopt that succeeded and left a source route on its socket. The kernel runs the cgroup
 * setsockopt programs for native calls only (do_sock_setsockopt skips them in a compat syscall), so
 * a selected process set IPV6_RTHDR through int 0x80 (setsockopt, or socketcall(SYS_SETSOCKOPT))
 * past cgroup/setsockopt and then sent along the route. Judged by the socket's own options after
 * the call, not by the arguments (socketcall's are in user memory).
 */
static __always_inline int compat_setsockopt(long fd, long ret, __u8 mech)
{
	if (ret != 0 || fd < 0)
		return 0;
	struct socket *sock = fd_socket(fd);
	return sock ? route_set(sock, mech) : 0;
}

/* the compat check's ptrace family, at the exit (the attach done, its tracee known) */
static __always_inline int compat_ptrace(__u32 req, __u32 pid, long ret, __u32 call, __u8 mech)
{
	if (req != PTRACE_ATTACH && req != PTRACE_SEIZE)
		return 0;
	if (ptrace_check(pid, false, call, mech) && req == PTRACE_ATTACH && ret == 0)
		attach_stopped(call, mech);
	return 0;
}

/* what a 32-bit or x32 syscall does, as far as the fallbacks care: the ABIs number their calls
 * differently, the checks are the same */
enum compat_op { COMPAT_NONE, COMPAT_FORK, COMPAT_OPEN, COMPAT_SOCKET, COMPAT_SOCKETCALL, COMPAT_SETSOCKOPT, COMPAT_PTRACE, COMPAT_VM_RW, COMPAT_PIDFD_GETFD };

static __always_inline enum compat_op ia32_op(int nr)
{
	switch (nr) {
	case IA32_FORK: case IA32_VFORK: case IA32_CLONE: case IA32_CLONE3: return COMPAT_FORK;
	case IA32_OPEN: case IA32_OPENAT: case IA32_OPENAT2: return COMPAT_OPEN;
	case IA32_SOCKET: return COMPAT_SOCKET;
	case IA32_SOCKETCALL: return COMPAT_SOCKETCALL;
	case IA32_SETSOCKOPT: return COMPAT_SETSOCKOPT;
	case IA32_PTRACE: return COMPAT_PTRACE;
	case IA32_PROCESS_VM_READV: case IA32_PROCESS_VM_WRITEV: return COMPAT_VM_RW;
	case IA32_PIDFD_GETFD: return COMPAT_PIDFD_GETFD;
	}
	return COMPAT_NONE;
}

/* nr without bit 30 */
static __always_inline enum compat_op x32_op(int nr)
{
	switch (nr) {
	case X32_FORK: case X32_VFORK: case X32_CLONE: case X32_CLONE3: return COMPAT_FORK;
	case X32_OPEN: case X32_OPENAT: case X32_OPENAT2: return COMPAT_OPEN;
	case X32_SOCKET: return COMPAT_SOCKET;
	case X32_SETSOCKOPT: return COMPAT_SETSOCKOPT;
	case X32_PTRACE: return COMPAT_PTRACE;
	case X32_PROCESS_VM_READV: case X32_PROCESS_VM_WRITEV: return COMPAT_VM_RW;
	case X32_PIDFD_GETFD: return COMPAT_PIDFD_GETFD;
	}
	return COMPAT_NONE;
}
#endif

SEC("tp_btf/sys_exit")
int BPF_PROG(sec_compat_exit, struct pt_regs *regs, long ret)
{
#if defined(__TARGET_ARCH_x86)
	/* the number as the kernel dispatches it: the low 32 bits of rax (do_syscall_64 takes an int
	 * since 5.12). Read as a long, rax = 0x1_4000_0209 ran x32 ptrace past every case below. */
	int nr = (int)regs->orig_ax;
	enum compat_op op;
	__u32 a1, a2, call;
	__u8 mech;

	if (nr >= 0 && (nr & X32_SYSCALL_BIT)) {
		/* x32: the 64-bit ABI's registers, pointers and ints in their low halves */
		nr &= ~X32_SYSCALL_BIT;
		op = x32_op(nr);
		a1 = (__u32)regs->di;
		a2 = (__u32)regs->si;
		call = SEC_CALL_X32 | (__u32)nr;
		mech = SEC_MECH_TP_X32_KILL;
	} else {
		op = ia32_op(nr);
		if (op == COMPAT_NONE || !lab_compat_task())
			return 0;
		/* the kernel reads 32-bit arguments from the low halves (int 0x80 from a 64-bit task
		 * may leave anything in the high ones) */
		a1 = (__u32)regs->bx;
		a2 = (__u32)regs->cx;
		call = SEC_CALL_IA32 | (__u32)nr;
		mech = SEC_MECH_TP_COMPAT_KILL;
	}
	switch (op) {
	case COMPAT_FORK:
		/* the parent's return finds nothing; the child's first one is this exit too, with the
		 * parent's orig_ax (and, for int 0x80, its TS_COMPAT) copied into it */
		return doomed_child(mech);
	case COMPAT_OPEN:
		return proc_mem_fd(ret, call, mech);
	case COMPAT_SOCKET:
		/* the protocol: the third argument, edx / rdx in either ABI */
		return compat_socket(ret, (__u32)regs->dx, mech);
	case COMPAT_SOCKETCALL: {
		/* socketcall(SYS_SOCKET, {family, type, protocol}) or (SYS_SETSOCKOPT, {fd, …}) */
		__u32 args[3] = {};
		if (a1 != SYS_SOCKET && a1 != SYS_SETSOCKOPT)
			return 0;
		bpf_probe_read_user(args, sizeof(args), (void *)(unsigned long)a2);
		if (a1 == SYS_SETSOCKOPT)
			return compat_setsockopt((int)args[0], ret, mech);
		return compat_socket(ret, args[2], mech);
	}
	case COMPAT_SETSOCKOPT:
		/* the fd: the first argument, ebx / rdi */
		return compat_setsockopt((int)a1, ret, mech);
	case COMPAT_PTRACE:
		return compat_ptrace(a1, a2, ret, call, mech);
	case COMPAT_VM_RW:
		ptrace_check(a1, false, call, mech);
		return 0;
	case COMPAT_PIDFD_GETFD:
		ptrace_check(0, true, call, mech);
		return 0;
	default:
		return 0;
	}
#endif
	return 0;
}
