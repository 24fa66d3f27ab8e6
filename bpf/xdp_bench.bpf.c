// Helper programs for the XDP load balancer's tests and benchmark, kept out of the production
// object (xdp_lb.bpf.c): veth peers that must run XDP (pass, sink), the ceilings the LB is
// compared with (drop, tx) and a live-frames packet generator.
#include "include/lab.h"
#include "xdp_bench.h"
#include "xdp_lb_proto.h"

/* A receiving veth peer must run an XDP program, or redirected/TX'd frames are dropped silently. */
SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_cfg);
} sink_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

/* Pass everything except UDP to the configured port, which is counted and dropped: the
 * benchmark counts forwarded frames at the receiver (veth drops leave no counter behind). */
SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 k = 0;
	struct sink_cfg *cfg = bpf_map_lookup_elem(&sink_config, &k);
	if (!cfg || !cfg->udp_port)
		return XDP_PASS;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	struct udphdr *uh;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP_ || ip->ihl != 5)
			return XDP_PASS;
		uh = (void *)(ip + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_UDP_)
			return XDP_PASS;
		uh = (void *)(ip6 + 1);
	} else {
		return XDP_PASS;
	}
	if ((void *)(uh + 1) > data_end || uh->dest != cfg->udp_port)
		return XDP_PASS;
	lab_count(&sink_count);
	return XDP_DROP;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drop_count SEC(".maps");

/* the ceiling: the cheapest thing an XDP program can do with a frame on this interface */
SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	lab_count(&drop_count);
	return XDP_DROP;
}

/* the forwarding ceiling of a veth: send every frame straight back out (what the LB does,
 * minus the LB), so the benchmark can tell veth forwarding cost from the LB's own */
SEC("xdp")
int xdp_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

/* Live-frames generator (BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES): every run sends the
 * test frame out of gen_ifindex, i.e. into its veth peer's XDP program. */
const volatile __u32 gen_ifindex = 0;

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	return bpf_redirect(gen_ifindex, 0);
}

/* the forwarding ceiling of the devmap path: every frame redirected into port 0 of bench_ports
 * (a backend's own port), what the LB does with backend_ports minus the LB */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_ports SEC(".maps");

SEC("xdp")
int xdp_redirect_port(struct xdp_md *ctx)
{
	return bpf_redirect_map(&bench_ports, 0, XDP_DROP);
}
