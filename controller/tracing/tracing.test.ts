// The tracer against the real kernel: the scenario's chain (Node → Python → nginx, one cgroup
// each) traced by the real BPF object; span fields for requests this test makes, tuple links
// across services, thread links inside one, the bounded export queue against a real socket, and
// no leaked programs, links or cgroups afterwards.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bpfObjects, describeRoot, describeUnless, rootSkipReason } from '../../lab/testing.ts';
import { Chain, chainMissing, generate } from '../../scenarios/tracing/chain.ts';
import { Tracer, type TracerOptions } from './tracer.ts';
import { BoundedExporter, SpanConverter } from './export.ts';
import type { Span } from './spans.ts';
import { Jaeger, Zipkin, ensureJaeger, jaegerBuildRunning, jaegerPath, zipkinPath } from './backend.ts';
import { cgroup2Root, createCgroup, joinCgroup, removeCgroup } from '../../common/cgroup.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { KernelTracer, hasTracepoint } from './kernel.ts';

/** a Node server from source (it prints its port), for tests that select it by pid */
async function spawnServer(src: string): Promise<{ child: import('node:child_process').ChildProcess; port: number }> {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((res, rej) => {
    child.stdout!.once('data', (d: Buffer) => res(Number(d.toString().trim())));
    child.once('exit', () => rej(new Error('server exited')));
  });
  return { child, port };
}

/**
 * A Node server from source under a tracer (service 1, "raw"), its spans collected; the tracer
 * stops and the server is killed when `body` ends, however it ends. `connect` opens a connection
 * to the server and resolves once it is up.
 */
async function underTracer(src: string, opts: Omit<Partial<TracerOptions>, 'services' | 'onSpan'>, body: (t: { port: number; spans: Span[]; tracer: Tracer; connect: () => Promise<import('node:net').Socket> }) => Promise<void>): Promise<void> {
  const net = await import('node:net');
  const { child, port } = await spawnServer(src);
  const spans: Span[] = [];
  let tracer: Tracer | null = null;
  try {
    tracer = await Tracer.start({ services: [{ name: 'raw', pid: child.pid! }], graceMs: 50, ...opts, onSpan: (x) => spans.push(x) });
    const connect = async () => {
      const c = net.connect(port, '127.0.0.1');
      await new Promise((r) => c.once('connect', r));
      return c;
    };
    await body({ port, spans, tracer, connect });
  } finally {
    await tracer?.stop();
    child.kill('SIGKILL');
  }
}

// the chain's leaf and middle service are Debian's nginx and python3: without them there is no subject
const chainSkipReason = rootSkipReason ?? chainMissing();
const describeChain = (name: string, fn: () => void) => describeUnless(chainSkipReason, name, fn);

describeChain('tracing (real kernel)', () => {
  let chain: Chain;
  let tracer: Tracer;
  const spans: Span[] = [];
  let before: Awaited<ReturnType<typeof bpfObjects>>;

  beforeAll(async () => {
    before = await bpfObjects();
    chain = await Chain.start(15_000);
    tracer = await Tracer.start({ services: chain.services.map((s) => ({ name: s.name, cgroup: s.cgroup })), graceMs: 100, onSpan: (s) => spans.push(s) });
  }, 60_000);

  afterAll(async () => {
    await tracer?.stop();
    const cg = chain?.cgRoot;
    await chain?.close();
    const ours = (x: { name?: string }) => /^(sys_exit|sock_state)/.test(x.name ?? '');
    // a detached tp_btf program is freed after an RCU grace period, not at close: wait for it
    let after = await bpfObjects();
    for (let i = 0; i < 40 && after.progs.filter(ours).length > before.progs.filter(ours).length; i++) {
      await sleep(100);
      after = await bpfObjects();
    }
    expect(after.progs.filter(ours).map((p) => p.name), 'tracing programs left loaded').toEqual(before.progs.filter(ours).map((p) => p.name));
    expect(after.links.length, 'links leaked').toBeLessThanOrEqual(before.links.length);
    if (cg) expect(fs.existsSync(cg), `cgroup ${cg} left behind`).toBe(false);
  }, 30_000);

  async function settle(): Promise<void> {
    let last = -1;
    for (let i = 0; i < 40; i++) {
      await sleep(100);
      if (tracer.settled && spans.length === last) return;
      last = spans.length;
    }
  }

  it('a request this test makes becomes a frontend server span with the right fields', async () => {
    const [g] = await generate(chain.frontend.port, ['/local?probe=1', '/local?probe=2'], 1);
    await settle();
    const s = spans.find((x) => x.kind === 'server' && x.request?.target === '/local?probe=1');
    const next = spans.find((x) => x.kind === 'server' && x.request?.target === '/local?probe=2');
    expect(s, `spans: ${spans.map((x) => x.request?.target).join(', ')}`).toBeDefined();
    expect(s!.request!.method).toBe('GET');
    expect(s!.response!.status).toBe(200);
    expect(s!.service).toBe(1);
    expect(s!.local.port).toBe(chain.frontend.port);
    expect(s!.peer.port).toBe(g!.localPort);
    // bounds by causality: the server reads the request between the generator's send and its
    // receipt of the answer; the end is the server's write returning, which may follow that receipt
    // (a preempted server thread), but comes before the same single-threaded server reads the next
    expect(s!.startTs >= g!.startNs, 'span starts after the request was sent').toBe(true);
    expect(s!.startTs <= g!.endNs, 'span starts before the generator had the response').toBe(true);
    expect(next, 'the second request\'s span').toBeDefined();
    expect(s!.endTs <= next!.startTs, 'span ends before the next request is read').toBe(true);
    const r = new SpanConverter(new Map([[1, { name: 'frontend' }]])).convert({ ...s!, traceId: 'a'.repeat(32) });
    expect(r.attributes).toMatchObject({ 'http.request.method': 'GET', 'url.path': '/local', 'url.query': 'probe=1', 'http.response.status_code': 200, 'server.port': chain.frontend.port, 'client.port': g!.localPort });
    expect(r.resource.attributes['service.name']).toBe('frontend');
  });

  it('links across services by 4-tuple and inside the Python service by thread', async () => {
    await generate(chain.frontend.port, ['/api/t1', '/api/t2'], 1);
    await settle();
    for (const id of ['t1', 't2']) {
      const leaf = spans.find((x) => x.service === 3 && x.kind === 'server' && x.request?.target === `/api/${id}`);
      expect(leaf, `leaf span for ${id}`).toBeDefined();
      expect(leaf!.link).toBe('tuple');
      const midClient = leaf!.parent!;
      expect(midClient.service).toBe(2);
      expect(midClient.kind).toBe('client');
      // the tuple the client connected from is the one the leaf accepted
      expect(midClient.local.port).toBe(leaf!.peer.port);
      expect(midClient.link).toBe('thread');
      const midServer = midClient.parent!;
      expect(midServer.request!.target).toBe(`/mid/${id}`);
      expect(midServer.link).toBe('tuple');
      const front = midServer.parent!.parent!;
      expect(front.service).toBe(1);
      expect(front.request!.target).toBe(`/api/${id}`);
      expect(new Set([leaf, midClient, midServer, front].map((x) => x!.traceId)).size).toBe(1);
    }
  });
});

