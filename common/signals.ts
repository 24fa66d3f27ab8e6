import { existsSync } from 'node:fs';
import os from 'node:os';
import { libcFunc } from './libc.ts';

// How a foreground daemon waits to be stopped. A signal listener does not keep Node's event loop
// alive: a daemon with nothing else pending (no metrics server, no health checks) would exit at
// once, removing what it had just set up — so the wait holds a timer of its own until a signal.
export function untilSignal(signals: readonly NodeJS.Signals[] = STOP_SIGNALS): Promise<NodeJS.Signals> {
  const alive = setInterval(() => {}, 1 << 30);
  return new Promise((resolve) => {
    // the other signals' listeners stay: a second Ctrl-C during the cleanup that follows does
    // not kill the process halfway through it
    const on = (s: NodeJS.Signals) => {
      clearInterval(alive);
      resolve(s);
    };
    for (const s of signals) process.once(s, on);
  });
}

// The signals that end a run the way Ctrl-C does: SIGINT (Ctrl-C), SIGTERM (kill, a CI job
// cancelled) and SIGHUP (the terminal or ssh session went away). Each stops the work, runs the
// cleanups and writes the report. SIGHUP was missing: with the binding's deferring listener in
// place a hangup was ignored, and the run went on into its dead terminal (see common/stdio.ts).
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/**
 * The exit code of a run a stop signal ended after its cleanups: 128 + the signal's number, as a
 * shell reports a process the signal killed (130 for Ctrl-C), so a script or CI job tells "I was
 * stopped" from "the scenario failed" (1). Undefined for anything else that stopped a run
 * (--timeout, a guest killed outright): those are failures of the run.
 */
export function stopExitCode(stoppedBy: string | undefined): number | undefined {
  const n = (STOP_SIGNALS as readonly string[]).includes(stoppedBy ?? '') ? os.constants.signals[stoppedBy as StopSignal] : undefined;
  return n === undefined ? undefined : 128 + n;
}

/**
 * One stop often arrives as two signals a moment apart: pnpm passes the terminal's SIGINT (and a
 * SIGTERM) on to its child, which the terminal's group signal has already reached, and a parent
 * killed outright sends PR_SET_PDEATHSIG once per thread of it. Read as a second Ctrl-C ("kill the
 * guest now"), one Ctrl-C through `pnpm lab run --kernel 6.1` lost every check the guest had made.
 * A stop signal within this long of the last one taken is the same stop; a person's second
 * Ctrl-C comes later.
 */
export const REPEAT_STOP_MS = 1000;

/**
 * A daemon's stop signals from before its own handling is in place: while it starts, with the
 * binding's handler deferred to the caller, a Ctrl-C was dropped and the daemon went on to serve
 * (svc and lb daemons; review, session 56). Held here to be acted on once it runs: `signal` is the
 * first one seen; `off()` ends the holding (on every path: a listener left would keep none alive,
 * but would swallow later signals).
 */
export function holdEarlyStops(): { readonly signal: StopSignal | undefined; off(): void } {
  let first: StopSignal | undefined;
  const on = (s: StopSignal) => (first ??= s);
  for (const s of STOP_SIGNALS) process.on(s, on);
  return {
    get signal() {
      return first;
    },
    off: () => STOP_SIGNALS.forEach((s) => process.off(s, on)),
  };
}

/** call `fn` on any stop signal until the returned function is called (repeats: REPEAT_STOP_MS) */
export function onStopSignals(fn: (sig: StopSignal) => void): () => void {
  let last = -Infinity;
  const handlers = STOP_SIGNALS.map((sig) => [sig, () => {
    const now = performance.now();
    if (now - last < REPEAT_STOP_MS) return;
    last = now;
    fn(sig);
  }] as const);
  for (const [sig, h] of handlers) process.on(sig, h);
  return () => {
    for (const [sig, h] of handlers) process.off(sig, h);
  };
}

