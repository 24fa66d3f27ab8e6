// Config files the lab reads (LB configs, security policies), parsed once with positions: YAML,
// and therefore JSON, through the yaml package's document API, so every error can name
// file:line:col of the field it is about, whatever the file's format. yaml (~0.3 MB) is loaded on
// first use only: a daemon that reads a JSON config parses it with JSON.parse and needs the
// document API only to place an error (the LB daemon must start quickly under TCG).
import { createRequire } from 'node:module';
import type { Document, LineCounter } from 'yaml';

const yaml = (): typeof import('yaml') => createRequire(import.meta.url)('yaml');

export interface SourcePos {
  line: number;
  col: number;
}

export class ConfigFile {
  private constructor(
    readonly file: string,
    readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
  ) {}

  /** Parse; syntax errors are returned with their positions (the value is then unusable). */
  static parse(text: string, file: string): { source: ConfigFile; syntaxErrors: (SourcePos & { message: string })[] } {
    const { LineCounter, parseDocument } = yaml();
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
    const source = new ConfigFile(file, doc, lines);
    return { source, syntaxErrors: doc.errors.map((e) => ({ ...lines.linePos(e.pos[0]), message: e.message.split('\n')[0]! })) };
  }

  get value(): unknown {
    return this.doc.toJS();
  }

  /** line and column of a byte offset */
  pos(offset: number): SourcePos {
    return this.lines.linePos(offset);
  }

  /** where the field at `path` starts; its nearest existing parent when it is missing */
  positionOf(path: readonly (string | number)[]): SourcePos {
    for (let n = path.length; n >= 0; n--) {
      const node = n === 0 ? this.doc.contents : this.doc.getIn(path.slice(0, n), true);
      const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
      if (range) return this.pos(range[0]);
    }
    return { line: 1, col: 1 };
  }

  /** "file:line:col" of the field at `path` */
  where(path: readonly (string | number)[]): string {
    const p = this.positionOf(path);
    return `${this.file}:${p.line}:${p.col}`;
  }
}

/**
 * A YAML (or JSON-as-YAML) file's value; its first syntax error as `mkErr("file:line:col: message")`.
 * One format for every config the lab reads (LB, socket LB, tc), where yaml.parse's own message
 * ends in "at line L, column C:" and a code excerpt.
 */
export function parseYamlFile<E extends Error>(text: string, file: string, mkErr: (message: string) => E): { value: unknown; source: ConfigFile } {
  const { source, syntaxErrors } = ConfigFile.parse(text, file);
  const first = syntaxErrors[0];
  if (first) throw mkErr(`${file}:${first.line}:${first.col}: ${first.message}`);
  return { value: source.value, source };
}

/** 'vips[0].backends[1]' → ['vips', 0, 'backends', 1] */
export function fieldPath(s: string): (string | number)[] {
  return [...s.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]!));
}

/**
 * A JSON.parse failure of `text` as a position and one line. A .json file is held to JSON (YAML
 * would also take a trailing comma or a comment); V8 gives an offset for most faults, none for
 * some, and quotes the text after others. A trailing comma, the usual fault, is named at the comma.
 */
export function jsonSyntaxError(text: string, err: unknown): SourcePos & { message: string } {
  const full = String((err as Error)?.message ?? err);
  const msg = full.replace(/, (?:\.\.\.)?"[\s\S]*$/, '').split('\n')[0]!;
  const at = /at position (\d+)/.exec(msg);
  let offset = at ? Number(at[1]) : -1;
  // V8's quoted context instead of an offset: up to 10 characters either side of the fault, "..."
  // where it cut the text (json-parser.cc, kMaxContextCharacters)
  const ctx = at ? null : /, (\.\.\.)?"([\s\S]*?)"(\.\.\.)? is not valid JSON$/.exec(full);
  if (ctx && (ctx[1] || ctx[3])) {
    const start = text.indexOf(ctx[2]!);
    if (start >= 0) offset = ctx[1] ? start + 10 : ctx[2]!.length - 10;
  }
  let message = msg.replace(/ (?:in JSON )?at position \d+/, '');
  const closer = offset >= 0 ? text[offset] : /^Unexpected token '([\]}])'/.exec(msg)?.[1];
  if (closer === ']' || closer === '}') {
    // the comma just before that closer (at the offset), or the first one before any closer
    const before = offset >= 0 ? /,\s*$/.exec(text.slice(0, offset)) : /,\s*[\]}]/.exec(text);
    if (before) {
      offset = before.index;
      message = `a trailing comma before '${closer}'`;
    }
  }
  const upTo = text.slice(0, Math.max(0, offset));
  const line = upTo.split('\n').length;
  return { line, col: offset < 0 ? 1 : upTo.length - upTo.lastIndexOf('\n'), message: `not valid JSON: ${message}` };
}

/** `text` of a .json `file` parsed; a syntax error is thrown as `fail("file:line:col: not valid JSON: …")` */
export function parseJson<T>(text: string, file: string, fail: (message: string) => Error): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    const f = jsonSyntaxError(text, e);
    throw fail(`${file}:${f.line}:${f.col}: ${f.message}`);
  }
}
