/* Structs shared by xdp_lb.bpf.c and the TypeScript control plane (controller/lb/). TS reads
 * these layouts from the object's BTF (bpf/gen/xdp_lb.ts); never hand-code offsets in TS.
 * Addresses are stored in network byte order in 16 bytes (IPv4 in the first 4, rest zero);
 * ports in network byte order too, so the data plane compares raw header bytes. */
#pragma once

/*
 * Constants the control plane uses too are enums, not #defines: enums reach the object's BTF, so
 * bpf/gen/xdp_lb.ts carries them and the TS side never restates a number (the __lab_export_
 * pointers in xdp_lb.bpf.c keep them in BTF).
 */
enum xdp_lb_limits {
	LB_MAX_VIPS = 64,
	/* backends array size as compiled; the controller sets the real size before load
	 * (backendTableSize, default like Katran's reals table). Stats hold LB_MAX_VIPS + that many. */
	LB_DEFAULT_BACKENDS = 4096,
	/* IPv6 extension headers (hop-by-hop, routing, destination options) walked to find TCP/UDP */
	LB_MAX_EXT_HDRS = 4,
	LB_CT_ENTRIES = 262144,
	LB_DEFAULT_RING = 65537,
};
/* a ring slot that names no backend (empty ring): the data plane drops, counted. A #define: as an
 * enum value 0xffffffff would not fit BTF's signed 32-bit enum values (controller/lb/maglev.ts) */
#define LB_EMPTY_SLOT 0xffffffff

#define LB_AF_INET 4
#define LB_AF_INET6 6

/* vip_meta.flags (LB_VIP_F_HEALTHCHECK: the controller's own, the data plane ignores it) */
enum xdp_lb_vip_flags {
	LB_VIP_F_ACTIVE = 1,
	LB_VIP_F_HEALTHCHECK = 2,
};

/* vip_meta.fwd: how frames for this VIP reach a backend */
enum xdp_lb_fwd {
	LB_FWD_DSR = 0,  /* L2 direct server return: rewrite MACs only */
	LB_FWD_IPIP = 1, /* encapsulate: IPIP for an IPv4 VIP, IP6IP6 for an IPv6 VIP (Katran) */
};

/* backend.flags */
enum xdp_lb_be_flags {
	LB_BE_F_ACTIVE = 1,   /* present: conntrack hits may keep using it */
	LB_BE_F_DRAINING = 2, /* informational: weight 0 in the ring, old flows stay */
	LB_BE_F_DOWN = 4,     /* health check failed: out of the ring */
};

struct vip_key {
	__u8 addr[16];
	__u16 port; /* network order */
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family; /* LB_AF_INET / LB_AF_INET6 */
};

struct vip_meta {
	__u32 vip_id;     /* index into the maglev outer map and vip stats */
	__u32 ring_size;  /* entries of the inner table (prime) */
	__u32 flags;
	__u32 generation; /* bumped on every table swap: lets the controller tell tables apart */
	__u32 fwd;        /* LB_FWD_DSR / LB_FWD_IPIP */
	__u8 tun_src[16]; /* LB_FWD_IPIP: outer source address, same family as the VIP */
};

/* vip_meta by vip_id, with the key it belongs to: the established-flow fast path finds its VIP
 * from the conntrack entry (an array lookup, no hashing) and proves it is still the same VIP by
 * comparing the key with the packet's destination. The controller writes it with the vips
 * entry (controller/lb/dataplane.ts setVip/deleteVip); meta.flags 0 = no VIP in this slot. */
struct vip_slot {
	struct vip_key key;
	struct vip_meta meta;
};

/* One backend slot; indexed by backend id in the backends array. The control plane keeps its
 * whole model here (address, port, weight, vip), so a restarted controller rebuilds from maps. */
struct backend {
	__u8 mac[6];     /* next-hop MAC (the backend itself in L2 DSR) */
	__u8 src_mac[6]; /* MAC of the egress interface */
	__u32 ifindex;   /* egress interface; equal to the ingress one means XDP_TX */
	__u8 addr[16];   /* the backend's own address (health checks, proxies) */
	__u16 port;      /* health-check port, host order */
	__u8 family;
	__u8 flags;
	__u32 vip_id;
	__u32 weight;
};

struct flow_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

struct ct_value {
	__u32 backend_id;
	__u32 vip_id;
};

/* per-CPU counters, one entry per VIP (index vip_id) and per backend (LB_MAX_VIPS + backend id) */
struct lb_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 ct_hits;
	__u64 ct_misses;
};

/*
 * per-CPU state of the rate limit on too-big answers (xdp_lb_encap.h too_big_allowed). Its own map,
 * not pinned: a counter added to the pinned global_stats would make a running LB's pins another
 * build's (a restart refused until `lb stop --purge`, conntrack lost).
 */
struct lb_rate {
	__u64 credit_ns;
	__u64 last_ns;
	__u64 limited; /* too-big frames dropped unanswered: over the rate (also in drop_encap) */
};

/* per-CPU global counters: what did not get forwarded and why */
struct lb_global {
	/* rx = the sum of every other field but icmp_forwarded (a part of forwarded) */
	__u64 rx;
	__u64 forwarded;         /* sent (XDP_TX or a redirect the helper took) */
	__u64 pass_non_vip;
	__u64 pass_non_ip;
	__u64 pass_other_proto;
	__u64 pass_truncated_ip; /* IP header incomplete: not ours to judge */
	__u64 drop_truncated_l4; /* VIP traffic with a cut L4 header */
	__u64 drop_fragment;     /* fragments to a VIP address (no ports to hash on) */
	__u64 drop_no_backend;   /* VIP with an empty ring */
	__u64 drop_bad_backend;  /* ring pointed at an inactive slot */
	__u64 redirect_fail;     /* the redirect helper refused: not sent, not in forwarded */
	__u64 drop_encap;        /* IPIP: family mismatch, no headroom, or an ICMP error too big once encapsulated */
	__u64 icmp_forwarded;    /* ICMP frag-needed / ICMPv6 packet-too-big sent to the flow's backend */
	__u64 pass_ext_hdr_limit; /* IPv6 with more than LB_MAX_EXT_HDRS extension headers: passed */
	__u64 icmp_too_big;      /* IPIP: too big for the egress MTU once encapsulated; the client told */
};
