// Output to a reader that went away (`pnpm lab … | head`: EPIPE; a terminal or ssh session that
// hung up: EIO) is not an error. Node reports it as an 'error' event on stdout/stderr, which
// crashes the process when nobody listens. Here the stream just stops writing: the command
// finishes normally (cleanups of a run still happen), and long-running output loops can ask
// outputClosed() to stop early. EIO was not handled: a hangup during a run crashed it at its next
// progress line, before any cleanup (the security scenario left its netns, cgroups and temp dirs).
let closed = false;

export function outputClosed(): boolean {
  return closed;
}

export function quietOnLostOutput(): void {
  for (const s of [process.stdout, process.stderr]) {
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE' && e.code !== 'EIO') throw e;
      if (s === process.stdout) closed = true;
      s.write = (() => true) as typeof s.write;
    });
  }
}
