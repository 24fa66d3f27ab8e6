// Policy planning without a kernel: what a policy costs in map entries and when raw/packet
// sockets are denied, from parsed policy files (no root, no BPF).
import { describe, expect, it } from 'vitest';
import { parsePolicies } from './policy.ts';
import { denyRaw, entriesNeeded } from './store.ts';

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
