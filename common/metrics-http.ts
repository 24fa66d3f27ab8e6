// A Prometheus scrape endpoint on 127.0.0.1 for the capability daemons (tc shaper, socket LB): one
// path, /metrics, nothing else. Binding failures become one-line LabErrors naming the fix.
import http from 'node:http';
import { LabError } from './errors.ts';

export interface MetricsSource {
  contentType: string;
  metrics(): Promise<string>;
}

export async function serveMetrics(reg: MetricsSource, port: number, flag = '--metrics-port'): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    reg.metrics().then(
      (body) => res.writeHead(200, { 'content-type': reg.contentType }).end(body),
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
