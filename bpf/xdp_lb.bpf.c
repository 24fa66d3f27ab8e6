// XDP L4 load balancer, Katran style: VIP lookup → conntrack (LRU) → Maglev ring (map-in-map,
// swapped whole by the controller) → per VIP either L2 direct server return (rewrite MACs) or
// IPIP / IP6IP6 encapsulation (prepend an outer IP header, as Katran does), then out through the
// backend's own port (devmap) where one is set, else XDP_TX / redirect.
// An established flow skips the VIP hash: conntrack → VIP slot (array) → backend (array).
// The control plane (controller/lb/) owns every map; this file only reads them, except
// conntrack and counters. Split by concern as Katran is: xdp_lb_maps.h (maps, counters),
// xdp_lb_parse.h (headers → flow), xdp_lb_hash.h (ring index), xdp_lb_encap.h (DSR, IPIP),
// xdp_lb_csum.h. The benchmark/test helper programs live in xdp_bench.bpf.c.
#include "include/lab.h"
#include "xdp_lb.h"
#include "xdp_lb_maps.h"
#include "xdp_lb_parse.h"
#include "xdp_lb_hash.h"
#include "xdp_lb_encap.h"

LAB_EXPORT_ENUM(xdp_lb_limits);
LAB_EXPORT_ENUM(xdp_lb_vip_flags);
LAB_EXPORT_ENUM(xdp_lb_fwd);
LAB_EXPORT_ENUM(xdp_lb_be_flags);

static __always_inline struct vip_meta *lookup_vip(const struct flow_key *f)
{
	struct vip_key vk = {};
	__builtin_memcpy(vk.addr, f->dst, 16);
	vk.port = f->dport;
	vk.proto = f->proto;
	vk.family = f->family;
	return bpf_map_lookup_elem(&vips, &vk);
}

/* a backend by id, if it is present (draining or down backends keep their established flows) */
static __always_inline struct backend *active_backend(__u32 *be_id)
{
	struct backend *be = bpf_map_lookup_elem(&backends, be_id);
	return be && (be->flags & LB_BE_F_ACTIVE) ? be : NULL;
}

static __always_inline int vip_is(const struct vip_key *k, const struct flow_key *f)
{
	return addr_eq(k->addr, f->dst) && k->port == f->dport && k->proto == f->proto && k->family == f->family;
}

/*
 * The fast path for an established flow: one hash lookup (conntrack), then array reads only.
 * The entry names the VIP slot and the backend; the slot must still hold the VIP this packet is
 * addressed to (a removed VIP whose slot was reused does not match) and the backend must be
 * present and belong to that slot. NULL sends the packet down the slow path (VIP hash, ring).
 */
static __always_inline struct vip_meta *established(const struct ct_value *ct, const struct lb_pkt *p, struct backend **be, __u32 *be_id)
{
	__u32 vip_id = ct->vip_id;
	struct vip_slot *vs = bpf_map_lookup_elem(&vip_slots, &vip_id);
	if (!vs || !(vs->meta.flags & LB_VIP_F_ACTIVE) || !vip_is(&vs->key, &p->f))
		return NULL;
	*be_id = ct->backend_id;
	struct backend *b = active_backend(be_id);
	if (!b || b->vip_id != vip_id)
		return NULL;
	*be = b;
	return &vs->meta;
}

/* The slow path: a conntrack entry that still names an active backend of this VIP keeps it (the
 * ring may have changed since); else the VIP's Maglev ring, and the choice is remembered (not
 * for ICMP errors: they start no flow). NULL: no backend, counted; the frame is dropped. */
static __always_inline struct backend *pick_backend(struct lb_global *g, const struct vip_meta *vm, const struct lb_pkt *p, const struct ct_value *ct, __u32 *be_id, int *hit)
{
	__u32 vip_id = vm->vip_id;
	if (ct && ct->vip_id == vip_id) {
		*be_id = ct->backend_id;
		struct backend *be = active_backend(be_id);
		/* the id must still be this VIP's: a removed backend's id is reused (for another VIP too)
		 * while the LRU still holds its flows, and they would follow it there and stay */
		if (be && be->vip_id == vip_id) {
			*hit = 1;
			return be; /* a removed backend's flows are re-hashed below */
		}
	}
	__u32 ring_size = vm->ring_size;
	void *ring = bpf_map_lookup_elem(&rings, &vip_id);
	if (!ring || !ring_size)
		return VERDICT(g, drop_no_backend, NULL);
	__u32 idx = flow_hash(&p->f) % ring_size;
	__u32 *slot = bpf_map_lookup_elem(ring, &idx);
	if (!slot || *slot == LB_EMPTY_SLOT)
		return VERDICT(g, drop_no_backend, NULL);
	*be_id = *slot;
	struct backend *be = active_backend(be_id);
	if (!be)
		return VERDICT(g, drop_bad_backend, NULL);
	if (!p->is_icmp) {
		struct ct_value nv = { .backend_id = *be_id, .vip_id = vip_id };
		bpf_map_update_elem(&conntrack, &p->f, &nv, BPF_ANY);
	}
	return be;
}

