// The scenario's baselines on the real kernel: kube-proxy's iptables rules load into a client
// namespace, balance over every backend, take a partial sync; nothing is left behind (namespaces,
// cgroups, programs, iptables rules of the host's own namespace). The rule generators themselves are
// pure and tested without root.
import fs from 'node:fs';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRoot, bpfObjects } from '../../lab/testing.ts';
import { listNamespaces } from '../../lab/netns.ts';
import { ipvsRestore, kubeProxyNat, kubeProxyPartial, natRuleCount, timed, vipOf } from './baselines.ts';
import { buildLab, buildTool, PREFIX, type SockLab } from './topology.ts';

const svcs = (n: number) => Array.from({ length: n }, (_, i) => ({ vip: vipOf(i), port: 80, backends: ['10.91.0.11:8080', '10.91.0.12:8080'] }));

describe('kube-proxy style rules (pure)', () => {
  it('one KUBE-SERVICES rule per service, statistic random split 1/n … 1, a DNAT per endpoint', () => {
    const t = kubeProxyNat(svcs(3));
    expect(t.match(/^-A KUBE-SERVICES /gm)).toHaveLength(3);
    expect(t).toMatch(/--probability 0\.50000000000 -j KUBE-SEP-/);
    expect(t.match(/-j DNAT --to-destination 10\.91\.0\.1[12]:8080/g)).toHaveLength(6);
    expect(t.trim().endsWith('COMMIT')).toBe(true);
    expect(vipOf(0)).toBe('10.96.0.1');
    expect(vipOf(255)).toBe('10.96.1.0');
  });
  it('a partial sync flushes the changed chains and deletes the stale endpoint chain after flushing it', () => {
    const [a] = svcs(1);
    const p = kubeProxyPartial(0, a!, { ...a!, backends: a!.backends.slice(1) });
    const stale = /-X (KUBE-SEP-\S+)/.exec(p)![1]!;
    expect(p).toContain(`:${stale} - [0:0]`);
    expect(p).not.toMatch(/^-A KUBE-SERVICES/m);
    expect(ipvsRestore(svcs(1))).toBe('-A -t 10.96.0.1:80 -s rr\n-a -t 10.96.0.1:80 -r 10.91.0.11:8080 -m -w 1\n-a -t 10.96.0.1:80 -r 10.91.0.12:8080 -m -w 1\n');
  });
});

describeRoot('iptables baseline on the real kernel, and teardown', () => {
  let lab: SockLab;
  let hostNat: string;
  let iptables = true;
  beforeAll(async () => {
    const r = await execa('iptables', ['-t', 'nat', '-S'], { reject: false });
    iptables = r.exitCode === 0;
    hostNat = String(r.stdout);
    lab = await buildLab({ clients: ['ipt'], tag: 'ipt' });
  }, 60_000);
  afterAll(async () => {
    await lab?.dispose();
  });

  it('kube-proxy rules balance over every backend; a partial sync removes one endpoint', async (t) => {
    if (!iptables) return t.skip('iptables is not installed or has no nat table here (pnpm lab setup svc)');
    const ns = lab.clientNs('ipt');
    const s = svcs(10);
    const r = await timed(ns, 'iptables-restore', [], kubeProxyNat(s));
    expect(r.ok, r.stderr).toBe(true);
    expect(await natRuleCount(ns)).toBe(6 + 10 * 7);
    const bin = await buildTool('connlat');
    const out = JSON.parse((await lab.exec('ipt', bin, ['200', '1'], { input: s.map((x) => `${x.vip} 80`).join('\n') })).stdout) as { errors: number; replies: Record<string, number> };
    expect(out.errors).toBe(0);
    expect(Object.keys(out.replies).sort()).toEqual(['10.91.0.11:8080', '10.91.0.12:8080']);
    const p = await timed(ns, 'iptables-restore', ['--noflush'], kubeProxyPartial(0, s[0]!, { ...s[0]!, backends: ['10.91.0.12:8080'] }));
    expect(p.ok, p.stderr).toBe(true);
    expect(await natRuleCount(ns)).toBe(6 + 10 * 7 - 3);
    const one = JSON.parse((await lab.exec('ipt', bin, ['50', '2'], { input: `${s[0]!.vip} 80` })).stdout) as { replies: Record<string, number> };
    expect(Object.keys(one.replies)).toEqual(['10.91.0.12:8080']);
  });

  it('leaves no namespaces, cgroups, programs or host iptables rules behind', async () => {
    await lab.dispose();
    expect(await listNamespaces(`${PREFIX}-${process.pid}-`)).toEqual([]);
    expect(fs.existsSync(lab.cgBase)).toBe(false);
    expect((await bpfObjects()).progs.filter((p) => p.name?.startsWith('svc_'))).toEqual([]);
    if (iptables) expect(String((await execa('iptables', ['-t', 'nat', '-S'], { reject: false })).stdout)).toBe(hostNat);
  });
});
