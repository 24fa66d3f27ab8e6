// XDP L4 load balancer, Katran style: VIP lookup → conntrack (LRU) → Maglev ring (map-in-map,
// swapped whole by the controller) → per VIP either L2 direct server return (rewrite MACs) or
// IPIP / IP6IP6 encapsulation (prepend an outer IP header, as Katran does), then XDP_TX/redirect.
// The control plane (controller/lb/) owns every map; this file only reads them, except
// conntrack and counters. Also here: the small helper programs the benchmark and tests need
// on veth peers (pass, sink, drop) and a live-frames packet generator.
#include "include/lab.h"
#include "xdp_lb.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define NEXTHDR_FRAGMENT 44
#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_ 41
#define LB_TUN_TTL 64
#define IPPROTO_ICMP_ 1
#define IPPROTO_ICMPV6_ 58
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_DEST 60
#define ICMP_DEST_UNREACH_ 3
#define ICMP_FRAG_NEEDED_ 4
#define ICMPV6_PKT_TOOBIG_ 2
#define ICMP_HDR_LEN 8 /* type, code, checksum, 4 bytes (unused / next-hop MTU) */

/* the fixed part of an IPv6 extension header (hop-by-hop, routing, destination options) */
struct lb_ext_hdr {
	__u8 nexthdr;
	__u8 hdrlen; /* 8-octet units, not counting the first 8 */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
} vips SEC(".maps");

/* addresses that carry at least one VIP: lets us recognise fragments sent to a VIP (no ports) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_VIPS);
	__type(key, __u8[16]);
	__type(value, __u32);
} vip_addrs SEC(".maps");

/* vip_id → Maglev ring (array of backend ids). The controller builds a whole new inner map and
 * swaps the pointer in one update, so a packet sees either the old or the new table, never a mix.
 * BPF_F_INNER_MAP lets rings of any prime size replace the template. */
struct lb_ring {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP);
	__uint(max_entries, LB_DEFAULT_RING);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, LB_MAX_VIPS);
	__type(key, __u32);
	__array(values, struct lb_ring);
} rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_DEFAULT_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

