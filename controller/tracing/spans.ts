// Span assembly: kernel records (controller/tracing/kernel.ts) → per-connection HTTP streams
// (http.ts) → server and client spans with parent/child links.
//
// Links, in order of trust:
//  1. `traceparent` in a request a server received (the caller is instrumented);
//  2. a client span whose connection 4-tuple, seen from the other end, is the server's accepted
//     tuple, and whose ordinal on that connection (keep-alive) is the same: the caller and the
//     callee are on this node. Resolved at export time (after a grace period) because the client's
//     write and the server's read are two records from two CPUs that may arrive in either order;
//  3. inside a service: a client request written by the thread that is serving exactly one server
//     request becomes its child. A thread serving several at once (an event loop) is ambiguous:
//     the span stays unlinked and says so (`ebpf.link = ambiguous`), never a guess. With sampling,
//     the kernel also counts, per thread, server requests it read that did not cross: a client
//     request written (or a refused connect made) while there are any is ambiguous too (its
//     parent may be one of them).
// Everything is bounded: connections (LRU), per-connection pending requests, the tuple index,
// and the hold queue; overflows are counted in `stats` (a request pushed out of a full pending
// queue is finished as an error span, `pending_overflow`).
import { randomFillSync } from 'node:crypto';
import { HttpStream, commonMethod, startsLikeHttp, type HttpMessage } from './http.ts';
import { TR, type TraceEvent } from './kernel.ts';

export type LinkKind = 'traceparent' | 'tuple' | 'thread' | 'root' | 'ambiguous';

export interface Endpoint {
  addr: string;
  port: number;
}

export interface Span {
  kind: 'server' | 'client';
  service: number;
  pid: number;
  tid: number;
  comm: string;
  cgroupId: bigint;
  spanId: string;
  traceId?: string;
  parent?: Span;
  /** a remote parent from traceparent */
  remoteParent?: { traceId: string; spanId: string };
  link: LinkKind;
  /**
   * a server span's ordinal on its connection, for late tuple resolution (the key is built only
   * then, and only when there are client spans to find)
   */
  tupleOrdinal?: number;
  local: Endpoint;
  peer: Endpoint;
  startTs: bigint;
  endTs: bigint;
  request?: HttpMessage;
  response?: HttpMessage;
  /** error.type when the exchange failed below HTTP (connection refused, closed) */
  errorType?: string;
  done: boolean;
  /** a place in the pending queue for a request whose head was lost: never a span */
  lost?: true;
}

export interface AssemblerOptions {
  /** how long a finished span waits for late records before its links are resolved (ms) */
  graceMs?: number;
  maxConnections?: number;
  maxPendingPerConn?: number;
  maxHeld?: number;
  now?: () => number;
}

export interface AssemblerStats {
  events: number;
  connections: number;
  connectionsEvicted: number;
  spans: number;
  pendingDropped: number;
  heldOverflow: number;
  nonHttpConnections: number;
  parserBad: number;
  /** truncated heads the server refused with 400/431: not spans */
  rejectedUnparsed: number;
  /** continuation syscalls the kernel counted without sending (reported on later records) */
  skippedCalls: number;
  /**
   * requests finished without a response (errorType response_unparsed) because their answers
   * could not be told apart: the response stream lost its framing while they waited, or they were
   * sent behind a request whose head was lost, before its answer
   */
  responsesLost: number;
  /** responses to requests whose heads were lost (or begun before the request they would pair with): dropped */
  responsesUnpaired: number;
}

