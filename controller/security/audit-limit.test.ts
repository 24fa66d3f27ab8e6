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
    expect(s).toMatchObject({ kind: 'suppressed', of: 'connect', action: 'blocked', cgroupId: '7', policy: 'p', ruleId: 0, count: 250 + 295, limit: '5/s per cgroup, burst 50' });
    expect(s!.pids).toHaveLength(8); // distinct, bounded
    expect(new Set(s!.pids).size).toBe(8);
    expect(s!.time).toBe(new Date(c.now()).toISOString());
    expect(l.flush()).toEqual([]); // written once
  });

  it('keeps one cgroup\'s flood from silencing another', () => {
    const c = clock();
    const l = new AuditLimiter({ rate: 1, burst: 3, summaryMs: 10_000 }, c.now);
    const out = l.admit([...Array.from({ length: 10 }, () => ev()), ev({ cgroupId: '8' }), ev({ cgroupId: '8' })]);
    expect(out.filter((r) => (r as SecurityEvent).cgroupId === '8')).toHaveLength(2);
    expect(written(out)).toBe(5);
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

  it('never limits what the daemon did (resumed, closed), and rate 0 limits nothing', () => {
    const c = clock();
    const l = new AuditLimiter({ rate: 1, burst: 1, summaryMs: 10_000 }, c.now);
    const out = l.admit([ev(), ev(), ...Array.from({ length: 20 }, () => ev({ kind: 'ptrace', action: 'resumed' })), ev({ action: 'closed' })]);
    expect(out.filter((r) => (r as SecurityEvent).action === 'resumed')).toHaveLength(20);
    expect(out.filter((r) => (r as SecurityEvent).action === 'closed')).toHaveLength(1);
    expect(written(out)).toBe(22);
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
