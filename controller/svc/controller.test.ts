// The socket LB against the real kernel: a client in the balanced cgroup (in its own network
// namespace) calls services by VIP; the echo backend answers with the address it was reached on.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cgroup2Root } from '../../common/cgroup.ts';
import { SvcController, cleanupPins, pendingPath, pinDir, statePath } from './controller.ts';
import { formatAddr } from '../lb/addr.ts';
import { normService } from './config.ts';
import { buildLab, CLIENT_PY, PYTHON, PREFIX, type SockLab } from '../../scenarios/socket-lb/topology.ts';
import { listNamespaces } from '../../lab/netns.ts';
import { Link, liveCount, progInfoById } from '../libbpf/index.ts';
import { BPF_DIR, compile } from '../../bpf/build.ts';
import { labCli } from '../../lab/testing.ts';
import { collectOutput, untilReady } from '../../common/child.ts';

const [NODE, ...LAB] = await labCli();

const root = process.getuid?.() === 0;

/** ids of the socket LB's programs in the kernel (other helpers' programs come and go meanwhile) */
async function progIds(): Promise<Set<number>> {
  const r = await execa('bpftool', ['-j', 'prog', 'show'], { reject: false });
  return new Set((JSON.parse(String(r.stdout) || '[]') as { id: number; name?: string }[]).filter((p) => p.name?.startsWith('svc_')).map((p) => p.id));
}

interface Reply { reply?: string; peer?: string; error?: string }
const parse = (s: string): Reply[] => s.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Reply);

