// Prometheus metrics named like Kepler's (kepler_{node,container,process}_cpu_joules_total), so
// dashboards built for Kepler read these. Every series carries `source` (rapl|model); with the
// model, `estimate="true"`. A container here is a cgroup v2 path (container_id = the path).
import client from 'prom-client';
import fs from 'node:fs';
import type { EnergyCollector, Interval, Totals } from './collector.ts';

export interface EnergyMetrics {
  registry: client.Registry;
  /** add one interval's joules (counters only ever grow) */
  observe(iv: Interval): void;
  /**
   * end the series of processes that are gone (EnergyCollector.forgetGone), and of their cgroups
   * once no process of theirs is left and the cgroup itself is removed: as Kepler drops terminated
   * workloads, so that a machine that forks does not grow the scrape without end
   */
  forget(gone: Totals[]): void;
}

export function energyMetrics(c: EnergyCollector): EnergyMetrics {
  const registry = new client.Registry();
  const src = { source: c.power.source, estimate: String(c.power.source === 'model') };
  const node = new client.Counter({ name: 'kepler_node_cpu_joules_total', help: 'CPU energy of the node: mode="idle" is idle power, mode="dynamic" the part above idle (with source="rapl" the sum is measured, the idle share is the --idle constant, capped at the reading)', labelNames: ['mode', 'source', 'estimate', 'zone'], registers: [registry] });
  const container = new client.Counter({ name: 'kepler_container_cpu_joules_total', help: 'dynamic CPU energy attributed to a cgroup v2 (container) by on-CPU time', labelNames: ['container_id', 'mode', 'source', 'estimate', 'zone'], registers: [registry] });
  const proc = new client.Counter({ name: 'kepler_process_cpu_joules_total', help: 'dynamic CPU energy attributed to a process (tgid) by on-CPU time', labelNames: ['pid', 'comm', 'container_id', 'mode', 'source', 'estimate', 'zone'], registers: [registry] });
  const procCpu = new client.Counter({ name: 'kepler_process_cpu_seconds_total', help: `on-CPU seconds of a process (${c.hook.name === 'iter' ? 'the kernel\'s per-thread runtime, read by a task iterator' : 'measured at sched_switch'})`, labelNames: ['pid', 'comm', 'container_id'], registers: [registry] });
  const unattr = new client.Counter({ name: 'ebpf_lab_energy_unattributed_joules_total', help: 'dynamic energy of busy time that no task entry held (LRU map full)', labelNames: ['source', 'estimate'], registers: [registry] });
  new client.Gauge({ name: 'ebpf_lab_energy_map_evictions', help: c.hook.name === 'iter' ? 'threads that left the task walk with no exit record (their time since the last read is lost)' : 'entries the per-task LRU map evicted (created minus alive)', registers: [registry], collect() { this.set(c.evictions()); } });
  const zone = 'package';
  return {
    registry,
    observe(iv) {
      node.inc({ mode: 'idle', ...src, zone }, iv.idleJ);
      node.inc({ mode: 'dynamic', ...src, zone }, Math.max(0, iv.nodeJ - iv.idleJ));
      unattr.inc(src, Math.max(0, iv.unattributedJ));
      const perCg = new Map<string, number>();
      for (const w of iv.workloads) {
        perCg.set(w.cgroup, (perCg.get(w.cgroup) ?? 0) + w.joules);
        proc.inc({ pid: String(w.tgid), comm: w.comm, container_id: w.cgroup, mode: 'dynamic', ...src, zone }, w.joules);
        procCpu.inc({ pid: String(w.tgid), comm: w.comm, container_id: w.cgroup }, w.onCpuNs / 1e9);
      }
      for (const [cg, j] of perCg) container.inc({ container_id: cg, mode: 'dynamic', ...src, zone }, j);
    },
    forget(gone) {
      const cgroups = new Set<string>();
      for (const t of gone) {
        const p = { pid: String(t.tgid), comm: t.comm, container_id: t.cgroup };
        proc.remove({ ...p, mode: 'dynamic', ...src, zone });
        procCpu.remove(p);
        cgroups.add(t.cgroup);
      }
      if (!cgroups.size) return;
      const live = new Set(c.totalsByProcess().map((t) => t.cgroup));
      // container_id is the cgroup's path under the cgroup2 root ("/" for the root itself)
      for (const cg of cgroups) if (!live.has(cg) && cg !== '/' && c.cgroupGone(cg)) container.remove({ container_id: cg, mode: 'dynamic', ...src, zone });
    },
  };
}
