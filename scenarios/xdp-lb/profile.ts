// Where the XDP LB's added CPU sits (issue 14 §2: "show by measurement where the remaining cost
// sits"). /proc/stat says how much machine CPU a configuration adds per request over the direct
// path; this says in which kernel functions. Keep-alive load runs of each configuration (saturated
// and paced) are recorded system-wide with perf (cpu-clock, every CPU, leaf function only: no call chains, so the sampling
// costs little and the leaf is what the CPU was executing), each sample is worth 1/hz s, and
// samples per request are compared function by function and by area (veth, skb memory, XDP and
// BPF, bridge, TCP/IP, user space). The idle loop's leaf functions are left out: softirq work that
// runs on an idle CPU has its own leaf and stays in. cpu-clock samples where interrupts are
// enabled again, so work with interrupts off is charged to the function that re-enables them
// (the report says so); the per-request total is checked against /proc/stat's over the same run.
import fs from 'node:fs';
import { execa } from 'execa';
import { setTimeout as sleep } from 'node:timers/promises';
import { findOnPath } from '../../common/host.ts';
import { LabError } from '../../common/errors.ts';

export interface LeafSamples {
  comm: string;
  dso: string;
  sym: string;
  /** perf marked it [k]: kernel code (modules and BPF programs included) */
  kernel: boolean;
  samples: number;
}

/** one profiled load run: what perf saw and how many requests the run completed */
export interface Profile {
  config: string;
  requests: number;
  hz: number;
  /** machine busy ns per request over the same run by /proc/stat (the cross-check) */
  busyNsPerReq: number;
  samples: LeafSamples[];
}

/**
 * `perf report --stdio -q --sort comm,dso,sym -F sample,comm,dso,sym -t '\t'`: one line per
 * (process name, object, leaf symbol) with its sample count. Kernel symbols carry "[k] ", user
 * ones "[.] "; unresolved addresses stay as the hex perf prints.
 */
export function parsePerfReport(text: string): LeafSamples[] {
  const out: LeafSamples[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const f = line.split('\t');
    if (f.length < 4) continue;
    const samples = Number(f[0]!.trim());
    if (!Number.isFinite(samples)) continue;
    const sym = f.slice(3).join('\t').trim();
    out.push({ samples, comm: f[1]!.trim(), dso: f[2]!.trim(), kernel: sym.startsWith('[k] '), sym: sym.replace(/^\[[k.]\] /, '') });
  }
  return out;
}

/** the idle loop's own leaves (an idle CPU halted or polling), not softirq work run from idle */
export function isIdle(s: LeafSamples): boolean {
  return s.comm === 'swapper' && /(^|_)(safe_halt|halt|idle|mwait|poll_idle|cpuidle|acpi_idle|intel_idle|default_idle|do_idle)/.test(s.sym);
}

const AREAS: [string, RegExp][] = [
  ['XDP and BPF (programs, maps, redirect, devmap)', /^(bpf_prog_|bpf_xdp|bpf_dispatcher|xdp_|__xdp|dev_map|__dev_map|bq_|bpf_redirect|bpf_trace|__bpf_prog|bpf_|__bpf_|htab_|__htab_|lookup_nulls_elem_raw|lookup_elem_raw|pcpu_freelist|array_map_|percpu_array_)/],
  ['veth (ring, NAPI poll, XDP frames)', /^(veth_|__veth)/],
  ['skb memory (alloc, copy, free, page pool)', /(skb_(copy|clone|release|free|pp_|head|add_rx|put|push|pull|reserve|segment|orphan)|^(__)?(alloc_skb|build_skb|napi_build_skb|__napi_alloc|napi_alloc|__build_skb|kfree|kmem_cache|page_frag|__kmem_cache|__kmalloc|kmalloc|page_pool|__page_pool|memcpy|__memcpy|memset|__memset|memmove|copy_|_copy_|__alloc_pages|free_|__free|get_page_from_freelist|rep_movs|clear_page|__slab|slab_|___slab|consume_skb|napi_consume|__consume|kfree_skb|sk_skb_reason|skb_attempt))/],
  ['bridge', /^(br_|nbp_|__br_|fdb_|__fdb_)/],
  ['device layer (xmit, NAPI, softirq, GRO)', /^(dev_|__dev_|netif_|__netif_|napi_|__napi|net_rx_action|process_backlog|validate_xmit|sch_direct|__qdisc|qdisc_|pfifo|dev_hard|gro_|__gro|inet_gro|tcp_gro|tcp4_gro|ipv6_gro|eth_type|eth_header|__do_softirq|handle_softirqs|do_softirq|__local_bh|local_bh|irq_exit|skb_gro|rps_|enqueue_to_backlog|__raise_softirq|raise_softirq)/],
  ['TCP/IP and sockets', /^(tcp|__tcp|bbr_|cubictcp_|ip_|__ip_|ip6_|__ip6|ipv4_|ipv6_|inet|__inet|sk_|__sk_|sock_|__sock|lock_sock|release_sock|udp|__udp|raw_|dst_|fib|__fib|neigh|__neigh|arp_|nf_|__nf_|ipt_|security_sock|tcp_v|csum|__csum|rt_|ip4_|l3mdev|__sys_(recv|send|accept|connect)|sys_(recv|send))/],
];

