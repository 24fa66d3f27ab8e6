// Policy files (YAML or JSON — JSON is parsed by the same YAML parser, so both get line numbers):
// parsed, validated against the schema below with every error located (file:line:col, field path,
// what is allowed), and normalised. Nothing here touches the kernel: a file that fails validation
// never reaches the maps, so the running policy is untouched.
//
//   policies:
//     - name: db-client                 # [a-z0-9][a-z0-9._-]*, unique
//       mode: enforce                   # enforce | log (log-only: would-block events, no blocking)
//       select:                         # exactly one of cgroup | executable; uid optional
//         cgroup: /ebpf-lab/workload    # cgroup2 path, absolute or relative to the cgroup2 mount
//         executable: /usr/bin/python3  # selects processes running (or descended from) this binary
//         uid: 65534                    # number or user name
//       exec:
//         deny: [shells, /usr/bin/nc]   # "shells" = every shell binary on this system, by inode
//         allow: [/usr/bin/python3]     # present → allowlist: anything else is denied
//         denyNameless: true            # exec of memfd / O_TMPFILE / deleted files
//       egress:
//         allow: [{to: 127.0.0.1/32, ports: [5432], protocol: tcp}]   # present → allowlist
//         deny:  [{to: 10.0.0.0/8}]
//         rawSockets: deny              # default with an egress section: raw IP / AF_PACKET / ICMP (ping) / SCTP / DCCP / non-inet family sockets denied
//       ptrace: deny                    # default: no attaching to other processes (ptrace, /proc/<pid>/mem,
//                                       # process_vm_*, pidfd_getfd); allow for a debugger in the workload
import fs from 'node:fs';
import { formatIp, fromMapped16, parseCidr, toMapped16 } from '../../common/ip.ts';
import path from 'node:path';
import { cgroup2Root, cgroupDir } from '../../common/cgroup.ts';
import { isMap, isScalar, isSeq, type Node as YNode } from 'yaml';
import { ConfigFile, jsonSyntaxError } from '../../common/config-file.ts';
import { LabError } from '../../common/errors.ts';
import { suggest } from '../../common/args.ts';

export type Protocol = 'tcp' | 'udp' | 'any';
export interface EgressRule {
  to: string; // canonical CIDR
  ports: number[]; // empty: any port
  protocol: Protocol;
}
export interface Policy {
  name: string;
  mode: 'enforce' | 'log';
  select: { cgroup?: string; executable?: string; uid?: number };
  exec: { deny: string[]; allow?: string[]; denyNameless: boolean };
  /** rawSockets: unset = denied when the policy has egress rules (see store.denyRaw) */
  egress: { allow?: EgressRule[]; deny: EgressRule[]; rawSockets?: 'allow' | 'deny' };
  /**
   * access to other processes in ptrace's attach mode; unset = deny: through another process (an
   * execve injected with ptrace, its memory written) a workload would exec and connect unselected
   */
  ptrace?: 'allow' | 'deny';
}

export interface PolicyIssue {
  line: number;
  col: number;
  field: string;
  message: string;
}

export class PolicyError extends LabError {
  constructor(
    readonly file: string,
    readonly issues: PolicyIssue[],
  ) {
    super(`${file}: ${issues.length} error${issues.length === 1 ? '' : 's'}:\n${issues.map((i) => `  ${file}:${i.line}:${i.col}: ${i.field}: ${i.message}`).join('\n')}`, 'correct the fields listed; nothing was changed: the running policies are as before');
    this.name = 'PolicyError';
  }
}

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const TOP_KEYS = ['policies'];
const POLICY_KEYS = ['name', 'mode', 'select', 'exec', 'egress', 'ptrace'];
const SELECT_KEYS = ['cgroup', 'executable', 'uid'];
const EXEC_KEYS = ['deny', 'allow', 'denyNameless'];
const EGRESS_KEYS = ['allow', 'deny', 'rawSockets'];
const RULE_KEYS = ['to', 'ports', 'protocol'];

