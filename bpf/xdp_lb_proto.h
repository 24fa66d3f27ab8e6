/* Protocol numbers and header shapes the LB parses (vmlinux.h has the structs, not the macros). */
#pragma once

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_ICMP_ 1
#define IPPROTO_IPIP_ 4
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_IPV6_ 41
#define IPPROTO_ICMPV6_ 58
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60
#define ICMP_DEST_UNREACH_ 3
#define ICMP_FRAG_NEEDED_ 4
#define ICMPV6_PKT_TOOBIG_ 2
#define ICMP_HDR_LEN 8 /* type, code, checksum, 4 bytes (unused / next-hop MTU) */
#define LB_TUN_TTL 64

/* the fixed part of an IPv6 extension header (hop-by-hop, routing, destination options) */
struct lb_ext_hdr {
	__u8 nexthdr;
	__u8 hdrlen; /* 8-octet units, not counting the first 8 */
};
