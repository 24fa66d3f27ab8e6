import { describe, expect, it } from 'vitest';
import { nodeInRam } from './guest.ts';

describe('node copied into a guest\'s RAM', () => {
  it('only where 9p fills the page cache a page per request (before 5.15) and the root is 9p', () => {
    expect(nodeInRam('5.10.0-32-amd64', '9p')).toBe(true);
    expect(nodeInRam('4.19.0-27-amd64', '9p')).toBe(true);
    expect(nodeInRam('5.15.0-1-amd64', '9p')).toBe(false);
    expect(nodeInRam('6.1.0-50-amd64', '9p')).toBe(false);
    expect(nodeInRam('7.2.13+deb14-amd64', '9p')).toBe(false);
    expect(nodeInRam('5.10.0-32-amd64', 'virtiofs')).toBe(false);
    expect(nodeInRam('not-a-release', '9p')).toBe(false);
  });
});
