// A bounded, hardened HTTP/1.1 stream parser for one direction of one connection, fed with what
// the kernel saw: per syscall the number of bytes that moved (`len`) and the first bytes of them
// (`data`, at most the capture limit). Bodies are skipped by counting, so a 10 MB response costs
// nothing; heads must be inside captured bytes. Whatever does not parse (binary garbage, non-HTTP
// on an HTTP port, huge heads) yields no message: the stream goes "bad" and only resynchronises at
// a complete, valid start line that begins a syscall's bytes or a line in them, a request line
// only where a line is known to start or with a method that cannot be another's tail. Memory per
// stream is bounded by MAX_HEAD. It never throws on input.

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
  /** '1.1' or '1.0'; '' where the capture cut the start line before it */
  version: string;
  /** the capture cut the request line inside the target: `target` is only its first bytes */
  targetTruncated?: boolean;
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

/**
 * Bytes held in partial heads by every stream of the process, and their bound: MAX_HEAD bounds one
 * stream, but a peer trickling heads a byte per write on thousands of connections (slowloris) held
 * MAX_HEAD on each: ~256 MB at the assembler's 16384 connections (review, session 63). A head that
 * would grow past the budget gives its stream up (counted bad), as a head past MAX_HEAD does.
 */
let partialHeads = 0;
let partialHeadsBudget = 32 * 1024 * 1024;
export const partialHeadBytes = (): number => partialHeads;
/** for tests: the budget, returning the one before */
export function setPartialHeadBudget(bytes: number): number {
  const was = partialHeadsBudget;
  partialHeadsBudget = bytes;
  return was;
}

/** the registered methods a message most often has: their strings are shared, not made per message */
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'];
const HEADER = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[\t ]*([\t\x20-\x7e\x80-\xff]*?)[\t ]*$/;
/** an obs-fold line: blanks, then value bytes */
const FOLD = /^[\t ]+[\t\x20-\x7e\x80-\xff]*$/;
const CR = 13, LF = 10, SP = 32, HT = 9, COLON = 58;
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
/**
 * How far a start line is looked at to tell whether bytes at a syscall boundary begin a message:
 * a method is any token (RFC 9110 §9.1), and the longest registered one (UPDATEREDIRECTREF) has 17
 * characters
 */
const START_WINDOW = 32;

// Byte classes for the head grammar: a method and a header name are tokens; a value may hold
// HTAB, SP, visible ASCII and obs-text (0x80-0xff), no other control byte; a request target is
// visible ASCII.
const TCHAR = new Uint8Array(256);
const VCHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  TCHAR[c] = /[!#$%&'*+.^_`|~0-9A-Za-z-]/.test(ch) ? 1 : 0;
  VCHAR[c] = c === HT || (c >= 0x20 && c !== 0x7f) ? 1 : 0;
}
const METHOD_BYTES = METHODS.map((m) => Buffer.from(m, 'latin1'));
/** the IANA HTTP Method Registry (RFC 9110 §16.1) */
const REGISTERED = ['ACL', 'BASELINE-CONTROL', 'BIND', 'CHECKIN', 'CHECKOUT', 'CONNECT', 'COPY', 'DELETE', 'GET', 'HEAD', 'LABEL', 'LINK', 'LOCK', 'MERGE', 'MKACTIVITY', 'MKCALENDAR', 'MKCOL', 'MKREDIRECTREF', 'MKWORKSPACE', 'MOVE', 'OPTIONS', 'ORDERPATCH', 'PATCH', 'POST', 'PRI', 'PROPFIND', 'PROPPATCH', 'PUT', 'QUERY', 'REBIND', 'REPORT', 'SEARCH', 'TRACE', 'UNBIND', 'UNCHECKOUT', 'UNLINK', 'UNLOCK', 'UPDATE', 'UPDATEREDIRECTREF', 'VERSION-CONTROL'];
/**
 * The methods a request may begin with where the byte before it was not seen (after bytes the
 * capture cut or the kernel only counted): registered ones that are not the tail of another
 * registered one. Any token there may be the tail of a longer one ('OST' of POST, 'PTIONS' of
 * OPTIONS); so may LOCK (UNLOCK), BIND, LINK, CHECKOUT and PATCH (PROPPATCH, ORDERPATCH).
 */
