// Rejected by the verifier on purpose: reads packet memory without a bounds check.
#include "include/lab.h"

SEC("xdp")
int unchecked_read(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	return *(__u32 *)(data + 64) ? XDP_PASS : XDP_DROP;
}
