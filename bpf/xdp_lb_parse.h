/* Packet parsing for xdp_lb (Katran's pckt_parsing.h). Each step fills struct lb_pkt and returns
 * LB_CONTINUE, or the verdict for a frame that is not (or not validly) VIP traffic, counted in
 * lb_global under the reason. The steps take data/data_end read once by the program: reading
 * ctx fields in each inlined step lets clang fold them into one ctx pointer plus offset, which
 * the verifier refuses ("dereference of modified ctx ptr"). */
#pragma once
#include "include/lab.h"
#include "xdp_lb.h"
#include "xdp_lb_maps.h"
#include "xdp_lb_proto.h"

#define LB_CONTINUE -1

struct lb_pkt {
	struct flow_key f; /* for an ICMP error: the flow it is about (client → VIP) */
	void *l4;          /* transport header (ICMP header for an ICMP error) */
	__u32 inner_len;   /* the whole IP packet (header + payload), host order */
	__u8 is_icmp;      /* an ICMP frag-needed / packet-too-big about a balanced flow */
	__u8 is_syn;       /* TCP SYN without ACK: starts a new flow even over a stale entry */
};

static __always_inline int addr_eq(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* fragments carry no ports to hash on: dropped when sent to a VIP address, passed otherwise */
static __always_inline int fragment(struct lb_global *g, const struct lb_pkt *p)
{
	if (is_vip_addr(p->f.dst))
		return VERDICT(g, drop_fragment, XDP_DROP);
	return VERDICT(g, pass_non_vip, XDP_PASS);
}

static __always_inline int parse_ipv4(struct lb_global *g, struct iphdr *ip, void *data_end, struct lb_pkt *p)
{
	if ((void *)(ip + 1) > data_end || ip->ihl < 5 || ip->version != 4)
		return VERDICT(g, pass_truncated_ip, XDP_PASS);
	/* options are fine: DSR does not touch the IP header, we only skip them */
	void *l4 = (void *)ip + ip->ihl * 4;
	if (l4 > data_end)
		return VERDICT(g, pass_truncated_ip, XDP_PASS);
	p->l4 = l4;
	p->f.family = LB_AF_INET;
	p->f.proto = ip->protocol;
	p->inner_len = bpf_ntohs(ip->tot_len);
	__builtin_memcpy(p->f.src, &ip->saddr, 4);
	__builtin_memcpy(p->f.dst, &ip->daddr, 4);
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return fragment(g, p);
	return LB_CONTINUE;
}

static __always_inline int is_ext_hdr(__u8 proto)
{
	return proto == NEXTHDR_HOP || proto == NEXTHDR_ROUTING || proto == NEXTHDR_DEST;
}

static __always_inline int parse_ipv6(struct lb_global *g, struct ipv6hdr *ip6, void *data_end, struct lb_pkt *p)
{
	if ((void *)(ip6 + 1) > data_end)
		return VERDICT(g, pass_truncated_ip, XDP_PASS);
	void *l4 = ip6 + 1;
	p->f.family = LB_AF_INET6;
	p->f.proto = ip6->nexthdr;
	p->inner_len = bpf_ntohs(ip6->payload_len) + sizeof(struct ipv6hdr);
	__builtin_memcpy(p->f.src, &ip6->saddr, 16);
	__builtin_memcpy(p->f.dst, &ip6->daddr, 16);
	/* hop-by-hop / routing / destination options before the transport header: skip a bounded
	 * number (the verifier needs the bound; real traffic carries one or two) */
#pragma unroll
	for (int i = 0; i < LB_MAX_EXT_HDRS; i++) {
		if (!is_ext_hdr(p->f.proto))
			break;
		struct lb_ext_hdr *eh = l4;
		if ((void *)(eh + 1) > data_end)
			return VERDICT(g, pass_truncated_ip, XDP_PASS);
		p->f.proto = eh->nexthdr;
		l4 += (eh->hdrlen + 1) * 8;
	}
	p->l4 = l4;
	if (is_ext_hdr(p->f.proto))
		return VERDICT(g, pass_ext_hdr_limit, XDP_PASS);
	if (p->f.proto == NEXTHDR_FRAGMENT)
		return fragment(g, p);
	return LB_CONTINUE;
}

/* Ethernet, then IPv4 or IPv6: the flow's family, protocol, addresses and where L4 starts */
static __always_inline int parse_l3(void *data, void *data_end, struct lb_global *g, struct lb_pkt *p)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return VERDICT(g, pass_non_ip, XDP_PASS);
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(g, (void *)(eth + 1), data_end, p);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(g, (void *)(eth + 1), data_end, p);
	return VERDICT(g, pass_non_ip, XDP_PASS);
}

