// Bandwidth shaping at TC egress (IPv4 and IPv6) with Earliest Departure Time (EDT), as Cilium's bandwidth
// manager does it: the clsact egress program classifies a packet (5-tuple, then the sending
// socket's cgroup, then destination CIDR + port, then CIDR with any port), and sets skb->tstamp
// to the class's next free departure slot computed from its rate; the `fq` qdisc on the device
// holds each packet until that time. No queue of our own: TCP sees the delay through TSQ
// (its packets stay in the qdisc), so it backs off without building a standing queue, which is
// why latency under EDT stays low where HTB/TBF queue a full buffer. A packet whose departure
// would lie beyond the class's horizon is dropped and counted.
// Filter rules (remote CIDR, port, protocol → count or drop) run first, on both directions.
// Rules are double-buffered: the controller writes the idle generation, then flips `filter_gen`,
// so a packet sees the whole old or the whole new rule set.
#include "include/lab.h"
#include "tc_shape.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60
#define NEXTHDR_AUTH 51
#define IPV6_EXT_MAX 8 /* extension headers walked before giving up on the ports (see parse6) */
/*
 * A packet that passes ends in TC_ACT_UNSPEC, not TC_ACT_OK: in direct-action mode OK ends the
 * clsact chain, so a filter of the user's at a later priority (`tc filter add … bpf da`, pref
 * 49152 by default, after ours at 22) would never run and its drops would silently stop. UNSPEC
 * goes on to the next filter, and with none left the packet passes as with OK.
 */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define NSEC_PER_SEC 1000000000ULL
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TC_MAX_CLASSES);
	__type(key, __u32);
	__type(value, struct tc_class);
} classes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TC_MAX_CLASSES);
	__type(key, __u32);
	__type(value, struct tc_class_state);
} class_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TC_MAX_CLASSES);
	__type(key, __u32);
	__type(value, struct tc_class_stats);
} class_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TC_MAX_MATCHES);
	__type(key, struct tc_flow_key);
	__type(value, __u32);
} flow_class SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TC_MAX_MATCHES);
	__type(key, __u64);
	__type(value, __u32);
} cgroup_class SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, TC_MAX_MATCHES);
	__type(key, struct tc_dst_key);
	__type(value, __u32);
} dst_class SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * TC_MAX_RULES);
	__type(key, __u32);
	__type(value, struct tc_rule);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * TC_MAX_RULES);
	__type(key, __u32);
	__type(value, struct tc_rule_stats);
} rule_stats SEC(".maps");

/* [0]: the live rule generation (0 or 1); [1]: the deepest level (cgroup2 root 0) of a cgroup
 * some class matches, 0 when none does: how far classify walks a socket's ancestors */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} filter_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tc_global_stats);
} globals SEC(".maps");

/* A parsed packet is held in the flow_class key itself (parse() zeroes it, padding included), so
 * the exact 5-tuple lookup needs no copy. */
/* the TCP/UDP ports at `off` (network order), when the packet is long enough */
static __always_inline void load_ports(struct __sk_buff *skb, __u32 off, struct tc_flow_key *p)
{
	__u16 ports[2];
	if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) == 0) {
		p->sport = ports[0];
		p->dport = ports[1];
	}
}

/* parse(): IPv4 or IPv6 with its L4 protocol known (ports where TCP/UDP) */
#define PARSED 1
/* parse(): IPv6 whose extension-header chain was not walked to its end (more than IPV6_EXT_MAX
 * headers, or cut short): its protocol and ports are unknown, which run_filters reads as a match
 * of every drop rule that names a protocol or port (fail closed: the kernel accepts any number of
 * headers, so 5 destination-options headers got UDP past a `udp/9999 drop` rule that gave up
 * after 4); it is classified by address only */
#define PARSED_UNWALKED 2

/* IPv6: fixed header, then up to IPV6_EXT_MAX extension headers to reach TCP/UDP. A non-first
 * fragment has no ports (the first one carries them and meets the rules). */