const WHOLE_METHODS = new Set([...REGISTERED.filter((m) => !REGISTERED.some((o) => o !== m && o.endsWith(m))), 'PATCH']);
// PATCH is taken there too, although PROPPATCH and ORDERPATCH end with it: a read starts where
// nothing before it was seen after every head longer than the capture (a browser's cookies), so a
// REST API's PATCH on that keep-alive connection was lost each time, while a WebDAV PROPPATCH is
// clipped only by a read boundary right after its 'PROP' (a pipelined one, split there)
const VERSION = Buffer.from('HTTP/1.', 'latin1');

/**
 * Does `b` (from its start) look like the beginning of a start line of this kind? `complete`: it
 * must say so already (a request: method, SP and the target's first byte; a response: version,
 * status and what follows it), and a first line that ends inside `b` must be a whole valid one.
 * Otherwise it need only not be ruled out yet (a prefix of one).
 */
export function startsLikeHttp(b: Buffer, kind: 'request' | 'response', complete = false): boolean {
  const n = Math.min(b.length, START_WINDOW);
  let lf = complete ? b.indexOf(LF) : -1;
  if (lf >= 0) {
    // the whole first line is here: it decides
    const e = lf > 0 && b[lf - 1] === CR ? lf - 1 : lf;
    return startLine(b, e, kind, null);
  }
  if (kind === 'response') {
    let i = 0;
    while (i < n && i < VERSION.length && b[i] === VERSION[i]) i++;
    if (i < n && i < VERSION.length) return false;
    if (n <= VERSION.length) return !complete;
    if (b[7] !== 48 && b[7] !== 49) return false;
    if (n > 8 && b[8] !== SP) return false;
    for (let k = 9; k < Math.min(n, 12); k++) if (b[k]! < 48 || b[k]! > 57 || (k === 9 && (b[k]! < 49 || b[k]! > 53))) return false;
    if (complete) return n > 12 && (b[12] === SP || b[12] === CR);
    return n <= 12 || b[12] === SP || b[12] === CR;
  }
  let k = 0;
  while (k < n && TCHAR[b[k]!]) k++;
  if (k === n) return !complete && n > 0 && n < START_WINDOW;
  if (k === 0 || b[k] !== SP) return false;
  if (!complete) return true;
  if (k + 1 >= n) return false;
  // origin-form, asterisk-form, absolute-form (a scheme), authority-form (a host: name, IPv4, [IPv6])
  const t = b[k + 1]!;
  return t === 47 || t === 42 || t === 91 || (t >= 48 && t <= 57) || ((t | 0x20) >= 97 && (t | 0x20) <= 122);
}

/**
 * Is b[0, lineEnd) a valid start line of this kind (request-line or status-line, RFC 9112 §3,
 * §4)? Its fields go into `out` when given.
 */
function startLine(b: Buffer, lineEnd: number, kind: 'request' | 'response', out: HttpHeadFields | null): boolean {
  if (kind === 'request') {
    let sp = 0;
    while (sp < lineEnd && TCHAR[b[sp]!]) sp++;
    const v = lineEnd - 8;
    if (sp === 0 || b[sp] !== SP || v - 1 <= sp + 1 || b[v - 1] !== SP || !isVer(b, v)) return false;
    for (let i = sp + 1; i < v - 1; i++) if (b[i]! < 0x21 || b[i]! > 0x7e) return false;
    if (out) {
      out.method = methodString(b, sp);
      out.target = b.toString('latin1', sp + 1, v - 1);
      out.version = b[v + 7] === 49 ? '1.1' : '1.0';
    }
    return true;
  }
  if (lineEnd < 12 || !isVer(b, 0) || b[8] !== SP) return false;
  const d0 = b[9]! - 48, d1 = b[10]! - 48, d2 = b[11]! - 48;
  if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return false;
  if (lineEnd > 12 && b[12] !== SP) return false;
  for (let i = 13; i < lineEnd; i++) if (!VCHAR[b[i]!]) return false;
  if (out) {
    out.version = b[7] === 49 ? '1.1' : '1.0';
    out.status = d0 * 100 + d1 * 10 + d2;
    out.reason = lineEnd > 13 ? (lineEnd === 15 && b[13] === 79 && b[14] === 75 ? 'OK' : b.toString('latin1', 13, lineEnd)) : '';
  }
  return true;
}

