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

type Sample = { labels: Record<string, string | number>; value: number; metricName: string };

/** one histogram's samples: counts[i] below les[i] (not cumulative), counts[les.length] above the last */
function histogramSamples(out: Sample[], name: string, labels: Record<string, string>, les: number[], counts: ArrayLike<number>, sum: number): void {
  let acc = 0;
  les.forEach((le, i) => out.push({ labels: { ...labels, le }, value: (acc += counts[i]!), metricName: `${name}_bucket` }));
  acc += counts[les.length]!;
  out.push({ labels: { ...labels, le: '+Inf' }, value: acc, metricName: `${name}_bucket` });
  out.push({ labels, value: sum, metricName: `${name}_sum` });
  out.push({ labels, value: acc, metricName: `${name}_count` });
}

/** a histogram prom-client reads through its registry at scrape time, from samples built then */
function registerHistogram(registry: Registry, name: string, help: string, samples: () => Sample[]): void {
  const metric = { name, help, type: 'histogram', aggregator: 'sum', get: async () => ({ name, help, type: 'histogram', aggregator: 'sum', values: samples() }), reset: () => {} };
  registry.registerMetric(metric as unknown as Metric);
}

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

/**
 * Cardinality bounds. A service keeps at most `maxRoutes` routes; a request on a route beyond them
 * counts under route="_OTHER" (OpenTelemetry's word for the overflow), as do all new series once
 * `maxSeries` exist. The earlier bound cleared every series at the limit: 10,000 scanner-style
 * paths reset the counters of the real routes too (review, session 56).
 */
export const RED_OTHER_ROUTE = '_OTHER';

export class RedMetrics {
  private readonly byRoute = new Map<string, Series[]>();
  private count = 0;
  /** routes per service (beyond maxRoutes: _OTHER) */
  private readonly routesOf = new Map<string, Set<string>>();

  constructor(registry: Registry, private readonly maxSeries = 10_000, private readonly maxRoutes = 200) {
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
    registerHistogram(registry, 'ebpf_http_duration_seconds', 'HTTP request duration (first request byte read → last response byte written)', () => {
      // one histogram per service/kind/route: the series of a route that differ in method or status are added up
      const merged = new Map<string, { labels: Record<string, string>; buckets: Float64Array; sum: number }>();
      each((s) => {
        const k = `${s.service}\0${s.kind}\0${s.route}`;
        let m = merged.get(k);
        if (!m) merged.set(k, (m = { labels: { service: s.service, kind: s.kind, route: s.route }, buckets: new Float64Array(DURATION_BUCKETS.length + 1), sum: 0 }));
        for (let i = 0; i < m.buckets.length; i++) m.buckets[i]! += s.buckets[i]!;
        m.sum += s.sum;
      });
      const values: Sample[] = [];
      for (const m of merged.values()) histogramSamples(values, 'ebpf_http_duration_seconds', m.labels, DURATION_BUCKETS, m.buckets, m.sum);
      return values;
    });
  }

  /** one finished request; `route` should come from routeOf (a cached string) */
  record(service: string, kind: string, method: string, route: string, status: string, error: boolean, seconds: number): void {
    let routes = this.routesOf.get(service);
    if (!routes) this.routesOf.set(service, (routes = new Set()));
    if (!routes.has(route)) {
      if (routes.size >= this.maxRoutes || this.count >= this.maxSeries) route = RED_OTHER_ROUTE;
      else routes.add(route);
    }
    let list = this.byRoute.get(route);
    if (!list) this.byRoute.set(route, (list = []));
    let s: Series | undefined;
    for (let i = 0; i < list.length; i++) {
      const x = list[i]!;
      if (x.status === status && x.method === method && x.kind === kind && x.service === service) {
        s = x;
        break;
      }
    }
    if (!s) {
      // the overflow route's own series are few (services × kinds × methods × statuses): always made
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

  /** forget every series */
  clear(): void {
    this.byRoute.clear();
    this.routesOf.clear();
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
  registerHistogram(registry, name, 'every HTTP request, counted in the kernel (sampled or not): first request byte → first response byte; status_class none = closed before a response', () => {
    const values: Sample[] = [];
    for (const s of src.red()) {
      const labels = { service: serviceName(s.service), kind: s.role, status_class: s.statusClass ? `${s.statusClass}xx` : 'none' };
      // the kernel's last bucket is everything above 2^(n-2) µs: it is the +Inf one
      histogramSamples(values, name, labels, s.counts.slice(0, -1).map((_, b) => 2 ** b / 1e6), s.counts, s.sumNs / 1e9);
    }
    return values;
  });
}
