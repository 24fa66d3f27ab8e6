// Undo log for one control-plane change. Every map write goes through here: the previous value
// (or its absence) is read first, and rollback() writes them back in reverse order, so a change
// the kernel refuses half way leaves the maps byte for byte as they were. A replaced Maglev ring
// stays alive through an fd held until commit (the outer map drops its own reference), so
// rollback can point the slot at the very same inner map again.
import fs from 'node:fs';
import { libbpf } from '../libbpf/index.ts';
import type { Dataplane } from './dataplane.ts';
import type { backend, vip_key, vip_meta } from '../../bpf/gen/xdp_lb.ts';

export class InjectedFault extends Error {
  constructor(n: number) {
    super(`injected fault: map write #${n + 1} refused (test hook)`);
    this.name = 'InjectedFault';
  }
}

export class Journal {
  private undo: (() => void)[] = [];
  private heldFds: number[] = [];
  /** map writes done so far */
  writes = 0;

  constructor(
    private dp: Dataplane,
    /** test hook: refuse the write after this many (simulates a kernel error mid-change) */
    private failAfter: number | null = null,
  ) {}

  private step(): void {
    if (this.failAfter !== null && this.writes >= this.failAfter) throw new InjectedFault(this.writes);
    this.writes++;
  }

  setBackend(id: number, v: backend): void {
    this.step();
    const old = this.dp.backends.get(id)!;
    this.dp.backends.set(id, v);
    this.undo.push(() => this.dp.backends.set(id, old));
    // an id given to another backend must not keep the previous owner's egress port (devmap):
    // its frames would go out of the wrong port. The new owner's port is set anew by whoever sets ports.
    if (!sameBytes(old.addr, v.addr) || old.port !== v.port || old.family !== v.family) {
      const port = this.dp.backendPorts.get(id);
      if (port !== undefined) {
        this.dp.setBackendPort(id, null);
        this.undo.push(() => this.dp.setBackendPort(id, port));
      }
    }
  }

  /** backend id → egress port (devmap), or no port (null) */
  setBackendPort(id: number, ifindex: number | null): void {
    this.step();
    const old = this.dp.backendPorts.get(id);
    this.dp.setBackendPort(id, ifindex);
    this.undo.push(() => this.dp.setBackendPort(id, old ?? null));
  }

  /**
   * A VIP's slot, then its hash entry (Dataplane.setVip's order): two writes, each its own step,
   * with the undo of both recorded before the first. Recorded after both, a refused hash write
   * left the slot with the new meta (established flows forwarded by it) under "every earlier
   * write was undone" (review, session 65).
   */
  setVip(k: vip_key, v: vip_meta): void {
    this.step();
    const old = this.dp.vips.get(k);
    const oldSlot = this.dp.vipSlots.get(v.vip_id);
    this.undo.push(() => {
      if (old) this.dp.setVip(k, old);
      else if (this.dp.vips.get(k) !== undefined) this.dp.deleteVip(k);
      if (oldSlot) this.dp.vipSlots.set(v.vip_id, oldSlot);
    });
    this.dp.vipSlots.set(v.vip_id, { key: k, meta: v });
    this.step();
    this.dp.vips.set(k, v);
  }

  /** the slot (while it holds this VIP), then the hash entry (Dataplane.deleteVip); as setVip */
  deleteVip(k: vip_key): void {
    this.step();
    const old = this.dp.vips.get(k);
    const oldSlot = old ? this.dp.vipSlots.get(old.vip_id) : undefined;
    if (!old) return;
    this.undo.push(() => {
      this.dp.vips.set(k, old);
      if (oldSlot) this.dp.vipSlots.set(old.vip_id, oldSlot);
    });
    this.dp.clearVipSlot(k, old);
    this.step();
    this.dp.vips.delete(k);
  }

  setVipAddr(addr: Uint8Array, n: number): void {
    this.step();
    const old = this.dp.vipAddrs.get(addr);
    if (n > 0) this.dp.vipAddrs.set(addr, n);
    else this.dp.vipAddrs.delete(addr);
    this.undo.push(() => (old !== undefined ? this.dp.vipAddrs.set(addr, old) : this.dp.vipAddrs.delete(addr)));
  }

  /** hold the inner map currently at slot (if any) and return how to put it back */
  private holdRing(slot: number): () => void {
    const id = this.dp.rings.innerId(slot);
    if (!id) return () => this.dp.clearRing(slot);
    const fd = libbpf.bpf_map_get_fd_by_id(id);
    if (fd < 0) throw new Error(`ring of slot ${slot} (map id ${id}) vanished`);
    this.heldFds.push(fd);
    return () => this.dp.rings.setInner(slot, fd);
  }

  swapRing(slot: number, table: Uint32Array): void {
    this.step();
    const back = this.holdRing(slot);
    this.dp.swapRing(slot, table);
    this.undo.push(back);
  }

  clearRing(slot: number): void {
    this.step();
    const back = this.holdRing(slot);
    this.dp.clearRing(slot);
    this.undo.push(back);
  }

  /** Restore every written entry, newest first. Returns the errors of undo steps that failed. */
  rollback(): Error[] {
    const errs: Error[] = [];
    for (const u of this.undo.reverse()) {
      try {
        u();
      } catch (e) {
        errs.push(e as Error);
      }
    }
    this.undo = [];
    this.release();
    return errs;
  }

  commit(): void {
    this.undo = [];
    this.release();
  }

  private release(): void {
    for (const fd of this.heldFds) fs.closeSync(fd);
    this.heldFds = [];
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