interface Conn {
  sock: bigint;
  service: number;
  pid: number;
  comm: string;
  cgroupId: bigint;
  local: Endpoint;
  peer: Endpoint;
  role?: 'server' | 'client';
  reqStream?: HttpStream;
  resStream?: HttpStream;
  pending: Span[];
  ordinal: number;
  established: boolean;
  connectTid: number;
  /** server requests that did not cross open on the connecting thread at connect() */
  connectUnsampled: number;
  connectTs: bigint;
  nonHttp: boolean;
  /** the request stream lost a message: the count of requests no longer matches the peer's, so no tuple links */
  noTuple: boolean;
  /** first reads too short to tell whether the connection is HTTP, and which end it is (role unknown) */
  early?: { ts: bigint; dir: number; len: number; data: Buffer; tid: number; unsampled: number }[];
  /** answered 101 Switching Protocols: another protocol from then on, nothing more to parse */
  upgraded: boolean;
  lastTs: bigint;
  /** who made the last request/response record (for thread links) */
  lastTid: number;
  /** LRU clock: when it was (re)inserted into conns, when it was last used */
  inserted: number;
  used: number;
}

// Span and trace ids from a pool of random bytes refilled 64 KiB at a time: one crypto call per
// ~2700 spans instead of two per span (randomBytes per id was 30% of the consumer's CPU).
const POOL = Buffer.alloc(64 * 1024);
let poolPos = POOL.length;
const hex = (n: number) => {
  if (poolPos + n > POOL.length) {
    randomFillSync(POOL);
    poolPos = 0;
  }
  const s = POOL.toString('hex', poolPos, poolPos + n);
  poolPos += n;
  return s;
};
const EMPTY = Buffer.alloc(0);
/**
 * how far the two ends' clocks of one exchange may disagree (both are the kernel's monotonic clock,
 * but a side's time is when its syscall was seen: a loopback write can deliver before it returns)
 */
const TUPLE_SLACK_NS = 50_000_000n;
const tupleKey = (from: Endpoint, to: Endpoint, ordinal: number) => `${from.addr}:${from.port}>${to.addr}:${to.port}#${ordinal}`;
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

/**
 * A traceparent header's trace and parent ids (W3C Trace Context, "Versioning of traceparent"), or
 * null: version ff is invalid; version 00 is exactly its format; a later version is read with
 * version 00's format when it is at least as long and, if longer, goes on with a dash. All-zero
 * ids are invalid.
 */
