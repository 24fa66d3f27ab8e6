// Zero-code HTTP tracing, kernel side. Only tracepoints, so one object runs on every kernel of the
// matrix, including hosts without kprobes/fentry.
//
// Payload, one of two hooks per kernel (the loader picks; controller/tracing/kernel.ts):
// - sock (6.3+): sock:sock_recv_length and sock:sock_send_length, which fire inside
//   sock_recvmsg/sock_sendmsg with the struct sock, i.e. only for socket I/O (see sock_io below).
// - sys_exit (older kernels): one raw tracepoint sees every syscall's return with the task's saved
//   user registers, and the fd is resolved to its struct sock (task → files → fdtable → file →
//   socket → sk) per call. Per-syscall tracepoints (syscalls:sys_{enter,exit}_*) did the same
//   with two programs, an LRU map update and delete per syscall and perf's trace-buffer setup
//   around each run: 1.2 µs of BPF per traced syscall against ~0.5 µs here (ARCHITECTURE.md,
//   tracing).
// Both read the syscall's arguments (fd, buffer, iovec count) from the saved registers after the
// bytes moved, so a read's buffer holds what arrived and a partial write is reported with the
// length that went out, and both copy the first cap_bytes into the ring. HTTP parsing happens in
// TypeScript (bounded there).
//
// Kernel-side filter (per socket, map `conns`): a record crosses only for the first bytes of each
// run of one direction (the first cap_bytes of a request or a response, split reads included) and
// for a continuation that starts like an HTTP message (pipelining: `HTTP/` or any token method and a space). Other continuation syscalls
// (body bytes) are only counted; the count and the time of the last one ride on the socket's next
// record. A socket whose first bytes are not HTTP/1.x sends nothing more (TLS, databases, …).
// Records carry only the bytes captured (bpf_ringbuf_output of header + cap_len from a per-CPU
// scratch record), lifecycle records only the header.
//
// Preemptible tracepoint programs: since syscall tracepoints may fault, their programs run with
// migration disabled but preemption enabled, and from 7.0 every tracepoint's do (SRCU-fast). On a
// preemptible kernel (preempt=full or lazy: the only models 7.x offers) a task preempted inside
// the program keeps that program's per-CPU recursion guard, and the kernel skips the program for
// every other event on that CPU until the task runs again (recursion_misses: 77 in one scenario
// run on 7.2, requests lost, reports/20261130-180204-tracing-7.x). There the loader attaches a
// second copy behind each data program (`standby`): per thread the primary counts the events it
// took (`relay`), and the standby does the work only for an event the primary's count did not
// move for, i.e. one it skipped. Each data program has its own scratch record, and per-CPU
// counters are bumped atomically, because a preempted run and another on the same CPU can now
// interleave.
//
// Lifecycle: the CLOSE→SYN_SENT transition runs in the connecting task's context, so selection
// works there; later transitions (ESTABLISHED, CLOSE) run in softirq and are reported only for
// sockets in `tracked`. Server sockets enter `tracked` when accept/accept4 returns.
#include "include/lab.h"
#include "tracing.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6

#if defined(__TARGET_ARCH_x86)
/* arch/x86/entry/syscalls/syscall_64.tbl: the ABI, fixed forever */
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDFILE 40
#define NR_ACCEPT 43
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define NR_ACCEPT4 288
#define SYSCALL_NR(regs) BPF_CORE_READ(regs, orig_ax)
/* the first three arguments in a typed (tp_btf) pt_regs */
#define SYSCALL_ARG1(regs) ((regs)->di)
#define SYSCALL_ARG2(regs) ((regs)->si)
#define SYSCALL_ARG3(regs) ((regs)->dx)
#else
#error "tracing.bpf.c knows x86-64 syscall numbers only: add this architecture's (and common/arch.ts)"
#endif
/* accept/accept4 beside enum tr_sys (never sent: they become TR_EV_ACCEPT records) */
#define SYS_ACCEPT 100

/* set by the loader before load */
const volatile __u32 cap_bytes = 256;
/*
 * Sampling (0: every exchange crosses). Client sockets and server sockets whose peer is a traced
 * client on this node (`local_clients`) always cross, so a crossed trace is whole and tuple links
 * keep their ordinals; on any other server socket (the roots: traffic from outside the selected
 * workloads) a request crosses when bpf_get_prandom_u32() < sample_thresh, decided where its first
 * byte is read, and its response goes with it. Every request is counted in `red` either way.
 */
const volatile __u32 sample_thresh = 0;
/* 1: the standby copies of the data programs are attached behind the primaries (see the top) */
const volatile __u32 standby_on = 0;
/*
 * Consumer wake-ups. 0: the ring's default (a record wakes the consumer when it had caught up).
 * Else a record wakes it only once this many bytes wait, and the consumer otherwise drains on its
 * own timer (controller/tracing/kernel.ts). A wake-up is a self-IPI in the traced task's context
 * and a trip through the consumer's event loop: at 1% sampling the default woke a caught-up
 * consumer for nearly every record, and the tracer cost about as much at 0.1% as at 1%.
 */
const volatile __u64 wake_bytes = 0;

/* workloads: cgroup v2 id → service index, tgid → service index */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u32);
} sel_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} sel_pids SEC(".maps");

/*
 * Which selector maps hold entries (enum tr_sel), written by the controller after each add and
 * remove. The exits of every task on the machine ask selected(); with this, a task outside the
 * workloads pays one inlined array read and one hash miss (the map in use), not one per map.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sel_kinds SEC(".maps");

/* sockets whose softirq-side transitions are reported: sk address → owner */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct tr_sock);
} tracked SEC(".maps");

/* kernel-side filter state per socket of a selected workload: sk address → run state */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct tr_conn);
} conns SEC(".maps");

/* traced client sockets on this node by their tuple (set at ESTABLISHED): a server accepting one always crosses */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tr_tuple);
	__type(value, __u32);
} local_clients SEC(".maps");

/* per thread: server requests it read that did not cross and whose response has not started */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} unsampled SEC(".maps");

/* in-kernel RED (tracing.h, struct tr_red) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TR_RED_SERVICES * TR_RED_ROLES * TR_RED_CLASSES);
	__type(key, __u32);
	__type(value, struct tr_red);
} red SEC(".maps");

/* per thread: sys_exit runs the primary took, and the count as the standby last saw it */
struct tr_relay {
	__u32 primary;
	__u32 seen;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct tr_relay);
} relay SEC(".maps");

/* a data record is assembled here, then only its used part goes into the ring: one per data program (tr_call.slot) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct tr_event);
} scratch SEC(".maps");

/* syscalls the filter kept out of the ring: [0] body continuations, [1] non-HTTP sockets; [2] exits the standby took */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} filtered SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

