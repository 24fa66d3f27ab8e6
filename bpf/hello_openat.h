/* The record hello_openat.bpf.c sends through its ring buffer. TS reads this layout from BTF. */
#pragma once
#define HELLO_COMM_LEN 16
#define HELLO_FNAME_LEN 256

/* fname_status of a name kept whole or cut; an enum, so it reaches the object's BTF and
 * bpf/gen/hello_openat.enums.ts (a negative status is -errno) */
enum hello_fname_status {
	HELLO_FNAME_WHOLE = 0,
	HELLO_FNAME_TRUNCATED = 1,
};

struct openat_event {
	__u64 ts_ns;
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 uid;
	__s32 flags;
	/* 0: filename is the whole name; HELLO_FNAME_TRUNCATED: its first HELLO_FNAME_LEN - 1 bytes;
	 * < 0: -errno, the name could not be read (filename empty). A reader cannot tell these apart
	 * from the bytes alone: a 255-byte name fills the field as a longer one does. */
	__s32 fname_status;
	char comm[HELLO_COMM_LEN];
	char filename[HELLO_FNAME_LEN];
};
