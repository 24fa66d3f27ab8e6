// The xdp-lb topology, shared by the scenario and the end-to-end tests:
//
//   client ─┐                      (10.99.0.1, fd99::1)
//   lb ─────┤ br0 in ns "fabric"   (10.99.0.2, fd99::2; XDP LB on lb0; HAProxy/nginx stream listen here)
//   b1..bN ─┘                      (10.99.0.11…; VIPs on lo; nginx on :80)
//
// One L2 segment, as L2 DSR needs: the client routes the VIP prefix via the LB, the LB rewrites
// MACs and sends the frame back out (XDP_TX) to the chosen backend, the backend answers the
// client directly. The proxies use the same segment: client → LB address → backends.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { attachXdp, type Link } from '../../controller/libbpf/index.ts';
import { xdpBench, type XdpBench } from '../../bpf/gen/xdp_bench.ts';
import { ensureObject } from '../../bpf/build.ts';
import { LbClient } from '../../controller/lb/client.ts';
import { pinsRecordPath, daemonLockPath } from '../../controller/lb/server.ts';
import { createTopology, Topology, type VethEnd } from '../../lab/netns.ts';
import { withNetns } from '../../controller/libbpf/index.ts';
import { labCliArgv } from '../../common/dist.ts';
import { LabError } from '../../common/errors.ts';
import { ownerAlive, processAlive, readPidStat } from '../../common/host.ts';
import { collectOutput, untilReady } from '../../common/child.ts';
import { scaledTimeout } from '../../lab/scenario.ts';
import { DEFAULT_PIN_ROOT, type LbConfig } from '../../controller/lb/config.ts';
import { runTempDir } from '../../common/stale.ts';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLIENT4 = '10.99.0.1';
export const CLIENT6 = 'fd99::1';
export const LB4 = '10.99.0.2';
export const LB6 = 'fd99::2';
export const VIP4 = '10.99.100.1';
export const VIP6 = 'fd99:100::1';
/** VIPs forwarded with IPIP / IP6IP6 encapsulation (added only where the kernel can decapsulate) */
export const VIP4_IPIP = '10.99.101.1';
export const VIP6_IPIP = 'fd99:101::1';
/** client route MTU towards the encapsulated VIPs: inner packet + 40-byte outer header fits 1500 */
export const IPIP_CLIENT_MTU = 1440;
export const backend4 = (i: number) => `10.99.0.${11 + i}`;
export const backend6 = (i: number) => `fd99::${(0x11 + i).toString(16)}`;
export const HAPROXY_PORT = 8080;
export const NGINX_PORT = 8081;

export interface LbTopology {
  topo: Topology;
  n: number;
  dir: string;
  macs: { client: string; lb: string; backends: string[] };
  /** ifindex of the bridge port facing the LB (in "fabric") */
  fabricLbIfindex: number;
  /** helper programs (xdp_pass/sink/drop/gen) loaded in this process */
  helpers: XdpBench;
  /** attach xdp_sink to the bridge port facing the LB (needed to receive XDP_TX'd frames) */
  attachPeer(): void;
  detachPeer(): void;
  /** ifindex of each backend's bridge port (pbN in "fabric"): the devmap path's egress ports */
  backendPorts(): Promise<number[]>;
  /** attach xdp_sink to every backend's eth0: a veth receives frames redirected into its peer
   * (the devmap path) only when it runs an XDP program */
  attachBackendSinks(): void;
  detachBackendSinks(): void;
  /** NAPI in kernel threads (sysfs `threaded`) on every veth end the pps section receives on
   * (lb0, the bridge port facing it, the backends' eth0), so receives can run on another CPU */
  setThreadedNapi(on: boolean): Promise<void>;
  dispose(): Promise<void>;
}

