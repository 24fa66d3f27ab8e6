// Zero-code HTTP tracing, kernel side. Only tracepoints (syscalls + sock:inet_sock_set_state), so
// one object runs on every kernel of the matrix, including hosts without kprobes/fentry.
//
// Payload: sys_enter_* saves the buffer pointer of the selected workloads' socket syscalls per
// thread; sys_exit_* knows how many bytes really moved, resolves the fd to its struct sock
// (task → files → fdtable → file → socket → sk) and copies the first cap_bytes into the ring.
// Reading at exit, not at enter, means a read's buffer holds what arrived and a partial write is
// reported with the length that went out. HTTP parsing happens in TypeScript (bounded there).
//
// Kernel-side filter (per socket, map `conns`): a record crosses only for the first bytes of each
// run of one direction (the first cap_bytes of a request or a response, split reads included) and
// for a continuation that starts like an HTTP message (pipelining). Other continuation syscalls
// (body bytes) are only counted; the count and the time of the last one ride on the socket's next
// record. A socket whose first bytes are not HTTP/1.x sends nothing more (TLS, databases, …).
// Records carry only the bytes captured (bpf_ringbuf_output of header + cap_len from a per-CPU
// scratch record), lifecycle records only the header.
//
// Lifecycle: the CLOSE→SYN_SENT transition runs in the connecting task's context, so selection
// works there; later transitions (ESTABLISHED, CLOSE) run in softirq and are reported only for
// sockets in `tracked`. Server sockets enter `tracked` at accept4's exit.
#include "include/lab.h"
#include "tracing.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* set by the loader before load */
const volatile __u32 cap_bytes = 256;

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

/* syscall arguments between enter and exit, per thread */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct tr_args);
} inflight SEC(".maps");

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

/* a data record is assembled here, then only its used part goes into the ring */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tr_event);
} scratch SEC(".maps");

/* syscalls the filter kept out of the ring: [0] body continuations, [1] non-HTTP sockets */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} filtered SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

LAB_LOST_COUNTER(lost);
LAB_EXPORT(tr_event);

static __always_inline __u32 selected(void)
{
	__u64 cg = bpf_get_current_cgroup_id();
	__u32 *s = bpf_map_lookup_elem(&sel_cgroups, &cg);
	if (s)
		return *s;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	s = bpf_map_lookup_elem(&sel_pids, &tgid);
	return s ? *s : 0;
}

/* fd of the current task → its TCP struct sock, or NULL */
static __always_inline struct sock *fd_to_tcp_sock(__u32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *so = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(so, sk);
	if (!sk)
		return NULL;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	return sk;
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
	e->_pad = 0;
	__builtin_memset(e->laddr, 0, sizeof(e->laddr));
	__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	bpf_get_current_comm(e->comm, sizeof(e->comm));
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
		(*c)++;
}

/* do these 4 bytes (little-endian load) begin an HTTP/1.x request or response? */
static __always_inline bool http_start(__u32 w)
{
#define W(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)
	return w == W('G', 'E', 'T', ' ') || w == W('P', 'O', 'S', 'T') || w == W('P', 'U', 'T', ' ') || w == W('H', 'E', 'A', 'D') ||
	       w == W('D', 'E', 'L', 'E') || w == W('O', 'P', 'T', 'I') || w == W('P', 'A', 'T', 'C') || w == W('C', 'O', 'N', 'N') ||
	       w == W('T', 'R', 'A', 'C') || w == W('H', 'T', 'T', 'P');
#undef W
}

