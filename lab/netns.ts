// Network-namespace topologies for scenarios and tests: namespaces, veth pairs, bridges,
// addresses, static neighbours, commands and long-running processes inside a namespace, all
// torn down by dispose() — and, should the process die first, by a synchronous exit hook.
// Names carry a prefix and the owner's pid, so concurrent runs never collide and a later run can
// sweep what a crashed one left behind (sweepStale) without touching anybody else's namespaces.
import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { execa, type Options as ExecaOptions, type ResultPromise } from 'execa';
import { ownerAlive, signalAll } from '../common/host.ts';

export interface VethEnd {
  ns: string; // role
  dev: string;
}

export interface Offloads {
  tx?: boolean;
  rx?: boolean;
  tso?: boolean;
  gso?: boolean;
  gro?: boolean;
  sg?: boolean;
}

let vethSeq = 0;
const live = new Set<Topology>();
let hookInstalled = false;
function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on('exit', () => {
    for (const t of live) t.disposeSync();
  });
}

export class Topology implements AsyncDisposable {
  private readonly names = new Map<string, string>();
  private readonly children = new Set<ChildProcess>();
  private disposed = false;
  /** set when dispose() starts: nothing new is made while (or after) it runs */
  private closing = false;

  constructor(readonly prefix: string) {
    installExitHook();
    live.add(this);
  }

  /** the real namespace name of a role */
  ns(role: string): string {
    const n = this.names.get(role);
    if (!n) throw new Error(`no namespace "${role}" in topology ${this.prefix}`);
    return n;
  }

  get namespaces(): string[] {
    return [...this.names.values()];
  }

  async addNs(role: string): Promise<string> {
    await this.create([role]);
    return this.ns(role);
  }

  /** a veth pair created directly in its two namespaces (no name ever exists in the caller's); mtu on both ends */
  async veth(a: VethEnd, b: VethEnd, opts: { mtu?: number } = {}): Promise<void> {
    await this.create([], [[a, b]], opts);
  }

  /**
   * Namespaces (lo up) and veth pairs between them, each end renamed and up, in one `ip -batch`
   * here plus one per namespace touched, instead of two processes per namespace and three per pair.
   * Older kernels (6.1) check a new device's name in the creating namespace too, where e.g. the
   * VM's own eth0 exists: pairs are created under unique temporary names and renamed inside.
   */
  async create(roles: string[], veths: [VethEnd, VethEnd][] = [], opts: { mtu?: number } = {}): Promise<void> {
    this.assertLive();
    const fresh = roles.filter((r) => !this.names.has(r));
    if (fresh.length) recordPrefix(this.prefix);
    // registered first: should the batch fail halfway, dispose() deletes whichever exist
    for (const r of fresh) this.names.set(r, `${this.prefix}-${process.pid}-${r}`);
    // kept here: a dispose() during the batch below clears the names
    const made = fresh.map((r) => this.ns(r));
    const here = fresh.map((r) => ['netns', 'add', this.ns(r)]);
    const inside = new Map<string, string[][]>(fresh.map((r) => [r, [['link', 'set', 'lo', 'up']]]));
    const add = (role: string, cmd: string[]) => (inside.get(role) ?? inside.set(role, []).get(role)!).push(cmd);
    for (const [a, b] of veths) {
      const tmp = `lt${process.pid.toString(36)}${(vethSeq++).toString(36)}`;
      const mtu = opts.mtu ? ['mtu', String(opts.mtu)] : [];
      here.push(['link', 'add', `${tmp}a`, 'netns', this.ns(a.ns), ...mtu, 'type', 'veth', 'peer', 'name', `${tmp}b`, 'netns', this.ns(b.ns), ...mtu]);
      add(a.ns, ['link', 'set', `${tmp}a`, 'name', a.dev, 'up']);
      add(b.ns, ['link', 'set', `${tmp}b`, 'name', b.dev, 'up']);
    }
    try {
      await this.runBatch(null, here);
    } finally {
      // disposed while the batch ran (a stopped run's cleanups): its `ip netns del` may have come
      // before the adds, so what the batch made is deleted here, and the caller stops
      if (this.closing) for (const n of made) await execa('ip', ['netns', 'del', n], { reject: false });
    }
    this.assertLive();
    for (const [role, cmds] of inside) await this.batch(role, cmds);
  }

