// Spans → OpenTelemetry: ReadableSpans with semantic-convention attributes, exported by the
// official OTLP/HTTP protobuf exporter through a bounded queue. When the backend is down the queue
// fills and then drops (counted); a failed batch goes back to the front while there is room, so a
// backend that returns gets what the queue still holds. Memory is bounded by maxQueue spans.
import { SpanKind, SpanStatusCode, type HrTime, type SpanContext, type SpanStatus, type Attributes } from '@opentelemetry/api';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableSpan, SpanExporter, TimedEvent } from '@opentelemetry/sdk-trace';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { ZipkinExporter } from '@opentelemetry/exporter-zipkin';
import {
  ATTR_CLIENT_ADDRESS, ATTR_CLIENT_PORT, ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_HTTP_ROUTE,
  ATTR_NETWORK_LOCAL_ADDRESS, ATTR_NETWORK_LOCAL_PORT, ATTR_NETWORK_PEER_ADDRESS, ATTR_NETWORK_PEER_PORT, ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_NETWORK_TRANSPORT, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, ATTR_SERVICE_NAME, ATTR_URL_FULL, ATTR_URL_PATH, ATTR_URL_QUERY, ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions';
import type { Span } from './spans.ts';

export interface ServiceInfo {
  name: string;
  cgroupPath?: string;
}

/** /users/123/items/9f8e… → /users/{id}/items/{id}: a low-cardinality route guess (no app routing table) */
const routes = new Map<string, string>();

export function routeOf(path: string): string {
  // cached: a service sees few distinct paths, and this ran twice per span
  let r = routes.get(path);
  if (r === undefined) {
    if (routes.size >= 4096) routes.clear();
    r = routeUncached(path);
    routes.set(path, r);
  }
  return r;
}

/**
 * an id-like path segment: all digits, hex of 16+, a UUID, or one with 3+ digits (ORD-12345,
 * item_2024_07) or 16+ characters with a digit in them (a token); `alice`, `v2` and `oauth2` stay.
 * A guess all the same: red.ts caps the routes a service may have
 */
const idLike = (seg: string) => /^\d+$/.test(seg) || /^[0-9a-f]{16,}$/i.test(seg) || /^[0-9a-f-]{36}$/i.test(seg) || (seg.match(/\d/g)?.length ?? 0) >= 3 || (seg.length >= 16 && /\d/.test(seg));

function routeUncached(path: string): string {
  return path
    .split('/')
    .map((seg) => (idLike(seg) ? '{id}' : seg))
    .join('/');
}

/** semconv's known methods (RFC 9110 and PATCH, RFC 5789) */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE']);
/** a method as spans and metrics name it: any other token is "_OTHER" (a client's made-up
 *  methods would otherwise each be a series of their own) */
export const semconvMethod = (m: string): string => (KNOWN_METHODS.has(m) ? m : '_OTHER');

const SCOPE: ReadableSpan['instrumentationScope'] = { name: 'ebpf-lab/tracing', version: '0.1.0' };
const NO_EVENTS: TimedEvent[] = [];
const NO_LINKS: ReadableSpan['links'] = [];
const UNSET: SpanStatus = { code: SpanStatusCode.UNSET };

/**
 * A finished span as the SDK's exporters read it. A class (one shape, spanContext() on the
 * prototype) rather than an object literal with a closure per span: the literal and its closure
 * were most of convert()'s cost.
 */
class KernelSpan implements ReadableSpan {
  readonly events = NO_EVENTS;
  readonly links = NO_LINKS;
  readonly ended = true;
  readonly instrumentationScope = SCOPE;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  constructor(
    readonly name: string,
    readonly kind: SpanKind,
    private readonly ctx: SpanContext,
    readonly parentSpanContext: SpanContext | undefined,
    readonly startTime: HrTime,
    readonly endTime: HrTime,
    readonly duration: HrTime,
    readonly status: SpanStatus,
    readonly attributes: Attributes,
    readonly resource: Resource,
  ) {}

  spanContext(): SpanContext {
    return this.ctx;
  }
}

/** a Host header without its :port (what host.replace(/:\d+$/, '') did, without a regex per span) */
export function hostName(host: string): string {
  let i = host.length;
  while (i > 0 && host.charCodeAt(i - 1) >= 48 && host.charCodeAt(i - 1) <= 57) i--;
  return i > 0 && i < host.length && host.charCodeAt(i - 1) === 58 ? host.slice(0, i - 1) : host;
}

/** the port a Host header (or authority) names, or undefined ("h", "[::1]" name none) */
export function hostPortOf(host: string): number | undefined {
  const name = hostName(host);
  if (name === host) return undefined;
  const port = Number(host.slice(name.length + 1));
  return port >= 1 && port <= 65535 ? port : undefined;
}

/**
 * A request target in absolute-form (`GET http://h:8080/p?q HTTP/1.1`: what a forward proxy gets,
 * and what a server must accept, RFC 9112 §3.2.2) split into its scheme, authority and the
 * origin-form rest (`/p?q`); the authority is then the one to go by, not the Host header. An
 * origin-form target is returned as it is. A target cut inside the authority has rest ''.
 */
export function splitTarget(target: string): { scheme?: string; authority?: string; rest: string } {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s.exec(target);
  if (!m) return { rest: target };
  const rest = m[3]!;
  return { scheme: m[1]!.toLowerCase(), authority: m[2]!, rest: rest.startsWith('?') ? `/${rest}` : rest };
}

export class SpanConverter {
  /** by service index × 2^22 + pid (pids are below 2^22): a number key, not a string per span */
  private readonly resources = new Map<number, Resource>();
  private readonly offsetNs: bigint;

  constructor(private readonly services: Map<number, ServiceInfo>) {
    // bpf_ktime_get_ns and process.hrtime are both CLOCK_MONOTONIC
    this.offsetNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  }

  /**
   * Whole microseconds: Jaeger and Zipkin store µs, and the Zipkin exporter sends µs without
   * rounding, which Zipkin refuses as "Expected a long" (400) when a fraction is left.
   */
  private hr(ts: bigint): HrTime {
    // one BigInt division, then Numbers: wall-clock µs since 1970 (~1.8e15) is exact in a double
    const us = Number((ts + this.offsetNs) / 1000n);
    const sec = Math.floor(us / 1e6);
    return [sec, (us - sec * 1e6) * 1000];
  }

  wallNs(ts: bigint): bigint {
    return ts + this.offsetNs;
  }

  serviceName(s: Span): string {
    return this.services.get(s.service)?.name ?? s.comm;
  }

  private resource(s: Span): Resource {
    const key = s.service * 4194304 + s.pid;
    let r = this.resources.get(key);
    if (!r) {
      const info = this.services.get(s.service);
      r = resourceFromAttributes({
        [ATTR_SERVICE_NAME]: info?.name ?? s.comm,
        'process.pid': s.pid,
        'process.executable.name': s.comm,
        // for a cgroup selector only: a pid or executable one has no cgroup of its own to name
        ...(info?.cgroupPath ? { 'process.linux.cgroup': info.cgroupPath } : {}),
        'ebpf.cgroup.id': String(s.cgroupId),
        'telemetry.distro.name': 'ebpf-lab-tracer',
      });
      if (this.resources.size > 4096) this.resources.clear();
      this.resources.set(key, r);
    }
    return r;
  }

  convert(s: Span): ReadableSpan {
    const req = s.request;
    const res = s.response;
    // no request (a refused or reset connect): no method was sent, so "_OTHER" (it was "CONNECT",
    // which read as an HTTP CONNECT request; review, session 56)
    const original = req?.method;
    // semconv: a method outside the known set is "_OTHER", the one received goes in
    // http.request.method_original, and the span is named "HTTP": an extension method (WebDAV's
    // PROPFIND, SSDP's M-SEARCH …) or one a client made up does not become a dimension of its own
    const method = original === undefined ? '_OTHER' : semconvMethod(original);
    const given = req?.target ?? '';
    // absolute-form: url.path and the route come from the URL's path, server.address from its authority
    const split = splitTarget(given);
    const target = split.authority !== undefined && split.rest === '' && req?.targetTruncated !== true ? '/' : split.rest;
    const q = target.indexOf('?');
    const path = q >= 0 ? target.slice(0, q) : target;
    // a request line cut by the capture: its target is only known to start so; the path is whole
    // only if the query had begun, and the query is not. url.path (server) and url.full (client)
    // are required by semconv, and url.query is set when one was received: each holds what is
    // known, as far as it was captured, and ebpf.url.truncated says the last of them is cut.
    // Nothing is derived from a part as if it were the whole: no route, no route in the name.
    const cut = req?.targetTruncated === true;
    const pathKnown = (!cut || q >= 0) && (split.authority === undefined || target !== '');
    const host = split.authority || req?.headers.get('host');
    const status = res?.status;
    const attrs: Record<string, string | number | boolean> = {
      [ATTR_HTTP_REQUEST_METHOD]: method,
      [ATTR_NETWORK_TRANSPORT]: 'tcp',
      [ATTR_NETWORK_PEER_ADDRESS]: s.peer.addr,
      [ATTR_NETWORK_PEER_PORT]: s.peer.port,
      [ATTR_NETWORK_LOCAL_ADDRESS]: s.local.addr,
      [ATTR_NETWORK_LOCAL_PORT]: s.local.port,
      'ebpf.link': s.link,
      'thread.id': s.tid,
    };
    if (original !== undefined && method !== original) attrs['http.request.method_original'] = original;
    if (req?.version) attrs[ATTR_NETWORK_PROTOCOL_VERSION] = req.version;
    if (cut) {
      attrs['ebpf.url.target_prefix'] = given;
      // the request line was cut by the capture (a 414 answers such a line): said outright, not
      // left to be inferred from a prefix attribute
      attrs['ebpf.url.truncated'] = true;
    }
    if (status !== undefined) attrs[ATTR_HTTP_RESPONSE_STATUS_CODE] = status;
    const ua = req?.headers.get('user-agent');
    if (ua) attrs[ATTR_USER_AGENT_ORIGINAL] = ua;
    if (req?.truncated || res?.truncated) attrs['ebpf.truncated'] = true;
    // a head cut by the capture has no known end: what was counted after it is the head's rest
    // and the body together (a long request line read in pieces had a "body" of its own tail)
    if (res && !res.truncated) attrs['http.response.body.size'] = res.bodyBytes;
    if (req && !req.truncated) attrs['http.request.body.size'] = req.bodyBytes;
    // a 404 has no route (a scanner's made-up paths would each become one)
    const routed = pathKnown && status !== 404;
    const route = routed ? routeOf(path) : '';
    if (s.kind === 'server') {
      attrs[ATTR_URL_PATH] = path;
      if (routed) attrs[ATTR_HTTP_ROUTE] = route;
      if (q >= 0) attrs[ATTR_URL_QUERY] = target.slice(q + 1);
      attrs[ATTR_URL_SCHEME] = split.scheme ?? 'http';
      attrs[ATTR_SERVER_ADDRESS] = host ? hostName(host) : s.local.addr;
      // semconv: address and port both from the Host header where it has them (the port the
      // client addressed), else the local end; the address from Host beside the local port named
      // a pair that never existed (evil.example:443 and :18080)
      attrs[ATTR_SERVER_PORT] = (host && hostPortOf(host)) || s.local.port;
      attrs[ATTR_CLIENT_ADDRESS] = s.peer.addr;
      attrs[ATTR_CLIENT_PORT] = s.peer.port;
    } else {
      // as for a server span: both from the Host header (the origin the request names) where it
      // has them, else the peer; through a forward proxy the peer is the proxy (network.peer.*)
      attrs[ATTR_SERVER_ADDRESS] = host ? hostName(host) : s.peer.addr;
      // an absolute-form target without a port names its scheme's (the peer is then a proxy)
      attrs[ATTR_SERVER_PORT] = (host && hostPortOf(host)) || (split.authority !== undefined ? (split.scheme?.toLowerCase() === 'https' ? 443 : 80) : s.peer.port);
      if (req) attrs[ATTR_URL_FULL] = split.authority !== undefined ? given : `http://${host ?? `${s.peer.addr}:${s.peer.port}`}${target}`;
    }
    // semconv: server spans are errors on 5xx, client spans on ≥400; no response is an error
    let error: string | undefined = s.errorType;
    if (status !== undefined && (status >= 500 || (s.kind === 'client' && status >= 400))) error = String(status);
    if (error) attrs[ATTR_ERROR_TYPE] = error;
    const traceId = s.traceId!;
    const parent = s.parent ? { traceId, spanId: s.parent.spanId, traceFlags: 1 } : s.remoteParent ? { ...s.remoteParent, traceFlags: 1, isRemote: true } : undefined;
    const start = this.hr(s.startTs);
    const end = this.hr(s.endTs);
    const durNs = (end[0] - start[0]) * 1e9 + (end[1] - start[1]);
    return new KernelSpan(
      req ? ((n) => (s.kind === 'server' && routed ? `${n} ${route}` : n))(method === '_OTHER' ? 'HTTP' : method) : 'connect',
      s.kind === 'server' ? SpanKind.SERVER : SpanKind.CLIENT,
      { traceId, spanId: s.spanId, traceFlags: 1 },
      parent,
      start,
      end,
      [Math.floor(durNs / 1e9), durNs % 1e9],
      error ? { code: SpanStatusCode.ERROR, message: error } : UNSET,
      attrs,
      this.resource(s),
    );
  }
}

export interface QueueStats {
  queued: number;
  exported: number;
  dropped: number;
  failedBatches: number;
  batches: number;
  maxQueue: number;
  highWater: number;
  /** the last export failure, as the exporter reported it */
  lastError?: string;
}

export interface QueueOptions {
  maxQueue?: number;
  batch?: number;
  intervalMs?: number;
  timeoutMs?: number;
  /**
   * told when exports start failing (the error) and when they work again (undefined): an
   * endpoint that refused every batch was only seen as "dropped N" at exit
   */
  onTrouble?: (error: string | undefined) => void;
}

/** an exporter's answer; `unsent`: the spans of a failed send that did not get through (all when absent) */
type SendResult = { code: number; error?: Error; unsent?: ReadableSpan[] };

/** p, or `late` once ms have passed (the timer does not hold the process up) */
function within<T>(p: Promise<T>, ms: number, late: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((r) => (timer = setTimeout(() => r(late), ms)).unref())]).finally(() => clearTimeout(timer));
}

