// The scenario's three-service chain on loopback, each service in its own cgroup:
//   Node frontend (node:http) → threaded Python http.server → nginx leaf
// plus the load generator (in the runner's process, outside every traced cgroup) and a garbage
// sender. Everything started here is stopped by close(): processes, cgroups, temp dirs.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { cgroup2Root, createCgroup, removeCgroup } from '../../common/cgroup.ts';
import { collectOutput, untilTrue } from '../../common/child.ts';
import { freePort } from '../../common/net.ts';
import { runTempDir } from '../../common/stale.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PYTHON = '/usr/bin/python3';
const NGINX = '/usr/sbin/nginx';

// join the cgroup, then exec: every syscall of the service happens inside it
const LAUNCHER = `import os,sys
open(sys.argv[1]+'/cgroup.procs','w').write(str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])`;


export interface ServiceProc {
  name: string;
  cgroup: string;
  port: number;
  proc: ResultPromise;
  output: () => string;
}

/** why the chain cannot start here (a binary it runs is missing), or null */
export function chainMissing(): string | null {
  const missing = [PYTHON, NGINX].filter((bin) => !fs.existsSync(bin));
  return missing.length ? `${missing.join(' and ')} missing — pnpm lab setup tracing` : null;
}

export class Chain {
  readonly services: ServiceProc[] = [];
  refusedPort = 0;
  private constructor(readonly cgRoot: string, readonly tmp: string) {}

  get frontend(): ServiceProc {
    return this.services[0]!;
  }

  static async start(timeoutMs: number): Promise<Chain> {
    const missing = chainMissing();
    if (missing) throw new Error(missing);
    const root = cgroup2Root();
    const c = new Chain(path.join(root, `ebpf-lab-tracing-${process.pid}`), runTempDir('tracing'));
    try {
      createCgroup(c.cgRoot);
      const [fport, mport, lport, refused] = [await freePort(), await freePort(), await freePort(), await freePort()];
      c.refusedPort = refused;
      // nginx leaf: static file (sendfile), a small API, an error route
      fs.mkdirSync(path.join(c.tmp, 'www'));
      fs.writeFileSync(path.join(c.tmp, 'www', 'static.txt'), 'x'.repeat(4096));
      fs.writeFileSync(path.join(c.tmp, 'nginx.conf'), `worker_processes 1;
daemon off;
pid ${c.tmp}/nginx.pid;
error_log ${c.tmp}/error.log warn;
user nobody nogroup;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path ${c.tmp}/body;
  proxy_temp_path ${c.tmp}/proxy;
  fastcgi_temp_path ${c.tmp}/fcgi;
  uwsgi_temp_path ${c.tmp}/uwsgi;
  scgi_temp_path ${c.tmp}/scgi;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:${lport};
    root ${c.tmp}/www;
    location /api/ { default_type text/plain; return 200 "leaf $uri\\n"; }
    location = /boom { return 503; }
  }
}
`);
      fs.chmodSync(c.tmp, 0o755);
      await c.spawn('leaf', lport, [NGINX, '-p', c.tmp, '-c', path.join(c.tmp, 'nginx.conf')], null, timeoutMs);
      await c.spawn('middle', mport, [PYTHON, '-u', path.join(HERE, 'middle.py'), String(mport), String(lport), String(refused)], 'READY', timeoutMs);
      await c.spawn('frontend', fport, [process.execPath, path.join(HERE, 'frontend.mjs')], 'READY', timeoutMs, { PORT: String(fport), MIDDLE: `127.0.0.1:${mport}` });
      // frontend first: the order services are listed in
      c.services.reverse();
      return c;
    } catch (e) {
      await c.close();
      throw e;
    }
  }

  private async spawn(name: string, port: number, argv: string[], ready: string | null, timeoutMs: number, env: Record<string, string> = {}): Promise<void> {
    const cg = path.join(this.cgRoot, name);
    createCgroup(cg);
    const proc = execa(PYTHON, ['-c', LAUNCHER, cg, ...argv], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, extendEnv: false, reject: false, buffer: false, stdin: 'ignore', all: true });
    const out = collectOutput([proc.all], 4000);
    this.services.push({ name, cgroup: cg, port, proc, output: out });
    await untilTrue(proc, out, () => (ready ? out().includes(ready) : canConnect(port)), timeoutMs, name);
  }

  async close(): Promise<void> {
    for (const s of this.services) {
      s.proc.kill('SIGTERM');
      const t = setTimeout(() => s.proc.kill('SIGKILL'), 3000);
      await s.proc.catch(() => {});
      clearTimeout(t);
    }
    // nginx workers are children of the master: kill whatever is left in the cgroups
    for (const s of this.services) {
      try {
        for (const pid of fs.readFileSync(path.join(s.cgroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await new Promise((r) => setTimeout(r, 100));
    try {
      removeCgroup(this.cgRoot);
    } catch {
      /* retried below */
      await new Promise((r) => setTimeout(r, 500));
      try {
        removeCgroup(this.cgRoot);
      } catch {
        /* left for the sweep */
      }
    }
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface GenRequest {
  path: string;
  method: string;
  status: number | null;
  error?: string;
  /** CLOCK_MONOTONIC ns, the clock the kernel's records use */
  startNs: bigint;
  endNs: bigint;
  localPort: number;
}

/** The load generator: `concurrency` keep-alive connections, each sending `paths` in turn. */
export async function generate(port: number, paths: string[], concurrency: number, signal?: AbortSignal): Promise<GenRequest[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const out: GenRequest[] = [];
  let next = 0;
  const worker = async () => {
    while (next < paths.length && !signal?.aborted) {
      const p = paths[next++]!;
      out.push(await once(port, p, agent));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return out;
}

function once(port: number, p: string, agent: http.Agent): Promise<GenRequest> {
  return new Promise((resolve) => {
    const startNs = process.hrtime.bigint();
    let localPort = 0;
    const req = http.get({ host: '127.0.0.1', port, path: p, agent }, (res) => {
      localPort = res.socket.localPort ?? 0;
      res.resume();
      res.on('end', () => resolve({ path: p, method: 'GET', status: res.statusCode ?? null, startNs, endNs: process.hrtime.bigint(), localPort }));
    });
    req.on('error', (e) => resolve({ path: p, method: 'GET', status: null, error: (e as NodeJS.ErrnoException).code ?? e.message, startNs, endNs: process.hrtime.bigint(), localPort }));
  });
}

/** send bytes that are not HTTP on a fresh connection; returns the local port used */
export function sendGarbage(port: number, bytes: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let lp = 0;
    s.on('connect', () => {
      lp = s.localPort ?? 0;
      s.write(bytes);
      setTimeout(() => s.end(), 50);
    });
    s.on('data', () => {});
    s.on('error', () => resolve(lp));
    s.on('close', () => resolve(lp));
    setTimeout(() => s.destroy(), 2000).unref();
  });
}
