// A Link is anything attached: a libbpf bpf_link (destroyed by bpf_link__destroy) or a netlink
// attachment that must be undone explicitly (XDP in a chosen mode, tc filters).
import { B, NULL, type Ptr } from './ffi.ts';
import { BpfError, errnoName } from './errors.ts';
import { track, untrack } from './lifecycle.ts';

export class Link implements Disposable {
  private closed = false;
  constructor(
    readonly description: string,
    private ptr: Ptr,
    private readonly detach?: () => void,
  ) {
    track(this);
  }

  /** the link fd (-1 for netlink attachments) */
  get fd(): number {
    return this.ptr === NULL ? -1 : (B.bpf_link__fd(this.ptr) as number);
  }

  /** pin to bpffs so the attachment outlives this process (e.g. an LB controller restart) */
  pin(path: string): void {
    if (this.ptr === NULL) throw new BpfError(`${this.description}: only bpf_link attachments can be pinned`);
    const r = B.bpf_link__pin(this.ptr, path) as number;
    if (r < 0) throw new BpfError(`pinning ${this.description} at ${path}: ${errnoName(r)}`, -r);
  }

  unpin(): void {
    if (this.ptr !== NULL) B.bpf_link__unpin(this.ptr);
  }

  /** keep the kernel attachment when this object is closed (pinned links) */
  disconnect(): void {
    if (this.ptr !== NULL) B.bpf_link__disconnect(this.ptr);
  }

  /** atomically replace the attached program (BPF_LINK_UPDATE) */
  update(progPtr: Ptr): void {
    const r = B.bpf_link__update_program(this.ptr, progPtr) as number;
    if (r < 0) throw new BpfError(`updating ${this.description}: ${errnoName(r)}`, -r);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    untrack(this);
    if (this.ptr !== NULL) B.bpf_link__destroy(this.ptr);
    this.ptr = NULL;
    this.detach?.();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
