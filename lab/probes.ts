// Feature probes of the running kernel, done for real: libbpf's type/helper probes plus a trial
// load and attach of a tiny program per hook (bpf/probe.bpf.c). Versions are never consulted:
// distributions backport and lock down independently of the version number.
import fs from 'node:fs';
import os from 'node:os';
import { execa } from 'execa';
import { BpfError, Btf, attachAuto, attachCgroup, attachPerfEventAllCpus, attachTc, attachXdp, enableStats, libbpf, type Link, type Program } from '../controller/libbpf/index.ts';
import { probe, type Probe as ProbeSkeleton, type ProbeShape } from '../bpf/gen/probe.ts';
import { ensureObject } from '../bpf/build.ts';
import { activeLsms, ensureMounts } from '../common/host.ts';
import { findCgroup2Root } from '../common/cgroup.ts';
import { scaledTimeout } from './timeouts.ts';

export interface Probe {
  ok: boolean;
  detail?: string;
}
export type ProbeTable = Record<string, Probe>;

// enum bpf_prog_type / bpf_map_type values used by libbpf_probe_*
const PROG_TYPES: Record<string, number> = {
  'prog:kprobe': 2, 'prog:sched_cls': 3, 'prog:tracepoint': 5, 'prog:xdp': 6, 'prog:perf_event': 7,
  'prog:cgroup_sock_addr': 18, 'prog:raw_tracepoint': 17, 'prog:tracing': 26, 'prog:lsm': 29,
};
const MAP_TYPES: Record<string, number> = {
  'map:ringbuf': 27, 'map:lru_hash': 9, 'map:lru_percpu_hash': 10, 'map:hash_of_maps': 13, 'map:array_of_maps': 12, 'map:lpm_trie': 11,
};
const HELPERS: [name: string, progType: number, helperId: number][] = [
  ['helper:bpf_send_signal (tracepoint)', 5, 109],
  ['helper:bpf_ringbuf_reserve (tracepoint)', 5, 131],
  ['helper:bpf_redirect_map (xdp)', 6, 51],
  ['helper:bpf_get_current_cgroup_id (cgroup_sock_addr)', 18, 80],
];

/** per-hook trial: program name in probe.bpf.c and how to attach it */
const TRIALS: { key: string; prog: ProbeShape['programs']; attach: (p: Program, env: TrialEnv) => Link | Link[] }[] = [
  { key: 'attach:tracepoint', prog: 'p_tracepoint', attach: attachAuto },
  { key: 'attach:raw_tp', prog: 'p_raw_tp', attach: attachAuto },
  { key: 'attach:tp_btf', prog: 'p_tp_btf', attach: attachAuto },
  { key: 'attach:kprobe', prog: 'p_kprobe', attach: attachAuto },
  { key: 'attach:fentry', prog: 'p_fentry', attach: attachAuto },
  { key: 'attach:lsm', prog: 'p_lsm', attach: attachAuto },
  { key: 'attach:xdp native (veth)', prog: 'p_xdp', attach: (p, e) => attachXdp(p, e.veth(), { mode: 'native' }) },
  { key: 'attach:xdp generic (veth)', prog: 'p_xdp', attach: (p, e) => attachXdp(p, e.veth(), { mode: 'generic' }) },
  { key: 'attach:tc clsact (veth)', prog: 'p_tc', attach: (p, e) => attachTc(p, e.veth(), 'ingress') },
  { key: 'attach:cgroup connect4', prog: 'p_connect4', attach: (p, e) => attachCgroup(p, e.cgroup()) },
  { key: 'attach:cgroup sock_create', prog: 'p_sock_create', attach: (p, e) => attachCgroup(p, e.cgroup()) },
  { key: 'attach:perf_event (cpu-clock)', prog: 'p_perf_event', attach: (p) => attachPerfEventAllCpus(p, { type: 1 /* SOFTWARE */, config: 0 /* CPU_CLOCK */, freq: 99 }) },
  { key: 'load:bpf_send_signal from tracepoint', prog: 'p_send_signal', attach: attachAuto },
  { key: 'load:ring buffer producer', prog: 'p_ringbuf', attach: attachAuto },
  // xdp-lb's packet generator; 5.18+, and a kernel may refuse it to root (EPERM on this host's
  // 6.18, session 58). One zeroed frame, passed to the stack of the probe's netns, which drops it.
  { key: 'run:xdp live frames (BPF_F_TEST_XDP_LIVE_FRAMES)', prog: 'p_xdp', attach: (p) => (p.testRun({ data: Buffer.alloc(60), repeat: 1, flags: 2 }), []) },
];

