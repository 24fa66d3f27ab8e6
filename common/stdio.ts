// Output to a reader that went away (`pnpm lab … | head`) is not an error. Node reports EPIPE as an
// 'error' event on stdout/stderr, which crashes the process when nobody listens. Here the stream
// just stops writing: the command finishes normally (cleanups of a run still happen), and
// long-running output loops can ask outputClosed() to stop early.
let closed = false;

export function outputClosed(): boolean {
  return closed;
}

export function quietOnEpipe(): void {
  for (const s of [process.stdout, process.stderr]) {
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e;
      if (s === process.stdout) closed = true;
      s.write = (() => true) as typeof s.write;
    });
  }
}