static __always_inline bool is_ext(__u8 next)
{
	return next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST || next == NEXTHDR_FRAGMENT || next == NEXTHDR_AUTH;
}

static __always_inline int parse6(struct __sk_buff *skb, struct tc_flow_key *p)
{
	struct ipv6hdr ip6;
	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr), &ip6, sizeof(ip6)))
		return 0;
	p->family = TC_AF_INET6;
	__builtin_memcpy(p->saddr, &ip6.saddr, 16);
	__builtin_memcpy(p->daddr, &ip6.daddr, 16);
	__u8 next = ip6.nexthdr;
	__u32 off = sizeof(struct ethhdr) + sizeof(ip6);
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		__u8 h[4];
		if (!is_ext(next))
			break;
		if (bpf_skb_load_bytes(skb, off, h, sizeof(h))) {
			p->proto = next;
			return PARSED_UNWALKED;
		}
		if (next == NEXTHDR_FRAGMENT) {
			if (((h[2] << 8) | h[3]) & 0xFFF8) { /* offset ≠ 0: not the first fragment */
				p->proto = h[0];
				return PARSED;
			}
			off += 8;
		} else if (next == NEXTHDR_AUTH) {
			off += ((__u32)h[1] + 2) * 4;
		} else {
			off += ((__u32)h[1] + 1) * 8;
		}
		next = h[0];
	}
	p->proto = next;
	if (is_ext(next))
		return PARSED_UNWALKED;
	if (next == IPPROTO_TCP || next == IPPROTO_UDP)
		load_ports(skb, off, p);
	return PARSED;
}

/* IPv4 or IPv6 header and, for the first fragment of TCP/UDP, the ports. 0 when neither,
 * else PARSED or PARSED_UNWALKED. */
static __always_inline int parse(struct __sk_buff *skb, struct tc_flow_key *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__builtin_memset(p, 0, sizeof(*p));
	if ((void *)(eth + 1) > end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return parse6(skb, p);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return 0;
	p->family = TC_AF_INET;
	__builtin_memcpy(p->saddr, &ip->saddr, 4);
	__builtin_memcpy(p->daddr, &ip->daddr, 4);
	p->proto = ip->protocol;
	if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) && !(ip->frag_off & bpf_htons(IP_OFFSET))) {
		__u32 ihl = ip->ihl * 4;
		if (ihl < sizeof(*ip))
			return PARSED;
		load_ports(skb, sizeof(*eth) + ihl, p);
	}
	return PARSED;
}

/*
 * The bytes an egress skb puts on the wire, headers counted once per GSO segment (qdisc_pkt_len,
 * what HTB/TBF charge): what a class is charged and counts. skb->len counts a GSO skb's headers
 * once, which would let TCP through ~4.5% fast. wire_len is 0 outside a real transmit
 * (BPF_PROG_TEST_RUN): then len.
 */
static __always_inline __u64 wire_bytes(struct __sk_buff *skb)
{
	__u32 wire = READ_ONCE(skb->wire_len); /* both read plainly: the verifier refuses a */
	__u32 plain = READ_ONCE(skb->len);     /* ctx load through a pointer clang offset */
	return wire ? wire : plain;
}

/* the first plen bits of a and b are equal (16-byte addresses, plen 0-128) */
static __always_inline int prefix_match(const __u8 *a, const __u8 *b, __u32 plen)
{
	for (int w = 0; w < 4; w++) {
		if (plen == 0)
			return 1;
		__u32 x = ((__u32)a[4 * w] << 24) | ((__u32)a[4 * w + 1] << 16) | ((__u32)a[4 * w + 2] << 8) | a[4 * w + 3];
		__u32 y = ((__u32)b[4 * w] << 24) | ((__u32)b[4 * w + 1] << 16) | ((__u32)b[4 * w + 2] << 8) | b[4 * w + 3];
		if (plen < 32)
			return ((x ^ y) & (~0U << (32 - plen))) == 0;
		if (x != y)
			return 0;
		plen -= 32;
	}
	return 1;
}

