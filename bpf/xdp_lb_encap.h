/* Forwarding a frame to its backend (Katran's pckt_encap.h): L2 DSR rewrites the MACs;
 * IPIP / IP6IP6 prepends an outer IP header. */
#pragma once
#include "include/lab.h"
#include "xdp_lb.h"
#include "xdp_lb_csum.h"
#include "xdp_lb_maps.h"
#include "xdp_lb_proto.h"

static __always_inline void set_macs(struct ethhdr *eth, const struct backend *be, __be16 proto)
{
	__builtin_memcpy(eth->h_dest, be->mac, 6);
	__builtin_memcpy(eth->h_source, be->src_mac, 6);
	if (proto)
		eth->h_proto = proto;
}

/* L2 direct server return: the backend gets the frame as the client sent it, new MACs only */
static __always_inline int dsr(void *data, void *data_end, const struct backend *be)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	set_macs(eth, be, 0);
	return 0;
}

/*
 * Katran-style encapsulation: grow the frame at the front by one IP header, write a fresh
 * Ethernet header (LB → backend MACs, as DSR) and the outer IPv4 (IPIP, proto 4) or IPv6
 * (IP6IP6, next header 41) header from tun_src to the backend. The inner packet, from its IP
 * header on, is left byte for byte as it arrived. Each returns 0, or -1 (no headroom / bounds).
 * Map value pointers (be, tun_src) stay valid across bpf_xdp_adjust_head; packet pointers do not.
 */

/* make room for an outer header of hdr_len bytes and write the Ethernet header: the outer
 * header's place (hdr_len bytes, bounds checked), or NULL */
static __always_inline void *push_outer(struct xdp_md *ctx, const struct backend *be, __u32 hdr_len, __be16 proto)
{
	if (bpf_xdp_adjust_head(ctx, -(int)hdr_len))
		return NULL;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) + hdr_len > data_end)
		return NULL;
	set_macs(eth, be, proto);
	return eth + 1;
}

static __always_inline int encap4(struct xdp_md *ctx, const struct backend *be, const __u8 *tun_src, __u32 inner_len)
{
	struct iphdr *ip = push_outer(ctx, be, sizeof(*ip), bpf_htons(ETH_P_IP));
	if (!ip)
		return -1;
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

static __always_inline int encap6(struct xdp_md *ctx, const struct backend *be, const __u8 *tun_src, __u32 inner_len)
{
	struct ipv6hdr *ip6 = push_outer(ctx, be, sizeof(*ip6), bpf_htons(ETH_P_IPV6));
	if (!ip6)
		return -1;
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

static __always_inline int encap(struct xdp_md *ctx, const struct backend *be, const __u8 *tun_src, __u8 family, __u32 inner_len)
{
	return family == LB_AF_INET ? encap4(ctx, be, tun_src, inner_len) : encap6(ctx, be, tun_src, inner_len);
}

/*
 * A frame the outer header would make too big for the egress interface. The device dropped it
 * without a trace (a TCP connection that sends full-size segments hung); now the client is told
 * the MTU left for its packets, ICMP fragmentation-needed / ICMPv6 packet-too-big from the VIP (as
 * Katran's send_icmp_too_big), and its TCP lowers the segment size. bpf_check_mtu exists from
 * 5.12: on an older kernel nothing is checked and the device drops the frame as before.
 */
#define LB_TOOBIG4_KEEP 84  /* of the client's packet: its IP header and 64 bytes (RFC 792: 8) */
#define LB_TOOBIG6_KEEP 248 /* 310 bytes on the wire, Katran's size; far below IPv6's 1280 */

/*
 * 1 and the egress interface's MTU when the frame grown by hdr_len bytes does not fit it. That
 * interface is the one transmit() sends by: the backend's own port when it has one (an ifindex
 * that bpf_check_mtu looks up in the namespace the frame came in: a port of another namespace, as
 * the veth bench writes, may name another device there or none, and then nothing is checked).
 */
static __always_inline int encap_too_big(struct xdp_md *ctx, const struct backend *be, __u32 be_id, __u32 hdr_len, __u32 *mtu)
{
	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_check_mtu))
		return 0;
	__u32 *port = bpf_map_lookup_elem(&backend_ports, &be_id);
	__u32 m = 0;
	if (bpf_check_mtu(ctx, port ? *port : be->ifindex, &m, hdr_len, 0) != BPF_MTU_CHK_RET_FRAG_NEEDED)
		return 0;
	*mtu = m;
	return 1;
}

