// Config validation (pure: no kernel, no root): forwarding modes and their errors.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { thrown } from '../../lab/testing.ts';
import { ValidationError } from './addr.ts';
import { MAX_BACKEND_TABLE, MAX_CONNTRACK, normVip, startSettingsDiff, validateConfig, validateConfigFile, type LbConfig } from './config.ts';

const b = (...addrs: string[]) => addrs.map((address) => ({ address }));

const base = (extra: Partial<LbConfig> = {}): LbConfig => ({
  interface: 'lb0',
  vips: [
    { vip: 'tcp://10.99.100.1:80', backends: b('10.99.0.11', '10.99.0.12') },
    { vip: 'udp://[fd99:100::1]:53', backends: b('fd99::11') },
  ],
  ...extra,
});

function rejects(c: LbConfig, re: RegExp): void {
  let err: unknown;
  try {
    validateConfig(c);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ValidationError);
  expect((err as Error).message).toMatch(re);
}

describe('instance names', () => {
  it("refuses the other control planes' pin directory names (their stop would remove the LB's pins)", () => {
    for (const n of ['security', 'svc-web', 'tc-x']) rejects(base({ instance: n }), new RegExp(`instance name "${n}" is taken`));
    for (const n of ['svc', 'tcp-lb', 'my-security']) expect(() => validateConfig(base({ instance: n }))).not.toThrow();
  });
});