export function parseTraceparent(v: string): { traceId: string; spanId: string } | null {
  if (v.length < 55) return null;
  const m = TRACEPARENT.exec(v.length === 55 ? v : v.slice(0, 55));
  if (!m || m[1] === 'ff' || (v.length > 55 && (m[1] === '00' || v[55] !== '-'))) return null;
  if (/^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return null;
  return { traceId: m[2]!, spanId: m[3]! };
}

export class SpanAssembler {
  readonly stats: AssemblerStats = { events: 0, connections: 0, connectionsEvicted: 0, spans: 0, pendingDropped: 0, heldOverflow: 0, nonHttpConnections: 0, parserBad: 0, rejectedUnparsed: 0, skippedCalls: 0, responsesLost: 0, responsesUnpaired: 0 };
  private readonly conns = new Map<bigint, Conn>();
  private clock = 0;
  /** client spans by (client tuple → server tuple, ordinal) */
  private readonly clientIndex = new Map<string, Span>();
  /** server spans in service, per thread (tids are unique system-wide; a number key, not a string per request), that have no response yet */
  private readonly activeByThread = new Map<number, Set<Span>>();
  /** finished spans in the order they finished, from `heldHead` on (a queue without shift()) */
  private held: { span: Span; readyAt: number }[] = [];
  private heldHead = 0;
  private readonly graceMs: number;
  private readonly maxConnections: number;
  private readonly maxPending: number;
  private readonly maxHeld: number;
  private readonly now: () => number;

  constructor(private readonly onSpan: (s: Span) => void, opts: AssemblerOptions = {}) {
    this.graceMs = opts.graceMs ?? 250;
    this.maxConnections = opts.maxConnections ?? 16384;
    this.maxPending = opts.maxPendingPerConn ?? 64;
    this.maxHeld = opts.maxHeld ?? 20000;
    this.now = opts.now ?? Date.now;
  }

  push(e: TraceEvent): void {
    this.stats.events++;
    switch (e.kind) {
      case TR.EV_ACCEPT: {
        const c = this.conn(e, true);
        c.role = 'server';
        c.established = true;
        break;
      }
      case TR.EV_CONNECT: {
        const c = this.conn(e, true);
        c.role = 'client';
        c.connectTid = e.tid;
        c.connectTs = e.tsNs;
        c.connectUnsampled = e.unsampled;
        break;
      }
      case TR.EV_ESTABLISHED: {
        const c = this.conns.get(e.sock);
        if (c) {
          c.established = true;
          c.local = { addr: e.laddr, port: e.lport };
          c.peer = { addr: e.raddr, port: e.rport };
        }
        break;
      }
      case TR.EV_CLOSE:
        this.closeConn(e);
        break;
      case TR.EV_SKIP: {
        // the body counts of a crossed exchange, sent alone because the next exchange did not cross
        const c = this.conns.get(e.sock);
        if (c) this.skipped(c, e);
        break;
      }
      case TR.EV_DATA:
        this.data(e);
        break;
    }
  }

  /** spans whose grace period is over: resolve their links and hand them on */
  flush(all = false): void {
    // at shutdown the open connections end first: the spans that ends (requests still waiting for
    // an answer, responses that run to the close) join `held` and go out with the rest below
    if (all) for (const c of [...this.conns.values()]) this.endConn(c, c.lastTs, 'shutdown');
    const now = this.now();
    while (this.heldHead < this.held.length && (all || this.held[this.heldHead]!.readyAt <= now)) {
      const { span } = this.held[this.heldHead++]!;
      this.resolve(span);
      this.onSpan(span);
    }
    if (this.heldHead === this.held.length) {
      this.held.length = 0;
      this.heldHead = 0;
    } else this.compactHeld();
    if (this.activeByThread.size > 4096) for (const [k, v] of this.activeByThread) if (v.size === 0) this.activeByThread.delete(k);
    // the tuple index only needs to outlive the grace period of the callee's span
    if (this.clientIndex.size > this.maxHeld * 2) {
      const drop = this.clientIndex.size - this.maxHeld;
      let i = 0;
      for (const k of this.clientIndex.keys()) {
        if (i++ >= drop) break;
        this.clientIndex.delete(k);
      }
    }
  }

  private compactHeld(): void {
    if (this.heldHead > 1024 && this.heldHead * 2 > this.held.length) {
      this.held = this.held.slice(this.heldHead);
      this.heldHead = 0;
    }
  }

  /**
   * The kernel lost records (ring full): any connection may have lost a request on one end and not
   * the other, so the k-th requests of its two ends are no longer one exchange. Tuple links are
   * given up on every connection open now, and on the spans not yet linked.
   */
  recordsLost(): void {
    for (const c of this.conns.values()) {
      c.noTuple = true;
      for (const p of c.pending) delete p.tupleOrdinal;
    }
    for (let i = this.heldHead; i < this.held.length; i++) {
      const h = this.held[i]!.span;
      if (!h.traceId) delete h.tupleOrdinal;
    }
    this.clientIndex.clear();
  }

  get heldCount(): number {
    return this.held.length - this.heldHead;
  }

  /** when the first held span's grace period ends (ms, the assembler's clock), or null: none held */
  nextReadyAt(): number | null {
    return this.heldHead < this.held.length ? this.held[this.heldHead]!.readyAt : null;
  }

  private conn(e: TraceEvent, fresh = false): Conn {
    let c = this.conns.get(e.sock);
    if (c && fresh && (c.role !== undefined || c.ordinal > 0)) {
      // the kernel reused a struct sock address we still knew: the old connection is over
      this.endConn(c, e.tsNs, 'connection_closed');
      c = undefined;
    }
    if (!c) {
      if (this.conns.size >= this.maxConnections) {
        // LRU by second chance: a connection used since it was (re)inserted goes to the back
        // instead of being evicted, so a record costs a stamp, not a Map delete and insert
        for (let tries = 0; tries < 64; tries++) {
          const old = this.conns.values().next().value!;
          if (old.used <= old.inserted) break;
          this.conns.delete(old.sock);
          this.conns.set(old.sock, old);
          old.inserted = old.used = ++this.clock;
        }
        const oldest = this.conns.values().next().value!;
        this.endConn(oldest, e.tsNs, 'evicted');
        this.stats.connectionsEvicted++;
      }
      c = {
        sock: e.sock, service: e.service, pid: e.pid, comm: e.comm, cgroupId: e.cgroupId,
        local: { addr: e.laddr, port: e.lport }, peer: { addr: e.raddr, port: e.rport },
        pending: [], ordinal: 0, established: false, connectTid: 0, connectTs: 0n, connectUnsampled: 0, nonHttp: false, noTuple: false, upgraded: false, lastTs: e.tsNs, lastTid: e.tid,
        inserted: ++this.clock, used: this.clock,
      };
      this.conns.set(e.sock, c);
      this.stats.connections++;
    } else c.used = ++this.clock;
    return c;
  }

  private data(e: TraceEvent): void {
    const c = this.conn(e);
    // addresses are decoded only when the ports say the tuple changed (records are reused views)
    if (e.lport && (e.lport !== c.local.port || !c.local.addr)) c.local = { addr: e.laddr, port: e.lport };
    if (e.rport && (e.rport !== c.peer.port || !c.peer.addr)) c.peer = { addr: e.raddr, port: e.rport };
    if (c.pid === 0 || c.service === 0) {
      c.pid = e.pid;
      c.service = e.service;
      c.comm = e.comm;
      c.cgroupId = e.cgroupId;
    }
    c.lastTs = e.tsNs;
    if (c.nonHttp || c.upgraded) return;
    if (!c.role) {
      // no lifecycle record (the connection predates the tracer, or the kernel sends the accept
      // record only once the first bytes said HTTP): the first bytes decide
      if (e.cap_len === 0) return;
      let early = c.early;
      let first = early ? Buffer.concat([...early.map((x) => x.data), e.data]) : e.data;
      // 'x' then 'GET / …': the request starts with this record, not with the byte kept (as http.ts)
      if (early && commonMethod(e.data) && !commonMethod(first)) {
        early = c.early = undefined;
        first = e.data;
      }
      const dir = early ? early[0]!.dir : e.dir;
      if (startsLikeHttp(first, 'request', true)) c.role = dir === TR.DIR_IN ? 'server' : 'client';
      else if (startsLikeHttp(first, 'response', true)) {
        // the answer to a request sent before the tracer (the kernel infers the role the same
        // way): an HTTP connection all the same. The response is parsed, so its body is skipped
        // by its framing, and answers nothing (no request pending).
        c.role = dir === TR.DIR_IN ? 'client' : 'server';
      } else if (e.cap_len === e.len && e.dir === dir && first.length < 32 && (startsLikeHttp(first, 'request') || startsLikeHttp(first, 'response'))) {
        // too short to tell (a first read of one byte): kept (a copy: records are views on the
        // ring) until a later read or the lifecycle record decides
        (c.early ??= []).push({ ts: e.tsNs, dir: e.dir, len: e.len, data: Buffer.from(e.data), tid: e.tid, unsampled: e.unsampled });
        return;
      } else {
        c.early = undefined;
        c.nonHttp = true;
        this.stats.nonHttpConnections++;
        return;
      }
    }
    if (!c.reqStream) this.makeStreams(c);
    if (c.early) {
      const early = c.early;
      c.early = undefined;
      for (const x of early) this.feed(c, x.ts, x.dir, x.len, x.data, x.tid, x.unsampled);
    }
    this.skipped(c, e);
    this.feed(c, e.tsNs, e.dir, e.len, e.data, e.tid, e.unsampled);
  }

  /** one syscall's bytes into the stream of its direction */
  private feed(c: Conn, ts: bigint, dir: number, len: number, data: Buffer, tid: number, unsampled: number): void {
    const inbound = dir === TR.DIR_IN;
    const isReq = (c.role === 'server') === inbound;
    c.lastTid = tid;
    this.curUnsampled = unsampled;
    this.curTid = tid;
    this.curTs = ts;
    if (isReq) {
      // a new request on the connection ends a response whose end was unknown
      c.resStream!.endOpen(ts);
      c.reqStream!.push(ts, len, data);
    } else c.resStream!.push(ts, len, data);
  }

  /**
   * Body bytes the kernel only counted (continuation syscalls of one direction) arrive with the
   * socket's next record: the stream of that direction takes them first, as one syscall at the
   * time of the last of them, so lengths stay right and a message ends when its last byte moved.
   */
  private skipped(c: Conn, e: TraceEvent): void {
    if (!e.skipCalls || !e.skipBytes || !c.reqStream || !c.role || c.upgraded) return;
    this.stats.skippedCalls += e.skipCalls;
    const isReq = (c.role === 'server') === (e.skipDir === TR.DIR_IN);
    this.curTid = c.lastTid;
    (isReq ? c.reqStream : c.resStream)!.push(e.skipTs ?? e.tsNs, e.skipBytes, EMPTY);
  }

  /** tid and time of the record being parsed: the stream callbacks run synchronously inside push() */
  private curTid = 0;
  private curTs = 0n;
  /** that record's count of its thread's server requests that did not cross (kernel, sampling) */
  private curUnsampled = 0;

  private makeStreams(c: Conn): void {
    // A request is pending from its head on, not from its end: a request whose end we cannot
    // know (head or chunk framing past the capture, an upload the server answers before reading
    // it) would otherwise still be unsent when its response arrives, and the response would go
    // to the next request. The request message is completed in place when its end comes.
    // A lost request (its head in bytes not captured) is answered all the same: requestLost
    // keeps its place in the queue. It also leaves this side's request count short of the peer's,
    // which tuple links go by.
    c.reqStream = new HttpStream('request', () => {}, undefined, (m) => this.onRequest(c, m), () => this.requestLost(c));
    c.resStream = new HttpStream('response', (m) => this.onResponse(c, m), () => c.pending[0]?.request?.method === 'HEAD', (m) => {
      // a final response has begun: a request whose end was unknown was over before it
      c.reqStream!.endOpen(m.startTs);
    }, () => this.responseLost(c));
  }

  /**
   * The response stream lost a message (garbage, framing it refused, a head past the capture):
   * the waiting request it answered, and any pipelined behind it whose answers may have been in
   * the same lost bytes, are finished without a response. Pairing the next response parsed with
   * the oldest of them shifted every later pair on the connection by one.
   */
  private responseLost(c: Conn): void {
    this.finishUnanswered(c.pending.splice(0));
  }

  private finishUnanswered(spans: Span[]): void {
    for (const s of spans) {
      if (s.lost) {
        this.dropLost(s);
        continue;
      }
      this.stats.responsesLost++;
      s.errorType = 'response_unparsed';
      s.endTs = this.curTs > s.startTs ? this.curTs : s.startTs;
      this.finish(s);
    }
  }

  private onRequest(c: Conn, m: HttpMessage): void {
    const tid = this.curTid;
    const ordinal = c.ordinal++;
    this.makeRoom(c, m.startTs);
    const s: Span = {
      kind: c.role!, service: c.service, pid: c.pid, tid, comm: c.comm, cgroupId: c.cgroupId, spanId: hex(8), link: 'root',
      local: c.local, peer: c.peer, startTs: m.startTs, endTs: m.endTs, request: m, done: false,
    };
    if (c.role === 'server') {
      const tp = m.headers.get('traceparent');
      const t = tp ? parseTraceparent(tp) : null;
      if (t) {
        s.remoteParent = t;
        s.link = 'traceparent';
      } else if (!c.noTuple) {
        s.tupleOrdinal = ordinal;
      }
      this.serving(tid, s);
    } else {
      if (!c.noTuple) this.clientIndex.set(tupleKey(c.local, c.peer, ordinal), s);
      if (this.curUnsampled > 0) s.link = 'ambiguous';
      else this.threadParent(s, tid);
    }
    c.pending.push(s);
  }

  /**
   * A call made by a thread that serves exactly one request is that request's child; with several
   * in flight (an event loop) it is not guessed: unlinked, marked ambiguous. A lost request's place
   * counts as one it serves (review, session 63: not counted, a thread serving a lost request and
   * one other made its calls the other's children), and as the only one it links nothing either.
   */
  private threadParent(s: Span, tid: number): void {
    const set = this.activeByThread.get(tid);
    if (!set || set.size === 0) return;
    const only = set.size === 1 ? set.values().next().value! : undefined;
    if (only && !only.lost) {
      s.parent = only;
      s.link = 'thread';
    } else s.link = 'ambiguous';
  }

  /** a server request (or a lost one's place) its thread now serves */
  private serving(tid: number, s: Span): void {
    let set = this.activeByThread.get(tid);
    if (!set) this.activeByThread.set(tid, (set = new Set()));
    set.add(s);
  }

  /** a lost request's place leaves the pending queue: its thread no longer serves it */
  private dropLost(s: Span): void {
    if (s.kind === 'server') this.activeByThread.get(s.tid)?.delete(s);
  }

  /**
   * The request stream lost a message (a head in bytes not captured: pipelined behind a large
   * body, or after a read only counted). Its answer will come in its place in the response order,
   * so the place is kept. How many heads the lost bytes held is not known.
   */
  private requestLost(c: Conn): void {
    c.noTuple = true;
    if (c.pending.at(-1)?.lost) return;
    this.makeRoom(c, this.curTs);
    const s: Span = {
      kind: c.role!, service: c.service, pid: c.pid, tid: this.curTid, comm: c.comm, cgroupId: c.cgroupId, spanId: '', link: 'root',
      local: c.local, peer: c.peer, startTs: this.curTs, endTs: this.curTs, done: true, lost: true,
    };
    c.pending.push(s);
    if (c.role === 'server') this.serving(s.tid, s);
  }

  /**
   * A full pending queue gives up its oldest request (a lost request's place counts as one: the
   * queue stays bounded whatever the traffic), finished like any other span: a span left in
   * activeByThread would make its thread's later calls its children (a parent never exported)
   * or ambiguous, for good.
   */
  private makeRoom(c: Conn, ts: bigint): void {
    while (c.pending.length >= this.maxPending) {
      const old = c.pending.shift()!;
      if (old.lost) {
        this.dropLost(old);
        continue;
      }
      this.stats.pendingDropped++;
      old.errorType = 'pending_overflow';
      old.endTs = ts > old.startTs ? ts : old.startTs;
      this.finish(old);
    }
  }

  private onResponse(c: Conn, m: HttpMessage): void {
    const s = c.pending[0];
    if (!s) {
      // a response to nothing we saw (the request predates the tracer); after a 101 even so,
      // neither direction is HTTP/1.1 any more. This end's count of requests is then behind the
      // other end's (a pooled connection seen from mid-exchange): no tuple links on it
      if (m.status === 101) c.upgraded = true;
      c.noTuple = true;
      return;
    }
    if (s.lost || m.startTs < s.startTs) {
      // the answer to a request whose head was lost (or one begun before the request it would
      // pair with: the same, unnoticed). The lost bytes may have held several requests, so those
      // sent behind them before this answer began cannot be paired either: they are finished
      // without a response rather than given the wrong one
      this.stats.responsesUnpaired++;
      if (s.lost) {
        this.dropLost(c.pending.shift()!);
        let n = 0;
        while (n < c.pending.length && !c.pending[n]!.lost && c.pending[n]!.startTs < m.startTs) n++;
        this.finishUnanswered(c.pending.splice(0, n));
      }
      return;
    }
    c.pending.shift();
    if (s.request?.truncated && (m.status === 400 || m.status === 431)) {
      // a head we saw only the start of, refused by the server's parser (e.g. huge headers): it
      // was never served, as in-process instrumentation would also see it; no span. A 414 to a
      // request line cut by the capture stays a span on purpose: a request reached the server
      // and was answered, and the span claims only what is known (its method, which the request
      // has or it is no request, the target's start marked cut, no route); a 431/400 span would
      // name a whole route the application never served
      this.stats.rejectedUnparsed++;
      this.finishQuiet(s);
      return;
    }
    s.response = m;
    s.endTs = m.endTs > s.startTs ? m.endTs : s.startTs;
    // after 101 neither direction is HTTP/1.1 (WebSocket frames could look like a request line)
    if (m.status === 101) c.upgraded = true;
    this.finish(s);
  }

  /** forget a server request without emitting it */
  private finishQuiet(s: Span): void {
    s.done = true;
    this.activeByThread.get(s.tid)?.delete(s);
  }

  private finish(s: Span): void {
    if (s.done) return;
    s.done = true;
    // a thread's set stays when it empties (a Set per request was garbage); flush() sweeps empties
    if (s.kind === 'server') this.activeByThread.get(s.tid)?.delete(s);
    this.stats.spans++;
    if (this.held.length - this.heldHead >= this.maxHeld) {
      this.stats.heldOverflow++;
      const { span } = this.held[this.heldHead++]!;
      this.resolve(span);
      this.onSpan(span);
    }
    this.held.push({ span: s, readyAt: this.now() + this.graceMs });
  }

  private closeConn(e: TraceEvent): void {
    const c = this.conns.get(e.sock);
    if (!c) return;
    this.skipped(c, e);
    if (!c.established && c.role === 'client' && e.old_state === 2 /* SYN_SENT */) {
      // connect() failed: a client span for the attempt, parented like a request would be
      const s: Span = {
        kind: 'client', service: c.service, pid: c.pid, tid: c.connectTid, comm: c.comm, cgroupId: c.cgroupId, spanId: hex(8), link: 'root',
        local: { addr: e.laddr, port: e.lport }, peer: { addr: e.raddr, port: e.rport }, startTs: c.connectTs || e.tsNs, endTs: e.tsNs,
        errorType: 'connection_refused', done: false,
      };
      if (c.connectUnsampled > 0) s.link = 'ambiguous';
      else this.threadParent(s, c.connectTid);
      this.finish(s);
    }
    this.endConn(c, e.tsNs, 'connection_closed');
  }

  private endConn(c: Conn, ts: bigint, why: string): void {
    c.reqStream?.close(ts);
    c.resStream?.close(ts);
    this.stats.parserBad += (c.reqStream?.stats.bad ?? 0) + (c.resStream?.stats.bad ?? 0);
    for (const s of c.pending.splice(0)) {
      if (s.lost) {
        this.dropLost(s);
        continue;
      }
      s.errorType = why;
      s.endTs = ts > s.startTs ? ts : s.startTs;
      this.finish(s);
    }
    this.conns.delete(c.sock);
  }

  /** fix parent and trace id (tuple links are looked up now, after the grace period) */
  private resolve(s: Span, depth = 0): string {
    if (s.traceId) return s.traceId;
    if (depth > 32) return (s.traceId = hex(16));
    if (s.remoteParent) return (s.traceId = s.remoteParent.traceId);
    if (!s.parent && s.tupleOrdinal !== undefined && this.clientIndex.size > 0) {
      const key = tupleKey(s.peer, s.local, s.tupleOrdinal);
      const p = this.clientIndex.get(key);
      // the client's request must hold the server's in time: an entry left by a client span whose
      // server side never made one (sampled out, untraced peer, a lost head) would otherwise be
      // the parent of an unrelated request once its ephemeral port came round again
      // and, where the client had an answer, the server's request began before it (a true pair
      // always does; the client's previous request, one ordinal off, ended before it). A client
      // span ended without one (shutdown, an unparsed answer) ends at its last write, which the
      // server's read may follow
      if (p && p !== s && p.startTs <= s.startTs + TUPLE_SLACK_NS && (!p.done || (s.endTs <= p.endTs + TUPLE_SLACK_NS && (!p.response || s.startTs <= p.endTs)))) {
        s.parent = p;
        s.link = 'tuple';
        this.clientIndex.delete(key);
      }
    }
    s.traceId = s.parent ? this.resolve(s.parent, depth + 1) : hex(16);
    return s.traceId;
  }
}
