// A bounded, hardened HTTP/1.1 stream parser for one direction of one connection, fed with what
// the kernel saw: per syscall the number of bytes that moved (`len`) and the first bytes of them
// (`data`, at most the capture limit). Bodies are skipped by counting, so a 10 MB response costs
// nothing; heads must be inside captured bytes. Whatever does not parse (binary garbage, non-HTTP
// on an HTTP port, huge heads) yields no message: the stream goes "bad" and only resynchronises at
// a syscall whose bytes begin with a complete, valid start line. Memory per stream is bounded by
// MAX_HEAD. It never throws on input.

export interface HttpHeadFields {
  /** request */
  method?: string;
  target?: string;
  /** response */
  status?: number;
  reason?: string;
  version: string;
  /** lower-cased names, first MAX_HEADERS, values cut at MAX_VALUE; later duplicates ignored */
  headers: Map<string, string>;
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
const CR = 13, LF = 10;

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

function parseHead(head: string, kind: 'request' | 'response'): HttpHeadFields | null {
  const lines = head.split('\r\n');
  const first = lines[0]!;
  const out: HttpHeadFields = { version: '1.1', headers: new Map() };
  if (kind === 'request') {
    const m = REQ_LINE.exec(first);
    if (!m) return null;
    out.method = m[1];
    out.target = m[2];
    out.version = m[3]!;
  } else {
    const m = RES_LINE.exec(first);
    if (!m) return null;
    out.version = m[1]!;
    out.status = Number(m[2]);
    out.reason = m[3] ?? '';
  }
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]!;
    if (l === '') continue;
    const h = header(l);
    if (!h) return null;
    if (out.headers.size < LIMITS.MAX_HEADERS && !out.headers.has(h[0])) out.headers.set(h[0], h[1].slice(0, LIMITS.MAX_VALUE));
  }
  return out;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * One header line → [lower-case name, value without surrounding blanks], or null: the same
 * grammar as HEADER, without its backtracking (the lazy value group was a tenth of the consumer).
 */
function header(l: string): [string, string] | null {
  const colon = l.indexOf(':');
  if (colon <= 0) return null;
  const name = l.slice(0, colon);
  if (!TOKEN.test(name)) return null;
  let a = colon + 1, b = l.length;
  while (a < b && (l.charCodeAt(a) === 32 || l.charCodeAt(a) === 9)) a++;
  while (b > a && (l.charCodeAt(b - 1) === 32 || l.charCodeAt(b - 1) === 9)) b--;
  const value = l.slice(a, b);
  if (BAD_VALUE.test(value)) return null;
  return [name.toLowerCase(), value];
}

type Mode = 'head' | 'length' | 'chunked' | 'open' | 'bad';
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
 */
export class HttpStream {
  private mode: Mode = 'head';
  private head: Buffer[] = [];
  private headLen = 0;
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
            // the next head begins in bytes we did not see
            this.giveUp(false);
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
          pos = len;
          break;
      }
    }
    this.lastTs = ts;
  }

  /**
   * The connection closed: an open-ended message ended with the last bytes this stream saw (the
   * close itself comes later: after the peer read them, from softirq). A message with no
   * body bytes ends at `ts`.
   */
  close(ts: bigint): void {
    if (this.mode === 'open' && this.cur) this.finish(this.cur.bodyBytes > 0 && this.lastTs ? this.lastTs : ts, true);
    this.head = [];
    this.headLen = 0;
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

  private giveUp(countBad = true): void {
    if (countBad) this.stats.bad++;
    this.head = [];
    this.headLen = 0;
    this.cur = null;
    this.mode = 'bad';
  }

  private takeHead(ts: bigint, data: Buffer, pos: number, cap: number, len: number): number {
    if (this.headLen === 0) this.headStart = ts;
    const piece = data.subarray(pos, cap);
    const prevLen = this.headLen;
    this.head.push(piece);
    this.headLen += piece.length;
    const all = this.head.length === 1 ? piece : Buffer.concat(this.head, this.headLen);
    this.head = [all];
    // search from a little before the new piece: the terminator may straddle syscalls
    const end = all.indexOf('\r\n\r\n', Math.max(0, prevLen - 3), 'latin1');
    if (end < 0) {
      if (this.headLen > LIMITS.MAX_HEAD || !this.plausible(all)) {
        this.giveUp();
        return len;
      }
      if (cap < len) {
        // the head runs on into bytes that were not captured: keep what the start line says
        const lineEnd = all.indexOf('\r\n', 0, 'latin1');
        const fields = lineEnd > 0 ? parseHead(all.toString('latin1', 0, all.lastIndexOf('\r\n')), this.kind) : null;
        if (!fields) {
          this.giveUp(lineEnd > 0);
          return len;
        }
        this.begin(fields, ts, true);
        this.cur!.bodyBytes = 0;
        this.mode = 'open';
        this.stats.truncated++;
        this.head = [];
        this.headLen = 0;
        return len;
      }
      // kept for the next syscall: a copy (the caller's bytes may be a view on the kernel ring)
      if (this.head[0] === piece) this.head = [Buffer.from(piece)];
      return cap;
    }
    if (end + 4 > LIMITS.MAX_HEAD) {
      this.giveUp();
      return len;
    }
    const fields = parseHead(all.toString('latin1', 0, end), this.kind);
    const consumed = end + 4 - prevLen;
    this.head = [];
    this.headLen = 0;
    if (!fields) {
      this.giveUp();
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

  /** could these bytes (no complete head yet) still become a valid head? */
  private plausible(b: Buffer): boolean {
    if (!startsLikeHttp(b, this.kind)) return false;
    const lineEnd = b.indexOf('\r\n', 0, 'latin1');
    if (lineEnd < 0) return b.length <= 8192 && !b.includes(0);
    const lines = b.toString('latin1').split('\r\n');
    const first = lines[0]!;
    if (this.kind === 'request' ? !REQ_LINE.test(first) : !RES_LINE.test(first)) return false;
    // every complete header line must be a header; the last one may be partial
    for (let i = 1; i < lines.length - 1; i++) if (lines[i] !== '' && !HEADER.test(lines[i]!)) return false;
    return !/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(lines[lines.length - 1]!);
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
