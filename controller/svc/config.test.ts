// Config validation and ring planning of the socket LB: pure logic, no root.
import { describe, expect, it } from 'vitest';
import { ValidationError, checkBackendArgs, validateSvcConfig, normService } from './config.ts';
import { cgroupsNest, findOverlap, lockPath, pinDir, ringOf, statePath, type ServiceState } from './controller.ts';

const ok = { cgroup: '/ebpf-lab/clients', services: [{ vip: 'tcp://10.96.0.10:80', backends: ['10.0.0.11:8080', '10.0.0.12:8080'] }] };

describe('socket LB config', () => {
  it('normalises a good config (defaults, canonical addresses, backend port from the VIP)', () => {
    const c = validateSvcConfig({ ...ok, services: [...ok.services, { vip: 'udp://[fd96::0010]:53', backends: ['fd00::11'], algorithm: 'random' }] });
    expect(c.ringSize).toBe(251);
    expect(c.maxSockets).toBe(65536);
    expect(validateSvcConfig({ ...ok, maxSockets: 1 << 20 }).maxSockets).toBe(1 << 20);
    expect(c.instance).toBe('default');
    expect(c.services[1]).toMatchObject({ id: 'udp://[fd96::10]:53', algorithm: 'random', backends: [{ address: 'fd00::11', port: 53, weight: 1 }] });
  });

  it.each([
    [{ ...ok, ringSize: 100 }, /prime/],
    [{ ...ok, cgroup: '' }, /cgroup/],
    [{ ...ok, cgroup: '/a/../b' }, /cgroup/],
    [{ ...ok, instance: 'a b' }, /instance/],
    [{ ...ok, services: 'x' }, /must be a list/],
    [{ ...ok, extra: 1 }, /unknown key "extra"/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10', backends: ['10.0.0.1'] }] }, /malformed VIP/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: [] }] }, /zero backends/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: ['fd00::1'] }] }, /^services\[0\]\.backends\[0\]: backend fd00::1 is not IPv4/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: ['10.0.0.1', '10.0.0.1:80'] }] }, /^services\[0\] \(tcp:\/\/10\.96\.0\.10:80\): duplicate backend 10\.0\.0\.1:80$/],
    // parse errors of addresses and ports say where in the file they are
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: ['10.0.0.1', '10.0.0.2:99999'] }] }, /^services\[0\]\.backends\[1\]: malformed port "99999": want 1-65535$/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: ['10.99.0.300'] }] }, /^services\[0\]\.backends\[0\]: malformed IP address "10\.99\.0\.300"$/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:99999', backends: ['10.0.0.1'] }] }, /^services\[0\]\.vip: malformed VIP port "99999"/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: [{ address: '10.0.0.1', weight: 0 }] }] }, /weight 0/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: ['10.0.0.1'], algorithm: 'rr' }] }, /algorithm/],
    [{ ...ok, services: [ok.services[0], ok.services[0]] }, /duplicate service/],
    // misspelt or foreign keys were dropped: `algoritm: random` ran Maglev, `healthcheck: true` no checks
    [{ ...ok, services: [{ ...ok.services[0], algoritm: 'random' }] }, /^services\[0\] \(tcp:\/\/10\.96\.0\.10:80\): unknown key "algoritm" \(known: vip, backends, algorithm, healthCheck\)$/],
    [{ ...ok, services: [{ ...ok.services[0], healthcheck: true }] }, /^services\[0\] \(tcp:\/\/10\.96\.0\.10:80\): unknown key "healthcheck"/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: [{ address: '10.0.0.1', mac: '02:00:00:00:00:01' }] }] }, /^services\[0\]\.backends\[0\]: unknown key "mac" \(known: address, port, weight; mac and egress are the XDP LB's\)$/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: [{ address: '10.0.0.1', egress: 'eth0' }] }] }, /^services\[0\]\.backends\[0\]: unknown key "egress"/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: [{ address: '10.0.0.1', wieght: 2 }] }] }, /^services\[0\]\.backends\[0\]: unknown key "wieght" \(known: address, port, weight\)$/],
    [{ ...ok, maxServices: 1, services: [ok.services[0], { vip: 'tcp://10.96.0.11:80', backends: ['10.0.0.1'] }] }, /maxServices/],
    [{ ...ok, maxBackends: 1 }, /maxBackends/],
    [{ ...ok, maxSockets: 10 }, /^maxSockets/],
    [{ ...ok, maxSockets: 2 ** 25 }, /^maxSockets/],
    // the XDP LB's healthCheck rules: a misspelt key was kept and ignored, and a timer past 2**31-1
    // ms fires after 1 ms (every backend probed every millisecond)
    [{ ...ok, healthCheck: { intervalMS: 5000 } }, /^healthCheck\.intervalMS: unknown key/],
    [{ ...ok, healthCheck: { intervalMs: 2 ** 31 } }, /^healthCheck\.intervalMs 2147483648 must be at most 2147483647/],
    [{ ...ok, maxServices: 1 << 20, ringSize: 65537 }, /too large/],
    // an IPv6 service ::ffff:a.b.c.d was never looked up: the v6 hooks look ::ffff: destinations up
    // under the IPv4 service (as Cilium does), so the VIP to write is the IPv4 one
    [{ ...ok, services: [{ vip: 'tcp://[::ffff:10.96.0.10]:80', backends: ['fd00::11'] }] }, /^services\[0\]\.vip: "::ffff:10\.96\.0\.10" is an IPv4-mapped IPv6 address .*; write 10\.96\.0\.10$/],
    // a ::ffff: backend of an IPv6 service turned the socket into an IPv4 one, whose UDP replies
    // recvmsg6 looks up under IPv4 reverse keys (the entry is IPv6): the "no family change" rule
    [{ ...ok, services: [{ vip: 'tcp://[fd96::10]:80', backends: ['[::ffff:10.0.0.11]:8080'] }] }, /^services\[0\]\.backends\[0\]: "::ffff:10\.0\.0\.11" is an IPv4-mapped IPv6 address .*; write 10\.0\.0\.11$/],
    // the zone was dropped: a socket address rewrite sets the address, never the scope id
    [{ ...ok, services: [{ vip: 'tcp://[fd96::10]:80', backends: ['fe80::11%eth0'] }] }, /^services\[0\]\.backends\[0\]: "fe80::11%eth0" has a zone id \(%eth0\)/],
    // nor is one without it: connect() to fe80::/10 without a scope id fails (EINVAL), so every
    // connection rewritten to it did; and a link-local VIP needs a zone id in every client
    [{ ...ok, services: [{ vip: 'tcp://[fd96::10]:80', backends: ['[fe80::11]:8080'] }] }, /^services\[0\]\.backends\[0\]: backend fe80::11 is an IPv6 link-local address \(fe80::\/10\): it is reachable only through one interface, which an address here cannot name \(zone ids are refused\); use a global or ULA \(fd00::\/8\) address$/],
    [{ ...ok, services: [{ vip: 'tcp://[fe80::10]:80', backends: ['fd00::11'] }] }, /^services\[0\]\.vip: VIP address fe80::10 is an IPv6 link-local address \(fe80::\/10\).*; use a global or ULA \(fd00::\/8\) address$/],
    // backends no socket can reach were taken, and connects to them failed (review, session 56)
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: ['0.0.0.0'] }] }, /^services\[0\]\.backends\[0\]: backend 0\.0\.0\.0 is the unspecified address: no TCP socket can reach/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: ['224.0.0.1'] }] }, /backend 224\.0\.0\.1 is a multicast address/],
    [{ ...ok, services: [{ vip: 'udp://10.96.0.10:53', backends: ['255.255.255.255'] }] }, /backend 255\.255\.255\.255 is the limited broadcast address: no UDP socket/],
    [{ ...ok, services: [{ vip: 'tcp://[fd96::10]:80', backends: ['[::]:80'] }] }, /backend :: is the unspecified address/],
    // the checks are TCP connects: every UDP backend was marked down and every datagram refused
    [{ ...ok, services: [{ vip: 'udp://10.96.0.10:53', healthCheck: true, backends: ['10.0.0.1'] }] }, /^services\[0\] \(udp:\/\/10\.96\.0\.10:53\): healthCheck is a TCP connect.*set healthCheck: false for UDP services$/],
  ])('rejects %j', (c, msg) => {
    expect(() => validateSvcConfig(c as never)).toThrow(msg);
  });

  // the XDP LB's refusals of special addresses are its own: connect() is rewritten before routing,
  // so a loopback VIP (or backend) is an ordinary one here
  it('takes loopback VIPs and backends, which the XDP LB refuses as VIPs', () => {
    const c = validateSvcConfig({ ...ok, services: [{ vip: 'tcp://127.0.0.53:80', backends: ['127.0.0.1:8080'] }, { vip: 'tcp://[::1]:80', backends: ['[::1]:8080'] }] });
    expect(c.services.map((x) => x.id)).toEqual(['tcp://127.0.0.53:80', 'tcp://[::1]:80']);
  });

  it('names every fault at once, on one line (a service by its first)', () => {
    const bad = { cgroup: '', ringSize: 100, colour: 1, services: [{ vip: 'tcp://10.96.0.10:80', backends: [] }, ok.services[0], { vip: 'tcp://10.96.0.11:80', backends: ['fd00::1', 'x'] }] };
    let err: unknown;
    try {
      validateSvcConfig(bad as never);
    } catch (e) {
      err = e;
    }
    expect((err as ValidationError).parts.map((p) => p.message)).toEqual([
      expect.stringMatching(/^unknown key "colour"/),
      expect.stringMatching(/^"cgroup" must be/),
      'ringSize 100 must be a prime (Maglev needs one), e.g. 251 or 1021',
      'services[0] (tcp://10.96.0.10:80): zero backends; a service needs at least one',
      expect.stringMatching(/^services\[2\]\.backends\[0\]: backend fd00::1 is not IPv4/),
    ]);
    expect((err as Error).message).not.toContain('\n');
    expect((err as ValidationError).status).toBe(400);
  });
});