  /**
   * A stopped run's scenario code can still be in the middle of building when the cleanups dispose
   * its topology: a namespace or process made after that was never removed. A Ctrl-C sweep left
   * xdp-lb's nginx backends running, spawned while dispose() awaited its kills and deletions.
   */
  private assertLive(): void {
    if (this.closing) throw new Error(`topology ${this.prefix} was torn down (the run is stopping)`);
  }

  async bridge(role: string, dev: string, ports: string[]): Promise<void> {
    await this.batch(role, [
      ['link', 'add', dev, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0'],
      ...ports.map((p) => ['link', 'set', p, 'master', dev]),
      ['link', 'set', dev, 'up'],
    ]);
  }

  /**
   * Many `ip` commands in one namespace as one process (`ip -batch`), in order, stopping at the
   * first failure (named by ip with its line). Lines take no global options (no -6: ip infers the
   * family from the addresses). A guest under TCG pays ~0.4 s per process started,
   * which made a topology of a hundred commands cost 30-40 s there.
   */
  async batch(role: string, cmds: string[][]): Promise<void> {
    await this.runBatch(role, cmds);
  }

  /** role null: the caller's own namespace */
  private async runBatch(role: string | null, cmds: string[][]): Promise<void> {
    if (!cmds.length) return;
    const input = `${cmds.map((c) => c.join(' ')).join('\n')}\n`;
    const r = role === null ? await execa('ip', ['-batch', '-'], { input, reject: false }) : await this.exec(role, 'ip', ['-batch', '-'], { input, reject: false });
    if (r.exitCode === 0) return;
    // a kernel refusal ends "Command failed -:N"; a parse error exits at once, naming the bad value
    const err = String(r.stderr).trim();
    const line = Number(err.match(/Command failed -:(\d+)/)?.[1] ?? 0);
    throw new Error(`ip -batch in ${role === null ? "the caller's namespace" : `namespace ${this.ns(role)}`}${line ? ` failed at "ip ${cmds[line - 1]?.join(' ')}"` : ''}: ${err.split('\n')[0]}`);
  }

  /** `ip addr add` as a batch line (IPv6 without duplicate address detection, as addr()) */
  static addrCmd(dev: string, cidr: string): string[] {
    return ['addr', 'add', cidr, 'dev', dev, ...(cidr.includes(':') ? ['nodad'] : [])];
  }

  /** `ip neigh replace … permanent` as a batch line (as neigh()) */
  static neighCmd(dev: string, ip: string, mac: string): string[] {
    return ['neigh', 'replace', ip, 'lladdr', mac, 'dev', dev, 'nud', 'permanent'];
  }

  async up(role: string, dev: string): Promise<void> {
    await this.exec(role, 'ip', ['link', 'set', dev, 'up']);
  }

  /** cidr like 10.0.0.1/24 or fd00::1/64 (IPv6 without duplicate address detection) */
  async addr(role: string, dev: string, cidr: string): Promise<void> {
    await this.exec(role, 'ip', Topology.addrCmd(dev, cidr));
  }

  async route(role: string, dst: string, via: string, dev?: string): Promise<void> {
    await this.exec(role, 'ip', ['route', 'add', dst, 'via', via, ...(dev ? ['dev', dev] : [])]);
  }

  async neigh(role: string, dev: string, ip: string, mac: string): Promise<void> {
    await this.exec(role, 'ip', Topology.neighCmd(dev, ip, mac));
  }

  async mac(role: string, dev: string): Promise<string> {
    const r = await this.exec(role, 'ip', ['-j', 'link', 'show', 'dev', dev]);
    return (JSON.parse(String(r.stdout)) as { address: string }[])[0]!.address;
  }

  async ifindex(role: string, dev: string): Promise<number> {
    const r = await this.exec(role, 'ip', ['-j', 'link', 'show', 'dev', dev]);
    return (JSON.parse(String(r.stdout)) as { ifindex: number }[])[0]!.ifindex;
  }

  async sysctl(role: string, key: string, value: string | number): Promise<void> {
    await this.sysctls(role, { [key]: value });
  }

  /** several sysctls of one namespace in one process */
  async sysctls(role: string, kv: Record<string, string | number>): Promise<void> {
    await this.exec(role, 'sysctl', ['-qw', ...Object.entries(kv).map(([k, v]) => `${k}=${v}`)]);
  }

  /** ethtool -K; needs ethtool (lab/setup.ts group "lb") */
  async offload(role: string, dev: string, o: Offloads): Promise<void> {
    const args = Object.entries(o).flatMap(([k, v]) => [k, v ? 'on' : 'off']);
    if (args.length) await this.exec(role, 'ethtool', ['-K', dev, ...args]);
  }

  /** offload state as ethtool -k reports it (for reports) */
  async offloadState(role: string, dev: string): Promise<Record<string, string>> {
    const r = await this.exec(role, 'ethtool', ['-k', dev], { reject: false });
    const out: Record<string, string> = {};
    for (const l of String(r.stdout).split('\n')) {
      const m = l.match(/^(tx-checksumming|rx-checksumming|scatter-gather|tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload):\s+(\S+)/);
      if (m) out[m[1]!] = m[2]!;
    }
    return out;
  }

  /** run a command to completion inside a namespace */
  exec(role: string, cmd: string, args: string[] = [], opts: ExecaOptions = {}) {
    const [c, a] = this.argv(role, cmd, args);
    return execa(c, a, opts);
  }

  /**
   * The command line that runs cmd in a namespace: `nsenter --net` (network namespace only).
   * Not `ip netns exec`: it also remounts /sys, which hides the host's bpffs at /sys/fs/bpf (pins
   * vanish) and fails outright where / is not a mount point (a chroot). Nothing here reads
   * /sys/class/net; ip/ethtool/sysctl talk to the namespace through netlink, ioctls and /proc.
   */
  argv(role: string, cmd: string, args: string[] = [], _opts: { keepMounts?: boolean } = {}): [string, string[]] {
    return ['nsenter', [`--net=/run/netns/${this.ns(role)}`, '--', cmd, ...args]];
  }

  /**
   * Start a long-running process inside a namespace, in its own process group; dispose() (or
   * kill()) ends that group. Returns the execa child (await it for the exit).
   */
  spawn(role: string, cmd: string, args: string[] = [], opts: ExecaOptions & { keepMounts?: boolean } = {}): ResultPromise {
    this.assertLive();
    const { keepMounts, ...rest } = opts;
    const [bin, argv] = this.argv(role, cmd, args, { keepMounts });
    const child = execa(bin, argv, { detached: true, reject: false, ...rest });
    this.children.add(child);
    void Promise.resolve(child).finally(() => this.children.delete(child));
    return child;
  }

  /**
   * Wait until a process spawned here listens on every TCP port given (IPv4 or IPv6), read from
   * its own /proc/<pid>/net — its namespace's sockets, no `ss` process (0.2 s of a vCPU each under
   * TCG). Until nsenter has exec'd the command the pid is still in this namespace, so its tables
   * are read only once the pid no longer runs nsenter. Throws after timeoutMs, or if it exited.
   */
  async waitListening(child: ChildProcess, ports: number[], timeoutMs: number): Promise<void> {
    const pid = child.pid;
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (pid === undefined || child.exitCode !== null || child.signalCode !== null) throw new Error(`${child.spawnargs.slice(3).join(' ')} exited before it listened on ${ports.join(', ')}`);
      try {
        if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'nsenter') {
          const open = new Set([...listeningPorts(fs.readFileSync(`/proc/${pid}/net/tcp`, 'utf8')), ...listeningPorts(fs.readFileSync(`/proc/${pid}/net/tcp6`, 'utf8'))]);
          if (ports.every((p) => open.has(p))) return;
        }
      } catch { /* gone between the check and the read: the next round says so */ }
      if (Date.now() > until) throw new Error(`${child.spawnargs.slice(3).join(' ')} did not listen on ${ports.join(', ')} within ${(timeoutMs / 1000).toFixed(1)} s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** end a spawned process group: SIGTERM, then SIGKILL after graceMs */
  async kill(child: ChildProcess, graceMs = 2000): Promise<void> {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      return;
    }
    const t = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch { /* already gone */ }
    }, graceMs);
    await gone;
    clearTimeout(t);
    // whatever is left of its group once the leader is gone (a daemon's workers: nginx's were seen
    // orphaned after a stop)
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch { /* none left */ }
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    // first: a process spawned while the kills and deletions below await was never killed
    this.closing = true;
    await Promise.all([...this.children].map((c) => this.kill(c)));
    for (const n of this.names.values()) await execa('ip', ['netns', 'del', n], { reject: false });
    this.names.clear();
    this.disposed = true;
    live.delete(this);
  }

  /** the exit-hook path: same teardown, synchronously */
  disposeSync(): void {
    if (this.disposed) return;
    for (const c of this.children) {
      try {
        if (c.pid) process.kill(-c.pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    for (const n of this.names.values()) {
      try {
        execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
      } catch { /* gone */ }
    }
    this.disposed = true;
    live.delete(this);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/** local ports in state LISTEN (0A) of a /proc/net/tcp or tcp6 table */
export function listeningPorts(table: string): number[] {
  const out: number[] = [];
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[3] === '0A' && f[1]) out.push(parseInt(f[1].slice(f[1].lastIndexOf(':') + 1), 16));
  }
  return out;
}

export function createTopology(prefix: string): Topology {
  if (!/^[a-z][a-z0-9]{0,11}$/.test(prefix)) throw new Error(`topology prefix "${prefix}" must be 1-12 lowercase letters/digits`);
  return new Topology(prefix);
}

/**
 * The prefixes of the topologies made on this machine (since boot: /run), so that any run sweeps
 * the namespaces of every kind of dead run. Only a scenario's own next run did: a SIGKILLed
 * xdp-lb bench's six namespaces, and the XDP programs and processes in them, outlived the runs of
 * other scenarios (found by a sweep, session 48).
 */
const PREFIXES_FILE = '/run/ebpf-lab/netns-prefixes';
const recorded = new Set<string>();

function recordPrefix(prefix: string): void {
  if (recorded.has(prefix)) return;
  try {
    const have = fs.existsSync(PREFIXES_FILE) ? fs.readFileSync(PREFIXES_FILE, 'utf8').split('\n') : [];
    if (!have.includes(prefix)) {
      fs.mkdirSync('/run/ebpf-lab', { recursive: true });
      fs.appendFileSync(PREFIXES_FILE, `${prefix}\n`);
    }
    recorded.add(prefix);
  } catch { /* not root, or no /run: only the scenario's own sweep then */ }
}

/** sweepStale for every prefix a topology on this machine has used */
export async function sweepStaleAll(): Promise<string[]> {
  let prefixes: string[];
  try {
    prefixes = fs.readFileSync(PREFIXES_FILE, 'utf8').split('\n').filter((p) => /^[a-z][a-z0-9]{0,11}$/.test(p));
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const p of new Set(prefixes)) removed.push(...(await sweepStale(p)));
  return removed;
}

/** Namespaces named <prefix>-<pid>-… or <prefix>-<pid> whose pid is dead: left behind by a crashed run. */
export async function sweepStale(prefix: string): Promise<string[]> {
  const r = await execa('ip', ['netns', 'list'], { reject: false });
  const removed: string[] = [];
  for (const line of String(r.stdout).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = name.match(new RegExp(`^${prefix}-(\\d+)(?:-|$)`));
    if (!m) continue;
    // a zombie owner is dead too (its parent never reaped it: this machine's init does not)
    if (ownerAlive(Number(m[1]), `/run/netns/${name}`)) continue;
    // what its run left running inside dies with it: a SIGKILLed tc-shaping run's datagram loop
    // (bash, a whole CPU) outlived its namespace's name and ran on into the next runs
    const pids = await execa('ip', ['netns', 'pids', name], { reject: false });
    signalAll(String(pids.stdout).split('\n').map(Number).filter((p) => p > 1), 'SIGKILL');
    await execa('ip', ['netns', 'del', name], { reject: false });
    removed.push(name);
  }
  return removed;
}

/** namespaces currently present whose name starts with prefix (teardown checks) */
export async function listNamespaces(prefix: string): Promise<string[]> {
  const r = await execa('ip', ['netns', 'list'], { reject: false });
  return String(r.stdout).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(prefix));
}
