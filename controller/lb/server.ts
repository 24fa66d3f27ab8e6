// Admin HTTP API. Served on a unix socket (reachable from any network namespace, guarded by
// file permissions) and optionally on TCP for Prometheus. JSON in, JSON out; validation errors
// come back as 400/404/409 with the message, and change nothing.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { ValidationError } from './addr.ts';
import { parseListen, validateConfig, validateConfigFile, type Forwarding, type LbConfig } from './config.ts';
import type { LbController } from './controller.ts';
import { lbRegistry } from './metrics.ts';
import { rebindingHost } from '../../common/metrics-http.ts';
import { writeFileAtomic } from '../../common/state-file.ts';
import { procStart } from '../../common/host.ts';

export const SOCKET_DIR = '/run/ebpf-lab';
export function socketPath(instance: string): string {
  return path.join(SOCKET_DIR, `lb-${instance}.sock`);
}
/**
 * Where a daemon of this instance pinned (its config's pinRoot/instance), written at its start:
 * `lb stop --purge` with the daemon dead finds pins under a pinRoot other than the default without
 * being told. /run is cleared on reboot like the bpffs, so a record never outlives its pins.
 */
export function pinsRecordPath(instance: string): string {
  return path.join(SOCKET_DIR, `lb-${instance}.pins`);
}
/**
 * The pin directories where a start of this instance finished (VIPs written, XDP attached), the
 * latest first: one line each. Pins at a directory not listed are a start cut short. A list, not
 * the last one only: an instance moved between pinRoots and back found its finished pins taken for
 * a start cut short, and its runtime changes overwritten by the config.
 */
export function finishedPinDirs(instance: string): string[] {
  try {
    return fs.readFileSync(pinsRecordPath(instance), 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
  } catch {
    return [];
  }
}
/** record dir as finished (first), or drop it; the file goes with its last line */
export function recordPinDir(instance: string, dir: string, finished: boolean): void {
  const rest = finishedPinDirs(instance).filter((d) => d !== dir);
  const lines = finished ? [dir, ...rest] : rest;
  if (!lines.length) return void fs.rmSync(pinsRecordPath(instance), { force: true });
  fs.mkdirSync(SOCKET_DIR, { recursive: true });
  writeFileAtomic(pinsRecordPath(instance), `${lines.join('\n')}\n`);
}
/** held by an instance's daemon from before it opens the pins until it exits (common/lockfile.ts) */
export function daemonLockPath(instance: string): string {
  return path.join(SOCKET_DIR, `lb-${instance}.lock`);
}

/**
 * the request's JSON object; with `known`, a key outside it is a 400, as in a config file (a
 * misspelt "wieght" was dropped and the backend got weight 1; "healthcheck": false a checked VIP)
 */
async function body(req: http.IncomingMessage, known?: string[]): Promise<Record<string, unknown>> {
  const b = await readBody(req);
  if (known) {
    const k = Object.keys(b).find((x) => !known.includes(x));
    if (k !== undefined) throw new ValidationError(`unknown key "${k}" (known: ${known.join(', ')})`);
  }
  return b;
}

async function readBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > 1 << 20) throw new ValidationError('request body too large');
    chunks.push(c as Buffer);
  }
  if (!n) return {};
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (!v || typeof v !== 'object') throw new Error('not an object');
    return v;
  } catch (e) {
    throw new ValidationError(`malformed JSON body: ${(e as Error).message}`);
  }
}

const str = (b: Record<string, unknown>, k: string): string => {
  if (typeof b[k] !== 'string') throw new ValidationError(`"${k}" (string) is required`);
  return b[k] as string;
};

export interface AdminServer {
  close(): Promise<void>;
  /** resolves when a client asked for shutdown */
  shutdown: Promise<{ purge: boolean }>;
}

