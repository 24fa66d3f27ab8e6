// The audit log's rate limit. Refused actions cost an attacker nothing (a refused connect is an
// EPERM), so without a limit a selected process can write records as fast as it can call connect
// and push its own earlier records (the one that mattered) out of the rotated log. Each cgroup gets
// a token bucket (Tetragon's export rate limit and Falco's outputs rate are global; per cgroup, one
// noisy workload cannot silence the others); what exceeds it is not dropped silently but counted
// per (cgroup, kind, action, policy, rule) and written as one `suppressed` record per key when it
// is older than the summary interval, and at the daemon's stop. Enforcement is untouched: only
// what is written is limited. The daemon's own actions (a victim resumed, a connection closed) are
// never limited: they are what an operator needs to see it did.
import type { SecurityEvent } from './controller.ts';

export interface AuditLimitOptions {
  /** records per second per cgroup; 0: no limit */
  rate: number;
  /** records a cgroup may write at once after a quiet spell */
  burst: number;
  /** a key's suppressed count is written once it is this old */
  summaryMs: number;
}

/** what was not written: `count` records of `of`/`action` from this cgroup under this rule */
export interface SuppressedRecord {
  time: string;
  kind: 'suppressed';
  of: SecurityEvent['kind'];
  action: SecurityEvent['action'];
  cgroupId: string;
  cgroup?: string;
  policy: string;
  ruleId: number;
  rule: string;
  count: number;
  /** up to PIDS_KEPT distinct pids among them */
  pids: number[];
  /** times of the first and last record suppressed */
  from: string;
  to: string;
  /** why: the limit in force */
  limit: string;
}

const PIDS_KEPT = 8;
const NEVER_LIMITED = new Set<SecurityEvent['action']>(['resumed', 'closed']);

interface Bucket {
  tokens: number;
  at: number;
}

export class AuditLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly pending = new Map<string, { rec: SuppressedRecord; firstAt: number }>();

  constructor(
    private readonly opts: AuditLimitOptions,
    private readonly now: () => number = Date.now,
  ) {
    if (opts.rate < 0 || opts.burst < 1 || !(opts.summaryMs > 0)) throw new RangeError(`bad audit limit ${JSON.stringify(opts)}`);
  }

  /** the records to write for these events, in order, with any summaries that are due first */
  admit(evs: readonly SecurityEvent[]): (SecurityEvent | SuppressedRecord)[] {
    const t = this.now();
    const out: (SecurityEvent | SuppressedRecord)[] = this.due(t);
    for (const e of evs) {
      if (!this.opts.rate || NEVER_LIMITED.has(e.action) || this.take(e.cgroupId, t)) out.push(e);
      else this.suppress(e, t);
    }
    return out;
  }

  /** summaries older than the interval (called on a timer: no event need follow a flood) */
  due(t = this.now()): SuppressedRecord[] {
    const out: SuppressedRecord[] = [];
    for (const [k, p] of this.pending) {
      if (t - p.firstAt < this.opts.summaryMs) continue;
      out.push({ ...p.rec, time: new Date(t).toISOString() });
      this.pending.delete(k);
    }
    this.prune(t);
    return out;
  }

  /** every summary still held (the daemon stops) */
  flush(): SuppressedRecord[] {
    const time = new Date(this.now()).toISOString();
    const out = [...this.pending.values()].map((p) => ({ ...p.rec, time }));
    this.pending.clear();
    return out;
  }

  private take(cgroupId: string, t: number): boolean {
    const { rate, burst } = this.opts;
    let b = this.buckets.get(cgroupId);
    if (!b) this.buckets.set(cgroupId, (b = { tokens: burst, at: t }));
    b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * rate);
    b.at = t;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private suppress(e: SecurityEvent, t: number) {
    const key = [e.cgroupId, e.kind, e.action, e.policy, e.ruleId].join('\0');
    const p = this.pending.get(key);
    if (p) {
      p.rec.count++;
      p.rec.to = e.time;
      if (p.rec.pids.length < PIDS_KEPT && !p.rec.pids.includes(e.pid)) p.rec.pids.push(e.pid);
      return;
    }
    const rec: SuppressedRecord = {
      time: '', // when it is written
      kind: 'suppressed',
      of: e.kind,
      action: e.action,
      cgroupId: e.cgroupId,
      ...(e.cgroup !== undefined ? { cgroup: e.cgroup } : {}),
      policy: e.policy,
      ruleId: e.ruleId,
      rule: e.rule,
      count: 1,
      pids: [e.pid],
      from: e.time,
      to: e.time,
      limit: `${this.opts.rate}/s per cgroup, burst ${this.opts.burst}`,
    };
    this.pending.set(key, { rec, firstAt: t });
  }

  /** a bucket that has refilled holds nothing a new one would not: cgroups come and go */
  private prune(t: number) {
    const { rate, burst } = this.opts;
    if (!rate) return;
    for (const [k, b] of this.buckets) if (b.tokens + ((t - b.at) / 1000) * rate >= burst) this.buckets.delete(k);
  }
}
