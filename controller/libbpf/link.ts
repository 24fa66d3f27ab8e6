// A Link is anything attached: a libbpf bpf_link (destroyed by bpf_link__destroy) or a netlink
// attachment that must be undone explicitly (XDP in a chosen mode, tc filters).
import fs from 'node:fs';
import { B, NULL, type Ptr } from './ffi.ts';
import { BpfError, Errno, errnoName } from './errors.ts';
import { track, untrack } from './lifecycle.ts';

export class Link implements Disposable {
  private closed = false;
  constructor(
    readonly description: string,
    private ptr: Ptr,
    private detach?: () => void,
  ) {
    track(this);
  }

  /**
   * A link pinned by an earlier process (bpf_link__open), or null when nothing is pinned there.
   * Closing the returned Link drops only this process's reference (for bpf_link fds libbpf's
   * "detach" is close(fd)): the pin keeps it attached. Not disconnect(): that would leak the fd,
   * and with it a reference that outlives the unpinning.
   */
  static openPinned(path: string, description = path): Link | null {
    if (!fs.existsSync(path)) return null; // libbpf would print a warning for a plain miss
    const p = B.bpf_link__open(path);
    if (p === NULL || p === null || p === 0n) return null;
    return new Link(description, p);
  }

  /**
   * The kernel's view: link id, type (enum bpf_link_type), the id of the program it runs and, for
   * an XDP link, the interface it is on (ifindex 0: its device is gone).
   */
  info(): { id: number; type: number; progId: number; ifindex?: number } {
    if (this.ptr === NULL) throw new BpfError(`${this.description}: not a bpf_link`);
    // struct bpf_link_info starts with type, id, prog_id (u32 each); the rest is per link type
    const b = Buffer.alloc(128);
    const len = [b.length];
    const r = B.bpf_obj_get_info_by_fd(this.fd, b, len);
    if (r < 0) throw new BpfError(`link info of ${this.description}: ${errnoName(r)}`, -r);
    const type = b.readUInt32LE(0);
    // BPF_LINK_TYPE_XDP (6): the union after prog_id is 8-byte aligned, xdp.ifindex its first u32
    return { type, id: b.readUInt32LE(4), progId: b.readUInt32LE(8), ...(type === 6 ? { ifindex: b.readUInt32LE(16) } : {}) };
  }

  /** the link fd (-1 for netlink attachments) */
  get fd(): number {
    return this.ptr === NULL ? -1 : (B.bpf_link__fd(this.ptr));
  }

  /** pin to bpffs so the attachment outlives this process (e.g. an LB controller restart) */
  pin(path: string): void {
    if (this.ptr === NULL) throw new BpfError(`${this.description}: only bpf_link attachments can be pinned`);
    const r = B.bpf_link__pin(this.ptr, path);
    if (r < 0) throw new BpfError(`pinning ${this.description} at ${path}: ${errnoName(r)}`, -r);
  }

  unpin(): void {
    if (this.ptr !== NULL) B.bpf_link__unpin(this.ptr);
  }

  /**
   * Keep the kernel attachment when this object is closed: a pinned bpf_link, or a netlink
   * attachment left for a later process to take over (an LB restart replaces its XDP program with
   * XDP_FLAGS_REPLACE).
   */
  disconnect(): void {
    if (this.ptr !== NULL) B.bpf_link__disconnect(this.ptr);
    else this.detach = undefined;
  }

  /** atomically replace the attached program (BPF_LINK_UPDATE) */
  update(progPtr: Ptr): void {
    // libbpf dereferences the link: NULL (closed, or a netlink attachment) would crash the process
    if (this.ptr === NULL) throw new BpfError(`updating ${this.description}: ${this.closed ? 'the link is closed' : 'only bpf_link attachments can be updated'}`, Errno.EBADF);
    if (progPtr === NULL) throw new BpfError(`updating ${this.description}: no program given`, Errno.EINVAL);
    const r = B.bpf_link__update_program(this.ptr, progPtr);
    if (r < 0) throw new BpfError(`updating ${this.description}: ${errnoName(r)}`, -r);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** @internal the owning object forgets a link closed before it (BpfObject.adopt) */
  onClose?: () => void;

  close(): void {
    if (this.closed) return;
    this.closed = true;
    untrack(this);
    this.onClose?.();
    if (this.ptr !== NULL) B.bpf_link__destroy(this.ptr);
    this.ptr = NULL;
    this.detach?.();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
