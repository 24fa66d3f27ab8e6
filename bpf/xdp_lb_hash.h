/* The flow hash that picks a Maglev ring slot. controller/lb/flowhash.ts computes the same
 * function (tests compare them), so a change here is a change there. */
#pragma once
#include "include/lab.h"
#include "xdp_lb.h"

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
