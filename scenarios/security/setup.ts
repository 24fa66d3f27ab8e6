// The lab around one security run: cgroups, scratch dir, controller, listeners, PostgreSQL, and the
// workload's policy. Used by the scenario and the tests; every piece registers its own teardown.
import fs from 'node:fs';
import { holdPingRangeOpen } from '../../common/ping-range.ts';
import { execa } from 'execa';
import path from 'node:path';
import { SecurityController } from '../../controller/security/controller.ts';
import { cgroup2Root, createCgroup, removeCgroup } from '../../common/cgroup.ts';
import { parsePolicies, type Policy } from '../../controller/security/policy.ts';
import { ATTACKS_DIR, NOBODY, PYTHON, startListeners, startPostgres, type Listeners, type Postgres } from './workload.ts';
import type { RunEnv } from './suite.ts';
import { runTempDir } from '../../common/stale.ts';
import { sweepStale } from '../../lab/netns.ts';

export interface Lab extends RunEnv {
  root: string;
  base: string;
  /** relative to the cgroup2 root, as policies name it */
  workloadCg: string;
  outsideDir: string;
  listeners: Listeners;
  pg?: Postgres;
  hardlink?: string;
  /**
   * whether the kernel sees the hard link as the same inode as /usr/bin/dash. Not on overlayfs:
   * link() first copies a lower-layer file up, and the two names get different inode numbers, so
   * there a "hard link" is a copy as far as identity goes (the allowlist still stops it).
   */
  hardlinkSameInode?: boolean;
  /** a network namespace behind a veth: the target of the raw and packet-socket attacks */
  target: Target;
}

export interface Target {
  ns: string;
  ip: string;
  port: number;
  /** datagrams the target's UDP listener received */
  received(): number;
}

/**
 * A namespace the attacks can reach without touching any real network: veth <hostDev> (host side,
 * a /30 link net) ↔ tgt0 in the namespace, and a UDP listener in there counting datagrams.
 */
async function startTarget(defer: Defer): Promise<{ target: Target; env: Record<string, string> }> {
  const tag = (process.pid % 60000) + 1;
  const ns = `ebpf-lab-sectgt-${process.pid}`;
  const hostDev = `sect${tag.toString(36)}`;
  const net = `10.${250 + (tag % 4)}.${(tag >> 2) % 256}`;
  const [hostIp, ip] = [`${net}.1`, `${net}.2`];
  const inNs = (args: string[]) => execa('nsenter', [`--net=/run/netns/${ns}`, ...args]);
  // a SIGKILLed run's target (and its listener) stayed for good: swept by its pid
  await sweepStale('ebpf-lab-sectgt');
  await execa('ip', ['netns', 'add', ns]);
  defer(`delete netns ${ns} (and the veth)`, () => execa('ip', ['netns', 'del', ns], { reject: false }));
  await execa('ip', ['link', 'add', hostDev, 'type', 'veth', 'peer', 'name', 'tgt0', 'netns', ns]);
  await execa('ip', ['addr', 'add', `${hostIp}/30`, 'dev', hostDev]);
  await execa('ip', ['link', 'set', hostDev, 'up']);
  await inNs(['ip', 'addr', 'add', `${ip}/30`, 'dev', 'tgt0']);
  await inNs(['ip', 'link', 'set', 'tgt0', 'up']);
  await inNs(['ip', 'link', 'set', 'lo', 'up']);
  // not /sys/class/net: nsenter --net keeps the host's sysfs mount
  const mac = (JSON.parse((await inNs(['ip', '-j', 'link', 'show', 'tgt0'])).stdout) as { address: string }[])[0]!.address;
  const port = 9999;
  const listener = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',${port}))\nprint('ready',flush=True)\nwhile True:\n    d,a=s.recvfrom(2048); print('rx',a[0],d[:20],flush=True)`;
  const rx = execa('nsenter', [`--net=/run/netns/${ns}`, PYTHON, '-u', '-c', listener], { reject: false, buffer: false, stdin: 'ignore' });
  let count = 0;
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  rx.stdout?.on('data', (b: Buffer) => {
    for (const l of b.toString().split('\n')) {
      if (l.startsWith('ready')) ready();
      if (l.startsWith('rx')) count++;
    }
  });
  defer(`stop the target listener in ${ns}`, async () => {
    rx.kill('SIGKILL');
    await rx.catch(() => {});
  });
  await Promise.race([isReady, new Promise((r) => setTimeout(r, 10_000).unref())]);
  return { target: { ns, ip, port, received: () => count }, env: { TARGET_IP: ip, TARGET_PORT: String(port), TARGET_DEV: hostDev, TARGET_MAC: mac, TARGET_SRC: hostIp } };
}

export type Defer = (what: string, fn: () => unknown | Promise<unknown>) => void;

