// The classic alternatives, written the way users run them:
//   iptables: the nat table kube-proxy (iptables mode) writes — OUTPUT → KUBE-SERVICES (one rule per
//   service, walked in order) → KUBE-SVC-* (statistic mode random, one rule per endpoint) →
//   KUBE-SEP-* (mark-masq for hairpin, DNAT). Loaded with one iptables-restore; a backend change is
//   kube-proxy's partial sync (iptables-restore --noflush with only the changed chains).
//   IPVS: one virtual service per VIP (round robin), real servers in masquerade (NAT) mode, as
//   kube-proxy's ipvs mode does (without its ipset/iptables helpers, which a local client to a
//   routed VIP does not need).
import { execa } from 'execa';

export interface SvcSpec {
  vip: string;
  port: number;
  backends: string[]; // "ADDR:PORT"
}

/** the i-th service VIP of a scale (10.96.0.1, 10.96.0.2, …) */
export function vipOf(i: number): string {
  const n = i + 1;
  return `10.96.${n >> 8}.${n & 255}`;
}

const svcChain = (i: number) => `KUBE-SVC-${i.toString(16).toUpperCase().padStart(16, '0')}`;
const sepChain = (i: number, b: string) => `KUBE-SEP-${i.toString(16).toUpperCase().padStart(8, '0')}${b.replace(/\D/g, '').slice(-8).padStart(8, '0')}`;

function svcRules(i: number, s: SvcSpec): { chains: string[]; rules: string[] } {
  const name = `default/svc-${i}:http`;
  const chains = [svcChain(i), ...s.backends.map((b) => sepChain(i, b))];
  const rules: string[] = [];
  s.backends.forEach((b, k) => {
    const left = s.backends.length - k;
    const prob = left > 1 ? ` -m statistic --mode random --probability ${(1 / left).toFixed(11)}` : '';
    rules.push(`-A ${svcChain(i)} -m comment --comment "${name} -> ${b}"${prob} -j ${sepChain(i, b)}`);
  });
  for (const b of s.backends) {
    rules.push(`-A ${sepChain(i, b)} -s ${b.split(':')[0]}/32 -m comment --comment "${name}" -j KUBE-MARK-MASQ`);
    rules.push(`-A ${sepChain(i, b)} -p tcp -m comment --comment "${name}" -m tcp -j DNAT --to-destination ${b}`);
  }
  return { chains, rules };
}

/** the whole nat table, as a full kube-proxy sync writes it */
export function kubeProxyNat(svcs: SvcSpec[]): string {
  const chains = ['KUBE-SERVICES', 'KUBE-MARK-MASQ', 'KUBE-POSTROUTING'];
  const rules = [
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    '-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000',
    '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
    '-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000',
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
  ];
  svcs.forEach((s, i) => rules.push(`-A KUBE-SERVICES -d ${s.vip}/32 -p tcp -m comment --comment "default/svc-${i}:http cluster IP" -m tcp --dport ${s.port} -j ${svcChain(i)}`));
  svcs.forEach((s, i) => {
    const r = svcRules(i, s);
    chains.push(...r.chains);
    rules.push(...r.rules);
  });
  return ['*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', ...chains.map((c) => `:${c} - [0:0]`), ...rules, 'COMMIT', ''].join('\n');
}

/** kube-proxy's partial sync after service i's endpoints changed from `before` to `after` */
export function kubeProxyPartial(i: number, before: SvcSpec, after: SvcSpec): string {
  const r = svcRules(i, after);
  // a stale chain is declared (which flushes it) before it is deleted, as kube-proxy does
  const gone = before.backends.filter((b) => !after.backends.includes(b)).map((b) => sepChain(i, b));
  return ['*nat', ...[...r.chains, ...gone].map((c) => `:${c} - [0:0]`), ...r.rules, ...gone.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n');
}

export function ipvsRestore(svcs: SvcSpec[]): string {
  const out: string[] = [];
  for (const s of svcs) {
    out.push(`-A -t ${s.vip}:${s.port} -s rr`);
    for (const b of s.backends) out.push(`-a -t ${s.vip}:${s.port} -r ${b} -m -w 1`);
  }
  return `${out.join('\n')}\n`;
}

/** run a command in a namespace and time it (wall ms, process start included) */
export async function timed(ns: string, cmd: string, args: string[], input?: string): Promise<{ ms: number; ok: boolean; stderr: string }> {
  const t0 = performance.now();
  const r = await execa('nsenter', [`--net=/run/netns/${ns}`, '--', cmd, ...args], { input, reject: false, maxBuffer: 1 << 26 });
  return { ms: performance.now() - t0, ok: r.exitCode === 0, stderr: String(r.stderr).split('\n').slice(-3).join(' ') };
}

/** number of rules in a namespace's nat table (iptables -t nat -S) */
export async function natRuleCount(ns: string): Promise<number> {
  const r = await execa('nsenter', [`--net=/run/netns/${ns}`, '--', 'iptables', '-t', 'nat', '-S'], { reject: false, maxBuffer: 1 << 28 });
  return String(r.stdout).split('\n').filter((l) => l.startsWith('-A ')).length;
}
