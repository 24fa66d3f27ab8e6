// Config validation and rate/CIDR parsing (pure: no kernel, no root).
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { findCgroup2Root } from '../../common/cgroup.ts';
import { UsageError } from '../../common/args.ts';
import { AUTO_HORIZON_MIN_RATE, cgroupIdOf, checkReplaceKeys, ConfigError, formatRate, latencyHorizonNs, MAX_GSO_WIRE_BYTES, netPort, parseCidr, parseDuration, parseHorizon, parseRate, validateConfig } from './config.ts';

const cg = (p: string) => (p === '/sys/fs/cgroup/app' ? 4242n : undefined);

function problems(raw: unknown): string[] {
  try {
    validateConfig(raw, cg);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems;
  }
  throw new Error('config was accepted');
}

describe('parsing', () => {
  it('rates in tc spelling (SI, bits/s)', () => {
    expect(parseRate('10mbit')).toBe(10_000_000n);
    expect(parseRate('1.5Gbit')).toBe(1_500_000_000n);
    expect(parseRate('800kbit')).toBe(800_000n);
    expect(parseRate('10mbps')).toBeUndefined(); // bytes in tc: refused rather than guessed
    expect(parseRate('10')).toBeUndefined();
    expect(formatRate(100_000_000n)).toBe('100mbit');
  });
  it('durations, CIDRs, ports', () => {
    expect(parseDuration('2s')).toBe(2_000_000_000n);
    expect(parseDuration('500ms')).toBe(500_000_000n);
    expect(parseDuration('2')).toBeUndefined();
    expect(parseCidr('10.0.0.0/8')?.prefixlen).toBe(8);
    expect(parseCidr('10.0.0.1')?.prefixlen).toBe(32);
    expect(parseCidr('10.0.0.1/8')).toBeUndefined(); // host bits set
    expect(parseCidr('10.0.0.256/32')).toBeUndefined();
    expect(parseCidr('fd00::/8')).toMatchObject({ family: 6, prefixlen: 8 });
    expect(parseCidr('fd00:16::1')?.prefixlen).toBe(128);
    expect(parseCidr('fd00:16::1/64')).toBeUndefined(); // host bits set
    expect(parseCidr('fd00::/129')).toBeUndefined();
    expect(parseCidr('10.0.0.0/33')).toBeUndefined();
    expect([...parseCidr('10.1.2.0/24')!.addr]).toEqual([10, 1, 2, 0, ...Array(12).fill(0)]); // IPv4 in the first 4 of 16
    expect(netPort(5201)).toBe(0x5114);
  });
});

