// A bounded, hardened HTTP/1.1 stream parser for one direction of one connection, fed with what
// the kernel saw: per syscall the number of bytes that moved (`len`) and the first bytes of them
// (`data`, at most the capture limit). Bodies are skipped by counting, so a 10 MB response costs
// nothing; heads must be inside captured bytes. Whatever does not parse (binary garbage, non-HTTP
// on an HTTP port, huge heads) yields no message: the stream goes "bad" and only resynchronises at
// a syscall whose bytes begin with a complete, valid start line. Memory per stream is bounded by
// MAX_HEAD. It never throws on input.

/** what a head's headers can be asked for (a Map satisfies it) */
export interface HeaderLookup {
  get(name: string): string | undefined;
}

export interface HttpHeadFields {
  /** request */
  method?: string;
  target?: string;
  /** response */
  status?: number;
  reason?: string;
  version: string;
  /** lower-cased names, first MAX_HEADERS, values cut at MAX_VALUE; later duplicates ignored */
  headers: HeaderLookup;
}

export interface HttpMessage extends HttpHeadFields {
  kind: 'request' | 'response';
  /** ts of the syscall that carried the first byte / the head's end / the last byte */
  startTs: bigint;
  headEndTs: bigint;
  endTs: bigint;
  /** body bytes counted (not captured) */
  bodyBytes: number;
  /** the head went past the captured bytes: headers may be missing, the end is inferred */
  truncated: boolean;
  /** the end was inferred (next message or close), not computed from the framing */
  endInferred: boolean;
}

