// The benchmark's Node HTTP service (CommonJS, so OpenTelemetry's require hooks can patch
// node:http when the process starts with --require …/auto-instrumentations-node/register).
// GET /local → 200 "ok\n". Env: PORT.
const http = require('node:http');

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/local')) {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
    return res.end('ok\n');
  }
  res.writeHead(404).end();
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write(`READY ${process.env.PORT}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
