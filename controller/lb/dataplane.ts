// The LB's kernel side through controller/libbpf: loads bpf/xdp_lb.bpf.o with its maps pinned
// (so a controller restart finds the same conntrack, rings and counters), attaches it with a
// pinned bpf_link (so traffic flows while no controller runs), swaps Maglev rings whole.
import fs from 'node:fs';
import path from 'node:path';
import { netnsName } from '../../common/host.ts';
import { BpfObject, BpfMap, Link, MapType, attachXdp, ifindexOf, libbpf, libc, mapInfo, makePinDir, mountBpffsFor, onBpffs, progMapIds, progsUsingMap, rawCodec, removePinDir, xdpAttachedId, type Program } from '../libbpf/index.ts';
import { ensureObject } from '../../bpf/build.ts';
import { ValidationError } from './addr.ts';
import { DEFAULT_TOO_BIG } from './config.ts';
import { LabError } from '../../common/errors.ts';
import { xdp_lb_be_flags, xdp_lb_limits, xdpLb, type XdpLb, type XdpLbShape, type backend, type ct_value, type flow_key, type lb_global, type lb_rate, type lb_stats, type vip_key, type vip_meta, type vip_slot } from '../../bpf/gen/xdp_lb.ts';

// constants from the enums in bpf/xdp_lb.h (read from the object's BTF into bpf/gen/xdp_lb.ts)
export const MAX_VIPS = xdp_lb_limits.LB_MAX_VIPS;
/** backends array size unless configured (Katran's reals table is 4096 too) */
export const DEFAULT_BACKENDS = xdp_lb_limits.LB_DEFAULT_BACKENDS;
export const DEFAULT_CONNTRACK = xdp_lb_limits.LB_CT_ENTRIES;

/**
 * The conntrack table's size as the kernel makes it: a per-CPU-LRU hash (BPF_F_NO_COMMON_LRU)
 * rounds max_entries up to a multiple of the possible CPUs, and a pin then reports that. Asked
 * for as such, so that a restart (libbpf compares the pin's size with the one asked) and
 * `lb apply` (the running size against the file's) agree on 6, 12, 24 … CPUs too.
 */
export function conntrackSize(requested: number): number {
  const n = Math.max(1, libbpf.libbpf_num_possible_cpus());
  return Math.ceil(requested / n) * n;
}
export const BE_ACTIVE = xdp_lb_be_flags.LB_BE_F_ACTIVE;
export const BE_DRAINING = xdp_lb_be_flags.LB_BE_F_DRAINING;
export const BE_DOWN = xdp_lb_be_flags.LB_BE_F_DOWN;
const BPF_F_INNER_MAP = 1 << 12;

/** maps whose contents must survive a controller restart */
const PINNED: readonly (keyof XdpLbShape['maps'])[] = ['vips', 'vip_slots', 'vip_addrs', 'rings', 'backends', 'conntrack', 'stats', 'global_stats'];
/** pinned by hand: the kernel adds BPF_F_RDONLY_PROG to a devmap's flags, so libbpf's pin-path
 * reuse finds a "parameter mismatch" with its own pin; reused by fd instead */
const PINNED_DEVMAP = 'backend_ports';

export interface DataplaneOptions {
  pinDir: string;
  conntrackEntries?: number;
  /** size of the backends array (ids 0..n-1), set before load; pinned maps keep theirs */
  backends?: number;
  /** load only, do not pin (packet-fixture tests) */
  noPin?: boolean;
  /**
   * IPIP too-big answers (ICMP frag-needed / packet-too-big) per second per CPU, in bursts of
   * tooBigBurst (defaults 1000 and 50, the kernel's icmp_msgs_per_sec/burst); 0: no limit
   */
  tooBigPerSec?: number;
  tooBigBurst?: number;
}