interface TrialEnv {
  veth(): string;
  cgroup(): string;
}

function short(e: unknown): string {
  if (e instanceof BpfError) return e.message.split('\n')[0]!.replace(/^attaching \S+ /, '');
  return String((e as Error)?.message ?? e).split('\n')[0]!;
}

/** onPhase: what the probe is doing now (a run that hangs in a probe says in which) */
export async function probeKernel(opts: { kvm?: boolean; onPhase?: (phase: string) => void } = {}): Promise<ProbeTable> {
  const phase = opts.onPhase ?? (() => {});
  phase('mounting bpffs/tracefs/cgroup2');
  await ensureMounts();
  const t: ProbeTable = {};
  const root = process.getuid?.() === 0;

  phase('reading the kernel BTF');
  const btf = Btf.vmlinux();
  t['kernel BTF'] = btf ? { ok: true, detail: `/sys/kernel/btf/vmlinux, ${btf.typeCount} types` } : { ok: false, detail: 'no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)' };
  btf?.close();
  try {
    const jit = fs.readFileSync('/proc/sys/net/core/bpf_jit_enable', 'utf8').trim();
    t['JIT'] = { ok: jit !== '0', detail: `bpf_jit_enable=${jit}` };
  } catch {
    t['JIT'] = { ok: false, detail: 'no /proc/sys/net/core/bpf_jit_enable' };
  }
  phase('libbpf probes of program and map types, helpers');
  // not root: every load is refused (unprivileged_bpf_disabled), which libbpf's type probes read as
  // "not supported" and its helper probe as "yes" (review, session 57)
  const unprobed = root ? null : { ok: false, detail: 'not probed: needs root' };
  const libbpfProbe = (k: string, r: () => number, no: string) => {
    if (unprobed) t[k] = unprobed;
    else {
      const n = r();
      t[k] = { ok: n === 1, detail: n === 1 ? undefined : n === 0 ? no : `probe failed (${n})` };
    }
  };
  for (const [k, v] of Object.entries(PROG_TYPES)) libbpfProbe(k, () => libbpf.libbpf_probe_bpf_prog_type(v, null), 'not supported');
  for (const [k, v] of Object.entries(MAP_TYPES)) libbpfProbe(k, () => libbpf.libbpf_probe_bpf_map_type(v, null), 'not supported');
  for (const [k, pt, h] of HELPERS) libbpfProbe(k, () => libbpf.libbpf_probe_bpf_helper(pt, h, null), 'not available');

  const lsms = activeLsms();
  t['BPF LSM in boot LSMs'] = lsms ? { ok: lsms.includes('bpf'), detail: `lsm=${lsms.join(',')}` } : { ok: false, detail: 'cannot read /sys/kernel/security/lsm' };

  if (!root) {
    for (const tr of TRIALS) t[tr.key] = { ok: false, detail: 'not probed: needs root' };
  } else {
    const objPath = await ensureObject('probe');
    const cleanup: (() => Promise<unknown> | unknown)[] = [];
    let vethName: string | null = null;
    let cg: string | null = null;
    const env: TrialEnv = {
      veth() {
        if (!vethName) throw new Error('veth unavailable');
        return vethName;
      },
      cgroup() {
        if (!cg) throw new Error('no cgroup v2 mount');
        return cg;
      },
    };
    try {
      // a private veth pair for the XDP/tc trials, one `ip` process (~0.3 s each under TCG);
      // removed below whatever happens. The peer cannot be set up in the same `link add`.
      const name = `lprobe${process.pid % 100000}`;
      cleanup.push(() => execa('ip', ['link', 'del', name], { reject: false }));
      phase(`creating the veth pair ${name} (ip)`);
      // bounded: a hung `ip` would otherwise hold the run at this step past any stop
      const r = await execa('ip', ['-batch', '-'], { input: `link add ${name} up type veth peer name ${name}p\nlink set ${name}p up\n`, reject: false, timeout: scaledTimeout(30_000) });
      if (r.exitCode === 0) vethName = name;
      const cgRoot = findCgroup2Root();
      if (cgRoot) {
        // the pid in the name: a dead probe's cgroup is swept (common/cgroup.ts sweepStaleCgroups)
        cg = fs.mkdtempSync(`${cgRoot}/ebpf-lab-probe-${process.pid}-`);
        cleanup.push(() => fs.rmdirSync(cg!));
      }
      // Every trial program in one load where the kernel takes them all (each load parses the
      // kernel's BTF again: ~1.2 s of the probe under TCG); else one object per trial, so a
      // program the kernel refuses fails only its own row.
      let shared: ProbeSkeleton | null = null;
      phase('loading the trial programs');
      try {
        shared = probe.open(objPath);
        shared.load();
      } catch {
        shared?.close();
        shared = null;
      }
      try {
        for (const tr of TRIALS) {
          let obj = shared;
          if (!obj) {
            try {
              obj = probe.open(objPath);
              obj.load({ skip: probe.spec.programs.filter((p) => p !== tr.prog) });
            } catch (e) {
              t[tr.key] = { ok: false, detail: `load: ${short(e)}` };
              obj?.close();
              continue;
            }
          }
          phase(`attaching ${tr.prog} (${tr.key})`);
          try {
            const links = tr.attach(obj.program(tr.prog), env);
            t[tr.key] = { ok: true };
            for (const l of Array.isArray(links) ? links : [links]) l.close();
          } catch (e) {
            t[tr.key] = { ok: false, detail: short(e) };
          } finally {
            if (obj !== shared) obj.close();
          }
        }
      } finally {
        shared?.close();
      }
    } finally {
      phase('removing the trial veth and cgroup');
      for (const c of cleanup.reverse()) {
        try {
          await c();
        } catch {
          /* keep cleaning */
        }
      }
    }
    phase('enabling BPF stats');
    try {
      enableStats().close();
      t['bpf stats (run_time_ns)'] = { ok: true };
    } catch (e) {
      t['bpf stats (run_time_ns)'] = { ok: false, detail: short(e) };
    }
  }

  reconcile(t);

  if (opts.kvm !== false) {
    phase('probing KVM');
    try {
      const { probeKvm } = await import('./vm/index.ts');
      const k = await probeKvm();
      // a verdict kept for a day was printed as if just probed
      const age = Date.now() - Date.parse(k.at);
      const cached = k.ms > 0 && age > 60_000 ? ` (probed ${age < 3600_000 ? `${Math.round(age / 60_000)} min` : `${(age / 3600_000).toFixed(1)} h`} ago, kept for a day; pnpm lab vm probe-kvm --force probes again)` : '';
      t['KVM usable'] = { ok: k.ok, detail: `${k.note}${cached}` };
    } catch (e) {
      t['KVM usable'] = { ok: false, detail: short(e) };
    }
  }
  return t;
}

