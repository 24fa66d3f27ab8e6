/* Checksum helpers (Katran's csum_helpers.h). */
#pragma once
#include "include/lab.h"

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
