/* Structs shared by xdp_bench.bpf.c and the benchmark (scenarios/xdp-lb). */
#pragma once

/* config of the sink program on the receiving peer (benchmarks count forwarded frames) */
struct sink_cfg {
	__u16 udp_port; /* network order; 0 = pass everything */
	__u16 pad;
	__u32 pad2;
};
