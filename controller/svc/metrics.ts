// Prometheus metrics for a socket LB instance, read from the per-CPU counters at scrape time (summed
// over CPUs): the controller keeps no counters of its own. `control()` is asked on every scrape
// because `pnpm lab svc backend …` may have changed the instance from another process since.
import client from 'prom-client';
import type { MetricsSource } from '../../common/metrics-http.ts';
import { STAT_NAMES, type SvcController } from './controller.ts';

const WHAT: Record<(typeof STAT_NAMES)[number], string> = {
  connect: 'connect', sendmsg: 'sendmsg', recvmsg: 'recvmsg', getpeername: 'getpeername', noBackend: 'refused_no_backend', badSlot: 'bad_slot',
};

export function svcRegistry(control: () => SvcController): MetricsSource {
  const reg = new client.Registry();
  new client.Counter({
    name: 'svc_rewrites_total', help: 'socket address rewrites by hook; refused_no_backend = connects refused (EPERM) for a service without live backends', labelNames: ['what'], registers: [reg],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(control().stats())) this.inc({ what: WHAT[k as keyof typeof WHAT] }, v);
    },
  });
  // one scrape reads both hit maps once: metrics() below takes the snapshot the two collectors share
  let hits: ReturnType<SvcController['hits']> | null = null;
  const readHits = () => hits ?? control().hits();
  new client.Counter({
    name: 'svc_service_connections_total', help: 'connects and datagrams to the service VIP sent to a backend', labelNames: ['service'], registers: [reg],
    collect() {
      this.reset();
      for (const [id, n] of readHits().services) this.inc({ service: id }, n);
    },
  });
  new client.Counter({
    name: 'svc_backend_connections_total', help: 'connects and datagrams sent to the backend (over all services that list it)', labelNames: ['backend'], registers: [reg],
    collect() {
      this.reset();
      for (const [b, n] of readHits().backends) this.inc({ backend: b }, n);
    },
  });
  new client.Gauge({
    name: 'svc_backends', help: 'backends per service by state (active, draining, down)', labelNames: ['service', 'state'], registers: [reg],
    collect() {
      this.reset();
      for (const s of control().list()) {
        const n = { active: 0, draining: 0, down: 0 };
        for (const b of s.backends) n[b.state]++;
        for (const [state, v] of Object.entries(n)) this.set({ service: s.id, state }, v);
      }
    },
  });
  new client.Gauge({
    name: 'svc_services', help: 'services the instance balances', registers: [reg],
    collect() {
      this.set(control().list().length);
    },
  });
  return {
    contentType: reg.contentType,
    async metrics() {
      hits = control().hits();
      try {
        return await reg.metrics();
      } finally {
        hits = null;
      }
    },
  };
}
