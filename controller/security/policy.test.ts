import { describe, expect, it } from 'vitest';
import { PolicyError, canonicalCidr, cidrBytes, formatAddr, parsePolicies } from './policy.ts';
import { execFileSync } from 'node:child_process';
import { fileId, kernelDev } from './files.ts';
import { denyRaw, entriesNeeded } from './store.ts';
import { cgroup2Root, cgroupDir } from '../../common/cgroup.ts';

function issues(text: string) {
  try {
    parsePolicies(text, 'p.yaml', { checkPaths: false });
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    return (e as PolicyError).issues;
  }
  throw new Error('expected a PolicyError');
}

describe('policy schema', () => {
  it('accepts a full policy and normalises it', () => {
    const [p] = parsePolicies(
      `policies:
  - name: db-client
    mode: log
    select: { cgroup: /svc/db, uid: 0 }
    exec: { deny: [shells, /usr/bin/nc], allow: [/usr/bin/python3], denyNameless: true }
    egress:
      allow: [{ to: 127.0.0.1, ports: [5432], protocol: tcp }, { to: "::1/128" }]
      deny: [{ to: 10.0.0.0/8, protocol: udp }]
`,
      'p.yaml',
      { checkPaths: false },
    );
    expect(p).toEqual({
      name: 'db-client',
      mode: 'log',
      select: { cgroup: '/svc/db', uid: 0 },
      exec: { deny: ['shells', '/usr/bin/nc'], allow: ['/usr/bin/python3'], denyNameless: true },
      egress: { allow: [{ to: '127.0.0.1/32', ports: [5432], protocol: 'tcp' }, { to: '::1/128', ports: [], protocol: 'any' }], deny: [{ to: '10.0.0.0/8', ports: [], protocol: 'udp' }] },
    });
  });

  it('JSON works too, with line numbers', () => {
    const is = issues('{\n  "policies": [\n    {"name": "a", "select": {"cgroup": "/x"},\n     "mode": "block"}\n  ]\n}\n');
    expect(is).toEqual([{ line: 4, col: 14, field: 'policies[0].mode', message: 'expected "enforce" or "log", got "block"' }]);
  });

  it('a .json file is held to JSON (YAML would take a trailing comma or a comment); YAML is not', () => {
    const text = '{\n  "policies": [\n    {"name": "a", "select": {"cgroup": "/x"}},\n  ]\n}\n';
    const got = (file: string) => {
      try {
        parsePolicies(text, file, { checkPaths: false });
      } catch (e) {
        return (e as PolicyError).issues;
      }
      return [];
    };
    expect(got('p.json')).toEqual([{ line: 3, col: 46, field: '(syntax)', message: "not valid JSON: a trailing comma before ']'" }]);
    expect(got('p.yaml')).toEqual([]);
    const comment = '{\n  # no\n  "policies": []\n}\n';
    expect(() => parsePolicies(comment, 'q.json', { checkPaths: false })).toThrow(/q\.json:2:3: \(syntax\): not valid JSON: Unexpected token '#'|q\.json:\d+:\d+: \(syntax\): not valid JSON/);
  });

  it('reports every error with line, column, field and what is allowed', () => {
    const is = issues(`policies:
  - name: Bad Name
    select: { cgroup: /a, executable: /usr/bin/id }
    exec: { deny: [shells, bin/sh], allow: /usr/bin/id, denyNameless: yes please }
    egress:
      allow:
        - { to: 300.1.1.1/8, ports: [0, 22, "x"], protocol: sctp }
        - { too: 1.2.3.4 }
    extra: 1
`);
    const by = Object.fromEntries(is.map((i) => [i.field, i]));
    expect(by['policies[0].name']).toMatchObject({ line: 2, col: 11, message: expect.stringContaining('lower-case letters') });
    expect(by['policies[0].select']).toMatchObject({ line: 3, message: 'give one of cgroup or executable, not both' });
    expect(by['policies[0].exec.deny[1]']).toMatchObject({ line: 4, message: '"bin/sh" is not an absolute path nor "shells"' });
    expect(by['policies[0].exec.allow']).toMatchObject({ line: 4, message: 'expected a list of absolute paths' });
    expect(by['policies[0].exec.denyNameless']).toMatchObject({ line: 4, message: 'expected true or false' });
    expect(by['policies[0].egress.allow[0].to']).toMatchObject({ line: 7, col: 17, message: '"300.1.1.1/8" is not an IPv4/IPv6 address or CIDR' });
    expect(by['policies[0].egress.allow[0].ports[0]']).toMatchObject({ line: 7, message: expect.stringContaining('allowed: integers 1–65535') });
    expect(by['policies[0].egress.allow[0].ports[2]']).toMatchObject({ line: 7, message: expect.stringContaining('"x" is not a port') });
    expect(by['policies[0].egress.allow[0].protocol']).toMatchObject({ line: 7, message: 'expected tcp, udp or any, got "sctp"' });
    expect(by['policies[0].egress.allow[1].too']).toMatchObject({ line: 8, message: 'unknown field (did you mean "to"?) (allowed: to, ports, protocol)' });
    expect(by['policies[0].extra']).toMatchObject({ line: 9, col: 5, message: 'unknown field (allowed: name, mode, select, exec, egress, ptrace)' });
    expect(is).toHaveLength(11);
  });

  it('syntax errors, missing parts, duplicates', () => {
    expect(issues('policies:\n  - name: a\n   bad: [\n')[0]).toMatchObject({ field: '(syntax)', line: expect.any(Number) });
    expect(issues('policy: []\n')).toEqual([
      { line: 1, col: 1, field: 'policy', message: 'unknown field (allowed: policies)' },
      { line: 1, col: 1, field: 'policies', message: 'expected a list of policies' },
    ]);
    const dup = issues('policies:\n  - { name: a, select: { cgroup: /x } }\n  - { name: a, select: { cgroup: /x } }\n');
    expect(dup.map((i) => i.message)).toEqual(['duplicate policy name "a"', 'cgroup /x is already selected by policy "a" (one policy per workload)']);
    expect(issues('policies:\n  - { select: {} }\n').map((i) => i.message)).toEqual(['missing (every policy needs a name)', 'needs cgroup or executable']);
  });

  it('a cgroup path is normalised, and one that leads out of the cgroup2 mount is refused at its line', () => {
    const root = cgroup2Root();
    expect(cgroupDir('/a/', root)).toBe(`${root}/a`);
    expect(cgroupDir('a/b/../c', root)).toBe(`${root}/a/c`);
    expect(cgroupDir(`${root}/a/`, root)).toBe(`${root}/a`);
    expect(() => cgroupDir('/a/../../..', root)).toThrow(/leads out of the cgroup2 mount/);
    try {
      parsePolicies('policies:\n  - name: a\n    select: { cgroup: /a/../../.. }\n', 'p.yaml');
      expect.unreachable();
    } catch (e) {
      expect((e as PolicyError).message).toMatch(/p\.yaml:3:23: policies\[0\]\.select\.cgroup: cgroup "\/a\/\.\.\/\.\.\/\.\." leads out of the cgroup2 mount/);
    }
  });

  it('a quoted uid is a number with its range (it was cut to 32 bits, and the any-user value passed)', () => {
    const uid = (v: string) => issues(`policies:\n  - { name: a, select: { cgroup: /x, uid: ${v} } }\n  - { name: a, select: { cgroup: /y } }\n`).filter((i) => i.field.endsWith('uid')).map((i) => i.message);
    expect(uid('"99999999999"')).toEqual(['expected a uid (0 … 4294967294) or a user name']);
    expect(uid('"4294967295"')).toEqual(['expected a uid (0 … 4294967294) or a user name']);
    expect(uid('4294967295')).toEqual(['expected a uid (0 … 4294967294) or a user name']);
    expect(uid('"65534"')).toEqual([]);
    expect(parsePolicies('policies:\n  - { name: a, select: { cgroup: /x, uid: "65534" } }\n', 'p.yaml', { checkPaths: false })[0]!.select.uid).toBe(65534);
  });

  it('checks that paths and cgroups exist on this system', () => {
    try {
      parsePolicies('policies:\n  - name: a\n    select: { executable: /no/such/bin }\n', 'p.yaml');
      expect.unreachable();
    } catch (e) {
      expect((e as PolicyError).message).toContain('p.yaml:3:27: policies[0].select.executable: "/no/such/bin" does not exist on this system');
    }
  });
});