static __always_inline __u16 csum_fold_(__s64 s)
{
	__u32 x = (__u32)s;
	x = (x & 0xffff) + (x >> 16);
	x = (x & 0xffff) + (x >> 16);
	return ~x;
}

/*
 * Turn the frame into the answer: cut it to the Ethernet header and the first `keep` bytes of the
 * client's packet, make room for a new IP and ICMP header in front, and swap the MACs. Returns
 * the frame's start, or NULL (no tailroom/headroom change possible, bounds).
 */
static __always_inline void *too_big_frame(struct xdp_md *ctx, __u32 keep, __u32 head, __be16 proto)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int len = data_end - data;
	int want = sizeof(struct ethhdr) + keep;
	if (len < want || bpf_xdp_adjust_tail(ctx, want - len) || bpf_xdp_adjust_head(ctx, -(int)head))
		return NULL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + head + want > data_end)
		return NULL;
	struct ethhdr *eth = data, *orig = data + head;
	/* orig lies under the new headers: read before they are written */
	__builtin_memcpy(eth->h_dest, orig->h_source, 6);
	__builtin_memcpy(eth->h_source, orig->h_dest, 6);
	eth->h_proto = proto;
	return data;
}

/*
 * Too-big answers, per CPU: at most one per too_big_gap_ns with bursts of too_big_burst_ns worth
 * (the controller's 1000/s and 50, the kernel's net.ipv4.icmp_msgs_per_sec and icmp_msgs_burst).
 * Each answer goes back to the frame's source address, which nothing checks: without a limit,
 * large frames sent under a victim's address had the LB send it one ICMP error per frame, at
 * whatever rate they came. Over the rate the frame is dropped unanswered
 * (counted in lb_rate.limited); the client's TCP retransmits and is answered later. Asked only
 * for a frame that would be answered (not an ICMP error, a source that is one host): spoofed frames
 * from 0.0.0.0 or multicast, never answered, would otherwise use up the real clients' answers.
 * too_big_gap_ns 0: no limit.
 */
const volatile __u64 too_big_gap_ns = 1000000;
const volatile __u64 too_big_burst_ns = 50000000;

static __always_inline bool too_big_allowed(void)
{
	if (!too_big_gap_ns)
		return true;
	__u32 zero = 0;
	struct lb_rate *r = bpf_map_lookup_elem(&too_big_rate, &zero);
	if (!r)
		return false;
	__u64 now = bpf_ktime_get_ns();
	/* the first frame: last_ns 0, a full burst */
	__u64 credit = r->credit_ns + (now > r->last_ns ? now - r->last_ns : 0);
	r->last_ns = now;
	if (credit > too_big_burst_ns)
		credit = too_big_burst_ns;
	if (credit < too_big_gap_ns) {
		r->credit_ns = credit;
		r->limited++;
		return false;
	}
	r->credit_ns = credit - too_big_gap_ns;
	return true;
}

