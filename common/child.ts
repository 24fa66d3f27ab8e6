// Daemons the lab starts and then waits for: each says it is ready with a line of its own
// (`{"ready":true…}` from lb/svc daemons, `shaping …` from the tc shaper, `tracing …` from the
// tracer, READY from the launched services). One wait for all of them, so that each notices a child
// that died — also by a signal, which leaves exitCode null — instead of waiting out its timeout.
import type { Readable } from 'node:stream';
import { LabError } from './errors.ts';

/** What a child printed on these streams (the last `max` characters), as it grows. */
export function collectOutput(streams: (Readable | null | undefined)[], max = 64_000): () => string {
  let text = '';
  for (const s of streams) s?.on('data', (d: Buffer) => (text = (text + d.toString()).slice(-max)));
  return () => text;
}

interface Child {
  exitCode: number | null;
  signalCode: NodeJS.Signals | null;
  pid?: number;
}

const lastLines = (s: string) => s.trim().split('\n').slice(-6).join(' | ') || '(nothing)';

/**
 * Wait until `output()` matches `ready` (checked every 50 ms): the match. A LabError naming `what`
 * and the output's last lines when the child exits first or `timeoutMs` passes (the child is left
 * running then: the caller's cleanup owns it).
 */
export async function untilReady(child: Child, output: () => string, ready: RegExp, timeoutMs: number, what: string, fix?: string): Promise<RegExpMatchArray> {
  let m: RegExpMatchArray | null = null;
  await untilTrue(child, output, () => (m = output().match(ready)) !== null, timeoutMs, what, fix);
  return m!;
}

/** The same wait for a child that prints nothing when ready (nginx): `test` says it is (a connect). */
export async function untilTrue(child: Child, output: () => string, test: () => boolean | Promise<boolean>, timeoutMs: number, what: string, fix?: string): Promise<void> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    if (await test()) return;
    if (child.exitCode !== null || child.signalCode !== null) throw new LabError(`${what} exited before it was ready (${child.signalCode ?? `exit ${child.exitCode}`}); it printed: ${lastLines(output())}`, fix);
    if (performance.now() > until) throw new LabError(`${what} (pid ${child.pid}) not ready after ${(timeoutMs / 1000).toFixed(0)} s; it printed: ${lastLines(output())}`, fix);
    await new Promise((r) => setTimeout(r, 50));
  }
}
