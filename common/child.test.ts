// The wait for a daemon's ready line (no root): real child processes.
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { collectOutput, untilReady } from './child.ts';

describe('untilReady', () => {
  it('returns the ready line\'s match from either stream', async () => {
    const p = execa('sh', ['-c', 'echo starting; sleep 0.2; echo \'{"ready":true,"n":3}\' >&2; exec sleep 30'], { all: true, buffer: false, reject: false });
    try {
      const out = collectOutput([p.all]);
      const m = await untilReady(p, out, /\{"ready":true.*\}/, 10_000, 'sh');
      expect(JSON.parse(m[0])).toEqual({ ready: true, n: 3 });
      expect(out()).toMatch(/^starting\n/);
    } finally {
      p.kill('SIGKILL');
      await p;
    }
  });

  it('a child killed by a signal before it is ready is an error at once, with what it printed (not a wait for the timeout)', async () => {
    const p = execa('sh', ['-c', 'echo half-way; kill -9 $$'], { all: true, buffer: false, reject: false });
    const t0 = performance.now();
    await expect(untilReady(p, collectOutput([p.all]), /ready/, 20_000, 'the daemon', 'see its log')).rejects.toMatchObject({
      message: expect.stringMatching(/^the daemon exited before it was ready \(SIGKILL\); it printed: half-way$/),
      fix: 'see its log',
    });
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('an exit status and a timeout are named too; the output kept is the tail', async () => {
    const p = execa('sh', ['-c', 'exit 3'], { all: true, buffer: false, reject: false });
    await expect(untilReady(p, collectOutput([p.all]), /ready/, 20_000, 'x')).rejects.toThrow(/^x exited before it was ready \(exit 3\); it printed: \(nothing\)$/);
    const q = execa('sh', ['-c', 'printf 0123456789; exec sleep 30'], { all: true, buffer: false, reject: false });
    try {
      const out = collectOutput([q.all], 4);
      await expect(untilReady(q, out, /ready/, 300, 'y')).rejects.toThrow(new RegExp(`^y \\(pid ${q.pid}\\) not ready after 0 s; it printed: 6789$`));
    } finally {
      q.kill('SIGKILL');
      await q;
    }
  });
});