/** the area of a sample: user space by process name, kernel by function family */
export function areaOf(s: LeafSamples): string {
  if (!s.kernel) return `user space (${s.comm})`;
  for (const [name, re] of AREAS) if (re.test(s.sym)) return name;
  return 'other kernel (syscalls, scheduler, epoll, timers, …)';
}

export interface AddedRow {
  key: string;
  baseNsPerReq: number;
  nsPerReq: number;
  addedNsPerReq: number;
}

/** ns per request of each key (idle excluded) */
export function nsPerRequest(p: Profile, key: (s: LeafSamples) => string): Map<string, number> {
  const m = new Map<string, number>();
  if (p.requests <= 0 || p.hz <= 0) return m;
  const nsPerSample = 1e9 / p.hz;
  for (const s of p.samples) {
    if (isIdle(s)) continue;
    const k = key(s);
    m.set(k, (m.get(k) ?? 0) + (s.samples * nsPerSample) / p.requests);
  }
  return m;
}

/** `p` against the base profile, key by key, largest addition first */
export function addedBy(base: Profile, p: Profile, key: (s: LeafSamples) => string): AddedRow[] {
  const b = nsPerRequest(base, key);
  const x = nsPerRequest(p, key);
  const keys = new Set([...b.keys(), ...x.keys()]);
  return [...keys]
    .map((k) => ({ key: k, baseNsPerReq: b.get(k) ?? 0, nsPerReq: x.get(k) ?? 0, addedNsPerReq: (x.get(k) ?? 0) - (b.get(k) ?? 0) }))
    .sort((a, c) => c.addedNsPerReq - a.addedNsPerReq);
}

/** every non-idle sample, ns per request */
export function busyNsPerRequest(p: Profile): number {
  let n = 0;
  for (const v of nsPerRequest(p, () => '').values()) n += v;
  return n;
}

export const kernelFunction = (s: LeafSamples) => (s.kernel ? s.sym : `${s.comm} (user space)`);

/** the one error for a missing perf: the scenario's option check and requirePerf give it alike */
export const PERF_MISSING = { message: '--profile needs perf, which is not installed', fix: 'apt-get install linux-perf (or `pnpm lab setup`)' };

/** perf on PATH, or a LabError naming the package */
export function requirePerf(): string {
  const p = findOnPath('perf');
  if (!p) throw new LabError(PERF_MISSING.message, PERF_MISSING.fix);
  return p;
}

/** the process name (kernel and user time together): which process the CPU worked for */
export const processOf = (s: LeafSamples) => s.comm.replace(/\/\d+$/, '/N');

/**
 * Record every CPU while `fn` runs into `file` (perf.data) and return fn's result. perf is
 * started first and given time to open its per-CPU events; the idle time before and after the
 * load is idle-loop samples, which nsPerRequest leaves out. Read the samples with readProfile
 * after the last recording: parsing perf's report is work of this process (and its garbage
 * collection afterwards), which would otherwise land in the next recording's window.
 */
export async function recordSystemWide<T>(file: string, hz: number, fn: () => Promise<T>, o: { signal?: AbortSignal } = {}): Promise<T> {
  const perf = requirePerf();
  const rec = execa(perf, ['record', '-a', '-F', String(hz), '-e', 'cpu-clock', '-o', file], { reject: false, all: true, cancelSignal: o.signal, forceKillAfterDelay: 5000 });
  try {
    await sleep(700);
    if (rec.exitCode !== null) throw new LabError(`perf record exited at once: ${String((await rec).all).trim().split('\n').pop()}`, 'check that `perf record -a -e cpu-clock true` works as root (kernel.perf_event_paranoid)');
    const result = await fn();
    rec.kill('SIGINT');
    const r = await rec;
    if (!fs.existsSync(file)) throw new LabError(`perf record wrote no data (exit ${r.exitCode}): ${String(r.all).trim().split('\n').pop()}`, 'check that `perf record -a -e cpu-clock true` works as root');
    return result;
  } finally {
    if (rec.exitCode === null) rec.kill('SIGKILL');
    await rec.catch(() => undefined);
    fs.rmSync(`${file}.old`, { force: true });
  }
}

/** the leaf samples of a perf.data file (comm, object, symbol, count) */
export async function readProfile(file: string): Promise<LeafSamples[]> {
  const rep = await execa(requirePerf(), ['report', '-i', file, '--stdio', '-q', '--sort', 'comm,dso,sym', '-F', 'sample,comm,dso,sym', '-t', '\t', '--percent-limit', '0'], { reject: false, maxBuffer: 64 * 1024 * 1024 });
  if (rep.exitCode !== 0) throw new LabError(`perf report -i ${file} failed (exit ${rep.exitCode}): ${rep.stderr.trim().split('\n').pop()}`, 'run `perf report -i <file>` by hand to see why');
  return parsePerfReport(rep.stdout);
}
