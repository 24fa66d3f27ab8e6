// Progress for long work: one updating line on a TTY, plain timestamped lines otherwise
// (CI logs, the VM control channel), so a user always sees what the lab is waiting for.
export interface Progress {
  step(message: string): void;
  /** fraction in [0,1] for the current step */
  update(fraction: number, detail?: string): void;
  info(message: string): void;
  warn(message: string): void;
}

export function createProgress(stream: NodeJS.WriteStream = process.stderr, quiet = false): Progress {
  const tty = stream.isTTY === true;
  const t0 = Date.now();
  let current = '';
  let lastDraw = 0;
  const stamp = () => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s]`;
  const line = (s: string) => {
    if (quiet) return;
    if (tty) stream.write(`\r\x1b[K${s}\n`);
    else stream.write(`${s}\n`);
  };
  return {
    step(message) {
      current = message;
      line(`${stamp()} ${message}`);
    },
    update(fraction, detail) {
      if (quiet) return;
      const now = Date.now();
      if (!tty) {
        if (now - lastDraw < 2000 && fraction < 1) return;
        lastDraw = now;
        stream.write(`${stamp()} ${current} ${(fraction * 100).toFixed(0)}%${detail ? ` ${detail}` : ''}\n`);
        return;
      }
      if (now - lastDraw < 100 && fraction < 1) return;
      lastDraw = now;
      const w = 24;
      const n = Math.round(Math.min(1, Math.max(0, fraction)) * w);
      stream.write(`\r\x1b[K${stamp()} ${current} [${'#'.repeat(n)}${'.'.repeat(w - n)}]${detail ? ` ${detail}` : ''}`);
      if (fraction >= 1) stream.write('\n');
    },
    info(message) {
      line(`${stamp()}   ${message}`);
    },
    warn(message) {
      line(`${stamp()}   warning: ${message}`);
    },
  };
}
