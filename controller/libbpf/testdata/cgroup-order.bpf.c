// Two cgroup/connect4 programs for attachCgroupFirst's test: `rewrite` sends 127.0.0.1:9 to
// 127.0.0.2:9, `observe` records the address it was shown. Which one runs first decides what
// `observe` sees.
#include "../../../bpf/include/lab.h"

__u32 seen = 0;

SEC("cgroup/connect4")
int observe(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == bpf_htons(9))
		seen = ctx->user_ip4;
	return 1;
}

SEC("cgroup/connect4")
int rewrite(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == bpf_htons(9) && ctx->user_ip4 == bpf_htonl(0x7f000001))
		ctx->user_ip4 = bpf_htonl(0x7f000002);
	return 1;
}
