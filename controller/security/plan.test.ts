// Policy planning without a kernel: what a policy costs in map entries and when raw/packet
// sockets are denied, from parsed policy files (no root, no BPF).
import { describe, expect, it } from 'vitest';
import { parsePolicies } from './policy.ts';
import { denyRaw, entriesNeeded } from './store.ts';
import { enforcementGaps, type Mechanisms } from './controller.ts';

const one = (body: string) => parsePolicies(`policies:\n  - name: p\n    select: { cgroup: / }\n${body}`, 'p.yaml', { checkPaths: false })[0]!;

describe('policy planning (pure)', () => {
  it('exec entries: one per binary, "shells" as many as this system has', () => {
    const p = one('    exec:\n      deny: [shells, /usr/bin/nc]\n      allow: [/usr/bin/true, /usr/bin/false]\n');
    expect(entriesNeeded(p, 4)).toEqual({ exec: 4 + 1 + 2, egress: 0 });
    expect(entriesNeeded(p, 0)).toEqual({ exec: 1 + 2, egress: 0 });
  });

  it('egress entries: one per port of each rule, at least one per rule', () => {
    const p = one('    egress:\n      allow: [{ to: 10.0.0.0/8, ports: [80, 443] }, { to: "::1" }]\n      deny: [{ to: 192.0.2.1, ports: [22] }]\n');
    expect(entriesNeeded(p, 0)).toEqual({ exec: 0, egress: 2 + 1 + 1 });
  });

  it('raw/packet sockets: denied once egress is restricted, unless allowed; untouched without egress rules', () => {
    expect(denyRaw(one('    exec:\n      deny: [/usr/bin/nc]\n'))).toBe(false);
    expect(denyRaw(one('    egress:\n      deny: [{ to: 192.0.2.1 }]\n'))).toBe(true);
    expect(denyRaw(one('    egress:\n      allow: []\n'))).toBe(true);
    expect(denyRaw(one('    egress:\n      deny: [{ to: 192.0.2.1 }]\n      rawSockets: allow\n'))).toBe(false);
    expect(denyRaw(one('    egress:\n      rawSockets: deny\n'))).toBe(true);
  });
});

describe('enforcement gaps (pure): what --require-all refuses', () => {
  const full: Mechanisms = { exec: 'lsm', lsmEvidence: 'lsm/bprm_check_security load and attach', egress: ['cgroup/connect4'], lsmConnect: true, rawSockets: ['lsm/socket_create'], sourceRouting: ['cgroup/setsockopt', 'lsm/socket_sendmsg', 'lsm/socket_connect'], ptrace: ['lsm/ptrace_access_check'], oracle: true, unsupported: [] };
  it('BPF LSM with every hook attached leaves none', () => {
    expect(enforcementGaps(full)).toEqual([]);
  });
  it('the tracepoint fallbacks leave per-message source routes, with the LSM probe as evidence', () => {
    const lsmOff: Mechanisms = { ...full, exec: 'tp-kill', lsmEvidence: 'BPF LSM: EPERM', lsmConnect: false, rawSockets: ['cgroup/sock_create'], sourceRouting: ['cgroup/setsockopt'], ptrace: ['tracepoint/syscalls/sys_enter_ptrace + SIGKILL'] };
    expect(enforcementGaps(lsmOff)).toEqual([{ what: 'source routes given per message (control messages)', evidence: 'only lsm/socket_sendmsg sees them; BPF LSM: EPERM' }]);
  });
  it('every refused hook is one, named once; a missing mechanism is one', () => {
    const m: Mechanisms = { ...full, sourceRouting: ['cgroup/setsockopt', 'lsm/socket_connect'], exec: 'none', oracle: false, egress: [], ptrace: [], unsupported: [{ hook: 'lsm/socket_sendmsg', evidence: 'verifier: too complex' }, { hook: 'cgroup/setsockopt', evidence: 'EINVAL' }] };
    expect(enforcementGaps(m).map((g) => g.what)).toEqual(['lsm/socket_sendmsg', 'cgroup/setsockopt', 'exec rules', 'egress rules', 'ptrace: deny']);
  });
  it('identity by stat(2) is one where exec is enforced', () => {
    expect(enforcementGaps({ ...full, oracle: false }).map((g) => g.what)).toEqual(['binary identity from the kernel']);
  });
});
