// Policy planning without a kernel: what a policy costs in map entries and when raw/packet
// sockets are denied, from parsed policy files (no root, no BPF).
import { describe, expect, it } from 'vitest';
import { parsePolicies } from './policy.ts';
import { denyRaw, entriesNeeded } from './store.ts';
import { COMPAT_HOOK, ROUTE_GUARD_HOOK, enforcementGaps, procsSizing, type Mechanisms } from './controller.ts';
import { closeConnections, egressSockets, parseProcNet, parseSsZones, procNetAddr, type HeldConnection } from './existing.ts';
import { formatIp, fromMapped16 } from '../../common/ip.ts';

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
  const full: Mechanisms = { exec: 'lsm', lsmEvidence: 'lsm/bprm_check_security load and attach', egress: ['cgroup/connect4'], lsmConnect: true, rawSockets: ['lsm/socket_create'], sourceRouting: ['cgroup/setsockopt', 'lsm/socket_sendmsg', 'lsm/socket_connect'], ptrace: ['lsm/ptrace_access_check'], ptraceIoUring: 'lsm/ptrace_access_check', oracle: true, procs: { capacity: 32768, pidMax: 32768, prealloc: true, unrecordedChild: 'governed' }, compat: 'none needed', unsupported: [] };
  it('BPF LSM with every hook attached leaves none', () => {
    expect(enforcementGaps(full)).toEqual([]);
  });
  it('the tracepoint fallbacks leave per-message source routes and their own windows, with the LSM probe as evidence', () => {
    const lsmOff: Mechanisms = { ...full, exec: 'tp-kill', lsmEvidence: 'BPF LSM: EPERM', lsmConnect: false, rawSockets: ['cgroup/sock_create'], sourceRouting: ['cgroup/setsockopt'], ptrace: ['tracepoint/syscalls/sys_enter_ptrace + SIGKILL'], ptraceIoUring: 'tp_btf/io_uring_complete + SIGKILL', compat: COMPAT_HOOK };
    // the windows README names ("Known gaps of the fallbacks") are gaps --require-all refuses
    const windows = ['a /proc/<pid>/mem descriptor another thread uses or moves between the open and its kill', 'an io_uring open of /proc/<pid>/mem completed as task work after the submitter unshared its file table (IORING_SETUP_DEFER_TASKRUN)'];
    expect(enforcementGaps(lsmOff)).toEqual([{ what: 'source routes given per message (control messages)', evidence: 'only lsm/socket_sendmsg sees them; BPF LSM: EPERM' }, ...windows.map((what) => ({ what, evidence: expect.stringMatching(/; BPF LSM: EPERM$/) }))]);
    // without the raw sys_exit hook the fallbacks are blind to int 0x80: one gap, named once
    expect(enforcementGaps({ ...lsmOff, compat: '' }).map((g) => g.what)).toEqual(['source routes given per message (control messages)', ...windows, '32-bit (ia32) syscalls']);
    expect(enforcementGaps({ ...lsmOff, compat: '', unsupported: [{ hook: 'tp_btf/sys_exit', evidence: 'EINVAL' }] }).map((g) => g.what)).toEqual(['tp_btf/sys_exit', 'source routes given per message (control messages)', ...windows]);
    // the packet guard judges them by the socket's cgroup or the sending task: what it cannot pin on a sender is left
    const guarded = enforcementGaps({ ...lsmOff, sourceRouting: ['cgroup/setsockopt', `${ROUTE_GUARD_HOOK} (a packet that carries one)`] });
    expect(guarded.map((g) => g.what)).toEqual(['a source route on a socket given it before its process was selected, whose packets then leave only from softirq (TCP data sent ACK-clocked)', ...windows]);
    expect(guarded[0]!.evidence).toBe(`${ROUTE_GUARD_HOOK} judges by the sending task only in that task's own send; BPF LSM: EPERM`);
  });
  it('every refused hook is one, named once; a missing mechanism is one', () => {
    const m: Mechanisms = { ...full, sourceRouting: ['cgroup/setsockopt', 'lsm/socket_connect'], exec: 'none', oracle: false, egress: [], ptrace: [], unsupported: [{ hook: 'lsm/socket_sendmsg', evidence: 'verifier: too complex' }, { hook: 'cgroup/setsockopt', evidence: 'EINVAL' }] };
    expect(enforcementGaps(m).map((g) => g.what)).toEqual(['lsm/socket_sendmsg', 'cgroup/setsockopt', 'exec rules', 'egress rules', 'ptrace: deny']);
  });
  it('an io_uring open of /proc/<pid>/mem nothing refuses is one, named once', () => {
    expect(enforcementGaps({ ...full, ptraceIoUring: '' }).map((g) => g.what)).toEqual(['/proc/<pid>/mem opened through io_uring']);
    expect(enforcementGaps({ ...full, ptraceIoUring: '', unsupported: [{ hook: 'tp_btf/io_uring_complete', evidence: 'no req argument' }] }).map((g) => g.what)).toEqual(['tp_btf/io_uring_complete']);
  });
  it('identity by stat(2) is one where exec is enforced', () => {
    expect(enforcementGaps({ ...full, oracle: false }).map((g) => g.what)).toEqual(['binary identity from the kernel']);
  });
  it('procs holding fewer processes than pid_max allows is one (pid_max raised after the map was made)', () => {
    expect(enforcementGaps({ ...full, procs: { ...full.procs, capacity: 65536, pidMax: 32768 } })).toEqual([]);
    const raised = enforcementGaps({ ...full, procs: { ...full.procs, capacity: 32768, pidMax: 4194304 } });
    expect(raised.map((g) => g.what)).toEqual(['selection by executable beyond procs capacity']);
    expect(raised[0]!.evidence).toMatch(/procs holds 32768 processes but kernel.pid_max is 4194304/);
  });
  it('procs is sized to pid_max, at least 1024, preallocated up to 131072 entries', () => {
    expect(procsSizing(32768)).toEqual({ maxEntries: 32768, flags: 0 });
    expect(procsSizing(300)).toEqual({ maxEntries: 1024, flags: 0 });
    expect(procsSizing(131072)).toEqual({ maxEntries: 131072, flags: 0 });
    expect(procsSizing(4194304)).toEqual({ maxEntries: 4194304, flags: 1 }); // BPF_F_NO_PREALLOC
    expect(procsSizing(4194304, 64)).toEqual({ maxEntries: 64, flags: 0 }); // a test's override, no floor
  });
});

