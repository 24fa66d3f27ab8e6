// The scrape endpoint every daemon serves: what a scraper may read and what a web page may not.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveMetrics } from './metrics-http.ts';

function get(port: number, opts: { path?: string; method?: string; host?: string | null }): Promise<{ status: number; body: string }> {
  return new Promise((ok, fail) => {
    const headers: Record<string, string> = {};
    const req = http.request({ host: '127.0.0.1', port, path: opts.path ?? '/metrics', method: opts.method ?? 'GET', setHost: opts.host !== null, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => ok({ status: res.statusCode ?? 0, body }));
    });
    if (opts.host) req.setHeader('host', opts.host);
    req.on('error', fail).end();
  });
}

describe('serveMetrics', () => {
  let server: http.Server;
  let port = 0;
  beforeAll(async () => {
    server = await serveMetrics({ contentType: 'text/plain; version=0.0.4', metrics: async () => 'lab_up 1\n' }, 0);
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => void server.close());

  it('serves /metrics to a scraper that names an address or localhost', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`]) {
      const r = await get(port, { host });
      expect([host, r.status, r.body]).toEqual([host, 200, 'lab_up 1\n']);
    }
    expect((await get(port, { path: '/metrics?x=1' })).status).toBe(200);
  });

  it('refuses a DNS-rebinding Host, a change method and other paths', async () => {
    const rebound = await get(port, { host: `attacker.example:${port}` });
    expect(rebound.status).toBe(403);
    expect(rebound.body).toMatch(/attacker\.example.*DNS rebinding.*scrape http:\/\/127\.0\.0\.1:\d+\/metrics/);
    expect((await get(port, { host: '127.0.0.1.attacker.example' })).status).toBe(403);
    expect((await get(port, { method: 'POST' })).status).toBe(405);
    expect((await get(port, { path: '/' })).status).toBe(404);
  });
});