export class Dataplane implements Disposable {
  readonly vips: BpfMap<vip_key, vip_meta>;
  /** vip_meta by vip_id with its key: the established-flow fast path (write through setVip) */
  readonly vipSlots: BpfMap<number, vip_slot>;
  readonly vipAddrs: BpfMap<Uint8Array, number>;
  readonly rings: BpfMap<number, number>;
  readonly backends: BpfMap<number, backend>;
  /** backend id → its own egress port (devmap; empty unless set with setBackendPort) */
  readonly backendPorts: BpfMap<number, number>;
  readonly conntrack: BpfMap<flow_key, ct_value>;
  readonly stats: BpfMap<number, lb_stats>;
  readonly global: BpfMap<number, lb_global>;
  private readonly tooBigRate: BpfMap<number, lb_rate>;
  readonly prog: Program;
  /** true when the maps came from pins (a restart) */
  readonly restored: boolean;
  /** entries of the backends array: backend ids are 0..backendCapacity-1 */
  readonly backendCapacity: number;
  private link: Link | null = null;

  readonly obj: BpfObject;

  private constructor(readonly skel: XdpLb, readonly pinDir: string, restored: boolean) {
    this.obj = skel.obj;
    const m = skel.maps;
    this.vips = m.vips;
    this.vipSlots = m.vip_slots;
    this.vipAddrs = m.vip_addrs;
    this.rings = m.rings;
    this.backends = m.backends;
    this.backendPorts = m.backend_ports;
    this.conntrack = m.conntrack;
    this.stats = m.stats;
    this.global = m.global_stats;
    this.tooBigRate = m.too_big_rate;
    this.prog = skel.programs.xdp_lb;
    this.restored = restored;
    this.backendCapacity = this.backends.meta.maxEntries;
  }

  static async open(opts: DataplaneOptions): Promise<Dataplane> {
    // checked before anything is mounted, pinned or loaded
    const perSec = opts.tooBigPerSec ?? DEFAULT_TOO_BIG.perSec;
    const burst = opts.tooBigBurst ?? DEFAULT_TOO_BIG.burst;
    if (!Number.isInteger(perSec) || perSec < 0 || perSec > 1e9 || !Number.isInteger(burst) || burst < 1 || burst > 1e6) throw new LabError(`too-big answers: ${perSec}/s in bursts of ${burst} is not a rate limit`, 'tooBigPerSec 0-1e9 (0: no limit), tooBigBurst 1-1e6');
    const gap = perSec ? BigInt(Math.ceil(1e9 / perSec)) : 0n;
    if (!opts.noPin) {
      // none mounted at /sys/fs/bpf (a container, a chroot): mounted, as makePinDir does (not under
      // ip netns exec); assertBpffs names what is still wrong
      mountBpffsFor(opts.pinDir);
      assertBpffs(path.dirname(opts.pinDir));
    }
    const file = await ensureObject('xdp_lb');
    const skel = xdpLb.open(file);
    const obj = skel.obj;
    const restored = !opts.noPin && fs.existsSync(path.join(opts.pinDir, 'vips'));
    let backends = opts.backends ?? DEFAULT_BACKENDS;
    if (restored && fs.existsSync(path.join(opts.pinDir, 'backends'))) {
      // the pinned table's size wins (libbpf refuses to reuse a pin of another size; the pinned
      // maps are the model): a different backendTableSize needs `lb stop --purge` first
      const m = BpfMap.openPinned(path.join(opts.pinDir, 'backends'));
      backends = m.meta.maxEntries;
      m.close();
    }
    try {
      if (restored) {
        // a pin of another shape (made by another build: a counter added to global_stats) failed
        // libbpf's reuse as "parameter mismatch", a start error that named no fix
        for (const m of PINNED) {
          const p = path.join(opts.pinDir, m);
          if (!fs.existsSync(p)) continue;
          const pinned = BpfMap.openPinned(p);
          const [got, want] = [pinned.meta, obj.mapSpec(m)];
          pinned.close();
          const ct = conntrackSize(opts.conntrackEntries ?? DEFAULT_CONNTRACK);
          if (m === 'conntrack' && got.type === want.type && got.valueSize === want.valueSize && got.maxEntries !== ct) {
            throw new LabError(
              `the LB pinned under ${opts.pinDir} has a conntrack table of ${got.maxEntries} entries, and this start asks for ${ct} (conntrackEntries): a pinned table keeps its size; nothing was changed`,
              `start with conntrackEntries: ${got.maxEntries}, or stop that LB and remove its pins first (pnpm lab lb stop --purge --instance ${path.basename(opts.pinDir)}: its connections' backend choices go with them)`,
            );
          }
          if (got.type !== want.type || got.keySize !== want.keySize || got.valueSize !== want.valueSize) {
            throw new LabError(
              `the LB pinned under ${opts.pinDir} was started by another build of the lab: its map ${m} has ${got.keySize}-byte keys and ${got.valueSize}-byte values, this build's ${want.keySize} and ${want.valueSize}; nothing was changed`,
              `stop that LB and remove its pins (pnpm lab lb stop --purge --instance ${path.basename(opts.pinDir)}: its connections' backend choices and counters go with them), then start the daemon again`,
            );
          }
        }
      }
      if (!opts.noPin) {
        makePinDir(opts.pinDir);
        // libbpf reuses a compatible pinned map at this path, or creates and pins a new one
        for (const m of PINNED) obj.setPinPath(m, path.join(opts.pinDir, m));
      }
      skel.setRodata({ too_big_gap_ns: gap, too_big_burst_ns: gap * BigInt(burst) });
      const devmapPin = path.join(opts.pinDir, PINNED_DEVMAP);
      const reuse = !opts.noPin && fs.existsSync(devmapPin);
      obj.load({ maxEntries: { conntrack: conntrackSize(opts.conntrackEntries ?? DEFAULT_CONNTRACK), backends, backend_ports: backends, stats: MAX_VIPS + backends }, ...(reuse ? { reuseMaps: { [PINNED_DEVMAP]: devmapPin } } : {}) });
      if (!opts.noPin && !reuse) skel.maps.backend_ports.pin(devmapPin);
    } catch (e) {
      obj.close();
      throw e;
    }
    return new Dataplane(skel, opts.pinDir, restored);
  }