LAB_LOST_COUNTER(lost);
LAB_EXPORT(tr_event);
/* the enums of tracing.h into BTF (bpf/gen/tracing.enums.ts; TR in kernel.ts) */
LAB_EXPORT_ENUM(tr_kind);
LAB_EXPORT_ENUM(tr_role);
LAB_EXPORT_ENUM(tr_dir);
LAB_EXPORT_ENUM(tr_sel);
LAB_EXPORT_ENUM(tr_sys);
LAB_EXPORT_ENUM(tr_red_layout);
LAB_EXPORT_ENUM(tr_limits);

static __always_inline __u32 selected(void)
{
	__u32 zero = 0;
	__u32 *kinds = bpf_map_lookup_elem(&sel_kinds, &zero);
	__u32 k = kinds ? *kinds : 0;
	__u32 *s;
	if (k & TR_SEL_CGROUPS) {
		__u64 cg = bpf_get_current_cgroup_id();
		s = bpf_map_lookup_elem(&sel_cgroups, &cg);
		if (s)
			return *s;
	}
	if (!(k & TR_SEL_PIDS))
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	s = bpf_map_lookup_elem(&sel_pids, &tgid);
	return s ? *s : 0;
}

/*
 * fd of the current task → the struct sock behind it, if it is a socket (the socket's sk points
 * back to it), or NULL. The socket's type is not checked here: a socket already in `conns` was
 * checked when it got there, so the per-syscall path skips those five reads (tcp_sock() does them).
 */
static __always_inline struct sock *fd_to_sock(__u32 fd, struct file **fp, const bool btf)
{
	struct fdtable *fdt;
	unsigned int max_fds;
	struct file **fds;
	/*
	 * tp_btf with bpf_get_current_task_btf (5.11+): task → files → fdtable are typed pointers and
	 * their fields plain (fault-safe) loads, four helper calls fewer on every traced syscall than
	 * the probe reads below. The guard is a CO-RE check against the running kernel's helper enum:
	 * where the helper is missing (5.10) the branch is dead and the verifier never sees the call.
	 */
	if (btf && bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		struct task_struct *task = bpf_get_current_task_btf();
		struct files_struct *files = task->files;
		if (!files)
			return NULL;
		fdt = files->fdt;
		if (!fdt)
			return NULL;
		max_fds = fdt->max_fds;
		fds = fdt->fd;
	} else {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		fdt = BPF_CORE_READ(task, files, fdt);
		if (!fdt)
			return NULL;
		max_fds = BPF_CORE_READ(fdt, max_fds);
		fds = BPF_CORE_READ(fdt, fd);
	}
	if (fd >= max_fds)
		return NULL;
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	/* private_data is a struct socket only for a socket file: its sk's back-pointer proves it */
	struct socket *so = BPF_CORE_READ(f, private_data);
	if (!so)
		return NULL;
	struct sock *sk = BPF_CORE_READ(so, sk);
	if (!sk || BPF_CORE_READ(sk, sk_socket) != so)
		return NULL;
	*fp = f;
	return sk;
}

/* is this an IPv4/IPv6 TCP socket? */
static __always_inline bool tcp_sk(struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return false;
	return BPF_CORE_READ(sk, sk_type) == SOCK_STREAM && BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP;
}

/* is this socket (from fd_to_sock) an IPv4/IPv6 TCP one, and its file a socket inode? */
static __always_inline bool tcp_sock(struct file *f, struct sock *sk)
{
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	return (mode & S_IFMT) == S_IFSOCK && tcp_sk(sk);
}

/* fd of the current task → its TCP struct sock, or NULL (every check: for paths that run once per connection) */
static __always_inline struct sock *fd_to_tcp_sock(__u32 fd, const bool btf)
{
	struct file *f = NULL;
	struct sock *sk = fd_to_sock(fd, &f, btf);
	return sk && tcp_sock(f, sk) ? sk : NULL;
}

