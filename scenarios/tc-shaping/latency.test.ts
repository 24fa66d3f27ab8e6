// The latency side of tc-shaping, without root: the EDT latency horizon per rate, lost probes
// counted against the shaper, and reading the bulk socket's state out of `ss -tin`.
import { describe, expect, it } from 'vitest';
import { probeLatency, parseSs, parsePing, inFlow } from './flows.ts';
import { latencyHorizonMs } from './shapers.ts';

describe('EDT latency horizon (horizon: auto) in ms, as the report shows it', () => {
  it('10 Mbit/s: 60 ms; 100 Mbit/s and 1 Gbit/s: the 8 ms floor', () => {
    expect(latencyHorizonMs(10)).toBeCloseTo(59.95, 2);
    expect(latencyHorizonMs(100)).toBe(8);
    expect(latencyHorizonMs(1000)).toBe(8);
  });
});

describe('probe latency with losses', () => {
  const rtts = Array.from({ length: 99 }, (_, i) => i + 1); // 1..99 ms
  it('no loss: nearest-rank percentiles of the replies', () => {
    expect(probeLatency(rtts, 99)).toEqual({ p50: 50, p99: 99, lost: 0 });
  });
  it('a lost probe counts as infinitely late: dropping probes cannot improve p99', () => {
    // 2 of 101 lost: p99 is a lost one
    expect(probeLatency(rtts, 101)).toEqual({ p50: 51, p99: Infinity, lost: 2 });
    // the fastest-looking survivors do not hide it either
    expect(probeLatency([0.1, 0.1, 0.1], 7).p50).toBe(Infinity); // 4 of 7 lost
  });
  it('more replies than sent (a duplicate) is not a negative loss', () => {
    expect(probeLatency([1, 2], 1).lost).toBe(0);
  });
});

describe('ss -tin', () => {
  // 6.1 guest output: iperf3's idle control connection and the bulk flow
  const out = `State Recv-Q Send-Q  Local Address:Port  Peer Address:PortProcess
ESTAB 0      0           10.16.0.1:48804    10.16.0.2:5201
	 cubic wscale:7,7 rto:224 rtt:21.071/13.149 ato:40 mss:1448 pmtu:1500 rcvmss:536 advmss:1448 cwnd:10 bytes_sent:164 bytes_acked:165 bytes_received:4 segs_out:9 segs_in:7 data_segs_out:3 data_segs_in:4 send 5497603bps lastsnd:4932 lastrcv:4844 lastack:4844 pacing_rate 10994808bps delivery_rate 3673960bps delivered:4 app_limited busy:16ms rcv_space:14480 rcv_ssthresh:64088 minrtt:1.772 snd_wnd:65152
ESTAB 0      1303200     10.16.0.1:48806    10.16.0.2:5201
	 cubic wscale:7,7 rto:308 rtt:106.46/8.52 mss:1448 pmtu:1500 rcvmss:536 advmss:1448 cwnd:167 ssthresh:20 bytes_sent:5842717 bytes_acked:5712398 segs_out:4038 segs_in:199 data_segs_out:4036 send 18171407bps lastsnd:40 lastrcv:4880 lastack:40 pacing_rate 21805560bps delivery_rate 9553664bps delivered:3947 busy:4840ms unacked:90 rcv_space:14480 rcv_ssthresh:64088 notsent:1172880 minrtt:0.127 snd_wnd:762880
`;
  it('picks the connection with data in flight and reads cwnd, unacked, notsent, rtt, pacing rate', () => {
    expect(parseSs(out)).toEqual({ cwnd: 167, unacked: 90, notsentKB: 1172.88, rttMs: 106.46, pacingMbit: 21.80556 });
  });
  it('no connection with data in flight: nothing', () => {
    expect(parseSs(out.split('\nESTAB 0      1303200')[0]!)).toBeUndefined();
    expect(parseSs('')).toBeUndefined();
  });
});

describe('ping -D replies and the flow window', () => {
  // iputils ping -D output (bookworm), two replies and the summary of 3 sent
  const out = `PING 10.16.0.2 (10.16.0.2) 56(84) bytes of data.
[1764730000.100000] 64 bytes from 10.16.0.2: icmp_seq=1 ttl=64 time=12.5 ms
[1764730000.110250] 64 bytes from 10.16.0.2: icmp_seq=2 ttl=64 time=7.25 ms

--- 10.16.0.2 ping statistics ---
3 packets transmitted, 2 received, 33.3333% packet loss, time 10ms
rtt min/avg/max/mdev = 7.250/9.875/12.500/2.625 ms
`;
  it('reads each reply with its wall-clock arrival (ms) and RTT, and the sent count', () => {
    const p = parsePing(out);
    expect(p.sent).toBe(3);
    expect(p.replies.map((r) => r.rtt)).toEqual([12.5, 7.25]);
    expect(p.replies[0]!.at).toBeCloseTo(1764730000100, 0);
    expect(p.replies[1]!.at).toBeCloseTo(1764730000110.25, 0);
  });
  it('probes sent after the flow ended are left out of the percentiles and of sent, and counted late', () => {
    const p = parsePing(out); // sent at …087.5 and …103.0
    const end = 1764730000095;
    expect(inFlow(p, end)).toEqual({ rtts: [12.5], sent: 2, late: 1 });
    // the lost probe stays counted against the shaper
    expect(probeLatency(inFlow(p, end).rtts, inFlow(p, end).sent)).toEqual({ p50: 12.5, p99: Infinity, lost: 1 });
    // sent inside the flow, answered after it: it measured the flow's queue and counts
    expect(inFlow(p, 1764730000104)).toEqual({ rtts: [12.5, 7.25], sent: 3, late: 0 });
  });
  it('output without -D stamps gives no replies rather than misread ones', () => {
    expect(parsePing('64 bytes from 10.16.0.2: icmp_seq=1 ttl=64 time=1 ms\n1 packets transmitted, 1 received').replies).toEqual([]);
  });
});

describe('/proc/<pid>/net/dev', () => {
  const text = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  snd0: 1234567    8901    0    0    0     0          0         0 98765432   65432    0    0    0     0       0          0
`;
  it('reads the device\'s transmitted bytes (the 9th counter), not another device\'s or the received ones', async () => {
    const { parseNetDevTx } = await import('./flows.ts');
    expect(parseNetDevTx(text, 'snd0')).toBe(98765432);
    expect(parseNetDevTx(text, 'lo')).toBe(0);
    expect(parseNetDevTx(text, 'snd1')).toBeUndefined();
    expect(parseNetDevTx('', 'snd0')).toBeUndefined();
  });
});