describe('held connections: /proc/net rows (pure)', () => {
  // rows as the kernel prints them (x86-64): a listener on 0.0.0.0:2024, a connection accepted on it,
  // an outgoing one to 127.0.0.2:80, a TIME_WAIT; tcp6: a dual-stack listener on :::8080, a
  // connection accepted on it from ::ffff:127.0.0.2, an outgoing one to ::1 port 443
  const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 242 1 0 100 0 0 10 0
   1: 0100007F:07E8 0200007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 301 1 0 20 4 30 10 -1
   2: 0100007F:D432 0200007F:0050 01 00000000:00000000 00:00000000 00000000     0        0 302 1 0 20 4 30 10 -1
   3: 0100007F:D433 0200007F:0050 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0`;
  const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 400 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000200007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 401 1 0 20 4 30 10 -1
   2: 00000000000000000000000001000000:A000 00000000000000000000000001000000:01BB 01 00000000:00000000 00:00000000 00000000     0        0 402 1 0 20 4 30 10 -1`;
  const udp = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  10: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 500 2 0 0
  11: 0100007F:C000 0200007F:0009 01 00000000:00000000 00:00000000 00000000     0        0 501 2 0 0`;
  const rows = [...parseProcNet(tcp, 'tcp', false), ...parseProcNet(tcp6, 'tcp', true), ...parseProcNet(udp, 'udp', false)];
  it('decodes addresses in the machine byte order, IPv4 as ::ffff:a.b.c.d', () => {
    expect(formatIp(fromMapped16(procNetAddr('0200007F')))).toBe('127.0.0.2');
    expect(formatIp(fromMapped16(procNetAddr('00000000000000000000000001000000')))).toBe('::1');
    expect(formatIp(fromMapped16(procNetAddr('0000000000000000FFFF00000200007F')))).toBe('127.0.0.2');
    expect(rows.find((r) => r.inode === '302')).toMatchObject({ lport: 0xd432, rport: 80, st: '01', v6: false });
  });
  it('egress: outgoing TCP and connected UDP; not listeners, accepted connections (v4 or on a dual-stack listener), TIME_WAIT or unconnected UDP', () => {
    expect(egressSockets(rows).map((r) => r.inode)).toEqual(['302', '402', '501']);
  });
  // /proc/net has no scope: a link-local socket's interface comes from ss (sock_diag), as printed on
  // this host (`ss -H -n -e -a -t -u -6`, iproute2 6.1: a Netid column with -t -u) with one 4-tuple
  // on two interfaces, a connected UDP socket on a third, and sockets without an interface
  it('the interface of link-local sockets, by inode, from ss; sockets without one are left out', () => {
    const ss = `tcp ESTAB  0      0      [fe80::1]%lla2:40000 [fe80::2]:5555 ino:299697 sk:8 cgroup:/ <->
tcp ESTAB  0      0      [fe80::1]%lla1:40000 [fe80::2]:5555 ino:299694 sk:9 cgroup:/ <->
udp ESTAB  0      0      [fe80::1]%veth-x.1@2:546 [fe80::9]:547 ino:299701 sk:b cgroup:/ <->
udp ESTAB  0      0      [::1]:54402 [::1]:9 ino:718884 sk:1e0 cgroup:/ <->
tcp LISTEN 0      1      [::1]:51063  [::]:* ino:718885 sk:1e1 cgroup:/ v6only:1 <->`;
    expect([...parseSsZones(ss)]).toEqual([['299697', 'lla2'], ['299694', 'lla1'], ['299701', 'veth-x.1@2']]);
  });
  it('a link-local connection whose interface is not known is not closed by addresses and ports alone', async () => {
    const c: HeldConnection = { pid: process.pid, comm: 'x', policy: 'p', mode: 'enforce', ruleId: 1, rule: 'r', proto: 'tcp', local: 'fe80::1', lport: 40000, remote: 'fe80::2', rport: 5555, state: 'ESTABLISHED', inode: '1', v6: true, ppid: 1, uid: 0, cgroup: '/', cgroupId: '1' };
    expect((await closeConnections([c])).get(c)).toMatch(/^not closed: its interface is not known/);
  });
});