static __always_inline void fill_tuple(struct tr_event *e, struct sock *sk)
{
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->family == AF_INET) {
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->laddr, &l, 4);
		__builtin_memcpy(e->raddr, &r, 4);
	} else {
		BPF_CORE_READ_INTO(&e->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

#define TR_HDR_SIZE __builtin_offsetof(struct tr_event, data)

static __always_inline void fill_header(struct tr_event *e, __u32 kind, __u32 service)
{
	__u64 id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->skip_bytes = 0;
	e->skip_ts = 0;
	e->skip_calls = 0;
	e->skip_dir = 0;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->service = service;
	e->kind = kind;
	e->dir = 0;
	e->sys = 0;
	e->len = 0;
	e->cap_len = 0;
	e->old_state = 0;
	e->new_state = 0;
	e->unsampled = 0;
	e->_pad2 = 0;
	e->_pad = 0;
	__builtin_memset(e->laddr, 0, sizeof(e->laddr));
	__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

static __always_inline __u64 wake_flags(void)
{
	if (!wake_bytes)
		return 0;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wake_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* a lifecycle record: the header only */
static __always_inline struct tr_event *reserve(__u32 kind, __u32 service)
{
	struct tr_event *e = bpf_ringbuf_reserve(&events, TR_HDR_SIZE, 0);
	if (!e) {
		lab_count(&lost);
		return NULL;
	}
	fill_header(e, kind, service);
	return e;
}

static __always_inline void count_filtered(__u32 k)
{
	__u64 *c = bpf_map_lookup_elem(&filtered, &k);
	if (c)
		__sync_fetch_and_add(c, 1);
}

/* is c a token character (RFC 9110 §5.6.2: !#$%&'*+-.^_`|~, digits, letters)? */
static __always_inline bool tchar(__u8 c)
{
	const __u64 lo = 0x03ff6cfa00000000ULL, hi = 0x57ffffffc7fffffeULL;
	return c < 64 ? (lo >> c) & 1 : c < 128 ? (hi >> (c - 64)) & 1 : 0;
}

/* what the first bytes of a message say */
/* FIRST_UNKNOWN: no bytes to look at (sendfile); FIRST_MORE_VER: FIRST_MORE, and still "HTTP/1." */
enum { FIRST_MORE, FIRST_REQ, FIRST_RES, FIRST_NOT, FIRST_UNKNOWN, FIRST_MORE_VER };

/* "HTTP/1." as a little-endian word: byte i is (HTTP_VER >> 8i) & 0xff */
#define HTTP_VER ((__u64)'H' | (__u64)'T' << 8 | (__u64)'T' << 16 | (__u64)'P' << 24 | (__u64)'/' << 32 | (__u64)'1' << 40 | (__u64)'.' << 48)

/*
 * Do the bytes w[0, n) (n ≤ TR_FIRST_WIN: three little-endian words), which follow `have` bytes
 * that were all token characters (and the start of "HTTP/1." if `ver`), begin an HTTP/1.x
 * message? A response starts "HTTP/" (no method has a '/'), a request with a method, which is any
 * token (RFC 9110 §9.1: PROPFIND, MKCOL, …), and a space. FIRST_MORE: all tokens so far, too few
 * bytes to tell (FIRST_MORE_VER: and still "HTTP/1."). TLS, SSH banners ("SSH-2.0-…" then CRLF),
 * binary, a token longer than the window: FIRST_NOT. User space checks the whole start line.
 *
 * A global function, so the verifier checks it once on its own: inlined, its loops were walked
 * again for every path that reaches them, and sys_exit (a path per syscall kind) went past a
 * million insns. Its arguments are scalars (the bytes as words, have | ver << 8), which global
 * functions take on every kernel of the matrix.
 */
__noinline int tr_first_classify(__u64 w0, __u64 w1, __u64 w2, __u32 n, __u32 state)
{
	__u32 have = state & 0xff;
	bool ver = (state >> 8) & 1, strict = (state >> 9) & 1;
	if (n > TR_FIRST_WIN)
		n = TR_FIRST_WIN;
	/* "HTTP/1." from byte `have` on (have ≤ 4 where ver), 0 past its end */
	__u64 want = ver && have <= 4 ? HTTP_VER >> (have * 8) : 0;
	int tok = FIRST_MORE;
	for (__u32 i = 0; i < TR_FIRST_WIN; i++) {
		if (i >= n)
			break;
		__u8 c = (i < 8 ? w0 >> (i * 8) : i < 16 ? w1 >> ((i - 8) * 8) : w2 >> ((i - 16) * 8)) & 0xff;
		bool mc = strict ? (c >= 'A' && c <= 'Z') || (i && ((c >= '0' && c <= '9') || c == '-' || c == '_')) : tchar(c);
		if (!mc) {
			tok = (have | i) && c == ' ' ? FIRST_REQ : FIRST_NOT;
			/* a method in use has 3 characters at least: 'T /a …' is the tail of a request line */
			if (strict && i < 3)
				tok = FIRST_NOT;
			if (strict && tok == FIRST_REQ) {
				/* and the target's first byte: origin-form, asterisk, absolute-form (a scheme) */
				__u32 j = i + 1;
				if (j >= n || j >= TR_FIRST_WIN) {
					tok = FIRST_NOT;
				} else {
					__u8 t = (j < 8 ? w0 >> (j * 8) : j < 16 ? w1 >> ((j - 8) * 8) : w2 >> ((j - 16) * 8)) & 0xff;
					if (!(t == '/' || t == '*' || (t >= 'a' && t <= 'z') || (t >= 'A' && t <= 'Z')))
						tok = FIRST_NOT;
				}
			}
			break;
		}
	}
	bool res = false, still = want != 0;
	/* 8: the pattern's end (a zero byte) is a stop of its own */
	for (__u32 i = 0; i < 8; i++) {
		__u8 w = (want >> (i * 8)) & 0xff;
		if (!w || i >= n) {
			/* "HTTP/" at least, and as far as there are bytes "1." */
			res = still && have + i >= 5;
			break;
		}
		if (((w0 >> (i * 8)) & 0xff) != w) {
			still = false;
			break;
		}
	}
	if (res)
		return FIRST_RES;
	if (tok != FIRST_MORE)
		return tok;
	if (have + n >= TR_FIRST_WIN)
		return FIRST_NOT;
	return still ? FIRST_MORE_VER : FIRST_MORE;
}

/*
 * classify the `n` first bytes a syscall moved, after `have` undecided ones (see
 * tr_first_classify). `strict` (a continuation inside a run: pipelining): the method must look
 * like one in use (capitals, then capitals, digits, '-', '_', 3 at least; as user space's resync
 * in controller/tracing/http.ts) and the target must begin: body
 * text at a write's start ("Hello world") is a token and a space, and would cross the ring for
 * every such write of a text body.
 */
static __always_inline int classify(const __u64 *w, __u32 n, __u32 have, bool ver, bool strict)
{
	return tr_first_classify(w[0], w[1], w[2], n, have | (ver ? 0x100 : 0) | (strict ? 0x200 : 0));
}

/* copy up to `want` bytes from a user iovec array into e->data */
static __always_inline __u32 copy_iov(struct tr_event *e, const struct iovec *iov, __u32 iovcnt, __u64 want)
{
	__u32 off = 0;
	/* a bounded loop (5.3+), not unrolled: four copies of the copy would quadruple the program */
	for (int i = 0; i < TR_MAX_IOV; i++) {
		if (i >= iovcnt || off >= want)
			break;
		struct iovec v;
		if (bpf_probe_read_user(&v, sizeof(v), &iov[i]))
			break;
		/* 64-bit compares throughout: a 32-bit compare leaves the register's upper half unknown */
		__u64 n = v.iov_len;
		__u64 room = want - off;
		if (n > room)
			n = room;
		if (n > TR_MAX_CAP)
			n = TR_MAX_CAP;
		off &= TR_MAX_CAP - 1;
		if (n && bpf_probe_read_user(&e->data[off], n, v.iov_base))
			break;
		off += n;
	}
	return off;
}

/* user address of the first bytes a syscall moved (0: none to look at, e.g. sendfile) */
/* the first buffer a syscall moved bytes through; *blen its length (~0: the whole syscall's) */
static __always_inline __u64 first_buf(__u32 sys, __u64 buf, __u32 iovcnt, __u64 *blen)
{
	struct iovec v = {};
	*blen = ~0ULL;
	switch (sys) {
	case TR_SYS_READ: case TR_SYS_WRITE: case TR_SYS_SENDTO: case TR_SYS_RECVFROM:
		return buf;
	case TR_SYS_READV: case TR_SYS_WRITEV:
		if (iovcnt && !bpf_probe_read_user(&v, sizeof(v), (const void *)buf)) {
			*blen = v.iov_len;
			return (__u64)v.iov_base;
		}
		return 0;
	case TR_SYS_SENDMSG: case TR_SYS_RECVMSG: {
		struct user_msghdr m;
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)buf) || !m.msg_iovlen)
			return 0;
		if (!bpf_probe_read_user(&v, sizeof(v), m.msg_iov)) {
			*blen = v.iov_len;
			return (__u64)v.iov_base;
		}
		return 0;
	}
	default:
		return 0;
	}
}

static __always_inline __u64 first_bytes(__u32 sys, __u64 buf, __u32 iovcnt)
{
	__u64 blen;
	return first_buf(sys, buf, iovcnt, &blen);
}

/* 0 for 0, else floor(log2(v)) + 1 */
static __always_inline __u32 log2_bucket(__u64 v)
{
	if (!v)
		return 0;
	__u32 r = 1;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

static __always_inline void red_observe(__u32 service, __u32 role, __u32 cls, __u64 dur_ns)
{
	if (service >= TR_RED_SERVICES || role < 1 || role > TR_RED_ROLES || cls >= TR_RED_CLASSES)
		return;
	__u32 k = (service * TR_RED_ROLES + role - 1) * TR_RED_CLASSES + cls;
	struct tr_red *r = bpf_map_lookup_elem(&red, &k);
	if (!r)
		return;
	__u32 b = log2_bucket(dur_ns / 1000);
	if (b >= TR_RED_BUCKETS)
		b = TR_RED_BUCKETS - 1;
	/* atomic: a preempted run and another on this CPU may both be here (see the top) */
	__sync_fetch_and_add(&r->count[b], 1);
	__sync_fetch_and_add(&r->sum_ns, dur_ns);
}

static __always_inline void unsampled_add(__u32 tid, int d)
{
	__u32 *n = bpf_map_lookup_elem(&unsampled, &tid);
	if (d > 0) {
		if (n)
			__sync_fetch_and_add(n, 1);
		else {
			__u32 one = 1;
			bpf_map_update_elem(&unsampled, &tid, &one, BPF_NOEXIST);
		}
	} else if (n && *n)
		__sync_fetch_and_add(n, -1);
}

/* a socket's tuple as tr_tuple, IPv4 v4-mapped; `mirror` swaps the ends (the peer's view) */
static __always_inline void sock_tuple(struct tr_tuple *t, struct sock *sk, bool mirror)
{
	__u8 l[16] = {}, r[16] = {};
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET) {
		__u32 la = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 ra = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		l[10] = l[11] = r[10] = r[11] = 0xff;
		__builtin_memcpy(&l[12], &la, 4);
		__builtin_memcpy(&r[12], &ra, 4);
	} else {
		BPF_CORE_READ_INTO(&l, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&r, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	__u16 lp = BPF_CORE_READ(sk, __sk_common.skc_num);
	__u16 rp = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memcpy(t->laddr, mirror ? r : l, 16);
	__builtin_memcpy(t->raddr, mirror ? l : r, 16);
	t->lport = mirror ? rp : lp;
	t->rport = mirror ? lp : rp;
}

/* body counts pending on a socket go onto record e (and leave the socket) */
static __always_inline void move_skips(struct tr_event *e, struct tr_conn *st)
{
	e->skip_bytes = st->skip_bytes;
	e->skip_ts = st->skip_ts;
	e->skip_calls = st->skip_calls;
	e->skip_dir = st->skip_dir;
	st->skip_bytes = 0;
	st->skip_ts = 0;
	st->skip_calls = 0;
}

/* the open request that did not cross is over: its thread's count goes down */
static __always_inline void release_unsampled(struct tr_conn *st)
{
	if (!st->capture && st->req_tid)
		unsampled_add(st->req_tid, -1);
	st->req_tid = 0;
}

/* a syscall of `len` bytes in direction `dir`: a new run or more of the current one (saturating) */
static __always_inline void advance_run(struct tr_conn *st, __u32 dir, __u32 len)
{
	if (st->dir != dir) {
		st->dir = dir;
		st->run_bytes = 0;
	}
	st->run_bytes = st->run_bytes + len < st->run_bytes ? 0xffffffffu : st->run_bytes + len;
}

struct tr_call {
	__u64 buf;      /* user buffer, or iovec array, or msghdr */
	__u32 fd;
	__u32 sys;      /* enum tr_sys */
	__u32 iovcnt;
	__u32 service;
	__u32 slot;     /* the program's own scratch record (a preempted run keeps its record to itself) */
};

/* does this syscall send (the write family, sendfile) rather than receive? */
static __always_inline bool sys_sends(__u32 sys)
{
	return sys == TR_SYS_WRITE || sys == TR_SYS_WRITEV || sys == TR_SYS_SENDTO || sys == TR_SYS_SENDMSG || sys == TR_SYS_SENDFILE;
}

/* does a run in direction `dir` carry requests on this socket (server: in, client: out; no role: neither)? */
static __always_inline bool request_dir(const struct tr_conn *st, __u32 dir)
{
	return st->role == TR_ROLE_SERVER ? dir == TR_DIR_IN : st->role == TR_ROLE_CLIENT && dir == TR_DIR_OUT;
}

/* TCP states (include/net/tcp_states.h) */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7

/*
 * A socket first seen by a data hook: with sys_exit one that predates the tracer (accept_exit and
 * connect register the others); with the sock hooks every accepted one too, since they see no
 * accept. It must be a TCP socket behind the syscall's own fd (sock hooks: the kernel's own
 * sockets, e.g. NFS's, also pass there, in whatever task's context). A 32-bit task's syscall
 * numbers are another table, so what got here was some other call with a stray fd: the socket is
 * ignored from now on. Checked once per socket, not per call.
 */
static __always_inline struct tr_conn *first_sight(struct tr_call *a, struct sock *sk, struct file *f, const bool sockhook)
{
	if (sockhook) {
		/* the sock's own fields first: a unix socket's I/O ends here, before the fd walk */
		struct file *ff = NULL;
		if (!tcp_sk(sk) || fd_to_sock(a->fd, &ff, true) != sk)
			return NULL;
	} else if (!tcp_sock(f, sk))
		return NULL;
	/*
	 * Already closed: no state change will ever clear what would be tracked now, and the struct
	 * sock's address goes to another socket when it is freed. This happens on every write the peer
	 * answers with a reset: over loopback the RST is handled at the end of that very sendmsg (the
	 * socket's backlog, at release_sock), so TCP_CLOSE (which clears the socket's state) fires
	 * before the send hook does. Tracked again there, the stale entry was inherited by the next
	 * socket at that address, e.g. an untraced client's connection, whose ESTABLISHED then put its
	 * tuple into `local_clients`: every request on it crossed, as if from a traced client (3 of 16
	 * connections of a bench window, 20% of the requests sampled at 1%).
	 */
	if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE)
		return NULL;
	__u64 key = (__u64)sk;
	/*
	 * Tracked from now on, HTTP or not, so its close clears this state before the struct sock is
	 * reused: with the sock hooks nothing else resets it (no accept), and a reused address would
	 * inherit, say, non_http.
	 */
	struct tr_sock t = { .pid = bpf_get_current_pid_tgid() >> 32, .service = a->service, .cgroup_id = bpf_get_current_cgroup_id() };
	bpf_map_update_elem(&tracked, &key, &t, BPF_ANY);
	struct tr_conn z = { .capture = 1, .fresh = 1, .non_http = lab_compat_task() };
	bpf_map_update_elem(&conns, &key, &z, BPF_NOEXIST);
	return bpf_map_lookup_elem(&conns, &key);
}

/*
 * A first-seen socket's role is known (its first bytes): a server socket gets the accept record
 * accept_exit would have sent, and its `always` (a traced local client at the other end).
 */
static __always_inline void first_role(struct tr_conn *st, struct sock *sk, __u32 service)
{
	__u64 key = (__u64)sk;
	st->fresh = 0;
	if (st->role != TR_ROLE_SERVER)
		return;
	if (sample_thresh) {
		struct tr_tuple peer;
		sock_tuple(&peer, sk, true);
		st->always = bpf_map_lookup_elem(&local_clients, &peer) != NULL;
	}
	struct tr_event *e = reserve(TR_EV_ACCEPT, service);
	if (!e)
		return;
	e->sock = key;
	fill_tuple(e, sk);
	bpf_ringbuf_submit(e, wake_flags());
}

/*
 * The class of a final answer's status line ("HTTP/1.x NNN": 2-5, or 1 for 101 Switching
 * Protocols), 0 for an interim answer (1xx but 101) or anything else.
 */
static __always_inline __u32 status_class(const __u8 *q)
{
	if (q[0] != 'H' || q[1] != 'T' || q[2] != 'T' || q[3] != 'P' || q[4] != '/')
		return 0;
	if (q[9] >= '2' && q[9] <= '5')
		return q[9] - '0';
	return q[9] == '1' && q[10] == '0' && q[11] == '1' ? 1 : 0;
}

/*
 * An interim answer and the final one in one write (a server that had the body already writes
 * its 100 and its answer at once; a proxy relays both; a read returns both): the final answer's
 * class, found right after the interim head as servers write it, "HTTP/1.1 100 Continue\r\n\r\n"
 * (25 bytes) or "HTTP/1.1 102 Processing\r\n\r\n" (27); 0 when it is not there (a 103's head
 * carries Link fields: its final answer in the same write is not seen, and the request stays
 * open until the next one). Looked for in the syscall's first buffer only (writev: a head alone
 * in its iovec is followed by other memory), read at most 2 bytes past what it holds.
 */
static __always_inline __u32 final_in_same_write(struct tr_call *a, __u32 len)
{
	__u8 r[18] = {};
	__u64 blen;
	__u64 p = first_buf(a->sys, a->buf, a->iovcnt, &blen);
	if (blen < len)
		len = blen;
	if (!p || len < 37 || bpf_probe_read_user(r, sizeof(r), (const void *)(p + 21)))
		return 0;
	if (r[0] == '\r' && r[1] == '\n' && r[2] == '\r' && r[3] == '\n')
		return status_class(r + 4);
	if (len >= 39 && r[2] == '\r' && r[3] == '\n' && r[4] == '\r' && r[5] == '\n')
		return status_class(r + 6);
	return 0;
}

/* up to `max` (≤ TR_FIRST_WIN) first bytes a syscall moved, into h: how many (0: none to look at) */
static __always_inline __u32 peek_first(struct tr_call *a, __u32 len, __u8 *h, __u32 max)
{
	__u64 p = first_bytes(a->sys, a->buf, a->iovcnt);
	__u32 n = len < max ? len : max;
	barrier_var(n);
	if (n > TR_FIRST_WIN)
		n = TR_FIRST_WIN;
	/* unlinked from len (see classify) */
	barrier_var(n);
	n &= 31;
	if (!p || !n || bpf_probe_read_user(h, n, (const void *)p))
		return 0;
	return n;
}

/*
 * This read's first bytes go on from the socket's undecided first bytes; what they all say now.
 * Bytes that cannot be read (sendfile: none in user memory) leave the socket unclassified, as HTTP.
 */
static __always_inline int first_add(struct tr_conn *st, struct tr_call *a, __u32 len)
{
	__u64 h[3] = {};
	__u32 have = st->first_len;
	__u32 n = peek_first(a, len, (__u8 *)h, TR_FIRST_WIN);
	if (!n)
		return FIRST_UNKNOWN;
	if (!have)
		st->first_ts = bpf_ktime_get_ns();
	int c = classify(h, n, have, have ? st->first_ver : true, false);
	if (c == FIRST_MORE || c == FIRST_MORE_VER) {
		st->first_len = have + n;
		st->first_ver = c == FIRST_MORE_VER;
		return FIRST_MORE;
	}
	return c;
}

/* a syscall of `a` moved `ret` bytes on socket sk (f: its file where the caller resolved it) */
static __always_inline int sock_data(struct tr_call a, struct sock *sk, struct file *f, long ret, const bool sockhook)
{
	__u64 key = (__u64)sk;
	struct tr_conn *st = bpf_map_lookup_elem(&conns, &key);
	if (!st) {
		st = first_sight(&a, sk, f, sockhook);
		if (!st)
			return 0;
	}
	if (st->non_http) {
		count_filtered(1);
		return 0;
	}
	__u32 len = ret > 0xffffffffL ? 0xffffffffu : (__u32)ret;
	__u32 dir = sys_sends(a.sys) ? TR_DIR_OUT : TR_DIR_IN;
	__u32 cap = cap_bytes < TR_MAX_CAP ? cap_bytes : TR_MAX_CAP;
	__u32 parent_unsampled = 0;
	bool skip_flush = false;
	bool run_start = st->dir != dir;
	/* the first bytes decided the role on a later read of the first run: that run's request starts now */
	bool late_request = false;
	if (st->dir == 0 || st->first_len) {
		/*
		 * The socket's first bytes say whether it is HTTP and its role. They may come in pieces
		 * (a first read of one byte, a long method split): kept in the socket until they tell.
		 * The other side speaking before they did is not HTTP.
		 */
		bool role_known = st->role;
		int c = st->first_len && run_start ? FIRST_NOT : first_add(st, &a, len);
		if (c == FIRST_NOT) {
			/* not HTTP/1.x from its first bytes: this socket sends nothing from now on */
			st->non_http = 1;
			st->first_len = 0;
			count_filtered(1);
			return 0;
		}
		if (c == FIRST_UNKNOWN)
			st->first_len = 0;
		if (c == FIRST_REQ || c == FIRST_RES) {
			late_request = !run_start && !role_known;
			st->first_len = 0;
			if (!st->role)
				st->role = (c == FIRST_RES) == (dir == TR_DIR_IN) ? TR_ROLE_CLIENT : TR_ROLE_SERVER;
			if (st->fresh)
				first_role(st, sk, a.service);
		}
	}
	if (run_start || late_request) {
		/*
		 * A new run: a request's (RED, sampling) or a response's (RED: its status class from its
		 * first bytes; no peek for a request: a user-memory read per request).
		 */
		__u8 h[16] = {};
		bool is_req = request_dir(st, dir);
		__u64 p = 0;
		if (run_start && !is_req && st->req_ts) {
			p = first_bytes(a.sys, a.buf, a.iovcnt);
			if (p && len >= 12)
				bpf_probe_read_user(h, 12, (const void *)p);
		}
		__u64 now = bpf_ktime_get_ns();
		/*
		 * After a 100 Continue the next request bytes are that request's body (RFC 9110 §15.2.1),
		 * unless they begin a new request (the final answer came in the same run as the 100). Taken
		 * for a new request, the body was counted as one more in RED and sampled again: sampled out,
		 * it and the final answer never crossed, and user space paired the upload with the next
		 * request's answer (review, session 63).
		 */
		bool body = false;
		/* (after a 103 too: sent as soon as the head arrived, the upload's rest follows it) */
		if (is_req && st->cont) {
			__u64 w[3] = {};
			__u32 n = peek_first(&a, len, (__u8 *)w, TR_FIRST_WIN);
			body = !(n && classify(w, n, 0, true, true) == FIRST_REQ);
		}
		st->cont = 0;
		if (body) {
			/* the same request goes on: its timing, sampling and thread stay */
		} else if (is_req) {
			if (st->req_ts)
				/* the previous request never saw a response start (a run of requests, e.g. pipelined) */
				red_observe(a.service, st->role, 0, now - st->req_ts);
			release_unsampled(st);
			/* a request whose first bytes came before its role was known started with them */
			st->req_ts = late_request ? st->first_ts : now;
			/* … and those bytes have crossed already: so does the rest of it */
			bool keep = late_request || !sample_thresh || st->always || st->role == TR_ROLE_CLIENT || bpf_get_prandom_u32() < sample_thresh;
			/* counts of a crossed exchange still pending when the next one does not cross: sent on their own */
			skip_flush = !keep && st->capture && st->skip_calls;
			st->capture = keep;
			if (!keep) {
				__u32 tid = (__u32)bpf_get_current_pid_tgid();
				st->req_tid = tid;
				unsampled_add(tid, 1);
			}
		} else if (st->req_ts) {
			/* a response starts: RED for the request it answers (status class from "HTTP/1.x NNN") */
			__u32 cls = h[0] == 'H' && h[1] == 'T' && h[2] == 'T' && h[3] == 'P' && h[9] >= '1' && h[9] <= '5' ? h[9] - '0' : 0;
			__u32 fin = 0;
			if (cls == 1 && !(h[10] == '0' && h[11] == '1') && !(fin = final_in_same_write(&a, len))) {
				/*
				 * An interim answer (100 Continue, 102 Processing, 103 Early Hints): not the
				 * answer; the request (and its body) goes on. 101 Switching Protocols is final.
				 */
				st->cont = 1;
			} else {
				if (fin)
					cls = fin; /* the final answer came in the interim one's write */
				red_observe(a.service, st->role, cls, now - st->req_ts);
				st->req_ts = 0;
				release_unsampled(st);
			}
		}
		if (is_req && st->role == TR_ROLE_CLIENT) {
			__u32 tid = (__u32)bpf_get_current_pid_tgid();
			__u32 *n = bpf_map_lookup_elem(&unsampled, &tid);
			parent_unsampled = n ? *n : 0;
		}
	}
	/*
	 * Inside the run that began with an interim answer, a later syscall may carry the answer (a
	 * server that had the body already writes the 100 and its answer one after the other; a 103's
	 * answer follows when it is ready): its status ends the request as a new run's would (another
	 * interim one does not). One peek per syscall, only while an interim answer is open.
	 */
	if (!run_start && st->cont && st->req_ts && !request_dir(st, dir)) {
		__u8 r[12] = {};
		__u64 p = first_bytes(a.sys, a.buf, a.iovcnt);
		__u32 fin = p && len >= 12 && !bpf_probe_read_user(r, 12, (const void *)p) ? status_class(r) : 0;
		/* another interim answer: the final one may follow it in this write */
		if (!fin && r[0] == 'H' && r[9] == '1')
			fin = final_in_same_write(&a, len);
		if (fin) {
			red_observe(a.service, st->role, fin, bpf_ktime_get_ns() - st->req_ts);
			st->req_ts = 0;
			st->cont = 0;
			release_unsampled(st);
		}
	}
	if (skip_flush) {
		struct tr_event *f = reserve(TR_EV_SKIP, a.service);
		if (f) {
			f->sock = key;
			move_skips(f, st);
			bpf_ringbuf_submit(f, wake_flags());
		}
		st->skip_bytes = 0;
		st->skip_ts = 0;
		st->skip_calls = 0;
	}
	if (!st->capture) {
		/* an exchange that does not cross: only the run state moves */
		advance_run(st, dir, len);
		return 0;
	}
	if (st->dir == dir && st->run_bytes >= cap) {
		/* a continuation past the captured start of this run: only a new HTTP message crosses */
		__u64 h[3] = {};
		__u32 n = peek_first(&a, len, (__u8 *)h, TR_FIRST_WIN);
		int c = n ? classify(h, n, 0, true, true) : FIRST_NOT;
		if (c != FIRST_REQ && c != FIRST_RES) {
			st->skip_bytes += len;
			st->skip_ts = bpf_ktime_get_ns();
			st->skip_calls++;
			st->skip_dir = dir;
			count_filtered(0);
			return 0;
		}
	}
	__u32 slot = a.slot;
	struct tr_event *e = bpf_map_lookup_elem(&scratch, &slot);
	if (!e)
		return 0;
	fill_header(e, TR_EV_DATA, a.service);
	if (st->skip_calls)
		move_skips(e, st);
	e->unsampled = parent_unsampled;
	advance_run(st, dir, len);
	e->sock = key;
	fill_tuple(e, sk);
	e->sys = a.sys;
	e->len = len;
	e->dir = dir;
	__u64 want = len < cap ? len : cap;
	__u32 got = 0;
	switch (a.sys) {
	case TR_SYS_READ: case TR_SYS_WRITE: case TR_SYS_SENDTO: case TR_SYS_RECVFROM:
	{
		/* bounded right at the call: 6.1's verifier loses a bound checked before a spill */
		__u32 n = want;
		barrier_var(n);
		if (n > TR_MAX_CAP)
			n = TR_MAX_CAP;
		if (n && !bpf_probe_read_user(e->data, n, (const void *)a.buf))
			got = n;
	}
		break;
	case TR_SYS_READV: case TR_SYS_WRITEV:
		got = copy_iov(e, (const struct iovec *)a.buf, a.iovcnt, want);
		break;
	case TR_SYS_SENDMSG: case TR_SYS_RECVMSG: {
		struct user_msghdr m;
		if (!bpf_probe_read_user(&m, sizeof(m), (const void *)a.buf))
			got = copy_iov(e, (const struct iovec *)m.msg_iov, (__u32)m.msg_iovlen, want);
		break;
	}
	default: /* sendfile: the bytes come from a file, only their count crosses */
		break;
	}
	got &= 2 * TR_MAX_CAP - 1;
	e->cap_len = got;
	if (bpf_ringbuf_output(&events, e, TR_HDR_SIZE + got, wake_flags()))
		lab_count(&lost);
	return 0;
}

static __always_inline int data_exit(struct tr_call a, long ret, const bool btf)
{
	struct file *f = NULL;
	struct sock *sk = fd_to_sock(a.fd, &f, btf);
	if (!sk)
		return 0;
	return sock_data(a, sk, f, ret, false);
}

/* accept/accept4 returned `fd`: the server side of a connection, tracked from now on */
static __always_inline int accept_exit(__u32 fd, __u32 service, const bool btf)
{
	if (lab_compat_task())
		return 0;
	struct sock *sk = fd_to_tcp_sock(fd, btf);
	if (!sk)
		return 0;
	__u64 key = (__u64)sk;
	struct tr_sock t = { .pid = bpf_get_current_pid_tgid() >> 32, .service = service, .cgroup_id = bpf_get_current_cgroup_id() };
	bpf_map_update_elem(&tracked, &key, &t, BPF_ANY);
	/* a struct sock address is reused: a new connection starts with fresh filter state */
	struct tr_conn z = { .role = TR_ROLE_SERVER, .capture = 1 };
	if (sample_thresh) {
		struct tr_tuple peer;
		sock_tuple(&peer, sk, true);
		z.always = bpf_map_lookup_elem(&local_clients, &peer) != NULL;
	}
	bpf_map_update_elem(&conns, &key, &z, BPF_ANY);
	struct tr_event *e = reserve(TR_EV_ACCEPT, service);
	if (!e)
		return 0;
	e->sock = key;
	fill_tuple(e, sk);
	bpf_ringbuf_submit(e, wake_flags());
	return 0;
}

static __always_inline __u32 sys_of(__u64 nr)
{
	switch (nr) {
	case NR_READ: return TR_SYS_READ;
	case NR_WRITE: return TR_SYS_WRITE;
	case NR_READV: return TR_SYS_READV;
	case NR_WRITEV: return TR_SYS_WRITEV;
	case NR_SENDTO: return TR_SYS_SENDTO;
	case NR_RECVFROM: return TR_SYS_RECVFROM;
	case NR_SENDMSG: return TR_SYS_SENDMSG;
	case NR_RECVMSG: return TR_SYS_RECVMSG;
	case NR_SENDFILE: return TR_SYS_SENDFILE;
	case NR_ACCEPT: case NR_ACCEPT4: return SYS_ACCEPT;
	default: return 0;
	}
}


/*
 * With a standby copy attached (see the top): the primary counts the events it took, per thread;
 * the standby takes an event only if the primary's count did not move for it, i.e. the kernel
 * skipped the primary. false: this copy leaves the event alone.
 */
static __always_inline bool relay_take(const __u32 copy)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct tr_relay *r = bpf_map_lookup_elem(&relay, &tid);
	if (!copy) {
		if (r)
			r->primary++;
		else {
			struct tr_relay n = { .primary = 1 };
			bpf_map_update_elem(&relay, &tid, &n, BPF_NOEXIST);
		}
		return true;
	}
	if (r && r->primary != r->seen) {
		r->seen = r->primary;
		return false;
	}
	if (!r) {
		struct tr_relay n = {};
		bpf_map_update_elem(&relay, &tid, &n, BPF_NOEXIST);
	}
	count_filtered(2);
	return true;
}

/*
 * Every syscall of every task returns through here, so the order is by cost: the syscall number
 * (one read) rules out all but a few, a failed call or EOF ends it, then the workload filter.
 */
/* `btf`: regs is a typed pointer (tp_btf) and its fields are plain loads; else helper reads (raw_tp) */
static __always_inline int on_sys_exit(struct pt_regs *regs, __u32 sys, long ret, const bool btf, const __u32 copy)
{
	if (ret < 0 || (ret == 0 && sys != SYS_ACCEPT))
		return 0;
	__u32 service = selected();
	if (!service)
		return 0;
	if (standby_on && !relay_take(copy))
		return 0;
	/* sendfile(out_fd, in_fd, …): the socket is out_fd, the first argument like every other */
	if (sys == SYS_ACCEPT)
		return accept_exit((__u32)ret, service, btf);
	struct tr_call a = { .sys = sys, .service = service, .slot = copy };
	a.fd = (__u32)(btf ? SYSCALL_ARG1(regs) : PT_REGS_PARM1_CORE_SYSCALL(regs));
	if (sys != TR_SYS_SENDFILE)
		a.buf = btf ? SYSCALL_ARG2(regs) : PT_REGS_PARM2_CORE_SYSCALL(regs);
	if (sys == TR_SYS_READV || sys == TR_SYS_WRITEV)
		a.iovcnt = (__u32)(btf ? SYSCALL_ARG3(regs) : PT_REGS_PARM3_CORE_SYSCALL(regs));
	return data_exit(a, ret, btf);
}

SEC("raw_tp/sys_exit")
int sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	__u32 sys = sys_of(SYSCALL_NR(regs));
	if (!sys)
		return 0;
	return on_sys_exit(regs, sys, (long)ctx->args[1], false, 0);
}