/* TC_ACT_SHOT when a drop rule matches; every matching rule is counted. `parsed` PARSED_UNWALKED:
 * see there (a count rule naming a protocol or port does not count such a packet) */
static __always_inline int run_filters(struct __sk_buff *skb, struct tc_flow_key *p, __u8 dir, int parsed)
{
	__u32 z = 0;
	__u32 *genp = bpf_map_lookup_elem(&filter_gen, &z);
	__u32 base = (genp && *genp) ? TC_MAX_RULES : 0;
	const __u8 *remote = dir == TC_DIR_EGRESS ? p->daddr : p->saddr;
	for (__u32 i = 0; i < TC_MAX_RULES; i++) {
		__u32 k = base + i;
		struct tc_rule *r = bpf_map_lookup_elem(&rules, &k);
		if (!r || !r->active)
			break; /* rules are packed: the first inactive one ends the set */
		if (!(r->dir & dir))
			continue;
		if (r->family && r->family != p->family)
			continue;
		if (parsed == PARSED_UNWALKED && (r->proto || r->port)) {
			if (r->action != TC_RULE_DROP)
				continue;
		} else {
			if (r->proto && r->proto != p->proto)
				continue;
			if (r->port && r->port != p->dport)
				continue;
		}
		if (!prefix_match(r->addr, remote, r->prefixlen))
			continue;
		struct tc_rule_stats *s = bpf_map_lookup_elem(&rule_stats, &k);
		if (s) {
			s->packets++;
			s->bytes += skb->len; /* the frame as tc sees it, L2 header included (wire_len has none at ingress) */
		}
		if (r->action == TC_RULE_DROP) {
			struct tc_global_stats *g = bpf_map_lookup_elem(&globals, &z);
			if (g)
				g->filter_drops++;
			return TC_ACT_SHOT;
		}
	}
	return TC_ACT_UNSPEC;
}

/*
 * The class of the sending socket's cgroup or of its nearest ancestor that has one. A class for
 * a slice (app.slice holds no process; its services' scopes do) matched nothing while only the
 * socket's own cgroup was looked up (found by review, session 56). The walk goes from the top
 * down to the deepest configured level (filter_gen[1]), so the deepest match wins; a socket's own
 * cgroup is looked up first, so a class on a leaf costs one lookup as before.
 */
static __always_inline __u32 cgroup_class_of(struct __sk_buff *skb)
{
	__u64 cg = bpf_skb_cgroup_id(skb);
	if (!cg)
		return 0;
	__u32 *c = bpf_map_lookup_elem(&cgroup_class, &cg);
	if (c)
		return *c;
	__u32 one = 1;
	__u32 *deepest = bpf_map_lookup_elem(&filter_gen, &one);
	__u32 max = deepest ? *deepest : 0;
	__u32 found = 0;
	for (int level = 1; level <= TC_CG_MAX_LEVEL; level++) {
		if (level > max)
			break;
		__u64 a = bpf_skb_ancestor_cgroup_id(skb, level);
		if (!a) /* deeper than the socket's own cgroup */
			break;
		c = bpf_map_lookup_elem(&cgroup_class, &a);
		if (c)
			found = *c;
	}
	return found;
}

static __always_inline __u32 classify(struct __sk_buff *skb, struct tc_flow_key *p)
{
	__u32 *c = bpf_map_lookup_elem(&flow_class, p);
	if (c)
		return *c;
	__u32 by_cg = cgroup_class_of(skb);
	if (by_cg)
		return by_cg;
	struct tc_dst_key dk = { .prefixlen = 16 + 8 + 128, .port = p->dport, .family = p->family };
	__builtin_memcpy(dk.addr, p->daddr, 16);
	if (p->dport) {
		c = bpf_map_lookup_elem(&dst_class, &dk);
		if (c)
			return *c;
		dk.port = 0;
	}
	c = bpf_map_lookup_elem(&dst_class, &dk);
	return c ? *c : 0;
}

