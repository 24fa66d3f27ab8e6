// TCP health checks: a backend is down after `fall` failed connects in a row and up again after
// `rise` good ones. One timer per backend, each check bounded by timeoutMs.
import net from 'node:net';
import type { HealthConfig } from './config.ts';

export interface HealthTarget {
  key: string;
  address: string;
  port: number;
}

export function tcpCheck(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: address, port });
    const t = setTimeout(() => finish(false), timeoutMs);
    function finish(ok: boolean) {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    }
    s.once('connect', () => finish(true));
    s.once('error', () => finish(false));
  });
}

export class HealthChecker {
  private timers = new Map<string, NodeJS.Timeout>();
  private state = new Map<string, { up: boolean; fails: number; oks: number; lastError?: string }>();
  private stopped = false;

  constructor(
    private cfg: HealthConfig,
    private onChange: (key: string, up: boolean) => void,
  ) {}

  isUp(key: string): boolean {
    return this.state.get(key)?.up ?? true;
  }

  watch(t: HealthTarget, initiallyUp = true): void {
    if (this.timers.has(t.key)) return;
    this.state.set(t.key, { up: initiallyUp, fails: 0, oks: 0 });
    const tick = async () => {
      if (this.stopped || !this.timers.has(t.key)) return;
      const ok = await tcpCheck(t.address, t.port, this.cfg.timeoutMs);
      const s = this.state.get(t.key);
      if (!s || this.stopped || !this.timers.has(t.key)) return;
      if (ok) {
        s.fails = 0;
        s.oks++;
        if (!s.up && s.oks >= this.cfg.rise) {
          s.up = true;
          this.onChange(t.key, true);
        }
      } else {
        s.oks = 0;
        s.fails++;
        if (s.up && s.fails >= this.cfg.fall) {
          s.up = false;
          this.onChange(t.key, false);
        }
      }
      this.timers.set(t.key, setTimeout(tick, this.cfg.intervalMs));
    };
    this.timers.set(t.key, setTimeout(tick, Math.floor(Math.random() * Math.min(this.cfg.intervalMs, 200))));
  }

  unwatch(key: string): void {
    const t = this.timers.get(key);
    if (t) clearTimeout(t);
    this.timers.delete(key);
    this.state.delete(key);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
