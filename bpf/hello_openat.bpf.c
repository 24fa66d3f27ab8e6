// hello tracer: every openat(2) → one record in a ring buffer → the TypeScript consumer.
// A plain tracepoint (not kprobe/fentry) so the same object runs on every kernel of the matrix and
// on hosts without kprobes. Filtering happens here, not in JS, so unwanted events cost nothing
// beyond the tracepoint itself.
#include "include/lab.h"
#include "hello_openat.h"

/* set by the loader before load (rodata: the verifier sees constants and prunes dead branches) */
const volatile __u32 target_tgid = 0;
const volatile char target_comm[HELLO_COMM_LEN] = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

LAB_LOST_COUNTER(lost);
LAB_EXPORT(openat_event);
LAB_EXPORT_ENUM(hello_fname_status);

static __always_inline bool comm_matches(const char *comm)
{
	if (!target_comm[0])
		return true;
#pragma unroll
	for (int i = 0; i < HELLO_COMM_LEN; i++) {
		if (comm[i] != target_comm[i])
			return false;
		if (!comm[i])
			return true;
	}
	return true;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int handle_openat(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	char comm[HELLO_COMM_LEN];

	if (target_tgid && tgid != target_tgid)
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
	if (!comm_matches(comm))
		return 0;

	struct openat_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		lab_count(&lost);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = tgid;
	e->tid = (__u32)id;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->flags = (__s32)BPF_CORE_READ(ctx, args[2]);
	__builtin_memcpy(e->comm, comm, sizeof(comm));
	const char *name = (const char *)BPF_CORE_READ(ctx, args[1]);
	long n = bpf_probe_read_user_str(e->filename, sizeof(e->filename), name);
	e->fname_status = n < 0 ? (__s32)n : 0;
	if (n == sizeof(e->filename)) {
		/* the field is full: the name ends there only if its next byte is the NUL (an unreadable
		 * byte counts as more name) */
		char next = 1;
		bpf_probe_read_user(&next, 1, name + sizeof(e->filename) - 1);
		if (next)
			e->fname_status = HELLO_FNAME_TRUNCATED;
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}