static __always_inline int save_args(struct trace_event_raw_sys_enter *ctx, __u32 sys, __u64 buf, __u32 iovcnt)
{
	__u32 service = selected();
	if (!service)
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct tr_args a = { .buf = buf, .fd = (__u32)ctx->args[0], .sys = sys, .iovcnt = iovcnt, .service = service };
	bpf_map_update_elem(&inflight, &tid, &a, BPF_ANY);
	return 0;
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
static __always_inline __u64 first_bytes(const struct tr_args *a)
{
	struct iovec v = {};
	switch (a->sys) {
	case TR_SYS_READ: case TR_SYS_WRITE: case TR_SYS_SENDTO: case TR_SYS_RECVFROM:
		return a->buf;
	case TR_SYS_READV: case TR_SYS_WRITEV:
		if (a->iovcnt && !bpf_probe_read_user(&v, sizeof(v), (const void *)a->buf))
			return (__u64)v.iov_base;
		return 0;
	case TR_SYS_SENDMSG: case TR_SYS_RECVMSG: {
		struct user_msghdr m;
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)a->buf) || !m.msg_iovlen)
			return 0;
		if (!bpf_probe_read_user(&v, sizeof(v), m.msg_iov))
			return (__u64)v.iov_base;
		return 0;
	}
	default:
		return 0;
	}
}

static __always_inline int data_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct tr_args *ap = bpf_map_lookup_elem(&inflight, &tid);
	if (!ap)
		return 0;
	struct tr_args a = *ap;
	bpf_map_delete_elem(&inflight, &tid);
	long ret = ctx->ret;
	if (ret <= 0)
		return 0;
	struct sock *sk = fd_to_tcp_sock(a.fd);
	if (!sk)
		return 0;
	__u64 key = (__u64)sk;
	struct tr_conn *st = bpf_map_lookup_elem(&conns, &key);
	if (!st) {
		struct tr_conn z = {};
		bpf_map_update_elem(&conns, &key, &z, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&conns, &key);
		if (!st)
			return 0;
	}
	if (st->non_http) {
		count_filtered(1);
		return 0;
	}
	__u32 len = ret > 0xffffffffL ? 0xffffffffu : (__u32)ret;
	bool out = a.sys == TR_SYS_WRITE || a.sys == TR_SYS_WRITEV || a.sys == TR_SYS_SENDTO || a.sys == TR_SYS_SENDMSG ||
		   a.sys == TR_SYS_SENDFILE;
	__u32 dir = out ? TR_DIR_OUT : TR_DIR_IN;
	__u32 cap = cap_bytes < TR_MAX_CAP ? cap_bytes : TR_MAX_CAP;
	if (st->dir == dir && st->run_bytes >= cap) {
		/* a continuation past the captured start of this run: only a new HTTP message crosses */
		__u64 p = first_bytes(&a);
		__u32 w = 0;
		if (!p || len < 4 || bpf_probe_read_user(&w, 4, (const void *)p) || !http_start(w)) {
			st->skip_bytes += len;
			st->skip_ts = bpf_ktime_get_ns();
			st->skip_calls++;
			count_filtered(0);
			return 0;
		}
	}
	__u32 zero = 0;
	struct tr_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	fill_header(e, TR_EV_DATA, a.service);
	if (st->skip_calls) {
		e->skip_bytes = st->skip_bytes;
		e->skip_ts = st->skip_ts;
		e->skip_calls = st->skip_calls;
		e->skip_dir = st->dir;
		st->skip_bytes = 0;
		st->skip_ts = 0;
		st->skip_calls = 0;
	}
	bool first = st->dir == 0;
	if (st->dir != dir) {
		st->dir = dir;
		st->run_bytes = 0;
	}
	st->run_bytes = st->run_bytes + len < st->run_bytes ? 0xffffffffu : st->run_bytes + len;
	e->sock = key;
	fill_tuple(e, sk);
	e->sys = a.sys;
	e->len = len;
	e->dir = dir;
	__u64 want = len < cap ? len : cap;
	__u32 got = 0;
	switch (a.sys) {
	case TR_SYS_READ: case TR_SYS_WRITE: case TR_SYS_SENDTO: case TR_SYS_RECVFROM:
		if (want > TR_MAX_CAP)
			want = TR_MAX_CAP;
		if (want && !bpf_probe_read_user(e->data, want, (const void *)a.buf))
			got = want;
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
	if (first && got >= 4) {
		__u32 w;
		__builtin_memcpy(&w, e->data, 4);
		if (!http_start(w)) {
			/* not HTTP/1.x from its first bytes: this socket sends nothing from now on */
			st->non_http = 1;
			count_filtered(1);
			return 0;
		}
	}
	got &= 2 * TR_MAX_CAP - 1;
	e->cap_len = got;
	if (bpf_ringbuf_output(&events, e, TR_HDR_SIZE + got, 0))
		lab_count(&lost);
	return 0;
}

