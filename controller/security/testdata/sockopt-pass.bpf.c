/*
 * Test fixture: a cgroup/setsockopt program that allows every call and passes the value on as
 * "the caller's value" (optlen 0, the kernel's documented convention, and what the security
 * controller's own program did on every call). Attached below the controller's cgroup it runs
 * first, so the controller's program sees the 0.
 */
#include "include/lab.h"

SEC("cgroup/setsockopt")
int pass_on(struct bpf_sockopt *ctx)
{
	ctx->optlen = 0;
	return 1;
}