describe('validateConfig', () => {
  it('accepts every match kind and filter form', () => {
    const p = validateConfig({
      classes: [
        { name: 'bulk', rate: '100mbit', horizon: '500ms', match: [{ dst: '10.0.0.0/24', port: 5201 }, { cgroup: '/sys/fs/cgroup/app' }] },
        { name: 'one', rate: '1gbit', match: [{ flow: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 80, proto: 'tcp' } }] },
      ],
      filters: [{ name: 'no-telnet', dir: 'ingress', proto: 'tcp', port: 23, action: 'drop' }, { cidr: '192.168.0.0/16', action: 'count' }],
    }, cg);
    expect(p.classes.map((c) => [c.name, c.rateBps, c.horizonNs])).toEqual([['bulk', 100_000_000n, 500_000_000n], ['one', 1_000_000_000n, 2_000_000_000n]]);
    expect(p.classes[0]!.matches[1]).toEqual({ kind: 'cgroup', path: '/sys/fs/cgroup/app', id: 4242n });
    expect(p.rules.map((r) => [r.name, r.dir, r.proto, r.port, r.action, r.prefixlen])).toEqual([['no-telnet', 1, 6, 23, 1, 0], ['rule1', 2, 0, 0, 0, 16]]);
  });
  it('names every problem at once, with its path', () => {
    const ps = problems({
      classes: [
        { name: 'Bulk', rate: '10mbps', match: [{ dst: '10.0.0.1/8' }, { cgroup: '/nope' }, { src: '1.2.3.4' }] },
        { name: 'b', rate: '1bit', horizon: '1h' },
        { name: 'b', rate: '1mbit', extra: 1 },
      ],
      filters: [{ action: 'reject', port: 80 }],
      other: true,
    });
    for (const re of [/classes\[0\]\.name/, /classes\[0\]\.rate/, /classes\[0\]\.match\[0\]\.dst/, /classes\[0\]\.match\[1\]\.cgroup/, /classes\[0\]\.match\[2\]: needs one of/, /classes\[1\]\.rate: 1bit is outside/, /classes\[1\]\.horizon/, /classes\[2\]\.name: "b" is used twice/, /classes\[2\]\.extra: unknown field/, /filters\[0\]\.port: a port needs proto/, /filters\[0\]\.action/, /config\.other: unknown field/]) {
      expect(ps.some((p) => re.test(p)), `${re} in ${ps.join(' | ')}`).toBe(true);
    }
  });
  it('IPv6: classes by CIDR and 5-tuple, rules by CIDR; families kept apart', () => {
    const p = validateConfig({
      classes: [{ name: 'v6', rate: '10mbit', match: [{ dst: 'fd00:16::/64', port: 443 }, { flow: { src: 'fd00:16::1', dst: 'fd00:16::2', sport: 1000, dport: 80, proto: 'udp' } }] }],
      filters: [{ name: 'ping6', dir: 'both', cidr: 'fd00:16::/64', proto: 'icmpv6', action: 'count' }, { name: 'all', action: 'count' }],
    }, cg);
    expect(p.classes[0]!.matches.map((m) => [m.kind, (m as { family: number }).family])).toEqual([['dst', 6], ['flow', 6]]);
    expect(p.rules.map((r) => [r.family, r.prefixlen, r.proto])).toEqual([[6, 64, 58], [0, 0, 0]]);
    const ps = problems({
      classes: [{ name: 'x', rate: '1mbit', match: [{ flow: { src: '10.0.0.1', dst: 'fd00::2', sport: 1, dport: 2, proto: 'tcp' } }, { dst: 'fd00::1/64' }] }],
      filters: [{ cidr: 'fd00::/64', proto: 'icmp', action: 'count' }, { cidr: '10.0.0.0/8', proto: 'icmpv6', action: 'count' }],
    });
    for (const re of [/match\[0\]\.flow: src is IPv4, dst is IPv6/, /match\[1\]\.dst/, /filters\[0\]\.proto: icmp never matches an IPv6/, /filters\[1\]\.proto: icmpv6 never matches an IPv4/]) {
      expect(ps.some((x) => re.test(x)), `${re} in ${ps.join(' | ')}`).toBe(true);
    }
  });
  // both parsed: the zone was dropped (a rule for fe80::1%eth0 matched fe80::1 from any link), and
  // ::ffff:a.b.c.d became a family-6 key that IPv4 packets (keyed as family 4) never match — a
  // drop rule that never dropped (edt.test.ts shows the kernel side)
  it('IPv4 in IPv6 form and zone ids are refused, naming what to write', () => {
    const ps = problems({
      classes: [{ name: 'x', rate: '1mbit', match: [
        { dst: '::ffff:10.0.0.0/120' },
        { dst: 'fe80::%eth0/64', port: 80 },
        { flow: { src: '::ffff:10.0.0.1', dst: '::10.0.0.2', sport: 1, dport: 2, proto: 'tcp' } },
      ] }],
      filters: [{ cidr: '::ffff:192.168.0.0/112', action: 'drop' }, { cidr: 'fe80::1%eth1', action: 'count' }, { cidr: '::ffff:10.0.0.1', action: 'drop' }],
    });
    expect(ps).toEqual([
      'classes[0].match[0].dst: "::ffff:10.0.0.0/120" is an IPv4-mapped IPv6 address (::ffff:a.b.c.d, how an IPv6 socket names an IPv4 peer): its traffic is IPv4 and never matches an IPv6 key; write 10.0.0.0/24',
      'classes[0].match[1].dst: "fe80::%eth0/64" has a zone id (%eth0): an address here is its 16 bytes, with no interface, so the zone would be dropped; write fe80::/64 without it, or a global address',
      expect.stringMatching(/^classes\[0\]\.match\[2\]\.flow\.src: "::ffff:10\.0\.0\.1" is an IPv4-mapped .*; write 10\.0\.0\.1$/),
      expect.stringMatching(/^classes\[0\]\.match\[2\]\.flow\.dst: "::10\.0\.0\.2" is an IPv4-compatible IPv6 address .*; write 10\.0\.0\.2$/),
      expect.stringMatching(/^filters\[0\]\.cidr: "::ffff:192\.168\.0\.0\/112" is an IPv4-mapped .*; write 192\.168\.0\.0\/16$/),
      expect.stringMatching(/^filters\[1\]\.cidr: "fe80::1%eth1" has a zone id \(%eth1\)/),
      expect.stringMatching(/^filters\[2\]\.cidr: "::ffff:10\.0\.0\.1" is an IPv4-mapped .*; write 10\.0\.0\.1$/),
    ]);
    // what they mean is taken, and so is all of IPv6 (::/0) and NAT64
    expect(validateConfig({ filters: [{ cidr: '10.0.0.0/24', action: 'drop' }, { cidr: '::/0', action: 'count' }, { cidr: '64:ff9b::/96', action: 'count' }, { cidr: 'fe80::/64', action: 'count' }] }, cg).rules).toHaveLength(4);
  });

  it('horizon auto: the wire time of one 64 KiB GSO packet at the rate +10%, at least 8 ms, at most 10 s', () => {
    expect(MAX_GSO_WIRE_BYTES).toBe(68_130n);
    expect(latencyHorizonNs(10_000_000n)).toBe(59_954_400n); // 54.5 ms × 1.1
    expect(latencyHorizonNs(50_000_000n)).toBe(11_990_880n);
    expect(latencyHorizonNs(100_000_000n)).toBe(8_000_000n); // 6 ms → the 8 ms floor
    expect(latencyHorizonNs(1_000_000_000n)).toBe(8_000_000n);
    expect(latencyHorizonNs(8_000n)).toBe(10_000_000_000n); // 75 s → the 10 s maximum
    for (const r of [1_000_000n, 3_000_000n, 16_000_000n, 24_000_000n, 250_000_000n]) expect(latencyHorizonNs(r)).toBeGreaterThan((MAX_GSO_WIRE_BYTES * 8n * 1_000_000_000n) / r);
    const p = validateConfig({ classes: [{ name: 'a', rate: '10mbit', horizon: 'auto' }, { name: 'b', rate: '10mbit', horizon: '60ms' }] }, cg);
    expect(p.classes.map((c) => [c.horizonNs, c.horizonAuto])).toEqual([[59_954_400n, true], [60_000_000n, undefined]]);
    expect(parseHorizon('auto')).toBe('auto');
    expect(parseHorizon('2s')).toBe(2_000_000_000n);
    for (const bad of ['Auto', '0.5ms', '11s', 5, '']) expect(parseHorizon(bad)).toBeUndefined();
    expect(problems({ classes: [{ name: 'a', rate: '10mbit', horizon: 'automatic' }] })[0]).toMatch(/classes\[0\]\.horizon: "automatic" must be a duration 1ms-10s \(e\.g\. "2s"\) or "auto"/);
  });

  // below ~60 kbit/s the budget was capped at 10 s, shorter than the GSO packet it is for: a 64 KiB
  // GSO packet behind another was dropped (edt.test.ts shows it in the kernel)
  it('horizon auto is refused at rates where one GSO packet does not fit the 10 s maximum, naming the lowest rate it takes', () => {
    expect(AUTO_HORIZON_MIN_RATE).toBe(59_955n);
    expect(latencyHorizonNs(AUTO_HORIZON_MIN_RATE)).toBeLessThanOrEqual(10_000_000_000n);
    expect(latencyHorizonNs(AUTO_HORIZON_MIN_RATE)).toBeGreaterThan((MAX_GSO_WIRE_BYTES * 8n * 1_000_000_000n) / AUTO_HORIZON_MIN_RATE);
    expect(problems({ classes: [{ name: 'slow', rate: '50kbit', horizon: 'auto' }] })).toEqual([
      'classes[0].horizon: horizon auto needs a rate of at least 59.955kbit: at 50kbit one 64 KiB GSO packet\'s wire time +10% is 12 s, past the 10 s horizon maximum (fq drops departures further ahead), so a GSO packet behind another would be dropped; give a higher rate, or an explicit horizon (e.g. "10s") and accept those drops',
    ]);
    expect(problems({ classes: [{ name: 'slow', rate: '8kbit', horizon: 'auto' }] })[0]).toMatch(/at 8kbit .* is 75 s, past the 10 s/);
    expect(problems({ classes: [{ name: 'slow', rate: '59954bit', horizon: 'auto' }] })).toHaveLength(1);
    expect(validateConfig({ classes: [{ name: 'ok', rate: '59955bit', horizon: 'auto' }, { name: 'fixed', rate: '50kbit', horizon: '10s' }] }, cg).classes.map((c) => c.horizonAuto)).toEqual([true, undefined]);
    expect(problems({ classes: [{ name: 'slow', rate: '1kbit', horizon: 'auto' }] })).toEqual(['classes[0].rate: 1kbit is outside 8kbit-400gbit']); // one problem, the rate
  });
  it('an unnamed rule is called rule<index>, and a clash with it says so', () => {
    expect(problems({ filters: [{ action: 'count' }, { name: 'rule0', action: 'drop' }] })).toEqual(['filters[1].name: "rule0" is used twice (filters[0] has no name and is called that)']);
  });

  // a v1 directory has cgroup.procs too, and v1's root inode is 1, the cgroup2 root's id
  it('a cgroup match must be a cgroup2 directory: a cgroup v1 one is refused (where this machine mounts v1)', (ctx) => {
    const v1 = ['cpu', 'memory', 'pids', 'systemd'].map((c) => `/sys/fs/cgroup/${c}`).find((d) => fs.existsSync(`${d}/cgroup.procs`) && fs.statfsSync(d).type === 0x27e0eb /* CGROUP_SUPER_MAGIC */);
    const v2 = findCgroup2Root();
    if (v2) expect(cgroupIdOf(v2)).toBe(1n);
    if (!v1) ctx.skip('no cgroup v1 hierarchy mounted here');
    expect(cgroupIdOf(v1!)).toBeUndefined();
    expect(() => validateConfig({ classes: [{ name: 'a', rate: '1mbit', match: [{ cgroup: v1 }] }] })).toThrow(/is not a cgroup2 directory/);
  });

  it('refuses the same match in two classes and too many rules', () => {
    expect(problems({ classes: [{ name: 'a', rate: '1mbit', match: [{ dst: '10.0.0.0/24' }] }, { name: 'b', rate: '1mbit', match: [{ dst: '10.0.0.0/24' }] }] })[0]).toMatch(/already in class "a"/);
    expect(problems({ filters: Array.from({ length: 65 }, () => ({ action: 'count' })) }).join()).toMatch(/65 rules, at most 64/);
    expect(problems([])[0]).toMatch(/must be an object/);
  });
  it('dir and proto are one of their words, not any key an object inherits (proto "constructor" was any, dir "toString" a rule that never fired)', () => {
    for (const w of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      expect(problems({ filters: [{ proto: w, action: 'drop' }] }), w).toEqual([`filters[0].proto: "${w}" must be tcp, udp, icmp, icmpv6 or any`]);
      expect(problems({ filters: [{ dir: w, action: 'drop' }] }), w).toEqual([`filters[0].dir: "${w}" must be egress, ingress or both`]);
    }
    expect(validateConfig({ filters: [{ dir: 'both', proto: 'icmpv6', action: 'count' }] }, cg).rules.map((r) => [r.dir, r.proto])).toEqual([[3, 58]]);
  });
  it('the same match spelled differently is the same match (keyed by the parsed bytes, as the map is): refused, not a silent last-class-wins', () => {
    const two = (a: object, b: object) => problems({ classes: [{ name: 'a', rate: '1mbit', match: [a] }, { name: 'b', rate: '1mbit', match: [b] }] });
    const flow = (src: string, dst = '10.0.0.2') => ({ flow: { src, dst, sport: 1000, dport: 80, proto: 'tcp' } });
    for (const [x, y] of [
      [{ dst: 'fd00::/64' }, { dst: 'fd00:0::/64' }],
      [{ dst: 'FD00::/64' }, { dst: 'fd00::/64' }],
      [{ dst: '10.0.0.5' }, { dst: '10.0.0.5/32' }],
      [{ dst: '10.0.0.0/24', port: 80 }, { dst: '10.0.0.0/024', port: 80 }],
      [{ dst: 'fd00::1' }, { dst: 'fd00::0001/128' }],
      [flow('fd00::1', 'fd00::2'), flow('fd00::0001', 'FD00::2')],
    ] as const) {
      expect(two(x, y), `${JSON.stringify(x)} vs ${JSON.stringify(y)}`).toEqual(['classes[1].match[0]: the same match is already in class "a"']);
    }
    // different matches stay apart: another port, prefix, family or protocol
    for (const [x, y] of [
      [{ dst: '10.0.0.0/24', port: 80 }, { dst: '10.0.0.0/24' }],
      [{ dst: '10.0.0.0/24' }, { dst: '10.0.0.0/25' }],
      [{ dst: '::/0' }, { dst: '0.0.0.0/0' }],
      [flow('10.0.0.1'), { flow: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 80, proto: 'udp' } }],
    ] as const) {
      expect(() => validateConfig({ classes: [{ name: 'a', rate: '1mbit', match: [x] }, { name: 'b', rate: '1mbit', match: [y] }] }, cg), `${JSON.stringify(x)} vs ${JSON.stringify(y)}`).not.toThrow();
    }
  });
});