/** A stop signal → abort, so QEMU and temp dirs are cleaned up on Ctrl-C; dispose() stops listening. */
export function interruptSignal(): { signal: AbortSignal; dispose: () => void; stoppedBy: () => StopSignal | undefined } {
  const ac = new AbortController();
  let by: StopSignal | undefined;
  return { signal: ac.signal, dispose: onStopSignals((sig) => ((by ??= sig), ac.abort())), stoppedBy: () => by };
}

/**
 * Under virtme-ng the host has no channel into the guest's run (the lab's own guest takes a STOP
 * line on a virtio port, lab/vm/init.sh): it asks the run to stop by creating the file named in
 * EBPF_LAB_STOP_FILE in the directory both share, and the run takes that as the SIGTERM a run on
 * the host gets: its cleanups, its ERROR report with the checks so far. Without it a Ctrl-C
 * killed the vng guest at once and the report held no checks. A stat per 250 ms, no fork.
 */
export function stopOnFile(env: NodeJS.ProcessEnv = process.env): void {
  const file = env.EBPF_LAB_STOP_FILE;
  if (!file) return;
  // the run stops its own children (daemons, load generators): they must not stop on their own
  delete env.EBPF_LAB_STOP_FILE;
  const t = setInterval(() => {
    if (!existsSync(file)) return;
    clearInterval(t);
    process.kill(process.pid, 'SIGTERM');
  }, 250);
  t.unref();
}

/**
 * A matrix's subprocesses (a VM row, a host cell) lead process groups of their own, so no
 * terminal signal reaches them, and a matrix that dies without passing a stop on (SIGKILL, the OOM
 * killer, a CI runner ending the job) left them running: a row went on booting its guest and
 * running its remaining cells with nobody to collect them. The matrix gives each its stdin as a
 * pipe and sets EBPF_LAB_STOP_WITH_PARENT: the pipe's end — the matrix gone, however it went — is
 * the SIGTERM a run takes as a stop (cleanups, an ERROR report with the checks so far). The pipe
 * is never written; a matrix that exits normally has already stopped or waited for them.
 */
export function stopWithParent(env: NodeJS.ProcessEnv = process.env): void {
  if (!env.EBPF_LAB_STOP_WITH_PARENT) return;
  // the run's own children (daemons, load generators, QEMU) get other stdins: they must not act on it
  delete env.EBPF_LAB_STOP_WITH_PARENT;
  const stdin = process.stdin as NodeJS.ReadStream & { unref?: () => void };
  stdin.on('data', () => {});
  stdin.once('end', () => process.kill(process.pid, 'SIGTERM'));
  stdin.on('error', () => process.kill(process.pid, 'SIGTERM'));
  // the watch alone must not keep a finished run alive
  stdin.unref?.();
}

/**
 * Started by `pnpm lab …`, the run is pnpm's child. pnpm passes SIGINT and SIGTERM on, but a pnpm
 * killed outright passes nothing, and the run went on to its end in the background, unseen. The
 * kernel sends the run a SIGTERM when pnpm dies (PR_SET_PDEATHSIG; once per pnpm thread, taken
 * once: onStopSignals), which it takes as any stop (cleanups, an ERROR report with the checks
 * so far). pnpm marks its script's environment (npm_lifecycle_event); it is removed, so the run's
 * own children (daemons, load generators) do not die with it on their own.
 */
export function stopWithLauncher(env: NodeJS.ProcessEnv = process.env): void {
  if (env.npm_lifecycle_event !== 'lab' || process.platform !== 'linux') return;
  delete env.npm_lifecycle_event;
  const parent = process.ppid;
  try {
    const prctl = libcFunc<(...a: number[]) => number>('int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)');
    if (prctl(1 /* PR_SET_PDEATHSIG */, 15 /* SIGTERM */, 0, 0, 0) !== 0) return;
  } catch {
    return; // no libc to call: the run is only not tied to pnpm
  }
  // pnpm already gone before the call: nothing will send it
  if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
}
