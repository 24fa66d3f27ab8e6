// Host plumbing every BPF run needs: the pseudo filesystems (tracefs for tracepoints, bpffs for
// pins, securityfs to read the active LSMs, debugfs), found or mounted. The cgroup v2 root is
// common/cgroup.ts's.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { execa } from 'execa';
import { LabError } from './errors.ts';

const MOUNTS: [type: string, target: string][] = [
  ['tracefs', '/sys/kernel/tracing'],
  ['debugfs', '/sys/kernel/debug'],
  ['bpf', '/sys/fs/bpf'],
  ['securityfs', '/sys/kernel/security'],
];

/** where libbpf (and the lab) read tracefs, in its order of preference */
const TRACEFS_AT = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'];

function mounts(): { type: string; target: string }[] {
  return fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [, target, type] = l.split(' ');
      return { type: type!, target: target! };
    });
}

/** Mount what is missing (root only; silently skipped otherwise). */
export async function ensureMounts(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const have = mounts();
  for (const [type, target] of MOUNTS) {
    if (have.some((m) => m.type === type && m.target === target)) continue;
    // where libbpf looks: a tracefs elsewhere (a chroot's /…/sys/kernel/tracing) is not one it finds
    if (type === 'tracefs' && have.some((m) => m.type === 'tracefs' && TRACEFS_AT.includes(m.target))) continue;
    fs.mkdirSync(target, { recursive: true });
    await execa('mount', ['-t', type, type, target], { reject: false });
  }
}

/**
 * The `ip netns` name of this process's network namespace, for fix lines (`nsenter
 * --net=/run/netns/NAME`); undefined outside a named one (the host). By the namespace file's
 * identity: /proc/1/ns/net, the obvious reference for "the host", is not readable in every sandbox.
 */
export function netnsName(): string | undefined {
  try {
    const self = fs.statSync('/proc/self/ns/net');
    return fs.readdirSync('/run/netns').find((n) => {
      try {
        const st = fs.statSync(path.join('/run/netns', n));
        return st.dev === self.dev && st.ino === self.ino;
      } catch {
        return false;
      }
    });
  } catch {
    return undefined;
  }
}

/** Where `command` is on PATH (or in /usr/sbin, /sbin, which a non-login PATH may lack), or null. */
export function findOnPath(command: string): string | null {
  const dirs = (process.env.PATH ?? '/usr/bin:/bin').split(':').filter(Boolean).concat('/usr/sbin', '/sbin');
  return dirs.map((d) => path.join(d, command)).find((p) => fs.existsSync(p)) ?? null;
}

export function tracefsRoot(): string | null {
  const m = mounts().filter((x) => x.type === 'tracefs');
  return TRACEFS_AT.find((t) => m.some((x) => x.target === t)) ?? null;
}

export function activeLsms(): string[] | null {
  try {
    return fs.readFileSync('/sys/kernel/security/lsm', 'utf8').trim().split(',');
  } catch {
    return null;
  }
}

export type PreemptModel = 'none' | 'voluntary' | 'full' | 'lazy' | 'rt';
export interface Preemption {
  /** undefined: no source told which one */
  model?: PreemptModel;
  /** can a task be preempted in kernel code (full, lazy, rt); undefined: unknown */
  preemptible?: boolean;
  /** where it came from, as the report states it */
  source: string;
}

const MODELS: PreemptModel[] = ['none', 'voluntary', 'full', 'lazy', 'rt'];

/**
 * The kernel's preemption model from what the host offers, best source first: debugfs's
 * sched/preempt ("none voluntary (full) lazy": the current one in parentheses), else the build
 * config's default with a valid `preempt=` from the command line (PREEMPT_DYNAMIC; a mode the
 * config does not offer is refused by the kernel, as 7.x does with none).
 */
export function preemptModelFrom(o: { debugfs?: string; config?: string; cmdline?: string; version?: string }): Preemption {
  const r = preemptModelOf(o);
  return r.model ? { ...r, preemptible: !(r.model === 'none' || r.model === 'voluntary') } : r;
}

