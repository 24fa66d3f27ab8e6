/* Forwarding a frame to its backend (Katran's pckt_encap.h): L2 DSR rewrites the MACs;
 * IPIP / IP6IP6 prepends an outer IP header. */
#pragma once
#include "include/lab.h"
#include "xdp_lb.h"
#include "xdp_lb_csum.h"
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