/* One hash table, per-CPU LRU lists (BPF_F_NO_COMMON_LRU): no cross-CPU lock on eviction, yet a
 * flow that moves CPU (veth picks the sender's CPU) still finds its entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, LB_CT_ENTRIES);
	__type(key, struct flow_key);
	__type(value, struct ct_value);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_VIPS + LB_DEFAULT_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_global);
} global_stats SEC(".maps");

static __always_inline struct lb_global *gstats(void)
{
	__u32 k = 0;
	return bpf_map_lookup_elem(&global_stats, &k);
}

#define GCOUNT(g, field)                                                                           \
	do {                                                                                       \
		if (g)                                                                             \
			g->field++;                                                                \
	} while (0)

static __always_inline __u32 rotl(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* murmur3-style mixing over the flow: cheap, and good enough spread for a ring index */
static __always_inline __u32 mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 flow_hash(const struct flow_key *f)
{
	const __u32 *s = (const __u32 *)f->src;
	__u32 h = 0x9747b28c;
	h = mix(h, s[0]);
	h = mix(h, s[1]);
	h = mix(h, s[2]);
	h = mix(h, s[3]);
	h = mix(h, ((__u32)f->sport << 16) | f->dport);
	h = mix(h, f->proto);
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline int addr_eq(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline void count(__u32 idx, __u64 bytes, int new_flow, int hit)
{
	struct lb_stats *s = bpf_map_lookup_elem(&stats, &idx);
	if (!s)
		return;
	s->packets++;
	s->bytes += bytes;
	if (new_flow)
		s->new_flows++;
	if (hit)
		s->ct_hits++;
	else
		s->ct_misses++;
}

/* RFC 1071 checksum of a 20-byte IPv4 header (check field zero while summing) */
static __always_inline __u16 ip_csum(const struct iphdr *ip)
{
	const __u16 *p = (const __u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(struct iphdr) / 2); i++)
		sum += p[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/*
 * Katran-style encapsulation: grow the frame at the front by one IP header, write a fresh
 * Ethernet header (LB → backend MACs, as DSR) and the outer IPv4 (IPIP, proto 4) or IPv6
 * (IP6IP6, next header 41) header from tun_src to the backend. The inner packet, from its IP
 * header on, is left byte for byte as it arrived. Returns 0, or -1 (no headroom / bounds).
 * Map value pointers (be, tun_src) stay valid across bpf_xdp_adjust_head; packet pointers do not.
 */
static __always_inline int encap(struct xdp_md *ctx, const struct backend *be, const __u8 *tun_src, __u8 family, __u32 inner_len)
{
	if (family == LB_AF_INET) {
		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
			return -1;
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		struct ethhdr *eth = data;
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return -1;
		__builtin_memcpy(eth->h_dest, be->mac, 6);
		__builtin_memcpy(eth->h_source, be->src_mac, 6);
		eth->h_proto = bpf_htons(ETH_P_IP);
		ip->version = 4;
		ip->ihl = 5;
		ip->tos = 0;
		ip->tot_len = bpf_htons(inner_len + sizeof(struct iphdr));
		ip->id = 0;
		ip->frag_off = 0;
		ip->ttl = LB_TUN_TTL;
		ip->protocol = IPPROTO_IPIP_;
		ip->check = 0;
		__builtin_memcpy(&ip->saddr, tun_src, 4);
		__builtin_memcpy(&ip->daddr, be->addr, 4);
		ip->check = ip_csum(ip);
		return 0;
	}
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ipv6hdr)))
		return -1;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	if ((void *)(ip6 + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, be->mac, 6);
	__builtin_memcpy(eth->h_source, be->src_mac, 6);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	ip6->version = 6;
	ip6->priority = 0;
	ip6->flow_lbl[0] = 0;
	ip6->flow_lbl[1] = 0;
	ip6->flow_lbl[2] = 0;
	ip6->payload_len = bpf_htons(inner_len);
	ip6->nexthdr = IPPROTO_IPV6_;
	ip6->hop_limit = LB_TUN_TTL;
	__builtin_memcpy(&ip6->saddr, tun_src, 16);
	__builtin_memcpy(&ip6->daddr, be->addr, 16);
	return 0;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lb_global *g = gstats();
	struct ethhdr *eth = data;
	struct flow_key f = {};
	struct vip_key vk = {};
	void *l4;
	int is_syn = 0;
	int is_icmp = 0;
	__u32 inner_len = 0; /* the whole IP packet (header + payload), host order */

	GCOUNT(g, rx);
	if ((void *)(eth + 1) > data_end) {
		GCOUNT(g, pass_non_ip);
		return XDP_PASS;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end || ip->ihl < 5 || ip->version != 4) {
			GCOUNT(g, pass_truncated_ip);
			return XDP_PASS;
		}
		/* options are fine: DSR does not touch the IP header, we only skip them */
		l4 = (void *)ip + ip->ihl * 4;
		if (l4 > data_end) {
			GCOUNT(g, pass_truncated_ip);
			return XDP_PASS;
		}
		f.family = LB_AF_INET;
		f.proto = ip->protocol;
		inner_len = bpf_ntohs(ip->tot_len);
		__builtin_memcpy(f.src, &ip->saddr, 4);
		__builtin_memcpy(f.dst, &ip->daddr, 4);
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
			if (bpf_map_lookup_elem(&vip_addrs, f.dst)) {
				GCOUNT(g, drop_fragment);
				return XDP_DROP;
			}
			GCOUNT(g, pass_non_vip);
			return XDP_PASS;
		}
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end) {
			GCOUNT(g, pass_truncated_ip);
			return XDP_PASS;
		}
		l4 = ip6 + 1;
		f.family = LB_AF_INET6;
		f.proto = ip6->nexthdr;
		inner_len = bpf_ntohs(ip6->payload_len) + sizeof(struct ipv6hdr);
		__builtin_memcpy(f.src, &ip6->saddr, 16);
		__builtin_memcpy(f.dst, &ip6->daddr, 16);
		/* hop-by-hop / routing / destination options before the transport header: skip a
		 * bounded number (the verifier needs the bound; real traffic carries one or two) */
