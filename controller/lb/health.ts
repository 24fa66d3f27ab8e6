// TCP health checks: a backend is down after `fall` failed connects in a row and up again after
// `rise` good ones. Watchers are keyed by the caller (a VIP's backend, a service's backend), but
// the connects are per address and port: one probe, one timer, whatever number of VIPs or services
// share that backend, so a backend in N VIPs is not connected to N times per interval and every
// VIP sees its transitions at the same moment. (Measured before sharing: the xdp-lb scenario's
// 3 VIPs × 3 backends at 300 ms kept the LB daemon at ~13 ms of CPU per second,
// reports/20261202-094156-xdp-lb-host.) Each check is bounded by timeoutMs.
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

interface Probe {
  address: string;
  port: number;
  up: boolean;
  fails: number;
  oks: number;
  /** at least one check has completed: `up` is evidence, not just the first watcher's guess */
  checked: boolean;
  timer: NodeJS.Timeout | null;
  watchers: Set<string>;
}

export class HealthChecker {
  private probes = new Map<string, Probe>();
  /** watcher key → its probe's key */
  private probeOf = new Map<string, string>();
  /** watcher key → the state last reported to it (or that it started with) */
  private reported = new Map<string, boolean>();
  private stopped = false;

  constructor(
    private cfg: HealthConfig,
    private onChange: (key: string, up: boolean) => void,
  ) {}

  isUp(key: string): boolean {
    return this.reported.get(key) ?? true;
  }

  /**
   * the state last told to `key` is not in force (the change it caused failed): the probe's next
   * check tells it again
   */
  forgetReport(key: string): void {
    if (this.probeOf.has(key)) this.reported.delete(key);
  }

  /** what `key`'s probe found at its last check (whatever was reported), undefined before one */
  probeState(key: string): boolean | undefined {
    const p = this.probes.get(this.probeOf.get(key) ?? '');
    return p?.checked ? p.up : undefined;
  }

  /** how many distinct address:port pairs are being probed */
  get probeCount(): number {
    return this.probes.size;
  }

  /**
   * Watch `t.key`, starting from `initiallyUp`. A backend already probed for another key keeps its
   * one probe; when that probe's state (after at least one check) differs from `initiallyUp`, the
   * new key is told at once (on the next turn of the event loop, not inside this call).
   */
  watch(t: HealthTarget, initiallyUp = true): void {
    if (this.stopped || this.probeOf.has(t.key)) return;
    const pk = JSON.stringify([t.address, t.port]);
    let p = this.probes.get(pk);
    this.probeOf.set(t.key, pk);
    this.reported.set(t.key, initiallyUp);
    if (p) {
      p.watchers.add(t.key);
      if (p.checked && p.up !== initiallyUp) setImmediate(() => this.report(t.key, pk));
      return;
    }
    p = { address: t.address, port: t.port, up: initiallyUp, fails: 0, oks: 0, checked: false, timer: null, watchers: new Set([t.key]) };
    this.probes.set(pk, p);
    const probe = p;
    const tick = async () => {
      if (this.stopped || this.probes.get(pk) !== probe) return;
      const ok = await tcpCheck(probe.address, probe.port, this.cfg.timeoutMs);
      if (this.stopped || this.probes.get(pk) !== probe) return;
      probe.checked = true;
      if (ok) {
        probe.fails = 0;
        probe.oks++;
        if (!probe.up && probe.oks >= this.cfg.rise) probe.up = true;
      } else {
        probe.oks = 0;
        probe.fails++;
        if (probe.up && probe.fails >= this.cfg.fall) probe.up = false;
      }
      for (const k of probe.watchers) this.report(k, pk);
      probe.timer = setTimeout(tick, this.cfg.intervalMs);
    };
    probe.timer = setTimeout(tick, Math.floor(Math.random() * Math.min(this.cfg.intervalMs, 200)));
  }

  /** tell `key` its probe's state if that is not what it was last told */
  private report(key: string, pk: string): void {
    const p = this.probes.get(pk);
    if (this.stopped || !p || this.probeOf.get(key) !== pk || this.reported.get(key) === p.up) return;
    this.reported.set(key, p.up);
    this.onChange(key, p.up);
  }

  unwatch(key: string): void {
    const pk = this.probeOf.get(key);
    this.probeOf.delete(key);
    this.reported.delete(key);
    const p = pk === undefined ? undefined : this.probes.get(pk);
    if (!p) return;
    p.watchers.delete(key);
    if (p.watchers.size) return;
    if (p.timer) clearTimeout(p.timer);
    this.probes.delete(pk!);
  }

  stop(): void {
    this.stopped = true;
    for (const p of this.probes.values()) if (p.timer) clearTimeout(p.timer);
    this.probes.clear();
    this.probeOf.clear();
    this.reported.clear();
  }
}
