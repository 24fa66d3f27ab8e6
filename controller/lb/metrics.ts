// Prometheus metrics read from the per-CPU counters at scrape time (summed over CPUs): nothing is
// counted twice and the controller holds no counters of its own, so a restart loses nothing.
// One scrape reads each slot's counters once: the five per-VIP and five per-backend counters, and
// the two global ones, share a snapshot (ten lookups of every slot per scrape before: 100,000
// syscalls at 10,000 backends, and counters of one slot read at different moments).
import client from 'prom-client';
import { MAX_VIPS } from './dataplane.ts';
import { backendKey } from './config.ts';
import type { LbController } from './controller.ts';
import { perScrape } from '../../common/metrics-http.ts';
import type { lb_stats } from '../../bpf/gen/xdp_lb.ts';

const FIELDS: [keyof lb_stats, string, string][] = [
  ['packets', 'packets_total', 'packets forwarded'],
  ['bytes', 'bytes_total', 'bytes forwarded'],
  ['new_flows', 'new_flows_total', 'flows that went through the Maglev ring'],
  ['ct_hits', 'conntrack_hits_total', 'packets whose flow was in conntrack'],
  ['ct_misses', 'conntrack_misses_total', 'packets whose flow was not in conntrack'],
];

export function lbRegistry(c: LbController): client.Registry {
  const reg = new client.Registry();
  const slots = perScrape(() => new Map<number, lb_stats>());
  const slot = (i: number): lb_stats => {
    const m = slots();
    let s = m.get(i);
    if (!s) m.set(i, (s = c.dp.sumStats(i)));
    return s;
  };
  const global = perScrape(() => c.dp.globalStats());
  for (const [field, name, help] of FIELDS) {
    new client.Counter({
      name: `xdp_lb_vip_${name}`, help: `per VIP: ${help}`, labelNames: ['vip'], registers: [reg],
      collect() {
        this.reset();
        for (const v of c.vips.values()) this.inc({ vip: v.id }, Number(slot(v.slot)[field]));
      },
    });
    new client.Counter({
      name: `xdp_lb_backend_${name}`, help: `per backend: ${help}`, labelNames: ['vip', 'backend'], registers: [reg],
      collect() {
        this.reset();
        for (const v of c.vips.values()) for (const b of v.backends.values()) this.inc({ vip: v.id, backend: backendKey(b) }, Number(slot(MAX_VIPS + b.id)[field]));
      },
    });
  }
  // outcomes that sum to what the program saw: rx (the total) and icmp_forwarded (a part of
  // forwarded) are counters of their own (under the label, a sum over outcomes counted frames twice)
  new client.Counter({
    name: 'xdp_lb_packets_total', help: 'every packet the XDP program saw, by outcome (the outcomes sum to xdp_lb_received_packets_total)', labelNames: ['outcome'], registers: [reg],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(global())) if (k !== 'too_big_limited' && k !== 'rx' && k !== 'icmp_forwarded') this.inc({ outcome: k }, Number(v));
    },
  });
  new client.Counter({
    name: 'xdp_lb_received_packets_total', help: 'packets the XDP program saw', registers: [reg],
    collect() {
      this.reset();
      this.inc(Number(global().rx));
    },
  });
  new client.Counter({
    name: 'xdp_lb_icmp_forwarded_total', help: 'ICMP fragmentation-needed / packet-too-big sent to a balanced flow\'s backend (also in outcome forwarded)', registers: [reg],
    collect() {
      this.reset();
      this.inc(Number(global().icmp_forwarded));
    },
  });
  // apart: a part of drop_encap, and kept in an unpinned map (it starts again from 0 at a restart)
  new client.Counter({
    name: 'xdp_lb_too_big_limited_total', help: 'too-big frames dropped unanswered: their ICMP error over the per-CPU rate (also in outcome drop_encap; since the last start)', registers: [reg],
    collect() {
      this.reset();
      this.inc(Number(global().too_big_limited));
    },
  });
  new client.Gauge({
    name: 'xdp_lb_backend_up', help: '1 serving, 0 down (health check) or draining', labelNames: ['vip', 'backend', 'state'], registers: [reg],
    collect() {
      this.reset();
      for (const v of c.vips.values()) for (const b of v.backends.values()) this.set({ vip: v.id, backend: backendKey(b), state: b.draining ? 'draining' : b.down ? 'down' : 'up' }, b.draining || b.down ? 0 : 1);
    },
  });
  new client.Gauge({
    name: 'xdp_lb_ring_generation', help: 'Maglev ring swaps per VIP', labelNames: ['vip'], registers: [reg],
    collect() {
      this.reset();
      for (const v of c.vips.values()) this.set({ vip: v.id }, v.generation);
    },
  });
  new client.Gauge({
    name: 'xdp_lb_map_memory_bytes', help: 'memory the kernel charges for the LB maps', registers: [reg],
    collect() {
      this.set(c.dp.mapMemory());
    },
  });
  return reg;
}