/** The bounded export queue in front of an official OpenTelemetry exporter. */
export class BoundedExporter {
  readonly stats: QueueStats;
  private readonly q: ReadableSpan[] = [];
  private busy = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  /** OTLP/HTTP protobuf to <base>/v1/traces */
  static otlp(base: string, opts: QueueOptions = {}): BoundedExporter {
    return new BoundedExporter(`${base.replace(/\/$/, '')}/v1/traces`, new OTLPTraceExporter({ url: `${base.replace(/\/$/, '')}/v1/traces`, timeoutMillis: opts.timeoutMs ?? 2000 }), opts);
  }

  /** Zipkin JSON v2 to <base>/api/v2/spans */
  static zipkin(base: string, opts: QueueOptions = {}): BoundedExporter {
    const url = `${base.replace(/\/$/, '')}/api/v2/spans`;
    // the Zipkin exporter names every span of a batch after the first span's service
    return new BoundedExporter(url, new ZipkinExporter({ url }), opts, true);
  }

  constructor(readonly url: string, private readonly exporter: SpanExporter, opts: QueueOptions = {}, private readonly perResource = false) {
    this.stats = { queued: 0, exported: 0, dropped: 0, failedBatches: 0, batches: 0, maxQueue: opts.maxQueue ?? 4096, highWater: 0 };
    this.batch = opts.batch ?? 512;
    this.sendTimeoutMs = opts.timeoutMs ?? 10_000;
    this.onTrouble = opts.onTrouble;
    // an export costs its CPU per call more than per span (an HTTP request: 3–6 ms of the
    // tracer's CPU on this host, whether it carried 20 spans or 150): a partial batch waits 5 s,
    // as the SDK's BatchSpanProcessor does (scheduledDelayMillis); a full one leaves at once
    this.intervalMs = opts.intervalMs ?? 5000;
  }

