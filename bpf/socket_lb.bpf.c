/* Service load balancing at the socket layer (sidecar-less, kube-proxy replacement style).
 *
 * cgroup connect4/6 rewrites a service address (VIP:port) to a backend chosen here, before the
 * kernel routes the socket: TCP and connected UDP then talk to the backend directly and no packet
 * is ever NATed (no conntrack, no per-packet work). Unconnected UDP gets the same choice per
 * datagram in sendmsg4/6; recvmsg4/6 turns the backend's source address back into the VIP so the
 * application sees the address it sent to, and getpeername4/6 (kernels ≥ 5.8) does the same for
 * connected sockets. The reverse mapping is keyed by (socket cookie, backend): a socket's cookie
 * is never reused, so stale entries are harmless and the LRU ages them out.
 *
 * The data plane only reads what the controller writes (controller/svc/): services → ring half →
 * backend id → backend address. Rings are double-buffered per service (see struct svc_val), so a
 * change of backends is one map update as seen from here.
 */
#include "include/lab.h"
#include "socket_lb.h"

LAB_EXPORT_ENUM(socket_lb_alg);
LAB_EXPORT_ENUM(socket_lb_limits);
LAB_EXPORT_ENUM(socket_lb_stat);

/* slots per ring half; set by the controller before load (a prime for Maglev) */
const volatile __u32 ring_size = SVC_DEFAULT_RING;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SVC_DEFAULT_SERVICES);
	__type(key, struct svc_key);
	__type(value, struct svc_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} services SEC(".maps");

/* backend ids; SVC_DEFAULT_SERVICES * 2 * SVC_DEFAULT_RING entries unless the controller resizes */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SVC_DEFAULT_SERVICES * 2 * SVC_DEFAULT_RING);
	__type(key, __u32);
	__type(value, __u32);
} svc_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SVC_DEFAULT_BACKENDS);
	__type(key, __u32);
	__type(value, struct svc_backend);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SVC_REVNAT_ENTRIES);
	__type(key, struct revnat_key);
	__type(value, struct revnat_val);
} revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SVC_ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} svc_stats SEC(".maps");

/* Rewrites per backend id and per service index, for the Prometheus view of where connections went.
 * Per-CPU (no shared cache line on the connect path); the controller zeroes an entry when it hands
 * the id or index to a new owner, so a counter always belongs to the backend/service now holding it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SVC_DEFAULT_BACKENDS);
	__type(key, __u32);
	__type(value, __u64);
} backend_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SVC_DEFAULT_SERVICES);
	__type(key, __u32);
	__type(value, __u64);
} service_hits SEC(".maps");

static __always_inline void bump(void *map, __u32 i)
{
	__u64 *c = bpf_map_lookup_elem(map, &i);
	if (c)
		(*c)++;
}

static __always_inline void count(__u32 i)
{
	__u64 *c = bpf_map_lookup_elem(&svc_stats, &i);
	if (c)
		(*c)++;
}

/* An AF_INET6 socket (dual-stack, the default) that names ::ffff:a.b.c.d talks IPv4: the kernel
 * hands connect/sendmsg on to the IPv4 path without running connect4/sendmsg4 for a TCP or
 * connected-UDP socket, so the v6 hook is the only chance to balance it, and the service and the
 * backend are the IPv4 ones. As Cilium's sock6_xlate_v4_in_v6: such an address is looked up under
 * its IPv4 key and written back in ::ffff: form (unconnected UDP is sent through sendmsg4, but its
 * replies reach the socket's recvmsg6 in ::ffff: form; the reverse entry is the IPv4 one).
 *
 * read_addr: the address a hook was given, as a key's 16 bytes; returns the key's family: the
 * hook's, or IPv4 for ::ffff:0:0/96 in a v6 hook. All four words are read whatever they hold: the verifier refuses a
 * context field read through a computed offset, which is what the compiler makes of a read of
 * user_ip6[3] or user_ip6[0] depending on a branch. */
static __always_inline __u8 read_addr(struct bpf_sock_addr *ctx, __u8 hook, __u8 *out)
{
	__u32 w[4] = {};
	__u8 family = hook;
	if (hook == SVC_AF_INET) {
		w[0] = ctx->user_ip4;
	} else {
		__u32 a = ctx->user_ip6[0], b = ctx->user_ip6[1], c = ctx->user_ip6[2], d = ctx->user_ip6[3];
		if (a == 0 && b == 0 && c == bpf_htonl(0xffff)) {
			w[0] = d;
			family = SVC_AF_INET;
		} else {
			w[0] = a;
			w[1] = b;
			w[2] = c;
			w[3] = d;
		}
	}
	__builtin_memcpy(out, w, 16);
	return family;
}

/* hook: the hook's family (which fields hold the address); family: the address's (IPv4 in a v6
 * hook is written back as ::ffff:a.b.c.d) */
static __always_inline void write_addr(struct bpf_sock_addr *ctx, __u8 hook, __u8 family, const __u8 *addr, __u16 port)
{
	__u32 w[4];
	__builtin_memcpy(w, addr, 16);
	if (hook == SVC_AF_INET) {
		ctx->user_ip4 = w[0];
	} else if (family == SVC_AF_INET) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = w[0];
	} else {
		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
	}
	ctx->user_port = port;
}