/**
 * Make rows agree with what the trial attaches proved, so the table never says two things at
 * once. libbpf's prog-type probe loads a tracing/LSM program without an attach target, which the
 * verifier refuses on every kernel; a real load+attach is the better witness.
 */
export function reconcile(t: ProbeTable): void {
  const tpBtf = t['attach:tp_btf'];
  if (tpBtf?.ok && t['prog:tracing'] && !t['prog:tracing'].ok) {
    t['prog:tracing'] = { ok: true, detail: 'tp_btf loaded and attached (libbpf\'s type probe, which loads without an attach target, said no)' };
  }
  const lsmTrial = t['attach:lsm'];
  const listed = t['BPF LSM in boot LSMs'];
  if (lsmTrial && !lsmTrial.ok && /EPERM|not permitted/i.test(lsmTrial.detail ?? '')) {
    t['prog:lsm'] = { ok: false, detail: `the type exists but loading is refused: ${lsmTrial.detail}` };
  }
  if (listed) {
    // "active" means programs can be attached, not only that the LSM is listed
    t['BPF LSM usable'] = listed.ok && /^not probed/.test(lsmTrial?.detail ?? '')
      ? { ok: false, detail: `not probed: needs root (bpf is listed in the boot LSMs: ${listed.detail})` }
      : listed.ok && lsmTrial?.ok
      ? { ok: true, detail: `${listed.detail}; an lsm program loaded and attached` }
      : !listed.ok
        ? { ok: false, detail: `bpf is not in the boot LSMs (${listed.detail}); boot with lsm=…,bpf` }
        : { ok: false, detail: `bpf is listed in the boot LSMs (${listed.detail}) but LSM programs cannot be used: ${lsmTrial?.detail ?? 'not probed'}${/EPERM|not permitted/i.test(lsmTrial?.detail ?? '') ? ' (likely: the host or its hypervisor forbids loading tracing/LSM programs, e.g. lockdown or a sandbox policy)' : ''}` };
  }
  // what a refusal means, with the machine's evidence (an ENOENT on kprobe/vfs_read read as if
  // vfs_read were missing)
  const vmHint = process.env.EBPF_LAB_IN_VM === '1' ? '' : "; the lab's VM kernels have them (--kernel 6.1)";
  const kp = t['attach:kprobe'];
  if (kp && !kp.ok && /ENOENT/.test(kp.detail ?? '') && !/kprobe events/.test(kp.detail ?? '')) {
    const pmu = fs.existsSync('/sys/bus/event_source/devices/kprobe');
    const events = ['/sys/kernel/tracing/kprobe_events', '/sys/kernel/debug/tracing/kprobe_events'].some((f) => fs.existsSync(f));
    if (!pmu && !events) t['attach:kprobe'] = { ok: false, detail: `${kp.detail}: this kernel has no kprobe events (no /sys/bus/event_source/devices/kprobe, no kprobe_events in tracefs: CONFIG_KPROBE_EVENTS off), whatever the function${vmHint}` };
  }
  const lockdown = lockdownMode();
  for (const key of ['attach:fentry', 'attach:lsm']) {
    const r = t[key];
    if (r && !r.ok && /EPERM|not permitted/i.test(r.detail ?? '') && !/forbids/.test(r.detail ?? '')) {
      t[key] = { ok: false, detail: `${r.detail}: as root, so the host or its hypervisor forbids loading tracing programs (lockdown=${lockdown ?? 'unknown'}; a sandbox policy)${vmHint}` };
    }
  }
}

