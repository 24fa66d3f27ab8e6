// Every kernel object the binding creates is tracked here so that a crash, Ctrl-C or a forgotten
// close() still releases it. Most BPF objects die with their fds, but netlink attachments (XDP
// without a link, tc filters, clsact qdiscs) and pins outlive the process: those must be undone.
// All closers are synchronous FFI calls, which is what lets them run from process 'exit'.
const live = new Set<{ close(): void }>();
let installed = false;
let signalsOwnedByCaller = false;

/**
 * A caller with its own async cleanup (the lab runner) takes over SIGINT/SIGTERM: we then only
 * close on 'exit'. Otherwise our handler closes everything and exits with 128+signal.
 */
export function deferSignalsToCaller(v = true): void {
  signalsOwnedByCaller = v;
}

export function track<T extends { close(): void }>(o: T): T {
  install();
  live.add(o);
  return o;
}

export function untrack(o: { close(): void }): void {
  live.delete(o);
}

export function liveCount(): number {
  return live.size;
}

/** Close everything still open, newest first. */
export function closeAll(): void {
  for (const o of [...live].reverse()) {
    try {
      o.close();
    } catch {
      /* best effort at exit */
    }
  }
  live.clear();
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', closeAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      if (signalsOwnedByCaller) return;
      closeAll();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    };
    process.on(sig, onSignal);
  }
}