export async function serveAdmin(c: LbController, opts: { socket: string; listen?: string }): Promise<AdminServer> {
  const reg = lbRegistry(c);
  let requestShutdown!: (v: { purge: boolean }) => void;
  const shutdown = new Promise<{ purge: boolean }>((r) => (requestShutdown = r));
  const handler = async (req: http.IncomingMessage, res: http.ServerResponse, tcp: boolean) => {
    const url = new URL(req.url ?? '/', 'http://lb');
    const route = `${req.method} ${url.pathname}`;
    const send = (status: number, v: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? Number(x) : x), 1)}\n`);
    };
    // The TCP listener is read-only. The unix socket is root's (0600); on TCP any local user, a
    // web page in the operator's browser (a form POST needs no preflight) or, bound wider, anyone
    // on the network could add backends, read files as root through apply's "file", or purge.
    // A name other than an address or localhost in Host is a DNS-rebinding page reading it.
    if (tcp) {
      // refused unread: the connection is not reused for a next request behind an unread body
      const refuse = (v: { error: string; fix: string }) => (res.setHeader('connection', 'close'), send(403, v));
      if (req.method !== 'GET') return refuse( { error: `${route}: the TCP listener is read-only (metrics and GET queries)`, fix: 'make changes through the admin socket as root: pnpm lab lb … --instance NAME (or --socket PATH)' });
      const rebound = rebindingHost(req);
      if (rebound) return refuse({ error: rebound, fix: `use the address the daemon listens on: http://${opts.listen}` });
    }
    try {
      switch (route) {
        case 'GET /metrics':
          res.writeHead(200, { 'content-type': reg.contentType });
          res.end(await reg.metrics());
          return;
        case 'GET /state':
          return send(200, c.state());
        case 'GET /ring':
          return send(200, c.ring(url.searchParams.get('vip') ?? ''));
        case 'GET /stats':
          return send(200, { global: Object.fromEntries(Object.entries(c.dp.globalStats()).map(([k, v]) => [k, Number(v)])), prog: c.dp.prog.info(), mapMemoryBytes: c.dp.mapMemory(), controllerRssBytes: process.memoryUsage().rss }, );
        case 'POST /vips': {
          const b = await body(req, ['vip', 'backends', 'healthCheck', 'forwarding']);
          const v = await c.addVip({ vip: str(b, 'vip'), backends: (b.backends as never) ?? [], healthCheck: b.healthCheck as boolean | undefined, ...(b.forwarding !== undefined ? { forwarding: b.forwarding as Forwarding } : {}) });
          return send(201, { vip: v.id, slot: v.slot });
        }
        case 'DELETE /vips': {
          const b = await body(req, ['vip']);
          await c.removeVip(str(b, 'vip'));
          return send(200, { ok: true });
        }
        case 'POST /backends': {
          const b = await body(req, ['vip', 'address', 'port', 'weight', 'mac', 'egress']);
          const be = await c.addBackend(str(b, 'vip'), { address: str(b, 'address'), ...(b.port !== undefined ? { port: b.port as number } : {}), ...(b.weight !== undefined ? { weight: b.weight as number } : {}), ...(b.mac !== undefined ? { mac: b.mac as string } : {}), ...(b.egress !== undefined ? { egress: b.egress as string } : {}) });
          return send(201, be);
        }
        case 'DELETE /backends': {
          const b = await body(req, ['vip', 'address']);
          await c.removeBackend(str(b, 'vip'), str(b, 'address'));
          return send(200, { ok: true });
        }
        case 'POST /backends/drain': {
          const b = await body(req, ['vip', 'address']);
          return send(200, await c.drainBackend(str(b, 'vip'), str(b, 'address')));
        }
        case 'POST /backends/weight': {
          const b = await body(req, ['vip', 'address', 'weight']);
          if (typeof b.weight !== 'number') throw new ValidationError('"weight" (number) is required');
          return send(200, await c.setWeight(str(b, 'vip'), str(b, 'address'), b.weight));
        }
        case 'POST /apply': {
          const b = await body(req);
          const run = c.startSettings();
          const plain = (x: unknown): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x);
          // A file means what `lb daemon --config` of it would run: a start setting it leaves out
          // is its default, and applyConfig refuses it if that is not what runs. Two exceptions
          // name the target rather than a setting: without `interface` or `instance` the file is
          // for the daemon it was sent to.
          const ofFile = (cfg: LbConfig): LbConfig => (plain(cfg) ? { ...cfg, interface: cfg.interface ?? run.interface, instance: cfg.instance ?? run.instance } : cfg);
          // A JSON body (API clients, the bench) sends what it changes: what it leaves out is the running value.
          const ofBody = (cfg: Record<string, unknown>): LbConfig => ({
            interface: run.interface, instance: run.instance, pinRoot: run.pinRoot, ringSize: run.ringSize, conntrackEntries: run.conntrackEntries,
            backendTableSize: run.backendTableSize, xdpMode: run.xdpMode, healthCheck: run.health, tunnelSource: run.tunnelSource, icmpTooBig: run.icmpTooBig,
            ...(run.listen !== undefined ? { listen: run.listen } : {}), ...cfg,
          } as LbConfig);
          if (typeof b.file === 'string') return send(200, await c.applyConfig(validateConfigFile(b.file, ofFile).norm, b.file));
          return send(200, await c.applyConfig(validateConfig(ofBody(b))));
        }
        case 'POST /shutdown': {
          const b = await body(req, ['purge']);
          if (b.purge !== undefined && typeof b.purge !== 'boolean') throw new ValidationError('"purge" must be true or false');
          send(200, { ok: true, pid: process.pid, startTime: procStart(process.pid) }); // the client waits for this process to exit
          requestShutdown({ purge: b.purge === true });
          return;
        }
        default:
          return send(404, { error: `no route ${route}` });
      }
    } catch (e) {
      if (e instanceof ValidationError) return send(e.status, { error: e.message, ...(e.fix ? { fix: e.fix } : {}) });
      return send(500, { error: (e as Error).message });
    }
  };
  const servers: http.Server[] = [];
  fs.mkdirSync(path.dirname(opts.socket), { recursive: true });
  fs.rmSync(opts.socket, { force: true });
  const unix = http.createServer((q, r) => void handler(q, r, false));
  await new Promise<void>((res, rej) => unix.once('error', rej).listen(opts.socket, () => res()));
  fs.chmodSync(opts.socket, 0o600);
  servers.push(unix);
  if (opts.listen) {
    const { host, port } = parseListen(opts.listen);
    const tcp = http.createServer((q, r) => void handler(q, r, true));
    try {
      await new Promise<void>((res, rej) => tcp.once('error', rej).listen(port, host, () => res()));
    } catch (e) {
      // the unix server too: left open, it kept the daemon alive after its failed start, serving
      // a model whose pins were gone and ignoring SIGTERM (review, session 56)
      unix.closeAllConnections();
      await new Promise<void>((r) => unix.close(() => r()));
      fs.rmSync(opts.socket, { force: true });
      throw e;
    }
    servers.push(tcp);
  }
  return {
    shutdown,
    async close() {
      for (const s of servers) {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
      fs.rmSync(opts.socket, { force: true });
    },
  };
}
