// A Prometheus scrape endpoint on 127.0.0.1 for the capability daemons (tc shaper, socket LB,
// tracer, energy top): GET /metrics, nothing else. Binding failures become one-line LabErrors
// naming the fix.
import http from 'node:http';
import net from 'node:net';
import { LabError } from './errors.ts';

export interface MetricsSource {
  contentType: string;
  metrics(): Promise<string>;
}

/**
 * `read` once per scrape: a registry's collect() calls of one scrape run in one turn of the event
 * loop (no I/O between them), and the value is dropped at the next turn, so the next scrape reads
 * the kernel again.
 */
export function perScrape<T>(read: () => T): () => T {
  let held: { v: T } | null = null;
  return () => {
    if (!held) {
      held = { v: read() };
      setImmediate(() => (held = null));
    }
    return held.v;
  };
}

/**
 * Why a request's Host header is refused, or undefined when it is fine. A web page the operator
 * opens can rename its own host to 127.0.0.1 (DNS rebinding) and then read a loopback endpoint
 * as same-origin; its requests still carry the page's name in Host. An address, localhost or no
 * Host at all (an HTTP/1.0 scraper; browsers always send one) is what a real client sends.
 */
export function rebindingHost(req: http.IncomingMessage): string | undefined {
  const raw = req.headers.host;
  if (raw === undefined) return undefined;
  const host = raw.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  if (host.toLowerCase() === 'localhost' || net.isIP(host) !== 0) return undefined;
  return `Host "${host}" is not an address: refused (DNS rebinding)`;
}

export async function serveMetrics(reg: MetricsSource, port: number, flag = '--metrics-port'): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const refused = rebindingHost(req);
    if (refused) {
      res.writeHead(403, { 'content-type': 'text/plain', connection: 'close' }).end(`${refused}: scrape http://127.0.0.1:${(server.address() as net.AddressInfo).port}/metrics\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', connection: 'close' }).end();
      return;
    }
    if (new URL(req.url ?? '/', 'http://x').pathname !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('see /metrics\n');
      return;
    }
    reg.metrics().then(
      (body) => res.writeHead(200, { 'content-type': reg.contentType }).end(req.method === 'HEAD' ? undefined : body),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
    );
  });
  try {
    await new Promise<void>((ok, fail) => server.once('error', fail).listen(port, '127.0.0.1', ok));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new LabError(`cannot serve metrics on 127.0.0.1:${port}: ${code ?? (e as Error).message}`, code === 'EADDRINUSE' ? `port ${port} is taken: choose another ${flag}` : `choose another ${flag}`);
  }
  return server;
}
