import { describe, expect, it } from 'vitest';
import { releaseAtLeast } from './kernel.ts';

describe('releaseAtLeast (which kernels run tracepoint programs preemptibly)', () => {
  it('compares major.minor of a uname -r release', () => {
    expect(releaseAtLeast('7.2.13+deb14-amd64', [7, 0])).toBe(true);
    expect(releaseAtLeast('7.0.0', [7, 0])).toBe(true);
    expect(releaseAtLeast('6.18.44-fc-v1045', [7, 0])).toBe(false);
    expect(releaseAtLeast('6.12.117+deb13-amd64', [6, 3])).toBe(true);
    expect(releaseAtLeast('6.1.0-50-amd64', [6, 3])).toBe(false);
    expect(releaseAtLeast('10.1', [7, 0])).toBe(true);
  });

  it('counts an unreadable release as new enough (the standby is the safe side)', () => {
    expect(releaseAtLeast('custom', [7, 0])).toBe(true);
  });
});