#define DATA_PAIR(name, sysno, bufarg, cntarg)                                                 \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                            \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)                                 \
	{                                                                                      \
		return save_args(ctx, sysno, (__u64)ctx->args[bufarg], cntarg);               \
	}                                                                                      \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                             \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)                                   \
	{                                                                                      \
		return data_exit(ctx);                                                         \
	}

DATA_PAIR(read, TR_SYS_READ, 1, 0)
DATA_PAIR(write, TR_SYS_WRITE, 1, 0)
DATA_PAIR(readv, TR_SYS_READV, 1, (__u32)ctx->args[2])
DATA_PAIR(writev, TR_SYS_WRITEV, 1, (__u32)ctx->args[2])
DATA_PAIR(sendto, TR_SYS_SENDTO, 1, 0)
DATA_PAIR(recvfrom, TR_SYS_RECVFROM, 1, 0)
DATA_PAIR(sendmsg, TR_SYS_SENDMSG, 1, 0)
DATA_PAIR(recvmsg, TR_SYS_RECVMSG, 1, 0)

/* sendfile(out_fd, in_fd, …): the socket is out_fd (args[0]) */
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int enter_sendfile(struct trace_event_raw_sys_enter *ctx)
{
	return save_args(ctx, TR_SYS_SENDFILE, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_sendfile64")
int exit_sendfile(struct trace_event_raw_sys_exit *ctx)
{
	return data_exit(ctx);
}

SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(struct trace_event_raw_sys_enter *ctx)
{
	return save_args(ctx, 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct tr_args *ap = bpf_map_lookup_elem(&inflight, &tid);
	if (!ap)
		return 0;
	__u32 service = ap->service;
	bpf_map_delete_elem(&inflight, &tid);
	if (ctx->ret < 0)
		return 0;
	struct sock *sk = fd_to_tcp_sock((__u32)ctx->ret);
	if (!sk)
		return 0;
	__u64 key = (__u64)sk;
	struct tr_sock t = { .pid = bpf_get_current_pid_tgid() >> 32, .service = service, .cgroup_id = bpf_get_current_cgroup_id() };
	bpf_map_update_elem(&tracked, &key, &t, BPF_ANY);
	/* a struct sock address is reused: a new connection starts with fresh filter state */
	bpf_map_delete_elem(&conns, &key);
	struct tr_event *e = reserve(TR_EV_ACCEPT, service);
	if (!e)
		return 0;
	e->sock = key;
	fill_tuple(e, sk);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7

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
		bpf_map_delete_elem(&conns, &key);
		kind = TR_EV_CONNECT;
	} else {
		t = bpf_map_lookup_elem(&tracked, &key);
		if (!t)
			return 0;
		service = t->service;
		if (ctx->newstate == TCP_ESTABLISHED)
			kind = TR_EV_ESTABLISHED;
		else if (ctx->newstate == TCP_CLOSE)
			kind = TR_EV_CLOSE;
		else
			return 0;
	}
	struct tr_event *e = reserve(kind, service);
	if (!e)
		return 0;
	if (kind != TR_EV_CONNECT) {
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
				e->skip_bytes = st->skip_bytes;
				e->skip_ts = st->skip_ts;
				e->skip_calls = st->skip_calls;
				e->skip_dir = st->dir;
				bpf_map_delete_elem(&conns, &key);
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
	bpf_ringbuf_submit(e, 0);
	return 0;
}