describe('policy mistakes a user makes (messages, not crashes)', () => {
  it('a directory in exec.deny is rejected at validation, naming the fix', () => {
    try {
      parsePolicies('policies:\n  - name: a\n    select: { cgroup: / }\n    exec: { deny: [/usr/bin] }\n', 'dir/p.yaml');
      expect.unreachable();
    } catch (e) {
      expect((e as PolicyError).message).toContain('dir/p.yaml:4:20: policies[0].exec.deny[0]: "/usr/bin" is a directory; list executables one by one (e.g. /usr/bin/nc)');
    }
  });

  it('"shell" suggests "shells"; a misspelt field suggests the close name', () => {
    const is = issues('policies:\n  - name: a\n    select: { cgroup: /x }\n    exec: { deny: [shell] }\n    egres: {}\n');
    expect(is.map((i) => i.message).sort()).toEqual(['"shell" is not an absolute path (did you mean "shells"?)', 'unknown field (did you mean "egress"?) (allowed: name, mode, select, exec, egress, ptrace)']);
  });

  it('ptrace: allow | deny, denied when unset; anything else is an error at its line', () => {
    const [p, q] = parsePolicies('policies:\n  - { name: a, select: { cgroup: /a } }\n  - { name: b, select: { cgroup: /b }, ptrace: allow }\n', 'p.yaml', { checkPaths: false });
    expect([p!.ptrace, q!.ptrace]).toEqual([undefined, 'allow']);
    const is = issues('policies:\n  - name: a\n    select: { cgroup: /x }\n    ptrace: yes\n');
    expect(is).toEqual([expect.objectContaining({ line: 4, field: 'policies[0].ptrace', message: 'expected "allow" or "deny", got "yes"' })]);
  });

  it('rawSockets: allow | deny; denied by default once a policy has egress rules', () => {
    const [p, q, r] = parsePolicies('policies:\n  - { name: a, select: { cgroup: /a }, egress: { allow: [{ to: 10.0.0.0/8 }] } }\n  - { name: b, select: { cgroup: /b }, egress: { allow: [], rawSockets: allow } }\n  - { name: c, select: { cgroup: /c }, exec: { deny: [shells] } }\n', 'p.yaml', { checkPaths: false });
    expect([denyRaw(p!), denyRaw(q!), denyRaw(r!)]).toEqual([true, false, false]);
    expect(issues('policies:\n  - { name: a, select: { cgroup: /a }, egress: { rawSockets: maybe } }\n')[0]!.message).toBe('expected "allow" or "deny", got "maybe"');
  });

  it('counts the map entries a policy needs (capacity checks before writing)', () => {
    const [p] = parsePolicies('policies:\n  - name: a\n    select: { cgroup: /a }\n    exec: { deny: [shells, /usr/bin/nc], allow: [/usr/bin/python3] }\n    egress:\n      allow: [{ to: 10.0.0.0/8, ports: [80, 443] }, { to: ::1 }]\n      deny: [{ to: 10.1.0.0/16, ports: [1, 2, 3] }]\n', 'p.yaml', { checkPaths: false });
    expect(entriesNeeded(p!, 3)).toEqual({ exec: 5, egress: 6 });
  });
});

