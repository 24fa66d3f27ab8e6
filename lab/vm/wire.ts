// The guest's "wire": two virtio-net NICs joined by a QEMU hub (no host tap, no host stack), so a
// scenario can run native XDP on a real NIC driver (virtio_net) with a generator on the other end
// of the cable — the NIC-like path next to veth (issue 14 §2). A frame sent out of one port arrives
// at the other; XDP_TX on one comes back to the other. QEMU adds the pair to a guest whose scenarios ask
// for it (Scenario.vm.wire; EBPF_LAB_VM_WIRE=0/1 overrides); the guest finds the ports by these MACs. This module is imported by
// scenarios (bundled into the guest), so it holds only constants and /sys reads.
import fs from 'node:fs';

export const WIRE_MACS = { gen: '52:54:00:e1:00:01', dut: '52:54:00:e1:00:02' } as const;

/** QEMU arguments for the pair (a hub with two ports is a cable) */
export function wireQemuArgs(): string[] {
  const out: string[] = [];
  for (const [i, mac] of [WIRE_MACS.gen, WIRE_MACS.dut].entries()) {
    out.push('-netdev', `hubport,id=w${i},hubid=7`, '-device', `virtio-net-pci,netdev=w${i},mac=${mac},romfile=`);
  }
  return out;
}

/**
 * Does a guest get the wire? Only where one of its scenarios asks for it (Scenario.vm.wire): its
 * two extra PCI NICs cost ~0.4 s of boot-to-ready under TCG (6.1, 4 interleaved boots each,
 * median 4.18 vs 3.67 s, reports/vm-boot-wire-ab-20261130). EBPF_LAB_VM_WIRE=0 / =1 overrides.
 */
export function wireEnabled(requested = false, env = process.env): boolean {
  if (env.EBPF_LAB_VM_WIRE === '0') return false;
  if (env.EBPF_LAB_VM_WIRE === '1') return true;
  return requested;
}

/** the wire's interfaces in this network namespace (by MAC), or null when this machine has none */
export function findWire(sysNet = '/sys/class/net'): { gen: string; dut: string } | null {
  const by: Record<string, string> = {};
  let names: string[] = [];
  try {
    names = fs.readdirSync(sysNet);
  } catch {
    return null;
  }
  for (const n of names) {
    try {
      by[fs.readFileSync(`${sysNet}/${n}/address`, 'utf8').trim().toLowerCase()] = n;
    } catch { /* raced with a removal */ }
  }
  const gen = by[WIRE_MACS.gen];
  const dut = by[WIRE_MACS.dut];
  return gen && dut ? { gen, dut } : null;
}
