// What the CLI prints for a failed command (no root): one line and the fix for what the user can
// act on, the internal-error note (stack behind EBPF_LAB_DEBUG) for the lab's own bugs.
import { spawn } from 'node:child_process';
import { expect, it } from 'vitest';
import { UsageError } from './args.ts';
import { describeFailure, LabError } from './errors.ts';

it('a LabError is its message and fix; a UsageError exits 2', () => {
  expect(describeFailure(new LabError('no such kernel "6.2"', 'pnpm lab vm kernels lists them'))).toEqual({ text: 'error: no such kernel "6.2"\n  fix: pnpm lab vm kernels lists them', exitCode: 1 });
  expect(describeFailure(new UsageError('unknown option --x', 'see --help')).exitCode).toBe(2);
  // what the user typed is quoted, not obeyed: an ESC sequence or a bidi override is shown escaped
  expect(describeFailure(new LabError('unknown scenario "\x1b]0;pwned\x07x\u202e"', 'pnpm lab list')).text).toBe('error: unknown scenario "\\x1b]0;pwned\\x07x\\u202e"\n  fix: pnpm lab list');
});

it('a program that is not installed names it and the setup, not an internal error', async () => {
  const err = await new Promise<Error>((r) => spawn('ebpf-lab-no-such-tool').once('error', r));
  const f = describeFailure(err);
  expect(f.text).toBe('error: ebpf-lab-no-such-tool is not installed (not found on PATH)\n  fix: pnpm lab setup (as root) installs the tools the lab runs');
  expect(f.exitCode).toBe(1);
});

it('anything else is the lab\'s bug: the message, the stack only with debug', () => {
  const e = new TypeError('x is undefined');
  expect(describeFailure(e).text).toBe('error: x is undefined\n  (an internal error of the lab; EBPF_LAB_DEBUG=1 prints the stack)');
  expect(describeFailure(e, true).text).toMatch(/^error: x is undefined\nTypeError: x is undefined\n\s+at /);
});
