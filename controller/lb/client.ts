// A client of the admin API over its unix socket (CLI, tests, the scenario).
import http from 'node:http';
import type { ApplyResult } from './controller.ts';

export class LbApiError extends Error {
  constructor(readonly status: number, message: string, readonly fix?: string) {
    super(message);
    this.name = 'LbApiError';
  }
}

export class LbClient {
  constructor(readonly socket: string) {}

  request<T = unknown>(method: string, path: string, body?: unknown, raw = false): Promise<T> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      // agent: false — a fresh connection per request: a pooled keep-alive socket that the server
      // closes (keepAliveTimeout) just as it is reused fails with EPIPE outside any request
      const req = http.request({ agent: false, socketPath: this.socket, method, path, headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {}, timeout: method === 'GET' ? 30_000 : 120_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (raw) return resolve(text as T);
          let v: unknown;
          try {
            v = JSON.parse(text);
          } catch {
            v = { error: text };
          }
          const err = v as { error?: string; fix?: string };
          if ((res.statusCode ?? 500) >= 400) reject(new LbApiError(res.statusCode ?? 500, err.error ?? text, typeof err.fix === 'string' ? err.fix : undefined));
          else resolve(v as T);
        });
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error(`admin API ${method} ${path}: timeout`)));
      req.end(data);
    });
  }

  state() { return this.request<ReturnType<import('./controller.ts').LbController['state']>>('GET', '/state'); }
  stats() { return this.request<{ global: Record<string, number>; prog: { id: number; runTimeNs: string | number; runCnt: string | number }; mapMemoryBytes: number; controllerRssBytes: number }>('GET', '/stats'); }
  ring(vip: string) { return this.request<{ computed: number[]; dataplane: number[] | null }>('GET', `/ring?vip=${encodeURIComponent(vip)}`); }
  metrics() { return this.request<string>('GET', '/metrics', undefined, true); }
  addVip(vip: string, backends: unknown[], healthCheck?: boolean, forwarding?: 'dsr' | 'ipip') { return this.request('POST', '/vips', { vip, backends, healthCheck, ...(forwarding ? { forwarding } : {}) }); }
  removeVip(vip: string) { return this.request('DELETE', '/vips', { vip }); }
  addBackend(vip: string, address: string, extra: { weight?: number; port?: number; mac?: string } = {}) { return this.request('POST', '/backends', { vip, address, ...extra }); }
  removeBackend(vip: string, address: string) { return this.request('DELETE', '/backends', { vip, address }); }
  drain(vip: string, address: string) { return this.request('POST', '/backends/drain', { vip, address }); }
  weight(vip: string, address: string, weight: number) { return this.request('POST', '/backends/weight', { vip, address, weight }); }
  apply(cfg: unknown) { return this.request<ApplyResult>('POST', '/apply', cfg); }
  shutdown(purge = false) { return this.request('POST', '/shutdown', { purge }); }
}
