// Health checks against real TCP listeners on loopback (no root): one probe per address and port
// however many watchers share it, transitions reported to every watcher, a late watcher told the
// known state at once, probes gone with their last watcher.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { HealthChecker } from './health.ts';

async function listener(port = 0): Promise<{ server: net.Server; port: number; accepted: () => number }> {
  let n = 0;
  const server = net.createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((res, rej) => server.once('error', rej).listen(port, '127.0.0.1', () => res()));
  return { server, port: (server.address() as net.AddressInfo).port, accepted: () => n };
}

async function until(what: string, ok: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('HealthChecker', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0)) c();
  });

  it('probes a backend shared by several watchers once per interval and tells each of them', async () => {
    const l = await listener();
    cleanups.push(() => l.server.close());
    const events: [string, boolean][] = [];
    const h = new HealthChecker({ intervalMs: 50, timeoutMs: 500, fall: 2, rise: 2 }, (k, up) => events.push([k, up]));
    cleanups.push(() => h.stop());
    for (const k of ['vip1|b', 'vip2|b', 'vip3|b']) h.watch({ key: k, address: '127.0.0.1', port: l.port });
    expect(h.probeCount).toBe(1);
    await sleep(600);
    // one watcher alone would connect ~12 times in 600 ms; three separate probes ~36
    expect(l.accepted()).toBeGreaterThanOrEqual(3);
    expect(l.accepted()).toBeLessThanOrEqual(16);
    expect(events).toEqual([]);

    await new Promise<void>((res) => l.server.close(() => res()));
    await until('every watcher told down', () => events.length === 3);
    expect(events.sort()).toEqual([['vip1|b', false], ['vip2|b', false], ['vip3|b', false]]);
    expect(['vip1|b', 'vip2|b', 'vip3|b'].map((k) => h.isUp(k))).toEqual([false, false, false]);

    // a watcher that joins a probe known to be down hears so at once, not after `fall` checks
    h.watch({ key: 'vip4|b', address: '127.0.0.1', port: l.port }, true);
    expect(h.isUp('vip4|b')).toBe(true);
    await sleep(5);
    expect(events.at(-1)).toEqual(['vip4|b', false]);

    // back up: rise checks later, everyone at once
    const again = await listener(l.port);
    cleanups.push(() => again.server.close());
    await until('every watcher told up', () => events.filter(([, up]) => up).length === 4);
    expect(['vip1|b', 'vip2|b', 'vip3|b', 'vip4|b'].every((k) => h.isUp(k))).toBe(true);
  });

  it('keeps a probe while any watcher is left and stops connecting with the last one', async () => {
    const a = await listener();
    const b = await listener();
    cleanups.push(() => a.server.close(), () => b.server.close());
    const h = new HealthChecker({ intervalMs: 30, timeoutMs: 500, fall: 2, rise: 2 }, () => {});
    cleanups.push(() => h.stop());
    h.watch({ key: 'x|a', address: '127.0.0.1', port: a.port });
    h.watch({ key: 'y|a', address: '127.0.0.1', port: a.port });
    h.watch({ key: 'x|b', address: '127.0.0.1', port: b.port });
    expect(h.probeCount).toBe(2);
    h.unwatch('x|a');
    expect(h.probeCount).toBe(2);
    await sleep(200);
    const seen = a.accepted();
    expect(seen).toBeGreaterThan(0);
    h.unwatch('y|a');
    expect(h.probeCount).toBe(1);
    await sleep(200);
    // at most a check already in flight when the last watcher left
    expect(a.accepted()).toBeLessThanOrEqual(seen + 1);
    expect(b.accepted()).toBeGreaterThan(2);
    h.stop();
    expect(h.probeCount).toBe(0);
  });
});
