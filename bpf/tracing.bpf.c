// Zero-code HTTP tracing, kernel side. Only tracepoints (syscalls + sock:inet_sock_set_state), so
// one object runs on every kernel of the matrix, including hosts without kprobes/fentry.
//
// Payload: sys_enter_* saves the buffer pointer of the selected workloads' socket syscalls per
// thread; sys_exit_* knows how many bytes really moved, resolves the fd to its struct sock
// (task → files → fdtable → file → socket → sk) and copies the first cap_bytes into the ring.
// Reading at exit, not at enter, means a read's buffer holds what arrived and a partial write is
// reported with the length that went out. HTTP parsing happens in TypeScript (bounded there).
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

static __always_inline struct tr_event *reserve(__u32 kind, __u32 service)
{
	struct tr_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		lab_count(&lost);
		return NULL;
	}
	__u64 id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
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
	return e;
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
	struct tr_event *e = reserve(TR_EV_DATA, a.service);
	if (!e)
		return 0;
	e->sock = (__u64)sk;
	fill_tuple(e, sk);
	e->sys = a.sys;
	e->len = ret > 0xffffffffL ? 0xffffffffu : (__u32)ret;
	bool out = a.sys == TR_SYS_WRITE || a.sys == TR_SYS_WRITEV || a.sys == TR_SYS_SENDTO || a.sys == TR_SYS_SENDMSG ||
		   a.sys == TR_SYS_SENDFILE;
	e->dir = out ? TR_DIR_OUT : TR_DIR_IN;
	__u32 cap = cap_bytes < TR_MAX_CAP ? cap_bytes : TR_MAX_CAP;
	__u64 want = e->len < cap ? e->len : cap;
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
	e->cap_len = got;
	bpf_ringbuf_submit(e, 0);
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
		if (kind == TR_EV_CLOSE)
			bpf_map_delete_elem(&tracked, &key);
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
