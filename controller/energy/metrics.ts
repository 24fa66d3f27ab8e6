// Prometheus metrics named as Kepler (0.10+) names them, so dashboards built for Kepler read these:
// kepler_node_cpu_{,active_,idle_}joules_total and _watts, kepler_{container,process}_cpu_joules_total
// and _watts, kepler_process_cpu_seconds_total. Kepler's `zone` label is kept (always "package"
// here); its `path`, `node_name`, `state` and pod/vm series are not made. Every energy series also
// carries `source` (rapl|model) and `estimate` ("true" for the model). A container here is a cgroup
// v2 path (container_id = the path). Workload joules are the active (above-idle) energy: idle is
// the node's alone, as in Kepler.
import client from 'prom-client';
import type { EnergyCollector, Interval, Totals } from './collector.ts';

export interface EnergyMetrics {
  registry: client.Registry;
  /** add one interval's joules (counters only ever grow) and set the watts of that interval */
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
  const src = { source: c.power.source, estimate: String(c.power.source === 'model'), zone: 'package' };
  const srcLabels = ['source', 'estimate', 'zone'];
  const rapl = c.power.source === 'rapl' ? ' (source="rapl": the total is measured; its idle share is the --idle constant, capped at the reading)' : '';
  const counter = (name: string, help: string, labelNames: string[] = []) => new client.Counter({ name, help, labelNames: [...labelNames, ...srcLabels], registers: [registry] });
  const gauge = (name: string, help: string, labelNames: string[] = []) => new client.Gauge({ name, help, labelNames: [...labelNames, ...srcLabels], registers: [registry] });
  const node = { total: counter('kepler_node_cpu_joules_total', `CPU energy of the node${rapl}`), active: counter('kepler_node_cpu_active_joules_total', 'CPU energy of the node above idle: what workloads are given'), idle: counter('kepler_node_cpu_idle_joules_total', `CPU energy of the node at idle, never given to a workload${rapl}`) };
  const nodeW = { total: gauge('kepler_node_cpu_watts', 'CPU power of the node over the last interval'), active: gauge('kepler_node_cpu_active_watts', 'CPU power of the node above idle over the last interval'), idle: gauge('kepler_node_cpu_idle_watts', 'CPU power of the node at idle over the last interval') };
  const cgLabels = ['container_id'];
  const procLabels = ['pid', 'comm', 'container_id'];
  const container = counter('kepler_container_cpu_joules_total', 'active CPU energy attributed to a cgroup v2 (container) by on-CPU time', cgLabels);
  const containerW = gauge('kepler_container_cpu_watts', 'active CPU power of a cgroup v2 (container) over the last interval', cgLabels);
  const proc = counter('kepler_process_cpu_joules_total', 'active CPU energy attributed to a process (tgid) by on-CPU time', procLabels);
  const procW = gauge('kepler_process_cpu_watts', 'active CPU power of a process (tgid) over the last interval', procLabels);
  const procCpu = new client.Counter({ name: 'kepler_process_cpu_seconds_total', help: `on-CPU seconds of a process (${c.hook.name === 'iter' ? 'the kernel\'s per-thread runtime, read by a task iterator' : 'measured at sched_switch'})`, labelNames: procLabels, registers: [registry] });
  const unattr = counter('ebpf_lab_energy_unattributed_joules_total', 'active energy of busy time that no task entry held (LRU map full)');
  new client.Gauge({ name: 'ebpf_lab_energy_map_evictions', help: c.hook.name === 'iter' ? 'threads that left the task walk with no exit record (their time since the last read is lost)' : 'entries the per-task LRU map evicted (created minus alive and forgotten)', registers: [registry], collect() { this.set(c.evictions()); } });
  /** the watts series set at the last interval: a workload idle now has none (its gauge goes) */
  let lastW = { cg: new Set<string>(), proc: new Map<string, Record<string, string>>() };
  /**
   * every name a process's series were given (pid + cgroup → comms): a process renamed by exec or
   * prctl keeps its older series until it is gone, and forget() must end them all (it ended only
   * the last, the others were exported for ever)
   */
  const names = new Map<string, Set<string>>();
  return {
    registry,
    observe(iv) {
      const dt = iv.dtNs / 1e9;
      const w = (j: number) => (dt > 0 ? j / dt : 0);
      const active = Math.max(0, iv.nodeJ - iv.idleJ);
      node.total.inc(src, iv.nodeJ);
      node.active.inc(src, active);
      node.idle.inc(src, iv.idleJ);
      nodeW.total.set(src, w(iv.nodeJ));
      nodeW.active.set(src, w(active));
      nodeW.idle.set(src, w(iv.idleJ));
      unattr.inc(src, Math.max(0, iv.unattributedJ));
      const perCg = new Map<string, number>();
      const now = { cg: new Set<string>(), proc: new Map<string, Record<string, string>>() };
      for (const x of iv.workloads) {
        perCg.set(x.cgroup, (perCg.get(x.cgroup) ?? 0) + x.joules);
        const p = { pid: String(x.tgid), comm: x.comm, container_id: x.cgroup };
        const key = `${x.tgid}\0${x.cgroup}`;
        const seen = names.get(key);
        if (!seen) names.set(key, new Set([x.comm]));
        else seen.add(x.comm);
        proc.inc({ ...p, ...src }, x.joules);
        procW.set({ ...p, ...src }, x.watts);
        procCpu.inc(p, x.onCpuNs / 1e9);
        now.proc.set(JSON.stringify(p), p);
      }
      for (const [cg, j] of perCg) {
        container.inc({ container_id: cg, ...src }, j);
        containerW.set({ container_id: cg, ...src }, w(j));
        now.cg.add(cg);
      }
      for (const [k, p] of lastW.proc) if (!now.proc.has(k)) procW.remove({ ...p, ...src });
      for (const cg of lastW.cg) if (!now.cg.has(cg)) containerW.remove({ container_id: cg, ...src });
      lastW = now;
    },
    forget(gone) {
      const cgroups = new Set<string>();
      for (const t of gone) {
        const key = `${t.tgid}\0${t.cgroup}`;
        for (const comm of names.get(key) ?? [t.comm]) {
          const p = { pid: String(t.tgid), comm, container_id: t.cgroup };
          proc.remove({ ...p, ...src });
          procCpu.remove(p);
        }
        names.delete(key);
        cgroups.add(t.cgroup);
      }
      if (!cgroups.size) return;
      const live = new Set(c.totalsByProcess().map((t) => t.cgroup));
      // container_id is the cgroup's path under the cgroup2 root ("/" for the root itself)
      for (const cg of cgroups) if (!live.has(cg) && cg !== '/' && c.cgroupGone(cg)) container.remove({ container_id: cg, ...src });
    },
  };
}