describeChain('sampling (real kernel)', () => {
  let chain: Chain;
  let tracer: Tracer;
  const spans: Span[] = [];

  beforeAll(async () => {
    chain = await Chain.start(15_000);
    // roots (requests from this untraced test process) practically never cross; calls between the
    // traced services always do
    tracer = await Tracer.start({ services: chain.services.map((s) => ({ name: s.name, cgroup: s.cgroup })), graceMs: 100, sampleRatio: 1e-6, onSpan: (s) => spans.push(s) });
  }, 60_000);

  afterAll(async () => {
    await tracer?.stop();
    await chain?.close();
  }, 30_000);

  it('a root request that does not cross leaves no span but is counted in the kernel; the calls below it are traced whole, their parent unlinked', async () => {
    const ids = ['s1', 's2', 's3', 's4', 's5'];
    const gen = await generate(chain.frontend.port, ids.map((i) => `/api/${i}`), 1);
    expect(gen.every((g) => g.status === 200), `statuses ${gen.map((g) => g.status)}`).toBe(true);
    let last = -1;
    for (let i = 0; i < 40; i++) {
      await sleep(100);
      if (tracer.settled && spans.length === last) break;
      last = spans.length;
    }
    expect(spans.filter((x) => x.service === 1 && x.kind === 'server'), 'frontend server spans (roots sampled out)').toHaveLength(0);
    for (const id of ids) {
      const leaf = spans.find((x) => x.service === 3 && x.kind === 'server' && x.request?.target === `/api/${id}`);
      expect(leaf, `leaf span for ${id}`).toBeDefined();
      expect(leaf!.link).toBe('tuple');
      const midServer = leaf!.parent!.parent!;
      expect(midServer.request!.target).toBe(`/mid/${id}`);
      expect(midServer.link).toBe('tuple');
      const frontClient = midServer.parent!;
      expect(frontClient.service).toBe(1);
      expect(frontClient.kind).toBe('client');
      // the frontend thread was serving a request that did not cross: its call is not given a parent
      expect(frontClient.link).toBe('ambiguous');
      expect(frontClient.parent).toBeUndefined();
    }
    const red = tracer.kernel.red();
    const count = (service: number, role: string, cls: number) => red.filter((r) => r.service === service && r.role === role && r.statusClass === cls).reduce((a, r) => a + r.counts.reduce((x, y) => x + y, 0), 0);
    expect(count(1, 'server', 2), `kernel RED ${JSON.stringify(red.map((r) => [r.service, r.role, r.statusClass, r.counts.reduce((x, y) => x + y, 0)]))}`).toBe(ids.length);
    expect(count(1, 'client', 2)).toBe(ids.length);
    expect(count(3, 'server', 2)).toBe(ids.length);
    // the in-kernel durations sit inside what the generator measured
    const fr = red.find((r) => r.service === 1 && r.role === 'server' && r.statusClass === 2)!;
    const maxGenNs = Math.max(...gen.map((g) => Number(g.endNs - g.startNs)));
    expect(fr.sumNs).toBeGreaterThan(0);
    expect(fr.sumNs / ids.length).toBeLessThanOrEqual(maxGenNs);
    const metrics = await tracer.registry.metrics();
    expect(metrics).toMatch(/ebpf_http_kernel_duration_seconds_count\{service="frontend",kind="server",status_class="2xx"\} 5/);
  }, 60_000);

  it('a refused connect made while serving a request that did not cross is marked ambiguous, not a root', async () => {
    // straight to the middle service: its request does not cross, its connect to a closed port is refused
    const middle = chain.services[1]!;
    const [g] = await generate(middle.port, ['/mid-refused'], 1);
    expect(g!.status).toBe(502);
    let refused: Span | undefined;
    for (let i = 0; i < 40 && !refused; i++) {
      await sleep(100);
      refused = spans.find((x) => x.service === 2 && x.kind === 'client' && x.errorType === 'connection_refused');
    }
    expect(refused, 'the refused connect as a client span').toBeDefined();
    expect(refused!.peer.port).toBe(chain.refusedPort);
    expect(refused!.link).toBe('ambiguous');
    expect(refused!.parent).toBeUndefined();
  }, 30_000);
});

