// The Prometheus export against a stand-in collector (no root, no BPF): what series a process
// leaves behind. The kernel-fed cases are in energy.test.ts.
import { describe, expect, it } from 'vitest';
import type { EnergyCollector, Interval, Totals, WorkloadInterval } from './collector.ts';
import { energyMetrics } from './metrics.ts';

const collector = { power: { source: 'model' }, hook: { name: 'btf' }, evictions: () => 0, totalsByProcess: () => [], cgroupGone: () => true } as unknown as EnergyCollector;
const w = (tgid: number, comm: string): WorkloadInterval => ({ key: `${tgid}`, cgroupId: 1n, cgroup: '/app', tgid, comm, onCpuNs: 1e6, joules: 1, watts: 1 });
const iv = (workloads: WorkloadInterval[]): Interval => ({ tMs: 1000, dtNs: 1e9, source: 'model', estimate: true, nodeJ: 10, idleJ: 5, unattributedJ: 0, byCycles: false, workloads, busyNs: [] } as unknown as Interval);

describe('energy metrics', () => {
  // review, session 60: a process renamed while it ran (exec, prctl) kept its older series for ever
  it('a gone process takes every series it had, under each name it carried', async () => {
    const m = energyMetrics(collector);
    m.observe(iv([w(42, 'node'), w(43, 'sh')]));
    m.observe(iv([w(42, 'npm'), w(43, 'sh')]));
    const series = async (pid: number) => (await m.registry.metrics()).split('\n').filter((l) => /^kepler_process_cpu_(joules|seconds)_total\{/.test(l) && l.includes(`pid="${pid}"`));
    expect(await series(42)).toHaveLength(4); // joules and seconds, two names
    m.forget([{ key: '42', cgroupId: 1n, cgroup: '/app', tgid: 42, comm: 'npm', onCpuNs: 2e6, joules: 2 } satisfies Totals]);
    expect(await series(42)).toEqual([]);
    expect(await series(43)).toHaveLength(2);
  });
});