export const LIMITS = { MAX_HEAD: 16 * 1024, MAX_HEADERS: 64, MAX_VALUE: 512, MAX_CHUNK_LINE: 256 } as const;

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'];
const REQ_LINE = /^(GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|CONNECT|TRACE) ([\x21-\x7e]+) HTTP\/(1\.[01])$/;
const RES_LINE = /^HTTP\/(1\.[01]) ([1-5]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/;
const HEADER = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[\t ]*([\t\x20-\x7e\x80-\xff]*?)[\t ]*$/;
const CR = 13, LF = 10, SP = 32, HT = 9, COLON = 58;
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

/** does `b` (from its start) look like the beginning of a start line of this kind? */
export function startsLikeHttp(b: Buffer, kind: 'request' | 'response', complete = false): boolean {
  const n = Math.min(b.length, 32);
  const s = b.toString('latin1', 0, n);
  if (kind === 'response') {
    if (complete) return /^HTTP\/1\.[01] [1-5]\d\d[ \r]/.test(s);
    const want = 'HTTP/1.';
    return want.startsWith(s.slice(0, want.length)) && (s.length <= want.length || /^HTTP\/1\.[01]( [1-5]?\d?\d?)?/.test(s));
  }
  const sp = s.indexOf(' ');
  if (sp < 0) return !complete && METHODS.some((m) => m.startsWith(s));
  if (!METHODS.includes(s.slice(0, sp))) return false;
  return !complete || s.length > sp + 1 && /[/*a-zA-Z]/.test(s[sp + 1]!);
}

// Byte classes for the head grammar: a header name is a token; a value may hold HTAB, SP,
// visible ASCII and obs-text (0x80-0xff), no other control byte; a request target is visible ASCII.
const TCHAR = new Uint8Array(256);
const VCHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  TCHAR[c] = /[!#$%&'*+.^_`|~0-9A-Za-z-]/.test(ch) ? 1 : 0;
  VCHAR[c] = c === HT || (c >= 0x20 && c !== 0x7f) ? 1 : 0;
}
const METHOD_BYTES = METHODS.map((m) => Buffer.from(m, 'latin1'));

/**
 * The headers the tracer itself reads are taken out while the head is checked (first occurrence,
 * lower-cased name); any other name is looked up in a Map built on first use from a copy of the
 * header lines. Per message that saves a string and a Map entry per header (the head parse was a
 * third of the consumer's CPU).
 */
const HOT = ['host', 'user-agent', 'traceparent', 'content-length', 'transfer-encoding'] as const;
const HOT_BYTES = HOT.map((h) => Buffer.from(h, 'latin1'));

class HeadHeaders implements HeaderLookup {
  /** values of HOT, by index; undefined = absent */
  readonly hot: (string | undefined)[] = [undefined, undefined, undefined, undefined, undefined];
  private map: Map<string, string> | null = null;
  /**
   * header lines ("\r\n"-separated, no terminator) copied as a latin1 string (the caller's bytes
   * may view the kernel ring): a flat string is cheaper for the GC to keep than a Buffer
   */
  constructor(private readonly raw: string | null) {}

  get(name: string): string | undefined {
    const i = (HOT as readonly string[]).indexOf(name);
    if (i >= 0) return this.hot[i];
    if (!this.raw) return undefined;
    if (!this.map) {
      const b = Buffer.from(this.raw, 'latin1');
      this.map = headerMap(b, 0, b.length);
    }
    return this.map.get(name);
  }
}

/** the header lines in b[start, end) as a Map (grammar already checked) */
function headerMap(b: Buffer, start: number, end: number): Map<string, string> {
  const out = new Map<string, string>();
  for (let p = start; p < end && out.size < LIMITS.MAX_HEADERS;) {
    let e = b.indexOf(CR, p);
    if (e < 0 || e > end) e = end;
    const colon = b.indexOf(COLON, p);
    if (colon > p && colon < e) {
      const name = b.toString('latin1', p, colon).toLowerCase();
      let a = colon + 1, z = e;
      while (a < z && (b[a] === SP || b[a] === HT)) a++;
      while (z > a && (b[z - 1] === SP || b[z - 1] === HT)) z--;
      if (!out.has(name)) out.set(name, b.toString('latin1', a, Math.min(z, a + LIMITS.MAX_VALUE)));
    }
    p = e + 2;
  }
  return out;
}

/** index in HOT of the header name b[p, colon), case-insensitive, or -1 */
function hotIndex(b: Buffer, p: number, colon: number): number {
  const n = colon - p;
  for (let i = 0; i < HOT_BYTES.length; i++) {
    const h = HOT_BYTES[i]!;
    if (h.length !== n) continue;
    let k = 0;
    while (k < n && (b[p + k]! | 0x20) === h[k]) k++;
    if (k === n) return i;
  }
  return -1;
}

/** "HTTP/1.0" or "HTTP/1.1" at b[at] (both start lines end or begin with one) */
function isVer(b: Buffer, at: number): boolean {
  return at >= 0 && b[at] === 72 && b[at + 1] === 84 && b[at + 2] === 84 && b[at + 3] === 80 && b[at + 4] === 47 && b[at + 5] === 49 && b[at + 6] === 46 && (b[at + 7] === 48 || b[at + 7] === 49);
}

/**
 * A head (start line and header lines, without the final CRLFCRLF) in b[0, end) → its fields, or
 * null when it breaks the grammar. Works on the bytes: strings are made only for what is kept.
 */
function parseHead(b: Buffer, end: number, kind: 'request' | 'response'): HttpHeadFields | null {
  let lineEnd = b.indexOf(CR, 0);
  if (lineEnd < 0 || lineEnd > end) lineEnd = end;
  if (lineEnd < end && b[lineEnd + 1] !== LF) return null;
  const out: HttpHeadFields = { method: undefined, target: undefined, status: undefined, reason: undefined, version: '1.1', headers: EMPTY_HEADERS };
  if (kind === 'request') {
    const sp = b.indexOf(SP, 0);
    if (sp <= 0 || sp >= lineEnd) return null;
    let m = -1;
    for (let i = 0; i < METHOD_BYTES.length && m < 0; i++) {
      const mb = METHOD_BYTES[i]!;
      if (mb.length !== sp) continue;
      let k = 0;
      while (k < sp && b[k] === mb[k]) k++;
      if (k === sp) m = i;
    }
    const v = lineEnd - 8;
    if (m < 0 || v - 1 <= sp + 1 || b[v - 1] !== SP || !isVer(b, v)) return null;
    for (let i = sp + 1; i < v - 1; i++) if (b[i]! < 0x21 || b[i]! > 0x7e) return null;
    out.method = METHODS[m];
    out.target = b.toString('latin1', sp + 1, v - 1);
    out.version = b[v + 7] === 49 ? '1.1' : '1.0';
  } else {
    if (lineEnd < 12 || !isVer(b, 0) || b[8] !== SP) return null;
    const d0 = b[9]! - 48, d1 = b[10]! - 48, d2 = b[11]! - 48;
    if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return null;
    if (lineEnd > 12 && b[12] !== SP) return null;
    for (let i = 13; i < lineEnd; i++) if (!VCHAR[b[i]!]) return null;
    out.version = b[7] === 49 ? '1.1' : '1.0';
    out.status = d0 * 100 + d1 * 10 + d2;
    out.reason = lineEnd > 13 ? (lineEnd === 15 && b[13] === 79 && b[14] === 75 ? 'OK' : b.toString('latin1', 13, lineEnd)) : '';
  }
  if (lineEnd >= end) return out;
  // header lines: check each, take the hot ones
  const first = lineEnd + 2;
  const h = new HeadHeaders(b.toString('latin1', first, end));
  let lines = 0;
  for (let p = first; p < end;) {
    let e = b.indexOf(CR, p);
    if (e < 0 || e > end) e = end;
    if (e < end && b[e + 1] !== LF) return null;
    if (e > p) {
      let colon = p;
      while (colon < e && TCHAR[b[colon]!]) colon++;
      if (colon === p || colon === e || b[colon] !== COLON) return null;
      for (let i = colon + 1; i < e; i++) if (!VCHAR[b[i]!]) return null;
      if (++lines <= LIMITS.MAX_HEADERS) {
        const hi = hotIndex(b, p, colon);
        if (hi >= 0 && h.hot[hi] === undefined) {
          let a = colon + 1, z = e;
          while (a < z && (b[a] === SP || b[a] === HT)) a++;
          while (z > a && (b[z - 1] === SP || b[z - 1] === HT)) z--;
          h.hot[hi] = b.toString('latin1', a, Math.min(z, a + LIMITS.MAX_VALUE));
        }
      }
    }
    p = e + 2;
  }
  if (lines > LIMITS.MAX_HEADERS) {
    // past the limit only the first MAX_HEADERS distinct names count: take the hot ones from the Map
    const all = headerMap(b, first, end);
    HOT.forEach((n, i) => (h.hot[i] = all.get(n)));
  }
  out.headers = h;
  return out;
}

const EMPTY_HEADERS: HeaderLookup = new HeadHeaders(null);

type Mode = 'head' | 'length' | 'chunked' | 'open' | 'bad' | 'upgraded';
type ChunkState = 'size' | 'data' | 'crlf' | 'trailer';

export interface StreamStats {
  messages: number;
  /** times the stream was given up (garbage, huge head, lost framing) */
  bad: number;
  truncated: number;
}

/**
 * One direction of one connection. `kind` is what this direction carries. For responses,
 * `noBody(status)` says whether the answered request forbids a body (HEAD; 204/304 are known here).
 * `onHead` gets each final message when its head is known (complete or cut by the capture), before
 * its body; `emit` gets the same object when the message is over. A peer may answer a request
 * whose end we cannot know (truncated head, lost chunk framing, an unread upload), so pairing
 * must not wait for the end.
 */
export class HttpStream {
  private mode: Mode = 'head';
  /**
   * a head begun in an earlier syscall: a copy, in a buffer with room to grow (its first headLen
   * bytes), else null. Appending in place and checking only the new lines keeps a head that
   * arrives in many small reads linear: concatenating and rechecking the whole head per read was
   * quadratic in its length.
   */
  private head: Buffer | null = null;
  private headLen = 0;
  /** where the first line of the partial head not yet checked whole begins (0: the start line) */
  private checked = 0;
  private headStart = 0n;
  private cur: HttpMessage | null = null;
  private remaining = 0;
  private chunk: ChunkState = 'size';
  private line = '';
  private lastTs = 0n;
  readonly stats: StreamStats = { messages: 0, bad: 0, truncated: 0 };

  constructor(
    readonly kind: 'request' | 'response',
    private readonly emit: (m: HttpMessage) => void,
    private readonly noBody: (status: number) => boolean = () => false,
    private readonly onHead?: (m: HttpMessage) => void,
  ) {}

  /** one syscall's worth: `len` bytes moved at `ts`, of which `data` (a prefix) was captured */
  push(ts: bigint, len: number, data: Buffer): void {
    if (len <= 0) return;
    const cap = Math.min(data.length, len);
    let pos = 0;
    // a new message may begin at a syscall boundary: that is where open/bad streams resynchronise
    if ((this.mode === 'open' || this.mode === 'bad') && cap > 0 && startsLikeHttp(data.subarray(0, cap), this.kind, true)) {
      if (this.mode === 'open') this.finish(this.lastTs, true);
      this.mode = 'head';
    }
    let guard = 0;
    while (pos < len && guard++ < 10_000) {
      switch (this.mode) {
        case 'head': {
          if (pos >= cap) {
            // a head split over reads whose last ones were only counted is cut by the capture as
            // surely as one read at once: keep what its start line says
            if (this.head !== null && this.headLen > 0) this.cutHead(ts, this.head.subarray(0, this.headLen));
            // else the next head begins in bytes we did not see
            else this.giveUp(false);
            pos = len;
            break;
          }
          pos = this.takeHead(ts, data, pos, cap, len);
          break;
        }
        case 'length': {
          const n = Math.min(this.remaining, len - pos);
          this.remaining -= n;
          this.cur!.bodyBytes += n;
          pos += n;
          if (this.remaining === 0) {
            this.finish(ts, false);
            this.mode = 'head';
          }
          break;
        }
        case 'chunked':
          pos = this.takeChunked(ts, data, pos, cap, len);
          break;
        case 'open':
          this.cur!.bodyBytes += len - pos;
          pos = len;
          break;
        case 'bad':
        case 'upgraded':
          pos = len;
          break;
      }
    }
    this.lastTs = ts;
  }

  /**
   * The connection closed: an open-ended message ended with the last bytes this stream saw (the
   * close itself comes later: after the peer read them, from softirq). A message with no
   * body bytes ends at `ts`. So does one cut short in its body (an upload the server refused
   * before reading it all, a reset mid-transfer): it happened, with the bytes counted so far.
   */
  close(ts: bigint): void {
    if ((this.mode === 'open' || this.mode === 'length' || this.mode === 'chunked') && this.cur) this.finish(this.cur.bodyBytes > 0 && this.lastTs ? this.lastTs : ts, true);
    this.dropHead();
    this.mode = 'bad';
  }

  /**
   * An open-ended message (truncated head or lost framing) is over when the other side starts
   * anew (a new request): it ended with the last bytes this stream saw, not at `ts`.
   */
  endOpen(ts: bigint): void {
    if (this.mode === 'open' && this.cur) {
      this.finish(this.lastTs || ts, true);
      this.mode = 'head';
    }
  }

  get state(): Mode {
    return this.mode;
  }

  private dropHead(): void {
    this.head = null;
    this.headLen = 0;
    this.checked = 0;
  }

  private giveUp(countBad = true): void {
    if (countBad) this.stats.bad++;
    this.dropHead();
    this.cur = null;
    this.mode = 'bad';
  }

  private takeHead(ts: bigint, data: Buffer, pos: number, cap: number, len: number): number {
    if (this.headLen === 0) this.headStart = ts;
    const prevLen = this.headLen;
    // the common case (a whole head in one syscall, at its start) parses the record's bytes as they are
    const piece = pos === 0 && cap === data.length ? data : data.subarray(pos, cap);
    let all = piece;
    if (this.head !== null) {
      const need = prevLen + piece.length;
      if (need > this.head.length) {
        const grown = Buffer.allocUnsafe(Math.max(need, Math.min(this.head.length * 2, LIMITS.MAX_HEAD + 1)));
        this.head.copy(grown, 0, 0, prevLen);
        this.head = grown;
      }
      piece.copy(this.head, prevLen);
      all = this.head.subarray(0, need);
    }
    this.headLen = prevLen + piece.length;
    // search from a little before the new piece: the terminator may straddle syscalls
    const end = all.indexOf(CRLFCRLF, Math.max(0, prevLen - 3));
    if (end < 0) {
      if (this.headLen > LIMITS.MAX_HEAD || !this.plausible(all, prevLen)) {
        this.giveUp();
        return len;
      }
      if (cap < len) {
        // the head runs on into bytes that were not captured
        this.cutHead(ts, all);
        return len;
      }
      // kept for the next syscall: a copy (the caller's bytes may be a view on the kernel ring)
      if (this.head === null) {
        this.head = Buffer.allocUnsafe(Math.max(2 * piece.length, 512));
        piece.copy(this.head);
      }
      return cap;
    }
    if (end + 4 > LIMITS.MAX_HEAD) {
      this.giveUp();
      return len;
    }
    const fields = parseHead(all, end, this.kind);
    const consumed = end + 4 - prevLen;
    this.dropHead();
    if (!fields) {
      this.giveUp();
      return len;
    }
    if (this.kind === 'response' && fields.status === 101) {
      this.switched(fields, ts, false);
      return len;
    }
    if (this.kind === 'response' && fields.status! < 200) {
      // 1xx: informational, the real response follows
      return pos + consumed;
    }
    this.begin(fields, ts, false);
    const te = fields.headers.get('transfer-encoding');
    const cl = fields.headers.get('content-length');
    const noBody = this.kind === 'response' && (fields.status === 204 || fields.status === 304 || this.noBody(fields.status!));
    if (noBody) {
      this.finish(ts, false);
      this.mode = 'head';
    } else if (te !== undefined && /(^|,)\s*chunked\s*$/i.test(te)) {
      this.mode = 'chunked';
      this.chunk = 'size';
      this.line = '';
    } else if (cl !== undefined) {
      if (!/^\d{1,15}$/.test(cl)) {
        this.giveUp();
        return len;
      }
      this.remaining = Number(cl);
      if (this.remaining === 0) {
        this.finish(ts, false);
        this.mode = 'head';
      } else this.mode = 'length';
    } else if (this.kind === 'request') {
      this.finish(ts, false);
      this.mode = 'head';
    } else {
      // a response without length: delimited by close
      this.mode = 'open';
    }
    return pos + consumed;
  }

  /**
   * A head (no terminator yet) whose rest was not captured: keep what its complete lines say; its
   * end, and so the message's, is inferred (the next message or the close).
   */
  private cutHead(ts: bigint, all: Buffer): void {
    const lineEnd = all.indexOf('\r\n', 0, 'latin1');
    const fields = lineEnd > 0 ? parseHead(all, all.lastIndexOf('\r\n', undefined, 'latin1'), this.kind) : null;
    this.dropHead();
    if (!fields) {
      this.giveUp(lineEnd > 0);
      return;
    }
    if (this.kind === 'response' && fields.status === 101) {
      this.stats.truncated++;
      this.switched(fields, ts, true);
      return;
    }
    if (this.kind === 'response' && fields.status! < 200) {
      // a long informational head (103 Early Hints with many Link headers): the real response
      // still follows, in a write of its own that crosses because it starts like a response
      this.mode = 'head';
      return;
    }
    this.begin(fields, ts, true);
    this.cur!.bodyBytes = 0;
    this.mode = 'open';
    this.stats.truncated++;
  }

  /**
   * 101 Switching Protocols is the final answer to its request (unlike the other 1xx): the
   * exchange ends with its head, and what follows on the connection (WebSocket frames, h2c) is
   * not HTTP/1.1, so nothing after it is parsed until the close (binary frames can look like a
   * start line to a resynchronising parser).
   */
  private switched(f: HttpHeadFields, ts: bigint, truncated: boolean): void {
    this.begin(f, ts, truncated);
    this.finish(ts, false);
    this.dropHead();
    this.mode = 'upgraded';
  }

  /**
   * could these bytes (no complete head yet) still become a valid head? `b[0, prevLen)` passed
   * this check in earlier calls, so only what they completed or added is checked
   */
  private plausible(b: Buffer, prevLen: number): boolean {
    if (this.checked === 0) {
      if (!startsLikeHttp(b, this.kind)) return false;
      // a CRLF may straddle the pieces
      const lineEnd = b.indexOf('\r\n', Math.max(0, prevLen - 1), 'latin1');
      if (lineEnd < 0) return b.length <= 8192 && b.indexOf(0, prevLen) < 0;
      const first = b.toString('latin1', 0, lineEnd);
      if (this.kind === 'request' ? !REQ_LINE.test(first) : !RES_LINE.test(first)) return false;
      this.checked = lineEnd + 2;
    }
    // every complete header line must be a header
    for (;;) {
      const e = b.indexOf('\r\n', Math.max(this.checked, prevLen - 1), 'latin1');
      if (e < 0) break;
      if (e > this.checked && !HEADER.test(b.toString('latin1', this.checked, e))) return false;
      this.checked = e + 2;
    }
    // the last line may be partial: no control bytes but HTAB, CR, LF in it
    for (let i = Math.max(this.checked, prevLen); i < b.length; i++) {
      const c = b[i]!;
      if ((c < 0x20 && c !== HT && c !== LF && c !== CR) || c === 0x7f) return false;
    }
    return true;
  }

  private takeChunked(ts: bigint, data: Buffer, pos: number, cap: number, len: number): number {
    const m = this.cur!;
    while (pos < len) {
      if (this.chunk === 'data') {
        const n = Math.min(this.remaining, len - pos);
        this.remaining -= n;
        m.bodyBytes += n;
        pos += n;
        if (this.remaining === 0) {
          this.chunk = 'crlf';
          this.line = '';
        }
        continue;
      }
      // size lines, CRLF after data and trailers must be seen
      if (pos >= cap) {
        this.mode = 'open';
        m.bodyBytes += len - pos;
        return len;
      }
      const c = data[pos++]!;
      if (c !== LF) {
        if (this.line.length >= LIMITS.MAX_CHUNK_LINE) {
          this.giveUp();
          return len;
        }
        this.line += String.fromCharCode(c);
        continue;
      }
      const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
      this.line = '';
      if (this.chunk === 'crlf') {
        if (line !== '') {
          this.giveUp();
          return len;
        }
        this.chunk = 'size';
      } else if (this.chunk === 'size') {
        const sz = /^([0-9a-fA-F]{1,12})(;.*)?$/.exec(line);
        if (!sz) {
          this.giveUp();
          return len;
        }
        this.remaining = parseInt(sz[1]!, 16);
        this.chunk = this.remaining === 0 ? 'trailer' : 'data';
      } else if (line === '') {
        // end of trailers: message complete
        this.finish(ts, false);
        this.mode = 'head';
        return pos;
      } else if (!HEADER.test(line)) {
        this.giveUp();
        return len;
      }
    }
    return pos;
  }

  private begin(f: HttpHeadFields, ts: bigint, truncated: boolean): void {
    // explicit fields, not a spread of f: one object shape, and the spread was 7% of the consumer
    this.cur = {
      kind: this.kind, method: f.method, target: f.target, status: f.status, reason: f.reason, version: f.version, headers: f.headers,
      startTs: this.headStart || ts, headEndTs: ts, endTs: ts, bodyBytes: 0, truncated, endInferred: false,
    };
    this.onHead?.(this.cur);
  }

  private finish(ts: bigint, inferred: boolean): void {
    const m = this.cur;
    this.cur = null;
    if (!m) return;
    m.endTs = ts > m.startTs ? ts : m.startTs;
    m.endInferred = inferred;
    this.stats.messages++;
    this.emit(m);
  }
}