  get linkPin(): string {
    return path.join(this.pinDir, 'link');
  }

  /**
   * A restart whose config names another interface must not take over the old one's link (it
   * would report the new interface while still balancing on the old): refused, nothing changed.
   * LbController.start asks before it restores the model (which may rewrite rings the pinned link
   * forwards with), attach again before it updates the link.
   */
  checkPinnedLink(ifname: string): void {
    if (!fs.existsSync(this.linkPin)) return;
    const p = libbpf.bpf_link__open(this.linkPin);
    if (p === 0n || p === null) return;
    const link = new Link(`xdp_lb → ${ifname} (pinned)`, p);
    try {
      const on = link.info().ifindex;
      const want = ifindexOf('xdp', ifname);
      if (on !== 0 && on !== undefined && on !== want) {
        throw new ValidationError(
          `the pinned XDP link ${this.linkPin} is on interface index ${on}, not on ${ifname} (index ${want}): a restart cannot move the LB to another interface; nothing was changed`,
          409, [],
          `to move it, purge this instance (pnpm lab lb stop --purge --instance NAME: detaches XDP, drops conntrack) and start again; or start with the interface it runs on`,
        );
      }
    } finally {
      link.close(); // our reference only: the pin keeps it attached
    }
  }

  /**
   * Attach to ifname. A link pinned by a previous controller is kept and pointed at this
   * process's program (BPF_LINK_UPDATE, atomic), so packets never see an unattached interface.
   */
  attach(ifname: string, mode: 'auto' | 'native' | 'generic' = 'auto'): 'attached' | 'adopted' {
    if (fs.existsSync(this.linkPin)) {
      this.checkPinnedLink(ifname);
      const p = libbpf.bpf_link__open(this.linkPin);
      if (p !== 0n && p !== null) {
        const link = new Link(`xdp_lb → ${ifname} (pinned)`, p);
        if (link.info().ifindex === 0) {
          // its device was removed (and maybe made again): the link attaches nothing any more
          link.close();
          fs.rmSync(this.linkPin, { force: true });
        } else {
          this.link = this.obj.adopt(link);
          this.link.update(this.prog.ptr);
          return 'adopted';
        }
      } else fs.rmSync(this.linkPin, { force: true });
    }
    if (mode === 'auto') {
      this.link = attachXdp(this.prog, ifname);
      this.link.pin(this.linkPin);
    } else {
      // Netlink attachments cannot be pinned; they stay until detached, so a daemon killed outright
      // leaves its program attached. A restart swaps that program out atomically (XDP_FLAGS_REPLACE
      // naming it) when it is this instance's, i.e. uses the pinned maps this one reopened: the
      // netlink twin of the link update above. Anyone else's program is never replaced (EBUSY).
      const old = this.restored ? ownedNetlinkProg(ifname, mode, mapInfo(this.vips.fd).id) : -1;
      try {
        this.link = attachXdp(this.prog, ifname, { mode, ...(old >= 0 ? { replaceFd: old } : {}) });
      } finally {
        if (old >= 0) libc.close(old);
      }
      if (old >= 0) return 'adopted';
    }
    return 'attached';
  }