export function formatProbeTable(t: ProbeTable, release = os.release()): string {
  const w = Math.max(...Object.keys(t).map((k) => k.length));
  const root = process.getuid?.() === 0;
  // the verdict first: what is missing here, then every row
  const entries = Object.entries(t);
  const missing = entries.filter(([, v]) => !v.ok && !/^not probed/.test(v.detail ?? '')).map(([k]) => k);
  const unprobed = entries.filter(([, v]) => /^not probed/.test(v.detail ?? '')).length;
  const lines = [
    `BPF feature probes on ${release}${root ? '' : ' (not root: loads and attach trials skipped; run as root for verdicts)'}`,
    `  ${entries.length - missing.length - unprobed} of ${entries.length} usable${missing.length ? `; not here: ${missing.join(', ')} (a scenario that needs one reports "unsupported" with the evidence below)` : ''}${unprobed ? `; ${unprobed} not probed` : ''}`,
    '',
  ];
  for (const [k, v] of Object.entries(t)) lines.push(`  ${v.ok ? 'yes' : ' no'}  ${k.padEnd(w)}  ${v.detail ?? ''}`.trimEnd());
  return lines.join('\n');
}

/** /sys/kernel/security/lockdown's mode in force (none, integrity, confidentiality), if readable */
function lockdownMode(): string | undefined {
  try {
    return /\[(\w+)\]/.exec(fs.readFileSync('/sys/kernel/security/lockdown', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}