describe('unknown keys', () => {
  it('a misspelt key anywhere is refused with where it is, not ignored', () => {
    rejects({ ...base(), colour: 'red' } as never, /^config\.colour: unknown key \(allowed: interface, /);
    rejects(base({ vips: [{ vip: 'tcp://10.99.100.1:80', backends: b('10.99.0.11'), healtCheck: true } as never] }), /^vips\[0\]\.healtCheck: unknown key/);
    rejects(base({ vips: [{ vip: 'tcp://10.99.100.1:80', backends: [{ address: '10.99.0.11', wieght: 2 } as never] }] }), /^vips\[0\]\.backends\[0\]\.wieght: unknown key/);
    rejects(base({ healthCheck: { intervalMs: 100, fal: 3 } as never }), /^healthCheck\.fal: unknown key/);
    // YAML 1.2 reads `healthCheck: no` as the string "no", which was taken as true
    rejects(base({ vips: [{ vip: 'tcp://10.99.100.1:80', backends: b('10.99.0.11'), healthCheck: 'no' as never }] }), /^vips\[0\] \(tcp:\/\/10\.99\.100\.1:80\): healthCheck "no" must be true or false/);
    rejects(base({ vips: [{ vip: 'tcp://10.99.100.1:80', backends: [{ address: '10.99.0.11', mac: 12 as never }] }] }), /^vips\[0\]\.backends\[0\]: malformed MAC "12"/);
    expect(() => validateConfig(base({ healthCheck: { intervalMs: 100, fall: 3 } }))).not.toThrow();
  });
});

describe('forwarding: dsr | ipip', () => {
  it('takes a backend egress interface by name and refuses what cannot be one', () => {
    expect(normVip({ vip: 'udp://10.0.0.1:9', backends: [{ address: '10.0.0.11', egress: 'eth1' }, { address: '10.0.0.12' }] }, 'v').backends.map((b) => b.egress)).toEqual(['eth1', undefined]);
    for (const egress of ['', 'a/b', 'has space', 'x'.repeat(16), 7]) {
      expect(() => normVip({ vip: 'udp://10.0.0.1:9', backends: [{ address: '10.0.0.11', egress } as never] }, 'v'), JSON.stringify(egress)).toThrow(/egress .* must be an interface name/);
    }
  });

  it('defaults to dsr, no tunnel source needed; dsr allows mixed families', () => {
    const c = validateConfig(base({ vips: [{ vip: 'tcp://[fd99:100::1]:80', backends: b('10.99.0.11') }] }));
    expect(c.forwarding).toBe('dsr');
    expect(c.vips[0]!.forwarding).toBe('dsr');
    expect(c.tunnelSource).toEqual({});
  });

  it('accepts ipip with a tunnel source per family in use (canonical addresses)', () => {
    const c = validateConfig(base({ forwarding: 'ipip', tunnelSource: { ipv4: '10.99.0.2', ipv6: 'fd99:0::0002' } }));
    expect(c.forwarding).toBe('ipip');
    expect(c.tunnelSource).toEqual({ ipv4: '10.99.0.2', ipv6: 'fd99::2' });
    expect(c.vips.map((v) => v.forwarding)).toEqual(['ipip', 'ipip']);
  });

  it('per-VIP forwarding overrides the default; only ipip VIPs need a tunnel source', () => {
    const c = validateConfig(base({
      tunnelSource: { ipv4: '10.99.0.2' },
      vips: [
        { vip: 'tcp://10.99.100.1:80', backends: b('10.99.0.11'), forwarding: 'ipip' },
        { vip: 'udp://[fd99:100::1]:53', backends: b('10.99.0.11') },
      ],
    }));
    expect(c.vips.map((v) => v.forwarding)).toEqual(['ipip', 'dsr']);
  });

  it('rejects ipip without the tunnel source of the VIP family', () => {
    rejects(base({ forwarding: 'ipip' }), /vips\[0\].*forwarding "ipip" needs tunnelSource\.ipv4/);
    rejects(base({ forwarding: 'ipip', tunnelSource: { ipv4: '10.99.0.2' } }), /vips\[1\].*needs tunnelSource\.ipv6/);
  });

  it('rejects mixed families under ipip with a clear error', () => {
    rejects(base({ forwarding: 'ipip', tunnelSource: { ipv4: '10.99.0.2', ipv6: 'fd99::2' }, vips: [{ vip: 'tcp://10.99.100.1:80', backends: b('10.99.0.11', 'fd99::12') }] }),
      /vips\[0\]\.backends\[1\]: backend fd99::12 is IPv6 but tcp:\/\/10\.99\.100\.1:80 is IPv4; forwarding "ipip" encapsulates IPv4 in IPv4 \(IPIP\) and IPv6 in IPv6 \(IP6IP6\) only/);
    rejects(base({ forwarding: 'ipip', tunnelSource: { ipv4: '10.99.0.2', ipv6: 'fd99::2' }, vips: [{ vip: 'udp://[fd99:100::1]:53', backends: b('10.99.0.11') }] }),
      /backend 10\.99\.0\.11 is IPv4 but udp:\/\/\[fd99:100::1\]:53 is IPv6/);
  });

  it('rejects malformed tunnel sources and forwarding modes', () => {
    rejects(base({ forwarding: 'gre' as never }), /forwarding "gre" must be "dsr" or "ipip"/);
    rejects(base({ vips: [{ vip: 'tcp://10.99.100.1:80', backends: b('10.99.0.11'), forwarding: 'l3' as never }] }), /vips\[0\].*forwarding "l3"/);
    rejects(base({ tunnelSource: { ipv4: 'fd99::2' } }), /tunnelSource\.ipv4: "fd99::2" is an IPv6 address/);
    rejects(base({ tunnelSource: { ipv6: '10.99.0.2' } }), /tunnelSource\.ipv6: "10\.99\.0\.2" is an IPv4 address/);
    rejects(base({ tunnelSource: { ipv4: '10.99.0.300' } }), /malformed IP address/);
    rejects(base({ tunnelSource: { ipv4: '0.0.0.0' } }), /tunnelSource\.ipv4: "0\.0\.0\.0" is unspecified/);
    rejects(base({ tunnelSource: { v4: '10.99.0.2' } as never }), /tunnelSource\.v4: unknown key/);
    rejects(base({ tunnelSource: '10.99.0.2' as never }), /"tunnelSource" must be/);
  });

  it('normVip uses the daemon defaults it is given (API additions)', () => {
    const d = { forwarding: 'ipip' as const, tunnelSource: { ipv4: '10.99.0.2' } };
    expect(normVip({ vip: 'tcp://10.99.100.5:80', backends: b('10.99.0.11') }, 'vip', false, d).forwarding).toBe('ipip');
    expect(() => normVip({ vip: 'tcp://[fd99:100::5]:80', backends: b('fd99::11') }, 'vip', false, d)).toThrow(/needs tunnelSource\.ipv6/);
    expect(normVip({ vip: 'tcp://[fd99:100::5]:80', backends: b('10.99.0.11'), forwarding: 'dsr' }, 'vip', false, d).forwarding).toBe('dsr');
  });
});

describe('config files: errors name file:line:col of the field', () => {
  // made in beforeAll: a describe body runs even where its tests are filtered out (-t), its hooks do not
  let tmp = '';
  beforeAll(() => void (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lbcfg-'))));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const f = path.join(tmp, name);
    fs.writeFileSync(f, text);
    return f;
  };
  const message = (f: string) => (thrown(() => validateConfigFile(f)) as Error).message;

  it('YAML: a bad backend weight points at that backend', () => {
    const f = write('lb.yaml', 'interface: lb0\nvips:\n  - vip: tcp://10.99.100.1:80\n    backends:\n      - 10.99.0.11\n      - { address: 10.99.0.12, weight: 5000 }\n');
    expect(message(f)).toBe(`${f}:6:9: vips[0].backends[1]: weight 5000 must be an integer 0-1000`);
  });

  it('JSON: same positions (parsed with JSON.parse, placed by the YAML document API)', () => {
    const f = write('lb.json', '{\n  "interface": "lb0",\n  "ringSize": 8,\n  "vips": []\n}\n');
    expect(message(f)).toBe(`${f}:3:15: ringSize 8 must be a prime between 7 and 1000003`);
    const g = write('bad.json', '{\n  "interface": "lb0",\n  "vips": [,]\n}\n');
    expect(message(g)).toMatch(new RegExp(`^${g}:3:\\d+: `));
  });

  it('a top-level key: its own position; an error about no one field: the file', () => {
    const f = write('t.yaml', 'interface: lb0\ntunnelSource:\n  ipv4: fd00::1\nvips: []\n');
    expect(message(f)).toBe(`${f}:3:9: tunnelSource.ipv4: "fd00::1" is an IPv6 address`);
    const g = write('d.yaml', 'interface: lb0\nvips:\n  - { vip: "tcp://10.0.0.1:80", backends: [10.0.0.2] }\n  - { vip: "tcp://10.0.0.1:80", backends: [10.0.0.3] }\n');
    expect(message(g)).toBe(`${g}: duplicate VIP tcp://10.0.0.1:80`);
  });

  it('several faults: all named in one line, each at its own position (a VIP by its first)', () => {
    const f = write('many.yaml', 'interface: lb0\nringSize: 8\ncolour: red\nvips:\n  - vip: tcp://10.99.100.1:80\n    backends: [{ address: 10.99.0.11, weight: -1 }, nope]\n  - vip: tcp://10.99.100.2:80\n    backends: [10.99.0.12]\n  - vip: tcp://10.99.100.3:80\n    backends: []\n');
    expect(message(f)).toBe([
      `${f}:3:9: config.colour: unknown key (allowed: interface, instance, pinRoot, forwarding, tunnelSource, ringSize, conntrackEntries, backendTableSize, xdpMode, healthCheck, vips, listen, icmpTooBig)`,
      `${f}:2:11: ringSize 8 must be a prime between 7 and 1000003`,
      `${f}:6:16: vips[0].backends[0]: weight -1 must be an integer 0-1000`,
      `${f}:9:5: vips[2] (tcp://10.99.100.3:80): zero backends; a VIP needs at least one`,
    ].join('; '));
  });
});

describe('several faults at once', () => {
  it('each is its own part; the admin API answers 409 only when every one is a conflict', () => {
    const dup = { vip: 'tcp://10.99.100.1:80', backends: b('10.99.0.11') };
    const both = thrown(() => validateConfig(base({ vips: [dup, dup], backendTableSize: 1, xdpMode: 'fast' as never }))) as ValidationError;
    expect(both.parts.map((p) => [p.status, p.message])).toEqual([
      [409, 'duplicate VIP tcp://10.99.100.1:80'],
      [400, `backendTableSize 1 must be an integer 16-${MAX_BACKEND_TABLE}`],
      [400, 'xdpMode "fast" must be auto, native or generic'],
    ]);
    expect(both.status).toBe(400);
    expect(both.message).not.toContain('\n');
    const conflicts = thrown(() => validateConfig(base({ vips: [dup, dup, dup], backendTableSize: 16 }))) as ValidationError;
    expect(conflicts.parts.map((p) => p.status)).toEqual([409, 409]);
    expect(conflicts.status).toBe(409);
    // one fault stays exactly what it was
    expect((thrown(() => validateConfig(base({ ringSize: 8 }))) as ValidationError).parts).toEqual([]);
  });
});

describe('start settings: what lb apply cannot change live', () => {
  it('a config equal to the running one in its start settings differs in nothing, whatever its VIPs and default forwarding', () => {
    const run = validateConfig(base({ ringSize: 1021, tunnelSource: { ipv4: '10.99.0.2' } }));
    expect(startSettingsDiff(run, validateConfig(base({ ringSize: 1021, tunnelSource: { ipv4: '10.99.0.2' }, forwarding: 'ipip', vips: [{ vip: 'tcp://10.99.100.7:80', backends: b('10.99.0.13') }] })))).toEqual([]);
  });

  it('names each differing field with its running and its file value', () => {
    const run = validateConfig(base({ ringSize: 1021, tunnelSource: { ipv4: '10.99.0.2' } }));
    const file = validateConfig(base({ interface: 'nosuchdev', instance: 'b', ringSize: 65537, conntrackEntries: 4096, backendTableSize: 64, xdpMode: 'generic', healthCheck: { rise: 3 }, tunnelSource: { ipv6: 'fd99::2' }, listen: '127.0.0.1:9100', pinRoot: '/sys/fs/bpf/x', icmpTooBig: { burst: 10 } }));
    expect(startSettingsDiff(run, file)).toEqual([
      { field: 'interface', running: '"lb0"', file: '"nosuchdev"' },
      { field: 'instance', running: '"default"', file: '"b"' },
      { field: 'pinRoot', running: '"/sys/fs/bpf/ebpf-lab"', file: '"/sys/fs/bpf/x"' },
      { field: 'ringSize', running: '1021', file: '65537' },
      { field: 'conntrackEntries', running: String(run.conntrackEntries), file: '4096' },
      { field: 'backendTableSize', running: String(run.backendTableSize), file: '64' },
      { field: 'xdpMode', running: '"auto"', file: '"generic"' },
      { field: 'healthCheck.rise', running: '2', file: '3' },
      { field: 'tunnelSource.ipv4', running: '"10.99.0.2"', file: 'unset' },
      { field: 'tunnelSource.ipv6', running: 'unset', file: '"fd99::2"' },
      { field: 'listen', running: 'unset', file: '"127.0.0.1:9100"' },
      { field: 'icmpTooBig.burst', running: '50', file: '10' },
    ]);
  });
});

describe('icmpTooBig: the too-big answer rate (a constant of the loaded program)', () => {
  it('defaults to the kernel\'s ICMP error limit, takes one field over the default, 0/s is no limit', () => {
    expect(validateConfig(base({})).icmpTooBig).toEqual({ perSec: 1000, burst: 50 });
    expect(validateConfig(base({ icmpTooBig: { perSec: 200 } })).icmpTooBig).toEqual({ perSec: 200, burst: 50 });
    expect(validateConfig(base({ icmpTooBig: { perSec: 0, burst: 1 } })).icmpTooBig).toEqual({ perSec: 0, burst: 1 });
  });

  it('refuses what is not a rate limit, naming the field and its bounds', () => {
    for (const [v, msg] of [
      [{ perSec: -1 }, /icmpTooBig\.perSec -1 must be an integer 0-1000000000/],
      [{ perSec: 1.5 }, /icmpTooBig\.perSec 1\.5/],
      [{ burst: 0 }, /icmpTooBig\.burst 0 must be an integer 1-1000000/],
      [{ burst: '50' }, /icmpTooBig\.burst "50"/],
      [{ rate: 5 }, /icmpTooBig\.rate: unknown key \(allowed: perSec, burst\)/],
      [[1000, 50], /"icmpTooBig" must be \{ perSec, burst \}/],
    ] as const) expect(() => validateConfig(base({ icmpTooBig: v as never }))).toThrow(msg);
  });
});

describe('numbers that become map sizes (uint32 in the libbpf call)', () => {
  it('conntrackEntries past 2**26 is refused, not wrapped (2**32+1024 became 1024 and every later apply was refused)', () => {
    rejects(base({ conntrackEntries: 2 ** 32 + 1024 }), /^conntrackEntries 4294968320 must be an integer 1024-67108864$/);
    rejects(base({ conntrackEntries: MAX_CONNTRACK + 1 }), /conntrackEntries 67108865 must be/);
    rejects(base({ conntrackEntries: 1023 }), /conntrackEntries 1023 must be/);
    expect(validateConfig(base({ conntrackEntries: MAX_CONNTRACK })).conntrackEntries).toBe(MAX_CONNTRACK);
    // the other map sizes were bounded already
    rejects(base({ backendTableSize: 2 ** 32 + 16 }), /backendTableSize 4294967312 must be an integer 16-1048576/);
    rejects(base({ ringSize: 4294967311 }), /ringSize 4294967311 must be a prime between 7 and 1000003/);
  });
});

describe('listen', () => {
  it('is checked with the config (before anything is attached): HOST:PORT, HOST an address or localhost', () => {
    for (const ok of ['127.0.0.1:9100', '[::1]:9100', 'localhost:9100', '0.0.0.0:1']) expect(validateConfig(base({ listen: ok })).listen).toBe(ok);
    const msg = /^listen .* must be "HOST:PORT" with HOST an IPv4 address, \[IPv6\] or localhost \(e\.g\. "127\.0\.0\.1:9100"\)$/;
    for (const bad of ['nonsense', 9100, '9100', ':9100', '127.0.0.1', '::1:9100', '[127.0.0.1]:9100', 'example.com:9100', '127.0.0.1:9100 ', null]) rejects(base({ listen: bad as never }), msg);
    rejects(base({ listen: '127.0.0.1:99999' }), /^malformed listen port "99999": want 1-65535$/);
    rejects(base({ listen: '127.0.0.1:0' }), /^malformed listen port "0"/);
  });

  it('a bad listen in a file is placed at its line, beside the other faults', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lbcfg-'));
    try {
      const f = path.join(tmp, 'l.yaml');
      fs.writeFileSync(f, 'interface: lb0\nlisten: 9100\nringSize: 8\nvips: []\n');
      expect((thrown(() => validateConfigFile(f)) as Error).message).toBe(`${f}:3:11: ringSize 8 must be a prime between 7 and 1000003; ${f}:2:9: listen 9100 must be "HOST:PORT" with HOST an IPv4 address, [IPv6] or localhost (e.g. "127.0.0.1:9100")`);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('health-check timing', () => {
  it('intervalMs and timeoutMs past 2**31-1 are refused (setTimeout made 2147483648 ms into 1 ms: a probe per backend every millisecond)', () => {
    rejects(base({ healthCheck: { intervalMs: 2 ** 31 } }), /^healthCheck\.intervalMs 2147483648 must be at most 2147483647 \(2\*\*31-1 ms, the longest timer Node keeps\)$/);
    rejects(base({ healthCheck: { timeoutMs: 2 ** 31 } }), /^healthCheck\.timeoutMs 2147483648 must be at most 2147483647/);
    expect(validateConfig(base({ healthCheck: { intervalMs: 2 ** 31 - 1, timeoutMs: 2 ** 31 - 1 } })).health.intervalMs).toBe(2 ** 31 - 1);
  });
});

describe('ring slots', () => {
  it('a VIP with more backends than ringSize is refused (Maglev gave the extra ones no slot, silently), naming a ringSize that fits', () => {
    const ten = Array.from({ length: 10 }, (_, i) => ({ address: `10.99.0.${i + 1}`, weight: i === 9 ? 0 : 1 }));
    rejects(base({ ringSize: 7, vips: [{ vip: 'tcp://10.99.100.1:80', backends: b('10.99.0.1') }, { vip: 'tcp://10.99.100.2:80', backends: ten }] }),
      /^vips\[1\] \(tcp:\/\/10\.99\.100\.2:80\): 10 backends but ringSize is 7: each backend needs a ring slot of its own; raise ringSize to a prime ≥ 10 \(e\.g\. 11\) or split the VIP$/);
    expect(validateConfig(base({ ringSize: 11, vips: [{ vip: 'tcp://10.99.100.2:80', backends: ten }] })).vips[0]!.backends).toHaveLength(10);
    expect(validateConfig(base({ ringSize: 7, vips: [{ vip: 'tcp://10.99.100.2:80', backends: ten.slice(0, 7) }] })).vips).toHaveLength(1);
  });
});

describe('backend ports', () => {
  it('a port in address and a different "port" is refused (the "port" won silently); the same port twice is one port', () => {
    const v = (backend: object) => base({ vips: [{ vip: 'tcp://10.99.100.1:80', backends: [backend as never] }] });
    rejects(v({ address: '10.99.0.11:8080', port: 9090 }), /^vips\[0\]\.backends\[0\]: address "10\.99\.0\.11:8080" has port 8080 but "port" is 9090; give the port once$/);
    rejects(v({ address: '[fd99::11]:8080', port: 9090 }), /address "\[fd99::11\]:8080" has port 8080 but "port" is 9090/);
    expect(validateConfig(v({ address: '10.99.0.11:8080', port: 8080 })).vips[0]!.backends[0]!.port).toBe(8080);
    expect(validateConfig(v({ address: '10.99.0.11:8080' })).vips[0]!.backends[0]!.port).toBe(8080);
    expect(validateConfig(v({ address: '10.99.0.11', port: 9090 })).vips[0]!.backends[0]!.port).toBe(9090);
    expect(validateConfig(v({ address: '10.99.0.11' })).vips[0]!.backends[0]!.port).toBe(80);
    expect(validateConfig(v({ address: '[fd99::11]' })).vips[0]!.backends[0]!.port).toBe(80);
  });
});

describe('addresses a VIP or backend can never work with', () => {
  const one = (vip: string, backend: string) => base({ vips: [{ vip, backends: b(backend) }] });
  // ::ffff:a.b.c.d parsed as an IPv6 VIP/backend: its key has family 6, and the IPv4 packets sent
  // to a.b.c.d are looked up with family 4, so the VIP never matched (the same for ::a.b.c.d,
  // which ipaddr.js reads as ::ffff:a.b.c.d)
  // fd99::11:8080 was read as that address on the VIP's port: a backend meant on 8080 was another host
  it('a bare IPv6 backend whose last group could be a port is refused as ambiguous, naming both bracketed forms', () => {
    rejects(one('tcp://[fd99:100::1]:80', 'fd99::11:8080'), /^vips\[0\]\.backends\[0\]: "fd99::11:8080" is ambiguous: write \[fd99::11:8080\] for that IPv6 address, or \[fd99::11\]:8080 for fd99::11 port 8080$/);
    expect(() => one('tcp://[fd99:100::1]:80', '[fd99::11]:8080')).not.toThrow();
    expect(() => one('tcp://[fd99:100::1]:80', '[fd99::11:8080]')).not.toThrow();
    // not ambiguous: no IPv6 address is left without the last group
    expect(() => one('tcp://[fd99:100::1]:80', 'fd99::11')).not.toThrow();
    expect(() => one('tcp://[fd99:100::1]:80', 'fd99:0:0:0:0:0:11:8080')).not.toThrow();
  });

  it('IPv4 written in IPv6 form is refused, naming the IPv4 form', () => {
    rejects(one('tcp://[::ffff:10.99.100.1]:80', 'fd99::11'), /^vips\[0\]: "::ffff:10\.99\.100\.1" is an IPv4-mapped IPv6 address .*never matches an IPv6 key; write 10\.99\.100\.1$/);
    rejects(one('tcp://[::10.99.100.1]:80', 'fd99::11'), /^vips\[0\]: "::10\.99\.100\.1" is an IPv4-compatible IPv6 address .*; write 10\.99\.100\.1$/);
    rejects(one('tcp://[fd99:100::1]:80', '[::ffff:10.99.0.11]:8080'), /^vips\[0\]\.backends\[0\]: "::ffff:10\.99\.0\.11" is an IPv4-mapped .*; write 10\.99\.0\.11$/);
    rejects(base({ tunnelSource: { ipv6: '::ffff:10.99.0.2' } }), /^tunnelSource\.ipv6: "::ffff:10\.99\.0\.2" is an IPv4-mapped/);
    expect(validateConfig(one('tcp://[64:ff9b::a63:6401]:80', 'fd99::11')).vips[0]!.address).toBe('64:ff9b::a63:6401'); // NAT64 is IPv6
  });

  // the zone was dropped by the parse: fe80::1%eth0 and fe80::1%eth1 were one backend, on
  // whichever interface the route lookup found
  it('a zone id is refused, not dropped', () => {
    // without the zone fe80::1 is link-local, refused too: the message names the way out of both
    rejects(one('tcp://[fe80::1%lb0]:80', 'fd99::11'), /^vips\[0\]: "fe80::1%lb0" has a zone id \(%lb0\), which an address here cannot hold, and without it fe80::1 is an IPv6 link-local address \(fe80::\/10\), reachable only through one interface; use a global or ULA \(fd00::\/8\) address$/);
    rejects(one('tcp://[fd99:100::1%lb0]:80', 'fd99::11'), /^vips\[0\]: "fd99:100::1%lb0" has a zone id \(%lb0\).*write fd99:100::1 without it/);
    rejects(one('tcp://[fd99:100::1]:80', 'fe80::11%eth1'), /^vips\[0\]\.backends\[0\]: "fe80::11%eth1" has a zone id/);
    rejects(one('tcp://[fd99:100::1]:80', '[fe80::11%eth1]:8080'), /^vips\[0\]\.backends\[0\]: "fe80::11%eth1" has a zone id/);
    rejects(base({ tunnelSource: { ipv6: 'fe80::2%lb0' } }), /^tunnelSource\.ipv6: "fe80::2%lb0" has a zone id/);
  });

  it('VIPs no packet is sent to, or whose replies are dropped, are refused with why', () => {
    const vip = (v: string, re: RegExp) => rejects(one(v, v.includes('[') ? 'fd99::11' : '10.99.0.11'), re);
    vip('tcp://0.0.0.0:80', /^vips\[0\]: VIP address 0\.0\.0\.0 is the unspecified address: no packet is sent to it; give a unicast address of the LB that clients connect to$/);
    vip('tcp://0.1.2.3:80', /VIP address 0\.1\.2\.3 is in 0\.0\.0\.0\/8 \("this network", a source address only\)/);
    vip('tcp://[::]:80', /VIP address :: is the unspecified address/);
    vip('udp://255.255.255.255:53', /VIP address 255\.255\.255\.255 is the limited broadcast address: TCP cannot connect to it, and a backend's reply would come from it/);
    vip('udp://224.0.0.251:5353', /VIP address 224\.0\.0\.251 is a multicast address/);
    vip('udp://239.1.2.3:53', /is a multicast address/);
    vip('udp://[ff02::fb]:5353', /VIP address ff02::fb is a multicast address/);
    vip('tcp://127.0.0.1:80', /VIP address 127\.0\.0\.1 is a loopback address: no host sends a loopback destination onto the wire/);
    vip('tcp://[::1]:80', /VIP address ::1 is a loopback address/);
    // a client needs a zone id to reach it (refused in the config), and replies from it stay on one link
    vip('tcp://[fe80::10]:80', /^vips\[0\]: VIP address fe80::10 is an IPv6 link-local address \(fe80::\/10\): a client reaches it only with a zone id naming its own interface, and replies from it are never routed off that link; use a global or ULA \(fd00::\/8\) address$/);
    vip('tcp://[febf::10]:80', /VIP address febf::10 is an IPv6 link-local address/);
    // IPv4 link-local needs no zone: a socket reaches 169.254.0.0/16 by its route
    for (const ok of ['tcp://169.254.10.1:80', 'tcp://[fec0::10]:80', 'tcp://10.99.100.255:80', 'tcp://223.255.255.1:80']) expect(validateConfig(one(ok, ok.includes('[') ? 'fd99::11' : '10.99.0.11')).vips, ok).toHaveLength(1);
  });

  it('backends that are not one host, or need an interface, are refused; loopback (with mac, the controller tests\' shape) and IPv4 link-local are taken', () => {
    for (const [a, kind] of [['0.0.0.0', 'the unspecified address'], ['0.0.0.9', 'in 0.0.0.0/8'], ['255.255.255.255', 'the limited broadcast address'], ['224.0.0.5', 'a multicast address']] as const) {
      rejects(one('tcp://10.99.100.1:80', a), new RegExp(`^vips\\[0\\]\\.backends\\[0\\]: backend ${a.replace(/\./g, '\\.')} is ${kind}.*: a backend is one host the LB forwards frames to; give that host's unicast address$`));
    }
    rejects(one('tcp://[fd99:100::1]:80', '::'), /backend :: is the unspecified address/);
    rejects(one('tcp://[fd99:100::1]:80', 'ff02::1'), /backend ff02::1 is a multicast address/);
    expect(() => normVip({ vip: 'tcp://10.99.100.1:80', backends: ['224.0.0.5' as never] }, 'vip')).toThrow(/backend 224\.0\.0\.5 is a multicast address/);
    // fe80::/10 is on every link: without an interface (zone ids are refused) the next hop's route
    // lookup picks one link of many, and the health checks' connect() fails with EINVAL
    rejects(one('tcp://[fd99:100::1]:80', 'fe80::7'), /^vips\[0\]\.backends\[0\]: backend fe80::7 is an IPv6 link-local address \(fe80::\/10\): it is reachable only through one interface, which an address here cannot name \(zone ids are refused\); use a global or ULA \(fd00::\/8\) address$/);
    rejects(one('tcp://[fd99:100::1]:80', '[fe80::7]:8080'), /backend fe80::7 is an IPv6 link-local address/);
    rejects(base({ tunnelSource: { ipv6: 'fe80::2' } }), /^tunnelSource\.ipv6: tunnel source fe80::2 is an IPv6 link-local address \(fe80::\/10\): outer packets from it are never routed off the LB's link; use a global or ULA/);
    for (const ok of ['127.0.0.2', '169.254.0.7', '::1']) expect(validateConfig(one(ok.includes(':') ? 'tcp://[fd99:100::1]:80' : 'tcp://10.99.100.1:80', ok)).vips, ok).toHaveLength(1);
  });
});

describe('one backend host per VIP', () => {
  // the data plane forwards to a host (MAC rewrite or IPIP) and never touches the port: two
  // entries of one host on two ports were two ring owners, i.e. twice the share for that host
  it('the same host on two ports is refused, naming both and the fix (a weight)', () => {
    rejects(base({ vips: [{ vip: 'tcp://10.99.100.1:80', backends: [{ address: '10.99.0.11' }, { address: '10.99.0.12' }, { address: '10.99.0.11:8080' }] }] }),
      /^vips\[0\] \(tcp:\/\/10\.99\.100\.1:80\): backend 10\.99\.0\.11 is listed twice \(10\.99\.0\.11:80 and 10\.99\.0\.11:8080\); the XDP LB forwards packets to a host and never changes their port \(the port is only where health checks go\), so these are one backend with twice the share: list it once, with a weight for a larger share$/);
    rejects(base({ vips: [{ vip: 'udp://[fd99:100::1]:53', backends: [{ address: '[fd99::11]:53' }, { address: 'fd99::11', port: 5353 }] }] }), /backend fd99::11 is listed twice \(\[fd99::11\]:53 and \[fd99::11\]:5353\)/);
    const err = thrown(() => normVip({ vip: 'tcp://10.99.100.1:80', backends: ['10.99.0.11:81', '10.99.0.11:82'] as never }, 'vip')) as ValidationError;
    expect(err.status).toBe(409);
    // one host in two VIPs, or on the VIP's port once with a health-check port, is fine
    expect(validateConfig(base({ vips: [{ vip: 'tcp://10.99.100.1:80', backends: ['10.99.0.11:8080' as never] }, { vip: 'tcp://10.99.100.1:443', backends: b('10.99.0.11') }] })).vips).toHaveLength(2);
  });
});