#pragma unroll
		for (int i = 0; i < LB_MAX_EXT_HDRS; i++) {
			if (f.proto != NEXTHDR_HOP && f.proto != NEXTHDR_ROUTING && f.proto != NEXTHDR_DEST)
				break;
			struct lb_ext_hdr *eh = l4;
			if ((void *)(eh + 1) > data_end) {
				GCOUNT(g, pass_truncated_ip);
				return XDP_PASS;
			}
			f.proto = eh->nexthdr;
			l4 += (eh->hdrlen + 1) * 8;
		}
		if (f.proto == NEXTHDR_HOP || f.proto == NEXTHDR_ROUTING || f.proto == NEXTHDR_DEST) {
			GCOUNT(g, pass_ext_hdr_limit);
			return XDP_PASS;
		}
		if (f.proto == NEXTHDR_FRAGMENT) {
			if (bpf_map_lookup_elem(&vip_addrs, f.dst)) {
				GCOUNT(g, drop_fragment);
				return XDP_DROP;
			}
			GCOUNT(g, pass_non_vip);
			return XDP_PASS;
		}
	} else {
		GCOUNT(g, pass_non_ip);
		return XDP_PASS;
	}

	/*
	 * ICMP "fragmentation needed" / ICMPv6 "packet too big" about a packet a backend sent from a
	 * VIP (DSR: backend → client, source VIP): path-MTU discovery needs it at that backend, not
	 * at the LB. As Katran does, rebuild the client → VIP flow from the embedded header (source
	 * and destination swapped) and route the error like that flow's packets: conntrack, else the
	 * ring. Other ICMP is the LB host's own business.
	 */
	if ((f.family == LB_AF_INET && f.proto == IPPROTO_ICMP_) || (f.family == LB_AF_INET6 && f.proto == IPPROTO_ICMPV6_)) {
		__u8 *ic = l4;
		if ((void *)(ic + ICMP_HDR_LEN) > data_end) {
			GCOUNT(g, pass_other_proto);
			return XDP_PASS;
		}
		void *in = ic + ICMP_HDR_LEN;
		void *il4;
		__u8 outer_dst[16];
		__builtin_memcpy(outer_dst, f.dst, 16);
		if (f.family == LB_AF_INET) {
			struct iphdr *iip = in;
			if (ic[0] != ICMP_DEST_UNREACH_ || ic[1] != ICMP_FRAG_NEEDED_ || (void *)(iip + 1) > data_end ||
			    iip->ihl < 5 || iip->version != 4) {
				GCOUNT(g, pass_other_proto);
				return XDP_PASS;
			}
			il4 = in + iip->ihl * 4;
			f.proto = iip->protocol;
			__builtin_memset(f.src, 0, 16);
			__builtin_memset(f.dst, 0, 16);
			__builtin_memcpy(f.src, &iip->daddr, 4);
			__builtin_memcpy(f.dst, &iip->saddr, 4);
		} else {
			struct ipv6hdr *iip6 = in;
			if (ic[0] != ICMPV6_PKT_TOOBIG_ || (void *)(iip6 + 1) > data_end) {
				GCOUNT(g, pass_other_proto);
				return XDP_PASS;
			}
			il4 = iip6 + 1;
			f.proto = iip6->nexthdr;
			__builtin_memcpy(f.src, &iip6->daddr, 16);
			__builtin_memcpy(f.dst, &iip6->saddr, 16);
		}
		/* the error goes to the original sender (the VIP), and only TCP/UDP flows are ours */
		if ((f.proto != IPPROTO_TCP_ && f.proto != IPPROTO_UDP_) || il4 + 4 > data_end ||
		    !addr_eq(outer_dst, f.dst)) {
			GCOUNT(g, pass_other_proto);
			return XDP_PASS;
		}
		f.sport = *(__u16 *)(il4 + 2);
		f.dport = *(__u16 *)il4;
		is_icmp = 1;
	} else {
		if (f.proto != IPPROTO_TCP_ && f.proto != IPPROTO_UDP_) {
			GCOUNT(g, pass_other_proto);
			return XDP_PASS;
		}
		/* both TCP and UDP start with the two ports: read them, then check the full header length */
		if (l4 + 4 > data_end) {
			if (bpf_map_lookup_elem(&vip_addrs, f.dst)) {
				GCOUNT(g, drop_truncated_l4);
				return XDP_DROP;
			}
			GCOUNT(g, pass_non_vip);
			return XDP_PASS;
		}
		f.sport = *(__u16 *)l4;
		f.dport = *(__u16 *)(l4 + 2);
	}

	__builtin_memcpy(vk.addr, f.dst, 16);
	vk.port = f.dport;
	vk.proto = f.proto;
	vk.family = f.family;
	struct vip_meta *vm = bpf_map_lookup_elem(&vips, &vk);
	if (!vm) {
		GCOUNT(g, pass_non_vip);
		return XDP_PASS;
	}
	if (is_icmp) {
		/* the embedded header is at most 8 bytes of L4: nothing more to check */
	} else if (f.proto == IPPROTO_TCP_) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end) {
			GCOUNT(g, drop_truncated_l4);
			return XDP_DROP;
		}
		/* a SYN starts a new flow even if a stale entry for the same tuple exists (port reuse) */
		is_syn = th->syn && !th->ack;
	} else if (l4 + sizeof(struct udphdr) > data_end) {
		GCOUNT(g, drop_truncated_l4);
		return XDP_DROP;
	}

	__u32 vip_id = vm->vip_id;
	__u64 bytes = data_end - data;
	struct backend *be = NULL;
	__u32 be_id = 0;
	int hit = 0;

	struct ct_value *ct = is_syn ? NULL : bpf_map_lookup_elem(&conntrack, &f);
	if (ct && ct->vip_id == vip_id) {
		be_id = ct->backend_id;
		be = bpf_map_lookup_elem(&backends, &be_id);
		/* a removed backend's flows are re-hashed; a draining or down one keeps its flows */
		if (be && (be->flags & LB_BE_F_ACTIVE))
			hit = 1;
		else
			be = NULL;
	}
	if (!be) {
		__u32 ring_size = vm->ring_size;
		void *ring = bpf_map_lookup_elem(&rings, &vip_id);
		if (!ring || !ring_size) {
			GCOUNT(g, drop_no_backend);
			return XDP_DROP;
		}
		__u32 idx = flow_hash(&f) % ring_size;
		__u32 *slot = bpf_map_lookup_elem(ring, &idx);
		if (!slot || *slot == LB_EMPTY_SLOT) {
			GCOUNT(g, drop_no_backend);
			return XDP_DROP;
		}
		be_id = *slot;
		be = bpf_map_lookup_elem(&backends, &be_id);
		if (!be || !(be->flags & LB_BE_F_ACTIVE)) {
			GCOUNT(g, drop_bad_backend);
			return XDP_DROP;
		}
		/* an ICMP error does not start a flow */
		if (!is_icmp) {
			struct ct_value nv = { .backend_id = be_id, .vip_id = vip_id };
			bpf_map_update_elem(&conntrack, &f, &nv, BPF_ANY);
		}
	}

	count(vip_id, bytes, !hit && !is_icmp, hit);
	/* stats is sized LB_MAX_VIPS + the backends array, so every valid backend id has a slot */
	count(LB_MAX_VIPS + be_id, bytes, !hit && !is_icmp, hit);
	if (is_icmp)
		GCOUNT(g, icmp_forwarded);

	if (vm->fwd == LB_FWD_IPIP) {
		if (be->family != f.family || encap(ctx, be, vm->tun_src, f.family, inner_len)) {
			GCOUNT(g, drop_encap);
			return XDP_DROP;
		}
	} else {
		__builtin_memcpy(eth->h_dest, be->mac, 6);
		__builtin_memcpy(eth->h_source, be->src_mac, 6);
	}
	GCOUNT(g, forwarded);
	if (be->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	long r = bpf_redirect(be->ifindex, 0);
	if (r != XDP_REDIRECT)
		GCOUNT(g, redirect_fail);
	return r;
}

