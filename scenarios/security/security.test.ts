// Every attack of the suite on the host path (whichever exec mechanism this kernel allows), the
// positive controls with a real PostgreSQL, and the deny-list-only expectations.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { describeRoot } from '../../lab/testing.ts';
import { ATTACKS, CONTROLS, missingHook, proof, refusedByKernel, runAttack } from './suite.ts';
import { setupLab, workloadPolicy, type Lab } from './setup.ts';
import { preparePostgresTemplate } from './workload.ts';

describeRoot('security attack suite (host)', () => {
  let lab: Lab;
  const cleanups: [string, () => unknown][] = [];

  beforeAll(async () => {
    lab = await setupLab((what, fn) => cleanups.push([what, fn]), { postgres: true });
    lab.controller.store.apply(workloadPolicy(lab));
  });
  afterAll(async () => {
    for (const [, fn] of cleanups.reverse()) await fn();
  });

  for (const a of ATTACKS) {
    it(`${a.class} attack ${a.name} (${a.what}) is ${a.expect}`, async (t) => {
      // what the kernel refuses to every unprivileged process needs no policy: skipped with why
      const { refused, control } = await refusedByKernel(a, lab);
      if (refused) return t.skip(refused);
      if (control) expect(control.events, 'the control outside the cgroup made events').toEqual([]);
      const m = lab.controller.mechanisms;
      const missing = missingHook(a, m);
      if (missing) return t.skip(`unsupported: ${missing} here (${m.unsupported.map((u) => `${u.hook}: ${u.evidence}`).join('; ') || m.lsmEvidence})`);
      if (a.name === 'exec-hardlink' && !lab.hardlink) return t.skip('no hard link to the shell could be made here (the shell and the scratch dir are on different file systems)');
      const r = await runAttack(a, lab);
      // the kernel lacks what the attack needs (e.g. io_uring disabled): skipped with the reason
      if (r.unsupported) return t.skip(r.detail);
      expect(r.outcome, `${r.detail} ${proof(r.events)}`).toBe(a.expect);
      const e = r.events[0]!;
      expect(e.action).toBe('blocked');
      expect(e.cgroup).toBe(lab.workloadCg);
      expect(e.uid).toBe(a.asRoot ? 0 : 65534);
      expect(e.policy).toBe('workload');
      if (a.class === 'exec') {
        expect(e.kind).toBe('exec');
        expect(e.mechanism).toMatch(lab.controller.mechanisms.exec === 'lsm' ? /bprm_check_security/ : /sched_process_exec/);
        // the rule that caught it: copies only by the allowlist, memfd by the nameless rule, the rest by the shell list
        // (under LSM a #! script is checked before its interpreter, so the allowlist catches it first)
        const lsm = lab.controller.mechanisms.exec === 'lsm';
        const copy = a.name === 'exec-hardlink' && lab.hardlinkSameInode === false; // overlayfs copy-up
        const rule = ['exec-copied-shell', 'exec-ld-so'].includes(a.name) || copy || (lsm && a.name === 'exec-shebang-script') ? 'exec.allow' : a.name === 'exec-memfd' ? 'exec.denyNameless' : 'exec.deny[0] shells';
        expect(e.rule).toContain(rule);
      } else if (a.class === 'ptrace') {
        expect(e.kind).toBe('ptrace');
        expect(e.rule).toContain('ptrace (attaching to another process');
        expect(e.target).toBeGreaterThan(0);
        const lsm = lab.controller.mechanisms.ptrace.includes('lsm/ptrace_access_check');
        expect(e.mechanism).toMatch(lsm ? /ptrace_access_check/ : a.name.startsWith('proc-mem-uring') ? /io_uring_complete.*SIGKILL/ : a.env?.IA32 ? /sys_exit \(a 32-bit syscall\).*SIGKILL/ : a.env?.X32 ? /sys_exit \(an x32 syscall\).*SIGKILL/ : /syscall tracepoint.*SIGKILL/);
        if (!lsm && a.env?.IA32) expect(e.call).toBe(a.name === 'proc-mem-ia32' ? 'openat (32-bit)' : 'ptrace (32-bit)');
        if (!lsm && a.env?.X32) expect(e.call).toBe(a.name === 'proc-mem-x32' ? 'openat (x32)' : 'ptrace (x32)');
      } else if (['ipv6-routing-header', 'ipv6-routing-header-ia32', 'ipv6-routing-header-uring32', 'ipv6-routing-header-uring32-linked', 'ipv6-rthdr-cmsg', 'ipv4-source-route'].includes(a.name)) {
        expect(e.kind).toBe('sockopt');
        expect(e.option).toMatch(a.name === 'ipv4-source-route' ? /^IP_(OPTIONS|RETOPTS)\b/ : /^IPV6_(RTHDR|2292PKTOPTIONS)\b/);
        expect(e.rule).toContain('egress.rawSockets');
        // a 32-bit setsockopt passes no cgroup/setsockopt: BPF LSM refuses the send, else its exit kills
        // (nor a compat ring's setsockopt command: its completion kills)
        // (and where BPF LSM is missing, whatever leaves anyway is dropped at cgroup_skb/egress)
        expect(e.mechanism).toMatch(a.env?.IA32 ? /^(lsm\/socket_(sendmsg|connect) \(-EPERM\)|tp_btf\/sys_exit \(a 32-bit syscall\) \+ bpf_send_signal\(SIGKILL\)|cgroup_skb\/egress \(packet dropped\))$/ : a.env?.URING32 ? /^(lsm\/socket_(sendmsg|connect) \(-EPERM\)|tp_btf\/io_uring_complete \(a 32-bit ring's setsockopt\) \+ bpf_send_signal\(SIGKILL\)|cgroup_skb\/egress \(packet dropped\))$/ : /^(cgroup\/setsockopt|lsm\/socket_(sendmsg|connect) \(-EPERM\)|cgroup_skb\/egress \(packet dropped\))$/);
        if (/cgroup_skb/.test(e.mechanism)) expect(lab.controller.mechanisms.sourceRouting.includes('lsm/socket_sendmsg'), 'the guard is attached only without BPF LSM').toBe(false);
      } else if (a.asRoot || a.name === 'icmp-ping-socket' || a.name === 'sctp-dccp') {
        expect(e.kind).toBe('socket');
        expect(e.rule).toContain('egress.rawSockets');
        expect(e.socket).toBe(a.name === 'raw-socket-udp' ? 'AF_INET SOCK_RAW' : a.name === 'icmp-ping-socket' ? 'AF_INET SOCK_DGRAM' : a.name === 'sctp-dccp' ? 'AF_INET SOCK_STREAM' : 'AF_PACKET SOCK_DGRAM');
        if (a.name === 'sctp-dccp') expect(e.protocol).toBe('sctp');
        const lsm = lab.controller.mechanisms.rawSockets.includes('lsm/socket_create');
        expect(e.mechanism).toMatch(lsm ? /lsm\/socket_create/ : a.name === 'packet-socket' ? /sys_enter_socket/ : a.env?.IA32 ? /sys_exit \(a 32-bit syscall\)/ : a.env?.X32 ? /sys_exit \(an x32 syscall\)/ : /cgroup\/sock_create/);
      } else if (a.name === 'other-families' || a.name === 'io-uring-socket') {
        // one event per family the workload tried, each naming it
        expect(r.events.every((x) => x.kind === 'socket' && /^AF_(?!INET|PACKET|UNIX|NETLINK|ALG)[A-Z0-9]+ SOCK_/.test(x.socket ?? '') && x.rule.includes('egress.rawSockets'))).toBe(true);
        const lsm = lab.controller.mechanisms.rawSockets.includes('lsm/socket_create');
        expect(e.mechanism).toMatch(lsm ? /lsm\/socket_create/ : a.name === 'io-uring-socket' ? /io_uring_submit_/ : /sys_enter_socket/);
      } else {
        expect(['connect', 'sendmsg']).toContain(e.kind);
        expect(e.destination).toBeTruthy();
        expect(e.rule).toContain('egress.allow');
      }
    });
  }

  for (const c of CONTROLS) {
    it(`control ${c.name} (${c.what}) is allowed`, async () => {
      const r = await runAttack(c, lab);
      expect(r.outcome, r.detail).toBe('allowed');
      expect(r.events).toEqual([]);
    });
  }

  it('ping sockets reach the network from outside the cgroup (what the attack would do unhindered)', async () => {
    const r = await runAttack(ATTACKS.find((a) => a.name === 'icmp-ping-socket')!, { ...lab, cgroupDir: lab.outsideDir }, { expect: 'allowed' });
    expect(r.outcome, r.detail).toBe('allowed');
    expect(r.events).toEqual([]);
  });

  for (const name of ['ptrace-inject', 'ptrace-inject-ia32', 'ptrace-inject-x32', 'ptrace-inject-x32-high']) {
    it(`the ptrace victim can be reached: outside the cgroup the injected shell runs in it (${name})`, async (t) => {
      const r = await runAttack(ATTACKS.find((a) => a.name === name)!, { ...lab, cgroupDir: lab.outsideDir }, { expect: 'allowed' });
      if (r.unsupported) return t.skip(r.detail);
      expect(r.outcome, r.detail).toBe('allowed');
      expect(r.detail).toMatch(/execve injected/);
      expect(r.events).toEqual([]);
    });
  }

  for (const name of ['proc-mem', 'proc-mem-uring', 'proc-mem-uring-linked', 'proc-mem-ia32', 'proc-mem-x32']) {
    it(`the /proc/<pid>/mem victim can be reached: outside the cgroup its memory is read and written (${name})`, async (t) => {
      const r = await runAttack(ATTACKS.find((a) => a.name === name)!, { ...lab, cgroupDir: lab.outsideDir }, { expect: 'allowed' });
      if (r.unsupported) return t.skip(r.detail);
      expect(r.outcome, r.detail).toBe('allowed');
      expect(r.detail).toMatch(/read 16 bytes of its stack, wrote 16 back/);
      expect(r.events).toEqual([]);
    });
  }

  it('the raw and packet-socket target is reachable: outside the cgroup both attacks arrive', async () => {
    const outside = { ...lab, cgroupDir: lab.outsideDir };
    for (const name of ['raw-socket-udp', 'packet-socket', 'packet-socket-ia32', 'packet-socket-socketcall', 'packet-socket-x32']) {
      const before = lab.target.received();
      const r = await runAttack(ATTACKS.find((a) => a.name === name)!, outside, { expect: 'allowed' });
      if (r.unsupported) continue; // no 32-bit syscalls here: the attack inside is skipped alike
      expect(r.outcome, r.detail).toBe('allowed');
      for (let i = 0; i < 20 && lab.target.received() === before; i++) await new Promise((res) => setTimeout(res, 50));
      expect(lab.target.received(), `${name} arrived in ${lab.target.ns}`).toBe(before + 1);
    }
  });

  it('rawSockets: allow lets the workload open raw sockets again', async () => {
    lab.controller.store.apply(workloadPolicy(lab, { rawSockets: 'allow' }));
    try {
      const before = lab.target.received();
      const r = await runAttack(ATTACKS.find((a) => a.name === 'raw-socket-udp')!, lab, { expect: 'allowed' });
      expect(r.outcome, r.detail).toBe('allowed');
      expect(r.events).toEqual([]);
      for (let i = 0; i < 20 && lab.target.received() === before; i++) await new Promise((res) => setTimeout(res, 50));
      expect(lab.target.received()).toBe(before + 1);
    } finally {
      lab.controller.store.apply(workloadPolicy(lab));
    }
  });

  it('processes outside the selected cgroup are unaffected', async () => {
    const outside = { ...lab, cgroupDir: lab.outsideDir };
    for (const name of ['exec-sh', 'tcp-disallowed-port', 'exec-memfd']) {
      const r = await runAttack(ATTACKS.find((a) => a.name === name)!, outside, { expect: 'allowed' });
      expect(r.outcome, r.detail).toBe('allowed');
      expect(r.events).toEqual([]);
    }
  });

  it('a deny-list-only policy stops links and interpreters but not copies or memfds (why the allowlist exists)', async () => {
    lab.controller.store.apply(workloadPolicy(lab, { denyOnly: true }));
    try {
      for (const name of ['exec-copied-shell', 'exec-memfd', 'exec-ld-so', 'exec-symlink', 'exec-shebang-script']) {
        const a = ATTACKS.find((x) => x.name === name)!;
        const r = await runAttack(a, lab, { expect: a.expectDenyOnly });
        expect(r.outcome, `${name}: ${r.detail}`).toBe(a.expectDenyOnly);
      }
    } finally {
      lab.controller.store.apply(workloadPolicy(lab));
    }
  });

  it('log mode reports would-block and lets the shell run', async () => {
    lab.controller.store.apply(workloadPolicy(lab, { mode: 'log' }));
    try {
      const r = await runAttack(ATTACKS[0]!, lab, { expect: 'allowed', wouldBlock: true });
      expect(r.outcome).toBe('allowed');
      expect(r.events[0]).toMatchObject({ action: 'would-block', binary: '/bin/sh' });
    } finally {
      lab.controller.store.apply(workloadPolicy(lab));
    }
  });

  it('PostgreSQL runs from the template cluster in the lab cache, made once (what a VM guest unpacks)', async () => {
    const tpl = await preparePostgresTemplate();
    expect(tpl).not.toBeNull();
    const made = fs.statSync(tpl!).mtimeMs;
    expect(await preparePostgresTemplate()).toBe(tpl); // not made again
    expect(fs.statSync(tpl!).mtimeMs).toBe(made);
    // the running cluster is that template: its system identifier (initdb makes a new one each time)
    const ctl = await execa(path.join(lab.pg!.bin, 'pg_controldata'), [path.join(lab.pg!.dataDir, 'data')], { env: { LANG: 'C' } });
    const sysid = /Database system identifier:\s+(\d+)/.exec(ctl.stdout)?.[1];
    expect(sysid).toBeDefined();
    // pg_control starts with the 8-byte system identifier (little-endian on x86)
    const raw = Buffer.from((await execa('tar', ['-xOf', tpl!, './global/pg_control'], { encoding: 'buffer' })).stdout);
    expect(raw.readBigUInt64LE(0).toString()).toBe(sysid);
  });

  it('teardown removes the cgroups, the PostgreSQL data dir and the scratch dir', async () => {
    const paths = [lab.base, lab.scratch, lab.pg!.dataDir];
    for (const [, fn] of cleanups.reverse()) await fn();
    cleanups.length = 0;
    for (const p of paths) expect(fs.existsSync(p), p).toBe(false);
    expect(() => process.kill(lab.pg!.pid, 0)).toThrow();
  });
});