describeRoot('payload hooks (real kernel)', () => {
  // sock (sock_{recv,send}_length, 6.3+) is the default where the kernel has it; older kernels get
  // sys_exit as tp_btf, and a kernel without BTF raw_tp: the same body reading the saved registers
  // through helpers. Each must see the same requests. With the standby copies attached (default
  // where the kernel runs tracepoint programs preemptibly, forced here) each event must still be
  // taken once: by the primary, or by the standby only where the primary was skipped.
  const SERVER = `require('node:http').createServer((q, s) => s.end('ok')).listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port) + '\\n'); });`;
  const noSockHook = !hasTracepoint('sock', 'sock_recv_length') || !hasTracepoint('sock', 'sock_send_length');
  for (const [name, hook, standby] of [['sock', 'sock', false], ['sock with the standby copies', 'sock', true], ['raw_tp', 'raw_tp', false], ['tp_btf', 'tp_btf', false], ['tp_btf with the standby copy', 'tp_btf', true]] as const) {
    const skip = hook === 'sock' && noSockHook ? ` [skipped: unsupported: sock:sock_recv_length on ${os.release()} (no such tracepoint in tracefs)]` : '';
    (skip ? it.skip : it)(`${name}: a request to a selected pid becomes one server span${skip}`, async () => {
      const { child, port } = await spawnServer(SERVER);
      const spans: Span[] = [];
      let tracer: Tracer | null = null;
      try {
        tracer = await Tracer.start({ services: [{ name: 'flavour', pid: child.pid! }], graceMs: 50, hook, standby, onSpan: (s) => spans.push(s) });
        expect(tracer.kernel.hook).toBe(hook);
        const sb = (a: string[]) => (standby ? [...a, ...a.map((x) => `${x} (standby)`)] : a);
        if (hook === 'sock') expect(tracer.kernel.mechanism.attached).toEqual(['sock:inet_sock_set_state', ...sb(['tp_btf:sock:sock_recv_length', 'tp_btf:sock:sock_send_length'])]);
        else expect(tracer.kernel.mechanism.attached).toEqual(['sock:inet_sock_set_state', ...sb([`${hook}:sys_exit`])]);
        const target = `/${hook}${standby ? '-standby' : ''}?x=1`;
        const [g] = await generate(port, [target, target], 1);
        expect(g!.status).toBe(200);
        for (let i = 0; i < 30 && spans.filter((x) => x.kind === 'server').length < 2; i++) await sleep(100);
        await sleep(200);
        const server = spans.filter((x) => x.kind === 'server');
        // a syscall taken twice would make a second request (or a broken one) out of the same bytes
        expect(server).toHaveLength(2);
        const s = server[0]!;
        expect(s.request?.target).toBe(target);
        expect(s.response!.status).toBe(200);
        expect(s.peer.port).toBe(g!.localPort);
        const m = tracer.snapshot().kernelMissed;
        const primaryMissed = (m.perProgram.sys_exit_btf ?? 0) + (m.perProgram.sock_recv ?? 0) + (m.perProgram.sock_send ?? 0);
        if (standby) expect(m.standbyTook).toBeLessThanOrEqual(primaryMissed);
        else expect(m.standbyTook).toBe(0);
      } finally {
        await tracer?.stop();
        child.kill('SIGKILL');
      }
    }, 30_000);
  }
});

describeRoot('ring wake-ups (real kernel)', () => {
  // The programs wake the consumer only once wake_bytes (an eighth of the ring) wait; a trickle is
  // drained on the consumer's own poll. With the ring's default flags the first record after the
  // consumer caught up would wake it: here a few requests' records must wait unannounced, and a
  // burst past the level must wake it.
  const SERVER = `require('node:http').createServer((q, s) => s.end('ok')).listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port) + '\\n'); });`;
  it('a few records do not wake the consumer; a ring an eighth full does', async () => {
    const { child, port } = await spawnServer(SERVER);
    let k: KernelTracer | null = null;
    try {
      // 64 KiB: the level is 8 KiB, about 20 data records of a short request or response
      k = await KernelTracer.start({ ringBytes: 1 << 16 });
      k.selectPid(child.pid!, 1);
      await generate(port, ['/one', '/two'], 1);
      await sleep(50);
      const few = k.ring.pending;
      expect(few).toBeGreaterThan(0);
      expect(few).toBeLessThan(1 << 13);
      expect(await k.ring.wait(0)).toBe(false);
      await generate(port, Array.from({ length: 40 }, (_, i) => `/burst/${i}?${'q'.repeat(200)}`), 1);
      expect(k.ring.pending).toBeGreaterThanOrEqual(1 << 13);
      expect(await k.ring.wait(1000)).toBe(true);
    } finally {
      k?.close();
      child.kill('SIGKILL');
    }
  }, 30_000);
});

