// Errors a user can act on: a message and, where we know it, the fix.
import { printableLines } from './printable.ts';
export class LabError extends Error {
  constructor(message: string, readonly fix?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LabError';
  }
}

/**
 * What the CLI prints for a failed command, and its exit code. Expected failures (a LabError, an
 * attach refused for the user's setup, a program the lab runs that is not installed) are one line
 * plus the fix, no stack; anything else is a bug of the lab, its stack behind EBPF_LAB_DEBUG.
 */
export function describeFailure(err: unknown, debug = false): { text: string; exitCode: number } {
  const d = describe(err, debug);
  // a message quotes what the user typed and what the lab read (names, paths, config values): a
  // control character in one (an ESC sequence, a bidi override) is shown, not obeyed by the terminal
  return { ...d, text: printableLines(d.text) };
}

function describe(err: unknown, debug: boolean): { text: string; exitCode: number } {
  if (err instanceof LabError) {
    const code = (err as LabError & { exitCode?: number }).exitCode;
    return { text: `error: ${err.message}${err.fix ? `\n  fix: ${err.fix}` : ''}`, exitCode: typeof code === 'number' ? code : 1 };
  }
  // by name: no libbpf is loaded here
  const a = err as { name?: string; message?: string; hint?: string; stack?: string };
  if ((a?.name === 'AttachInputError' || a?.name === 'AttachError') && a.hint && typeof a.message === 'string') {
    return { text: `error: ${a.message.split('\n  hint: ')[0]}\n  fix: ${a.hint}`, exitCode: 1 };
  }
  // a machine set up by hand, a tool group never installed: the user's fix, not the lab's bug
  // ("spawn xz ENOENT" from `vm fetch` once read as an internal error)
  const missing = /\bspawn (\S+) ENOENT\b/.exec(String(a?.message ?? ''));
  if (missing) return { text: `error: ${missing[1]} is not installed (not found on PATH)\n  fix: pnpm lab setup (as root) installs the tools the lab runs`, exitCode: 1 };
  const msg = `error: ${a?.message ?? String(err)}`;
  return { text: debug ? `${msg}\n${a?.stack ?? ''}` : `${msg}\n  (an internal error of the lab; EBPF_LAB_DEBUG=1 prints the stack)`, exitCode: 1 };
}
