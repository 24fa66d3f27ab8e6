// Strings the lab did not write — a process's comm, a file name, an HTTP request line, a cgroup
// path — printed on an operator's terminal. Any unprivileged process picks its own comm
// (prctl PR_SET_NAME) and file names, and any client its request path: raw, an ESC in one of
// them is a terminal command (retitle the window, clear the screen, recolour what follows), and a
// bidi override reorders what the operator reads. Such characters are shown as escapes instead,
// the way `ls -b` and strace do; a backslash is doubled so that what is shown reads back to one
// string. Machine outputs (JSON lines, results.json, the Prometheus text format) are left to their
// own encoders.

// C0 controls, DEL, C1 controls (U+0080–U+009F: CSI is U+009B on terminals that take 8-bit C1),
// the backslash, and the bidi marks, embeddings, overrides and isolates ("Trojan Source")
const UNSAFE = /[\x00-\x1f\x7f-\x9f\\\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
const UNSAFE_ALL = new RegExp(UNSAFE.source, 'g');
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\' };

/**
 * s with what a terminal would obey escaped, its own line breaks and tabs kept: for a multi-line
 * message of the lab's (an error with its fix) that quotes names and values it did not write
 */
export function printableLines(s: string): string {
  return s.replace(UNSAFE_KEEP_LINES, escapeChar);
}
// UNSAFE without \n, \t and the backslash
const UNSAFE_KEEP_LINES = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** one character as `ls -b` shows it: \n \r \t \\ by name, else \xNN or \uNNNN */
export function escapeChar(ch: string): string {
  const named = NAMED[ch];
  if (named) return named;
  const c = ch.charCodeAt(0);
  return c < 0x100 ? `\\x${c.toString(16).padStart(2, '0')}` : `\\u${c.toString(16).padStart(4, '0')}`;
}

/** s as one line that is safe to write to a terminal: control and bidi characters escaped */
export function printable(s: string): string {
  return UNSAFE.test(s) ? s.replace(UNSAFE_ALL, escapeChar) : s;
}

// JSON.stringify escapes C0 controls but leaves DEL, the C1 controls and the bidi marks raw
const JSON_UNSAFE = /[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * v as one JSON line that is also safe on a terminal (`policy events` is read there, and its
 * file names and argv come from the processes it watches): what JSON.stringify leaves raw is
 * written as \uXXXX, so the line parses to the same value.
 */
export function jsonLine(v: unknown): string {
  return JSON.stringify(v).replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** s as one word for a POSIX shell (the guest's /bin/sh, a command line suggested in an error): bare when safe, else single-quoted */
export function shq(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** a message on one line (JSON.parse quotes the text around its error, newlines included) */
export const oneLine = (m: string): string => m.replace(/\s+/g, ' ');
