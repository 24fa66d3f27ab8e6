// A Results object that uses every block kind, every check status and every environment
// field: the report tests render it, and `npx tsx lab/report/fixture.ts <outDir>` writes a
// sample report to look at.
import type { Results } from '../results.ts';

export function sampleResults(): Results {
  const threads = [1, 2, 4, 8, 16, 32];
  return {
    schema: 1,
    runId: '20250101-120000-hello-openat-6.1',
    scenario: 'hello-openat',
    mode: 'bench',
    startedAt: '2025-01-01T12:00:00.000Z',
    finishedAt: '2025-01-01T12:02:05.250Z',
    durationMs: 125250,
    status: 'fail',
    options: { duration: 5, comm: 'cat', pid: 4242, verbose: true },
    environment: {
      kernel: { release: '6.1.0-28-amd64', spec: '6.1', version: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1' },
      target: 'vm',
      cpu: { model: 'AMD EPYC 7B13', cores: 8 },
      memoryBytes: 17179869184,
      node: 'v20.20.2',
      libbpf: '1.1.0',
      clang: '14.0.6',
      bpftool: 'v7.1.0',
      git: { commit: '0123456789abcdef0123456789abcdef01234567', dirty: true },
      hostname: 'lab-guest',
      vm: { accel: 'kvm', bootMs: 2345.6, bootLog: 'boot-6.1.log', config: { CONFIG_DEBUG_INFO_BTF: 'y', CONFIG_BPF_LSM: 'n' } },
      probes: {
        btf: { ok: true, detail: '/sys/kernel/btf/vmlinux' },
        ringbuf: { ok: true },
        'bpf_lsm': { ok: false, detail: 'lsm= does not list bpf' },
        'fentry/fexit': { ok: true, detail: 'trampoline attach ok' },
      },
    },
    checks: [
      { name: 'program loads and attaches', status: 'pass', detail: 'tracepoint/syscalls/sys_enter_openat' },
      { name: 'sees openat of <script>alert(1)</script>', status: 'fail', detail: 'expected 1000 events, saw 998' },
      { name: 'LSM hook blocks open', status: 'unsupported', detail: 'BPF LSM', evidence: 'CONFIG_BPF_LSM=n; /sys/kernel/security/lsm: lockdown,capability,landlock' },
    ],
    headline: [
      {
        name: 'consumer.eventsPerSec', label: 'TS consumer delivered events/s, flat out', unit: 'events/s', better: 'higher', value: 410000, rounds: [400000, 410000, 430000],
        spread: { n: 3, min: 400000, max: 430000, mad: 10000 },
        comparator: { name: 'C consumer (libbpf ring_buffer__poll)', value: 420000, ratio: 0.97, ratioRounds: [0.95, 0.97, 1.01], ratioSpread: { n: 3, min: 0.95, max: 1.01, mad: 0.02 }, likeForLike: true },
        goal: { op: '>=', target: 0.9, of: 'ratio', verdict: 'met', detail: 'met in 3/3 rounds' },
      },
    ],
    context: {
      cores: 8, cpuModel: 'AMD EPYC 7B13', cpuMhz: [2450, 2450], loadavg: { before: [0.5, 0.4, 0.3], after: [1.9, 0.8, 0.4] }, busyShare: 0.41, stealShare: 0.002,
      othersCores: 0.61, topOthers: [{ pid: 4321, comm: 'cc1', cores: 0.58 }], seconds: 125, busy: ['other processes used 0.61 CPUs on average (cc1 0.58)'],
    },
    metrics: { eventsPerSec: 1234567.891, p50ns: 812.5, p99ns: 15234, dropped: 2, note: '<b>not bold</b>' },
    sections: [
      {
        title: 'Summary',
        blocks: [
          { kind: 'text', text: 'The BPF consumer kept up with 1.2 M opens/s.\n\nA line with <script>alert("x")</script> & friends must stay text.' },
          { kind: 'kv', items: { events: 1234567, 'events/s': 1234567.891, 'drop rate': 0.000162, ok: true, skipped: false, comment: null, where: 'ringbuf' } },
        ],
      },
      {
        title: 'Throughput',
        blocks: [
          {
            kind: 'table',
            caption: 'events per second by consumer and thread count',
            columns: ['threads', 'TS (koffi)', 'C (opensnoop)', 'ratio'],
            rows: threads.map((t) => [t, 98000.5 * t, 105000 * t, 0.9333]),
          },
          {
            kind: 'chart',
            title: 'Throughput vs threads',
            type: 'line',
            labels: threads,
            datasets: [
              { label: 'TS (koffi)', data: threads.map((t) => 98000.5 * t) },
              { label: 'C (opensnoop)', data: threads.map((t) => (t === 8 ? null : 105000 * t)) },
            ],
            xLabel: 'threads',
            yLabel: 'events/s',
          },
          {
            kind: 'chart',
            title: 'Latency percentiles (log scale)',
            type: 'bar',
            labels: ['p50', 'p90', 'p99', 'p99.9'],
            datasets: [
              { label: 'TS', data: [812.5, 2100, 15234, 90210] },
              { label: 'C', data: [640, 1500, 9000, 40000] },
            ],
            xLabel: 'percentile',
            yLabel: 'ns',
            logY: true,
          },
        ],
      },
      {
        title: 'Logs',
        blocks: [{ kind: 'pre', caption: 'bpftool prog show', text: '42: tracepoint  name handle_openat  tag 0123456789abcdef  gpl\n\tloaded_at 2025-01-01T12:00:01+0000  uid 0\n\t<xlated 312B  jited 190B>' }],
      },
    ],
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { writeReport } = await import('./index.ts');
  console.log(await writeReport(process.argv[2] ?? '/tmp/report-sample', sampleResults()));
}
