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

/** 'vips[0].backends[1]' → ['vips', 0, 'backends', 1] */
export function fieldPath(s: string): (string | number)[] {
  return [...s.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]!));
}