/** does b begin with one of the common methods and a space? */
export function commonMethod(b: Buffer): boolean {
  for (const mb of METHOD_BYTES) {
    if (b.length <= mb.length || b[mb.length] !== SP) continue;
    let k = 0;
    while (k < mb.length && b[k] === mb[k]) k++;
    if (k === mb.length) return true;
  }
  return false;
}

/** the method b[0, n) as a string: a shared one for the common methods */
function methodString(b: Buffer, n: number): string {
  for (let i = 0; i < METHOD_BYTES.length; i++) {
    const mb = METHOD_BYTES[i]!;
    if (mb.length !== n) continue;
    let k = 0;
    while (k < n && b[k] === mb[k]) k++;
    if (k === n) return METHODS[i]!;
  }
  return b.toString('latin1', 0, n);
}

/**
 * A start line cut by the capture: b holds its first bytes and no line end. What they say for
 * sure, or null when they say nothing or break the grammar. A request keeps its method and the
 * target as far as it was captured (`targetTruncated` unless the version after it began); its
 * version is unknown (''). A response needs its status code.
 */
function cutStartLine(b: Buffer, kind: 'request' | 'response'): HttpHeadFields | null {
  let n = b.length;
  if (n > 0 && b[n - 1] === CR) n--;
  const out: HttpHeadFields = { method: undefined, target: undefined, status: undefined, reason: undefined, version: '', headers: EMPTY_HEADERS, targetTruncated: false };
  if (kind === 'response') {
    if (n < 12 || !startsLikeHttp(b.subarray(0, 12), 'response') || (n > 12 && b[12] !== SP)) return null;
    for (let i = 13; i < n; i++) if (!VCHAR[b[i]!]) return null;
    out.version = b[7] === 49 ? '1.1' : '1.0';
    out.status = (b[9]! - 48) * 100 + (b[10]! - 48) * 10 + (b[11]! - 48);
    out.reason = n > 13 ? b.toString('latin1', 13, n) : '';
    return out;
  }
  let sp = 0;
  while (sp < n && TCHAR[b[sp]!]) sp++;
  if (sp === 0 || sp === n || b[sp] !== SP) return null;
  let t = sp + 1;
  while (t < n && b[t]! >= 0x21 && b[t]! <= 0x7e) t++;
  if (t < n) {
    // a second SP: the target is whole, and what follows must be the start of the version
    if (b[t] !== SP || t === sp + 1) return null;
    for (let i = t + 1; i < n; i++) {
      const k = i - t - 1;
      if (k >= 8 || (k < 7 ? b[i] !== VERSION[k] : b[i] !== 48 && b[i] !== 49)) return null;
    }
    if (n - t - 1 === 8) out.version = b[n - 1] === 49 ? '1.1' : '1.0';
  } else out.targetTruncated = true;
  out.method = methodString(b, sp);
  out.target = b.toString('latin1', sp + 1, t);
  return out;
}

/** the first blank line in b[from, to): the LF that ends the last head line (head = b[0, end)) and where the body starts */
function blankLine(b: Buffer, from: number, to: number): { end: number; next: number } | null {
  for (let i = b.indexOf(LF, from); i >= 0 && i < to; i = b.indexOf(LF, i + 1)) {
    if (b[i + 1] === LF) return { end: i, next: i + 2 };
    if (b[i + 1] === CR && b[i + 2] === LF) return { end: i, next: i + 3 };
  }
  return null;
}

/**
 * The head b[0, end) (no blank line) rewritten as a recipient may read it (RFC 9112): a bare LF
 * ends a line as CRLF does (§2.2), and each obs-fold (a line continued by one starting with SP or
 * HTAB) becomes one SP (§5.2). A CR not before a LF stays, for the grammar to refuse; so does a
 * fold right after the start line (§2.2: whitespace there is not a header line). null: invalid.
 */