function preemptModelOf(o: { debugfs?: string; config?: string; cmdline?: string; version?: string }): Preemption {
  const cur = o.debugfs && /\((\w+)\)/.exec(o.debugfs)?.[1];
  if (cur && (MODELS as string[]).includes(cur)) return { model: cur as PreemptModel, source: 'debugfs sched/preempt' };
  if (!o.config) {
    // uname -v names the build's model unless it is dynamic: "SMP PREEMPT_RT", "SMP PREEMPT", or
    // neither for none/voluntary (which one does not matter here: neither preempts kernel code)
    const v = o.version ?? '';
    if (!v || /PREEMPT_DYNAMIC/.test(v)) return { source: 'unknown (no debugfs sched/preempt, no kernel config)' };
    if (/\bPREEMPT_RT\b/.test(v)) return { model: 'rt', source: 'uname -v' };
    if (/\bPREEMPT\b/.test(v)) return { model: 'full', source: 'uname -v' };
    return { preemptible: false, source: 'uname -v (none or voluntary)' };
  }
  const set = (k: string) => new RegExp(`^CONFIG_${k}=y$`, 'm').test(o.config!);
  const offered = (k: string) => new RegExp(`^(CONFIG_${k}=y|# CONFIG_${k} is not set)$`, 'm').test(o.config!);
  const byConfig: PreemptModel | undefined = set('PREEMPT_RT') ? 'rt' : set('PREEMPT_LAZY') ? 'lazy' : set('PREEMPT') ? 'full' : set('PREEMPT_VOLUNTARY') ? 'voluntary' : set('PREEMPT_NONE') ? 'none' : undefined;
  const arg = o.cmdline && /(?:^|\s)preempt=(\w+)/.exec(o.cmdline)?.[1];
  if (arg && set('PREEMPT_DYNAMIC') && (MODELS as string[]).includes(arg) && arg !== 'rt') {
    const key = { none: 'PREEMPT_NONE', voluntary: 'PREEMPT_VOLUNTARY', full: 'PREEMPT', lazy: 'PREEMPT_LAZY' }[arg as 'none' | 'voluntary' | 'full' | 'lazy'];
    if (offered(key)) return { model: arg as PreemptModel, source: `preempt=${arg} on the command line` };
  }
  return byConfig ? { model: byConfig, source: 'kernel config default' } : { source: 'unknown (kernel config names no model)' };
}

const readOrUndefined = (p: string) => {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
};

/** the running kernel's build config: the packaged one, else /proc/config.gz; undefined when neither is there */
export function kernelConfigText(): string | undefined {
  const release = readOrUndefined('/proc/sys/kernel/osrelease')?.trim() ?? '';
  for (const p of [`/boot/config-${release}`, `/lib/modules/${release}/config`, `/usr/lib/modules/${release}/config`]) {
    const c = readOrUndefined(p);
    if (c) return c;
  }
  try {
    return zlib.gunzipSync(fs.readFileSync('/proc/config.gz')).toString('utf8');
  } catch {
    return undefined;
  }
}

/** CONFIG_<name> of a config text: 'y', 'm', 'n' (absent or "is not set"), or null without a config */
export function configOption(config: string | undefined, name: string): 'y' | 'm' | 'n' | null {
  if (config === undefined) return null;
  const m = new RegExp(`^CONFIG_${name}=(\\S+)$`, 'm').exec(config);
  return m?.[1] === 'y' || m?.[1] === 'm' ? m[1] : 'n';
}

/** This kernel's preemption model (debugfs, else /proc/config.gz or the packaged config, with /proc/cmdline). */
export function preemptModel(): Preemption {
  return preemptModelFrom({ debugfs: readOrUndefined('/sys/kernel/debug/sched/preempt'), config: kernelConfigText(), cmdline: readOrUndefined('/proc/cmdline'), version: readOrUndefined('/proc/sys/kernel/version') });
}

/** is this kernel release (uname -r) at least major.minor? An unreadable one counts as
 * yes: callers ask whether something newer is there and take the side that is safe without it */
export function releaseAtLeast(release: string, [major, minor]: number[]): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return true;
  const a = Number(m[1]), b = Number(m[2]);
  return a > major! || (a === major && b >= minor!);
}

export interface PidStat {
  comm: string;
  /** R, S, D, Z, … */
  state: string;
  ppid: number;
  /** utime + stime, in clock ticks */
  ticks: number;
  /** stime alone, in clock ticks */
  sysTicks: number;
  /** clock ticks after boot, as text: with the pid it names one process, a reused pid has another */
  startTime: string;
}

