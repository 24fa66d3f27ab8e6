// The receiver-side evidence of the crash check (pure): /proc/net/snmp's Udp NoPorts.
import { expect, it } from 'vitest';
import { parseUdpNoPorts } from './crash.ts';

it('reads Udp NoPorts from /proc/net/snmp, and refuses a file without it', () => {
  const snmp = [
    'Icmp: InMsgs InErrors',
    'Icmp: 3 0',
    'Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors',
    'Udp: 12 7 0 19 0 0 0 0 0',
    'UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors',
    'UdpLite: 0 0 0 0 0 0 0 0 0',
  ].join('\n');
  expect(parseUdpNoPorts(snmp)).toBe(7);
  expect(() => parseUdpNoPorts('Icmp: InMsgs\nIcmp: 3\n')).toThrow(/no Udp NoPorts/);
});