static __always_inline int is_icmp(const struct flow_key *f)
{
	return (f->family == LB_AF_INET && f->proto == IPPROTO_ICMP_) || (f->family == LB_AF_INET6 && f->proto == IPPROTO_ICMPV6_);
}

/*
 * ICMP "fragmentation needed" / ICMPv6 "packet too big" about a packet a backend sent from a
 * VIP (DSR: backend → client, source VIP): path-MTU discovery needs it at that backend, not
 * at the LB. As Katran does, rebuild the client → VIP flow from the embedded header (source
 * and destination swapped) and route the error like that flow's packets: conntrack, else the
 * ring. Other ICMP is the LB host's own business.
 */
static __always_inline int parse_icmp_error(struct lb_global *g, void *data_end, struct lb_pkt *p)
{
	struct flow_key *f = &p->f;
	__u8 *ic = p->l4;
	if ((void *)(ic + ICMP_HDR_LEN) > data_end)
		return VERDICT(g, pass_other_proto, XDP_PASS);
	void *in = ic + ICMP_HDR_LEN;
	void *il4;
	__u8 outer_dst[16];
	__builtin_memcpy(outer_dst, f->dst, 16);
	if (f->family == LB_AF_INET) {
		struct iphdr *iip = in;
		if (ic[0] != ICMP_DEST_UNREACH_ || ic[1] != ICMP_FRAG_NEEDED_ || (void *)(iip + 1) > data_end ||
		    iip->ihl < 5 || iip->version != 4)
			return VERDICT(g, pass_other_proto, XDP_PASS);
		il4 = in + iip->ihl * 4;
		f->proto = iip->protocol;
		__builtin_memset(f->src, 0, 16);
		__builtin_memset(f->dst, 0, 16);
		__builtin_memcpy(f->src, &iip->daddr, 4);
		__builtin_memcpy(f->dst, &iip->saddr, 4);
	} else {
		struct ipv6hdr *iip6 = in;
		if (ic[0] != ICMPV6_PKT_TOOBIG_ || (void *)(iip6 + 1) > data_end)
			return VERDICT(g, pass_other_proto, XDP_PASS);
		il4 = iip6 + 1;
		f->proto = iip6->nexthdr;
		__builtin_memcpy(f->src, &iip6->daddr, 16);
		__builtin_memcpy(f->dst, &iip6->saddr, 16);
	}
	/* the error goes to the original sender (the VIP), and only TCP/UDP flows are ours */
	if ((f->proto != IPPROTO_TCP_ && f->proto != IPPROTO_UDP_) || il4 + 4 > data_end || !addr_eq(outer_dst, f->dst))
		return VERDICT(g, pass_other_proto, XDP_PASS);
	f->sport = *(__u16 *)(il4 + 2);
	f->dport = *(__u16 *)il4;
	p->is_icmp = 1;
	return LB_CONTINUE;
}

/* the ports of a TCP/UDP packet, or of the flow an ICMP error is about */
static __always_inline int parse_l4(void *data_end, struct lb_global *g, struct lb_pkt *p)
{
	if (is_icmp(&p->f))
		return parse_icmp_error(g, data_end, p);
	if (p->f.proto != IPPROTO_TCP_ && p->f.proto != IPPROTO_UDP_)
		return VERDICT(g, pass_other_proto, XDP_PASS);
	/* both TCP and UDP start with the two ports: read them, then check the full header length */
	void *l4 = p->l4;
	if (l4 + 4 > data_end) {
		if (is_vip_addr(p->f.dst))
			return VERDICT(g, drop_truncated_l4, XDP_DROP);
		return VERDICT(g, pass_non_vip, XDP_PASS);
	}
	p->f.sport = *(__u16 *)l4;
	p->f.dport = *(__u16 *)(l4 + 2);
	/* a SYN is known before conntrack is asked (it skips the lookup); a cut TCP header is judged
	 * later by check_l4, once we know whether the frame is VIP traffic */
	struct tcphdr *th = l4;
	if (p->f.proto == IPPROTO_TCP_ && (void *)(th + 1) <= data_end)
		p->is_syn = th->syn && !th->ack;
	return LB_CONTINUE;
}

/* VIP traffic: the whole TCP/UDP header must be there */
static __always_inline int check_l4(void *data_end, struct lb_global *g, struct lb_pkt *p)
{
	if (p->is_icmp)
		return LB_CONTINUE; /* the embedded header is at most 8 bytes of L4: nothing more to check */
	if (p->f.proto == IPPROTO_TCP_) {
		struct tcphdr *th = p->l4;
		if ((void *)(th + 1) > data_end)
			return VERDICT(g, drop_truncated_l4, XDP_DROP);
	} else if (p->l4 + sizeof(struct udphdr) > data_end) {
		return VERDICT(g, drop_truncated_l4, XDP_DROP);
	}
	return LB_CONTINUE;
}
