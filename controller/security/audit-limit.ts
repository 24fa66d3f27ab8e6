// The audit log's rate limit. Refused actions cost an attacker nothing (a refused connect is an
// EPERM), so without a limit a selected process can write records as fast as it can call connect
// and push its own earlier records (the one that mattered) out of the rotated log. Each policy
// gets a token bucket (Tetragon's export rate limit and Falco's outputs rate are global; per
// policy, one noisy workload cannot silence another's): not per cgroup, because a policy selects
// its cgroup's descendants too, and a workload that may create cgroups (a delegated subtree) got
// a fresh burst in each. What exceeds it is not dropped silently but counted per (policy, kind,
// action, rule) — keys bounded by the rules, not by what the workload can create — and written as
// one `suppressed` record per key when it is older than the summary interval, and at the daemon's
// stop. Enforcement is untouched: only what is written is limited, the daemon's resumes of a
// refused attach's victim included (a workload can cause those as fast as it can fork). Only a
// connection closed on the operator's request is never limited. The limit slows a flood, it does
// not make the log unbounded: at the defaults one policy fills 16 MiB in about an hour.
import type { SecurityEvent } from './controller.ts';

export interface AuditLimitOptions {
  /** records per second per policy; 0: no limit */
  rate: number;
  /** records a policy may write at once after a quiet spell */
  burst: number;
  /** a key's suppressed count is written once it is this old */
  summaryMs: number;
}

/** what was not written: `count` records of `of`/`action` under this policy's rule */
export interface SuppressedRecord {
  time: string;
  kind: 'suppressed';
  of: SecurityEvent['kind'];
  action: SecurityEvent['action'];
  /** up to KEPT distinct cgroups (ids) and their paths among them */
  cgroupIds: string[];
  cgroups: string[];
  policy: string;
  ruleId: number;
  rule: string;
  count: number;
  /** up to KEPT distinct pids among them */
  pids: number[];
  /** times of the first and last record suppressed */
  from: string;
  to: string;
  /** why: the limit in force */
  limit: string;
}

const KEPT = 8;
const NEVER_LIMITED = new Set<SecurityEvent['action']>(['closed']);

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
      if (!this.opts.rate || NEVER_LIMITED.has(e.action) || this.take(e.policy, t)) out.push(e);
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

  private take(policy: string, t: number): boolean {
    const { rate, burst } = this.opts;
    let b = this.buckets.get(policy);
    if (!b) this.buckets.set(policy, (b = { tokens: burst, at: t }));
    b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * rate);
    b.at = t;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private suppress(e: SecurityEvent, t: number) {
    const key = [e.policy, e.kind, e.action, e.ruleId].join('\0');
    const p = this.pending.get(key);
    if (p) {
      p.rec.count++;
      p.rec.to = e.time;
      if (p.rec.pids.length < KEPT && !p.rec.pids.includes(e.pid)) p.rec.pids.push(e.pid);
      if (p.rec.cgroupIds.length < KEPT && !p.rec.cgroupIds.includes(e.cgroupId)) {
        p.rec.cgroupIds.push(e.cgroupId);
        if (e.cgroup !== undefined) p.rec.cgroups.push(e.cgroup);
      }
      return;
    }
    const rec: SuppressedRecord = {
      time: '', // when it is written
      kind: 'suppressed',
      of: e.kind,
      action: e.action,
      cgroupIds: [e.cgroupId],
      cgroups: e.cgroup !== undefined ? [e.cgroup] : [],
      policy: e.policy,
      ruleId: e.ruleId,
      rule: e.rule,
      count: 1,
      pids: [e.pid],
      from: e.time,
      to: e.time,
      limit: `${this.opts.rate}/s per policy, burst ${this.opts.burst}`,
    };
    this.pending.set(key, { rec, firstAt: t });
  }

  /** a bucket that has refilled holds nothing a new one would not: policies come and go */
  private prune(t: number) {
    const { rate, burst } = this.opts;
    if (!rate) return;
    for (const [k, b] of this.buckets) if (b.tokens + ((t - b.at) / 1000) * rate >= burst) this.buckets.delete(k);
  }
}
