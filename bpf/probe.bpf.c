// Tiny programs, one per hook the lab uses. `pnpm lab doctor` loads each one alone and tries to
// attach it, because "the program type exists" (libbpf_probe_bpf_prog_type) is not "this kernel
// lets me attach it here" (e.g. fentry/LSM give EPERM on a locked-down host, kprobes may be off).
#include "include/lab.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getpid")
int p_tracepoint(void *ctx) { lab_count(&hits); return 0; }

SEC("raw_tp/sys_enter")
int p_raw_tp(void *ctx) { return 0; }

SEC("tp_btf/sys_enter")
int BPF_PROG(p_tp_btf, struct pt_regs *regs, long id) { return 0; }

SEC("kprobe/vfs_read")
int p_kprobe(void *ctx) { return 0; }

SEC("fentry/vfs_read")
int BPF_PROG(p_fentry, struct file *file) { return 0; }

SEC("lsm/bprm_check_security")
int BPF_PROG(p_lsm, struct linux_binprm *bprm) { return 0; }

SEC("xdp")
int p_xdp(struct xdp_md *ctx) { return XDP_PASS; }

SEC("tc")
int p_tc(struct __sk_buff *skb) { return 0; /* TC_ACT_OK */ }

SEC("cgroup/connect4")
int p_connect4(struct bpf_sock_addr *ctx) { return 1; }

SEC("cgroup/sock_create")
int p_sock_create(struct bpf_sock *ctx) { return 1; }

SEC("perf_event")
int p_perf_event(void *ctx) { return 0; }

SEC("tracepoint/syscalls/sys_enter_getppid")
int p_send_signal(void *ctx)
{
	/* never true at run time; only makes the verifier check the helper is allowed */
	if (bpf_get_current_pid_tgid() == 0)
		bpf_send_signal(9);
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} probe_rb SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getuid")
int p_ringbuf(void *ctx)
{
	__u64 *v = bpf_ringbuf_reserve(&probe_rb, sizeof(*v), 0);
	if (v) {
		*v = 1;
		bpf_ringbuf_submit(v, 0);
	}
	return 0;
}