/** Parse and validate; throws PolicyError listing every problem. `resolveFiles` checks paths exist. */
export function parsePolicies(text: string, file = 'policy', opts: { checkPaths?: boolean } = {}): Policy[] {
  const { source, syntaxErrors } = ConfigFile.parse(text, file);
  const doc = source.doc;
  const issues: PolicyIssue[] = syntaxErrors.map((e) => ({ line: e.line, col: e.col, field: '(syntax)', message: e.message }));
  if (!issues.length && file.endsWith('.json')) {
    try {
      JSON.parse(text);
    } catch (e) {
      issues.push({ ...jsonSyntaxError(text, e), field: '(syntax)' });
    }
  }
  const at = (node: YNode | null | undefined, field: string, message: string, offset?: number) => {
    const p = source.pos(offset ?? (node?.range ? node.range[0] : 0));
    issues.push({ line: p.line, col: p.col, field, message });
  };
  if (issues.length) throw new PolicyError(file, issues);
  const root = doc.contents as YNode | null;
  if (!isMap(root)) {
    at(root, '(document)', 'expected a mapping with a "policies" list');
    throw new PolicyError(file, issues);
  }

  const entries = (m: YNode, field: string, allowed: string[]): Map<string, YNode | null> => {
    const out = new Map<string, YNode | null>();
    if (!isMap(m)) return out;
    for (const pair of m.items) {
      const k = isScalar(pair.key) ? String(pair.key.value) : '?';
      if (!allowed.includes(k)) {
        const near = suggest(k, allowed);
        at(pair.key as YNode, `${field}${field ? '.' : ''}${k}`, `unknown field${near ? ` (did you mean "${near}"?)` : ''} (allowed: ${allowed.join(', ')})`);
      }
      else out.set(k, (pair.value as YNode | null) ?? null);
    }
    return out;
  };
  const str = (n: YNode | null | undefined, field: string, what: string): string | undefined => {
    if (isScalar(n) && typeof n.value === 'string' && n.value.length) return n.value;
    at(n, field, `expected ${what}${isScalar(n) ? `, got ${JSON.stringify(n.value)}` : ''}`);
    return undefined;
  };
  /** one of two words (mode, rawSockets, ptrace) */
  const oneOf = <T extends string>(n: YNode | null | undefined, field: string, words: readonly [T, T]): T | undefined => {
    if (isScalar(n) && words.includes(n.value as T)) return n.value as T;
    at(n, field, `expected "${words[0]}" or "${words[1]}"${isScalar(n) ? `, got ${JSON.stringify(n.value)}` : ''}`);
    return undefined;
  };
  /** an absolute path to an executable file; `keywords` are the bare words the field also takes */
  const absPath = (n: YNode | null | undefined, field: string, keywords: string[] = []): string | undefined => {
    const s = str(n, field, 'an absolute path');
    if (s === undefined) return undefined;
    if (!s.startsWith('/')) {
      const near = suggest(s, keywords);
      at(n, field, `"${s}" is not an absolute path${near ? ` (did you mean "${near}"?)` : keywords.length ? ` nor ${keywords.map((k) => `"${k}"`).join(', ')}` : ''}`);
      return undefined;
    }
    if (opts.checkPaths !== false) {
      let st: fs.Stats;
      try {
        st = fs.statSync(s);
      } catch {
        at(n, field, `"${s}" does not exist on this system`);
        return undefined;
      }
      // a rule names one executable (an inode), not a directory of them
      if (!st.isFile()) {
        at(n, field, `"${s}" is ${st.isDirectory() ? 'a directory' : 'not a regular file'}; list executables one by one (e.g. ${st.isDirectory() ? `${s.replace(/\/$/, '')}/nc` : '/usr/bin/nc'})`);
        return undefined;
      }
    }
    return s;
  };

  const top = entries(root, '', TOP_KEYS);
  const list = top.get('policies');
  if (!isSeq(list)) {
    at(list ?? root, 'policies', 'expected a list of policies');
    throw new PolicyError(file, issues);
  }
  const names = new Set<string>();
  const selectors = new Map<string, string>();
  const out: Policy[] = [];
  list.items.forEach((item, i) => {
    const f = `policies[${i}]`;
    const node = item as YNode;
    if (!isMap(node)) {
      at(node, f, 'expected a mapping (name, mode, select, exec, egress)');
      return;
    }
    const e = entries(node, f, POLICY_KEYS);
    const name = e.has('name') ? str(e.get('name'), `${f}.name`, 'a name') : undefined;
    if (name !== undefined && !NAME_RE.test(name)) at(e.get('name'), `${f}.name`, `"${name}" is not allowed (lower-case letters, digits, ".", "_", "-"; at most 63)`);
    else if (name !== undefined && names.has(name)) at(e.get('name'), `${f}.name`, `duplicate policy name "${name}"`);
    if (name) names.add(name);
    if (!e.has('name')) at(node, `${f}.name`, 'missing (every policy needs a name)');

    const mode: Policy['mode'] = (e.has('mode') ? oneOf(e.get('mode'), `${f}.mode`, ['enforce', 'log'] as const) : undefined) ?? 'enforce';
    const ptrace: Policy['ptrace'] = e.has('ptrace') ? oneOf(e.get('ptrace'), `${f}.ptrace`, ['allow', 'deny'] as const) : undefined;

    const select: Policy['select'] = {};
    const sn = e.get('select');
    if (!isMap(sn)) at(sn ?? node, `${f}.select`, 'missing or not a mapping (allowed: cgroup | executable, optional uid)');
    else {
      const s = entries(sn, `${f}.select`, SELECT_KEYS);
      if (s.has('cgroup') && s.has('executable')) at(sn, `${f}.select`, 'give one of cgroup or executable, not both');
      else if (!s.has('cgroup') && !s.has('executable')) at(sn, `${f}.select`, 'needs cgroup or executable');
      if (s.has('cgroup')) {
        const c = str(s.get('cgroup'), `${f}.select.cgroup`, 'a cgroup2 path');
        const out = c !== undefined && opts.checkPaths !== false ? outOfMount(c) : null;
        if (out) at(s.get('cgroup'), `${f}.select.cgroup`, out);
        else if (c !== undefined && opts.checkPaths !== false && !fs.existsSync(cgroupDir(c))) at(s.get('cgroup'), `${f}.select.cgroup`, `no cgroup ${cgroupDir(c)} (create the workload's cgroup first; paths are relative to the cgroup2 mount ${cgroup2Root()})`);
        else if (c !== undefined) select.cgroup = c;
      }
      if (s.has('executable')) select.executable = absPath(s.get('executable'), `${f}.select.executable`);
      if (s.has('uid')) {
        const u = s.get('uid');
        if (isScalar(u) && typeof u.value === 'number' && Number.isInteger(u.value) && u.value >= 0 && u.value < 0xffffffff) select.uid = u.value;
        else if (isScalar(u) && typeof u.value === 'string' && /^\d+$/.test(u.value)) {
          // a quoted number is the number, with its range: "99999999999" went in as 1215752191 and
          // "4294967295" (the kernel's any-user value) selected every user (review, session 58)
          const n = Number(u.value);
          if (n < 0xffffffff) select.uid = n;
          else at(u, `${f}.select.uid`, 'expected a uid (0 … 4294967294) or a user name');
        } else if (isScalar(u) && typeof u.value === 'string') {
          const uid = userId(u.value);
          if (uid === undefined) at(u, `${f}.select.uid`, `no user "${u.value}" in /etc/passwd`);
          else select.uid = uid;
        } else at(u, `${f}.select.uid`, 'expected a uid (0 … 4294967294) or a user name');
      }
      const key = select.cgroup ? `cgroup ${select.cgroup}` : select.executable ? `executable ${select.executable}` : '';
      if (key && selectors.has(key)) at(sn, `${f}.select`, `${key} is already selected by policy "${selectors.get(key)}" (one policy per workload)`);
      else if (key) selectors.set(key, name ?? f);
    }

    const exec: Policy['exec'] = { deny: [], denyNameless: false };
    const en = e.get('exec');
    if (en !== undefined && !isMap(en)) at(en ?? node, `${f}.exec`, 'expected a mapping (allowed: deny, allow, denyNameless)');
    else if (en) {
      const x = entries(en, `${f}.exec`, EXEC_KEYS);
      const binList = (k: 'deny' | 'allow'): string[] | undefined => {
        if (!x.has(k)) return undefined;
        const l = x.get(k);
        if (!isSeq(l)) {
          at(l ?? en, `${f}.exec.${k}`, `expected a list of absolute paths${k === 'deny' ? ' or "shells"' : ''}`);
          return [];
        }
        const r: string[] = [];
        l.items.forEach((b, j) => {
          const field = `${f}.exec.${k}[${j}]`;
          if (k === 'deny' && isScalar(b) && b.value === 'shells') r.push('shells');
          else {
            const p = absPath(b as YNode, field, k === 'deny' ? ['shells'] : []);
            if (p) r.push(p);
          }
        });
        return r;
      };
      exec.deny = binList('deny') ?? [];
      exec.allow = binList('allow');
      if (x.has('denyNameless')) {
        const d = x.get('denyNameless');
        if (isScalar(d) && typeof d.value === 'boolean') exec.denyNameless = d.value;
        else at(d, `${f}.exec.denyNameless`, 'expected true or false');
      }
    }

    const egress: Policy['egress'] = { deny: [] };
    const gn = e.get('egress');
    if (gn !== undefined && !isMap(gn)) at(gn ?? node, `${f}.egress`, 'expected a mapping (allowed: allow, deny)');
    else if (gn) {
      const g = entries(gn, `${f}.egress`, EGRESS_KEYS);
      const ruleList = (k: 'allow' | 'deny'): EgressRule[] | undefined => {
        if (!g.has(k)) return undefined;
        const l = g.get(k);
        if (!isSeq(l)) {
          at(l ?? gn, `${f}.egress.${k}`, 'expected a list of {to, ports, protocol}');
          return [];
        }
        const r: EgressRule[] = [];
        l.items.forEach((rn, j) => {
          const field = `${f}.egress.${k}[${j}]`;
          if (!isMap(rn)) {
            at(rn as YNode, field, 'expected a mapping {to: CIDR, ports: [..], protocol: tcp|udp|any}');
            return;
          }
          const re = entries(rn, field, RULE_KEYS);
          let to: string | undefined = '::/0';
          if (re.has('to')) {
            const t = str(re.get('to'), `${field}.to`, 'an address or CIDR (e.g. 127.0.0.1/32, ::1, 10.0.0.0/8)');
            to = t === undefined ? undefined : canonicalCidr(t);
            if (t !== undefined && to === undefined) at(re.get('to'), `${field}.to`, `"${t}" is not an IPv4/IPv6 address or CIDR`);
          }
          const ports: number[] = [];
          if (re.has('ports')) {
            const pn = re.get('ports');
            const items = isSeq(pn) ? (pn.items as YNode[]) : [pn as YNode];
            items.forEach((p, q) => {
              if (isScalar(p) && typeof p.value === 'number' && Number.isInteger(p.value) && p.value >= 1 && p.value <= 65535) ports.push(p.value);
              else at(p, `${field}.ports${isSeq(pn) ? `[${q}]` : ''}`, `${isScalar(p) ? JSON.stringify(p.value) : 'this'} is not a port (allowed: integers 1–65535; leave ports out for any port)`);
            });
          }
          let protocol: Protocol = 'any';
          if (re.has('protocol')) {
            const pr = re.get('protocol');
            if (isScalar(pr) && (pr.value === 'tcp' || pr.value === 'udp' || pr.value === 'any')) protocol = pr.value;
            else at(pr, `${field}.protocol`, `expected tcp, udp or any${isScalar(pr) ? `, got ${JSON.stringify(pr.value)}` : ''}`);
          }
          if (to !== undefined) r.push({ to, ports, protocol });
        });
        return r;
      };
      egress.allow = ruleList('allow');
      egress.deny = ruleList('deny') ?? [];
      if (g.has('rawSockets')) {
        const r = oneOf(g.get('rawSockets'), `${f}.egress.rawSockets`, ['allow', 'deny'] as const);
        if (r) egress.rawSockets = r;
      }
    }
    if (name) out.push({ name, mode, select, exec, egress, ...(ptrace ? { ptrace } : {}) });
  });
  if (issues.length) throw new PolicyError(file, issues);
  return out;
}

