import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WIRE_MACS, findWire, wireEnabled, wireQemuArgs } from './wire.ts';

const dirs: string[] = [];
function fakeSys(ifs: Record<string, string>): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'wire-'));
  dirs.push(d);
  for (const [n, mac] of Object.entries(ifs)) {
    fs.mkdirSync(path.join(d, n));
    fs.writeFileSync(path.join(d, n, 'address'), `${mac}\n`);
  }
  return d;
}
afterEach(() => { for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true }); });

describe('the virtio-net wire', () => {
  it('finds both ports by MAC, whatever the guest named them', () => {
    const d = fakeSys({ lo: '00:00:00:00:00:00', eth0: '52:54:00:12:34:56', eth1: WIRE_MACS.gen.toUpperCase(), ens5: WIRE_MACS.dut });
    expect(findWire(d)).toEqual({ gen: 'eth1', dut: 'ens5' });
  });
  it('is absent when one port is missing or there is no sysfs', () => {
    expect(findWire(fakeSys({ eth1: WIRE_MACS.gen }))).toBeNull();
    expect(findWire('/nonexistent/sys/class/net')).toBeNull();
  });
  it('joins the two ports on one hub, with the MACs the guest looks for', () => {
    const a = wireQemuArgs().join(' ');
    expect(a.match(/hubport,id=w\d,hubid=(\d+)/g)).toHaveLength(2);
    expect(new Set([...a.matchAll(/hubid=(\d+)/g)].map((m) => m[1])).size).toBe(1);
    expect(a).toContain(`mac=${WIRE_MACS.gen}`);
    expect(a).toContain(`mac=${WIRE_MACS.dut}`);
  });
  it('is on where a scenario asks for it, EBPF_LAB_VM_WIRE=0/1 overriding', () => {
    expect(wireEnabled(false, {})).toBe(false);
    expect(wireEnabled(true, {})).toBe(true);
    expect(wireEnabled(true, { EBPF_LAB_VM_WIRE: '0' })).toBe(false);
    expect(wireEnabled(false, { EBPF_LAB_VM_WIRE: '1' })).toBe(true);
  });
});
