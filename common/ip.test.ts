import { describe, expect, it } from 'vitest';
import { formatIp, fromLeading16, fromMapped16, ipTextProblem, parseCidr, parseIp, toLeading16, toMapped16 } from './ip.ts';

describe('common/ip: one address module for every control plane', () => {
  it('parses strictly and prints canonically (RFC 5952)', () => {
    expect(parseIp('10.0.0.1')).toEqual({ family: 4, bytes: Uint8Array.from([10, 0, 0, 1]) });
    for (const bad of ['10.0.0', '10.0.0.256', '010.0.0.1', 'fd00:::1', '', 'x', 42]) expect(parseIp(bad), String(bad)).toBeNull();
    expect(formatIp(parseIp('FD00:0:0:0:0:0:0:0001')!)).toBe('fd00::1');
    expect(formatIp(parseIp('2001:db8:0:0:1:0:0:1')!)).toBe('2001:db8::1:0:0:1'); // first longest zero run
    expect(formatIp(parseIp('2001:db8:0:1:1:1:1:1')!)).toBe('2001:db8:0:1:1:1:1:1'); // one zero group stays
  });

  it('the two 16-byte map layouts round-trip', () => {
    const v4 = parseIp('192.0.2.7')!;
    expect([...toLeading16(v4)]).toEqual([192, 0, 2, 7, ...Array(12).fill(0)]);
    expect([...toMapped16(v4)]).toEqual([...Array(10).fill(0), 0xff, 0xff, 192, 0, 2, 7]);
    expect(formatIp(fromLeading16(toLeading16(v4), 4))).toBe('192.0.2.7');
    expect(formatIp(fromMapped16(toMapped16(v4)))).toBe('192.0.2.7');
    const v6 = parseIp('2001:db8::9')!;
    expect(formatIp(fromLeading16(toLeading16(v6), 6))).toBe('2001:db8::9');
    expect(formatIp(fromMapped16(toMapped16(v6)))).toBe('2001:db8::9');
  });

  it('CIDRs: a bare address is the whole address; lengths are bounded by the family', () => {
    expect(parseCidr('10.0.0.0/8')?.bits).toBe(8);
    expect(parseCidr('10.0.0.1')?.bits).toBe(32);
    expect(parseCidr('::/0')?.bits).toBe(0);
    for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0.0/x', '10.0.0.0/8/1', 'nope/8']) expect(parseCidr(bad), bad).toBeNull();
  });

  // both parse, and the bytes lose what the text said: the zone, or that the address is IPv4
  it('ipTextProblem: a zone id, or IPv4 in IPv6 form, is named with what to write instead', () => {
    expect(formatIp(parseIp('fe80::1%eth0')!)).toBe('fe80::1'); // the zone is gone from the bytes
    expect(ipTextProblem('fe80::1%eth0')).toBe('"fe80::1%eth0" has a zone id (%eth0): an address here is its 16 bytes, with no interface, so the zone would be dropped; write fe80::1 without it, or a global address');
    expect(ipTextProblem('fe80::%eth0/64')).toMatch(/zone id \(%eth0\).*write fe80::\/64 without it/);
    // ipaddr.js reads the deprecated IPv4-compatible ::a.b.c.d as ::ffff:a.b.c.d
    expect([...parseIp('::10.0.0.1')!.bytes.subarray(10, 12)]).toEqual([0xff, 0xff]);
    expect(ipTextProblem('::ffff:10.0.0.1')).toBe('"::ffff:10.0.0.1" is an IPv4-mapped IPv6 address (::ffff:a.b.c.d, how an IPv6 socket names an IPv4 peer): its traffic is IPv4 and never matches an IPv6 key; write 10.0.0.1');
    expect(ipTextProblem('::FFFF:a00:1')).toMatch(/IPv4-mapped.*write 10\.0\.0\.1$/);
    expect(ipTextProblem('::10.0.0.1')).toMatch(/IPv4-compatible IPv6 address .*RFC 4291.*write 10\.0\.0\.1$/);
    expect(ipTextProblem('::ffff:10.0.0.0/120')).toMatch(/write 10\.0\.0\.0\/24$/);
    expect(ipTextProblem('::ffff:0:0/96')).toMatch(/write 0\.0\.0\.0\/0$/);
    for (const ok of ['10.0.0.1', '10.0.0.0/8', 'fd00::1', '::', '::/0', '::1', 'fe80::1', '64:ff9b::10.0.0.1', '::a00:1', 'nonsense', '0.0.0.0/0']) expect(ipTextProblem(ok), ok).toBeNull();
  });
});
