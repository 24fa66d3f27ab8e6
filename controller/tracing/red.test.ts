// RED metrics (pure, no root): per-request numbers come out of prom-client's text format at scrape.
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { RedMetrics } from './red.ts';

const line = (text: string, re: RegExp) => {
  const m = text.split('\n').find((l) => re.test(l));
  return m === undefined ? undefined : Number(m.slice(m.lastIndexOf(' ') + 1));
};

describe('RedMetrics', () => {
  it('counts requests and errors per label set and fills the duration buckets (le is inclusive)', async () => {
    const reg = new Registry();
    const red = new RedMetrics(reg);
    for (let i = 0; i < 5; i++) red.record('front', 'server', 'GET', '/a/{id}', '200', false, 0.0001);
    red.record('front', 'server', 'GET', '/a/{id}', '500', true, 0.003);
    red.record('front', 'client', 'POST', '/a/{id}', '200', false, 3);
    const t = await reg.metrics();
    expect(line(t, /^ebpf_http_requests_total\{service="front",kind="server",method="GET",route="\/a\/\{id\}",status="200"\}/)).toBe(5);
    expect(line(t, /^ebpf_http_requests_total\{.*status="500"\}/)).toBe(1);
    expect(line(t, /^ebpf_http_errors_total\{.*status="500"\}/)).toBe(1);
    expect(line(t, /^ebpf_http_errors_total\{.*status="200"\}/)).toBeUndefined();
    // the server histogram adds up both statuses: 5 at exactly 100 µs (bucket le=0.0001), 1 at 3 ms
    const b = (le: string) => line(t, new RegExp(`^ebpf_http_duration_seconds_bucket\\{.*kind="server".*le="${le.replace('+', '\\+')}"\\}`));
    expect(b('0.0001')).toBe(5);
    expect(b('0.0025')).toBe(5);
    expect(b('0.005')).toBe(6);
    expect(b('+Inf')).toBe(6);
    expect(line(t, /^ebpf_http_duration_seconds_count\{.*kind="server"/)).toBe(6);
    expect(line(t, /^ebpf_http_duration_seconds_sum\{.*kind="server"/)).toBeCloseTo(0.0035, 9);
    // beyond the last bucket: only +Inf
    expect(line(t, /^ebpf_http_duration_seconds_bucket\{.*kind="client".*le="2.5"\}/)).toBe(0);
    expect(line(t, /^ebpf_http_duration_seconds_bucket\{.*kind="client".*le="\+Inf"\}/)).toBe(1);
    // a second scrape gives the same totals (collect rebuilds, it does not add again)
    expect(line(await reg.metrics(), /^ebpf_http_requests_total\{service="front",kind="server",method="GET",route="\/a\/\{id\}",status="200"\}/)).toBe(5);
  });

  // the bound used to clear every series: 10,000 scanner paths reset the real routes' counters
  it('is bounded: routes past a service\'s cap, and series past the total cap, count under route="_OTHER"; the others keep counting', async () => {
    const reg = new Registry();
    const red = new RedMetrics(reg, 100, 3);
    for (let k = 0; k < 2; k++) for (let i = 0; i < 6; i++) red.record('s', 'server', 'GET', `/r${i}`, '200', false, 0.001);
    red.record('t', 'server', 'GET', '/r5', '200', false, 0.001); // another service has routes of its own
    const t = await reg.metrics();
    const n = (route: string, svc = 's') => line(t, new RegExp(`^ebpf_http_requests_total\\{service="${svc}",kind="server",method="GET",route="${route.replace(/[/]/g, '\\/')}",status="200"\\}`));
    expect([n('/r0'), n('/r1'), n('/r2'), n('_OTHER'), n('/r5', 't')]).toEqual([2, 2, 2, 6, 1]);
    expect(t).not.toContain('route="/r3"');
    const small = new Registry();
    const few = new RedMetrics(small, 2, 100);
    for (let i = 0; i < 4; i++) few.record('s', 'server', 'GET', `/r${i}`, '200', false, 0.001);
    const u = await small.metrics();
    expect(u.match(/^ebpf_http_requests_total\{/gm)).toHaveLength(3); // /r0, /r1, _OTHER
    expect(u).toMatch(/route="_OTHER",status="200"\} 2$/m);
  });
});