/* the same with BTF: regs is a typed pointer, the syscall number a plain load instead of a helper call */
static __always_inline int btf_sys_exit(struct pt_regs *regs, long ret, const __u32 copy)
{
	__u32 sys = sys_of(regs->orig_ax);
	if (!sys)
		return 0;
	return on_sys_exit(regs, sys, ret, true, copy);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit_btf, struct pt_regs *regs, long ret)
{
	return btf_sys_exit(regs, ret, 0);
}

/* the standby copy, attached behind sys_exit_btf where syscall tracepoints run preemptibly */
SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit_standby, struct pt_regs *regs, long ret)
{
	return btf_sys_exit(regs, ret, 1);
}

/*
 * The sock hooks (6.3+): sock:sock_recv_length and sock:sock_send_length fire in sock_recvmsg and
 * sock_sendmsg, i.e. only for socket I/O, with the struct sock in hand. Where they exist they
 * replace sys_exit: no program on every other syscall of every task (sys_exit made every syscall
 * take the kernel's slow exit path as well) and no fd → file → socket walk per call. Ordinary
 * tracepoints ran their programs with preemption off until 7.0, which made them preemptible
 * (SRCU-fast, a46023d5616): there, on a preempting kernel, they get the standby copy as sys_exit
 * does (see the top). The user buffer is still the
 * syscall's, from the task's saved registers: the hook fires after the copy, so it holds the bytes.
 * I/O not made by one of the traced syscalls (io_uring, splice, the kernel's own sockets in a
 * task's context) has another or no syscall number there, or a direction that disagrees: skipped.
 */
