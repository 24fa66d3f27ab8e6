// Test fixture for the binding: maps with awkward layouts, a ring buffer producer with sequence
// numbers, a tracepoint counter and an XDP program for BPF_PROG_TEST_RUN.
#include "include/lab.h"

struct padded {
	__u8 a;      /* 7 bytes of padding follow */
	__u64 b;
	__u16 c;
	char name[5];
	__u32 arr[3];
	__s8 neg;
	unsigned int flag : 1;
	unsigned int level : 3;
	__u8 addr[16];
};

struct pkey {
	__u32 id;
	__u16 port; /* 2 bytes of padding follow */
};

struct seq_event {
	__u64 seq;
	__u32 pid;
	__u32 pad;
};

const volatile __u32 target_tgid = 0;
__u64 next_seq = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct pkey);
	__type(value, struct padded);
} padded_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} rb SEC(".maps");

LAB_LOST_COUNTER(rb_lost);
LAB_EXPORT(seq_event);

SEC("tracepoint/syscalls/sys_enter_getppid")
int count_getppid(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&hits, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	struct seq_event *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e) {
		lab_count(&rb_lost);
		return 0;
	}
	e->seq = __sync_fetch_and_add(&next_seq, 1);
	e->pid = target_tgid;
	e->pad = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* XDP_DROP when the first byte is 0xff, XDP_TX when 0xee (after swapping the first two bytes), else PASS */
SEC("xdp")
int xdp_fixture(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *end = (void *)(long)ctx->data_end;
	if (data + 2 > end)
		return XDP_ABORTED;
	if (data[0] == 0xff)
		return XDP_DROP;
	if (data[0] == 0xee) {
		__u8 t = data[0];
		data[0] = data[1];
		data[1] = t;
		return XDP_TX;
	}
	/* reads the inner map through the outer one: proves map-in-map wiring */
	__u32 k = 0;
	void *in = bpf_map_lookup_elem(&outer, &k);
	if (in) {
		__u32 *v = bpf_map_lookup_elem(in, &k);
		if (v && *v == 42)
			return XDP_REDIRECT;
	}
	return XDP_PASS;
}