describe('instance names', () => {
  it('a name that is not [\\w-]{1,40} never becomes a path (a caller other than the CLI included)', () => {
    expect(statePath('qa-1_b')).toBe('/run/ebpf-lab/svc-qa-1_b.json');
    for (const bad of ['x/../../../tmp/f', '..', 'a b', '', 'x'.repeat(41)]) {
      for (const f of [statePath, pinDir, lockPath]) expect(() => f(bad), `${f.name}(${JSON.stringify(bad)})`).toThrow(/^malformed instance name .* \(letters, digits, _ and -, at most 40\)$/);
    }
  });
});

describe('svc backend arguments (checked before the instance is opened)', () => {
  it('names the argument at fault', () => {
    expect(checkBackendArgs('tcp://10.96.0.10:80', '10.0.0.11')).toMatchObject({ id: 'tcp://10.96.0.10:80', backend: { address: '10.0.0.11', port: 80, weight: 1 } });
    expect(checkBackendArgs('udp://[fd96::0010]:53', '[fd00::11]:5353').backend).toMatchObject({ address: 'fd00::11', port: 5353 });
    expect(() => checkBackendArgs('tcp://10.96.0.10:80', '10.99.0.300')).toThrow(/^<addr>: malformed IP address "10\.99\.0\.300"$/);
    expect(() => checkBackendArgs('tcp://10.96.0.10:80', '10.0.0.1:0')).toThrow(/^<addr>: malformed port "0"/);
    expect(() => checkBackendArgs('tcp://10.96.0.10:80', 'fd00::1')).toThrow(/^<addr>: backend fd00::1 is not IPv4 like the VIP/);
    expect(() => checkBackendArgs('tcp://10.96.0.10:99999', '10.0.0.1')).toThrow(/^<vip>: malformed VIP port "99999"/);
    expect(() => checkBackendArgs('10.96.0.10:80', '10.0.0.1')).toThrow(/^<vip>: malformed VIP "10\.96\.0\.10:80": want tcp:\/\/ADDR:PORT/);
  });
});

