// The chain's Node frontend: plain node:http, no instrumentation. /api/<id> calls the middle
// service over a keep-alive agent; /error and /refused pass the middle's failures on; /fail is
// its own 500. Env: PORT, MIDDLE (host:port). With OTEL_AUTO=1 (benchmark) the process is started
// with @opentelemetry/auto-instrumentations-node by the caller, not here.
import http from 'node:http';

const port = Number(process.env.PORT);
const [mhost, mport] = (process.env.MIDDLE ?? '127.0.0.1:0').split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function upstream(path, res) {
  const r = http.get({ host: mhost, port: Number(mport), path, agent }, (up) => {
    const chunks = [];
    up.on('data', (c) => chunks.push(c));
    up.on('end', () => {
      const body = Buffer.concat(chunks);
      res.writeHead(up.statusCode ?? 502, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    });
  });
  r.on('error', (e) => {
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`upstream: ${e.code ?? e.message}\n`);
  });
}

const server = http.createServer((req, res) => {
  const url = (req.url ?? '/').split('?')[0];
  if (url.startsWith('/api/')) return upstream(`/mid/${url.slice(5)}`, res);
  if (url === '/error') return upstream('/mid-error', res);
  if (url === '/refused') return upstream('/mid-refused', res);
  if (url === '/fail') {
    res.writeHead(500, { 'content-type': 'text/plain' });
    return res.end('failed\n');
  }
  if (url.startsWith('/local')) {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
    return res.end('ok\n');
  }
  res.writeHead(404).end();
});
server.keepAliveTimeout = 30_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`READY ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