export async function setupLab(defer: Defer, opts: { postgres?: boolean; log?: (s: string) => void; lsm?: 'auto' | 'off' } = {}): Promise<Lab> {
  const log = opts.log ?? (() => {});
  const root = cgroup2Root();
  const name = `ebpf-lab-security-${process.pid}-${Date.now() % 100000}`;
  const base = path.join(root, name);
  createCgroup(path.join(base, 'workload'));
  createCgroup(path.join(base, 'outside'));
  defer(`remove cgroups ${base}`, () => removeCgroup(base, root));

  const scratch = runTempDir('sec');
  fs.chmodSync(scratch, 0o1777);
  defer(`remove ${scratch}`, () => fs.rmSync(scratch, { recursive: true, force: true }));
  // the workload runs as nobody, which may not read the checkout (e.g. a clone under /root):
  // it runs world-readable copies of the attack scripts from the scratch dir
  fs.cpSync(ATTACKS_DIR, path.join(scratch, 'attacks'), { recursive: true });
  for (const f of fs.readdirSync(path.join(scratch, 'attacks'))) fs.chmodSync(path.join(scratch, 'attacks', f), 0o755);
  fs.chmodSync(path.join(scratch, 'attacks'), 0o755);
  // fs.protected_hardlinks keeps the unprivileged workload from linking root's binaries: the
  // attacker's link is prepared as root, what we test is whether exec through it is stopped
  let hardlink: string | undefined = path.join(scratch, 'root-made-hardlink');
  try {
    fs.linkSync('/usr/bin/dash', hardlink);
  } catch {
    hardlink = undefined;
  }

  // each step's time in the progress log: under TCG they take seconds each (6.12: the controller
  // 18.6 s of 24.3 s, reports/20261130-134411-security-6.12)
  const t0 = performance.now();
  const took = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  const controller = await SecurityController.start({ log, lsm: opts.lsm });
  log(`security controller loaded and attached (${took()})`);
  defer('close security controller (links, programs, maps)', () => controller.close());
  let hardlinkSameInode: boolean | undefined;
  if (hardlink) {
    const ids = controller.identity.identify(['/usr/bin/dash', hardlink]);
    const a = ids.get('/usr/bin/dash')!;
    const b = ids.get(hardlink)!;
    hardlinkSameInode = a.dev === b.dev && a.ino === b.ino;
  }
  // the ping-socket attack needs ping sockets open to the workload's group, as systemd sets it
  const releasePingRange = holdPingRangeOpen();
  defer('restore net.ipv4.ping_group_range', releasePingRange);
  const { target, env: targetEnv } = await startTarget(defer);
  log(`egress target namespace up (${took()})`);
  const listeners = await startListeners();
  defer('close listeners', () => listeners.close());
  let pg: Postgres | undefined;
  if (opts.postgres) {
    pg = await startPostgres(log);
    defer(`stop PostgreSQL and delete ${pg.dataDir}`, () => pg!.stop());
    log(`PostgreSQL accepting connections (${took()})`);
  }
  const env: Record<string, string> = {
    PATH: '/usr/bin:/bin',
    HOME: scratch,
    LANG: 'C.UTF-8',
    SCRATCH: scratch,
    PYTHONDONTWRITEBYTECODE: '1',
    TCP_PORT: String(listeners.tcpPort),
    UDP_PORT: String(listeners.udpPort),
    ALLOWED_UDP_PORT: String(listeners.allowedUdpPort),
    HARDLINK: hardlink ?? '',
    PSQL: pg?.psql ?? '/usr/bin/false',
    PG_PORT: String(pg?.port ?? 5432),
    ...targetEnv,
  };
  return { controller, cgroupDir: path.join(base, 'workload'), scratch, env, root, base, workloadCg: `/${name}/workload`, outsideDir: path.join(base, 'outside'), listeners, pg, hardlink, hardlinkSameInode, target };
}

/** The binaries the workload legitimately runs (its exec allowlist). */
export function workloadBinaries(lab: Lab): string[] {
  return [PYTHON, '/usr/bin/perl', process.execPath, '/usr/bin/env', '/usr/bin/id', '/usr/bin/true', lab.pg?.psql].filter((b): b is string => !!b && fs.existsSync(b));
}

/**
 * The workload's policy as YAML (so every run goes through the parser): never a shell, only its
 * own binaries, no nameless exec; egress only to PostgreSQL (v4 and v6 loopback) and one UDP port
 * (on 127.0.0.1 and a documentation address).
 */
export function workloadPolicyYaml(lab: Lab, o: { mode?: 'enforce' | 'log'; denyOnly?: boolean; extraUdpPort?: number; name?: string; rawSockets?: 'allow' | 'deny' } = {}): string {
  const pgPort = lab.pg?.port ?? 5432;
  const lines = [
    'policies:',
    `  - name: ${o.name ?? 'workload'}`,
    `    mode: ${o.mode ?? 'enforce'}`,
    '    select:',
    `      cgroup: ${lab.workloadCg}`,
    '    exec:',
    '      deny: [shells]',
  ];
  if (!o.denyOnly) {
    lines.push(`      allow: [${workloadBinaries(lab).join(', ')}]`, '      denyNameless: true');
  }
  lines.push(
    '    egress:',
    '      allow:',
    `        - { to: 127.0.0.1/32, ports: [${pgPort}], protocol: tcp }`,
    `        - { to: "::1", ports: [${pgPort}], protocol: tcp }`,
    `        - { to: 127.0.0.1, ports: [${[lab.listeners.allowedUdpPort, ...(o.extraUdpPort ? [o.extraUdpPort] : [])].join(', ')}], protocol: udp }`,
    // an address the source-routing attacks send to, allowed, while their packets go elsewhere
    `        - { to: "2001:db8::1", ports: [${lab.listeners.allowedUdpPort}], protocol: udp }`,
    ...(o.rawSockets ? [`      rawSockets: ${o.rawSockets}`] : []),
  );
  return `${lines.join('\n')}\n`;
}

export function workloadPolicy(lab: Lab, o: Parameters<typeof workloadPolicyYaml>[1] = {}): Policy[] {
  return parsePolicies(workloadPolicyYaml(lab, o), 'workload.yaml');
}

export { NOBODY, ATTACKS_DIR };
