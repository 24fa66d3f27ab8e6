// Cross-kernel tables of the matrix index, from fixtures (no root).
import { describe, expect, it } from 'vitest';
import { crossKernelHtml } from './matrix.ts';
import { sampleResults } from './fixture.ts';

describe('crossKernelHtml', () => {
  const a = sampleResults();
  const b = sampleResults();
  b.headline![0] = { ...b.headline![0]!, value: 210000, spread: { n: 3, min: 200000, max: 230000, mad: 5000 } };
  const sec = (kernel: string, outcome: string, ok: boolean) => ({ ...sampleResults(), scenario: 'security', headline: [], metrics: { attacks: [{ name: 'exec-shell', expect: 'blocked', outcome, ok, mechanism: kernel === '6.1' ? 'lsm' : 'tp-kill' }] } });
  const html = crossKernelHtml([
    { scenario: 'hello-openat', kernel: '6.1', results: a, link: 'hello-6.1/report.html' },
    { scenario: 'hello-openat', kernel: 'host', results: b },
    { scenario: 'security', kernel: '6.1', results: sec('6.1', 'blocked', true) },
    { scenario: 'security', kernel: 'host', results: sec('host', 'allowed', false) },
  ], ['6.1', 'host']);

  it('tabulates each headline figure with one column per kernel, spread and ratio', () => {
    expect(html).toContain('hello-openat: headline figures by kernel');
    expect(html).toContain('<th>6.1</th><th>host</th>');
    expect(html).toContain('<a href="hello-6.1/report.html">410,000 events/s</a>');
    expect(html).toContain('210,000 events/s');
    expect(html).toContain('200,000–230,000, n=3');
    expect(html).toContain('0.97× C consumer');
  });

  it('tabulates attack × kernel with the outcome and the mechanism per kernel', () => {
    expect(html).toContain('security: attack × kernel');
    expect(html).toMatch(/<th scope="row">exec-shell<\/th><td>blocked<\/td><td class="yes">blocked<br><span class="muted">lsm<\/span><\/td><td class="no">allowed<br><span class="muted">tp-kill<\/span><\/td>/);
  });

  it('is empty when no run declared anything', () => {
    expect(crossKernelHtml([{ scenario: 'x', kernel: 'host' }], ['host'])).toBe('');
  });
});
