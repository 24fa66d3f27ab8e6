/* Structs shared by socket_lb.bpf.c and the TypeScript control plane (controller/svc/). TS reads
 * these layouts from the object's BTF (bpf/gen/socket_lb.ts). Addresses are 16 network-order
 * bytes (IPv4 in the first 4, rest zero), ports network order: what the sock_addr context holds. */
#pragma once

#define SVC_AF_INET 4
#define SVC_AF_INET6 6

/* Constants the control plane uses too are enums: they reach the object's BTF, so
 * bpf/gen/socket_lb.enums.ts carries them (the __lab_export_ pointers in socket_lb.bpf.c keep
 * them there). */

/* svc_val.alg */
enum socket_lb_alg {
	SVC_ALG_RANDOM = 0, /* a uniformly random slot among the live backends, per connect/datagram */
	SVC_ALG_MAGLEV = 1, /* slot = hash(socket cookie) % ring size over a Maglev table */
};

/* defaults as compiled; the controller sets the real sizes before load */
enum socket_lb_limits {
	SVC_DEFAULT_SERVICES = 1024,
	SVC_DEFAULT_BACKENDS = 4096,
	SVC_DEFAULT_RING = 251,
	SVC_REVNAT_ENTRIES = 65536,
};

/* stats indexes (per-CPU counters) */
enum socket_lb_stat {
	SVC_ST_CONNECT = 0,     /* connect4/6 rewritten to a backend */
	SVC_ST_SENDMSG = 1,     /* sendmsg4/6 rewritten */
	SVC_ST_RECVMSG = 2,     /* recvmsg4/6: backend source shown as the VIP */
	SVC_ST_PEERNAME = 3,    /* getpeername4/6: backend shown as the VIP */
	SVC_ST_NO_BACKEND = 4,  /* a service with an empty ring: the connect is refused (EPERM) */
	SVC_ST_BAD_SLOT = 5,    /* a ring slot outside the ring or naming no backend (should never happen: refused, counted) */
	SVC_ST_MAX = 6,
};

struct svc_key {
	__u8 addr[16];
	__u16 port;  /* network order */
	__u8 proto;  /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family; /* SVC_AF_INET / SVC_AF_INET6 */
};

/* One service. Its rings live in svc_ring at ((index * 2 + half) * ring_size + slot): the controller
 * writes a whole new ring into the inactive half, then flips `half` and `count` with one update of
 * this value, so a connect sees the old ring or the new one, never a mix. */
struct svc_val {
	__u32 index;
	__u32 count; /* slots in use in the active half: ring_size (maglev) or #backends (random); 0 = none */
	__u8 alg;
	__u8 half;
	__u16 _pad;
};

struct svc_backend {
	__u8 addr[16];
	__u16 port;  /* network order */
	__u8 family;
	__u8 _pad;
};

/* reverse translation for UDP replies and getpeername: (socket, backend) → the VIP it stands for */
struct revnat_key {
	__u64 cookie;
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 _pad[5];
};

struct revnat_val {
	__u8 addr[16];
	__u16 port;
	__u8 proto; /* the service's, to check it still exists (0: written by a build before this field) */
	__u8 _pad[5];
};