describe('instances that would balance the same sockets', () => {
  const qa = { instance: 'qa', cgroupPath: '/sys/fs/cgroup/unified/qa-svc', services: ['tcp://10.96.0.10:80', 'udp://10.96.0.10:53'] };

  it('cgroups nest by path components, not by string prefix', () => {
    expect(cgroupsNest('/cg/qa', '/cg/qa/')).toBe('same');
    expect(cgroupsNest('/cg/qa/kid', '/cg/qa')).toBe('inside');
    expect(cgroupsNest('/cg', '/cg/qa')).toBe('contains');
    expect(cgroupsNest('/cg/qa2', '/cg/qa')).toBeNull();
  });

  it('the same service on the same, an inner or an outer cgroup overlaps; other services or sibling cgroups do not', () => {
    expect(findOverlap(qa.cgroupPath, ['tcp://10.96.0.10:80'], [qa])).toMatchObject({ instance: 'qa', how: 'same', services: ['tcp://10.96.0.10:80'] });
    expect(findOverlap(`${qa.cgroupPath}/pods/a`, ['udp://10.96.0.10:53', 'tcp://10.96.0.11:80'], [qa])).toMatchObject({ instance: 'qa', how: 'inside', services: ['udp://10.96.0.10:53'] });
    expect(findOverlap('/sys/fs/cgroup/unified', qa.services, [qa])).toMatchObject({ how: 'contains', services: qa.services });
    // each program leaves addresses it does not balance alone: sharing a cgroup is fine
    expect(findOverlap(qa.cgroupPath, ['tcp://10.96.0.10:81', 'udp://10.96.0.11:53'], [qa])).toBeNull();
    expect(findOverlap('/sys/fs/cgroup/unified/qa-svc2', qa.services, [qa])).toBeNull();
    expect(findOverlap(qa.cgroupPath, qa.services, [])).toBeNull();
  });
});