describe('commands that replace live lists: a missing key is not an empty list', () => {
  const refused = (raw: unknown, live: Parameters<typeof checkReplaceKeys>[2]): UsageError => {
    try {
      checkReplaceKeys('c.yaml', raw, live);
    } catch (e) {
      expect(e).toBeInstanceOf(UsageError); // exit 2
      return e as UsageError;
    }
    throw new Error('accepted');
  };
  it('tc filter set: {}, an empty file, "filters:" with no value are refused; filters: [] clears', () => {
    for (const raw of [{}, null, undefined, { filters: null }, { classes: [] }, []]) {
      const e = refused(raw, { filters: 'always' });
      expect(e.message).toMatch(/^--config c\.yaml has no "filters" list: refusing to read a missing list as an empty one \(nothing was changed\)$/);
      expect(e.fix).toMatch(/"filters: \[\]"/);
    }
    expect(() => checkReplaceKeys('c.yaml', { filters: [] }, { filters: 'always' })).not.toThrow();
  });
  it('tc shape apply: a missing key is refused only where it would remove live entries, both named at once', () => {
    expect(refused({ filters: [] }, { classes: 2, filters: 1 }).message).toMatch(/has no "classes" list, and 2 class\(es\) are live/);
    const both = refused({}, { classes: 2, filters: 3 });
    expect(both.message).toMatch(/has no "classes" or "filters" list, and 2 class\(es\) and 3 rule\(s\) are live/);
    expect(both.fix).toMatch(/"classes: \[\]" and "filters: \[\]"/);
    // a filter-only instance has no classes: a file of filters alone removes nothing
    expect(() => checkReplaceKeys('c.yaml', { filters: [] }, { classes: 0, filters: 5 })).not.toThrow();
    expect(() => checkReplaceKeys('c.yaml', {}, { classes: 0, filters: 0 })).not.toThrow();
    expect(() => checkReplaceKeys('c.yaml', { classes: [], filters: [] }, { classes: 9, filters: 9 })).not.toThrow();
  });
});
