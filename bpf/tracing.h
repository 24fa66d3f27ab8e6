/*
 * Zero-code HTTP tracing: the records tracing.bpf.c hands to controller/tracing (which reads the
 * layouts from BTF; bpf/gen/tracing.ts is generated from them).
 *
 * One record per syscall that moved bytes on a TCP socket of a selected workload (the first
 * `cap_bytes` of them), plus connection lifecycle records from sock:inet_sock_set_state and
 * accept/accept4 (or a server socket's first bytes, where the sock hooks carry the payload). User space reassembles each connection's byte stream from these and parses HTTP/1.1.
 */
#pragma once

enum tr_limits {
	/* the record carries at most this many payload bytes; the run-time limit is cap_bytes (≤ this) */
	TR_MAX_CAP = 512,
	/* how many iovecs of a readv/writev/sendmsg/recvmsg are copied from (the rest is counted only) */
	TR_MAX_IOV = 8,
	/*
	 * how many first bytes of a socket (or of a continuation) are looked at to tell an HTTP/1.x
	 * start line: a method is any token, and the longest registered one has 17 characters
	 */
	TR_FIRST_WIN = 24,
};
#define TR_COMM_LEN 16

enum tr_kind {
	TR_EV_DATA = 1,     /* payload: dir says which way, len = bytes the syscall moved */
	TR_EV_ACCEPT = 2,   /* accept/accept4 returned a TCP socket: the server side of a connection */
	TR_EV_CONNECT = 3,  /* a selected process's socket entered SYN_SENT (connect) */
	TR_EV_ESTABLISHED = 4, /* a tracked client socket reached ESTABLISHED */
	TR_EV_CLOSE = 5,    /* a tracked socket reached TCP_CLOSE (old_state says from where) */
	TR_EV_SKIP = 6,     /* header only: the skip_* counts of a crossed exchange, sent when the
			     * socket's next exchange does not cross (sampling) */
};

/* what a socket is to its workload (tr_conn.role, and a dimension of map red) */
enum tr_role { TR_ROLE_SERVER = 1, TR_ROLE_CLIENT = 2 };

enum tr_dir { TR_DIR_IN = 1, TR_DIR_OUT = 2 };

/* which selector maps hold entries (the value of map sel_kinds, written by the loader) */
enum tr_sel { TR_SEL_CGROUPS = 1, TR_SEL_PIDS = 2 };

/* which syscall produced a data record (the report lists the mix) */
enum tr_sys {
	TR_SYS_READ = 1, TR_SYS_WRITE, TR_SYS_READV, TR_SYS_WRITEV, TR_SYS_SENDTO, TR_SYS_RECVFROM,
	TR_SYS_SENDMSG, TR_SYS_RECVMSG, TR_SYS_SENDFILE,
};

struct tr_event {
	__u64 ts_ns;     /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	/*
	 * Continuation syscalls the kernel did not send (same direction as the run before them, past
	 * the first cap_bytes of it, not starting like an HTTP message): their byte count, number and
	 * the time of the last one, reported on the socket's next record (data or close) so user space
	 * can count body bytes and end the message at the right time.
	 */
	__u64 skip_bytes;
	__u64 skip_ts;
	__u32 skip_calls;
	__u32 skip_dir;  /* enum tr_dir of the skipped run */
	__u64 sock;      /* kernel struct sock address: the connection's identity while it lives */
	__u64 cgroup_id; /* cgroup of the task (0 for lifecycle records from softirq) */
	__u32 pid;       /* tgid */
	__u32 tid;
	__u32 service;   /* index the controller gave the workload (0 = not known) */
	__u32 kind;      /* enum tr_kind */
	__u32 dir;       /* enum tr_dir (data) */
	__u32 sys;       /* enum tr_sys (data) */
	__u32 len;       /* bytes the syscall moved (data) */
	__u32 cap_len;   /* bytes of data[] that are valid (≤ cap_bytes) */
	__s32 old_state; /* lifecycle: TCP state before */
	__s32 new_state; /* lifecycle: TCP state after */
	/*
	 * data and connect: server requests this thread read that did not cross (sampling) and whose
	 * response has not started. Non-zero on a client request (or a connect that is refused) means
	 * its parent may be one of them: unlinkable.
	 */
	__u32 unsampled;
	__u32 _pad2;
	__u16 family;    /* AF_INET / AF_INET6 */
	__u16 lport;     /* local port, host order */
	__u16 rport;     /* remote port, host order */
	__u16 _pad;
	__u8 laddr[16];  /* IPv4 in the first 4 bytes, or IPv6 */
	__u8 raddr[16];
	char comm[TR_COMM_LEN];
	/*
	 * Twice the cap so the verifier can bound iovec offsets. Only offsetof(data) + cap_len bytes
	 * of a record cross the ring (bpf_ringbuf_output from a per-CPU scratch record).
	 */
	__u8 data[TR_MAX_CAP * 2];
};