export async function buildTopology(opts: { prefix: string; backends: number; log?: (s: string) => void; peerXdp?: boolean }): Promise<LbTopology> {
  const log = opts.log ?? (() => {});
  const topo = createTopology(opts.prefix);
  // the pid in the name (common/stale.ts): a SIGKILLed run's dir is removed by the next run
  const dir = runTempDir(opts.prefix);
  const n = opts.backends;
  try {
    log(`namespaces ${opts.prefix}-${process.pid}-*`);
    const t0 = performance.now();
    const took = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
    await topo.create(['fabric', 'client', 'lb', ...Array.from({ length: n }, (_, i) => `b${i + 1}`)], [
      [{ ns: 'client', dev: 'c0' }, { ns: 'fabric', dev: 'pclient' }],
      [{ ns: 'lb', dev: 'lb0' }, { ns: 'fabric', dev: 'plb' }],
      ...Array.from({ length: n }, (_, i): [VethEnd, VethEnd] => [{ ns: `b${i + 1}`, dev: 'eth0' }, { ns: 'fabric', dev: `pb${i + 1}` }]),
    ]);
    await topo.bridge('fabric', 'br0', ['pclient', 'plb', ...Array.from({ length: n }, (_, i) => `pb${i + 1}`)]);
    log(`namespaces, veth pairs and the bridge up (${took()})`);
    // one `ip -batch` per namespace (a process costs ~0.4 s in a TCG guest)
    const { addrCmd: addr, neighCmd: neigh } = Topology;
    const macs = { client: await topo.mac('client', 'c0'), lb: await topo.mac('lb', 'lb0'), backends: [] as string[] };
    for (let i = 0; i < n; i++) macs.backends.push(await topo.mac(`b${i + 1}`, 'eth0'));
    for (let i = 0; i < n; i++) {
      await topo.batch(`b${i + 1}`, [
        addr('eth0', `${backend4(i)}/24`),
        addr('eth0', `${backend6(i)}/64`),
        // DSR: the backend owns the VIPs (on lo) and answers from them straight to the client
        addr('lo', `${VIP4}/32`),
        addr('lo', `${VIP6}/128`),
        addr('lo', `${VIP4_IPIP}/32`),
        addr('lo', `${VIP6_IPIP}/128`),
        neigh('eth0', CLIENT4, macs.client),
        neigh('eth0', CLIENT6, macs.client),
        neigh('eth0', LB4, macs.lb),
        neigh('eth0', LB6, macs.lb),
      ]);
    }
    await topo.batch('lb', [
      addr('lb0', `${LB4}/24`),
      addr('lb0', `${LB6}/64`),
      ...macs.backends.flatMap((m, i) => [neigh('lb0', backend4(i), m), neigh('lb0', backend6(i), m)]),
      neigh('lb0', CLIENT4, macs.client),
      neigh('lb0', CLIENT6, macs.client),
    ]);
    await topo.batch('client', [
      addr('c0', `${CLIENT4}/24`),
      addr('c0', `${CLIENT6}/64`),
      neigh('c0', LB4, macs.lb),
      neigh('c0', LB6, macs.lb),
      ['route', 'add', `${VIP4}/32`, 'via', LB4],
      ['route', 'add', `${VIP6}/128`, 'via', LB6],
      ['route', 'add', `${VIP4_IPIP}/32`, 'via', LB4, 'mtu', 'lock', String(IPIP_CLIENT_MTU)],
      ['route', 'add', `${VIP6_IPIP}/128`, 'via', LB6, 'mtu', 'lock', String(IPIP_CLIENT_MTU)],
    ]);
    // frames the XDP program rewrites lose CHECKSUM_PARTIAL on the way through XDP: the client
    // must send complete checksums and MTU-sized frames (same client for every configuration)
    await topo.offload('client', 'c0', { tx: false, tso: false, gso: false, sg: false });
    for (const r of ['client', 'lb']) await topo.sysctls(r, { 'net.ipv4.ip_local_port_range': '10000 65000', 'net.ipv4.tcp_tw_reuse': 1 });
    // the fabric has no address of its own; a link route lets an LB daemon there (the client-port
    // path, clientPortConfig) find each backend's egress by the kernel's route lookup, as it does
    // in the LB namespace. Bridged frames are forwarded at L2 and never consult it.
    await topo.batch('fabric', [['route', 'add', '10.99.0.0/24', 'dev', 'br0'], ['route', 'add', 'fd99::/64', 'dev', 'br0']]);
    log(`addresses, neighbours, routes and sysctls set (${took()})`);
    const fabricLbIfindex = await topo.ifindex('fabric', 'plb');
    const helpers = await loadHelpers(fabricLbIfindex);
    log(`helper programs loaded (${took()})`);
    // the bridge port facing the LB receives XDP_TX'd frames: it needs an XDP program of its own.
    // The proxies do not need it, and it changes the veth's receive path, so it is optional.
    let peerLink: Link | null = null;
    let backendLinks: Link[] = [];
    const t: LbTopology = {
      topo, n, dir, macs, fabricLbIfindex, helpers,
      attachPeer() {
        if (!peerLink) peerLink = withNetns(topo.ns('fabric'), () => attachXdp(helpers.programs.xdp_sink, 'plb'));
      },
      detachPeer() {
        peerLink?.close();
        peerLink = null;
      },
      async backendPorts() {
        return Promise.all(Array.from({ length: n }, (_, i) => topo.ifindex('fabric', `pb${i + 1}`)));
      },
      attachBackendSinks() {
        if (backendLinks.length) return;
        try {
          for (let i = 0; i < n; i++) backendLinks.push(withNetns(topo.ns(`b${i + 1}`), () => attachXdp(helpers.programs.xdp_sink, 'eth0')));
        } catch (e) {
          t.detachBackendSinks();
          throw e;
        }
      },
      detachBackendSinks() {
        for (const l of backendLinks) l.close();
        backendLinks = [];
      },
      async setThreadedNapi(on) {
        // sysfs shows the namespace of whoever mounted it: `ip netns exec` mounts the namespace's own
        const devs: [string, string][] = [['lb', 'lb0'], ['fabric', 'plb'], ...Array.from({ length: n }, (_, i): [string, string] => [`b${i + 1}`, 'eth0'])];
        for (const [role, dev] of devs) await execa('ip', ['netns', 'exec', topo.ns(role), 'sh', '-c', `echo ${on ? 1 : 0} > /sys/class/net/${dev}/threaded`]);
      },
      async dispose() {
        try {
          for (const l of backendLinks) l.close();
          peerLink?.close();
          helpers.close();
        } finally {
          await topo.dispose();
          fs.rmSync(dir, { recursive: true, force: true });
          // the daemons just stopped with SIGTERM, which keeps an instance's pins (restart-safe):
          // a stop while the run was starting one, before the scenario held it to purge, left
          // this run's pins to the next run's sweep
          for (const prefix of ['xlb', 'xlbs', 'xlbc']) removePins(`${prefix}${process.pid}`);
        }
      },
    };
    if (opts.peerXdp !== false) t.attachPeer();
    return t;
  } catch (e) {
    await topo.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** the helper programs (bpf/xdp_bench.bpf.c), with the generator aimed at genIfindex */
export async function loadHelpers(genIfindex: number): Promise<XdpBench> {
  const obj = xdpBench.open(await ensureObject('xdp_bench'));
  try {
    obj.setRodata({ gen_ifindex: genIfindex }).load();
  } catch (e) {
    obj.close();
    throw e;
  }
  return obj;
}

// ---- IPIP / IP6IP6 decapsulation on the backends ----

/**
 * Can this kernel decapsulate IPIP and IP6IP6? Creates (and deletes) one device of each kind in a
 * namespace, which also loads the ipip / ip6_tunnel modules where they exist as modules.
 * Returns null when it can, else the evidence (the kernel's own error messages).
 */
export async function probeIpip(t: LbTopology, role = 'lb'): Promise<string | null> {
  const errs: string[] = [];
  for (const [kind, args] of [['ipip', ['type', 'ipip', 'remote', backend4(0)]], ['ip6tnl', ['type', 'ip6tnl', 'mode', 'ip6ip6', 'remote', backend6(0)]]] as const) {
    const dev = `xlbprobe${kind === 'ipip' ? 4 : 6}`;
    const r = await t.topo.exec(role, 'ip', ['link', 'add', dev, ...args], { reject: false });
    if (r.exitCode === 0) await t.topo.exec(role, 'ip', ['link', 'del', dev], { reject: false });
    else errs.push(`ip link add … type ${kind}: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`);
  }
  if (!errs.length) return null;
  const mod = await execa('modprobe', ['-n', '-v', 'ipip'], { reject: false });
  const modEvidence = mod.exitCode === undefined ? 'modprobe not available' : String(mod.stderr || mod.stdout).trim() || `exit ${mod.exitCode}`;
  return `${errs.join('; ')}; modprobe -n -v ipip: ${modEvidence}`;
}

/**
 * Katran's backend side: an ipip and an ip6tnl (ip6ip6) device that take any tunnel packet sent
 * to the backend's address, rp_filter off (the inner source is routed via eth0, not the tunnel),
 * and the VIPs on lo (buildTopology put them there). Replies go straight to the client.
 */
export async function setupIpipBackends(t: LbTopology): Promise<void> {
  for (let i = 0; i < t.n; i++) {
    const r = `b${i + 1}`;
    await t.topo.batch(r, [
      ['link', 'add', 'ipip1', 'type', 'ipip', 'local', backend4(i)],
      ['link', 'add', 'ip6tnl1', 'type', 'ip6tnl', 'mode', 'ip6ip6', 'local', backend6(i)],
      ['link', 'set', 'ipip1', 'up'],
      ['link', 'set', 'ip6tnl1', 'up'],
    ]);
    await t.topo.sysctls(r, Object.fromEntries(['all', 'default', 'ipip1'].map((dev) => [`net.ipv4.conf.${dev}.rp_filter`, 0])));
  }
}

/** rx packets of a backend's tunnel devices (proof that frames arrived encapsulated) */
export async function tunnelRx(t: LbTopology, i: number): Promise<{ ipip: number; ip6tnl: number }> {
  // every link of the namespace in one process; a device that is not there counts 0
  const r = await t.topo.exec(`b${i + 1}`, 'ip', ['-j', '-s', 'link', 'show'], { reject: false });
  const links = r.exitCode === 0 ? (JSON.parse(String(r.stdout)) as { ifname: string; stats64?: { rx?: { packets?: number } } }[]) : [];
  const rx = (dev: string) => links.find((l) => l.ifname === dev)?.stats64?.rx?.packets ?? 0;
  return { ipip: rx('ipip1'), ip6tnl: rx('ip6tnl1') };
}

// ---- backends and proxies ----

export async function startNginxBackends(t: LbTopology): Promise<void> {
  for (let i = 0; i < t.n; i++) await startBackend(t, i);
}

export async function startBackend(t: LbTopology, i: number): Promise<void> {
  const d = path.join(t.dir, `b${i + 1}`);
  fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(d, 'nginx.conf'), `
user root;
worker_processes 1;
pid ${d}/nginx.pid;
error_log ${d}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  server {
    listen 80 reuseport backlog=4096;
    listen [::]:80 reuseport backlog=4096;
    location / { add_header X-Backend b${i + 1}; return 200 "b${i + 1}\\n"; }
  }
}
`);
  t.topo.spawn(`b${i + 1}`, 'nginx', ['-p', d, '-c', path.join(d, 'nginx.conf'), '-g', 'daemon off;']);
  await waitPort(t, 'client', backend4(i), 80);
}

export async function stopBackend(t: LbTopology, i: number): Promise<void> {
  const pid = Number(fs.readFileSync(path.join(t.dir, `b${i + 1}`, 'nginx.pid'), 'utf8'));
  // QUIT would wait for idle keep-alive connections; TERM closes now (a crashed backend)
  process.kill(pid, 'SIGTERM');
  for (let k = 0; k < 50 && fs.existsSync(path.join(t.dir, `b${i + 1}`, 'nginx.pid')); k++) await new Promise((r) => setTimeout(r, 50));
}

export async function waitPort(t: LbTopology, role: string, host: string, port: number, timeoutMs = 10_000): Promise<void> {
  const waitMs = scaledTimeout(timeoutMs);
  const end = Date.now() + waitMs;
  for (;;) {
    const r = await t.topo.exec(role, 'bash', ['-c', `exec 3<>/dev/tcp/${host}/${port}`], { reject: false, timeout: scaledTimeout(2000) });
    if (r.exitCode === 0) return;
    if (Date.now() > end) throw new LabError(`${host}:${port} not reachable from ${role} within ${(waitMs / 1000).toFixed(0)} s (last attempt: ${(r.stderr || r.stdout || `exit ${r.exitCode}`).toString().trim().split('\n').pop()})`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

export interface Proxy {
  name: string;
  /** pid of the process that owns the work (the worker) and all its processes */
  pids(): number[];
  stop(): Promise<void>;
}

function descendants(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const p of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    const ppid = readPidStat(`/proc/${p}/stat`)?.ppid; // undefined: exited
    if (ppid !== undefined) (kids.get(ppid) ?? kids.set(ppid, []).get(ppid)!).push(Number(p));
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(kids.get(p) ?? []));
  }
  return out;
}

/** `servers`: the first N backends (default all); the bench's load runs use as many as the XDP LB's VIP */
export async function startHaproxy(t: LbTopology, servers = t.n): Promise<Proxy> {
  const f = path.join(t.dir, 'haproxy.cfg');
  fs.writeFileSync(f, `
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend fe
  bind ${LB4}:${HAPROXY_PORT}
  default_backend be
backend be
  balance roundrobin
${Array.from({ length: servers }, (_, i) => `  server b${i + 1} ${backend4(i)}:80`).join('\n')}
`);
  const child = t.topo.spawn('lb', 'haproxy', ['-f', f, '-db']);
  await waitPort(t, 'client', LB4, HAPROXY_PORT);
  return { name: 'HAProxy', pids: () => descendants(child.pid!), stop: () => t.topo.kill(child) };
}

export async function startNginxStream(t: LbTopology, servers = t.n): Promise<Proxy> {
  const d = path.join(t.dir, 'stream');
  fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(d, 'nginx.conf'), `
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
user root;
worker_processes 1;
pid ${d}/nginx.pid;
error_log ${d}/error.log warn;
events { worker_connections 8192; }
stream {
  upstream be {
${Array.from({ length: servers }, (_, i) => `    server ${backend4(i)}:80;`).join('\n')}
  }
  server { listen ${LB4}:${NGINX_PORT} backlog=4096; proxy_pass be; }
}
`);
  const child = t.topo.spawn('lb', 'nginx', ['-p', d, '-c', path.join(d, 'nginx.conf'), '-g', 'daemon off;']);
  await waitPort(t, 'client', LB4, NGINX_PORT);
  return { name: 'nginx stream', pids: () => descendants(child.pid!), stop: () => t.topo.kill(child) };
}

// ---- the XDP LB daemon ----

export interface Daemon {
  api: LbClient;
  socket: string;
  configFile: string;
  startedAs: string;
  /** process start → ready line (load, attach, admin API) */
  readyMs: number;
  /** SIGKILL the daemon (a crash): pins and the XDP link stay */
  crash(): Promise<void>;
  /** clean stop; purge=true detaches and removes pins */
  stop(purge?: boolean): Promise<void>;
  log(): string;
}

export function lbConfig(t: LbTopology, instance: string, extra: Partial<LbConfig> = {}): LbConfig {
  const bs = Array.from({ length: t.n }, (_, i) => ({ address: backend4(i) }));
  return {
    interface: 'lb0',
    instance,
    // used by VIPs added with forwarding "ipip" (the scenario adds them where the kernel can decapsulate)
    tunnelSource: { ipv4: LB4, ipv6: LB6 },
    healthCheck: { intervalMs: 300, timeoutMs: 1000, fall: 2, rise: 2 },
    vips: [
      { vip: `tcp://${VIP4}:80`, backends: bs },
      { vip: `tcp://[${VIP6}]:80`, backends: bs },
      { vip: `udp://${VIP4}:9`, backends: bs.map((b) => ({ ...b, port: 80 })), healthCheck: true },
    ],
    ...extra,
  };
}

/**
 * The XDP LB on the client-facing port instead of its own: attached to "pclient" (the bridge's
 * port towards the client, in "fabric"), where the client's frames arrive, and redirecting each
 * VIP frame straight into its backend's port (config "egress": pbN, the devmap path), so VIP
 * traffic never crosses the bridge. This is where an XDP LB sits on a host whose NIC receives the
 * traffic (Cilium's XDP service LB, Katran on the LB host's NIC); a proxy cannot sit there. The
 * backends' MACs are configuration (nothing in "fabric" resolves neighbours), and no health checks:
 * "fabric" has no address to probe from. Run it with startDaemon(t, cfg, 'fabric').
 */
export function clientPortConfig(t: LbTopology, instance: string, servers = t.n): LbConfig {
  const bs = Array.from({ length: servers }, (_, i) => ({ address: backend4(i), mac: t.macs.backends[i]!, egress: `pb${i + 1}` }));
  return {
    interface: 'pclient',
    instance,
    vips: [{ vip: `tcp://${VIP4}:80`, backends: bs, healthCheck: false }],
  };
}

export async function startDaemon(t: LbTopology, cfg: LbConfig, role = 'lb'): Promise<Daemon> {
  const instance = cfg.instance ?? 'default';
  const configFile = path.join(t.dir, `lb-${instance}.json`);
  fs.writeFileSync(configFile, JSON.stringify(cfg, null, 2));
  const socket = path.join(t.dir, `lb-${instance}.sock`);
  const t0 = Date.now();
  const [node, ...cli] = labCliArgv();
  const child = t.topo.spawn(role, node!, [...cli, 'lb', 'daemon', '--config', configFile, '--socket', socket], { cwd: REPO, all: true, buffer: false, keepMounts: true });
  const out = collectOutput([child.all], Infinity);
  const ready = JSON.parse((await untilReady(child, out, /\{"ready":true.*\}/, scaledTimeout(15_000), 'LB daemon', 'see the scenario log; under TCG raise EBPF_LAB_TIME_SCALE'))[0]) as { startedAs: string };
  const api = new LbClient(socket);
  return {
    api, socket, configFile, startedAs: ready.startedAs, readyMs: Date.now() - t0,
    log: out,
    async crash() {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
      await Promise.resolve(child);
    },
    async stop(purge = false) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        await api.shutdown(purge);
      } catch { /* already gone */ }
      const done = Promise.resolve(child);
      const t2 = setTimeout(() => child.pid && process.kill(-child.pid, 'SIGKILL'), 10_000);
      await done;
      clearTimeout(t2);
    },
  };
}

/**
 * Pin directories of LB instances named <prefix><pid> whose process is dead (a crashed run that
 * could not purge): unpinning releases their maps and XDP link.
 */
export function sweepStalePins(prefix: string, root = DEFAULT_PIN_ROOT): string[] {
  if (!fs.existsSync(root)) return [];
  const removed: string[] = [];
  for (const name of fs.readdirSync(root)) {
    const m = name.match(new RegExp(`^${prefix}(\\d+)$`));
    if (!m) continue;
    if (ownerAlive(Number(m[1]), path.join(root, name))) continue;
    removePins(name, root);
    removed.push(name);
  }
  return removed;
}

/** an LB instance's pin directory (its maps, its XDP link) and its daemon's note of where it pinned */
function removePins(instance: string, root = DEFAULT_PIN_ROOT): void {
  fs.rmSync(path.join(root, instance), { recursive: true, force: true });
  fs.rmSync(pinsRecordPath(instance), { force: true });
  fs.rmSync(daemonLockPath(instance), { force: true }); // a killed daemon's (a live one removes its own)
}
