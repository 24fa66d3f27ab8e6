// RED metrics (requests, errors, duration histogram) per service/kind/method/route/status.
//
// Each request updates plain numbers in a series found by its route (the route string comes from
// a cache, so it is the same string object every time and its hash is computed once) and a short
// scan over that route's few series. prom-client only sees them at scrape time: the counters are
// rebuilt in their collect() hooks, the histogram is a registry metric whose get() reads the
// buckets. Updating prom-client per request cost ~3 µs (it hashes the label set on every
// observe(), even through a cached child), a tenth of the tracer's per-request CPU.
import { Counter, type Metric, type Registry } from 'prom-client';

export const DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

interface Series {
  service: string;
  kind: string;
  method: string;
  route: string;
  status: string;
  requests: number;
  errors: number;
  /** per bucket (not cumulative), then one for +Inf */
  buckets: Float64Array;
  sum: number;
}

export class RedMetrics {
  private readonly byRoute = new Map<string, Series[]>();
  private count = 0;

  constructor(registry: Registry, private readonly maxSeries = 10_000) {
    const labelNames = ['service', 'kind', 'method', 'route', 'status'];
    const each = (f: (s: Series) => void) => {
      for (const list of this.byRoute.values()) for (const s of list) f(s);
    };
    const label = (s: Series) => ({ service: s.service, kind: s.kind, method: s.method, route: s.route, status: s.status });
    new Counter({
      name: 'ebpf_http_requests_total', help: 'HTTP requests seen from the kernel', labelNames, registers: [registry],
      collect() {
        this.reset();
        each((s) => this.inc(label(s), s.requests));
      },
    });
    new Counter({
      name: 'ebpf_http_errors_total', help: 'HTTP requests that ended in an error span', labelNames, registers: [registry],
      collect() {
        this.reset();
        each((s) => s.errors && this.inc(label(s), s.errors));
      },
    });
    const name = 'ebpf_http_duration_seconds';
    const histogram = {
      name, help: 'HTTP request duration (first request byte read → last response byte written)', type: 'histogram', aggregator: 'sum',
      get: async () => {
        // one histogram per service/kind/route: the series of a route that differ in method or status are added up
        const merged = new Map<string, { labels: Record<string, string>; buckets: Float64Array; sum: number }>();
        each((s) => {
          const k = `${s.service}\0${s.kind}\0${s.route}`;
          let m = merged.get(k);
          if (!m) merged.set(k, (m = { labels: { service: s.service, kind: s.kind, route: s.route }, buckets: new Float64Array(DURATION_BUCKETS.length + 1), sum: 0 }));
          for (let i = 0; i < m.buckets.length; i++) m.buckets[i]! += s.buckets[i]!;
          m.sum += s.sum;
        });
        const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
        for (const m of merged.values()) {
          let acc = 0;
          DURATION_BUCKETS.forEach((le, i) => values.push({ labels: { ...m.labels, le }, value: (acc += m.buckets[i]!), metricName: `${name}_bucket` }));
          acc += m.buckets[DURATION_BUCKETS.length]!;
          values.push({ labels: { ...m.labels, le: '+Inf' }, value: acc, metricName: `${name}_bucket` });
          values.push({ labels: m.labels, value: m.sum, metricName: `${name}_sum` });
          values.push({ labels: m.labels, value: acc, metricName: `${name}_count` });
        }
        return { name, help: histogram.help, type: 'histogram', aggregator: 'sum', values };
      },
      reset: () => {},
    };
    registry.registerMetric(histogram as unknown as Metric);
  }

  /** one finished request; `route` should come from routeOf (a cached string) */
  record(service: string, kind: string, method: string, route: string, status: string, error: boolean, seconds: number): void {
    let list = this.byRoute.get(route);
    if (!list) {
      if (this.count >= this.maxSeries) this.clear();
      this.byRoute.set(route, (list = []));
    }
    let s: Series | undefined;
    for (let i = 0; i < list.length; i++) {
      const x = list[i]!;
      if (x.status === status && x.method === method && x.kind === kind && x.service === service) {
        s = x;
        break;
      }
    }
    if (!s) {
      s = { service, kind, method, route, status, requests: 0, errors: 0, buckets: new Float64Array(DURATION_BUCKETS.length + 1), sum: 0 };
      list.push(s);
      this.count++;
    }
    s.requests++;
    if (error) s.errors++;
    s.sum += seconds;
    let b = 0;
    while (b < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[b]!) b++;
    s.buckets[b]!++;
  }

  /** forget every series (a cardinality bound, as the label-set cache before it) */
  clear(): void {
    this.byRoute.clear();
    this.count = 0;
  }
}

/** the in-kernel RED series (controller/tracing/kernel.ts KernelTracer.red) */
export interface KernelRedSource {
  red(): { service: number; role: 'server' | 'client'; statusClass: number; counts: number[]; sumNs: number }[];
}

/**
 * In-kernel RED (bpf/tracing.bpf.c, `red`): every request of every selected workload, whether its
 * records crossed to user space or not, so these stay exact under sampling. Per service, kind and
 * status class only (routes need the path, which is parsed in user space: the series above). The
 * kernel keeps log2 buckets of µs; they are exposed as they are (le = 2^b µs). Read at scrape.
 */
export function registerKernelRed(registry: Registry, src: KernelRedSource, serviceName: (index: number) => string): void {
  const name = 'ebpf_http_kernel_duration_seconds';
  const labelsOf = (s: ReturnType<KernelRedSource['red']>[number]) => ({ service: serviceName(s.service), kind: s.role, status_class: s.statusClass ? `${s.statusClass}xx` : 'none' });
  const histogram = {
    name, help: 'every HTTP request, counted in the kernel (sampled or not): first request byte → first response byte; status_class none = closed before a response', type: 'histogram', aggregator: 'sum',
    get: async () => {
      const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
      for (const s of src.red()) {
        const labels = labelsOf(s);
        let acc = 0;
        s.counts.forEach((c, b) => {
          acc += c;
          if (b < s.counts.length - 1) values.push({ labels: { ...labels, le: 2 ** b / 1e6 }, value: acc, metricName: `${name}_bucket` });
        });
        values.push({ labels: { ...labels, le: '+Inf' }, value: acc, metricName: `${name}_bucket` });
        values.push({ labels, value: s.sumNs / 1e9, metricName: `${name}_sum` });
        values.push({ labels, value: acc, metricName: `${name}_count` });
      }
      return { name, help: histogram.help, type: 'histogram', aggregator: 'sum', values };
    },
    reset: () => {},
  };
  registry.registerMetric(histogram as unknown as Metric);
}