/* per-socket state of a selected workload's TCP socket (kernel-side filter) */
struct tr_conn {
	__u64 skip_bytes;
	__u64 skip_ts;
	__u32 skip_calls;
	__u32 skip_dir;  /* direction of the skipped continuations */
	__u32 dir;       /* direction of the current run (0 = no data yet) */
	__u32 run_bytes; /* bytes moved in the current run (saturating) */
	__u32 non_http;  /* the first bytes were not HTTP/1.x: nothing more is sent */
	__u32 req_tid;   /* the thread that read the open request when it did not cross */
	__u64 req_ts;    /* in-kernel RED: when the open request began (0: none open) */
	__u64 first_ts;  /* when the first of the undecided first bytes moved */
	__u8 role;       /* enum tr_role, 0 until known */
	__u8 always;     /* every exchange crosses: a client, or a server whose peer is a traced local client */
	__u8 capture;    /* the current exchange crosses to user space */
	__u8 fresh;      /* first seen by a data hook, role not yet known (tracing.bpf.c, first_sight) */
	/*
	 * the socket's first bytes while they are too few to tell whether it speaks HTTP/1.x (a first
	 * read of one byte, a long method split over reads): how many (0: decided), all token
	 * characters, and whether they are the start of "HTTP/1." too. Nothing more is needed to go
	 * on with the next read's bytes.
	 */
	__u8 first_len;
	__u8 first_ver;
	/*
	 * an interim answer (100 Continue, 102, 103 Early Hints) to the open request: its body may
	 * follow as a new run of request bytes, which is that request's, not a new one (no new RED
	 * timing or sampling decision)
	 */
	__u8 cont;
};

/* a connection's 4-tuple, IPv4 as v4-mapped IPv6 (the form inet_sock_set_state stores) */
struct tr_tuple {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
};

/*
 * In-kernel RED, for every request whether it crossed or not: per service, role and status class
 * (the response's first digit, 0 = none: closed before a response), a log2 histogram of the time
 * from the request's first byte read to the response's first byte written (server) or from the
 * request's first byte written to the response's first byte read (client). count[0]: < 1 µs,
 * count[b]: [2^(b-1), 2^b) µs, the last also everything above.
 *
 * Map red is a per-CPU array indexed by (service × TR_RED_ROLES + role − 1) × TR_RED_CLASSES +
 * class: an index, not a hashed key, on a path every request of a traced service takes. Service
 * indexes run from 1 to TR_RED_SERVICES − 1 (the controller refuses more workloads).
 */
#define TR_RED_BUCKETS 30
enum tr_red_layout { TR_RED_CLASSES = 6, TR_RED_ROLES = 2, TR_RED_SERVICES = 64 };

struct tr_red {
	__u64 count[TR_RED_BUCKETS];
	__u64 sum_ns;
};

/* what the kernel knows of a socket user space asked about (tracked sockets) */
struct tr_sock {
	__u32 pid;
	__u32 service;
	__u64 cgroup_id;
};