describe.skipIf(!root)('socket LB (real kernel)', () => {
  let lab: SockLab;
  let svc: SvcController;
  let progsBefore: Set<number>;
  const VIP4 = 'tcp://10.96.0.10:80';
  const VIP6 = 'tcp://[fd96::10]:80';
  const UVIP4 = 'udp://10.96.0.10:53';
  const UVIP6 = 'udp://[fd96::10]:53';
  const once = async (proto: string, addr: string, port: number, n = 1) => {
    const r = await lab.exec('c', PYTHON, [CLIENT_PY, 'once', proto, addr, String(port), String(n)], { cgroup: true });
    return parse(r.stdout);
  };

  beforeAll(async () => {
    progsBefore = await progIds();
    lab = await buildLab({ clients: ['c'], tag: 'test' });
    const be4 = lab.backends4.map((a) => `${a}:8080`);
    const be6 = lab.backends6.map((a) => `[${a}]:8080`);
    svc = await SvcController.start({
      cgroup: lab.cgClientRel,
      instance: `test-${process.pid}`,
      services: [
        { vip: VIP4, backends: be4 },
        { vip: VIP6, backends: be6, algorithm: 'random' },
        { vip: UVIP4, backends: be4, algorithm: 'random' },
        { vip: UVIP6, backends: be6 },
      ],
    });
  }, 120_000);

  afterAll(async () => {
    svc?.close();
    await lab?.dispose();
  });

  it('TCP over IPv4 and IPv6: every backend reached, the application sees the VIP', async () => {
    for (const [addr, bes, vipText] of [['10.96.0.10', lab.backends4, '10.96.0.10:80'], ['fd96::10', lab.backends6, '[fd96::10]:80']] as const) {
      const rs = await once('tcp', addr, 80, 30);
      expect(rs.filter((r) => r.error)).toEqual([]);
      const seen = new Set(rs.map((r) => r.reply));
      for (const b of bes) expect(seen, `backends reached through ${addr}`).toContain(b.includes(':') ? `[${b}]:8080` : `${b}:8080`);
      if (svc.model.getpeername) for (const r of rs) expect(r.peer).toBe(vipText);
    }
    expect(svc.stats().connect).toBeGreaterThanOrEqual(60);
  });

  it('UDP request/response through the rewrite, v4 and v6, unconnected and connected: replies come from the VIP', async () => {
    for (const [addr, vipText] of [['10.96.0.10', '10.96.0.10:53'], ['fd96::10', '[fd96::10]:53']] as const) {
      const un = await once('udp', addr, 53, 5);
      expect(un.filter((r) => r.error)).toEqual([]);
      for (const r of un) {
        expect(r.peer, 'recvfrom() source').toBe(vipText);
        expect(r.reply).toMatch(/:8080$/);
      }
      const con = await once('udpc', addr, 53, 5);
      expect(con.filter((r) => r.error)).toEqual([]);
      if (svc.model.getpeername) for (const r of con) expect(r.peer).toBe(vipText);
    }
    const st = svc.stats();
    expect(st.sendmsg).toBeGreaterThanOrEqual(10);
    expect(st.recvmsg).toBeGreaterThanOrEqual(10);
  });

  // An AF_INET6 socket naming ::ffff:<VIP> talks IPv4, but only connect6/sendmsg6/recvmsg6 see
  // it: TCP and connected UDP failed with ENETUNREACH (the v6 lookup missed, the VIP was dialled
  // as is), and unconnected UDP replies showed the backend (recvmsg6 missed the IPv4 reverse entry)
  it('an IPv6 socket calling an IPv4 service by ::ffff:VIP is balanced, and sees ::ffff:VIP as its peer', async () => {
    const mapped = (p: number) => `[::ffff:10.96.0.10]:${p}`;
    // one of each first: unbalanced, each would wait out its 3 s timeout
    for (const proto of ['tcp', 'udp', 'udpc']) expect((await once(proto, '::ffff:10.96.0.10', proto === 'tcp' ? 80 : 53))[0], proto).toMatchObject({ reply: expect.stringMatching(/^10\.91\.0\.\d+:8080$/) });
    const tcp = await once('tcp', '::ffff:10.96.0.10', 80, 30);
    expect(tcp.filter((r) => r.error)).toEqual([]);
    expect(new Set(tcp.map((r) => r.reply))).toEqual(new Set(lab.backends4.map((b) => `${b}:8080`)));
    if (svc.model.getpeername) for (const r of tcp) expect(r.peer, 'getpeername()').toBe(mapped(80));
    const un = await once('udp', '::ffff:10.96.0.10', 53, 10);
    expect(un.filter((r) => r.error)).toEqual([]);
    for (const r of un) {
      expect(r.reply).toMatch(/^10\.91\.0\.\d+:8080$/);
      expect(r.peer, 'recvfrom() source').toBe(mapped(53));
    }
    const con = await once('udpc', '::ffff:10.96.0.10', 53, 10);
    expect(con.filter((r) => r.error)).toEqual([]);
    for (const r of con) expect(r.reply).toMatch(/^10\.91\.0\.\d+:8080$/);
    if (svc.model.getpeername) for (const r of con) expect(r.peer, 'getpeername()').toBe(mapped(53));
  });

  it('backend churn: removing the backend of an established connection does not break it; new connections avoid it', async () => {
    const child = execa('sh', ['-c', 'echo $$ > "$0" && exec "$@"', `${lab.cgClient}/cgroup.procs`, 'nsenter', `--net=/run/netns/${lab.clientNs('c')}`, '--', PYTHON, CLIENT_PY, 'hold', '10.96.0.10', '80'], { reject: false });
    const lines: Reply[] = [];
    child.stdout!.on('data', (d: Buffer) => lines.push(...parse(String(d))));
    const next = async (n: number) => {
      child.stdin!.write('x\n');
      for (let i = 0; i < 100 && lines.length < n; i++) await new Promise((r) => setTimeout(r, 30));
      return lines[n - 1];
    };
    const first = await next(1);
    expect(first?.reply).toMatch(/^10\.91\.0\.\d+:8080$/);
    const held = first!.reply!;
    svc.removeBackend(VIP4, held);
    const after = await next(2);
    expect(after?.error).toBeUndefined();
    expect(after?.reply, 'the established connection still talks to its backend').toBe(held);
    const fresh = await once('tcp', '10.96.0.10', 80, 20);
    expect(fresh.filter((r) => r.error)).toEqual([]);
    expect(fresh.map((r) => r.reply)).not.toContain(held);
    // drain another: out of new connections too, and back with a weight
    const other = fresh[0]!.reply!;
    svc.drainBackend(VIP4, other);
    const drained = await once('tcp', '10.96.0.10', 80, 20);
    expect(new Set(drained.map((r) => r.reply)).size).toBe(1);
    expect(drained.map((r) => r.reply)).not.toContain(other);
    svc.setWeight(VIP4, other, 1);
    svc.addBackend(VIP4, held);
    const back = await once('tcp', '10.96.0.10', 80, 40);
    expect(new Set(back.map((r) => r.reply)).size).toBe(3);
    child.stdin!.end();
    await child;
  });

  // The reverse entry (socket, backend) → VIP outlived its service in the LRU: a socket that went
  // on to talk to that backend directly saw its replies come from a VIP that was gone
  it('once a service is removed, its reverse entries no longer rename the backend: a direct reply shows the backend', async () => {
    const script = [
      'import socket, sys',
      's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
      's.settimeout(3)',
      'def ask(addr):',
      '    s.sendto(b"x", addr)',
      '    d, a = s.recvfrom(100)',
      '    print(f"{a[0]}:{a[1]} {d.decode().strip()}", flush=True)',
      '    return d.decode().strip()',
      'be = ask(("10.96.0.10", 53))',
      'h, p = be.rsplit(":", 1)',
      'sys.stdin.readline()',
      'ask((h, int(p)))',
    ].join('\n');
    const child = execa('sh', ['-c', 'echo $$ > "$0" && exec "$@"', `${lab.cgClient}/cgroup.procs`, 'nsenter', `--net=/run/netns/${lab.clientNs('c')}`, '--', PYTHON, '-c', script], { reject: false });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += String(d)));
    const line = async (n: number) => {
      for (let i = 0; i < 200 && out.split('\n').filter(Boolean).length < n; i++) await new Promise((r) => setTimeout(r, 20));
      return out.split('\n').filter(Boolean)[n - 1];
    };
    try {
      const first = await line(1);
      expect(first).toMatch(/^10\.96\.0\.10:53 10\.91\.0\.\d+:8080$/); // through the VIP, shown as the VIP
      const backend = first!.split(' ')[1]!;
      svc.removeService(UVIP4);
      child.stdin!.write('\n');
      expect(await line(2), 'a reply from the backend itself, the service gone').toBe(`${backend} ${backend}`);
    } finally {
      child.stdin!.end();
      await child;
      if (!svc.list().some((x) => x.id === UVIP4)) svc.addService({ vip: UVIP4, backends: lab.backends4.map((a) => `${a}:8080`), algorithm: 'random' });
    }
  });

  // At maxBackends a swap needs an id no ring reads (the table's spare ids): connections made all
  // through swaps back and forth must each reach a backend of the old or the new set, none refused
  it('backend swaps at maxBackends while connections are made: every one reaches a listed backend', async () => {
    const [b0, b1, b2] = lab.backends4.map((a) => `${a}:8080`) as [string, string, string];
    const vip = 'tcp://10.96.0.30:80';
    const full = await SvcController.start({ cgroup: lab.cgClientRel, instance: `swap-${process.pid}`, maxBackends: 2, maxSockets: 4096, services: [{ vip, backends: [b0, b1] }] });
    try {
      // the reverse table (a peer read as the VIP) sized by the config, not the compiled 65,536
      expect(full.maps.revnat.meta.maxEntries).toBe(4096);
      const stats0 = full.stats();
      // enough connections that swaps interleave with them on a fast window too (300 took 120 ms
      // in one fresh-check: 5 swaps, and the test's own floor failed)
      const client = once('tcp', '10.96.0.30', 80, 1500);
      let done = false;
      void client.finally(() => (done = true));
      let swaps = 0;
      for (let on = b2; !done; on = on === b2 ? b1 : b2, swaps++) {
        full.applyServices([normService({ vip, backends: [b0, on] }, 'swap')], []);
        await new Promise((r) => setTimeout(r, 5));
      }
      const rs = await client;
      expect(swaps).toBeGreaterThan(5);
      expect(rs.filter((r) => r.error)).toEqual([]);
      expect(rs).toHaveLength(1500);
      for (const r of rs) expect([b0, b1, b2]).toContain(r.reply);
      const stats1 = full.stats();
      expect(stats1.noBackend - stats0.noBackend).toBe(0);
      expect(stats1.badSlot - stats0.badSlot).toBe(0);
      expect(Object.keys(full.model.backendIds)).toHaveLength(2);
    } finally {
      full.close();
    }
  });

  it('a change the kernel refuses half way leaves every service as it was', async () => {
    const before = svc.maps.services.lookupBatch();
    const modelBefore = JSON.stringify(svc.model);
    svc.failAfter = 1;
    expect(() =>
      svc.applyServices(
        [VIP4, VIP6].map((v) => ({ ...svc.model.services[v]!, ...parseSpec(v), backends: svc.model.services[v]!.backends.slice(0, 1).map(({ address, port, weight }) => ({ address, port, weight })) })),
        [],
      ),
    ).toThrow(/injected fault/);
    svc.failAfter = null;
    expect(svc.maps.services.lookupBatch()).toEqual(before);
    expect(JSON.stringify(svc.model)).toBe(modelBefore);
  });

  it('malformed changes are rejected with nothing changed', async () => {
    const before = svc.maps.services.lookupBatch();
    expect(() => svc.addBackend(VIP4, 'fd91::11')).toThrow(/not IPv4/);
    expect(() => svc.addBackend(VIP4, 'not-an-ip')).toThrow(/malformed/);
    expect(() => svc.addBackend(VIP4, `${lab.backends4[0]}:8080`)).toThrow(/^tcp:\/\/10\.96\.0\.10:80 already has backend 10\.91\.0\.\d+:8080$/);
    expect(() => svc.removeBackend('tcp://10.96.9.9:80', '10.91.0.11')).toThrow(/unknown service/);
    expect(() => svc.removeBackend(VIP4, '10.91.0.99:8080')).toThrow(/has no backend/);
    expect(() => svc.setWeight(VIP4, `${lab.backends4[0]}:8080`, -1)).toThrow(/weight/);
    expect(svc.maps.services.lookupBatch()).toEqual(before);
    await expect(SvcController.start({ cgroup: lab.cgClientRel, ringSize: 100, services: [] })).rejects.toThrow(/prime/);
    await expect(SvcController.start({ cgroup: '/no/such/cgroup', services: [] })).rejects.toThrow(/does not exist/);
    // not "create it (mkdir <root>/cgroup.procs)": a file, and a path into another hierarchy
    await expect(SvcController.start({ cgroup: '/cgroup.procs', services: [] })).rejects.toThrow(/is a file, not a cgroup/);
    if (cgroup2Root() !== '/sys/fs/cgroup') await expect(SvcController.start({ cgroup: '/sys/fs/cgroup/cpu', services: [] })).rejects.toThrow(/outside the cgroup2 hierarchy/);
    await expect(SvcController.start({ cgroup: lab.cgClientRel, services: [{ vip: 'tcp://10.96.0.1:80', backends: [] }] })).rejects.toThrow(/zero backends/);
    // a backend beyond the ring's slots would never be chosen: refused, nothing written
    const seven = await SvcController.start({ cgroup: lab.cgClientRel, instance: `ring7-${process.pid}`, ringSize: 7, services: [{ vip: 'tcp://10.96.0.60:80', algorithm: 'random', backends: Array.from({ length: 7 }, (_, i) => `10.91.7.${i + 1}:8080`) }] });
    try {
      const values = seven.maps.services.lookupBatch();
      expect(() => seven.addBackend('tcp://10.96.0.60:80', '10.91.7.8:8080', 0)).toThrow(/^tcp:\/\/10\.96\.0\.60:80: 8 backends but the instance's ringSize is 7: each backend needs a ring slot of its own; remove one, or start the instance again with a ringSize of at least 11$/);
      expect(seven.maps.services.lookupBatch()).toEqual(values);
      expect(seven.model.services['tcp://10.96.0.60:80']!.backends).toHaveLength(7);
    } finally {
      seven.close();
    }
  });

  it('pinned instance: changed from a second controller (what the CLI does), then stopped with nothing left', async () => {
    const instance = `pin-${process.pid}`;
    const d = await SvcController.start({ cgroup: lab.cgClientRel, instance, services: [{ vip: 'tcp://10.96.0.20:80', backends: [`${lab.backends4[0]}:8080`] }] }, { pin: true });
    try {
      const cli = SvcController.open(instance);
      cli.addBackend('tcp://10.96.0.20:80', `${lab.backends4[1]}:8080`);
      cli.addBackend('tcp://10.96.0.20:80', `${lab.backends4[2]}:8080`, 0); // listed, no new connections
      cli.close();
      const rs = await once('tcp', '10.96.0.20', 80, 30);
      expect(new Set(rs.map((r) => r.reply))).toEqual(new Set(lab.backends4.slice(0, 2).map((a) => `${a}:8080`)));
      // the same service on the same cgroup from another instance, pinned or not: refused before a load
      const progs = await progIds();
      for (const pin of [true, false]) {
        await expect(SvcController.start({ cgroup: lab.cgClientRel, instance: `pin2-${process.pid}`, services: [{ vip: 'tcp://10.96.0.20:80', backends: [`${lab.backends4[2]}:8080`] }] }, { pin })).rejects.toThrow(new RegExp(`^instance "${instance}" already balances tcp://10\\.96\\.0\\.20:80 on the same cgroup`));
      }
      expect(await progIds()).toEqual(progs);
      expect(fs.existsSync(pinDir(`pin2-${process.pid}`))).toBe(false);
    } finally {
      d.stop();
    }
    expect(fs.existsSync(pinDir(instance))).toBe(false);
    expect(fs.existsSync(statePath(instance))).toBe(false);
  });

  // after an instance was removed under it (the svc stop race), a controller's next change wrote
  // the maps nothing read any more and put the state file back: the instance looked alive
  it('a change through a controller whose instance was removed meanwhile is refused and does not bring its state file back', async () => {
    const instance = `gone-${process.pid}`;
    const d = await SvcController.start({ cgroup: lab.cgClientRel, instance, services: [{ vip: 'tcp://10.96.0.21:80', backends: [`${lab.backends4[0]}:8080`] }] }, { pin: true });
    try {
      const cli = SvcController.open(instance);
      try {
        cleanupPins(instance); // what svc stop does
        for (const c of [d, cli]) {
          expect(() => c.addBackend('tcp://10.96.0.21:80', `${lab.backends4[1]}:8080`)).toThrow(new RegExp(`^socket LB instance "${instance}" was removed \\(svc stop, or its state file deleted\\) while this controller had it open; nothing was written$`));
          expect(fs.existsSync(statePath(instance))).toBe(false);
        }
        expect(d.maps.services.lookupBatch()!.length).toBe(1); // its one service, unchanged
      } finally {
        cli.close();
      }
    } finally {
      d.stop();
    }
    expect(fs.existsSync(pinDir(instance))).toBe(false);
  });

  it('svc daemon --metrics-port: per-service and per-backend counters are exact; svc metrics agrees; a taken port fails with nothing left', async () => {
    const instance = `prom-${process.pid}`;
    const vip = 'tcp://10.96.0.40:80';
    const cfgFile = path.join(os.tmpdir(), `svc-prom-${process.pid}.json`);
    fs.writeFileSync(cfgFile, JSON.stringify({ cgroup: lab.cgClientRel, instance, services: [{ vip, algorithm: 'random', backends: lab.backends4.slice(0, 2).map((a) => `${a}:8080`) }] }));
    const cwd = new URL('../..', import.meta.url).pathname;
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const busy = (taken.address() as { port: number }).port;
    try {
      // a port in use: one line with the fix, and the instance it had started is gone again
      const bad = await execa(NODE, [...LAB, 'svc', 'daemon', '--config', cfgFile, '--metrics-port', String(busy)], { cwd, reject: false, env: { EBPF_LAB_DEBUG: '' } });
      expect(bad.exitCode).toBe(1);
      expect(String(bad.stderr)).toMatch(/^error: cannot serve metrics on 127\.0\.0\.1:\d+: EADDRINUSE\n {2}fix: port \d+ is taken: choose another --metrics-port\n?$/);
      expect(fs.existsSync(statePath(instance))).toBe(false);
      expect(fs.existsSync(pinDir(instance))).toBe(false);
      const port = await new Promise<number>((r) => taken.close(() => r(busy)));
      const d = execa(NODE, [...LAB, 'svc', 'daemon', '--config', cfgFile, '--metrics-port', String(port)], { cwd, reject: false, all: true, env: { EBPF_LAB_DEBUG: '' } });
      try {
        await untilReady(d, collectOutput([d.all]), /"ready":true/, 60_000, 'svc daemon');
        const scrape = async () => {
          const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
          const val = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
          return {
            text,
            service: val(/^svc_service_connections_total\{service="tcp:\/\/10\.96\.0\.40:80"\} (\d+)$/m),
            backend: (b: string) => val(new RegExp(`^svc_backend_connections_total\\{backend="${b.replace(/\./g, '\\.')}:8080"\\} (\\d+)$`, 'm')),
          };
        };
        const before = await scrape();
        expect(before.text).toMatch(/^svc_backends\{service="tcp:\/\/10\.96\.0\.40:80",state="active"\} 2$/m);
        const rs = await once('tcp', '10.96.0.40', 80, 17);
        expect(rs.filter((r) => r.error)).toEqual([]);
        const after = await scrape();
        expect(after.service - before.service).toBe(17);
        for (const b of lab.backends4.slice(0, 2)) expect(after.backend(b) - before.backend(b), b).toBe(rs.filter((r) => r.reply === `${b}:8080`).length);
        // a change made by the CLI from another process shows on the next scrape
        const cli = SvcController.open(instance);
        cli.drainBackend(vip, `${lab.backends4[0]}:8080`);
        cli.close();
        expect((await scrape()).text).toMatch(/^svc_backends\{service="tcp:\/\/10\.96\.0\.40:80",state="draining"\} 1$/m);
        const once2 = await execa(NODE, [...LAB, 'svc', 'metrics', '--instance', instance], { cwd, reject: false, env: { EBPF_LAB_DEBUG: '' } });
        expect(once2.exitCode).toBe(0);
        expect(String(once2.stdout)).toMatch(new RegExp(`^svc_service_connections_total\\{service="tcp://10\\.96\\.0\\.40:80"\\} ${after.service}$`, 'm'));
      } finally {
        d.kill('SIGTERM');
        await d;
      }
      expect(fs.existsSync(statePath(instance))).toBe(false);
      expect(fs.existsSync(pinDir(instance))).toBe(false);
    } finally {
      taken.close();
      fs.rmSync(cfgFile, { force: true });
    }
  }, 120_000);

  it('svc daemon killed with SIGKILL: the instance keeps balancing; the next daemon takes it over with its config, unless a setting fixed at load differs; a live one is refused; svc stop ends it through the daemon', async () => {
    const instance = `crash-${process.pid}`;
    const vip = 'tcp://10.96.0.50:80';
    const cfgFile = path.join(os.tmpdir(), `svc-crash-${process.pid}.json`);
    const write = (backends: string[], extra: object = {}) => fs.writeFileSync(cfgFile, JSON.stringify({ cgroup: lab.cgClientRel, instance, ...extra, services: [{ vip, algorithm: 'random', backends: backends.map((a) => `${a}:8080`) }] }));
    const cwd = new URL('../..', import.meta.url).pathname;
    const daemon = () => execa(NODE, [...LAB, 'svc', 'daemon', '--config', cfgFile], { cwd, reject: false, all: true, env: { EBPF_LAB_DEBUG: '' } });
    const ready = async (d: ReturnType<typeof daemon>) => {
      const out = collectOutput([d.all]);
      await untilReady(d, out, /"ready":true/, 60_000, 'svc daemon');
      return out();
    };
    const owner = () => (JSON.parse(fs.readFileSync(statePath(instance), 'utf8')) as { daemon?: { pid: number } }).daemon?.pid;
    const reached = async (n: number) => {
      const rs = await once('tcp', '10.96.0.50', 80, n);
      expect(rs.filter((r) => r.error)).toEqual([]);
      return new Set(rs.map((r) => r.reply));
    };
    const [b1, b2, b3] = lab.backends4 as [string, string, string];
    const live: ReturnType<typeof daemon>[] = [];
    try {
      write([b1, b2]);
      const d1 = daemon();
      live.push(d1);
      await ready(d1);
      expect(owner()).toBe(d1.pid);
      process.kill(d1.pid!, 'SIGKILL');
      await d1;
      // pinned links: the dead daemon's rewrite goes on (no health checks meanwhile)
      expect([...(await reached(8))].every((r) => r === `${b1}:8080` || r === `${b2}:8080`)).toBe(true);
      // svc start (no daemon) does not take over; it says who can
      const started = await execa(NODE, [...LAB, 'svc', 'start', '--config', cfgFile], { cwd, reject: false, env: { EBPF_LAB_DEBUG: '' } });
      expect(started.exitCode).toBe(1);
      expect(String(started.stderr)).toMatch(new RegExp(`^error: instance "${instance}" is still balancing, left by svc daemon pid ${d1.pid}, which died .*\\n {2}fix: pnpm lab svc daemon --config FILE --instance ${instance} takes it over without a gap; or stop it first`));
      // a ring size is fixed at load: refused, nothing changed, still balancing
      write([b1, b2], { ringSize: 13 });
      const bad = await daemon();
      expect(bad.exitCode).toBe(1);
      expect(String(bad.all)).toMatch(new RegExp(`^error: instance "${instance}" was left by svc daemon pid ${d1.pid}, which died, and cannot be taken over with this config: ringSize 251 → 13\\n {2}fix: pnpm lab svc stop --instance ${instance}, then start the daemon again`));
      expect(owner()).toBe(d1.pid);
      expect((await reached(4)).size).toBeGreaterThan(0);
      // a daemon with a changed backend list takes over and applies it
      write([b1, b2, b3]);
      const d2 = daemon();
      live.push(d2);
      expect(await ready(d2)).toMatch(new RegExp(`took over instance ${instance} from svc daemon pid ${d1.pid}, which died \\(its programs kept balancing\\): 1 service\\(s\\) changed`));
      expect(owner()).toBe(d2.pid);
      expect((await reached(24)).has(`${b3}:8080`)).toBe(true);
      // while it lives, another daemon for the instance is refused
      const third = await daemon();
      expect(third.exitCode).toBe(1);
      expect(String(third.all)).toMatch(new RegExp(`^error: instance "${instance}" is already running \\(its svc daemon, pid ${d2.pid}, is alive;`));
      // svc stop ends a live daemon's instance through the daemon, and returns when it is gone
      const stopped = await execa(NODE, [...LAB, 'svc', 'stop', '--instance', instance], { cwd, reject: false, env: { EBPF_LAB_DEBUG: '' } });
      expect(String(stopped.stderr)).toBe('');
      expect(String(stopped.stdout)).toBe(`stopped instance ${instance}: its svc daemon (pid ${d2.pid}) exited and removed it`);
      expect(stopped.exitCode).toBe(0);
      const end = await d2;
      expect(end.exitCode).toBe(0);
      expect(String(end.all)).toMatch(`[svc ${instance}] stopped: programs detached, pins and state removed`);
      expect(fs.existsSync(statePath(instance))).toBe(false);
      expect(fs.existsSync(pinDir(instance))).toBe(false);
    } finally {
      for (const d of live) {
        d.kill('SIGKILL');
        await d;
      }
      if (fs.existsSync(statePath(instance))) await execa(NODE, [...LAB, 'svc', 'stop', '--instance', instance], { cwd, reject: false });
      fs.rmSync(cfgFile, { force: true });
    }
  }, 180_000);

  // What a takeover does with a backend drained by `svc backend drain`: the config has no drain,
  // so applying it as a change must not undo one (a daemon restarted by its supervisor would send
  // new connections to a backend taken out for maintenance), as the XDP LB's restart keeps its
  // pinned drain flags. A weight the config gives anew ends draining, as `svc backend weight` does.
  // A takeover kept the dead daemon's programs along with its links: after an upgrade of the lab
  // the previous release's programs went on balancing until svc stop (a gap in balancing). The
  // previous release here is a -DLAB_VARIANT build (its svc_connect4 has one more instruction).
  it('a takeover swaps this build\'s programs into the pinned links where they differ (an upgrade), with no gap', async () => {
    const instance = `upg-${process.pid}`;
    const vip = 'tcp://10.96.0.52:80';
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'svc-upg-'));
    const variant = path.join(tmp, 'socket_lb.bpf.o'); // the skeleton checks the name
    const cfg = { cgroup: lab.cgClientRel, instance, services: [{ vip, algorithm: 'random' as const, backends: lab.backends4.slice(0, 2).map((a) => `${a}:8080`) }] };
    const links = () => fs.readdirSync(path.join(pinDir(instance), 'links')).sort().map((n) => {
      const l = Link.openPinned(path.join(pinDir(instance), 'links', n))!;
      try {
        const i = l.info();
        return { link: i.id, prog: progInfoById(i.progId)!.name, tag: progInfoById(i.progId)!.tag };
      } finally {
        l.close();
      }
    });
    let next: SvcController | undefined;
    try {
      await compile(path.join(BPF_DIR, 'socket_lb.bpf.c'), variant, ['LAB_VARIANT']);
      const prev = await SvcController.start(cfg, { pin: true, daemon: true, object: variant });
      prev.close(); // its pins stay: balancing goes on
      const before = links();
      // its daemon died: the state file names a process that is not there any more
      const st = JSON.parse(fs.readFileSync(statePath(instance), 'utf8'));
      fs.writeFileSync(statePath(instance), JSON.stringify({ ...st, daemon: { pid: st.daemon.pid, startTime: 'gone' } }));
      // connections all through the takeover: every one balanced
      const during = once('tcp', '10.96.0.52', 80, 200);
      const said: string[] = [];
      next = await SvcController.start(cfg, { pin: true, daemon: true, log: (x) => said.push(x) });
      const rs = await during;
      expect(rs.filter((r) => r.error)).toEqual([]);
      expect(new Set(rs.map((r) => r.reply))).toEqual(new Set(cfg.services[0]!.backends));
      expect(said.join('\n')).toMatch(/took over instance .*; 1 of its programs replaced by this build's \(svc_connect4; link update, no gap\)/);
      const after = links();
      // the same links (never detached), svc_connect4 now running a program of another tag
      expect(after.map((l) => l.link)).toEqual(before.map((l) => l.link));
      const changed = after.filter((a, i) => a.tag !== before[i]!.tag).map((a) => a.prog);
      expect(changed).toEqual(['svc_connect4']);
      expect(new Set((await once('tcp', '10.96.0.52', 80, 20)).map((r) => r.reply))).toEqual(new Set(cfg.services[0]!.backends));
    } finally {
      if (next) next.stop();
      else cleanupPins(instance);
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    expect(fs.existsSync(pinDir(instance))).toBe(false);
  }, 120_000);

  it('a takeover keeps a drained backend drained (and says so), also under a config without its weight; a new weight for it in the config ends draining', async () => {
    const instance = `drain-${process.pid}`;
    const vip = 'tcp://10.96.0.51:80';
    const cfgFile = path.join(os.tmpdir(), `svc-drain-${process.pid}.json`);
    const [b1, b2] = lab.backends4.map((a) => `${a}:8080`) as [string, string];
    /** w1 undefined: b1 without a weight (the default 1 is no new weight) */
    const write = (w1: number | undefined) => fs.writeFileSync(cfgFile, JSON.stringify({ cgroup: lab.cgClientRel, instance, services: [{ vip, algorithm: 'random', backends: [w1 === undefined ? b1 : { address: b1, weight: w1 }, b2] }] }));
    const cwd = new URL('../..', import.meta.url).pathname;
    const live: ReturnType<typeof execa>[] = [];
    const daemon = async () => {
      const d = execa(NODE, [...LAB, 'svc', 'daemon', '--config', cfgFile], { cwd, reject: false, all: true, env: { EBPF_LAB_DEBUG: '' } });
      live.push(d);
      const out = collectOutput([d.all]);
      await untilReady(d, out, /"ready":true/, 60_000, 'svc daemon');
      return { d, out: out() };
    };
    const kill = async (d: ReturnType<typeof execa>) => {
      d.kill('SIGKILL');
      await d;
    };
    const state = () => (JSON.parse(fs.readFileSync(statePath(instance), 'utf8')) as { services: Record<string, { backends: { address: string; state: string }[] }> }).services[vip]!.backends.map((b) => `${b.address} ${b.state}`);
    const reached = async () => new Set((await once('tcp', '10.96.0.51', 80, 24)).map((r) => r.reply ?? r.error));
    try {
      write(3);
      const first = await daemon();
      const drained = await execa(NODE, [...LAB, 'svc', 'backend', 'drain', vip, b1, '--instance', instance], { cwd, reject: false });
      expect(drained.exitCode, String(drained.stderr)).toBe(0);
      expect(await reached()).toEqual(new Set([b2]));
      await kill(first.d);
      // the file now gives b1 no weight: it once read as "weight 3 → 1" and ended the drain
      write(undefined);
      const second = await daemon();
      expect(second.out).toMatch(new RegExp(`took over instance ${instance} .*; kept draining: ${b1.replace(/\./g, '\\.')} of ${vip}`));
      expect(state()).toEqual([`${lab.backends4[0]} draining`, `${lab.backends4[1]} active`]);
      expect(await reached()).toEqual(new Set([b2]));
      await kill(second.d);
      write(2);
      const third = await daemon();
      expect(third.out).not.toMatch(/kept draining/);
      expect(state()).toEqual([`${lab.backends4[0]} active`, `${lab.backends4[1]} active`]);
      expect(await reached()).toEqual(new Set([b1, b2]));
    } finally {
      for (const d of live) await kill(d);
      if (fs.existsSync(statePath(instance))) await execa(NODE, [...LAB, 'svc', 'stop', '--instance', instance], { cwd, reject: false });
      fs.rmSync(cfgFile, { force: true });
    }
  }, 180_000);

  it('health checks (the XDP LB\'s) take a dead backend out of the ring and bring it back', async () => {
    const net = await import('node:net');
    const up = net.createServer((c) => c.end());
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
    const port = (up.address() as { port: number }).port;
    // a port that was free a moment ago: nothing listens there until the test opens it again
    const later = net.createServer((c) => c.end());
    await new Promise<void>((r) => later.listen(0, '127.0.0.1', () => r()));
    const dead = (later.address() as { port: number }).port;
    await new Promise((r) => later.close(r));
    const h = await SvcController.start({ cgroup: lab.cgClientRel, instance: `hc-${process.pid}`, healthCheck: { intervalMs: 50, timeoutMs: 200, fall: 2, rise: 1 }, services: [{ vip: 'tcp://10.96.0.30:80', healthCheck: true, backends: [`127.0.0.1:${port}`, `127.0.0.1:${dead}`] }] });
    try {
      h.enableHealthChecks();
      const states = () => h.model.services['tcp://10.96.0.30:80']!.backends.map((b) => `${b.port}:${b.state}`).sort();
      for (let i = 0; i < 500 && !states().includes(`${dead}:down`); i++) await new Promise((r) => setTimeout(r, 20)); // ~300 ms; 10 s for a loaded machine
      expect(states()).toEqual([`${dead}:down`, `${port}:active`].sort());
      const ring = h.maps.svc_ring.lookupBatch()!; // the whole array: only the live backend's id in the active half
      const s = h.model.services['tcp://10.96.0.30:80']!;
      const live = new Set(ring.filter(([k]) => (k as number) >= (s.index * 2 + s.half) * 251 && (k as number) < (s.index * 2 + s.half) * 251 + s.count).map(([, v]) => v));
      expect(live).toEqual(new Set([h.model.backendIds[`127.0.0.1:${port}`]]));
      await new Promise<void>((r) => later.listen(dead, '127.0.0.1', () => r()));
      for (let i = 0; i < 100 && !states().includes(`${dead}:active`); i++) await new Promise((r) => setTimeout(r, 20));
      expect(states()).toEqual([`${dead}:active`, `${port}:active`].sort());
      expect(h.model.services['tcp://10.96.0.30:80']!.count).toBe(251);
    } finally {
      h.close();
      up.close();
      later.close();
    }
  });

  // A daemon (health intervalMs 300, fall 2) never checked a backend added by `svc backend add`
  // from another shell: 15 s later a dead one was still active and given connections. Its watched
  // set followed only its own changes.
  it('health checks follow backends added and removed by another process (the CLI) within about an interval', async () => {
    const net = await import('node:net');
    const up = net.createServer((c) => c.end());
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
    const port = (up.address() as { port: number }).port;
    const dead = await closedPort();
    const instance = `hcsync-${process.pid}`;
    const vip = 'tcp://10.96.0.32:80';
    const d = await SvcController.start({ cgroup: lab.cgClientRel, instance, healthCheck: { intervalMs: 100, timeoutMs: 200, fall: 2, rise: 1 }, services: [{ vip, healthCheck: true, backends: [`127.0.0.1:${port}`] }] }, { pin: true });
    try {
      d.enableHealthChecks();
      const saved = () => (JSON.parse(fs.readFileSync(statePath(instance), 'utf8')) as { services: Record<string, { count: number; backends: { port: number; state: string }[] }> }).services[vip]!;
      const cli = SvcController.open(instance);
      cli.addBackend(vip, `127.0.0.1:${dead}`);
      cli.close();
      const t0 = Date.now();
      while (Date.now() - t0 < 12_000 && !saved().backends.some((b) => b.port === dead && b.state === 'down')) await new Promise((r) => setTimeout(r, 50));
      expect(saved().backends.map((b) => `${b.port}:${b.state}`).sort(), 'the added backend, checked by the daemon').toEqual([`${dead}:down`, `${port}:active`].sort());
      // fall 2 × 100 ms, plus up to one interval to notice the file: ~300 ms; the bug this catches
      // took over 15 s, so the bound leaves a loaded machine room (2 s was tight on the event loop)
      expect(Date.now() - t0).toBeLessThan(8000);
      expect(d.healthWatched()).toEqual([`${vip}|127.0.0.1:${dead}`, `${vip}|127.0.0.1:${port}`].sort());
      // removed from another process: no longer probed
      const cli2 = SvcController.open(instance);
      cli2.removeBackend(vip, `127.0.0.1:${dead}`);
      cli2.close();
      for (let i = 0; i < 50 && d.healthWatched().length !== 1; i++) await new Promise((r) => setTimeout(r, 20));
      expect(d.healthWatched()).toEqual([`${vip}|127.0.0.1:${port}`]);
    } finally {
      d.stop();
      up.close();
    }
    expect(fs.existsSync(statePath(instance))).toBe(false);
  });

  // A switch whose state was not written (a SIGKILL between the service write and the rename):
  // the model's "idle" half was the live one, and the next change rewrote the ring connects were
  // reading (review, session 56). The live half is now the services map's.
  it('a change after a switch whose state was lost writes its ring into the half no connect reads', async () => {
    const instance = `half-${process.pid}`;
    const vip = 'tcp://10.96.0.35:80';
    const d = await SvcController.start({ cgroup: lab.cgClientRel, instance, services: [{ vip, backends: ['10.0.35.1:80'] }] }, { pin: true });
    try {
      const liveHalf = (c: SvcController) => [...c.maps.services.entries()].map(([, v]) => (v as { half: number }).half)[0]!;
      const lost = fs.readFileSync(statePath(instance), 'utf8');
      d.addBackend(vip, '10.0.35.2:80');
      const h1 = liveHalf(d);
      expect(d.model.services[vip]!.half).toBe(h1);
      fs.writeFileSync(statePath(instance), lost); // the switch is in the maps, not in the state
      const cli = SvcController.open(instance);
      try {
        expect(cli.model.services[vip]!.half).toBe(1 - h1);
        cli.addBackend(vip, '10.0.35.3:80');
        expect(liveHalf(cli), 'the new ring went into the half connects were not reading').toBe(1 - h1);
        expect(cli.model.services[vip]!.half).toBe(1 - h1);
      } finally {
        cli.close();
      }
    } finally {
      d.stop();
    }
    expect(fs.existsSync(statePath(instance))).toBe(false);
  });

  // review, session 63: a change killed after its switch and before its state file left A's live
  // ring naming a backend id the state did not list; the next change gave that id to B's new
  // backend, and A's new connections on those slots went to B's backend
  it('a change killed before its state file was written is undone by the next: its backend ids are never another service\'s', async () => {
    const instance = `cut-${process.pid}`;
    const [A, B] = ['tcp://10.96.0.36:80', 'tcp://10.96.0.37:80'];
    const d = await SvcController.start({ cgroup: lab.cgClientRel, instance, services: [{ vip: A, backends: ['10.0.36.1:80'] }, { vip: B, backends: ['10.0.37.1:80'] }] }, { pin: true });
    /** the backends a service's live ring names, as the kernel's maps have them */
    const live = (c: SvcController, vip: string) => {
      const idx = c.model.services[vip]!.index;
      const v = [...c.maps.services.entries()].map(([, x]) => x as { index: number; half: number; count: number }).find((x) => x.index === idx)!;
      const base = (idx * 2 + v.half) * c.model.config.ringSize;
      const ids = new Set(Array.from({ length: v.count }, (_, i) => c.maps.svc_ring.get(base + i) as number));
      return [...ids].map((id) => { const b = c.maps.backends.get(id) as { addr: Uint8Array; family: number }; return formatAddr(b.addr, b.family); }).sort();
    };
    try {
      const before = fs.readFileSync(statePath(instance), 'utf8');
      d.addBackend(A, '10.0.36.2:80');
      expect(live(d, A)).toEqual(['10.0.36.1', '10.0.36.2']);
      // killed after the switch: its state file not written, its pending record (written before
      // its first map write) left
      fs.writeFileSync(statePath(instance), before);
      fs.writeFileSync(pendingPath(instance), JSON.stringify({ services: [A] }));
      const cli = SvcController.open(instance);
      try {
        cli.addBackend(B, '10.0.37.9:80');
        expect(live(cli, A)).toEqual(['10.0.36.1']); // what the state file lists for A
        expect(live(cli, B)).toEqual(['10.0.37.1', '10.0.37.9']);
        expect(fs.existsSync(pendingPath(instance))).toBe(false);
        // and a completed change leaves no record behind
        cli.addBackend(A, '10.0.36.3:80');
        expect(live(cli, A)).toEqual(['10.0.36.1', '10.0.36.3']);
        expect(fs.existsSync(pendingPath(instance))).toBe(false);
      } finally {
        cli.close();
      }
    } finally {
      d.stop();
    }
    expect(fs.existsSync(statePath(instance))).toBe(false);
  });

  // a second review: the repair put the old VIP back before it deleted the new one, which at
  // maxServices failed (E2BIG) in every later change
  it('a cut-short swap of one VIP for another at maxServices is undone by the next change', async () => {
    const instance = `cutfull-${process.pid}`;
    const [X, Y, Z] = ['tcp://10.96.0.38:80', 'tcp://10.96.0.39:80', 'tcp://10.96.0.40:80'];
    const d = await SvcController.start({ cgroup: lab.cgClientRel, instance, maxServices: 2, services: [{ vip: X, backends: ['10.0.38.1:80'] }, { vip: Z, backends: ['10.0.40.1:80'] }] }, { pin: true });
    try {
      const before = fs.readFileSync(statePath(instance), 'utf8');
      d.applyServices([normService({ vip: Y, backends: ['10.0.39.1:80'] }, 'swap')], [X]);
      fs.writeFileSync(statePath(instance), before);
      fs.writeFileSync(pendingPath(instance), JSON.stringify({ services: [X, Y] })); // its order: removed first
      const cli = SvcController.open(instance);
      try {
        cli.addBackend(Z, '10.0.40.2:80');
        const vips = [...cli.maps.services.entries()].map(([k]) => formatAddr((k as { addr: Uint8Array }).addr, 4)).sort();
        expect(vips).toEqual(['10.96.0.38', '10.96.0.40']);
        expect(fs.existsSync(pendingPath(instance))).toBe(false);
      } finally {
        cli.close();
      }
    } finally {
      d.stop();
    }
  });

  // A "down" the checks reported while the backend was draining was dropped (drain outranks it);
  // `backend weight` then made the backend active, and the checker, having told its news once,
  // never said it again: a dead backend back in the ring for good (review, session 56)
  it('a backend found dead while draining and then given a weight again goes down again, out of the ring', async () => {
    const net = await import('node:net');
    const up = net.createServer((c) => c.end());
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
    const port = (up.address() as { port: number }).port;
    const dead = await closedPort();
    const instance = `hcdrain-${process.pid}`;
    const vip = 'tcp://10.96.0.34:80';
    const d = await SvcController.start({ cgroup: lab.cgClientRel, instance, healthCheck: { intervalMs: 100, timeoutMs: 200, fall: 2, rise: 1 }, services: [{ vip, healthCheck: true, backends: [`127.0.0.1:${port}`, `127.0.0.1:${dead}`] }] }, { pin: true });
    try {
      const logs: string[] = [];
      d.enableHealthChecks((l) => logs.push(l));
      const saved = () => (JSON.parse(fs.readFileSync(statePath(instance), 'utf8')) as { services: Record<string, { backends: { port: number; state: string }[] }> }).services[vip]!;
      const stateOf = () => saved().backends.find((b) => b.port === dead)!.state;
      const until = async (want: string) => {
        for (const t0 = Date.now(); Date.now() - t0 < 5000 && stateOf() !== want; ) await new Promise((r) => setTimeout(r, 50));
        return stateOf();
      };
      // drained first, then its probe finds it dead: that report is dropped (drain outranks it)
      const cli = SvcController.open(instance);
      cli.drainBackend(vip, `127.0.0.1:${dead}`);
      cli.close();
      for (const t0 = Date.now(); Date.now() - t0 < 3000 && !logs.length; ) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 400)); // past fall × interval: the probe has said down
      expect(stateOf()).toBe('draining');
      // re-enabled from another shell: active for at most about an interval, then down again
      const cli2 = SvcController.open(instance);
      cli2.setWeight(vip, `127.0.0.1:${dead}`, 1);
      cli2.close();
      expect(await until('down'), logs.join('\n')).toBe('down');
      expect(logs.some((l) => /applied again: it was active/.test(l)), logs.join('\n')).toBe(true);
      // the live backend is untouched
      expect(saved().backends.find((b) => b.port === port)!.state).toBe('active');
    } finally {
      d.stop();
      up.close();
    }
    expect(fs.existsSync(statePath(instance))).toBe(false);
  });

  // Down is the health checks' to end: an apply turning a service's checks off kept its down
  // backends down, with nothing left to bring them back (seen in the XDP LB, fixed in both).
  it('an apply turning a service\'s health checks off brings its down backends back; one keeping them on does not', async () => {
    const dead = await closedPort();
    const instance = `hcoff-${process.pid}`;
    const vip = 'tcp://10.96.0.33:80';
    const svcOf = (healthCheck: boolean) => ({ ...parseSpec(vip), id: vip, algorithm: 'maglev' as const, healthCheck, backends: [{ address: '127.0.0.1', port: dead, weight: 1 }] });
    const d = await SvcController.start({ cgroup: lab.cgClientRel, instance, healthCheck: { intervalMs: 100, timeoutMs: 200, fall: 2, rise: 1 }, services: [{ vip, healthCheck: true, backends: [`127.0.0.1:${dead}`] }] }, { pin: true });
    try {
      d.enableHealthChecks();
      const state = () => d.model.services[vip]!.backends.map((b) => b.state);
      for (let i = 0; i < 100 && state().join() !== 'down'; i++) await new Promise((r) => setTimeout(r, 50));
      expect(state()).toEqual(['down']);
      d.applyServices([svcOf(true)], []);
      expect(state(), 'still checked: still down').toEqual(['down']);
      d.applyServices([svcOf(false)], []);
      expect(state(), 'no checks left to end it').toEqual(['active']);
      expect(d.healthWatched()).toEqual([]);
    } finally {
      d.stop();
    }
    expect(fs.existsSync(statePath(instance))).toBe(false);
  });

  it('leaves no programs, links, cgroups or namespaces behind', async () => {
    svc.close();
    await lab.dispose();
    expect(liveCount()).toBe(0);
    const now = await progIds();
    expect([...now].filter((id) => !progsBefore.has(id))).toEqual([]);
    expect(await listNamespaces(`${PREFIX}-${process.pid}-`)).toEqual([]);
    expect(fs.existsSync(lab.cgBase)).toBe(false);
  });
});

function parseSpec(v: string) {
  const m = /^(tcp|udp):\/\/\[?([^\]]+?)\]?:(\d+)$/.exec(v)!;
  return { protocol: m[1] as 'tcp' | 'udp', address: m[2]!, port: Number(m[3]), family: (m[2]!.includes(':') ? 6 : 4) as 4 | 6 };
}

/** a loopback TCP port nothing listens on (bound, then closed): a backend the health checks find down */
async function closedPort(): Promise<number> {
  const net = await import('node:net');
  const gone = net.createServer();
  await new Promise<void>((r) => gone.listen(0, '127.0.0.1', () => r()));
  const port = (gone.address() as { port: number }).port;
  await new Promise((r) => gone.close(r));
  return port;
}
