/* xdp_lb's maps (Katran's balancer_maps.h) and the counters over them. The controller
 * (controller/lb/) owns every map; the data plane writes only conntrack and counters. */
#pragma once
#include "include/lab.h"
#include "xdp_lb.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct vip_slot);
} vip_slots SEC(".maps");

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

/* An egress port per backend, by backend id (a devmap: bpf_redirect_map puts the frame straight
 * into that port's transmit, bulked per NAPI poll). Empty by default: frames leave by XDP_TX, or by
 * bpf_redirect to the backend's ifindex. Filled where the LB has a port per backend (the xdp-lb
 * bench's "devmap" configuration); devmap entries may name devices of another network namespace. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, LB_DEFAULT_BACKENDS);
	__type(key, __u32);
	__type(value, __u32);
} backend_ports SEC(".maps");

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_rate);
} too_big_rate SEC(".maps");

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

/* count a verdict and return it: `return verdict(g, pass_non_vip, XDP_PASS);` */
#define VERDICT(g, field, action)                                                                  \
	({                                                                                         \
		GCOUNT(g, field);                                                                  \
		(action);                                                                          \
	})

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

static __always_inline int is_vip_addr(const __u8 *addr)
{
	return bpf_map_lookup_elem(&vip_addrs, addr) != NULL;
}