/** errors name the file as the user gave it (a relative path stays relative) */
export function readPolicyFile(file: string): Policy[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new LabError(`cannot read policy file ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code ?? String(e)}`, code === 'EISDIR' ? `give a YAML or JSON file, e.g. ${path.join(file, 'policy.yaml')}` : 'check the path (relative paths are from the current directory)');
  }
  return parsePolicies(text, file);
}

/** why a cgroup path is not one (it leads out of the mount), or null */
function outOfMount(c: string): string | null {
  try {
    cgroupDir(c);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

function userId(name: string): number | undefined {
  try {
    for (const l of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = l.split(':');
      if (f[0] === name) return Number(f[2]);
    }
  } catch {
    /* no passwd */
  }
  return undefined;
}

/** "a.b.c.d[/n]" or "v6[/n]" → canonical CIDR string; undefined when invalid */
export function canonicalCidr(s: string): string | undefined {
  const c = parseCidr(s);
  return c ? `${s.split('/')[0]}/${c.bits}` : undefined;
}

/** CIDR → 16 address bytes (IPv4 as ::ffff:a.b.c.d) and the prefix length in IPv6 bits */
export function cidrBytes(cidr: string): { addr: Uint8Array; bits: number } {
  const c = parseCidr(cidr);
  if (!c) throw new LabError(`malformed CIDR "${cidr}"`);
  return { addr: toMapped16(c.ip), bits: c.ip.family === 4 ? 96 + c.bits : c.bits };
}

/** 16 bytes → printable address (IPv4-mapped shown as a.b.c.d) */
export function formatAddr(b: Uint8Array): string {
  return formatIp(fromMapped16(b));
}