  /**
   * A VIP entry in both places the data plane reads it: the hash by key (new flows) and the
   * slot by vip_id (established flows). Slot first on add, so every path sees the VIP once the
   * hash does; on delete the slot goes first, so established flows fall to the slow path, which
   * then finds no VIP.
   */
  setVip(k: vip_key, m: vip_meta): void {
    this.vipSlots.set(m.vip_id, { key: k, meta: m });
    this.vips.set(k, m);
  }

  deleteVip(k: vip_key): void {
    const m = this.vips.get(k);
    if (m) this.clearVipSlot(k, m);
    this.vips.delete(k);
  }

  /** empty m's slot, only while it still holds this VIP (a moved slot belongs to another) */
  clearVipSlot(k: vip_key, m: vip_meta): void {
    const cur = this.vipSlots.get(m.vip_id);
    if (cur && sameKey(cur.key, k)) this.vipSlots.set(m.vip_id, emptySlot());
  }

  /**
   * Send backend `id`'s frames straight into the device `ifindex` (bpf_redirect_map), or clear
   * that (null). The ifindex is resolved in the calling thread's network namespace, so a port in
   * another namespace is set from inside it (withNetns).
   */
  setBackendPort(id: number, ifindex: number | null): void {
    if (ifindex === null) this.backendPorts.delete(id);
    else this.backendPorts.set(id, ifindex);
  }

  /** Build a new ring map, fill it, then swap it in with one pointer update. */
  swapRing(vipId: number, table: Uint32Array): void {
    const inner = BpfMap.create<number, number>({ type: MapType.ARRAY, name: 'lb_ring', keySize: 4, valueSize: 4, maxEntries: table.length, flags: BPF_F_INNER_MAP });
    try {
      const entries: [number, number][] = new Array(table.length);
      for (let i = 0; i < table.length; i++) entries[i] = [i, table[i]!];
      inner.updateBatch(entries);
      this.rings.setInner(vipId, inner);
    } finally {
      inner.close(); // the outer map holds its own reference
    }
  }

  /** The ring the data plane uses for vipId, read back from the kernel. */
  readRing(vipId: number): Uint32Array | null {
    const id = this.rings.innerId(vipId);
    if (!id) return null;
    const fd = libbpf.bpf_map_get_fd_by_id(id);
    if (fd < 0) return null;
    const info = mapInfo(fd);
    const m = new BpfMap<number, number>(info, fd, rawCodec(4), rawCodec(4), true);
    try {
      const out = new Uint32Array(info.maxEntries);
      for (const [k, v] of m.lookupBatch(4096) ?? []) out[k] = v as number;
      return out;
    } finally {
      m.close();
    }
  }