/* Cilium's edt_sched_departure: one departure slot per class, advanced by len/rate */
static __always_inline int shape(struct __sk_buff *skb, __u32 id)
{
	struct tc_class *cl = bpf_map_lookup_elem(&classes, &id);
	struct tc_class_state *st = bpf_map_lookup_elem(&class_state, &id);
	struct tc_class_stats *s = bpf_map_lookup_elem(&class_stats, &id);
	if (!cl || !st || !s || !(cl->flags & TC_CLASS_ACTIVE))
		return TC_ACT_UNSPEC;
	__u64 len = wire_bytes(skb);
	__u64 rate = cl->rate_bps;
	/* packets and bytes count what the class let through: a horizon drop is counted apart */
	if (!rate) {
		s->packets++;
		s->bytes += len;
		return TC_ACT_UNSPEC;
	}
	__u64 delay = len * 8 * NSEC_PER_SEC / rate;
	__u64 now = bpf_ktime_get_ns();
	__u64 t = skb->tstamp;
	if (t < now)
		t = now;
	/*
	 * A departure time of its own beyond the class's horizon (SO_TXTIME, which needs no privilege
	 * for CLOCK_MONOTONIC; TCP's own pacing of a slow flow) leaves when it asked, bounded by fq's
	 * horizon, but does not become the class's slot: taken as t_last (Cilium's edt_sched_departure
	 * does), one such datagram pushed every later packet of every flow in the class past the
	 * horizon, for as long as it asked (review, session 63). The class's timeline goes on from now.
	 */
	if (t - now >= cl->horizon_ns)
		t = now;
	__u64 t_last = READ_ONCE(st->t_last);
	__u64 t_next = t_last + delay;
	if (t_next <= t) {
		if (t_last) /* not the class's first packet */
			s->idle_ns += t - t_next;
		WRITE_ONCE(st->t_last, t);
		s->packets++;
		s->bytes += len;
		return TC_ACT_UNSPEC;
	}
	if (t_next - now >= cl->horizon_ns) {
		s->horizon_drops++;
		return TC_ACT_SHOT;
	}
	WRITE_ONCE(st->t_last, t_next);
	/* a later time of its own (beyond the horizon, above) stays: the sender asked for it */
	if (skb->tstamp < t_next)
		skb->tstamp = t_next;
	s->delayed++;
	s->packets++;
	s->bytes += len;
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_shape_egress(struct __sk_buff *skb)
{
	struct tc_flow_key p;
	__u32 z = 0;
	struct tc_global_stats *g = bpf_map_lookup_elem(&globals, &z);
	if (g)
		g->egress_packets++;
	int parsed = parse(skb, &p);
	if (!parsed)
		return TC_ACT_UNSPEC;
	if (run_filters(skb, &p, TC_DIR_EGRESS, parsed) == TC_ACT_SHOT)
		return TC_ACT_SHOT;
	__u32 id = classify(skb, &p);
	if (!id || id >= TC_MAX_CLASSES) {
		if (g)
			g->unclassified++;
		return TC_ACT_UNSPEC;
	}
	return shape(skb, id);
}

SEC("tc")
int tc_filter_ingress(struct __sk_buff *skb)
{
	struct tc_flow_key p;
	__u32 z = 0;
	struct tc_global_stats *g = bpf_map_lookup_elem(&globals, &z);
	if (g)
		g->ingress_packets++;
	int parsed = parse(skb, &p);
	if (!parsed)
		return TC_ACT_UNSPEC;
	return run_filters(skb, &p, TC_DIR_INGRESS, parsed);
}

LAB_EXPORT(tc_class_stats);
LAB_EXPORT_ENUM(tc_shape_limits);
LAB_EXPORT_ENUM(tc_shape_class_flags);
LAB_EXPORT_ENUM(tc_shape_rule_action);
LAB_EXPORT_ENUM(tc_shape_dir);
