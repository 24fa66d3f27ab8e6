import { describe, expect, it } from 'vitest';
import { AuditLimiter, type SuppressedRecord } from './audit-limit.ts';
import type { SecurityEvent } from './controller.ts';

const ev = (over: Partial<SecurityEvent> = {}): SecurityEvent => ({
  time: '2026-12-06T00:00:00.000Z',
  tsNs: '1',
  kind: 'connect',
  action: 'blocked',
  mechanism: 'cgroup/connect4',
  pid: 100,
  ppid: 1,
  uid: 0,
  comm: 'attacker',
  cgroupId: '7',
  policy: 'p',
  ruleId: 0,
  rule: 'deny 127.0.0.1/32',
  ...over,
});

const clock = () => {
  let t = 1_000_000;
  return { now: () => t, step: (ms: number) => (t += ms) };
};
const written = (recs: unknown[]) => recs.filter((r) => (r as { kind: string }).kind !== 'suppressed').length;
const summaries = (recs: unknown[]) => recs.filter((r): r is SuppressedRecord => (r as { kind: string }).kind === 'suppressed');

describe('security/audit-limit', () => {
  it('writes a burst, then rate per second; every record is written or counted', () => {
    const c = clock();
    const l = new AuditLimiter({ rate: 5, burst: 50, summaryMs: 10_000 }, c.now);
    let out = l.admit(Array.from({ length: 300 }, (_, i) => ev({ pid: 100 + (i % 20) })));
    expect(written(out)).toBe(50);
    c.step(1000);
    out = l.admit(Array.from({ length: 300 }, () => ev()));
    expect(written(out)).toBe(5); // refilled at 5/s
    expect(summaries(out)).toEqual([]); // not due yet
    c.step(9000);
    out = l.admit([]);
    const [s] = summaries(out);
    expect(s).toMatchObject({ kind: 'suppressed', of: 'connect', action: 'blocked', cgroupIds: ['7'], policy: 'p', ruleId: 0, count: 250 + 295, limit: '5/s per policy, burst 50' });
    expect(s!.pids).toHaveLength(8); // distinct, bounded
    expect(new Set(s!.pids).size).toBe(8);
    expect(s!.time).toBe(new Date(c.now()).toISOString());
    expect(l.flush()).toEqual([]); // written once
  });

  it('keeps one policy\'s flood from silencing another\'s; new cgroups under one policy get no fresh burst', () => {
    const c = clock();
    const l = new AuditLimiter({ rate: 1, burst: 3, summaryMs: 10_000 }, c.now);
    const out = l.admit([...Array.from({ length: 10 }, () => ev()), ev({ policy: 'q' }), ev({ policy: 'q' })]);
    expect(out.filter((r) => (r as SecurityEvent).policy === 'q')).toHaveLength(2);
    expect(written(out)).toBe(5);
    // a workload that may create cgroups (a delegated subtree the policy selects) moves into a new
    // one per refusal: still one bucket, and one suppressed record per rule, not per cgroup
    c.step(20_000);
    const flood = l.admit(Array.from({ length: 100 }, (_, i) => ev({ cgroupId: String(1000 + i) })));
    expect(written(flood)).toBe(3);
    const [s, ...more] = l.flush();
    expect(more).toEqual([]);
    expect(s).toMatchObject({ count: 97, cgroupIds: ['1003', '1004', '1005', '1006', '1007', '1008', '1009', '1010'] });
  });

  it('counts per kind, action and rule, and flushes what is held at stop', () => {
    const c = clock();
    const l = new AuditLimiter({ rate: 1, burst: 1, summaryMs: 10_000 }, c.now);
    l.admit([ev(), ev(), ev({ ruleId: 1, rule: 'deny ::1/128' }), ev({ kind: 'exec', mechanism: 'lsm/bprm_check_security' }), ev({ action: 'would-block' })]);
    const held = l.flush();
    expect(held.map((s) => [s.of, s.action, s.ruleId, s.count]).sort()).toEqual(
      [
        ['connect', 'blocked', 0, 1],
        ['connect', 'blocked', 1, 1],
        ['connect', 'would-block', 0, 1],
        ['exec', 'blocked', 0, 1],
      ].sort(),
    );
    expect(l.flush()).toEqual([]);
  });

  it('limits the resumes a workload can cause, never a close the operator asked for; rate 0 limits nothing', () => {
    const c = clock();
    const l = new AuditLimiter({ rate: 1, burst: 1, summaryMs: 10_000 }, c.now);
    const out = l.admit([ev(), ev(), ...Array.from({ length: 20 }, () => ev({ kind: 'ptrace', action: 'resumed' })), ev({ action: 'closed' })]);
    expect(out.filter((r) => (r as SecurityEvent).action === 'resumed')).toHaveLength(0);
    expect(out.filter((r) => (r as SecurityEvent).action === 'closed')).toHaveLength(1);
    expect(written(out)).toBe(2);
    expect(l.flush().find((x) => x.action === 'resumed')).toMatchObject({ of: 'ptrace', count: 20 });
    const none = new AuditLimiter({ rate: 0, burst: 1, summaryMs: 10_000 }, c.now);
    expect(written(none.admit(Array.from({ length: 1000 }, () => ev())))).toBe(1000);
  });

  it('forgets a cgroup once its bucket has refilled', () => {
    const c = clock();
    const l = new AuditLimiter({ rate: 10, burst: 10, summaryMs: 10_000 }, c.now);
    l.admit(Array.from({ length: 10 }, () => ev()));
    c.step(1000);
    l.due();
    expect((l as unknown as { buckets: Map<string, unknown> }).buckets.size).toBe(0);
    expect(written(l.admit(Array.from({ length: 12 }, () => ev())))).toBe(10);
  });
});