describe('rings', () => {
  const svc = (algorithm: 'maglev' | 'random', weights: number[], states: ServiceState['backends'][number]['state'][] = []): ServiceState => ({
    id: 'tcp://10.96.0.10:80', algorithm, healthCheck: false, index: 0, half: 0, count: 0,
    backends: weights.map((w, i) => ({ address: `10.0.0.${i + 1}`, port: 80, weight: w, state: states[i] ?? 'active' })),
  });
  const ids = { '10.0.0.1:80': 0, '10.0.0.2:80': 1, '10.0.0.3:80': 2 };

  it('maglev fills the whole prime ring in proportion to weight; drained and down backends take no slot', () => {
    const r = ringOf(svc('maglev', [1, 1, 2]), ids, 251);
    expect(r).toHaveLength(251);
    const share = (id: number) => r.filter((x) => x === id).length / r.length;
    expect(share(2)).toBeGreaterThan(0.45);
    expect(share(0)).toBeGreaterThan(0.2);
    const d = ringOf(svc('maglev', [1, 1, 1], ['active', 'draining', 'down']), ids, 251);
    expect(new Set(d)).toEqual(new Set([0]));
  });

  // Maglev (controller/lb/maglev.ts, shared) gave weights [1000, 1, 1] on 251 slots to the heavy
  // backend alone: the light ones were never chosen, as random already promised they would be
  it('maglev: a backend with weight > 0 owns a slot however light beside the others, as with random', () => {
    const r = ringOf(svc('maglev', [1000, 1, 1]), ids, 251);
    expect([0, 1, 2].map((id) => r.filter((x) => x === id).length)).toEqual([249, 1, 1]);
  });

  it('random lists live backends by weight; no live backend → empty ring (the data plane refuses the connect)', () => {
    expect(ringOf(svc('random', [1, 2, 0]), ids, 251)).toEqual([0, 1, 1]);
    expect(ringOf(svc('random', [1, 1], ['down', 'draining']), ids, 251)).toEqual([]);
  });

  // the ring filled before the last backends got the one slot each was promised: weights
  // [1000,1,1] on 251 never chose the third backend
  it('random: every live backend gets a slot, the rest of the ring is shared by weight and the ring is full', () => {
    const r = ringOf(svc('random', [1000, 1, 1]), ids, 251);
    expect(r).toHaveLength(251);
    const n = (id: number) => r.filter((x) => x === id).length;
    expect([n(0), n(1), n(2)]).toEqual([249, 1, 1]);
    const ids10 = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`10.0.0.${i + 1}:80`, i]));
    const r7 = ringOf(svc('random', [1, 1, 1, 1, 1, 1, 100]), ids10, 7);
    expect(new Set(r7)).toEqual(new Set([0, 1, 2, 3, 4, 5, 6]));
    // shares by weight once each has its slot: [5,3] on 7 → 1+3.125 and 1+1.875 → 4 and 3
    const r53 = ringOf(svc('random', [5, 3]), ids, 7);
    expect([r53.filter((x) => x === 0).length, r53.filter((x) => x === 1).length]).toEqual([4, 3]);
    // weights that fit are listed as they are (the data plane picks among `count` slots)
    expect(ringOf(svc('random', [3, 1]), ids, 7)).toEqual([0, 0, 0, 1]);
  });

  // 10 backends on a ring of 7: three were never used and validation said nothing
  it('a service with more backends than ring slots is refused, for Maglev too', () => {
    const ten = Array.from({ length: 10 }, (_, i) => `10.0.0.${i + 1}:8080`);
    for (const algorithm of ['random', 'maglev'] as const) {
      expect(() => validateSvcConfig({ ...ok, ringSize: 7, services: [{ vip: 'tcp://10.96.0.10:80', algorithm, backends: ten }] })).toThrow(/^services\[0\] \(tcp:\/\/10\.96\.0\.10:80\): 10 backends but ringSize is 7: each backend needs a ring slot of its own; raise ringSize to a prime ≥ 10 \(e\.g\. 11\) or split the service$/);
    }
    expect(validateSvcConfig({ ...ok, ringSize: 11, services: [{ vip: 'tcp://10.96.0.10:80', backends: ten }] }).services[0]!.backends).toHaveLength(10);
  });

  it('a service parsed from CLI input is validated like a config entry', () => {
    expect(() => normService({ vip: 'tcp://10.96.0.10:80', backends: ['10.0.0.1', 'not-an-ip'] }, 'x')).toThrow(/malformed/);
  });
});
