// Span assembly on synthetic kernel records (no root): pairing, pipelining, the three link kinds,
// ambiguity, refused connects, and records arriving out of order across CPUs.
import { describe, expect, it } from 'vitest';
import { SpanAssembler, type Span } from './spans.ts';
import { TR, type TraceEvent } from './kernel.ts';
import { SpanConverter, splitTarget } from './export.ts';

let ts = 1000n;
function ev(p: Partial<TraceEvent> & { sock: bigint; kind: number }): TraceEvent {
  return {
    tsNs: (ts += 1000n), cgroupId: 1n, pid: 10, tid: 10, service: 1, dir: 0, sys: 0, len: 0, cap_len: 0, old_state: 0, new_state: 0, unsampled: 0, family: 2,
    lport: 0, rport: 0, laddr: '127.0.0.1', raddr: '127.0.0.1', comm: 'x', data: Buffer.alloc(0), ...p,
  };
}
const data = (sock: bigint, dir: number, text: string, o: Partial<TraceEvent> = {}) => {
  const b = Buffer.from(text, 'latin1');
  return ev({ sock, kind: TR.EV_DATA, dir, len: b.length, cap_len: b.length, data: b, ...o });
};
/** one syscall of `text` as the kernel sends it: all of its length, the first `cap` bytes captured */
const capped = (sock: bigint, dir: number, text: string, cap = 256, o: Partial<TraceEvent> = {}) => {
  const b = Buffer.from(text, 'latin1');
  const d = b.subarray(0, Math.min(cap, b.length));
  return ev({ sock, kind: TR.EV_DATA, dir, len: b.length, cap_len: d.length, data: d, ...o });
};
const IN = TR.DIR_IN, OUT = TR.DIR_OUT;
const REQ = (p: string, extra = '') => `GET ${p} HTTP/1.1\r\nHost: h\r\n${extra}\r\n`;
const RES = (status = 200) => `HTTP/1.1 ${status} X\r\nContent-Length: 0\r\n\r\n`;

function setup() {
  const out: Span[] = [];
  let now = 0;
  const a = new SpanAssembler((s) => out.push(s), { graceMs: 10, now: () => now });
  return { a, out, done: () => ((now += 1000), a.flush()) };
}

