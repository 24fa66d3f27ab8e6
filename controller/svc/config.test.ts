// Config validation and ring planning of the socket LB: pure logic, no root.
import { describe, expect, it } from 'vitest';
import { ValidationError, validateSvcConfig, normService } from './config.ts';
import { ringOf, type ServiceState } from './controller.ts';

const ok = { cgroup: '/ebpf-lab/clients', services: [{ vip: 'tcp://10.96.0.10:80', backends: ['10.0.0.11:8080', '10.0.0.12:8080'] }] };

describe('socket LB config', () => {
  it('normalises a good config (defaults, canonical addresses, backend port from the VIP)', () => {
    const c = validateSvcConfig({ ...ok, services: [...ok.services, { vip: 'udp://[fd96::0010]:53', backends: ['fd00::11'], algorithm: 'random' }] });
    expect(c.ringSize).toBe(251);
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
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: ['fd00::1'] }] }, /not IPv4/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: ['10.0.0.1', '10.0.0.1:80'] }] }, /duplicate backend/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: [{ address: '10.0.0.1', weight: 0 }] }] }, /weight 0/],
    [{ ...ok, services: [{ vip: 'tcp://10.96.0.10:80', backends: ['10.0.0.1'], algorithm: 'rr' }] }, /algorithm/],
    [{ ...ok, services: [ok.services[0], ok.services[0]] }, /duplicate service/],
    [{ ...ok, maxServices: 1, services: [ok.services[0], { vip: 'tcp://10.96.0.11:80', backends: ['10.0.0.1'] }] }, /maxServices/],
    [{ ...ok, maxBackends: 1 }, /maxBackends/],
    [{ ...ok, maxServices: 1 << 20, ringSize: 65537 }, /too large/],
  ])('rejects %j', (c, msg) => {
    expect(() => validateSvcConfig(c as never)).toThrow(msg);
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

  it('random lists live backends by weight; no live backend → empty ring (the data plane refuses the connect)', () => {
    expect(ringOf(svc('random', [1, 2, 0]), ids, 251)).toEqual([0, 1, 1]);
    expect(ringOf(svc('random', [1, 1], ['down', 'draining']), ids, 251)).toEqual([]);
  });

  it('a service parsed from CLI input is validated like a config entry', () => {
    expect(() => normService({ vip: 'tcp://10.96.0.10:80', backends: ['10.0.0.1', 'not-an-ip'] }, 'x')).toThrow(/malformed/);
  });
});
