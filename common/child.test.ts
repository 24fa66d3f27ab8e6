// The wait for a daemon's ready line (no root): real child processes.
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { collectOutput, untilReady, untilTrue } from './child.ts';

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

  it('untilTrue: a child ready when a test says so (nginx: a connect), and one that dies first named', async () => {
    const net = await import('node:net');
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    const connects = () => new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    // listens after 0.3 s, prints nothing
    const p = execa(process.execPath, ['-e', `setTimeout(() => require('net').createServer().listen(${port}, '127.0.0.1'), 300)`], { all: true, buffer: false, reject: false });
    try {
      const t0 = performance.now();
      await untilTrue(p, collectOutput([p.all]), connects, 20_000, 'leaf');
      expect(performance.now() - t0).toBeGreaterThan(250);
    } finally {
      p.kill('SIGKILL');
      await p;
    }
    const q = execa('sh', ['-c', 'echo bind failed >&2; exit 1'], { all: true, buffer: false, reject: false });
    await expect(untilTrue(q, collectOutput([q.all]), connects, 20_000, 'leaf')).rejects.toThrow(/^leaf exited before it was ready \(exit 1\); it printed: bind failed$/);
  });
});