static __always_inline void count_flow(__u32 vip_id, __u32 be_id, __u64 bytes, int hit, int icmp)
{
	count(vip_id, bytes, !hit && !icmp, hit);
	/* stats is sized LB_MAX_VIPS + the backends array, so every valid backend id has a slot */
	count(LB_MAX_VIPS + be_id, bytes, !hit && !icmp, hit);
}

/* rewrite (DSR) or encapsulate (IPIP/IP6IP6) for the backend; -1 when that is impossible */
static __always_inline int rewrite(struct xdp_md *ctx, void *data, void *data_end, const struct vip_meta *vm, const struct backend *be, const struct lb_pkt *p)
{
	if (vm->fwd != LB_FWD_IPIP)
		return dsr(data, data_end, be);
	if (be->family != p->f.family)
		return -1;
	return encap(ctx, be, vm->tun_src, p->f.family, p->inner_len);
}

/* into the backend's own port (devmap), else out of the interface it came in on (XDP_TX), else
 * redirected to the backend's interface */
static __always_inline int transmit(struct xdp_md *ctx, struct lb_global *g, const struct backend *be, __u32 be_id)
{
	/* a miss returns the flags' action: XDP_PASS here, which never means "sent" */
	if (bpf_redirect_map(&backend_ports, be_id, XDP_PASS) == XDP_REDIRECT)
		return XDP_REDIRECT;
	if (be->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	long r = bpf_redirect(be->ifindex, 0);
	if (r != XDP_REDIRECT)
		GCOUNT(g, redirect_fail);
	return r;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lb_global *g = gstats();
	struct lb_pkt p = {};
	__u32 be_id = 0;
	int hit = 0;
	int act;

	GCOUNT(g, rx);
	if ((act = parse_l3(data, data_end, g, &p)) != LB_CONTINUE)
		return act;
	if ((act = parse_l4(data_end, g, &p)) != LB_CONTINUE)
		return act;
	/* conntrack before the VIP table: an established flow costs one hash lookup, not two; a
	 * SYN always goes to the ring (a new connection over a stale entry is a new flow) */
	struct ct_value *ct = p.is_syn ? NULL : bpf_map_lookup_elem(&conntrack, &p.f);
	struct backend *be = NULL;
	struct vip_meta *vm = ct ? established(ct, &p, &be, &be_id) : NULL;
	if (!vm && !(vm = lookup_vip(&p.f)))
		return VERDICT(g, pass_non_vip, XDP_PASS);
	if ((act = check_l4(data_end, g, &p)) != LB_CONTINUE)
		return act;
	if (be)
		hit = 1;
	else if (!(be = pick_backend(g, vm, &p, ct, &be_id, &hit)))
		return XDP_DROP;
	if (vm->fwd == LB_FWD_IPIP && be->family == p.f.family) {
		__u32 hdr = p.f.family == LB_AF_INET ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
		__u32 mtu = 0;
		if (encap_too_big(ctx, be, be_id, hdr, &mtu)) {
			/* no ICMP error about an ICMP error (RFC 1122 3.2.2) */
			if (p.is_icmp)
				return VERDICT(g, drop_encap, XDP_DROP);
			act = p.f.family == LB_AF_INET ? send_too_big4(ctx, mtu - hdr) : send_too_big6(ctx, mtu - hdr);
			if (act == XDP_TX)
				GCOUNT(g, icmp_too_big);
			else
				GCOUNT(g, drop_encap);
			return act;
		}
	}
	/* counted once sent: a frame dropped at rewrite (drop_encap) or whose redirect failed
	 * (redirect_fail) was counted as forwarded too, and in its VIP's and backend's packets, so
	 * the outcomes summed to more than rx */
	__u64 bytes = data_end - data;
	if (rewrite(ctx, data, data_end, vm, be, &p))
		return VERDICT(g, drop_encap, XDP_DROP);
	act = transmit(ctx, g, be, be_id);
	if (act != XDP_TX && act != XDP_REDIRECT)
		return act;
	count_flow(vm->vip_id, be_id, bytes, hit, p.is_icmp);
	GCOUNT(g, forwarded);
	if (p.is_icmp)
		GCOUNT(g, icmp_forwarded);
	return act;
}