static __always_inline int send_too_big4(struct xdp_md *ctx, __u32 mtu)
{
	const __u32 head = sizeof(struct iphdr) + ICMP_HDR_LEN;
	void *data = too_big_frame(ctx, LB_TOOBIG4_KEEP, head, bpf_htons(ETH_P_IP));
	if (!data)
		return XDP_DROP;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct icmphdr *icmp = (void *)(ip + 1);
	struct iphdr *orig = (void *)(icmp + 1); /* the client's packet, right after the new headers */
	/* never to a source that is not one host (RFC 1122 3.2.2): "this network" 0/8, loopback,
	 * multicast, class E and broadcast (224 and up) */
	__u8 first = ((__u8 *)&orig->saddr)[0];
	if (first == 0 || first == 127 || first >= 224 || !too_big_allowed())
		return XDP_DROP;
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(head + LB_TOOBIG4_KEEP);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = LB_TUN_TTL;
	ip->protocol = IPPROTO_ICMP_;
	ip->saddr = orig->daddr; /* the VIP */
	ip->daddr = orig->saddr;
	ip->check = 0;
	ip->check = ip_csum(ip);
	icmp->type = ICMP_DEST_UNREACH_;
	icmp->code = ICMP_FRAG_NEEDED_;
	icmp->checksum = 0;
	icmp->un.frag.__unused = 0;
	icmp->un.frag.mtu = bpf_htons(mtu);
	icmp->checksum = csum_fold_(bpf_csum_diff(NULL, 0, (void *)icmp, ICMP_HDR_LEN + LB_TOOBIG4_KEEP, 0));
	return XDP_TX;
}

static __always_inline int send_too_big6(struct xdp_md *ctx, __u32 mtu)
{
	const __u32 head = sizeof(struct ipv6hdr) + ICMP_HDR_LEN;
	void *data = too_big_frame(ctx, LB_TOOBIG6_KEEP, head, bpf_htons(ETH_P_IPV6));
	if (!data)
		return XDP_DROP;
	struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
	struct icmp6hdr *icmp6 = (void *)(ip6 + 1);
	struct ipv6hdr *orig = (void *)(icmp6 + 1);
	/* never to the unspecified address, loopback or a multicast group (RFC 4443 2.4 e) */
	const __u32 *src6 = (const __u32 *)&orig->saddr;
	if (((const __u8 *)src6)[0] == 0xff || (src6[0] == 0 && src6[1] == 0 && src6[2] == 0 && (src6[3] == 0 || src6[3] == bpf_htonl(1))) || !too_big_allowed())
		return XDP_DROP;
	ip6->version = 6;
	ip6->priority = 0;
	ip6->flow_lbl[0] = 0;
	ip6->flow_lbl[1] = 0;
	ip6->flow_lbl[2] = 0;
	ip6->payload_len = bpf_htons(ICMP_HDR_LEN + LB_TOOBIG6_KEEP);
	ip6->nexthdr = IPPROTO_ICMPV6_;
	ip6->hop_limit = LB_TUN_TTL;
	__builtin_memcpy(&ip6->saddr, &orig->daddr, 16);
	__builtin_memcpy(&ip6->daddr, &orig->saddr, 16);
	icmp6->icmp6_type = ICMPV6_PKT_TOOBIG_;
	icmp6->icmp6_code = 0;
	icmp6->icmp6_cksum = 0;
	icmp6->icmp6_dataun.un_data32[0] = bpf_htonl(mtu);
	/* RFC 8200's pseudo-header, then the message */
	struct {
		struct in6_addr saddr, daddr;
		__be32 len, nexthdr;
	} ph = { .len = bpf_htonl(ICMP_HDR_LEN + LB_TOOBIG6_KEEP), .nexthdr = bpf_htonl(IPPROTO_ICMPV6_) };
	__builtin_memcpy(&ph.saddr, &ip6->saddr, 16);
	__builtin_memcpy(&ph.daddr, &ip6->daddr, 16);
	__s64 s = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
	icmp6->icmp6_cksum = csum_fold_(bpf_csum_diff(NULL, 0, (void *)icmp6, ICMP_HDR_LEN + LB_TOOBIG6_KEEP, s));
	return XDP_TX;
}