/* ---- helpers for veth peers and benchmarks ---- */

/* A receiving veth peer must run an XDP program, or redirected/TX'd frames are dropped silently. */
SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_cfg);
} sink_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

/* Pass everything except UDP to the configured port, which is counted and dropped: the
 * benchmark counts forwarded frames at the receiver (veth drops leave no counter behind). */
SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 k = 0;
	struct sink_cfg *cfg = bpf_map_lookup_elem(&sink_config, &k);
	if (!cfg || !cfg->udp_port)
		return XDP_PASS;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	struct udphdr *uh;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP_ || ip->ihl != 5)
			return XDP_PASS;
		uh = (void *)(ip + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_UDP_)
			return XDP_PASS;
		uh = (void *)(ip6 + 1);
	} else {
		return XDP_PASS;
	}
	if ((void *)(uh + 1) > data_end || uh->dest != cfg->udp_port)
		return XDP_PASS;
	lab_count(&sink_count);
	return XDP_DROP;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drop_count SEC(".maps");

/* the ceiling: the cheapest thing an XDP program can do with a frame on this interface */
SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	lab_count(&drop_count);
	return XDP_DROP;
}

/* the forwarding ceiling of a veth: send every frame straight back out (what the LB does,
 * minus the LB), so the benchmark can tell veth forwarding cost from the LB's own */
SEC("xdp")
int xdp_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

/* Live-frames generator (BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES): every run sends the
 * test frame out of gen_ifindex, i.e. into its veth peer's XDP program. */
const volatile __u32 gen_ifindex = 0;

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	return bpf_redirect(gen_ifindex, 0);
}
