/* The record hello_openat.bpf.c sends through its ring buffer. TS reads this layout from BTF. */
#pragma once
#define HELLO_COMM_LEN 16
#define HELLO_FNAME_LEN 256

struct openat_event {
	__u64 ts_ns;
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 uid;
	__s32 flags;
	char comm[HELLO_COMM_LEN];
	char filename[HELLO_FNAME_LEN];
};
