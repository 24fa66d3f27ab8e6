// Where to send a backend's frames in L2 DSR: the egress interface (route lookup) and the
// next hop's MAC (neighbour table), asked of the kernel through iproute2's JSON output.
import net from 'node:net';
import { execa } from 'execa';
import { ValidationError } from './addr.ts';

export interface NextHop {
  dev: string;
  ifindex: number;
  srcMac: string;
  mac: string;
}

async function ipJson<T>(args: string[]): Promise<T> {
  const r = await execa('ip', ['-j', ...args], { reject: false });
  if (r.exitCode !== 0) throw new ValidationError(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout || '[]') as T;
}

async function neighbour(addr: string, dev: string): Promise<string | undefined> {
  const n = await ipJson<{ lladdr?: string; state?: string[] }[]>(['neigh', 'show', 'to', addr, 'dev', dev]);
  const e = n.find((x) => x.lladdr && !x.state?.includes('FAILED') && !x.state?.includes('INCOMPLETE'));
  return e?.lladdr;
}

/** Resolve a backend's next hop; a TCP connect attempt makes the kernel ARP/ND for it if needed. */
export async function resolveNextHop(addr: string, port: number, mac?: string): Promise<NextHop> {
  const routes = await ipJson<{ dev: string; gateway?: string }[]>(['route', 'get', addr]);
  const r = routes[0];
  if (!r?.dev) throw new ValidationError(`no route to backend ${addr}`);
  const links = await ipJson<{ ifindex: number; address: string }[]>(['link', 'show', 'dev', r.dev]);
  const link = links[0]!;
  const hop = r.gateway ?? addr;
  let lladdr = mac ?? (await neighbour(hop, r.dev));
  for (let i = 0; !lladdr && i < 10; i++) {
    await new Promise<void>((res) => {
      const s = net.connect({ host: addr, port, timeout: 100 });
      const done = () => { s.destroy(); res(); };
      s.on('connect', done).on('error', done).on('timeout', done);
    });
    lladdr = await neighbour(hop, r.dev);
    if (!lladdr) await new Promise((res) => setTimeout(res, 100));
  }
  if (!lladdr) throw new ValidationError(`cannot resolve the MAC of backend ${addr} on ${r.dev} (no neighbour entry): is it up? or give "mac"`);
  return { dev: r.dev, ifindex: link.ifindex, srcMac: link.address, mac: lladdr };
}