/* 1: not a service or rewritten; 0: a service without backends (the caller gets EPERM) */
static __always_inline int xlate_fwd(struct bpf_sock_addr *ctx, __u8 hook, __u32 stat)
{
	struct svc_key k = {};
	__u8 family = read_addr(ctx, hook, k.addr);
	k.port = (__u16)ctx->user_port;
	k.proto = (__u8)ctx->protocol;
	k.family = family;
	struct svc_val *s = bpf_map_lookup_elem(&services, &k);
	if (!s)
		return 1;
	__u32 n = s->count;
	if (n == 0 || n > ring_size) {
		count(SVC_ST_NO_BACKEND);
		return 0;
	}
	__u64 cookie = bpf_get_socket_cookie(ctx);
	__u32 slot;
	if (s->alg == SVC_ALG_MAGLEV) {
		/* per socket: a connected socket and an unconnected UDP socket's datagrams stick to one backend */
		__u32 h = (__u32)(cookie ^ (cookie >> 32)) * 0x9e3779b1u;
		slot = (h ^ (h >> 16)) % n;
	} else {
		slot = bpf_get_prandom_u32() % n;
	}
	__u32 idx = (s->index * 2 + (s->half & 1)) * ring_size + slot;
	__u32 *id = bpf_map_lookup_elem(&svc_ring, &idx);
	if (!id) {
		/* a slot outside the ring (never, with the controller's sizes): refused and counted, as a
		 * slot naming no backend is, not let through to the VIP unbalanced and unseen */
		count(SVC_ST_BAD_SLOT);
		return 0;
	}
	struct svc_backend *b = bpf_map_lookup_elem(&backends, id);
	if (!b || b->family != family) {
		count(SVC_ST_BAD_SLOT);
		return 0;
	}
	struct revnat_key rk = { .cookie = cookie, .port = b->port, .family = family };
	__builtin_memcpy(rk.addr, b->addr, 16);
	struct revnat_val rv = { .port = k.port, .proto = k.proto };
	__builtin_memcpy(rv.addr, k.addr, 16);
	bpf_map_update_elem(&revnat, &rk, &rv, BPF_ANY);
	write_addr(ctx, hook, family, b->addr, b->port);
	count(stat);
	bump(&backend_hits, *id);
	bump(&service_hits, s->index);
	return 1;
}

/* the peer a socket reports (datagram source, getpeername) is a backend it reached through a VIP: show the VIP */
static __always_inline int xlate_rev(struct bpf_sock_addr *ctx, __u8 hook, __u32 stat)
{
	struct revnat_key rk = { .cookie = bpf_get_socket_cookie(ctx), .port = (__u16)ctx->user_port };
	__u8 family = read_addr(ctx, hook, rk.addr);
	rk.family = family;
	struct revnat_val *v = bpf_map_lookup_elem(&revnat, &rk);
	if (!v)
		return 1;
	/*
	 * Only while the service exists (as Cilium's sock4_xlate_rev checks): an entry outlives its
	 * service in the LRU, and a socket that went on to talk to that backend directly saw its
	 * replies, and getpeername, named after a VIP that was gone. Such an entry is dropped.
	 */
	if (v->proto) {
		struct svc_key k = { .port = v->port, .proto = v->proto, .family = family };
		__builtin_memcpy(k.addr, v->addr, 16);
		if (!bpf_map_lookup_elem(&services, &k)) {
			bpf_map_delete_elem(&revnat, &rk);
			return 1;
		}
	}
	write_addr(ctx, hook, family, v->addr, v->port);
	count(stat);
	return 1;
}

SEC("cgroup/connect4")
int svc_connect4(struct bpf_sock_addr *ctx)
{
	LAB_VARIANT_MARK(); /* differs in a -DLAB_VARIANT build */
	return xlate_fwd(ctx, SVC_AF_INET, SVC_ST_CONNECT);
}

SEC("cgroup/connect6")
int svc_connect6(struct bpf_sock_addr *ctx) { return xlate_fwd(ctx, SVC_AF_INET6, SVC_ST_CONNECT); }

SEC("cgroup/sendmsg4")
int svc_sendmsg4(struct bpf_sock_addr *ctx) { return xlate_fwd(ctx, SVC_AF_INET, SVC_ST_SENDMSG); }

SEC("cgroup/sendmsg6")
int svc_sendmsg6(struct bpf_sock_addr *ctx) { return xlate_fwd(ctx, SVC_AF_INET6, SVC_ST_SENDMSG); }

SEC("cgroup/recvmsg4")
int svc_recvmsg4(struct bpf_sock_addr *ctx) { return xlate_rev(ctx, SVC_AF_INET, SVC_ST_RECVMSG); }

SEC("cgroup/recvmsg6")
int svc_recvmsg6(struct bpf_sock_addr *ctx) { return xlate_rev(ctx, SVC_AF_INET6, SVC_ST_RECVMSG); }

SEC("cgroup/getpeername4")
int svc_getpeername4(struct bpf_sock_addr *ctx) { return xlate_rev(ctx, SVC_AF_INET, SVC_ST_PEERNAME); }

SEC("cgroup/getpeername6")
int svc_getpeername6(struct bpf_sock_addr *ctx) { return xlate_rev(ctx, SVC_AF_INET6, SVC_ST_PEERNAME); }
