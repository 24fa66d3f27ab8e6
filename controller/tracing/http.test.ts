// Pure parser tests (no root): fixtures of what the kernel hands over, split and truncated the
// ways syscalls split them.
import { describe, expect, it, vi } from 'vitest';
import { HttpStream, partialHeadBytes, setPartialHeadBudget, type HttpMessage } from './http.ts';

function collect(kind: 'request' | 'response', noBody?: (s: number) => boolean) {
  const out: HttpMessage[] = [];
  const s = new HttpStream(kind, (m) => out.push(m), noBody);
  let ts = 1n;
  const feed = (chunk: string | Buffer, cap = Infinity, len?: number) => {
    const b = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
    s.push(ts++, len ?? b.length, b.subarray(0, Math.min(cap, b.length)));
  };
  return { out, s, feed, next: () => ts };
}

const req = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

describe('HttpStream', () => {
  it('parses a simple request and response', () => {
    const r = collect('request');
    r.feed(req('/a?b=1', 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n'));
    expect(r.out).toHaveLength(1);
    expect(r.out[0]).toMatchObject({ method: 'GET', target: '/a?b=1', version: '1.1', truncated: false });
    expect(r.out[0]!.headers.get('traceparent')).toMatch(/^00-0af7/);
    const s = collect('response');
    s.feed('HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!');
    expect(s.out).toHaveLength(1);
    expect(s.out[0]).toMatchObject({ status: 404, bodyBytes: 5 });
  });

  // review, session 63: MAX_HEAD bounded one stream; a peer trickling heads on thousands of connections held it on each
  it('partial heads of all streams together are bounded: a head that would pass the budget gives its stream up, the others go on', () => {
    const was = setPartialHeadBudget(partialHeadBytes() + 4096);
    try {
      const a = collect('request');
      const b = collect('request');
      a.feed(`GET /a HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(1500)}\r\n`);
      expect(a.s.stats.bad).toBe(0);
      b.feed(`GET /b HTTP/1.1\r\nHost: x\r\nX-B: ${'b'.repeat(1500)}\r\n`);
      expect(b.s.stats.bad).toBe(1);
      a.feed('\r\n');
      expect(a.out.map((m) => m.target)).toEqual(['/a']);
      // a's head is released: b's next request has room again
      b.feed(`GET /b2 HTTP/1.1\r\nHost: x\r\nX-B: ${'b'.repeat(1500)}\r\n`);
      b.feed('\r\n');
      expect(b.out.map((m) => m.target)).toEqual(['/b2']);
    } finally {
      setPartialHeadBudget(was);
    }
  });

  it('handles pipelined requests in one syscall, and keep-alive across syscalls', () => {
    const r = collect('request');
    r.feed(req('/1') + req('/2') + `POST /3 HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd` + req('/4'));
    expect(r.out.map((m) => m.target)).toEqual(['/1', '/2', '/3', '/4']);
    r.feed(req('/5'));
    expect(r.out.map((m) => m.target)).toEqual(['/1', '/2', '/3', '/4', '/5']);
  });

  it('reassembles heads split across syscalls (even inside the terminator)', () => {
    const r = collect('request');
    const all = req('/split', 'X-A: 1\r\n');
    for (let i = 0; i < all.length; i += 3) r.feed(all.slice(i, i + 3));
    expect(r.out).toHaveLength(1);
    expect(r.out[0]!.headers.get('x-a')).toBe('1');
    const s = collect('response');
    s.feed('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r');
    s.feed('\nab');
    expect(s.out).toHaveLength(0);
    s.feed('c');
    expect(s.out).toHaveLength(1);
  });

  it('a head arriving in many small reads costs work linear in its length', () => {
    const lines = Array.from({ length: 150 }, (_, i) => `X-Header-${i}: ${'v'.repeat(80)}\r\n`).join('');
    const head = Buffer.from(`GET /many HTTP/1.1\r\nHost: x\r\n${lines}\r\n`, 'latin1');
    const r = collect('request');
    // bytes the parser copied or turned into strings: a partial head rebuilt and rechecked whole
    // per read was quadratic (200 MB here)
    const str = vi.spyOn(Buffer.prototype, 'toString');
    const cat = vi.spyOn(Buffer, 'concat');
    const copy = vi.spyOn(Buffer.prototype, 'copy');
    const len = (b: Buffer, a?: number, z?: number) => Math.max(0, Math.min(z ?? b.length, b.length) - (a ?? 0));
    let work = 0;
    try {
      for (let i = 0; i < head.length; i++) r.feed(head.subarray(i, i + 1));
      work = str.mock.calls.reduce((n, c, i) => n + len(str.mock.contexts[i] as Buffer, c[1] as number, c[2] as number), 0)
        + cat.mock.results.reduce((n, x) => n + (x.value as Buffer).length, 0)
        + copy.mock.calls.reduce((n, c, i) => n + len(copy.mock.contexts[i] as Buffer, c[2] as number, c[3] as number), 0);
    } finally {
      vi.restoreAllMocks();
    }
    expect(r.out.map((m) => [m.target, m.headers.get('x-header-10')])).toEqual([['/many', 'v'.repeat(80)]]);
    expect(work).toBeLessThan(10 * head.length); // about 4.5x: each byte copied in, grown, stringified
  });

  it('skips bodies it did not capture by counting, and finds the next response', () => {
    const s = collect('response');
    const body = 'x'.repeat(100_000);
    s.feed(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 256);
    s.feed('HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n', 256);
    expect(s.out.map((m) => [m.status, m.bodyBytes])).toEqual([[200, 100_000], [201, 0]]);
  });

  it('parses chunked bodies, with chunks split anywhere', () => {
    const s = collect('response');
    const msg = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n';
    for (let i = 0; i < msg.length; i += 4) s.feed(msg.slice(i, i + 4));
    s.feed('HTTP/1.1 204 No Content\r\n\r\n');
    expect(s.out.map((m) => [m.status, m.bodyBytes])).toEqual([[200, 11], [204, 0]]);
  });

  it('obs-fold in chunked trailers is read as in a head: the next message on the connection still parses', () => {
    const s = collect('response');
    s.feed('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Checksum: a\r\n \tb\r\nX-More: 1\n\tfolded\n\r\n');
    s.feed('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    expect(s.out.map((m) => [m.status, m.bodyBytes, m.endInferred])).toEqual([[200, 2, false], [404, 0, false]]);
    expect(s.s.stats.bad).toBe(0);
    // a request, in pieces split inside the fold, then the next one
    const r = collect('request');
    const up = 'POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n  2\r\n\r\n';
    for (let i = 0; i < up.length; i += 5) r.feed(up.slice(i, i + 5));
    r.feed(req('/next'));
    expect(r.out.map((m) => [m.target, m.bodyBytes])).toEqual([['/up', 3], ['/next', 0]]);
    // still invalid as in a head: a fold with no field before it, a control byte in one
    for (const t of ['0\r\n folded\r\n\r\n', '0\r\nX: 1\r\n \x01\r\n\r\n']) {
      const w = collect('response');
      w.feed(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${t}`);
      expect(w.out, JSON.stringify(t)).toEqual([]);
      expect(w.s.stats.bad, JSON.stringify(t)).toBe(1);
    }
  });

  it('chunked framing lost in uncaptured bytes: the message ends where the next one starts', () => {
    const s = collect('response');
    const big = 'y'.repeat(1000);
    s.feed(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n${big}\r\n`, 64);
    s.feed('0\r\n\r\n', 0, 5);
    expect(s.out).toHaveLength(0);
    s.feed('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    expect(s.out.map((m) => m.endInferred)).toEqual([true, false]);
  });

  it('a head cut by the capture limit still gives the start line (truncated)', () => {
    const r = collect('request');
    const long = req('/long', `Cookie: ${'c'.repeat(400)}\r\n`);
    r.feed(long, 64);
    r.s.endOpen(r.next());
    expect(r.out).toHaveLength(1);
    expect(r.out[0]).toMatchObject({ method: 'GET', target: '/long', truncated: true });
  });

  it('a head split over reads whose last bytes were only counted is truncated, as if read at once', () => {
    const r = collect('request');
    const long = req('/pieces', `Cookie: ${'c'.repeat(330)}\r\n`);
    for (let i = 0; i < 300; i += 100) r.feed(long.slice(i, i + 100));
    r.feed('', 0, long.length - 300); // the rest: counted by the kernel, not captured
    r.s.endOpen(r.next());
    expect(r.out).toHaveLength(1);
    expect(r.out[0]).toMatchObject({ method: 'GET', target: '/pieces', truncated: true, startTs: 1n, endInferred: true });
  });

  it('HEAD responses and 1xx have no body', () => {
    const s = collect('response', () => true);
    s.feed('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n');
    expect(s.out.map((m) => [m.status, m.bodyBytes])).toEqual([[200, 0]]);
  });

  it('a 1xx head longer than the capture is skipped too: the final response follows', () => {
    const links = Array.from({ length: 10 }, (_, i) => `Link: </static/asset-${i}.css>; rel=preload; as=style\r\n`).join('');
    const hints = `HTTP/1.1 103 Early Hints\r\n${links}\r\n`;
    expect(hints.length).toBeGreaterThan(256 + 100);
    const s = collect('response');
    s.feed(hints, 256);
    s.feed('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', 256);
    expect(s.out.map((m) => [m.status, m.truncated, m.bodyBytes, m.endInferred])).toEqual([[200, false, 2, false]]);
    // the hints' head split: its uncaptured rest only counted, then the response
    const t = collect('response');
    t.feed(hints.slice(0, 200));
    t.feed(hints.slice(200, 300));
    t.feed('', 0, hints.length - 300);
    t.feed('HTTP/1.1 204 No Content\r\n\r\n', 256);
    expect(t.out.map((m) => [m.status, m.truncated])).toEqual([[204, false]]);
  });

  it('101 Switching Protocols is a final response, ending with its head; nothing after it is parsed', () => {
    const s = collect('response');
    s.feed('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi');
    s.feed('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    s.s.close(9n);
    expect(s.out.map((m) => [m.status, m.endTs, m.endInferred])).toEqual([[101, 1n, false]]);
  });

  it('a response without length ends at close, with the last bytes written (not the close, which comes later)', () => {
    const s = collect('response');
    s.feed('HTTP/1.0 200 OK\r\n\r\nbody');
    s.feed('more'); // ts 2
    expect(s.out).toHaveLength(0);
    s.s.close(100n);
    expect(s.out[0]).toMatchObject({ status: 200, bodyBytes: 8, endTs: 2n, endInferred: true });
    // a head with nothing after it ends at the close
    const t = collect('response');
    t.feed('HTTP/1.0 200 OK\r\n\r\n');
    t.s.close(50n);
    expect(t.out[0]).toMatchObject({ status: 200, bodyBytes: 0, endTs: 50n });
  });

  it('a message cut short in its body by the close still comes out, with the bytes counted so far', () => {
    const r = collect('request');
    r.feed(`POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(100)}`);
    r.feed('y'.repeat(1000), 0); // ts 2: only counted
    expect(r.out).toHaveLength(0);
    r.s.close(100n);
    expect(r.out[0]).toMatchObject({ method: 'POST', bodyBytes: 1100, endTs: 2n, endInferred: true });
    const s = collect('response');
    s.feed('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel');
    s.s.close(50n);
    expect(s.out[0]).toMatchObject({ status: 200, bodyBytes: 3, endTs: 1n, endInferred: true });
  });

  it('garbage, TLS, binary and non-HTTP text produce nothing and do not throw', () => {
    const inputs: Buffer[] = [
      Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]),
      Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'),
      Buffer.from('GE(T / HTTP/1.1\r\n\r\n'),
      Buffer.from('GET / HTTP/2.0\r\n\r\n'),
      Buffer.from('GET / HTTP/1.1\r\nBad Header\r\n\r\n'),
      Buffer.from('GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n'),
      Buffer.from('GET / HTTP/1.1\r\nX: \x00\x01\r\n\r\n'),
      Buffer.from(`GET / HTTP/1.1\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`),
    ];
    let seed = 12345;
    for (let i = 0; i < 200; i++) {
      const b = Buffer.alloc(1 + (i * 37) % 600);
      for (let j = 0; j < b.length; j++) b[j] = (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 255;
      inputs.push(b);
    }
    for (const b of inputs) {
      for (const kind of ['request', 'response'] as const) {
        const r = collect(kind);
        expect(() => {
          r.feed(b);
          for (let k = 0; k < b.length; k += 7) r.feed(b.subarray(k, k + 7));
          r.s.close(1000n);
        }).not.toThrow();
        expect(r.out).toEqual([]);
      }
    }
  });

  it('huge heads are refused (bounded memory) and the stream recovers at the next valid request', () => {
    const r = collect('request');
    r.feed('GET / HTTP/1.1\r\n');
    for (let i = 0; i < 100; i++) r.feed(`X-Pad-${i}: ${'p'.repeat(300)}\r\n`);
    expect(r.out).toHaveLength(0);
    expect(r.s.state).toBe('bad');
    r.feed(req('/ok'));
    expect(r.out.map((m) => m.target)).toEqual(['/ok']);
  });

  it('checks the head byte by byte: bad start lines, header names and values, lone CR/LF give nothing', () => {
    const bad = [
      'GET  / HTTP/1.1\r\nHost: x\r\n\r\n', // empty target
      'GET / x HTTP/1.1\r\nHost: x\r\n\r\n', // space in the target
      'GET /\x7f HTTP/1.1\r\n\r\n', // DEL in the target
      'GET / HTTP/1.2\r\n\r\n',
      'GET / HTTP/1.1\r\nHost : x\r\n\r\n', // space before the colon
      'GET / HTTP/1.1\r\n: x\r\n\r\n', // empty name
      'GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n', // lone CR in a value
      'GET / HTTP/1.1\r\nX-A: a\nb\r\n\r\n', // lone LF in a value
      'GET / HTTP/1.1\r\nX-A: a\x01\r\n\r\n',
      'GET / HTTP/1.1\rX\r\n\r\n',
    ];
    for (const h of bad) {
      const r = collect('request');
      r.feed(h);
      expect(r.out, JSON.stringify(h)).toEqual([]);
    }
    for (const h of ['HTTP/1.1 20 OK\r\n\r\n', 'HTTP/1.1 600 X\r\n\r\n', 'HTTP/1.1 200OK\r\n\r\n', 'HTTP/1.1 200 O\x01K\r\n\r\n', 'HTTP/1.3 200 OK\r\n\r\n']) {
      const s = collect('response');
      s.feed(h);
      expect(s.out, JSON.stringify(h)).toEqual([]);
    }
    // the edges that are valid: an empty reason, no reason, obs-text and tabs in values, blanks trimmed
    const s = collect('response');
    s.feed('HTTP/1.1 204 \r\n\r\nHTTP/1.0 204\r\n\r\n');
    expect(s.out.map((m) => [m.status, m.reason, m.version])).toEqual([[204, '', '1.1'], [204, '', '1.0']]);
    const r = collect('request');
    r.feed('OPTIONS * HTTP/1.0\r\nX-Cafe: \t caf\u00e9 \t\r\nHOST:  h:81 \r\nhost: second\r\n\r\n');
    expect(r.out).toHaveLength(1);
    expect(r.out[0]).toMatchObject({ method: 'OPTIONS', target: '*', version: '1.0' });
    expect(r.out[0]!.headers.get('host')).toBe('h:81'); // first of duplicates, case-insensitive, trimmed
    expect(r.out[0]!.headers.get('x-cafe')).toBe('caf\u00e9');
    const t = collect('request');
    t.feed('GET / HTTP/1.1\r\nX-Caf\u00e9: v\r\n\r\n'); // obs-text in a name: not a token
    expect(t.out).toEqual([]);
  });

  it('a request line longer than the capture gives the method and the target known so far, truncated', () => {
    const r = collect('request');
    const target = `/files/${'a'.repeat(400)}?q=1`;
    r.feed(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`, 256);
    r.s.endOpen(r.next());
    expect(r.out).toHaveLength(1);
    expect(r.out[0]).toMatchObject({ method: 'GET', target: target.slice(0, 252), targetTruncated: true, truncated: true, endInferred: true, version: '' });
    expect(r.s.stats).toMatchObject({ messages: 1, truncated: 1, bad: 0 });
    // the target complete, the version cut: the target is whole
    const t = collect('request');
    t.feed(`PUT /x HTTP/1.1\r\nHost: x\r\n\r\n`, 10);
    t.s.endOpen(t.next());
    expect(t.out[0]).toMatchObject({ method: 'PUT', target: '/x', targetTruncated: false, truncated: true });
    // only the method and its space: the target is unknown, not empty
    const u = collect('request');
    u.feed(`DELETE /y HTTP/1.1\r\n\r\n`, 7);
    u.s.endOpen(u.next());
    expect(u.out[0]).toMatchObject({ method: 'DELETE', target: '', targetTruncated: true, truncated: true });
    // a status line longer than the capture (a long reason phrase): the status is known
    const s = collect('response');
    s.feed(`HTTP/1.1 503 ${'Busy '.repeat(80)}\r\nContent-Length: 0\r\n\r\n`, 256);
    s.s.close(s.next());
    expect(s.out.map((m) => [m.status, m.truncated, m.version])).toEqual([[503, true, '1.1']]);
  });

  it('a cut start line that is not one is counted as a parser error, not dropped silently', () => {
    for (const [line, cap] of [[`GET /a b${'c'.repeat(300)} HTTP/1.1\r\n\r\n`, 256], [`GET /a HTTX/1.1\r\n\r\n`, 12], [`HTTP/1.1 200 ${'\x01'.repeat(300)}\r\n\r\n`, 256], [`HTTP/1.1 200\r${'x'.repeat(300)}\r\n\r\n`, 256]] as const) {
      const kind = line.startsWith('HTTP') ? 'response' : 'request';
      const r = collect(kind);
      r.feed(line, cap);
      r.s.close(r.next());
      expect(r.out, JSON.stringify(line.slice(0, 20))).toEqual([]);
      expect(r.s.stats.bad, JSON.stringify(line.slice(0, 20))).toBe(1);
    }
    // nothing known yet (the capture ends inside the method): counted too
    const r = collect('request');
    r.feed('PROPFIND /dav/ HTTP/1.1\r\n\r\n', 4);
    r.s.close(r.next());
    expect(r.out).toEqual([]);
    expect(r.s.stats.bad).toBe(1);
  });

  it('obs-fold and bare LF line ends (RFC 9112 §2.2, §5.2) are read as a recipient may', () => {
    const s = collect('response');
    s.feed('HTTP/1.1 200 OK\r\nX-Long: a \r\n \t b\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n');
    expect(s.out.map((m) => [m.status, m.bodyBytes, m.headers.get('x-long'), m.headers.get('transfer-encoding')])).toEqual([[200, 2, 'a b', 'gzip, chunked']]);
    // Transfer-Encoding over two lines is one list; a coding other than chunked last outranks
    // Content-Length: the response runs to the close
    const te = collect('response');
    te.feed('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n');
    expect(te.out.map((m) => [m.status, m.bodyBytes])).toEqual([[200, 2]]);
    const gz = collect('response');
    gz.feed('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nokmore');
    gz.feed('still the body');
    expect(gz.out).toEqual([]);
    gz.s.close(gz.next());
    expect(gz.out.map((m) => [m.status, m.bodyBytes])).toEqual([[200, 20]]);
    // folds after folds, one of blanks only: one SP per fold, the blanks around it gone
    const f = collect('response');
    f.feed('HTTP/1.1 200 OK\r\nX-M: a\r\n b \r\n   \r\n\tc\t\r\n d\r\nContent-Length: 0\r\n\r\n');
    expect(f.out.map((m) => m.headers.get('x-m'))).toEqual(['a b c d']);
    const t = collect('response');
    t.feed('HTTP/1.1 200 OK\nContent-Length: 2\n\nokHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\nx');
    t.feed('HTTP/1.0 204 No Content\n\r\n');
    expect(t.out.map((m) => [m.status, m.bodyBytes, m.reason])).toEqual([[200, 2, 'OK'], [404, 1, 'Not Found'], [204, 0, 'No Content']]);
    // a bare-LF head split across reads, its blank line too; a body with CRLFCRLF in it does not end the head
    const u = collect('response');
    const msg = 'HTTP/1.1 200 OK\nX-A: 1\n  folded\nContent-Length: 6\n\n\r\n\r\nab';
    for (let i = 0; i < msg.length; i += 3) u.feed(msg.slice(i, i + 3));
    expect(u.out.map((m) => [m.status, m.bodyBytes, m.headers.get('x-a')])).toEqual([[200, 6, '1 folded']]);
    const r = collect('request');
    r.feed('GET /lf HTTP/1.1\nHost: h\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n\n');
    expect(r.out.map((m) => [m.target, m.headers.get('host'), m.headers.get('traceparent')?.slice(0, 6)])).toEqual([['/lf', 'h', '00-0af']]);
    // a head cut by the capture with bare LFs keeps its complete lines
    const v = collect('request');
    v.feed(`GET /cut HTTP/1.1\nHost: h\nCookie: ${'c'.repeat(400)}\n\n`, 64);
    v.s.endOpen(v.next());
    expect(v.out.map((m) => [m.target, m.headers.get('host'), m.truncated])).toEqual([['/cut', 'h', true]]);
    // still invalid: a bare CR, a fold before the first header, a fold line in a start line's place
    for (const h of ['HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n', 'HTTP/1.1 200 OK\r\n folded\r\nX: 1\r\n\r\n', 'HTTP/1.1 200 OK\n\rX: 1\n\n']) {
      const w = collect('response');
      w.feed(h);
      expect(w.out, JSON.stringify(h)).toEqual([]);
    }
  });

  it('any token is a method (RFC 9110 §9.1): WebDAV and extension methods parse, non-tokens do not', () => {
    const r = collect('request');
    r.feed('PROPFIND /dav/ HTTP/1.1\r\nDepth: 1\r\n\r\nMKCOL /dav/new/ HTTP/1.1\r\n\r\nREPORT /cal HTTP/1.1\r\n\r\nM-SEARCH * HTTP/1.1\r\n\r\nVERSION-CONTROL /v HTTP/1.1\r\n\r\n');
    // split inside a long method too
    r.feed('BASELINE-CON');
    r.feed('TROL /b HTTP/1.1\r\n\r\n');
    expect(r.out.map((m) => [m.method, m.target])).toEqual([['PROPFIND', '/dav/'], ['MKCOL', '/dav/new/'], ['REPORT', '/cal'], ['M-SEARCH', '*'], ['VERSION-CONTROL', '/v'], ['BASELINE-CONTROL', '/b']]);
    for (const h of ['GE(T / HTTP/1.1\r\n\r\n', 'G\u00c9T / HTTP/1.1\r\n\r\n', '\x16\x03\x01 / HTTP/1.1\r\n\r\n', 'SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\r\n', '220 mail.example.com ESMTP\r\n\r\n']) {
      const t = collect('request');
      t.feed(h);
      expect(t.out, JSON.stringify(h)).toEqual([]);
    }
  });

  it('after a resync a request whose first read is a single byte is not lost', () => {
    const r = collect('request');
    r.feed('GET / HTTP/1.1\r\nBad Header\r\n\r\n');
    expect(r.s.state).toBe('bad');
    r.feed('G');
    r.feed('ET /ok HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(r.out.map((m) => [m.target, m.startTs])).toEqual([['/ok', 2n]]);
    expect(r.s.stats.bad).toBe(1);
    // a held byte that does not begin a request after all: still bad, not counted again
    r.feed('GET / HTTP/1.1\r\nBad Header\r\n\r\n');
    r.feed('P');
    r.feed('\x00\x01garbage');
    r.feed(req('/again'));
    expect(r.out.map((m) => m.target)).toEqual(['/ok', '/again']);
    expect(r.s.stats.bad).toBe(2);
    // an open response (chunk framing lost in uncaptured bytes): bytes held are body if no head follows
    const lost = `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n${'y'.repeat(1000)}\r\n`;
    const s = collect('response');
    s.feed(lost, 64);
    expect(s.s.state).toBe('open');
    s.feed('H');
    s.feed('TTP/1.1 204 No Content\r\n\r\n');
    expect(s.out.map((m) => [m.status, m.bodyBytes, m.endInferred])).toEqual([[200, 1002, true], [204, 0, false]]);
    const o = collect('response');
    o.feed(lost, 64);
    o.feed('H');
    o.feed('ello, more body');
    o.s.close(o.next());
    expect(o.out.map((m) => [m.status, m.bodyBytes])).toEqual([[200, 1002 + 1 + 15]]);
  });

  it('bytes held back at a resync that do not begin the next message leave it alone', () => {
    // the last byte of a lost body, then a request: not a request with the method "xGET"
    const r = collect('request');
    r.feed('GET / HTTP/1.1\r\nBad Header\r\n\r\n');
    r.feed('x');
    r.feed(req('/c'));
    expect(r.out.map((m) => [m.method, m.target, m.startTs])).toEqual([['GET', '/c', 3n]]);
    // an open response's last body bytes in a write of their own, then the next response
    const s = collect('response');
    s.feed(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n${'y'.repeat(1000)}\r\n`, 64);
    s.feed('ok');
    s.feed('HTTP/1.1 204 No Content\r\n\r\n');
    expect(s.out.map((m) => [m.status, m.bodyBytes, m.endTs])).toEqual([[200, 1004, 2n], [204, 0, 3n]]);
  });

  it('a resync takes a start line with a method in use; text that only looks like one is not a new message, nor counted again', () => {
    const r = collect('request');
    r.feed('GET / HTTP/1.1\r\nBad Header\r\n\r\n');
    expect(r.s.stats.bad).toBe(1);
    // a bad stream's later bytes: words and a space, the tail of a request line (method cut)
    r.feed('Hello world, more text\r\n\r\n');
    r.feed('HELLO WORLD and more\r\n\r\n');
    r.feed('T /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n');
    // a line cut by the capture that looks like a start until its version does not: tried, not counted
    r.feed(`HELLO world and more ${'x'.repeat(300)}`, 256);
    expect(r.out).toEqual([]);
    expect(r.s.stats.bad).toBe(1);
    r.feed('PROPFIND /dav/ HTTP/1.1\r\n\r\n');
    expect(r.out.map((m) => m.method)).toEqual(['PROPFIND']);
    // an open request (its head cut by the capture): a body read beginning with words is body
    const u = collect('request');
    u.feed(`POST /up HTTP/1.1\r\nCookie: ${'c'.repeat(400)}\r\n\r\n`, 64);
    u.feed('upload text with words in it');
    u.s.endOpen(u.next());
    expect(u.out.map((m) => [m.target, m.bodyBytes, m.endTs])).toEqual([['/up', 28, 2n]]);
    expect(u.s.stats.bad).toBe(0);
  });

  it('a resync takes a request line only where a line starts: a method seen from its middle is no method', () => {
    // a head cut by the capture (open), the next request's first byte at the end of that read,
    // the rest in the next read: after the answer to the first, 'ET /b …' is the tail of 'GET'
    const r = collect('request');
    r.feed(`GET /a HTTP/1.1\r\nCookie: ${'c'.repeat(400)}\r\n\r\nG`, 64);
    r.s.endOpen(r.next());
    r.feed('ET /b HTTP/1.1\r\nHost: x\r\n\r\n');
    // the read after it began at a line start (its bytes were all seen): a request there is one
    r.feed(req('/c'));
    expect(r.out.map((m) => [m.method, m.target])).toEqual([['GET', '/a'], ['GET', '/c']]);
    expect(r.s.stats.bad, 'the request lost in the cut is counted').toBe(1);
    // a bad stream after bytes only counted: 'OST', 'ELETE', 'PTIONS' are tails of methods, and a
    // pipelined request after the clipped one, at a line start inside the same read, is taken
    for (const tail of ['OST', 'ELETE', 'PTIONS', 'ATCH', 'OCK']) {
      const b = collect('request');
      b.feed('GET / HTTP/1.1\r\nBad Header\r\n\r\n');
      b.feed('', 0, 700);
      b.feed(`${tail} /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n`);
      expect(b.out.map((m) => [m.method, m.target]), tail).toEqual([['GET', '/c']]);
    }
    // an open request's read that begins inside a line: the bytes before the next line start
    // are its body, the request at that line start is the next one
    const o = collect('request');
    o.feed(`POST /up HTTP/1.1\r\nCookie: ${'c'.repeat(400)}\r\n\r\n`, 64);
    o.feed('OST /d HTTP/1.1\r\nHost: x\r\n\r\nPUT /e HTTP/1.1\r\nContent-Length: 0\r\n\r\n');
    expect(o.out.map((m) => [m.method, m.target, m.bodyBytes])).toEqual([['POST', '/up', 28], ['PUT', '/e', 0]]);
    // where the byte before was seen to end a line, any method in use starts a request
    const l = collect('request');
    l.feed('GET / HTTP/1.1\r\nBad Header\r\n\r\n');
    l.feed('MKCALENDAR /cal/ HTTP/1.1\r\n\r\n');
    l.feed('garbage\r\n');
    l.feed('ELETE /x HTTP/1.1\r\n\r\n');
    expect(l.out.map((m) => m.method)).toEqual(['MKCALENDAR', 'ELETE']);
  });

  it('a message lost because it began in bytes that were not captured is counted', () => {
    // two responses in one write past the capture: the second's head was never seen
    const s = collect('response');
    const one = 'HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n' + 'b'.repeat(300);
    s.feed(one + 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n', 256);
    expect(s.out.map((m) => m.status)).toEqual([200]);
    expect(s.s.stats.bad).toBe(1);
  });

  it('headers the tracer reads and any other name agree with a plain Map of the first 64 names', () => {
    const r = collect('request');
    const lines = Array.from({ length: 70 }, (_, i) => `X-${i}: v${i}\r\n`).join('');
    r.feed(`GET /m HTTP/1.1\r\nUser-Agent: ua\r\nX-Long: ${'l'.repeat(600)}\r\n${lines}Host: late\r\n\r\n`);
    expect(r.out).toHaveLength(1);
    const h = r.out[0]!.headers;
    expect(h.get('user-agent')).toBe('ua');
    expect(h.get('x-long')).toHaveLength(512);
    expect(h.get('x-61')).toBe('v61'); // the 64th distinct name
    expect(h.get('x-62')).toBeUndefined();
    expect(h.get('host')).toBeUndefined(); // past the limit, hot or not
  });
});
