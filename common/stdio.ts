// Output to a reader that went away (`pnpm lab … | head`: EPIPE; a terminal or ssh session that
// hung up: EIO) is not an error. Node reports it as an 'error' event on stdout/stderr, which
// crashes the process when nobody listens. Here the stream just stops writing: the command
// finishes normally (cleanups of a run still happen), and long-running output loops can ask
// outputClosed() to stop early. EIO was not handled: a hangup during a run crashed it at its next
// progress line, before any cleanup (the security scenario left its netns, cgroups and temp dirs).
import fs from 'node:fs';
import { libcFunc } from './libc.ts';
import tty from 'node:tty';

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

/**
 * A terminal that hung up must not crash the process at exit. Node restores each stdio fd that
 * was a terminal at start (ResetStdio, after the 'exit' listeners); on a hung-up terminal that
 * tcsetattr fails with EIO, Node's assertion fires, and dumping its stack crashed the process
 * (SIGSEGV, after the run's report and cleanups: seen with gdb on a core of a run whose
 * `script` terminal was killed; a 9.7 GB core file in the working directory where cores are on).
 * At exit, those fds are pointed at /dev/null first: ResetStdio skips an fd that is no longer
 * the file it saw at start.
 */
export function releaseDeadTerminalAtExit(): void {
  const wasTty = [0, 1, 2].map((fd) => tty.isatty(fd));
  if (!wasTty.some(Boolean)) return;
  process.on('exit', () => {
    // a hung-up terminal answers the isatty ioctl with EIO: false now, true at start
    const dead = [0, 1, 2].filter((fd) => wasTty[fd] && !tty.isatty(fd));
    if (!dead.length) return;
    try {
      // Node has no dup2 of its own
      const dup2 = libcFunc<(a: number, b: number) => number>('int dup2(int oldfd, int newfd)');
      const devNull = fs.openSync('/dev/null', 'r+');
      for (const fd of dead) dup2(devNull, fd);
      fs.closeSync(devNull);
    } catch {
      /* the crash this avoids is after everything else is done */
    }
  });
}