  clearRing(vipId: number): void {
    this.rings.delete(vipId);
  }

  sumStats(idx: number): lb_stats {
    const per = this.stats.getPerCpu(idx) ?? [];
    const out: lb_stats = { packets: 0n, bytes: 0n, new_flows: 0n, ct_hits: 0n, ct_misses: 0n };
    for (const s of per) for (const k of Object.keys(out) as (keyof lb_stats)[]) out[k] += s[k];
    return out;
  }

  /** zero a VIP slot's (idx < MAX_VIPS) or a backend's (MAX_VIPS + id) counters on every CPU */
  resetStats(idx: number): void {
    this.stats.set(idx, { packets: 0n, bytes: 0n, new_flows: 0n, ct_hits: 0n, ct_misses: 0n });
  }

  /** the per-CPU counters summed; too_big_limited: too-big answers not sent, over the rate (also in drop_encap) */
  globalStats(): Record<keyof lb_global | 'too_big_limited', bigint> {
    const per = this.global.getPerCpu(0) ?? [];
    const out = {} as Record<keyof lb_global | 'too_big_limited', bigint>;
    for (const s of per) for (const [k, v] of Object.entries(s)) out[k as keyof lb_global] = (out[k as keyof lb_global] ?? 0n) + (v as bigint);
    out.too_big_limited = (this.tooBigRate.getPerCpu(0) ?? []).reduce((n, r) => n + r.limited, 0n);
    return out;
  }