#define MSG_PEEK 2

static __always_inline int sock_io(struct sock *sk, int ret, int flags, const bool out, const __u32 copy)
{
	/* MSG_PEEK: the same bytes come again with the read that takes them */
	if (ret <= 0 || (!out && (flags & MSG_PEEK)))
		return 0;
	__u32 service = selected();
	if (!service)
		return 0;
	if (standby_on && !relay_take(copy))
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs)
		return 0;
	__u32 sys = sys_of(regs->orig_ax);
	if (!sys || sys == SYS_ACCEPT)
		return 0;
	if (sys_sends(sys) != out)
		return 0;
	/* slots: recv 0, send 1, their standbys 2 and 3 */
	struct tr_call a = { .sys = sys, .service = service, .slot = copy * 2 + out };
	a.fd = (__u32)SYSCALL_ARG1(regs);
	if (sys != TR_SYS_SENDFILE)
		a.buf = SYSCALL_ARG2(regs);
	if (sys == TR_SYS_READV || sys == TR_SYS_WRITEV)
		a.iovcnt = (__u32)SYSCALL_ARG3(regs);
	return sock_data(a, sk, NULL, ret, true);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv, struct sock *sk, int ret, int flags)
{
	return sock_io(sk, ret, flags, false, 0);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send, struct sock *sk, int ret, int flags)
{
	return sock_io(sk, ret, flags, true, 0);
}

