// How a foreground daemon waits to be stopped. A signal listener does not keep Node's event loop
// alive: a daemon with nothing else pending (no metrics server, no health checks) would exit at
// once, removing what it had just set up — so the wait holds a timer of its own until a signal.
export function untilSignal(signals: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM']): Promise<NodeJS.Signals> {
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