describe('SpanAssembler', () => {
  it('pairs pipelined requests with responses in order', () => {
    const { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(data(1n, IN, REQ('/a') + REQ('/b'), { lport: 80, rport: 5000 }));
    a.push(data(1n, OUT, RES(200) + RES(404), { lport: 80, rport: 5000 }));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.link])).toEqual([['/a', 200, 'root'], ['/b', 404, 'root']]);
  });

  // review, session 60: a lost message shifted every later pair on the connection by one
  it.each([
    ['status 999', 'HTTP/1.1 999 X\r\nContent-Length: 0\r\n\r\n'],
    ['Content-Length: 2, 2', 'HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok'],
    ['a header name with a space', 'HTTP/1.1 200 OK\r\nX Bad: 1\r\nContent-Length: 0\r\n\r\n'],
  ])('a response the parser gives up on (%s) leaves its request without a response, and the next ones pair right', (_why, bad) => {
    const { a, out, done } = setup();
    const at = { lport: 80, rport: 5000 };
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, ...at }));
    a.push(data(1n, IN, REQ('/a'), at));
    a.push(data(1n, OUT, bad, at));
    a.push(data(1n, IN, REQ('/b'), at));
    a.push(data(1n, OUT, RES(404), at));
    a.push(data(1n, IN, REQ('/c'), at));
    a.push(data(1n, OUT, RES(201), at));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.errorType])).toEqual([['/a', undefined, 'response_unparsed'], ['/b', 404, undefined], ['/c', 201, undefined]]);
    expect(a.stats.responsesLost).toBe(1);
  });

  it('pipelined, a response past the capture is lost with those behind it: none of the waiting requests gets a later answer', () => {
    const { a, out, done } = setup();
    const at = { lport: 80, rport: 5000 };
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, ...at }));
    a.push(data(1n, IN, REQ('/a') + REQ('/b') + REQ('/c'), at));
    // 200 with a 300-byte body, then the 404 for /b in the same write, past the 256 captured bytes
    a.push(capped(1n, OUT, `HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n${'x'.repeat(300)}${RES(404)}`, 256, at));
    a.push(data(1n, OUT, RES(503), at));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.errorType])).toEqual([['/a', 200, undefined], ['/b', undefined, 'response_unparsed'], ['/c', undefined, 'response_unparsed']]);
  });

  it.each([
    ['sent after that answer: it gets its own', false, [['/a', 201, undefined], ['/c', 500, undefined]]],
    ['pipelined before that answer: it gets none (the lost bytes may have held more requests)', true, [['/a', 201, undefined], ['/c', undefined, 'response_unparsed']]],
  ] as const)('a request lost past the capture: its answer is not given to the request behind it, %s', (_why, pipelined, want) => {
    const { a, out, done } = setup();
    const at = { lport: 80, rport: 5000 };
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, ...at }));
    const post = `POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 300\r\n\r\n${'x'.repeat(300)}`;
    a.push(capped(1n, IN, post + REQ('/b'), 256, at));
    if (pipelined) a.push(data(1n, IN, REQ('/c'), at));
    a.push(data(1n, OUT, RES(201), at));
    a.push(data(1n, OUT, RES(404), at)); // /b's, whose head was not captured
    if (!pipelined) a.push(data(1n, IN, REQ('/c'), at));
    a.push(data(1n, OUT, RES(500), at));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.errorType])).toEqual(want);
    expect(a.stats.responsesUnpaired).toBe(1);
    // this side's count of requests is one short of the client's: no tuple links on the connection after the loss
    expect(out.find((s) => s.request?.target === '/c')!.tupleOrdinal).toBeUndefined();
  });

  it('a lost request\'s place counts against the pending bound: broken and valid requests alternating do not grow it', () => {
    const out: Span[] = [];
    const a = new SpanAssembler((s) => out.push(s), { graceMs: 10, now: () => 0, maxPendingPerConn: 4 });
    const at = { lport: 80, rport: 5000 };
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, ...at }));
    for (let i = 0; i < 200; i++) {
      a.push(data(1n, IN, REQ(`/ok-${i}`), at));
      a.push(data(1n, IN, 'GET /bad HTTP/1.1\r\nX Bad: 1\r\n\r\n', at));
    }
    const pending = (a as unknown as { conns: Map<bigint, { pending: unknown[] }> }).conns.get(1n)!.pending;
    expect(pending.length).toBeLessThanOrEqual(4);
    expect(a.stats.pendingDropped).toBeGreaterThan(190);
  });

  it('a 101 to a request the tracer did not see still ends HTTP on the connection', () => {
    const { a, out, done } = setup();
    const at = { lport: 80, rport: 5000 };
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, ...at }));
    a.push(data(1n, OUT, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', at));
    // the other protocol's bytes, shaped like a request and its answer: not HTTP any more
    a.push(data(1n, IN, REQ('/not-http'), at));
    a.push(data(1n, OUT, RES(200), at));
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, ...at }));
    done();
    expect(out).toEqual([]);
  });

  it('a chunk extension after whitespace (RFC 9112 BWS) is still chunked framing', () => {
    const { a, out, done } = setup();
    const at = { lport: 80, rport: 5000 };
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, ...at }));
    a.push(data(1n, IN, REQ('/a'), at));
    a.push(data(1n, OUT, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 ;a=b\r\nok\r\n0\r\n\r\n', at));
    a.push(data(1n, IN, REQ('/b'), at));
    a.push(data(1n, OUT, RES(404), at));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.response?.bodyBytes])).toEqual([['/a', 200, 2], ['/b', 404, 0]]);
  });

  it('a tuple link needs the client\'s request to hold the server\'s in time: an old client span on a reused port is no parent', () => {
    const { a, out, done } = setup();
    // a client call whose server side made no span (sampled out, say)
    a.push(ev({ sock: 2n, kind: TR.EV_CONNECT, tid: 11 }));
    a.push(data(2n, OUT, REQ('/old'), { tid: 11, lport: 40000, rport: 9000 }));
    a.push(data(2n, IN, RES(200), { tid: 11, lport: 40000, rport: 9000 }));
    a.push(ev({ sock: 2n, kind: TR.EV_CLOSE, old_state: 1, lport: 40000, rport: 9000 }));
    ts += 3_600_000_000_000n; // an hour on, the port comes round again to an untraced client
    a.push(ev({ sock: 3n, kind: TR.EV_ACCEPT, pid: 20, service: 2, lport: 9000, rport: 40000 }));
    a.push(data(3n, IN, REQ('/new'), { pid: 20, tid: 21, service: 2, lport: 9000, rport: 40000 }));
    a.push(data(3n, OUT, RES(200), { pid: 20, tid: 21, service: 2, lport: 9000, rport: 40000 }));
    done();
    const srv = out.find((s) => s.request?.target === '/new')!;
    expect([srv.link, srv.parent]).toEqual(['root', undefined]);
  });

  // review, session 63: the k-th requests of the two ends were paired when the ends had counted
  // differently (a pooled connection seen from mid-exchange, records the ring lost)
  it('no tuple link where the two ends\' request counts may differ: a response to nothing seen, records the kernel lost', () => {
    /** one exchange as it happens: the client's write, the server's read and answer, the client's read */
    const exchange = (cli: bigint, srv: bigint, port: number, path: string) => {
      a.push(data(cli, OUT, REQ(path), { tid: 11, lport: port, rport: 9000 }));
      a.push(data(srv, IN, REQ(path), { pid: 20, tid: 21, service: 2, lport: 9000, rport: port }));
      a.push(data(srv, OUT, RES(200), { pid: 20, tid: 21, service: 2, lport: 9000, rport: port }));
      a.push(data(cli, IN, RES(200), { tid: 11, lport: port, rport: 9000 }));
    };
    const { a, out, done } = setup();
    // the tracer starts while /0 is in flight: the server sees all of it, the client only its answer
    a.push(ev({ sock: 3n, kind: TR.EV_ACCEPT, pid: 20, service: 2, lport: 9000, rport: 6001 }));
    a.push(data(3n, IN, REQ('/0'), { pid: 20, tid: 21, service: 2, lport: 9000, rport: 6001 }));
    a.push(data(3n, OUT, RES(200), { pid: 20, tid: 21, service: 2, lport: 9000, rport: 6001 }));
    a.push(data(2n, IN, RES(200), { tid: 11, lport: 6001, rport: 9000 }));
    exchange(2n, 3n, 6001, '/1');
    // a connection whose records the ring lost part of, then an exchange
    a.push(ev({ sock: 4n, kind: TR.EV_CONNECT, tid: 11 }));
    a.push(ev({ sock: 5n, kind: TR.EV_ACCEPT, pid: 20, service: 2, lport: 9000, rport: 6002 }));
    a.recordsLost();
    exchange(4n, 5n, 6002, '/2');
    // a new connection after the loss links again
    a.push(ev({ sock: 6n, kind: TR.EV_CONNECT, tid: 11 }));
    a.push(ev({ sock: 7n, kind: TR.EV_ACCEPT, pid: 20, service: 2, lport: 9000, rport: 6003 }));
    exchange(6n, 7n, 6003, '/3');
    done();
    const srv = (p: string) => out.find((x) => x.kind === 'server' && x.request?.target === p)!;
    expect(['/0', '/1', '/2', '/3'].map((p) => [p, srv(p).link, srv(p).parent?.request?.target])).toEqual([['/0', 'root', undefined], ['/1', 'root', undefined], ['/2', 'root', undefined], ['/3', 'tuple', '/3']]);
  });

  it('a client span ended without an answer (shutdown) is still its server span\'s tuple parent', () => {
    const { a, out } = setup();
    a.push(ev({ sock: 2n, kind: TR.EV_CONNECT, tid: 11 }));
    a.push(ev({ sock: 3n, kind: TR.EV_ACCEPT, pid: 20, service: 2, lport: 9000, rport: 6004 }));
    a.push(data(2n, OUT, REQ('/late'), { tid: 11, lport: 6004, rport: 9000 }));
    a.push(data(3n, IN, REQ('/late'), { pid: 20, tid: 21, service: 2, lport: 9000, rport: 6004 }));
    a.push(data(3n, OUT, RES(200), { pid: 20, tid: 21, service: 2, lport: 9000, rport: 6004 }));
    a.flush(true); // the client's read of the answer never seen
    const srv = out.find((x) => x.kind === 'server')!;
    expect([srv.link, srv.parent?.kind]).toEqual(['tuple', 'client']);
  });

  it('links client → server by 4-tuple (either arrival order) and server → client by thread', () => {
    const { a, out, done } = setup();
    // frontend (service 1, pid 10) serves /x on tid 11 and calls the backend (service 2, pid 20)
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(data(1n, IN, REQ('/x'), { tid: 11, lport: 80, rport: 5000 }));
    a.push(ev({ sock: 2n, kind: TR.EV_CONNECT, tid: 11 }));
    // the backend's read arrives before the frontend's write record (another CPU)
    a.push(ev({ sock: 3n, kind: TR.EV_ACCEPT, pid: 20, service: 2, lport: 9000, rport: 6000 }));
    a.push(data(3n, IN, REQ('/y'), { pid: 20, tid: 21, service: 2, lport: 9000, rport: 6000 }));
    a.push(data(2n, OUT, REQ('/y'), { tid: 11, lport: 6000, rport: 9000 }));
    a.push(data(3n, OUT, RES(200), { pid: 20, tid: 21, service: 2, lport: 9000, rport: 6000 }));
    a.push(data(2n, IN, RES(200), { tid: 11, lport: 6000, rport: 9000 }));
    a.push(data(1n, OUT, RES(200), { tid: 11, lport: 80, rport: 5000 }));
    done();
    const by = (svc: number, kind: string) => out.find((s) => s.service === svc && s.kind === kind)!;
    const front = by(1, 'server'), call = by(1, 'client'), back = by(2, 'server');
    expect(call.parent).toBe(front);
    expect(call.link).toBe('thread');
    expect(back.parent).toBe(call);
    expect(back.link).toBe('tuple');
    expect(new Set([front.traceId, call.traceId, back.traceId]).size).toBe(1);
  });

  it('body syscalls the kernel only counted complete the message on the next record (keep-alive) or on close', () => {
    const { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(data(1n, IN, REQ('/big'), { lport: 80, rport: 5000 }));
    const head = 'HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n';
    // the head and the first 1000 body bytes crossed; two more writes of 1000 were only counted
    a.push(data(1n, OUT, head, { len: head.length + 1000, lport: 80, rport: 5000 }));
    const lastWrite = ts + 5000n;
    a.push(data(1n, IN, REQ('/next'), { lport: 80, rport: 5000, tsNs: lastWrite + 1000n, skipBytes: 2000, skipCalls: 2, skipTs: lastWrite, skipDir: OUT }));
    ts = lastWrite + 2000n;
    a.push(data(1n, OUT, head, { len: head.length + 1000, lport: 80, rport: 5000 }));
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, tsNs: lastWrite + 9000n, skipBytes: 2000, skipCalls: 1, skipTs: lastWrite + 8000n, skipDir: OUT }));
    done();
    const big = out.find((s) => s.request?.target === '/big')!;
    const next = out.find((s) => s.request?.target === '/next')!;
    expect(big.response?.bodyBytes).toBe(3000);
    expect(big.endTs).toBe(lastWrite);
    expect(big.errorType).toBeUndefined();
    expect(next.response?.bodyBytes).toBe(3000);
    expect(next.endTs).toBe(lastWrite + 8000n);
    expect(next.errorType).toBeUndefined();
  });

  it('an event loop serving two requests at once leaves its calls unlinked (ambiguous)', () => {
    const { a, out, done } = setup();
    for (const [sock, port] of [[1n, 5001], [2n, 5002]] as const) {
      a.push(ev({ sock, kind: TR.EV_ACCEPT, lport: 80, rport: port }));
      a.push(data(sock, IN, REQ(`/p${port}`), { tid: 10, lport: 80, rport: port }));
    }
    a.push(ev({ sock: 9n, kind: TR.EV_CONNECT, tid: 10 }));
    a.push(data(9n, OUT, REQ('/call'), { tid: 10, lport: 7000, rport: 9000 }));
    a.push(data(9n, IN, RES(200), { tid: 10, lport: 7000, rport: 9000 }));
    done();
    const call = out.find((s) => s.kind === 'client')!;
    expect(call.link).toBe('ambiguous');
    expect(call.parent).toBeUndefined();
  });

  // review, session 63: a lost request's place did not count as one its thread serves
  it('a thread serving a request whose head was lost and one other: its calls are not guessed to be the other\'s', () => {
    const { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5001 }));
    // one read: an upload, its 300-byte body and a pipelined GET past the 256 bytes captured
    a.push(capped(1n, IN, `POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 300\r\n\r\n${'x'.repeat(300)}${REQ('/slow')}`, 256, { tid: 10, lport: 80, rport: 5001 }));
    a.push(data(1n, OUT, RES(201), { tid: 10, lport: 80, rport: 5001 })); // the upload's answer: /slow (lost) still served
    a.push(ev({ sock: 2n, kind: TR.EV_ACCEPT, lport: 80, rport: 5002 }));
    a.push(data(2n, IN, REQ('/b'), { tid: 10, lport: 80, rport: 5002 }));
    a.push(ev({ sock: 9n, kind: TR.EV_CONNECT, tid: 10 }));
    a.push(data(9n, OUT, REQ('/call'), { tid: 10, lport: 7000, rport: 9000 }));
    a.push(data(9n, IN, RES(200), { tid: 10, lport: 7000, rport: 9000 }));
    done();
    const call = out.find((s) => s.kind === 'client')!;
    expect([call.link, call.parent?.request?.target]).toEqual(['ambiguous', undefined]);
    // once the lost request is answered, the thread serves /b alone: its next call is /b's child
    a.push(data(1n, OUT, RES(200), { tid: 10, lport: 80, rport: 5001 }));
    a.push(ev({ sock: 8n, kind: TR.EV_CONNECT, tid: 10 }));
    a.push(data(8n, OUT, REQ('/call2'), { tid: 10, lport: 7001, rport: 9000 }));
    a.push(data(8n, IN, RES(200), { tid: 10, lport: 7001, rport: 9000 }));
    done();
    const call2 = out.find((s) => s.kind === 'client' && s.request?.target === '/call2')!;
    expect([call2.link, call2.parent?.request?.target]).toEqual(['thread', '/b']);
  });

  it('honours an incoming traceparent', () => {
    const { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT }));
    a.push(data(1n, IN, REQ('/t', 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n')));
    a.push(data(1n, OUT, RES(500)));
    done();
    expect(out[0]).toMatchObject({ link: 'traceparent', traceId: '4bf92f3577b34da6a3ce929d0e0e4736' });
  });

  it('a refused connect becomes an error client span; a closed connection errors pending requests', () => {
    const { a, out, done } = setup();
    a.push(ev({ sock: 5n, kind: TR.EV_CONNECT, tid: 10 }));
    a.push(ev({ sock: 5n, kind: TR.EV_CLOSE, old_state: 2, new_state: 7, lport: 4444, rport: 1 }));
    a.push(ev({ sock: 6n, kind: TR.EV_ACCEPT }));
    a.push(data(6n, IN, REQ('/gone')));
    a.push(ev({ sock: 6n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
    done();
    expect(out.map((s) => [s.kind, s.errorType])).toEqual([['client', 'connection_refused'], ['server', 'connection_closed']]);
  });

  it('at shutdown (flush all) the spans of open connections go out too: a request still waiting, a response that runs to the close', () => {
    const { a, out } = setup();
    a.push(ev({ sock: 7n, kind: TR.EV_ACCEPT }));
    a.push(data(7n, IN, REQ('/slow')));
    a.push(ev({ sock: 8n, kind: TR.EV_ACCEPT }));
    a.push(data(8n, IN, REQ('/stream')));
    a.push(data(8n, OUT, 'HTTP/1.1 200 OK\r\n\r\npart of a body that ends at the close'));
    a.flush(true);
    expect(out.map((s) => [s.kind, s.request?.target, s.errorType ?? null]).sort()).toEqual([['server', '/slow', 'shutdown'], ['server', '/stream', null]]);
  });

  it('a refused connect is the child of the one request its thread serves, unless requests that did not cross are open there too', () => {
    const { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(data(1n, IN, REQ('/x'), { tid: 11, lport: 80, rport: 5000 }));
    a.push(ev({ sock: 2n, kind: TR.EV_CONNECT, tid: 11 }));
    a.push(ev({ sock: 2n, kind: TR.EV_CLOSE, old_state: 2, new_state: 7 }));
    a.push(ev({ sock: 3n, kind: TR.EV_CONNECT, tid: 11, unsampled: 1 }));
    a.push(ev({ sock: 3n, kind: TR.EV_CLOSE, old_state: 2, new_state: 7 }));
    // a thread serving no request that crossed, but one that did not: not a root either
    a.push(ev({ sock: 4n, kind: TR.EV_CONNECT, tid: 12, unsampled: 1 }));
    a.push(ev({ sock: 4n, kind: TR.EV_CLOSE, old_state: 2, new_state: 7 }));
    a.push(data(1n, OUT, RES(200), { tid: 11, lport: 80, rport: 5000 }));
    done();
    const refused = out.filter((s) => s.errorType === 'connection_refused');
    expect(refused.map((s) => [s.tid, s.link, s.parent?.request?.target])).toEqual([[11, 'thread', '/x'], [11, 'ambiguous', undefined], [12, 'ambiguous', undefined]]);
  });

  it('a request whose end is past the capture is answered by the next response, and later pairs stay in step', () => {
    const cookie = `Cookie: ${'c'.repeat(400)}\r\n`;
    const cases: [string, string, string][] = [
      // the head itself runs past the capture
      ['GET', `GET /big HTTP/1.1\r\nHost: h\r\n${cookie}\r\n`, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
      // a chunk longer than the capture: the framing after it is lost
      ['POST', `POST /big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n${'b'.repeat(500)}\r\n0\r\n\r\n`, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
      // HEAD: the answer has a length but no body, which only the pending request can tell
      ['HEAD', `HEAD /big HTTP/1.1\r\nHost: h\r\n${cookie}\r\n`, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n'],
    ];
    for (const [method, big, res] of cases) {
      const { a, out, done } = setup();
      a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
      a.push(capped(1n, IN, big));
      a.push(capped(1n, OUT, res));
      a.push(capped(1n, IN, REQ('/second')));
      a.push(capped(1n, OUT, 'HTTP/1.1 404 NF\r\nContent-Length: 2\r\n\r\nno'));
      a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
      done();
      expect.soft(out.map((s) => [s.request?.method, s.request?.target, s.response?.status, s.errorType]), method).toEqual([
        [method, '/big', 200, undefined],
        ['GET', '/second', 404, undefined],
      ]);
      expect.soft(out[0]?.request?.endInferred, method).toBe(true);
    }
  });

  it('a server answering before it read the whole upload: the span has that answer, later pairs stay in step', () => {
    const upload = `POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(100)}`;
    // refused early, then the connection closes (the client gives up)
    let { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(capped(1n, IN, upload));
    a.push(capped(1n, OUT, 'HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n'));
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.errorType, s.request?.bodyBytes, s.request?.endInferred])).toEqual([['/upload', 413, undefined, 100, true]]);
    // the client resets mid-upload: an error span, not nothing
    ({ a, out, done } = setup());
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(capped(1n, IN, upload));
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.errorType])).toEqual([['/upload', undefined, 'connection_closed']]);
    // answered after 100 of 1000 body bytes; the client sends the rest, then the next request
    ({ a, out, done } = setup());
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(capped(1n, IN, `POST /login HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n${'x'.repeat(100)}`));
    a.push(capped(1n, OUT, 'HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n'));
    a.push(capped(1n, IN, 'x'.repeat(900)));
    a.push(capped(1n, IN, REQ('/next')));
    a.push(capped(1n, OUT, RES(200)));
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.errorType, s.request?.bodyBytes])).toEqual([['/login', 401, undefined, 1000], ['/next', 200, undefined, 0]]);
  });

  it('a head read in pieces whose last bytes the kernel only counted still makes a (truncated) span', () => {
    // request: 100 + 100 + 100 bytes crossed (the run's first 256 and the read that crossed
    // them), the rest rides as counted bytes on the response's record
    let { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    const head = `GET /pieces HTTP/1.1\r\nHost: h\r\nCookie: ${'c'.repeat(330)}\r\n\r\n`;
    for (let i = 0; i < 300; i += 100) a.push(capped(1n, IN, head.slice(i, i + 100)));
    const lastRead = ts + 500n;
    a.push(capped(1n, OUT, RES(200), 256, { tsNs: lastRead + 1000n, skipBytes: head.length - 300, skipCalls: 1, skipTs: lastRead, skipDir: IN }));
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
    done();
    expect.soft(out.map((s) => [s.request?.target, s.request?.truncated, s.response?.status, s.errorType])).toEqual([['/pieces', true, 200, undefined]]);
    // response: 92 + 203 bytes crossed, the rest counted on the close record
    ({ a, out, done } = setup());
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(capped(1n, IN, REQ('/r')));
    const res = `HTTP/1.1 200 OK\r\nSet-Cookie: ${'s'.repeat(400)}\r\nContent-Length: 2\r\n\r\nok`;
    a.push(capped(1n, OUT, res.slice(0, 92)));
    a.push(capped(1n, OUT, res.slice(92, 295)));
    const lastWrite = ts + 500n;
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7, tsNs: lastWrite + 1000n, skipBytes: res.length - 295, skipCalls: 1, skipTs: lastWrite, skipDir: OUT }));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.response?.truncated, s.errorType])).toEqual([['/r', 200, true, undefined]]);
  });

  it('a 1xx response whose head is longer than the capture is not the answer', () => {
    const { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(capped(1n, IN, REQ('/page')));
    const links = Array.from({ length: 10 }, (_, i) => `Link: </static/asset-${i}.css>; rel=preload; as=style\r\n`).join('');
    a.push(capped(1n, OUT, `HTTP/1.1 103 Early Hints\r\n${links}\r\n`));
    a.push(capped(1n, OUT, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.errorType])).toEqual([['/page', 200, undefined]]);
  });

  it('101 Switching Protocols answers the upgrade request; the frames after it are not HTTP', () => {
    const { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(capped(1n, IN, REQ('/ws', 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n')));
    a.push(capped(1n, OUT, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n'));
    const switchedAt = ts;
    // frames both ways, some of whose payloads look like HTTP
    a.push(capped(1n, IN, '\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58'));
    a.push(capped(1n, IN, 'GET /not-a-request HTTP/1.1\r\nHost: h\r\n\r\n'));
    a.push(capped(1n, OUT, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    a.push(capped(1n, OUT, '\x81\x05hello', 256, { skipBytes: 5000, skipCalls: 3, skipTs: ts, skipDir: IN }));
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.errorType, s.endTs])).toEqual([['/ws', 101, undefined, switchedAt]]);
  });

  it('requests pushed out of a full pending queue are finished (errors), not left serving on their thread', () => {
    for (const n of [65, 70]) {
      const { a, out, done } = setup();
      a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
      for (let i = 0; i < n; i++) a.push(capped(1n, IN, REQ(`/q${i}`), 256, { tid: 10 }));
      a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
      // later tid 10 calls out with no request in service: a root
      a.push(ev({ sock: 2n, kind: TR.EV_CONNECT, tid: 10 }));
      a.push(capped(2n, OUT, REQ('/call'), 256, { tid: 10, lport: 7000, rport: 9000 }));
      a.push(capped(2n, IN, RES(200), 256, { tid: 10, lport: 7000, rport: 9000 }));
      // then it serves one request and calls out from it: that request's child
      a.push(ev({ sock: 3n, kind: TR.EV_ACCEPT, lport: 80, rport: 5001 }));
      a.push(capped(3n, IN, REQ('/one'), 256, { tid: 10 }));
      a.push(capped(2n, OUT, REQ('/call2'), 256, { tid: 10, lport: 7000, rport: 9000 }));
      a.push(capped(2n, IN, RES(200), 256, { tid: 10, lport: 7000, rport: 9000 }));
      a.push(capped(3n, OUT, RES(200), 256, { tid: 10 }));
      done();
      const server = out.filter((s) => s.kind === 'server' && s.request?.target?.startsWith('/q'));
      expect.soft(server).toHaveLength(n);
      expect.soft(server.filter((s) => s.errorType === 'pending_overflow').map((s) => s.request?.target)).toEqual(Array.from({ length: n - 64 }, (_, i) => `/q${i}`));
      expect.soft(a.stats.pendingDropped).toBe(n - 64);
      const calls = out.filter((s) => s.kind === 'client');
      expect(calls.map((s) => [s.request?.target, s.link, s.parent?.request?.target]), String(n)).toEqual([['/call', 'root', undefined], ['/call2', 'thread', '/one']]);
    }
  });

  it('a connection older than the tracer whose first record is a response: the role from its direction', () => {
    const { a, out, done } = setup();
    // server side: the rest of an old response, then the next exchange
    const old = `HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n${'o'.repeat(5000)}`;
    a.push(capped(1n, OUT, old.slice(0, 1000), 256, { lport: 80, rport: 5000 }));
    a.push(capped(1n, IN, REQ('/after'), 256, { lport: 80, rport: 5000, skipBytes: old.length - 1000, skipCalls: 4, skipTs: ts, skipDir: OUT }));
    a.push(capped(1n, OUT, RES(201), 256, { lport: 80, rport: 5000 }));
    // client side
    a.push(capped(2n, IN, RES(204), 256, { lport: 6000, rport: 8080 }));
    a.push(capped(2n, OUT, REQ('/call'), 256, { lport: 6000, rport: 8080 }));
    a.push(capped(2n, IN, RES(202), 256, { lport: 6000, rport: 8080 }));
    done();
    expect(out.map((s) => [s.kind, s.request?.target, s.response?.status, s.errorType])).toEqual([['server', '/after', 201, undefined], ['client', '/call', 202, undefined]]);
    expect(a.stats.nonHttpConnections).toBe(0);
  });

  it('traceparent: a future version is read as version 00 where it fits (W3C Trace Context); ff, 00 with more and malformed ones are not', () => {
    const t = '4bf92f3577b34da6a3ce929d0e0e4736', p = '00f067aa0ba902b7';
    const cases: [string, boolean][] = [
      [`00-${t}-${p}-01`, true],
      [`01-${t}-${p}-01`, true],
      [`cc-${t}-${p}-00-what-the-future-holds`, true],
      [`01-${t}-${p}-01x`, false], // longer, and the 56th character is not a dash
      [`ff-${t}-${p}-01`, false], // version ff is invalid
      [`00-${t}-${p}-01-extra`, false], // version 00 is exactly 55 characters
      [`01-${t}-${p}-0`, false], // shorter than version 00
      [`0g-${t}-${p}-01`, false],
      [`01-${t.toUpperCase()}-${p}-01`, false],
      [`01-${'0'.repeat(32)}-${p}-01`, false],
    ];
    for (const [tp, ok] of cases) {
      const { a, out, done } = setup();
      a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT }));
      a.push(data(1n, IN, REQ('/t', `traceparent: ${tp}\r\n`)));
      a.push(data(1n, OUT, RES(200)));
      done();
      expect.soft(out.map((s) => [s.link, s.remoteParent?.traceId, s.remoteParent?.spanId]), tp).toEqual([ok ? ['traceparent', t, p] : ['root', undefined, undefined]]);
    }
  });

  it('a request line longer than the capture is a span with its method and the known start of its target, marked truncated', () => {
    const { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(capped(1n, IN, `GET /search/${'q'.repeat(600)} HTTP/1.1\r\nHost: h\r\n\r\n`));
    a.push(capped(1n, OUT, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    a.push(capped(1n, IN, REQ('/next')));
    a.push(capped(1n, OUT, RES(404)));
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
    done();
    expect(out.map((s) => [s.request?.method, s.request?.target?.slice(0, 10), s.request?.targetTruncated, s.request?.truncated, s.response?.status])).toEqual([
      ['GET', '/search/qq', true, true, 200],
      ['GET', '/next', false, false, 404],
    ]);
    // exported: url.path is required on a server span (semconv), so it holds what is known, the
    // path as far as it was captured, marked cut; no route or span name is built from a part
    const conv = new SpanConverter(new Map([[1, { name: 'svc' }]]));
    const r = conv.convert(out[0]!);
    expect(r.name).toBe('GET');
    expect(r.attributes).toMatchObject({ 'http.request.method': 'GET', 'url.path': out[0]!.request!.target, 'url.scheme': 'http', 'ebpf.url.truncated': true, 'ebpf.truncated': true, 'ebpf.url.target_prefix': out[0]!.request!.target });
    for (const k of ['http.route', 'url.query', 'network.protocol.version']) expect(r.attributes, k).not.toHaveProperty(k);
    // a cut inside the query: the path is whole (a route, the span's name), the query as far as it was captured
    const b = setup();
    b.a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    b.a.push(capped(1n, IN, `GET /api/7?q=${'x'.repeat(600)} HTTP/1.1\r\n\r\n`));
    b.a.push(capped(1n, OUT, RES(200)));
    b.done();
    const q = conv.convert(b.out[0]!);
    expect(q.name).toBe('GET /api/{id}');
    expect(q.attributes).toMatchObject({ 'url.path': '/api/7', 'http.route': '/api/{id}', 'url.query': b.out[0]!.request!.target!.slice('/api/7?'.length), 'ebpf.url.truncated': true });
    // only the method and its space were captured: nothing of the path is known, and it is still set
    const c = setup();
    c.a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    c.a.push(capped(1n, IN, 'DELETE /y HTTP/1.1\r\n\r\n', 7));
    c.a.push(capped(1n, OUT, RES(204)));
    c.done();
    expect(conv.convert(c.out[0]!).attributes).toMatchObject({ 'http.request.method': 'DELETE', 'url.path': '', 'ebpf.url.truncated': true });
    // a client span: url.full (required there) as far as the target was captured, marked cut
    const d = setup();
    d.a.push(ev({ sock: 3n, kind: TR.EV_CONNECT, lport: 6000, rport: 9000 }));
    d.a.push(capped(3n, OUT, `GET /files/${'f'.repeat(600)} HTTP/1.1\r\nHost: api:9000\r\n\r\n`, 256, { lport: 6000, rport: 9000 }));
    d.a.push(capped(3n, IN, RES(200), 256, { lport: 6000, rport: 9000 }));
    d.done();
    const cl = conv.convert(d.out[0]!);
    expect(cl.attributes).toMatchObject({ 'url.full': `http://127.0.0.1:9000${d.out[0]!.request!.target}`, 'ebpf.url.truncated': true });
  });

  it('extension methods (WebDAV) are requests, on a connection seen first by its data too', () => {
    const { a, out, done } = setup();
    a.push(data(1n, IN, 'PROPFIND /dav/ HTTP/1.1\r\nDepth: 1\r\n\r\n'));
    a.push(data(1n, OUT, 'HTTP/1.1 207 Multi-Status\r\nContent-Length: 0\r\n\r\n'));
    a.push(data(2n, OUT, 'MKCOL /dav/new/ HTTP/1.1\r\n\r\n'));
    a.push(data(2n, IN, 'HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n'));
    done();
    expect(out.map((s) => [s.kind, s.request?.method, s.response?.status])).toEqual([['server', 'PROPFIND', 207], ['client', 'MKCOL', 201]]);
    // exported as semconv says for a method outside its known set: _OTHER, the original beside it, named HTTP
    const conv = new SpanConverter(new Map([[1, { name: 'svc' }]]));
    const [srv, cli] = out.map((s) => conv.convert(s));
    expect(srv!.name).toBe('HTTP /dav/');
    expect(srv!.attributes).toMatchObject({ 'http.request.method': '_OTHER', 'http.request.method_original': 'PROPFIND' });
    expect(cli!.name).toBe('HTTP');
    expect(cli!.attributes).toMatchObject({ 'http.request.method': '_OTHER', 'http.request.method_original': 'MKCOL' });
    expect(conv.convert(out[0]!.request ? { ...out[0]!, request: { ...out[0]!.request, method: 'GET' } } : out[0]!).attributes['http.request.method_original']).toBeUndefined();
  });

  it('a PATCH on a keep-alive connection after a head longer than the capture (cookies) is a span', () => {
    // a browser's API calls: the first request's head is cut at 256 bytes, its end inferred from the
    // answer; the next request's read starts where nothing before it was seen
    const { a, out, done } = setup();
    a.push(capped(1n, IN, `GET /app HTTP/1.1\r\nHost: x\r\nCookie: ${'c'.repeat(600)}\r\n\r\n`, 256));
    a.push(data(1n, OUT, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    a.push(data(1n, IN, 'PATCH /api/items/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n'));
    a.push(data(1n, OUT, 'HTTP/1.1 204 No Content\r\n\r\n'));
    done();
    expect(out.map((s) => [s.request?.method, s.request?.target, s.response?.status])).toEqual([['GET', '/app', 200], ['PATCH', '/api/items/7', 204]]);
  });

  it('an absolute-form target (what a proxy gets) gives the URL\'s path, query, scheme and authority, not the Host header', () => {
    const { a, out, done } = setup();
    a.push(data(1n, IN, 'GET http://Example.test:8080/a/b?x=1 HTTP/1.1\r\nHost: other\r\n\r\n'));
    a.push(data(1n, OUT, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    a.push(data(2n, OUT, 'GET http://up.test/ HTTP/1.1\r\nHost: up.test\r\n\r\n'));
    a.push(data(2n, IN, 'HTTP/1.1 204 No Content\r\n\r\n'));
    a.push(data(3n, IN, 'OPTIONS http://h.test HTTP/1.1\r\n\r\n'));
    a.push(data(3n, OUT, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    // a call through a forward proxy on :3128: the server is the origin the request names
    a.push(ev({ sock: 4n, kind: TR.EV_CONNECT, lport: 40000, rport: 3128 }));
    a.push(data(4n, OUT, 'GET http://up.test:8081/x HTTP/1.1\r\nHost: up.test:8081\r\n\r\n'));
    a.push(data(4n, IN, 'HTTP/1.1 204 No Content\r\n\r\n'));
    done();
    const conv = new SpanConverter(new Map([[1, { name: 'svc' }]]));
    const [srv, cli, empty, proxied] = out.map((x) => conv.convert(x));
    expect(proxied!.attributes).toMatchObject({ 'server.address': 'up.test', 'server.port': 8081, 'network.peer.port': 3128 });
    // without a port in the authority: the scheme's
    expect(cli!.attributes).toMatchObject({ 'server.port': 80 });
    expect(srv!.name).toBe('GET /a/b');
    expect(srv!.attributes).toMatchObject({ 'url.path': '/a/b', 'url.query': 'x=1', 'url.scheme': 'http', 'server.address': 'Example.test', 'http.route': '/a/b' });
    expect(cli!.attributes).toMatchObject({ 'url.full': 'http://up.test/', 'server.address': 'up.test' });
    // an empty path is "/"
    expect(empty!.attributes).toMatchObject({ 'url.path': '/', 'server.address': 'h.test' });
    expect(splitTarget('https://h:1?q')).toEqual({ scheme: 'https', authority: 'h:1', rest: '/?q' });
    expect(splitTarget('/p?q')).toEqual({ rest: '/p?q' });
    expect(splitTarget('*')).toEqual({ rest: '*' });
  });

  it('a first read too short to tell (one byte) waits for the next instead of marking the connection non-HTTP', () => {
    // the kernel sends the accept record only once the first bytes say HTTP (sock hooks): after the first read
    const { a, out, done } = setup();
    a.push(data(1n, IN, 'G', { lport: 80, rport: 5000 }));
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(data(1n, IN, 'ET /one HTTP/1.1\r\nHost: h\r\n\r\n', { lport: 80, rport: 5000 }));
    a.push(data(1n, OUT, RES(200), { lport: 80, rport: 5000 }));
    // a connection older than the tracer, no lifecycle record at all
    a.push(data(2n, IN, 'PROP', { lport: 80, rport: 5001 }));
    a.push(data(2n, IN, 'FIND /two HTTP/1.1\r\n\r\n', { lport: 80, rport: 5001 }));
    a.push(data(2n, OUT, RES(207), { lport: 80, rport: 5001 }));
    // short and not HTTP after all
    a.push(data(3n, IN, 'S', { lport: 80, rport: 5002 }));
    a.push(data(3n, IN, 'SH-2.0-OpenSSH_9.2p1\r\n', { lport: 80, rport: 5002 }));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.request?.startTs !== undefined])).toEqual([['/one', 200, true], ['/two', 207, true]]);
    expect(out[0]!.startTs).toBeLessThan(out[0]!.request!.headEndTs);
    expect(a.stats.nonHttpConnections).toBe(1);
    // a byte kept that was not the start after all: the next record alone is the request
    const b = setup();
    b.a.push(data(4n, IN, 'x', { lport: 80, rport: 5003 }));
    b.a.push(data(4n, IN, REQ('/three'), { lport: 80, rport: 5003 }));
    b.a.push(data(4n, OUT, RES(200), { lport: 80, rport: 5003 }));
    b.done();
    expect(b.out.map((s) => [s.request?.method, s.request?.target])).toEqual([['GET', '/three']]);
  });

  it('a chunked response with a folded trailer line is a span, and so is the next exchange on the connection', () => {
    const { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    a.push(capped(1n, IN, REQ('/first')));
    a.push(capped(1n, OUT, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\n\t2\r\n\r\n'));
    a.push(capped(1n, IN, REQ('/second')));
    a.push(capped(1n, OUT, RES(404)));
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
    done();
    expect(out.map((s) => [s.request?.target, s.response?.status, s.response?.bodyBytes, s.response?.endInferred])).toEqual([['/first', 200, 2, false], ['/second', 404, 0, false]]);
    expect(a.stats.parserBad).toBe(0);
  });

  it('a 414 to a request line longer than the capture is a span that says the line was cut and claims no size it cannot know', () => {
    const { a, out, done } = setup();
    a.push(ev({ sock: 1n, kind: TR.EV_ACCEPT, lport: 80, rport: 5000 }));
    // the server reads the line in 8 KiB pieces: the first crosses (its first 256 bytes), the
    // rest is only counted and rides on the response's record
    const line = `GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: h\r\n\r\n`;
    a.push(capped(1n, IN, line.slice(0, 8192)));
    const read = ts;
    a.push(capped(1n, OUT, 'HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', 256, { skipBytes: line.length - 8192, skipCalls: 1, skipTs: read + 500n, skipDir: IN }));
    a.push(ev({ sock: 1n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
    done();
    expect(out.map((s) => [s.request?.method, s.request?.targetTruncated, s.response?.status])).toEqual([['GET', true, 414]]);
    const r = new SpanConverter(new Map([[1, { name: 'svc' }]])).convert(out[0]!);
    expect(r.name).toBe('GET');
    expect(r.status.code, 'a 4xx on a server span is no error').toBe(0);
    expect(r.attributes).toMatchObject({ 'http.request.method': 'GET', 'http.response.status_code': 414, 'ebpf.url.truncated': true, 'ebpf.truncated': true, 'http.response.body.size': 0 });
    expect(String(r.attributes['ebpf.url.target_prefix'])).toMatch(/^\/a{200,}$/);
    // the rest of the line was counted as if it were a body: how much of it was head is unknown
    for (const k of ['http.request.body.size', 'http.route', 'url.query', 'network.protocol.version', 'error.type']) expect(r.attributes, k).not.toHaveProperty(k);
    // the capture cut inside the method: nothing says a request was made, so the 414 answers
    // nothing and is no span; the lost request is counted
    const b = setup();
    b.a.push(ev({ sock: 2n, kind: TR.EV_ACCEPT, lport: 80, rport: 5001 }));
    b.a.push(capped(2n, IN, `PROPFIND /${'d'.repeat(9000)} HTTP/1.1\r\n\r\n`, 4));
    b.a.push(capped(2n, OUT, 'HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\n\r\n'));
    b.a.push(ev({ sock: 2n, kind: TR.EV_CLOSE, old_state: 1, new_state: 7 }));
    b.done();
    expect(b.out).toEqual([]);
    expect(b.a.stats.parserBad).toBe(1);
  });

  it('ignores connections whose first bytes are not HTTP', () => {
    const { a, out, done } = setup();
    a.push(data(7n, IN, '\x16\x03\x01\x00\xa5garbage'));
    a.push(data(7n, OUT, RES(200)));
    done();
    expect(out).toEqual([]);
    expect(a.stats.nonHttpConnections).toBe(1);
  });
});