/* standby copies (see the top): where tracepoint programs run preemptibly (7.0+ on a preempting kernel) */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv_standby, struct sock *sk, int ret, int flags)
{
	return sock_io(sk, ret, flags, false, 1);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send_standby, struct sock *sk, int ret, int flags)
{
	return sock_io(sk, ret, flags, true, 1);
}

/* the tuple of a state change, as `local_clients` keys it (the tracepoint stores IPv4 v4-mapped) */
static __always_inline void state_tuple(struct tr_tuple *tu, struct trace_event_raw_inet_sock_set_state *ctx)
{
	tu->lport = ctx->sport;
	tu->rport = ctx->dport;
	bpf_probe_read_kernel(tu->laddr, 16, ctx->saddr_v6);
	bpf_probe_read_kernel(tu->raddr, 16, ctx->daddr_v6);
}

SEC("tracepoint/sock/inet_sock_set_state")
int sock_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	__u64 key = (__u64)ctx->skaddr;
	struct tr_sock *t;
	__u32 kind;
	__u32 service;
	if (ctx->oldstate == TCP_CLOSE && ctx->newstate == TCP_SYN_SENT) {
		/* connect(): runs in the caller's context, so the workload filter applies */
		service = selected();
		if (!service)
			return 0;
		struct tr_sock n = { .pid = bpf_get_current_pid_tgid() >> 32, .service = service, .cgroup_id = bpf_get_current_cgroup_id() };
		bpf_map_update_elem(&tracked, &key, &n, BPF_ANY);
		struct tr_conn z = { .role = TR_ROLE_CLIENT, .always = 1, .capture = 1, .non_http = lab_compat_task() };
		bpf_map_update_elem(&conns, &key, &z, BPF_ANY);
		kind = TR_EV_CONNECT;
	} else {
		t = bpf_map_lookup_elem(&tracked, &key);
		if (!t)
			return 0;
		service = t->service;
		if (ctx->newstate == TCP_ESTABLISHED) {
			kind = TR_EV_ESTABLISHED;
			/* only a connect() of a traced workload names a local client (not a stale entry's reuse) */
			struct tr_conn *c = bpf_map_lookup_elem(&conns, &key);
			if (sample_thresh && c && c->role == TR_ROLE_CLIENT) {
				/* this client's tuple: the server that accepts it (if traced) always crosses */
				struct tr_tuple tu;
				state_tuple(&tu, ctx);
				__u32 one = 1;
				bpf_map_update_elem(&local_clients, &tu, &one, BPF_ANY);
			}
		}
		else if (ctx->newstate == TCP_CLOSE)
			kind = TR_EV_CLOSE;
		else
			return 0;
	}
	struct tr_event *e = reserve(kind, service);
	if (!e)
		return 0;
	if (kind == TR_EV_CONNECT && sample_thresh) {
		/* a refused connect's span is linked from this record: the caller's open requests that did not cross */
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		__u32 *n = bpf_map_lookup_elem(&unsampled, &tid);
		e->unsampled = n ? *n : 0;
	} else if (kind != TR_EV_CONNECT) {
		/* softirq context: the current task is whoever was interrupted */
		t = bpf_map_lookup_elem(&tracked, &key);
		if (t) {
			e->pid = t->pid;
			e->tid = 0;
			e->cgroup_id = t->cgroup_id;
		}
		if (kind == TR_EV_CLOSE) {
			bpf_map_delete_elem(&tracked, &key);
			/* body bytes still only counted ride on the close record */
			struct tr_conn *st = bpf_map_lookup_elem(&conns, &key);
			if (st) {
				if (st->capture)
					move_skips(e, st);
				if (st->req_ts)
					/* a request closed before any response: status class 0 */
					red_observe(service, st->role, 0, bpf_ktime_get_ns() - st->req_ts);
				release_unsampled(st);
				bpf_map_delete_elem(&conns, &key);
			}
			if (sample_thresh) {
				struct tr_tuple tu;
				state_tuple(&tu, ctx);
				bpf_map_delete_elem(&local_clients, &tu);
			}
		}
	}
	e->sock = key;
	e->old_state = ctx->oldstate;
	e->new_state = ctx->newstate;
	e->family = ctx->family;
	e->lport = ctx->sport;
	e->rport = ctx->dport;
	/* copied with a helper: the verifier refuses loads through an offset tracepoint ctx pointer */
	if (ctx->family == AF_INET) {
		bpf_probe_read_kernel(e->laddr, 4, ctx->saddr);
		bpf_probe_read_kernel(e->raddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e->laddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e->raddr, 16, ctx->daddr_v6);
	}
	bpf_ringbuf_submit(e, wake_flags());
	return 0;
}
