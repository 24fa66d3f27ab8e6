/*
 * Test fixture: a cgroup/setsockopt program that allows every call and passes the value on as
 * "the caller's value" (optlen 0, the kernel's documented convention, and what the security
 * controller's own program did on every call). Attached below the controller's cgroup it runs
 * first, so the controller's program sees the 0.
 */
#include "include/lab.h"

/* calls seen: the test checks that this program ran ahead of the controller's */
__u64 calls = 0;

SEC("cgroup/setsockopt")
int pass_on(struct bpf_sockopt *ctx)
{
	__sync_fetch_and_add(&calls, 1);
	ctx->optlen = 0;
	return 1;
}