describe('addresses', () => {
  it('canonicalises CIDRs', () => {
    expect(canonicalCidr('10.1.2.3')).toBe('10.1.2.3/32');
    expect(canonicalCidr('::1')).toBe('::1/128');
    expect(canonicalCidr('10.0.0.0/33')).toBeUndefined();
    expect(canonicalCidr('fe80::/10')).toBe('fe80::/10');
    expect(canonicalCidr('nope')).toBeUndefined();
  });

  it('stores IPv4 IPv4-mapped so v4, v6 and ::ffff: share one rule', () => {
    const v4 = cidrBytes('127.0.0.1/32');
    expect(v4.bits).toBe(128);
    expect([...v4.addr]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 127, 0, 0, 1]);
    expect([...cidrBytes('::ffff:127.0.0.1').addr]).toEqual([...v4.addr]);
    expect([...cidrBytes('2001:db8::1').addr]).toEqual([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(formatAddr(v4.addr)).toBe('127.0.0.1');
    expect(formatAddr(cidrBytes('::1').addr)).toBe('::1');
  });

  it('converts glibc dev_t to the kernel encoding', () => {
    // 254:0 → user 0xfe00, kernel 254 << 20
    expect(kernelDev(0xfe00n)).toBe(254n << 20n);
    // 259:65537 → exercises the high minor bits
    const user = ((259n & 0xfffn) << 8n) | (65537n & 0xffn) | ((65537n & ~0xffn) << 12n);
    expect(kernelDev(user)).toBe((259n << 20n) | 65537n);
  });

  it('takes inode numbers as the kernel has them, unsigned (Node gave those past 2^63 negative)', () => {
    // the guests' 9p share has such inodes; stat(1) prints the unsigned number
    const f = import.meta.filename;
    const ino = BigInt(execFileSync('stat', ['-c', '%i', f], { encoding: 'utf8' }).trim());
    expect(fileId(f).ino).toBe(ino);
    expect(fileId(f).ino).toBeGreaterThanOrEqual(0n);
  });
});