function normalizeHead(b: Buffer, end: number): Buffer | null {
  // each logical line as its pieces, joined once at the end: concatenating a folded line per
  // fold was quadratic in its folds (review, session 60)
  const out: Buffer[][] = [];
  let p = 0;
  let lines = 0;
  while (p < end) {
    let e = b.indexOf(LF, p);
    if (e < 0 || e > end) e = end;
    const z = e > p && b[e - 1] === CR ? e - 1 : e;
    if (lines > 0 && z > p && (b[p] === SP || b[p] === HT)) {
      if (lines === 1) return null;
      // obs-fold: OWS CRLF RWS → SP
      let a = p;
      while (a < z && (b[a] === SP || b[a] === HT)) a++;
      const pieces = out.at(-1)!;
      // the folded line's trailing whitespace goes (it may span pieces: a fold of blanks only)
      for (;;) {
        const last = pieces.at(-1)!;
        let pz = last.length;
        while (pz > 0 && (last[pz - 1] === SP || last[pz - 1] === HT)) pz--;
        if (pz > 0 || pieces.length === 1) {
          pieces[pieces.length - 1] = last.subarray(0, pz);
          break;
        }
        pieces.pop();
      }
      pieces.push(FOLD_SP, b.subarray(a, z));
    } else {
      out.push([b.subarray(p, z)]);
      lines++;
    }
    p = e + 1;
  }
  const parts: Buffer[] = [];
  out.forEach((l, i) => (i ? parts.push(CRLF_BYTES, ...l) : parts.push(...l)));
  return Buffer.concat(parts);
}
const FOLD_SP = Buffer.from(' ', 'latin1');
const CRLF_BYTES = Buffer.from('\r\n', 'latin1');

/** a head in b[0, end) in any form a recipient may accept (CRLF, bare LF, obs-fold) → its fields, or null */
function parseHeadLenient(b: Buffer, end: number, kind: 'request' | 'response'): HttpHeadFields | null {
  const n = normalizeHead(b, end);
  return n ? parseHead(n, n.length, kind) : null;
}

/**
 * The headers the tracer itself reads are taken out while the head is checked (first occurrence,
 * lower-cased name); any other name is looked up in a Map built on first use from a copy of the
 * header lines. Per message that saves a string and a Map entry per header (the head parse was a
 * third of the consumer's CPU).
 */
