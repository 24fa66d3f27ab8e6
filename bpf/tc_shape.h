/* Structs shared by tc_shape.bpf.c and its control plane (controller/tc/). TS reads these
 * layouts from the object's BTF (bpf/gen/tc_shape.ts); never hand-code offsets in TS.
 * IPv4 and IPv6: addresses are 16 bytes, IPv4 in the first 4 (rest zero), with the family beside
 * them so that an IPv6 prefix never matches an IPv4 packet. Addresses and ports are stored in
 * network byte order, as they sit in the header. */
#pragma once

/* enums rather than #defines: they reach the object's BTF, so bpf/gen/tc_shape.enums.ts carries
 * them to the control plane (the __lab_export_ pointers in tc_shape.bpf.c keep them there) */
enum tc_shape_limits {
	TC_MAX_CLASSES = 256, /* class ids 1..255; 0 means "not shaped" */
	TC_MAX_RULES = 64,    /* filter rules per generation */
	TC_MAX_MATCHES = 4096,
	TC_CG_MAX_LEVEL = 16, /* cgroup2 levels below the root a class's cgroup may sit at */
};

/* tc_class.flags */
enum tc_shape_class_flags {
	TC_CLASS_ACTIVE = 1,
};

/* tc_rule.action */
enum tc_shape_rule_action {
	TC_RULE_COUNT = 0, /* count and go on to the next rule */
	TC_RULE_DROP = 1,  /* count and drop (TC_ACT_SHOT) */
};
/* tc_rule.dir (bit mask) */
enum tc_shape_dir {
	TC_DIR_INGRESS = 1,
	TC_DIR_EGRESS = 2,
};

/* A shaping class: its rate and how far ahead of now a packet may be scheduled before it is
 * dropped (the horizon). Written whole by the controller: a rate change is one map write. */
struct tc_class {
	__u64 rate_bps;   /* bits per second; 0 = not shaped (counted only) */
	__u64 horizon_ns; /* drop when the departure time would be further than this from now */
	__u32 flags;
	__u32 _pad;
};

/* Per class, shared by all CPUs: the departure time handed to the class's last packet. */
struct tc_class_state {
	__u64 t_last;
};

/* Per class, per CPU. */
struct tc_class_stats {
	__u64 packets;
	__u64 bytes;
	__u64 delayed;        /* packets given a departure time in the future */
	__u64 horizon_drops;  /* packets dropped because they would leave beyond the horizon */
	__u64 idle_ns;        /* time the class's timeline fell behind now: nothing was left to
	                       * pace, so the class sent below its rate (the sender, not the
	                       * shaper, was the limit; EDT keeps no credit for it, HTB a burst) */
};

/* address families as they appear in the keys and rules (0 in a rule: any) */
#define TC_AF_INET 4
#define TC_AF_INET6 6

/* Exact 5-tuple → class (egress: saddr is local). */
struct tc_flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u8 _pad[2];
};

/* Destination CIDR (+ port) → class: an LPM trie whose data is port, family, then address, so
 * that prefixlen = 16 + 8 + CIDR length. port 0 is the "any port" entry (looked up second). */
struct tc_dst_key {
	__u32 prefixlen;
	__u16 port;
	__u8 family;
	__u8 addr[16];
	__u8 _pad[1];
};

/* A filter rule. Matches the remote address (destination on egress, source on ingress)
 * against addr/prefixlen, the destination port (0 = any) and the protocol (0 = any). */
struct tc_rule {
	__u8 addr[16];
	__u32 prefixlen; /* 0-32 (IPv4) or 0-128 (IPv6) */
	__u16 port;
	__u8 proto;
	__u8 action;
	__u8 dir;
	__u8 active;
	__u8 family; /* TC_AF_*, 0 = any family (then prefixlen is 0) */
	__u8 _pad[1];
};

struct tc_rule_stats {
	__u64 packets;
	__u64 bytes;
};

/* Global counters, per CPU: what the programs saw. */
struct tc_global_stats {
	__u64 egress_packets;
	__u64 ingress_packets;
	__u64 unclassified; /* egress packets in no class (not shaped) */
	__u64 filter_drops;
};
