// Prometheus metrics read from the per-CPU counters at scrape time (summed over CPUs): the
// controller holds no counters of its own. `control()` is asked on every scrape because the CLI
// may have changed classes or rules from another process since the last one.
import client from 'prom-client';
import type { TcControl } from './shaper.ts';
import { perScrape } from '../../common/metrics-http.ts';

/**
 * One scrape asks `control()` once and reads each class's and rule's counters once: its nine
 * collectors each asked (the daemon's control() reads the state file again) and the five class
 * counters each read every class, so one scrape could mix two models when the CLI changed one
 * in between.
 */
export function tcRegistry(control: () => TcControl): client.Registry {
  const reg = new client.Registry();
  const ctl = perScrape(control);
  const classStats = perScrape(() => ctl().classStats());
  const ruleStats = perScrape(() => ctl().ruleStats());
  const perClass: [string, 'packets' | 'bytes' | 'delayed' | 'horizonDrops', string][] = [
    ['tc_shape_class_packets_total', 'packets', 'packets classified into the class (egress)'],
    ['tc_shape_class_bytes_total', 'bytes', 'bytes classified into the class (egress)'],
    ['tc_shape_class_delayed_packets_total', 'delayed', 'packets given a departure time in the future'],
    ['tc_shape_class_horizon_drops_total', 'horizonDrops', 'packets dropped: departure beyond the class horizon'],
  ];
  new client.Counter({
    name: 'tc_shape_class_idle_seconds_total', help: 'time the class had nothing to pace (its departure timeline behind now): the sender, not the shaper, limited its rate', labelNames: ['class'], registers: [reg],
    collect() {
      this.reset();
      for (const s of classStats()) this.inc({ class: s.name }, Number(s.idleNs) / 1e9);
    },
  });
  for (const [name, field, help] of perClass) {
    new client.Counter({
      name, help, labelNames: ['class'], registers: [reg],
      collect() {
        this.reset();
        for (const s of classStats()) this.inc({ class: s.name }, Number(s[field]));
      },
    });
  }
  new client.Gauge({
    name: 'tc_shape_class_rate_bits_per_second', help: 'configured rate of the class', labelNames: ['class'], registers: [reg],
    collect() {
      this.reset();
      for (const c of ctl().model.classes) this.set({ class: c.name }, Number(c.rateBps));
    },
  });
  for (const [name, field, help] of [['tc_filter_rule_packets_total', 'packets', 'packets that matched the rule'], ['tc_filter_rule_bytes_total', 'bytes', 'bytes that matched the rule']] as const) {
    new client.Counter({
      name, help, labelNames: ['rule', 'action'], registers: [reg],
      collect() {
        this.reset();
        for (const r of ruleStats()) this.inc({ rule: r.name, action: r.action }, Number(r[field]));
      },
    });
  }
  new client.Counter({
    name: 'tc_shape_packets_total', help: 'packets the programs saw, by what happened', labelNames: ['what'], registers: [reg],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(ctl().globals())) this.inc({ what: k }, Number(v));
    },
  });
  return reg;
}