/** /proc/<pid>/stat (or /proc/<pid>/task/<tid>/stat) parsed; comm may hold spaces and parentheses */
export function parsePidStat(text: string): PidStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const f = text.slice(close + 2).split(' ');
  return { comm: text.slice(open + 1, close), state: f[0] ?? '', ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]), sysTicks: Number(f[12]), startTime: f[19] ?? '' };
}

/** parsePidStat of a stat file, null when the process (or thread) is gone */
export function readPidStat(file: string): PidStat | null {
  try {
    return parsePidStat(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

/** a live process's start time (PidStat.startTime), undefined when it is gone */
export function procStart(pid: number): string | undefined {
  return readPidStat(`/proc/${pid}/stat`)?.startTime;
}

/**
 * Is the process a state file recorded (pid, and its start time where recorded: older files lack
 * it) still running? Not when the pid is gone, is a zombie (dead, not yet reaped), or now names a
 * process started at another time (a reused pid). What the daemons' state files (tc shaper, svc)
 * are judged by before a dead one's leftovers are removed or taken over.
 */
export function processAlive(pid: unknown, startTime?: string | null): boolean {
  // never /proc/0 or a negative or fractional "pid" from a damaged file
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return false;
  const st = readPidStat(`/proc/${pid}/stat`);
  return !!st && st.state !== 'Z' && (!startTime || st.startTime === startTime);
}

/** when a live process started, in ms since the epoch (to a clock tick), undefined when it is gone */
export function procStartMs(pid: number): number | undefined {
  const st = readPidStat(`/proc/${pid}/stat`);
  if (!st) return undefined;
  // both in the boot clock (suspend included): uptime now, and the start's ticks (USER_HZ, 100)
  const uptimeS = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return Date.now() - (uptimeS * 1000 - Number(st.startTime) * 10);
}

/**
 * Is the owner of a leftover named by its pid (a temp dir, cgroup, namespace, pin dir, state file)
 * still running? Not when the pid is dead, and not when the process holding it now started after
 * the leftover was made: the owner is dead and its pid reused (fast in a container restarted with a
 * new pid namespace, whose /run/netns and cgroups outlive it), and judged by the pid alone its
 * leftovers stayed for good. The leftover's time is its birth (or mtime, which is later); the slack
 * keeps a live owner alive across a wall-clock step of up to a minute — a false "dead" would sweep
 * a running run's resources, a false "alive" only keeps a leak.
 */
export function ownerAlive(pid: number, leftover: string, slackMs = 60_000): boolean {
  if (!processAlive(pid)) return false;
  let made: number;
  try {
    const s = fs.statSync(leftover);
    made = s.birthtimeMs > 0 ? Math.min(s.birthtimeMs, s.mtimeMs) : s.mtimeMs;
  } catch {
    return true; // gone or unreadable: nothing to judge it by
  }
  const started = procStartMs(pid);
  return started === undefined ? false : started <= made + slackMs;
}

/** Send sig to each pid but this process's; one already gone is skipped (the sweeps' orphan kills). */
export function signalAll(pids: Iterable<number>, sig: NodeJS.Signals): void {
  for (const pid of pids) {
    if (pid === process.pid) continue;
    try {
      process.kill(pid, sig);
    } catch { /* gone */ }
  }
}

/**
 * `stop` of a daemon recorded in a state file: SIGTERM it (it removes what it attached itself), or
 * send `signal`, and wait, by the clock, until it has gone, so that the command returns when the stop is done. True
 * when it is gone, false when it still runs after timeoutMs.
 */
export async function terminate(pid: number, startTime?: string | null, timeoutMs = 10_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
  if (!processAlive(pid, startTime)) return true;
  // a daemon the lab started is never init nor this process: a state file that names either is not
  // the lab's (a stop once signalled pid 1, from a state file of the user's choosing)
  if (pid <= 1 || pid === process.pid) throw new LabError(`refusing to signal pid ${pid}: no lab daemon runs as ${pid === 1 ? 'init' : 'this command'}`, 'the state file is not one the lab wrote: remove it by hand');
  try {
    process.kill(pid, signal);
  } catch {
    return true;
  }
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 50));
    if (!processAlive(pid, startTime)) return true;
  }
  return !processAlive(pid, startTime);
}