const HOT = ['host', 'user-agent', 'traceparent', 'content-length', 'transfer-encoding'] as const;
const HOT_BYTES = HOT.map((h) => Buffer.from(h, 'latin1'));
const TE_HOT = HOT.indexOf('transfer-encoding');

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
  const out: HttpHeadFields = { method: undefined, target: undefined, status: undefined, reason: undefined, version: '1.1', headers: EMPTY_HEADERS, targetTruncated: false };
  if (!startLine(b, lineEnd, kind, out)) return null;
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
        // Transfer-Encoding is a list: its lines together are one value ("gzip" then "chunked"
        // is chunked, RFC 9110 §5.3); of the others the first counts
        if (hi >= 0 && (h.hot[hi] === undefined || hi === TE_HOT)) {
          let a = colon + 1, z = e;
          while (a < z && (b[a] === SP || b[a] === HT)) a++;
          while (z > a && (b[z - 1] === SP || b[z - 1] === HT)) z--;
          const v = b.toString('latin1', a, Math.min(z, a + LIMITS.MAX_VALUE));
          h.hot[hi] = h.hot[hi] === undefined ? v : `${h.hot[hi]}, ${v}`.slice(0, LIMITS.MAX_VALUE);
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
  /** plausible(): a header line was checked, so a line starting with SP/HTAB may be an obs-fold of it */
  private afterHeader = false;
  /**
   * an open or bad stream's syscall(s) too short to tell whether a new message starts there (one
   * byte of a start line): their time, length and bytes, until the next syscall decides
   */
  private held: { ts: bigint; last: bigint; len: number; data: Buffer; line: boolean } | null = null;
  /**
   * the next syscall's first byte is known to start a line: the byte before it was seen and is a
   * LF, or nothing came before it. Where it is not, a request line there may be seen from its
   * middle ('ET /a HTTP/1.1' of 'GET /a HTTP/1.1', pipelined, the read boundary inside it).
   */
  private nextLine = true;
  /**
   * a request whose end was inferred (the peer answered) is over, and the next one's first byte
   * follows bytes not seen: it is taken as a resync takes one (a request stream only)
   */
  private sync = false;
  /** the head being read began at a resync of a bad stream: not a message until it parses */
  private tentative = false;
  private headStart = 0n;
  private cur: HttpMessage | null = null;
  private remaining = 0;
  private chunk: ChunkState = 'size';
  private line = '';
  /** a field line was read in this message's trailer section: a line starting with SP/HTAB may fold it */
  private trailerField = false;
  private lastTs = 0n;
  readonly stats: StreamStats = { messages: 0, bad: 0, truncated: 0 };

  constructor(
    readonly kind: 'request' | 'response',
    private readonly emit: (m: HttpMessage) => void,
    private readonly noBody: (status: number) => boolean = () => false,
    private readonly onHead?: (m: HttpMessage) => void,
    /**
     * the stream lost its framing: a message (or several: the bytes not captured may hold more)
     * will never be emitted. Whoever pairs this stream's messages with the other direction's must
     * not hand the next one to the request the lost one answered.
     */
    private readonly onLost?: () => void,
  ) {}

  /** one syscall's worth: `len` bytes moved at `ts`, of which `data` (a prefix) was captured */
  push(ts: bigint, len: number, data: Buffer): void {
    if (len <= 0) return;
    const cap = Math.min(data.length, len);
    let pos = 0;
    const line = this.nextLine;
    this.nextLine = cap === len && data[cap - 1] === LF;
    // a new message may begin at a syscall boundary: that is where open/bad streams resynchronise
    if ((this.mode === 'open' || this.mode === 'bad' || this.sync) && cap > 0) {
      const alone = data.subarray(0, cap);
      const held = this.held;
      if (held) {
        const start = Buffer.concat([held.data, alone]);
        // 'x' then 'GET / …' is a request after a stray byte, not one with the method xGET
        if (this.kind === 'request' && commonMethod(alone) && !commonMethod(start)) this.releaseHeld();
        else if (this.startsAt(start, held.line)) {
          this.resynced();
          // the head began with the bytes held back: it starts with them
          this.held = null;
          this.setHead(Buffer.allocUnsafe(Math.max(512, 2 * held.data.length)));
          held.data.copy(this.head!);
          this.headLen = held.data.length;
          this.headStart = held.ts;
        } else if (cap === len && start.length < START_WINDOW && alone.indexOf(LF) < 0 && startsLikeHttp(start, this.kind)) {
          this.held = { ts: held.ts, last: ts, len: held.len + len, data: start, line: held.line };
          return;
        } else this.releaseHeld();
      }
      if (this.mode === 'open' || this.mode === 'bad' || this.sync) {
        // after bytes held back and let go, this read follows a token's bytes: not a line start
        const at = this.startIn(alone, held ? false : line);
        if (at >= 0) {
          // the bytes before the line it starts at end an open message
          if (at > 0 && this.mode === 'open') {
            this.cur!.bodyBytes += at;
            this.lastTs = ts;
          }
          this.resynced();
          pos = at;
        } else if (cap === len && cap < START_WINDOW && alone.indexOf(LF) < 0 && startsLikeHttp(alone, this.kind)) {
          // too short to tell (a read of one byte): held back until the next syscall says (a
          // line that ends here was judged whole)
          this.held = { ts, last: ts, len, data: Buffer.from(alone), line: held ? false : line };
          return;
        } else if (this.sync) {
          // the request after one whose end was inferred, seen from inside a line: lost, so
          // counted; or the rest of that request's body (an upload answered early, drained or
          // still sent): not known to be a message, so no loss is reported to the pairing
          this.sync = false;
          this.giveUp(false);
        }
      }
    }
    let guard = 0;
    while (pos < len && guard++ < 10_000) {
      switch (this.mode) {
        case 'head': {
          if (pos >= cap) {
            // a head split over reads whose last ones were only counted is cut by the capture as
            // surely as one read at once: keep what its start line says
            if (this.head !== null && this.headLen > 0) this.cutHead(ts, this.head.subarray(0, this.headLen));
            // else the next head begins in bytes we did not see: a message lost, so counted
            else this.giveUp();
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
    this.releaseHeld();
    if ((this.mode === 'open' || this.mode === 'length' || this.mode === 'chunked') && this.cur) this.finish(this.cur.bodyBytes > 0 && this.lastTs ? this.lastTs : ts, true);
    this.dropHead();
    this.mode = 'bad';
  }

  /**
   * An open-ended message (truncated head or lost framing) is over when the other side starts
   * anew (a new request): it ended with the last bytes this stream saw, not at `ts`.
   */
  endOpen(ts: bigint): void {
    this.releaseHeld();
    if (this.mode === 'open' && this.cur) {
      this.finish(this.lastTs || ts, true);
      this.mode = 'head';
      // its last bytes were not seen, so neither is where the next request begins (pipelined,
      // a read may end inside its request line)
      this.sync = this.kind === 'request' && !this.nextLine;
    }
  }

  get state(): Mode {
    return this.mode;
  }

  /** the partial head's buffer, counted against the process's budget */
  private setHead(b: Buffer | null): void {
    partialHeads += (b?.length ?? 0) - (this.head?.length ?? 0);
    this.head = b;
  }

  private dropHead(): void {
    this.setHead(null);
    this.headLen = 0;
    this.checked = 0;
    this.afterHeader = false;
  }

  /**
   * Bytes held back at a syscall boundary of an open or bad stream turned out not to begin a
   * message: an open message's body after all (its last bytes then), else nothing.
   */
  private releaseHeld(): void {
    const h = this.held;
    if (!h) return;
    this.held = null;
    if (this.mode === 'open' && this.cur) {
      this.cur.bodyBytes += h.len;
      this.lastTs = h.last;
    }
  }

  /**
   * Do these bytes at a syscall boundary of an open or bad stream begin a message? A start line
   * (whole, if its end is here), and for a request a method in use: a common one, or capitals
   * then capitals, digits, '-', '_', at least 3 (every registered method). A bare token would
   * take a line's tail ('T /a HTTP/1.1' after 'GE' went with garbage) or body text ('Hello
   * world') for a request.
   */
  private resyncAt(b: Buffer): boolean {
    if (!startsLikeHttp(b, this.kind, true)) return false;
    if (this.kind === 'response' || commonMethod(b)) return true;
    let k = 0;
    while (k < b.length && ((b[k]! >= 65 && b[k]! <= 90) || (k > 0 && ((b[k]! >= 48 && b[k]! <= 57) || b[k] === 45 || b[k] === 95)))) k++;
    return k >= 3 && b[k] === SP;
  }

  /**
   * Does a message start at b[0]? `line`: b[0] is known to start a line. A status line cannot be
   * seen from its middle ("HTTP/1." is no tail of one), but a request line can, so where the byte
   * before was not seen its method must be a whole one (WHOLE_METHODS).
   */
  private startsAt(b: Buffer, line: boolean): boolean {
    if (!this.resyncAt(b)) return false;
    if (this.kind === 'response' || line) return true;
    const sp = b.indexOf(SP);
    return WHOLE_METHODS.has(b.toString('latin1', 0, sp));
  }

  /**
   * Where in b (a syscall's captured bytes) a message starts: at 0 (see startsAt), or for a
   * request at the first line start after it whose line is a request line. -1: none.
   */
  private startIn(b: Buffer, line: boolean): number {
    if (this.startsAt(b, line)) return 0;
    if (this.kind === 'response') return -1;
    for (let i = b.indexOf(LF); i >= 0 && i + 1 < b.length; i = b.indexOf(LF, i + 1)) if (this.startsAt(b.subarray(i + 1), true)) return i + 1;
    return -1;
  }

  /** a resync found a start: an open message ends before it; a head begins (tentative if the stream was bad) */
  private resynced(): void {
    if (this.mode === 'open') this.finish(this.lastTs, true);
    this.tentative = this.mode === 'bad';
    this.mode = 'head';
    this.sync = false;
  }

  private giveUp(lost = true): void {
    // a resync that was not a message after all: the stream was counted when it went bad
    if (!this.tentative) {
      this.stats.bad++;
      if (lost) this.onLost?.();
    }
    this.tentative = false;
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
        this.setHead(grown);
      }
      piece.copy(this.head, prevLen);
      all = this.head.subarray(0, need);
    }
    this.headLen = prevLen + piece.length;
    // search from a little before the new piece: the terminator may straddle syscalls
    let end = all.indexOf(CRLFCRLF, Math.max(0, prevLen - 3));
    let next = end + 4;
    // the common case, a CRLF head, is checked as it is: if it passes, no bare LF is in it (the
    // grammar refuses one), so no blank line came before this one
    let fields = end >= 0 && next <= LIMITS.MAX_HEAD ? parseHead(all, end, this.kind) : null;
    if (!fields) {
      // bare LF line ends, obs-fold, or a head that breaks the grammar: the first blank line in any form
      const blank = blankLine(all, Math.max(0, prevLen - 2), end >= 0 ? end + 2 : all.length);
      end = blank ? blank.end : -1;
      next = blank ? blank.next : -1;
    }
    if (end < 0) {
      if (this.headLen > LIMITS.MAX_HEAD || partialHeads > partialHeadsBudget || !this.plausible(all, prevLen)) {
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
        if (partialHeads + Math.max(2 * piece.length, 512) > partialHeadsBudget) {
          this.giveUp();
          return len;
        }
        this.setHead(Buffer.allocUnsafe(Math.max(2 * piece.length, 512)));
        piece.copy(this.head!);
      }
      return cap;
    }
    if (next > LIMITS.MAX_HEAD) {
      this.giveUp();
      return len;
    }
    fields ??= parseHeadLenient(all, end, this.kind);
    const consumed = next - prevLen;
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
    } else if (te !== undefined) {
      // a coding other than chunked last: Content-Length does not count (RFC 9112 §6.3): a
      // response runs to the close, a request cannot be framed (the server answers 400)
      if (this.kind === 'request') {
        this.giveUp();
        return len;
      }
      this.mode = 'open';
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
    // the complete lines, or the start line as far as it was captured
    const last = all.lastIndexOf(LF);
    const fields = last >= 0 ? parseHeadLenient(all, last, this.kind) : cutStartLine(all, this.kind);
    this.dropHead();
    if (!fields) {
      // a start that said nothing sure, or broke the grammar: a message lost, so counted
      this.giveUp();
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
      // a line ends at LF, a CR before it is the CRLF's (RFC 9112 §2.2)
      const lf = b.indexOf(LF, Math.max(0, prevLen - 1));
      if (lf < 0) return b.length <= 8192 && b.indexOf(0, prevLen) < 0;
      if (!startLine(b, lf > 0 && b[lf - 1] === CR ? lf - 1 : lf, this.kind, null)) return false;
      this.checked = lf + 1;
    }
    // every complete header line must be a header, or the obs-fold of one
    for (;;) {
      const e = b.indexOf(LF, Math.max(this.checked, prevLen - 1));
      if (e < 0) break;
      const z = e > this.checked && b[e - 1] === CR ? e - 1 : e;
      if (z > this.checked) {
        const c = b[this.checked];
        if (c === SP || c === HT) {
          if (!this.afterHeader) return false;
          for (let i = this.checked; i < z; i++) if (!VCHAR[b[i]!]) return false;
        } else if (!HEADER.test(b.toString('latin1', this.checked, z))) return false;
        this.afterHeader = true;
      }
      this.checked = e + 1;
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
        // RFC 9112 §7.1.1: BWS may come before a chunk extension's ';'
        const sz = /^([0-9a-fA-F]{1,12})([ \t]*;.*)?$/.exec(line);
        if (!sz) {
          this.giveUp();
          return len;
        }
        this.remaining = parseInt(sz[1]!, 16);
        this.chunk = this.remaining === 0 ? 'trailer' : 'data';
        this.trailerField = false;
      } else if (line === '') {
        // end of trailers: message complete
        this.finish(ts, false);
        this.mode = 'head';
        return pos;
      } else if (line.charCodeAt(0) === SP || line.charCodeAt(0) === HT) {
        // obs-fold (RFC 9112 §5.2, trailer fields are field lines as in a head, §7.1.2): part of
        // the field before it, which the tracer does not read; a fold with no field before it,
        // or a control byte in it, is refused as in a head
        if (!this.trailerField || !FOLD.test(line)) {
          this.giveUp();
          return len;
        }
      } else if (HEADER.test(line)) this.trailerField = true;
      else {
        this.giveUp();
        return len;
      }
    }
    return pos;
  }

  private begin(f: HttpHeadFields, ts: bigint, truncated: boolean): void {
    this.tentative = false;
    // explicit fields, not a spread of f: one object shape, and the spread was 7% of the consumer
    this.cur = {
      kind: this.kind, method: f.method, target: f.target, status: f.status, reason: f.reason, version: f.version, headers: f.headers,
      startTs: this.headStart || ts, headEndTs: ts, endTs: ts, bodyBytes: 0, truncated, endInferred: false, targetTruncated: f.targetTruncated === true,
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