describeRoot('selection by cgroup and by pid (real kernel)', () => {
  // The programs look only in the selector maps that hold entries (sel_kinds): a workload selected
  // by cgroup must stay traced beside one selected by pid, and removing the last pid must stop the
  // pid's spans without touching the cgroup's.
  const SERVER = `require('node:http').createServer((q, s) => s.end('ok')).listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port) + '\\n'); });`;
  it('both kinds at once, then the pid removed: only the cgroup\'s requests still become spans', async () => {
    const dir = `${cgroup2Root()}/ebpf-lab-test-sel-${process.pid}`;
    createCgroup(dir);
    const a = await spawnServer(SERVER);
    const b = await spawnServer(SERVER);
    const spans: Span[] = [];
    let tracer: Tracer | null = null;
    try {
      joinCgroup(dir, a.child.pid!);
      tracer = await Tracer.start({ services: [{ name: 'bycg', cgroup: dir }, { name: 'bypid', pid: b.child.pid! }], graceMs: 50, onSpan: (s) => spans.push(s) });
      const served = async (want: number) => {
        for (let i = 0; i < 30 && spans.filter((x) => x.kind === 'server').length < want; i++) await sleep(100);
        await sleep(200);
        return spans.filter((x) => x.kind === 'server').map((x) => `${x.service}${x.request?.target}`).sort();
      };
      await generate(a.port, ['/a1'], 1);
      await generate(b.port, ['/b1'], 1);
      // services are numbered from 1 in the order given: 1 = bycg, 2 = bypid
      expect(await served(2)).toEqual(['1/a1', '2/b1']);
      tracer.kernel.unselectPid(b.child.pid!);
      spans.length = 0;
      await generate(b.port, ['/b2'], 1);
      await generate(a.port, ['/a2'], 1);
      expect(await served(1)).toEqual(['1/a2']);
    } finally {
      await tracer?.stop();
      a.child.kill('SIGKILL');
      b.child.kill('SIGKILL');
      await sleep(100);
      removeCgroup(dir);
    }
  }, 30_000);
  // a server that forks its workers serves from them: selecting its master by pid traced nothing
  it('a selected pid\'s child processes are its service\'s: at start and forked later', async () => {
    const MASTER = `const { spawn } = require('node:child_process');
      const one = () => spawn(process.execPath, ['-e', ${JSON.stringify(SERVER)}], { stdio: ['ignore', 'pipe', 'inherit'] }).stdout.on('data', (d) => process.stdout.write(d));
      one(); process.on('SIGUSR2', one); setInterval(() => {}, 1e9);`;
    const m = await spawnServer(MASTER);
    const spans: Span[] = [];
    let tracer: Tracer | null = null;
    try {
      tracer = await Tracer.start({ services: [{ name: 'master', pid: m.child.pid! }], graceMs: 50, onSpan: (s) => spans.push(s) });
      await generate(m.port, ['/w1'], 1);
      // a worker forked after the start: traced from its first second on
      const second = new Promise<number>((res) => m.child.stdout!.once('data', (d: Buffer) => res(Number(String(d).trim()))));
      m.child.kill('SIGUSR2');
      const port2 = await second;
      await sleep(1500);
      await generate(port2, ['/w2'], 1);
      for (let i = 0; i < 30 && spans.filter((x) => x.kind === 'server').length < 2; i++) await sleep(100);
      const server = spans.filter((x) => x.kind === 'server');
      expect(server.map((x) => `${x.service}${x.request?.target}`).sort()).toEqual(['1/w1', '1/w2']);
      expect(server.every((x) => x.pid !== m.child.pid)).toBe(true);
    } finally {
      await tracer?.stop();
      spawnSync('pkill', ['-KILL', '-P', String(m.child.pid)]);
      m.child.kill('SIGKILL');
    }
  }, 30_000);
  // an exited master leaves its workers to init, and its pid to the next process that takes it
  it('a selected pid that exits is said once, and the workers it left are traced no more', async () => {
    const MASTER = `const { spawn } = require('node:child_process');
      spawn(process.execPath, ['-e', ${JSON.stringify(SERVER)}], { stdio: ['ignore', 'pipe', 'inherit'] }).stdout.on('data', (d) => process.stdout.write(d));
      setInterval(() => {}, 1e9);`;
    const m = await spawnServer(MASTER);
    const spans: Span[] = [];
    const notes: string[] = [];
    let tracer: Tracer | null = null;
    let worker = 0;
    try {
      tracer = await Tracer.start({ services: [{ name: 'master', pid: m.child.pid! }], graceMs: 50, onSpan: (s) => spans.push(s), onNote: (n) => notes.push(n) });
      // the worker's pid before its master goes: killed at the end whatever the spans say
      worker = Number(spawnSync('pgrep', ['-P', String(m.child.pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0]) || 0;
      await generate(m.port, ['/before'], 1);
      for (let i = 0; i < 30 && !spans.some((x) => x.kind === 'server'); i++) await sleep(100);
      expect(spans.find((x) => x.kind === 'server')?.pid).toBe(worker);
      m.child.kill('SIGKILL');
      for (let i = 0; i < 40 && !notes.some((n) => n.includes('has exited')); i++) await sleep(100);
      expect(notes.filter((n) => n.includes(`process ${m.child.pid} (--service master) has exited`))).toHaveLength(1);
      await generate(m.port, ['/after'], 1);
      await sleep(500);
      expect(spans.filter((x) => x.kind === 'server').map((x) => x.request?.target)).toEqual(['/before']);
      await sleep(1200);
      expect(notes.filter((n) => n.includes('has exited'))).toHaveLength(1);
    } finally {
      await tracer?.stop();
      if (worker) try { process.kill(worker, 'SIGKILL'); } catch { /* gone */ }
      m.child.kill('SIGKILL'); // its pid is not used after it died (pkill -P of a reused pid would hit another's children)
    }
  }, 30_000);
});

describeRoot('bounded export queue (real sockets)', () => {
  it('drops beyond the bound while the backend is down, and exports when it returns', async () => {
    // a port nobody listens on, then a real OTLP/HTTP endpoint on the same port
    const srv = http.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const ex = BoundedExporter.otlp(`http://127.0.0.1:${port}`, { maxQueue: 20, batch: 10, intervalMs: 50, timeoutMs: 500 });
    const conv = new SpanConverter(new Map([[1, { name: 'svc' }]]));
    const mk = (i: number) => conv.convert({
      kind: 'server', service: 1, pid: 1, tid: 1, comm: 'x', cgroupId: 1n, spanId: i.toString(16).padStart(16, '0'), traceId: 'b'.repeat(32), link: 'root',
      local: { addr: '127.0.0.1', port: 1 }, peer: { addr: '127.0.0.1', port: 2 }, startTs: 1n, endTs: 2n, done: true,
      request: { kind: 'request', method: 'GET', target: '/', version: '1.1', headers: new Map(), startTs: 1n, headEndTs: 1n, endTs: 1n, bodyBytes: 0, truncated: false, endInferred: false },
    });
    for (let i = 0; i < 100; i++) ex.add(mk(i));
    await sleep(1500);
    expect(ex.stats.highWater).toBeLessThanOrEqual(20);
    expect(ex.stats.dropped).toBeGreaterThanOrEqual(80);
    expect(ex.stats.failedBatches).toBeGreaterThan(0);
    let received = 0;
    const up = http.createServer((req, res) => {
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => {
        if (req.url === '/v1/traces' && req.headers['content-type'] === 'application/x-protobuf' && n > 0) received++;
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    await new Promise<void>((r) => up.listen(port, '127.0.0.1', () => r()));
    try {
      const until = Date.now() + 10_000;
      while (ex.stats.queued > 0 && Date.now() < until) await sleep(100);
      expect(ex.stats.exported).toBeGreaterThan(0);
      expect(ex.stats.exported + ex.stats.dropped).toBe(100);
      expect(received).toBeGreaterThan(0);
    } finally {
      await ex.close(1000);
      await new Promise<void>((r) => up.close(() => r()));
    }
  }, 30_000);

  // built, or being built by ./lab.sh test in the background (this file runs near the end then)
  const jaeger = fs.existsSync(jaegerPath()) || jaegerBuildRunning() !== null;
  it.skipIf(!jaeger)(`Jaeger accepts what the exporter sends${jaeger ? '' : ' (skipped: Jaeger not built — pnpm lab setup tracing, a Go build of 4-8 min cold on 2 cores)'}`, async () => {
    await ensureJaeger(() => {});
    const j = await Jaeger.create();
    try {
      await j.start(30_000);
      const ex = BoundedExporter.otlp(j.otlpUrl, { intervalMs: 50 });
      const conv = new SpanConverter(new Map([[1, { name: 'jaeger-probe' }]]));
      const traceId = 'c'.repeat(31) + '1';
      ex.add(conv.convert({
        kind: 'server', service: 1, pid: 1, tid: 1, comm: 'x', cgroupId: 1n, spanId: '1'.repeat(16), traceId, link: 'root',
        local: { addr: '127.0.0.1', port: 1 }, peer: { addr: '127.0.0.1', port: 2 }, startTs: process.hrtime.bigint() - 1000n, endTs: process.hrtime.bigint(), done: true,
        request: { kind: 'request', method: 'GET', target: '/x', version: '1.1', headers: new Map(), startTs: 1n, headEndTs: 1n, endTs: 1n, bodyBytes: 0, truncated: false, endInferred: false },
      }));
      await ex.close(5000);
      let t = null;
      for (let i = 0; i < 30 && !t; i++) {
        await sleep(200);
        t = await j.trace(traceId);
      }
      expect(t?.spans[0]?.operationName).toBe('GET /x');
    } finally {
      await j.close();
    }
  }, 20 * 60_000); // the background build may still be running

  it.skipIf(!fs.existsSync(zipkinPath()))(`Zipkin gets each span under its own service, parents kept${fs.existsSync(zipkinPath()) ? '' : ' (skipped: Zipkin not fetched — pnpm lab setup tracing)'}`, async () => {
    // what the JVM leaves in the system's temp dir: nothing (it once left a native-library dir per start)
    const tmpBefore = new Set(fs.readdirSync(os.tmpdir()));
    const z = await Zipkin.create();
    try {
      await z.start(120_000);
      const ex = BoundedExporter.zipkin(z.url, { intervalMs: 50 });
      const conv = new SpanConverter(new Map([[1, { name: 'zfront' }], [2, { name: 'zback' }]]));
      const traceId = 'd'.repeat(31) + '2';
      const base = {
        pid: 1, tid: 1, comm: 'x', cgroupId: 1n, traceId, local: { addr: '127.0.0.1', port: 1 }, peer: { addr: '127.0.0.1', port: 2 }, done: true,
        request: { kind: 'request' as const, method: 'GET', target: '/z', version: '1.1', headers: new Map(), startTs: 1n, headEndTs: 1n, endTs: 1n, bodyBytes: 0, truncated: false, endInferred: false },
      };
      const t0 = process.hrtime.bigint();
      const parent: Span = { ...base, kind: 'server', service: 1, spanId: '2'.repeat(16), link: 'root', startTs: t0 - 5000n, endTs: t0 };
      const child: Span = { ...base, kind: 'server', service: 2, spanId: '3'.repeat(16), link: 'tuple', parent, startTs: t0 - 3333n, endTs: t0 - 1111n };
      ex.add(conv.convert(parent));
      ex.add(conv.convert(child));
      await ex.close(5000);
      expect(ex.stats.exported).toBe(2);
      let t = null;
      for (let i = 0; i < 30 && !t?.length; i++) {
        await sleep(200);
        t = await z.trace(traceId);
      }
      const c = t?.find((x) => x.id === child.spanId);
      expect(c?.parentId).toBe(parent.spanId);
      expect(c?.localEndpoint?.serviceName).toBe('zback');
      expect(t?.find((x) => x.id === parent.spanId)?.localEndpoint?.serviceName).toBe('zfront');
    } finally {
      await z.close();
    }
    expect(fs.existsSync(z.dir)).toBe(false);
    expect(fs.readdirSync(os.tmpdir()).filter((f) => !tmpBefore.has(f) && !/^(vitest|ebpf-lab-)/.test(f) && /brotli|zipkin|hsperf|java/i.test(f))).toEqual([]);
  }, 180_000);
});

describeRoot('kernel-side filter (real kernel)', () => {
  // a raw TCP server (one write syscall per piece, with pauses) selected by pid: body
  // continuations and a non-HTTP connection must stay in the kernel, the spans must still be right
  const SERVER = `
const net = require('node:net');
const body = Buffer.alloc(100000, 120);
net.createServer((s) => {
  let buf = '';
  s.on('data', async (d) => {
    buf += d.toString('latin1');
    if (buf.startsWith('\\x16')) return;
    while (buf.includes('\\r\\n\\r\\n')) {
      const head = buf.slice(0, buf.indexOf('\\r\\n\\r\\n'));
      buf = buf.slice(buf.indexOf('\\r\\n\\r\\n') + 4);
      if (head.indexOf('\\r\\n') > 4096) {
        // a request line past the server's limit
        s.end('HTTP/1.1 414 URI Too Long\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n');
        return;
      } else if (head.startsWith('GET /text')) {
        // a text body in three writes, each beginning like words do (a token and a space, capitals even)
        const words = Buffer.from('OK so, here are some words. '.repeat(70), 'latin1');
        s.write('HTTP/1.1 200 OK\\r\\nContent-Length: ' + 3 * words.length + '\\r\\n\\r\\n');
        for (let i = 0; i < 3; i++) { await new Promise((r) => setTimeout(r, 30)); s.write(words); }
      } else if (head.startsWith('GET /big')) {
        s.write('HTTP/1.1 200 OK\\r\\nContent-Length: 300000\\r\\n\\r\\n');
        for (let i = 0; i < 3; i++) { await new Promise((r) => setTimeout(r, 30)); s.write(body); }
      } else s.write('HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok');
    }
  });
}).listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port) + '\\n'); });`;

  it('sends only the start of each message and nothing from non-HTTP sockets; body sizes and ends stay right', async () => {
    await underTracer(SERVER, {}, async ({ spans, tracer, connect }) => {
      const sock = await connect();
      let got = 0;
      const want = (n: number) => new Promise<void>((r) => {
        const on = (d: Buffer) => {
          got += d.length;
          if (got >= n) {
            sock.off('data', on);
            r();
          }
        };
        sock.on('data', on);
      });
      const bigHead = 'HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n'.length;
      const t0 = process.hrtime.bigint();
      sock.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
      await want(bigHead + 300000);
      const t1 = process.hrtime.bigint();
      got = 0;
      sock.write('GET /small HTTP/1.1\r\nHost: x\r\n\r\n');
      await want('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'.length);
      sock.end();
      // a non-HTTP connection (a TLS-like first byte), three writes
      const tls = await connect();
      for (let i = 0; i < 3; i++) {
        tls.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, i, 0, 0]));
        await sleep(20);
      }
      await sleep(100);
      tls.destroy();
      await sleep(300);
      const f = tracer.kernel.filtered();
      // every socket the filter saw was cleared at its close, the non-HTTP one too: a reused
      // struct sock address must start fresh (the sock hooks see no accept that would reset it)
      const left = [...tracer.kernel.skel.maps.conns.keys()].length;
      await tracer.stop();
      const big = spans.find((s) => s.kind === 'server' && s.request?.target === '/big');
      const small = spans.find((s) => s.kind === 'server' && s.request?.target === '/small');
      expect(big, `spans: ${spans.map((s) => s.request?.target).join(', ')}`).toBeDefined();
      expect(small).toBeDefined();
      expect(big!.response!.status).toBe(200);
      expect(big!.response!.bodyBytes).toBe(300000);
      // ended by the last body write (≥ 60 ms of pauses after the head), inside the client's view
      expect(big!.endTs - big!.startTs).toBeGreaterThan(50_000_000n);
      expect(big!.startTs >= t0 && big!.endTs <= t1).toBe(true);
      expect(small!.response!.bodyBytes).toBe(2);
      expect(f.continuations, 'body writes kept in the kernel').toBeGreaterThanOrEqual(2);
      expect(f.nonHttp, 'non-HTTP reads kept in the kernel').toBeGreaterThanOrEqual(1);
      expect(spans.filter((s) => s.kind === 'server').length).toBe(2);
      expect(left, 'filter state left after the connections closed').toBe(0);
    });
  }, 30_000);

  // sock: the kernel learns a server socket from its first bytes; sys_exit (tp_btf, raw_tp) from accept
  for (const hook of ['sock', 'tp_btf', 'raw_tp'] as const)
  it.skipIf(hook === 'sock' && !hasTracepoint('sock', 'sock_recv_length'))(`extension methods and requests whose first read is one byte (a fresh connection, after a resync) are spans and counted; an SSH banner is not HTTP (${hook})`, async () => {
    const RES = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
    await underTracer(SERVER, { hook }, async ({ spans, tracer, connect }) => {
      const open = async () => {
        const s = await connect();
        let got = 0;
        s.on('data', (d: Buffer) => (got += d.length));
        // each piece its own write, far enough apart that the server reads it alone
        // returns, per piece, the time before its write and after the write returned
        const ask = async (...pieces: string[]) => {
          const want = got + RES.length;
          const at: [bigint, bigint][] = [];
          for (const p of pieces) {
            const t0 = process.hrtime.bigint();
            await new Promise<void>((r) => s.write(p, () => r()));
            at.push([t0, process.hrtime.bigint()]);
            await sleep(40);
          }
          for (let i = 0; i < 100 && got < want; i++) await sleep(10);
          expect(got, 'the server answered').toBe(want);
          return at;
        };
        return { s, ask };
      };
      const dav = await open();
      await dav.ask('PROPFIND /dav/ HTTP/1.1\r\nHost: x\r\nDepth: 1\r\n\r\n');
      dav.s.end();
      const one = await open();
      const [, rest] = await one.ask('G', 'ET /one HTTP/1.1\r\nHost: x\r\n\r\n');
      // a head the parser refuses (the server answers it anyway), then one byte first again
      await one.ask('GET / HTTP/1.1\r\nBad Header\r\n\r\n');
      await one.ask('G', 'ET /two HTTP/1.1\r\nHost: x\r\n\r\n');
      one.s.end();
      // a text body's writes past the capture are body, not pipelined messages: kept in the kernel
      const text = await open();
      const textLen = 'HTTP/1.1 200 OK\r\nContent-Length: 5880\r\n\r\n'.length + 5880;
      text.s.write('GET /text HTTP/1.1\r\nHost: x\r\n\r\n');
      let got = 0;
      text.s.on('data', (d: Buffer) => (got += d.length));
      for (let i = 0; i < 200 && got < textLen; i++) await sleep(10);
      text.s.end();
      const ssh = await connect();
      ssh.write('SSH-2.0-OpenSSH_9.2p1\r\n');
      await sleep(50);
      ssh.write('SSH-2.0-again\r\n');
      await sleep(100);
      ssh.destroy();
      await sleep(300);
      const f = tracer.kernel.filtered();
      const red = tracer.kernel.red().filter((r) => r.service === 1 && r.role === 'server').reduce((n, r) => n + r.counts.reduce((a, b) => a + b, 0), 0);
      await tracer.stop();
      const server = spans.filter((s) => s.kind === 'server');
      expect.soft(server.map((s) => [s.request?.method, s.request?.target, s.response?.status, s.response?.bodyBytes])).toEqual([['PROPFIND', '/dav/', 200, 2], ['GET', '/one', 200, 2], ['GET', '/two', 200, 2], ['GET', '/text', 200, 5880]]);
      expect.soft(f.continuations, 'the text body\'s writes kept in the kernel').toBeGreaterThanOrEqual(2);
      // The span starts with the request's first byte, by causality, not timing (a 20 ms bound
      // failed under TCG, where the server read 'G' 28 ms late): the head ends in a later read
      // than the one it starts in, and that read came after the rest was written.
      const split = server.find((s) => s.request?.target === '/one');
      expect.soft(split && [split.startTs < split.request!.headEndTs, split.request!.headEndTs > rest![0]], 'the /one span from its first byte').toEqual([true, true]);
      expect.soft(red, 'requests in the kernel\'s RED: the four and the refused head').toBe(5);
      expect(f.nonHttp, 'the SSH connection\'s reads kept in the kernel').toBeGreaterThanOrEqual(2);
    });
  }, 30_000);

  it('a request line whose read begins inside its method (the read before it cut by the capture) is no request; the next one is', async () => {
    const RES = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
    await underTracer(SERVER, {}, async ({ spans, tracer, connect }) => {
      const s = await connect();
      let got = 0;
      s.on('data', (d: Buffer) => (got += d.length));
      // a head longer than the capture and the next request's first byte in one write, the rest
      // of that request in a write of its own (pipelined: the server reads 'ET /b …' alone)
      const pieces = [`GET /a HTTP/1.1\r\nHost: x\r\nCookie: ${'c'.repeat(400)}\r\n\r\nG`, 'ET /b HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /c HTTP/1.1\r\nHost: x\r\n\r\n'];
      for (const [i, p] of pieces.entries()) {
        await new Promise<void>((r) => s.write(p, () => r()));
        for (let k = 0; k < 100 && got < (i + 1) * RES.length; k++) await sleep(10);
        expect(got, 'the server answered').toBe((i + 1) * RES.length);
      }
      s.end();
      await sleep(300);
      await tracer.stop();
      const server = spans.filter((x) => x.kind === 'server');
      expect(server.map((x) => [x.request?.method, x.request?.target?.slice(0, 2), x.response?.status])).toEqual([['GET', '/a', 200], ['GET', '/c', 200]]);
    });
  }, 30_000);

  // review, session 63: the kernel took the body after a 100 Continue for a new request (counted
  // twice in RED, sampled again: sampled out, the upload was paired with the next request's answer)
  it('an upload with Expect: 100-continue is one request: the 100 is not its answer, its body no new request (RED and sampling)', async () => {
    const SERVER_100 = `
const net = require('node:net');
net.createServer((s) => {
  let buf = '', need = -1;
  s.on('data', (d) => {
    buf += d.toString('latin1');
    for (;;) {
      if (need < 0) {
        const i = buf.indexOf('\\r\\n\\r\\n');
        if (i < 0) return;
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        const m = /content-length: (\\d+)/i.exec(head);
        need = m ? Number(m[1]) : 0;
        if (/expect: 100-continue/i.test(head)) s.write('HTTP/1.1 100 Continue\\r\\n\\r\\n');
      }
      if (buf.length < need) return;
      buf = buf.slice(need);
      need = -1;
      s.write('HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok');
    }
  });
}).listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port) + '\\n'); });`;
    const exchange = async (connect: () => Promise<import('node:net').Socket>) => {
      const s = await connect();
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      const until = async (re: RegExp) => {
        for (let k = 0; k < 200 && !re.test(got); k++) await sleep(10);
        expect(got).toMatch(re);
      };
      s.write('POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
      await until(/100 Continue\r\n\r\n$/);
      s.write('hello');
      await until(/200 OK[^]*ok$/);
      s.write('GET /next HTTP/1.1\r\nHost: x\r\n\r\n');
      await until(/200 OK[^]*ok[^]*200 OK[^]*ok$/);
      // the body with the head: the server has it, and writes the 100 and its answer one after the other
      s.write('POST /eager HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello');
      await until(/200 OK[^]*ok[^]*200 OK[^]*ok[^]*100 Continue\r\n\r\nHTTP\/1\.1 200 OK[^]*ok$/);
      s.end();
      await sleep(300);
    };
    // every exchange crosses: the spans
    await underTracer(SERVER_100, {}, async ({ spans, tracer, connect }) => {
      await exchange(connect);
      await tracer.stop();
      expect(spans.filter((x) => x.kind === 'server').map((x) => [x.request?.method, x.request?.target, x.response?.status])).toEqual([['POST', '/up', 200], ['GET', '/next', 200], ['POST', '/eager', 200]]);
    });
    // roots sampled out: three requests in the kernel's RED, all answered 2xx, none 1xx
    await underTracer(SERVER_100, { sampleRatio: 1e-6 }, async ({ tracer, connect }) => {
      await exchange(connect);
      const red = tracer.kernel.red().filter((r) => r.role === 'server');
      const count = (cls: number) => red.filter((r) => r.statusClass === cls).reduce((a, r) => a + r.counts.reduce((x, y) => x + y, 0), 0);
      expect([count(0), count(1), count(2)], JSON.stringify(red.map((r) => [r.statusClass, r.counts.reduce((x, y) => x + y, 0)]))).toEqual([0, 0, 3]);
    });
  }, 60_000);

  it('103 Early Hints and 102 Processing before the answer are not the answer (RED and spans); 101 is; an interim and a final answer in one write end the request there', async () => {
    const SERVER_1XX = `
const net = require('node:net');
net.createServer((s) => {
  s.on('data', (d) => {
    const path = /^GET (\\S+)/.exec(d.toString('latin1'))?.[1];
    if (path === '/upgrade') return void s.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: x\\r\\nConnection: Upgrade\\r\\n\\r\\n');
    if (path === '/both') return void s.write('HTTP/1.1 100 Continue\\r\\n\\r\\nHTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok');
    s.write(path === '/hints' ? 'HTTP/1.1 103 Early Hints\\r\\nLink: </s.css>; rel=preload\\r\\n\\r\\n' : 'HTTP/1.1 102 Processing\\r\\n\\r\\n');
    setTimeout(() => s.write('HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok'), 30);
  });
}).listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port) + '\\n'); });`;
    const exchange = async (connect: () => Promise<import('node:net').Socket>) => {
      let got = '';
      const until = async (re: RegExp) => {
        for (let k = 0; k < 200 && !re.test(got); k++) await sleep(10);
        expect(got).toMatch(re);
      };
      const s = await connect();
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.write('GET /hints HTTP/1.1\r\nHost: x\r\n\r\n');
      await until(/103 Early Hints[^]*200 OK[^]*ok$/);
      s.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
      await until(/102 Processing\r\n\r\nHTTP\/1\.1 200 OK[^]*ok$/);
      // the interim and the final answer in one write: ended by it, not left open to the close
      s.write('GET /both HTTP/1.1\r\nHost: x\r\n\r\n');
      await until(/100 Continue\r\n\r\nHTTP\/1\.1 200 OK[^]*ok$/);
      s.end();
      const u = await connect();
      got = '';
      u.on('data', (d: Buffer) => (got += d.toString('latin1')));
      u.write('GET /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n');
      await until(/101 Switching Protocols[^]*\r\n\r\n$/);
      u.end();
      await sleep(300);
    };
    await underTracer(SERVER_1XX, {}, async ({ spans, tracer, connect }) => {
      await exchange(connect);
      await tracer.stop();
      expect(spans.filter((x) => x.kind === 'server').map((x) => [x.request?.target, x.response?.status]).sort()).toEqual([['/both', 200], ['/hints', 200], ['/slow', 200], ['/upgrade', 101]]);
    });
    await underTracer(SERVER_1XX, { sampleRatio: 1e-6 }, async ({ tracer, connect }) => {
      await exchange(connect);
      const red = tracer.kernel.red().filter((r) => r.role === 'server');
      const count = (cls: number) => red.filter((r) => r.statusClass === cls).reduce((a, r) => a + r.counts.reduce((x, y) => x + y, 0), 0);
      expect([count(0), count(1), count(2)], JSON.stringify(red.map((r) => [r.statusClass, r.counts.reduce((x, y) => x + y, 0)]))).toEqual([0, 1, 3]); // (left open, /both would count at the close, as no answer)
    });
  }, 60_000);

  it('a 414 to a request line longer than the capture, read in two pieces, is a span with the method, the line marked cut and no body size', async () => {
    await underTracer(SERVER, {}, async ({ spans, tracer, connect }) => {
      const s = await connect();
      let answer = '';
      s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      const closed = new Promise((r) => s.once('close', r));
      // the second piece a read of its own: past the capture, only counted in the kernel
      await new Promise<void>((r) => s.write(`GET /${'a'.repeat(5000)}`, () => r()));
      await sleep(50);
      s.end(`${'a'.repeat(3000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await closed;
      expect(answer).toMatch(/^HTTP\/1.1 414 /);
      await sleep(300);
      await tracer.stop();
      const server = spans.filter((x) => x.kind === 'server');
      expect(server.map((x) => [x.request?.method, x.request?.targetTruncated, x.response?.status])).toEqual([['GET', true, 414]]);
      const r = new SpanConverter(new Map([[1, { name: 'raw' }]])).convert(server[0]!);
      expect(r.attributes).toMatchObject({ 'http.request.method': 'GET', 'http.response.status_code': 414, 'ebpf.url.truncated': true });
      expect(r.attributes).not.toHaveProperty('http.request.body.size');
    });
  }, 30_000);

  it('a response the client has already closed leaves no socket state behind (a reused address starts fresh)', async () => {
    const net = await import('node:net');
    // The server answers 150 ms late; the client has closed by then, so that write is answered with
    // a reset, which the kernel handles at the end of the same send: the socket is closed (its state
    // cleared) before the send hook runs (allowHalfOpen: the server must not end its side at the
    // client's FIN, Node's default, which closes the socket before the write). Tracked again there, it was never cleared, and the next
    // socket at its address inherited it (an untraced client's connection then crossed always).
    const LATE = `require('node:net').createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {});
  s.once('data', () => setTimeout(() => { s.write('HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok'); setTimeout(() => s.destroy(), 100); }, 150));
}).listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port) + '\\n'); });`;
    const { child, port } = await spawnServer(LATE);
    let tracer: Tracer | null = null;
    try {
      tracer = await Tracer.start({ services: [{ name: 'late', pid: child.pid! }], sampleRatio: 0.5, graceMs: 50 });
      for (let i = 0; i < 5; i++) {
        const c = net.connect(port, '127.0.0.1');
        await new Promise((r) => c.once('connect', r));
        c.write('GET /late HTTP/1.1\r\nHost: x\r\n\r\n');
        await sleep(30);
        c.destroy();
      }
      await sleep(700);
      const conns = [...tracer.kernel.skel.maps.conns.keys()].length;
      const tracked = [...tracer.kernel.skel.maps.tracked.keys()].length;
      expect(conns, 'connection state left after the resets').toBe(0);
      expect(tracked, 'sockets still tracked after the resets').toBe(0);
    } finally {
      await tracer?.stop();
      child.kill('SIGKILL');
    }
  }, 30_000);
});
