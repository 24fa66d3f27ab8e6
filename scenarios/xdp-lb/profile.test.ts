// Pure logic of the --profile breakdown (no root, no perf needed): the perf report parser, idle
// and area classification, per-request arithmetic.
import { describe, expect, it } from 'vitest';
import { addedBy, areaOf, busyNsPerRequest, isIdle, kernelFunction, nsPerRequest, parsePerfReport, type Profile } from './profile.ts';

// `perf report --stdio -q --sort comm,dso,sym -F sample,comm,dso,sym -t '\t'`, as perf 6.1 prints it
const REPORT = [
  '# header line perf may print',
  '2000       \tswapper        \t[kernel.kallsyms]   \t[k] pv_native_safe_halt',
  '300        \tswapper        \t[kernel.kallsyms]   \t[k] veth_xdp_rcv',
  '100        \twrk            \t[kernel.kallsyms]   \t[k] skb_pp_cow_data',
  '50         \tnginx          \tnginx              \t[.] ngx_http_process_request_line',
  '7          \tksoftirqd/0    \t[kernel.kallsyms]   \t[k] br_handle_frame',
  '5          \twrk            \t[kernel.kallsyms]   \t[k] tcp_sendmsg_locked',
  '4          \tnginx          \t[unknown]          \t[.] 0x000000000003c7a9',
  '3          \twrk            \t[kernel.kallsyms]   \t[k] bpf_prog_4f2a_xdp_lb',
  'garbage line',
  '',
].join('\n');

describe('parsePerfReport', () => {
  it('reads count, process, object and symbol per line and skips anything else', () => {
    const s = parsePerfReport(REPORT);
    expect(s).toHaveLength(8);
    expect(s[1]).toEqual({ samples: 300, comm: 'swapper', dso: '[kernel.kallsyms]', kernel: true, sym: 'veth_xdp_rcv' });
    expect(s[3]).toEqual({ samples: 50, comm: 'nginx', dso: 'nginx', kernel: false, sym: 'ngx_http_process_request_line' });
    expect(s[6]!.sym).toBe('0x000000000003c7a9');
  });
});

describe('classification', () => {
  const s = parsePerfReport(REPORT);
  it('leaves out the idle loop but not softirq work done on an idle CPU', () => {
    expect(isIdle(s[0]!)).toBe(true);
    expect(isIdle(s[1]!)).toBe(false);
    expect(isIdle({ comm: 'wrk', dso: '[kernel.kallsyms]', kernel: true, sym: 'default_idle', samples: 1 })).toBe(false);
  });
  it('puts kernel functions in areas and user space by process', () => {
    expect(areaOf(s[1]!)).toMatch(/^veth/);
    expect(areaOf(s[2]!)).toMatch(/^skb memory/);
    expect(areaOf(s[3]!)).toBe('user space (nginx)');
    expect(areaOf(s[4]!)).toBe('bridge');
    expect(areaOf(s[5]!)).toMatch(/^TCP\/IP/);
    expect(areaOf(s[6]!)).toBe('user space (nginx)');
    expect(areaOf(s[7]!)).toMatch(/^XDP and BPF/);
    expect(areaOf({ comm: 'x', dso: '[kernel.kallsyms]', kernel: true, sym: 'schedule', samples: 1 })).toMatch(/^other kernel/);
    expect(areaOf({ comm: 'x', dso: '[kernel.kallsyms]', kernel: true, sym: '__napi_poll', samples: 1 })).toMatch(/^device layer/);
    const k = (sym: string) => areaOf({ comm: 'x', dso: '[kernel.kallsyms]', kernel: true, sym, samples: 1 });
    expect(k('lookup_nulls_elem_raw')).toMatch(/^XDP and BPF/); // a BPF hash map's bucket walk
    expect(k('fdb_find_rcu')).toBe('bridge');
    expect(k('page_frag_free')).toMatch(/^skb memory/);
    expect(k('bbr_main')).toMatch(/^TCP\/IP/);
    expect(kernelFunction(s[3]!)).toBe('nginx (user space)');
    expect(kernelFunction(s[1]!)).toBe('veth_xdp_rcv');
  });
});

describe('per request', () => {
  const prof = (config: string, requests: number, lines: [string, string, number][]): Profile => ({
    config, requests, hz: 1000, busyNsPerReq: 0, samples: lines.map(([comm, sym, samples]) => ({ comm, dso: '[kernel.kallsyms]', kernel: true, sym, samples })),
  });
  // 1000 Hz: a sample is 1 ms
  const base = prof('direct', 1000, [['swapper', 'pv_native_safe_halt', 5000], ['wrk', 'tcp_sendmsg_locked', 10], ['swapper', 'net_rx_action', 2]]);
  const xdp = prof('xdp', 2000, [['swapper', 'pv_native_safe_halt', 4000], ['wrk', 'tcp_sendmsg_locked', 20], ['swapper', 'veth_xdp_rcv', 6], ['swapper', 'net_rx_action', 2]]);
  it('turns samples into ns per request, idle left out', () => {
    expect(Object.fromEntries(nsPerRequest(base, kernelFunction))).toEqual({ tcp_sendmsg_locked: 10_000, net_rx_action: 2_000 });
    expect(busyNsPerRequest(base)).toBe(12_000);
    expect(busyNsPerRequest(xdp)).toBe(14_000);
  });
  it('ranks what a configuration adds over the base, per key, negative included', () => {
    const rows = addedBy(base, xdp, kernelFunction);
    expect(rows.map((r) => [r.key, r.addedNsPerReq])).toEqual([['veth_xdp_rcv', 3000], ['tcp_sendmsg_locked', 0], ['net_rx_action', -1000]]);
    const total = rows.reduce((a, r) => a + r.addedNsPerReq, 0);
    expect(total).toBe(busyNsPerRequest(xdp) - busyNsPerRequest(base));
  });
  it('gives nothing for a run without requests rather than dividing by zero', () => {
    expect(nsPerRequest(prof('none', 0, [['wrk', 'x', 1]]), kernelFunction).size).toBe(0);
  });
});
