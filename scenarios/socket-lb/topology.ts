// The socket-lb topology, shared by the scenario and the tests: one backend namespace ("srv") with
// NB backend addresses per family on its loopback (10.91.0.11…, fd91::11…) served by one echo
// process, and one client namespace per configuration (bpf, iptables, ipvs, …), each on its own
// veth to srv with a default route there. Separate client namespaces keep the alternatives apart:
// iptables rules and IPVS services are per namespace, so the BPF client's new connections never
// walk the iptables chains (as on a node that runs the socket LB instead of kube-proxy).
// The balanced workload runs in a cgroup2 directory of its own (the socket LB attaches there).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { createTopology, sweepStale, Topology, type VethEnd } from '../../lab/netns.ts';
import { OUT_DIR } from '../../bpf/build.ts';
import { cgroup2Root, createCgroup, joinCgroup, removeCgroup } from '../../common/cgroup.ts';
import { scaledTimeout } from '../../lab/timeouts.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PREFIX = 'sockl';
export const BACKEND_PORT = 8080;
export const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
export const CLIENT_PY = path.join(HERE, 'client.py');

export async function buildTool(name: 'echo' | 'connlat'): Promise<string> {
  const src = path.join(HERE, `${name}.c`);
  const bin = path.join(OUT_DIR, `socket-lb-${name}`);
  if (fs.existsSync(bin) && fs.statSync(bin).mtimeMs > fs.statSync(src).mtimeMs) return bin;
  fs.mkdirSync(OUT_DIR, { recursive: true });
  await execa('clang', ['-O2', '-o', `${bin}.${process.pid}.tmp`, src]);
  fs.renameSync(`${bin}.${process.pid}.tmp`, bin);
  return bin;
}

export interface SockLab {
  topo: Topology;
  /** namespaces of dead runs this one removed first (and what ran in them) */
  swept: string[];
  backends4: string[];
  backends6: string[];
  /** absolute cgroup directories: base (removed at dispose) and the balanced workload's */
  cgBase: string;
  cgClient: string;
  /** the same, relative to the cgroup2 root (what the svc config names) */
  cgClientRel: string;
  /** pid of the echo backend (its on-CPU time is part of a connection's cost) */
  echoPid: number;
  /** a further workload cgroup under the base (e.g. one per scale); returns the path relative to the root */
  cgroup(name: string): string;
  /** client namespace name of a configuration */
  clientNs(role: string): string;
  /** run a command in a client namespace, optionally inside the balanced cgroup */
  exec(role: string, cmd: string, args: string[], opts?: { cgroup?: boolean | string; input?: string; timeoutMs?: number }): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  dispose(): Promise<void>;
}

export async function buildLab(opts: { clients: string[]; nBackends?: number; tag?: string }): Promise<SockLab> {
  const swept = await sweepStale(PREFIX);
  const nb = opts.nBackends ?? 3;
  const topo = createTopology(PREFIX);
  const root = cgroup2Root();
  const cgBase = path.join(root, `ebpf-lab-${PREFIX}-${process.pid}${opts.tag ? `-${opts.tag}` : ''}`);
  const cgClient = path.join(cgBase, 'client');
  const dispose = async () => {
    await topo.dispose();
    // not swallowed: a cgroup left behind is named by the runner's cleanup report
    removeCgroup(cgBase, root);
  };
  try {
    createCgroup(cgClient);
    const backends4 = Array.from({ length: nb }, (_, i) => `10.91.0.${11 + i}`);
    const backends6 = Array.from({ length: nb }, (_, i) => `fd91::${(0x11 + i).toString(16)}`);
    // one `ip -batch` per namespace (a process costs ~0.4 s in a TCG guest)
    const addr = Topology.addrCmd;
    const srvCmds = [...backends4.map((a) => addr('lo', `${a}/32`)), ...backends6.map((a) => addr('lo', `${a}/128`))];
    await topo.create(['srv', ...opts.clients], opts.clients.map((role, i): [VethEnd, VethEnd] => [{ ns: role, dev: 'eth0' }, { ns: 'srv', dev: `v${i}` }]));
    for (const [i, role] of opts.clients.entries()) {
      srvCmds.push(addr(`v${i}`, `10.90.${i}.1/24`), addr(`v${i}`, `fd90:${i}::1/64`));
      await topo.batch(role, [
        addr('eth0', `10.90.${i}.2/24`),
        addr('eth0', `fd90:${i}::2/64`),
        ['route', 'add', 'default', 'via', `10.90.${i}.1`],
        ['route', 'add', 'default', 'via', `fd90:${i}::1`],
      ]);
    }
    await topo.batch('srv', srvCmds);
    const echo = await buildTool('echo');
    const srv = topo.spawn('srv', echo, [String(BACKEND_PORT), ...backends4, ...backends6]);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`echo server not ready within ${scaledTimeout(5000)} ms`)), scaledTimeout(5000));
      srv.stdout?.on('data', (d: Buffer) => {
        if (String(d).includes('ready')) {
          clearTimeout(t);
          resolve();
        }
      });
      void Promise.resolve(srv).then((r) => reject(new Error(`echo server exited: ${r.stderr}`)));
    });
    return {
      topo,
      swept,
      backends4,
      backends6,
      cgBase,
      cgClient,
      cgClientRel: `/${path.relative(root, cgClient)}`,
      echoPid: srv.pid!,
      cgroup(name) {
        createCgroup(path.join(cgBase, name));
        return `/${path.relative(root, path.join(cgBase, name))}`;
      },
      clientNs: (role) => topo.ns(role),
      async exec(role, cmd, args, o = {}) {
        const inner = ['nsenter', `--net=/run/netns/${topo.ns(role)}`, '--', cmd, ...args];
        // join the cgroup from inside the child before exec: every socket it makes is balanced
        const cg = o.cgroup === true ? cgClient : typeof o.cgroup === 'string' ? path.join(cgBase, o.cgroup) : null;
        const argv = cg ? ['sh', '-c', 'echo $$ > "$0" && exec "$@"', path.join(cg, 'cgroup.procs'), ...inner] : inner;
        const r = await execa(argv[0]!, argv.slice(1), { reject: false, input: o.input, timeout: o.timeoutMs ?? scaledTimeout(60_000) });
        return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
      },
      dispose,
    };
  } catch (e) {
    await dispose().catch(() => {});
    throw e;
  }
}

export { joinCgroup };