  /** bytes the kernel charges for this LB's maps (fdinfo memlock) */
  mapMemory(): number {
    let total = 0;
    for (const m of [this.vips, this.vipSlots, this.vipAddrs, this.backendPorts, this.rings, this.backends, this.conntrack, this.stats, this.global, this.tooBigRate]) {
      try {
        const t = fs.readFileSync(`/proc/self/fdinfo/${m.fd}`, 'utf8');
        total += Number(t.match(/memlock:\s+(\d+)/)?.[1] ?? 0);
      } catch { /* ignore */ }
    }
    for (let v = 0; v < MAX_VIPS; v++) {
      const id = this.rings.innerId(v);
      if (!id) continue;
      const fd = libbpf.bpf_map_get_fd_by_id(id);
      if (fd < 0) continue;
      try {
        total += Number(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/memlock:\s+(\d+)/)?.[1] ?? 0);
      } finally {
        fs.closeSync(fd);
      }
    }
    return total;
  }

  /** Leave the kernel state in place (restart); close our handles. */
  close(): void {
    this.link?.disconnect();
    this.obj.close();
  }

  /** Tear everything down: detach, unpin, remove the pin directory. */
  purge(): void {
    if (this.link) {
      this.link.unpin();
      this.link.close();
    }
    removePins(this.pinDir);
    this.obj.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * An fd of the program attached to ifname in this mode if it uses the map with this id (so it is
 * this instance's: a dead daemon's program over the pinned maps), else -1. The caller closes it.
 */
function ownedNetlinkProg(ifname: string, mode: 'native' | 'generic', mapId: number): number {
  const id = xdpAttachedId(ifname, mode);
  if (!id) return -1;
  const fd = libbpf.bpf_prog_get_fd_by_id(id);
  if (fd < 0) return -1;
  try {
    if (progMapIds(fd).includes(mapId)) return fd;
  } catch { /* gone meanwhile: not ours to replace */ }
  libc.close(fd);
  return -1;
}

/**
 * What a daemon that died left pinned under pinDir, removed without it (`lb stop --purge` with no
 * daemon): the link pin, whose removal drops the last reference and so detaches the XDP program,
 * and the maps. Without a link pin (xdpMode native/generic attach by netlink, which cannot be
 * pinned) a program still using the pinned maps is attached somewhere only its namespace can
 * detach: then nothing is removed and `attachedBy` names it (a restarted daemon takes it over and
 * its stop --purge detaches it). Files this module does not pin are left, and with them the directory.
 */
export function purgePinned(pinDir: string): { link: boolean; maps: number; attachedBy?: number[] } {
  // only pins are removed: a --pin-root or --instance off the bpffs named ordinary files, which a
  // purge deleted by the same names, reporting a detach that never happened
  if (!onBpffs(pinDir)) throw new LabError(`${pinDir} is not on a BPF file system: nothing there is an LB pin; nothing was removed`, 'give the pinRoot of the daemon\'s config (a directory under /sys/fs/bpf)');
  const link = fs.existsSync(path.join(pinDir, 'link'));
  if (!link && fs.existsSync(path.join(pinDir, 'vips'))) {
    const vips = BpfMap.openPinned(path.join(pinDir, 'vips'));
    let users: number[];
    try {
      users = progsUsingMap(mapInfo(vips.fd).id);
    } finally {
      vips.close();
    }
    if (users.length) return { link, maps: 0, attachedBy: users };
  }
  return { link, maps: removePins(pinDir) };
}

/** Remove the pins this module makes under pinDir (the link, the maps) and the directory if that empties it: the count of map pins removed. */
function removePins(pinDir: string): number {
  fs.rmSync(path.join(pinDir, 'link'), { force: true });
  let maps = 0;
  for (const m of [...PINNED, PINNED_DEVMAP]) {
    if (!fs.existsSync(path.join(pinDir, m))) continue;
    fs.rmSync(path.join(pinDir, m), { force: true });
    maps++;
  }
  removePinDir(pinDir);
  return maps;
}

const sameKey = (a: vip_key, b: vip_key) =>
  a.port === b.port && a.proto === b.proto && a.family === b.family && Buffer.from(a.addr).equals(Buffer.from(b.addr));

function emptySlot(): vip_slot {
  return { key: { addr: new Uint8Array(16), port: 0, proto: 0, family: 0 }, meta: { vip_id: 0, ring_size: 0, flags: 0, generation: 0, fwd: 0, tun_src: new Uint8Array(16) } };
}

/** The pin root must be on the host's bpffs, or pins vanish with this process's mount namespace. */
export function assertBpffs(dir: string): void {
  let best = { mnt: '', type: '' };
  for (const l of fs.readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mnt, type] = l.split(' ');
    if (!mnt || !type) continue;
    const p = path.resolve(dir);
    if ((p === mnt || p.startsWith(mnt.endsWith('/') ? mnt : `${mnt}/`)) && mnt.length >= best.mnt.length) best = { mnt, type };
  }
  if (best.type !== 'bpf') {
    // the usual cause: `ip netns exec` mounts a fresh /sys for the namespace, without the host's
    // bpffs; nsenter --net keeps the mounts. Elsewhere the bpffs is just not mounted (or pinRoot
    // points off it), and that is the fix to name.
    const underSys = path.resolve(dir).startsWith('/sys/');
    const ns = netnsName();
    const fix = underSys && best.mnt === '/sys' && ns !== undefined
      ? `start the daemon with "nsenter --net=/run/netns/${ns} -- pnpm lab lb daemon --config FILE" instead of "ip netns exec" (which remounts /sys and hides the host's bpffs); nothing was changed`
      : underSys
        ? 'mount the bpffs (mount -t bpf bpf /sys/fs/bpf), then start the daemon again; nothing was changed'
        : `set pinRoot in the config to a directory on a bpffs (e.g. the default /sys/fs/bpf/ebpf-lab); nothing was changed`;
    throw new ValidationError(`${dir} is not on a bpffs (it is on ${best.type || 'nothing'} mounted at ${best.mnt || '?'}): pinned maps would not outlive the controller`, 400, [], fix);
  }
}