  private readonly batch: number;
  private readonly intervalMs: number;
  /**
   * the longest an export call may take: the Zipkin exporter's request has no timeout of its own,
   * and an endpoint that accepted and never answered held the queue — and the daemon's stop,
   * which waits for it — for ever (review, session 56)
   */
  private readonly sendTimeoutMs: number;
  private readonly onTrouble?: (error: string | undefined) => void;
  private failing = false;
  /** spans of the batch being sent */
  private inFlight = 0;
  /**
   * a send given up on at sendTimeoutMs goes on in the exporter (Zipkin's has no timeout of its
   * own): its batch stays its own until it settles — exported if it got through, queued again if
   * not — and nothing else is sent meanwhile. Re-queued at once, a batch was sent twice when the
   * late send got through, and each abandoned send held its spans outside maxQueue (review,
   * session 60: 32 sends holding 320 spans beside a queue of 10).
   */
  private late: Promise<void> | null = null;
  /** spans held by that send */
  private lateSpans = 0;

  /*
   * A partial batch leaves intervalMs after the queue became non-empty (or after a failed send,
   * the retry). The timer runs only while something is queued: an idle exporter does not wake
   * the process (Tracer.consume says what a wake-up costs).
   */
  private arm(): void {
    if (this.timer || this.closed || this.q.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.pump();
    }, this.intervalMs);
    this.timer.unref();
  }

  add(s: ReadableSpan): void {
    if (this.q.length >= this.stats.maxQueue) {
      this.stats.dropped++;
      return;
    }
    this.q.push(s);
    this.stats.queued = this.q.length;
    if (this.q.length > this.stats.highWater) this.stats.highWater = this.q.length;
    if (this.q.length >= this.batch) void this.pump();
    else this.arm();
  }

  async pump(): Promise<void> {
    if (this.busy || this.q.length === 0 || this.closed || this.late) return;
    this.busy = true;
    try {
      while (this.q.length && !this.closed) {
        const batch = this.q.splice(0, this.batch);
        this.inFlight = batch.length;
        const timedOut = { code: 1, error: new Error(`no answer from ${this.url} within ${this.sendTimeoutMs / 1000} s`) };
        const sending = this.send(batch).catch((e: unknown): SendResult => ({ code: 1, error: e instanceof Error ? e : new Error(String(e)) }));
        const r = await within(sending, this.sendTimeoutMs, timedOut);
        this.inFlight = 0;
        if (this.closed) return; // close() gave up on this batch and counted it dropped
        this.stats.batches++;
        if (r === timedOut) {
          this.sendFailed(timedOut.error.message);
          this.lateSpans = batch.length;
          // a send that never settles (an endpoint that accepted and went silent; Zipkin's exporter
          // has no timeout of its own) must not hold the queue for good: after another
          // sendTimeoutMs its batch is counted dropped and sending resumes (a late success after
          // that is counted exported instead)
          let givenUp = false;
          const giveUp = setTimeout(() => {
            if (this.late !== late) return;
            givenUp = true;
            this.late = null;
            this.stats.dropped += this.lateSpans;
            this.lateSpans = 0;
            this.arm();
          }, this.sendTimeoutMs);
          giveUp.unref();
          const late: Promise<void> = sending.then((x) => {
            clearTimeout(giveUp);
            if (givenUp) {
              const through = x.code === 0 ? batch.length : batch.length - (x.unsent ?? batch).length;
              if (through > 0 && !this.closed) {
                this.stats.dropped -= through;
                this.stats.exported += through;
              }
              return;
            }
            this.late = null;
            this.lateSpans = 0;
            if (this.closed) return; // counted dropped by close()
            if (x.code === 0) this.sent(batch.length);
            else this.partlyFailed(batch, x);
            this.stats.queued = this.q.length;
            this.arm();
          });
          this.late = late;
          break;
        }
        if (r.code === 0) this.sent(batch.length);
        else {
          this.sendFailed(r.error?.message ?? `code ${r.code}`);
          this.partlyFailed(batch, r);
          break;
        }
      }
    } finally {
      this.stats.queued = this.q.length;
      this.busy = false;
      this.arm();
    }
  }

  /** a batch got through: exports work (again) */
  private sent(spans: number): void {
    this.stats.exported += spans;
    if (this.failing) this.onTrouble?.(undefined);
    this.failing = false;
  }

  /** a batch failed or timed out: said once per run of failures */
  private sendFailed(error: string): void {
    this.stats.failedBatches++;
    this.stats.lastError = error;
    if (!this.failing) this.onTrouble?.(error);
    this.failing = true;
  }

  /** a failed batch back to the front while there is room; the rest is dropped (counted) */
  private requeue(batch: ReadableSpan[]): void {
    const room = Math.max(0, this.stats.maxQueue - this.q.length);
    this.q.unshift(...batch.slice(0, room));
    this.stats.dropped += batch.length - Math.min(room, batch.length);
    if (this.q.length > this.stats.highWater) this.stats.highWater = this.q.length;
  }

  /**
   * A failed send: what of it got through counts as exported, the rest goes back (per-resource
   * sends: a batch of two services whose second POST failed had its first sent again)
   */
  private partlyFailed(batch: ReadableSpan[], r: SendResult): void {
    const unsent = r.unsent ?? batch;
    this.stats.exported += batch.length - unsent.length;
    this.requeue(unsent);
  }

  private async send(batch: ReadableSpan[]): Promise<SendResult> {
    if (!this.perResource) return new Promise((res) => this.exporter.export(batch, res));
    const groups = new Map<unknown, ReadableSpan[]>();
    for (const s of batch) {
      const g = groups.get(s.resource);
      if (g) g.push(s);
      else groups.set(s.resource, [s]);
    }
    const gs = [...groups.values()];
    for (const [i, g] of gs.entries()) {
      // an exporter that throws (Zipkin's serialises before its POST) fails this group alone: as
      // a rejection of send() the groups before it, already sent, were queued again
      const r = await new Promise<SendResult>((res) => this.exporter.export(g, res)).catch((e: unknown): SendResult => ({ code: 1, error: e instanceof Error ? e : new Error(String(e)) }));
      if (r.code !== 0) return { ...r, unsent: gs.slice(i).flat() };
    }
    return { code: 0 };
  }

  /** export what is queued (bounded wait) and stop */
  async close(timeoutMs = 3000): Promise<void> {
    const until = Date.now() + timeoutMs;
    const drain = async () => {
      while (this.q.length && Date.now() < until && !this.closed) {
        const before = this.stats.exported;
        await this.pump();
        if (this.stats.exported === before) await new Promise((r) => setTimeout(r, 100));
      }
    };
    // the whole wait is bounded: a send in flight may take up to sendTimeoutMs
    await within(drain(), timeoutMs, undefined);
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.stats.dropped += this.q.length + this.inFlight + this.lateSpans;
    this.q.length = 0;
    // bounded too: the SDK's shutdown waits for the sends it has in flight (see sendTimeoutMs)
    await within(this.exporter.shutdown().catch(() => {}), 2000, undefined);
  }
}
