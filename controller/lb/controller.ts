// The LB control plane: a model of VIPs and backends, validated operations on it, and the
// translation into the data plane's maps. Every operation validates and resolves everything it
// needs first and writes maps last, so a rejected request changes nothing. The maps themselves
// hold the whole model (addresses, weights, drain/down flags), so a restarted controller rebuilds
// it from the pins and only rewrites a ring when it differs from what it would compute.
import path from 'node:path';
import { ValidationError, addrBytes, formatAddr, formatMac, htons, parseMac, parseVip, vipString, PROTO_NUM, type Protocol, type VipSpec } from './addr.ts';
import { backendKey, checkIpipBackend, normBackend, normVip, tunnelSourceFor, validateConfig, type BackendConfig, type Forwarding, type LbConfig, type NormConfig, type VipConfig, type VipDefaults } from './config.ts';
import { BE_ACTIVE, BE_DOWN, BE_DRAINING, Dataplane, MAX_BACKENDS, MAX_VIPS } from './dataplane.ts';
import { HealthChecker } from './health.ts';
import { maglevTable } from './maglev.ts';
import { resolveNextHop, type NextHop } from './neighbor.ts';
import type { vip_key, vip_meta } from '../../bpf/gen/xdp_lb.ts';

const VIP_ACTIVE = 1;
const VIP_HEALTHCHECK = 2;
/** vip_meta.fwd (LB_FWD_*) */
const FWD_NUM: Record<Forwarding, number> = { dsr: 0, ipip: 1 };

export interface BackendState {
  id: number;
  address: string;
  port: number;
  weight: number;
  draining: boolean;
  down: boolean;
  mac: string;
  srcMac: string;
  ifindex: number;
}

export interface VipState extends VipSpec {
  id: string;
  slot: number;
  healthCheck: boolean;
  forwarding: Forwarding;
  /** ipip: the outer source address written into vip_meta (kept per VIP, so a restart keeps it) */
  tunnelSource?: string;
  generation: number;
  backends: Map<string, BackendState>;
  table: Uint32Array | null;
}

export type Log = (msg: string) => void;

export class LbController {
  readonly vips = new Map<string, VipState>();
  private nextBackendId = 0;
  private health: HealthChecker;
  /** serialises operations: each is validate → resolve → write, never interleaved */
  private queue: Promise<unknown> = Promise.resolve();
  readonly startedAs: 'fresh' | 'restored';
  attachResult: 'attached' | 'adopted' | 'none' = 'none';

  private constructor(
    readonly cfg: NormConfig,
    readonly dp: Dataplane,
    private log: Log,
  ) {
    this.startedAs = dp.restored ? 'restored' : 'fresh';
    this.health = new HealthChecker(cfg.health, (key, up) => void this.serial(() => this.onHealth(key, up)));
  }

  static pinDir(cfg: Pick<NormConfig, 'pinRoot' | 'instance'>): string {
    return path.join(cfg.pinRoot, cfg.instance);
  }

  /**
   * Start: load (reusing pins), rebuild the model from the maps when they were pinned, else seed
   * from the config; attach (or adopt the pinned link).
   */
  static async start(config: LbConfig, opts: { log?: Log; attach?: boolean } = {}): Promise<LbController> {
    const cfg = validateConfig(config);
    const log = opts.log ?? (() => {});
    const dp = await Dataplane.open({ pinDir: LbController.pinDir(cfg), conntrackEntries: cfg.conntrackEntries });
    const c = new LbController(cfg, dp, log);
    try {
      if (dp.restored) {
        c.restore();
        log(`restored ${c.vips.size} VIP(s), ${[...c.vips.values()].reduce((n, v) => n + v.backends.size, 0)} backend(s) from ${dp.pinDir}`);
      } else {
        await c.applyNow(cfg.vips.map((v) => ({ vip: v.id, backends: v.backends, healthCheck: v.healthCheck, forwarding: v.forwarding })));
      }
      if (opts.attach !== false) {
        c.attachResult = dp.attach(cfg.interface, cfg.xdpMode);
        log(`${c.attachResult === 'adopted' ? 'adopted the pinned XDP link on' : 'attached XDP to'} ${cfg.interface}`);
      }
    } catch (e) {
      c.health.stop();
      if (!dp.restored) dp.purge();
      else dp.close();
      throw e;
    }
    return c;
  }

  private serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => {});
    return p;
  }

  // ---- restore ----

  private restore(): void {
    const byVipId = new Map<number, VipState>();
    for (const [k, m] of this.dp.vips.entries()) {
      const meta = m as vip_meta;
      const spec: VipSpec = {
        protocol: k.proto === 6 ? 'tcp' : 'udp',
        address: formatAddr(k.addr, k.family),
        port: htons(k.port),
        family: k.family as 4 | 6,
      };
      const forwarding: Forwarding = meta.fwd === FWD_NUM.ipip ? 'ipip' : 'dsr';
      const v: VipState = {
        ...spec, id: vipString(spec), slot: meta.vip_id, healthCheck: (meta.flags & VIP_HEALTHCHECK) !== 0, forwarding,
        ...(forwarding === 'ipip' ? { tunnelSource: formatAddr(meta.tun_src, k.family) } : {}),
        generation: meta.generation, backends: new Map(), table: null,
      };
      this.vips.set(v.id, v);
      byVipId.set(meta.vip_id, v);
    }
    for (let id = 0; id < MAX_BACKENDS; id++) {
      const b = this.dp.backends.get(id);
      if (!b || !(b.flags & BE_ACTIVE)) continue;
      const v = byVipId.get(b.vip_id);
      if (!v) continue;
      const st: BackendState = {
        id, address: formatAddr(b.addr, b.family), port: b.port, weight: b.weight,
        draining: (b.flags & BE_DRAINING) !== 0, down: (b.flags & BE_DOWN) !== 0,
        mac: formatMac(b.mac), srcMac: formatMac(b.src_mac), ifindex: b.ifindex,
      };
      v.backends.set(backendKey(st), st);
      this.nextBackendId = Math.max(this.nextBackendId, id + 1) % MAX_BACKENDS;
    }
    // the computed ring must equal the kernel's; rewrite only a ring that differs
    for (const v of this.vips.values()) {
      const want = this.computeTable(v);
      const have = this.dp.readRing(v.slot);
      if (have && have.length === want.length && have.every((x, i) => x === want[i])) v.table = want;
      else this.writeRing(v, want);
      for (const b of v.backends.values()) if (v.healthCheck) this.health.watch({ key: hkey(v, b), address: b.address, port: b.port }, !b.down);
    }
  }

  // ---- model → maps ----

  private computeTable(v: VipState): Uint32Array {
    const serving = [...v.backends.values()].filter((b) => !b.draining && b.weight > 0);
    const up = serving.filter((b) => !b.down);
    // all down: fail open to every serving backend rather than black-holing the VIP
    const members = up.length ? up : serving;
    return maglevTable(members.map((b) => ({ key: backendKey(b), id: b.id, weight: b.weight })), this.cfg.ringSize);
  }

  private writeRing(v: VipState, table: Uint32Array): void {
    this.dp.swapRing(v.slot, table);
    v.table = table;
    v.generation++;
    this.writeVipMeta(v);
  }

  private refreshRing(v: VipState): boolean {
    const t = this.computeTable(v);
    if (v.table && v.table.length === t.length && v.table.every((x, i) => x === t[i])) return false;
    this.writeRing(v, t);
    return true;
  }

  private vipKey(v: VipSpec): vip_key {
    return { addr: addrBytes(v.address), port: htons(v.port), proto: PROTO_NUM[v.protocol as Protocol], family: v.family };
  }

  private writeVipMeta(v: VipState): void {
    this.dp.vips.set(this.vipKey(v), {
      vip_id: v.slot, ring_size: this.cfg.ringSize, flags: VIP_ACTIVE | (v.healthCheck ? VIP_HEALTHCHECK : 0), generation: v.generation,
      fwd: FWD_NUM[v.forwarding], tun_src: v.forwarding === 'ipip' && v.tunnelSource ? addrBytes(v.tunnelSource) : new Uint8Array(16),
    });
  }

  private writeBackend(v: VipState, b: BackendState, active = true): void {
    const flags = (active ? BE_ACTIVE : 0) | (b.draining ? BE_DRAINING : 0) | (b.down ? BE_DOWN : 0);
    this.dp.backends.set(b.id, {
      mac: parseMac(b.mac), src_mac: parseMac(b.srcMac), ifindex: b.ifindex, addr: addrBytes(b.address),
      port: b.port, family: b.address.includes(':') ? 6 : 4, flags, vip_id: v.slot, weight: b.weight,
    });
  }

  private allocBackendIds(n: number): number[] {
    const used = new Set<number>();
    for (const v of this.vips.values()) for (const b of v.backends.values()) used.add(b.id);
    const out: number[] = [];
    // round-robin from the last id so a freed id is reused as late as possible (stale conntrack)
    for (let i = 0; i < MAX_BACKENDS && out.length < n; i++) {
      const id = (this.nextBackendId + i) % MAX_BACKENDS;
      if (!used.has(id)) out.push(id);
    }
    if (out.length < n) throw new ValidationError(`backend table full (${MAX_BACKENDS})`, 409);
    this.nextBackendId = ((out.at(-1) ?? this.nextBackendId) + 1) % MAX_BACKENDS;
    return out;
  }

  /** defaults a new or re-applied VIP is validated against */
  private get vipDefaults(): VipDefaults {
    return { forwarding: this.cfg.forwarding, tunnelSource: this.cfg.tunnelSource };
  }

  private vip(id: string): VipState {
    const spec = parseVip(id);
    const v = this.vips.get(vipString(spec));
    if (!v) throw new ValidationError(`unknown VIP ${id}`, 404);
    return v;
  }

  private findBackend(v: VipState, addr: string): BackendState {
    const nb = normBackend(v, { address: addr }, 'backend');
    const b = v.backends.get(backendKey(nb));
    if (!b) throw new ValidationError(`VIP ${v.id} has no backend ${backendKey(nb)}`, 404);
    return b;
  }

  /** vip_addrs holds every address that carries a VIP (fragments to it are dropped, not passed) */
  private syncVipAddr(addr: string): void {
    const n = [...this.vips.values()].filter((v) => v.address === addr).length;
    if (n > 0) this.dp.vipAddrs.set(addrBytes(addr), n);
    else this.dp.vipAddrs.delete(addrBytes(addr));
  }

  // ---- operations (public ones are serialised) ----

  addVip(c: VipConfig): Promise<VipState> {
    return this.serial(() => this.addVipNow(c));
  }

  private async addVipNow(c: VipConfig): Promise<VipState> {
    const nv = normVip(c, 'vip', false, this.vipDefaults);
    if (this.vips.has(nv.id)) throw new ValidationError(`VIP ${nv.id} exists`, 409);
    const usedSlots = new Set([...this.vips.values()].map((v) => v.slot));
    let slot = -1;
    for (let i = 0; i < MAX_VIPS; i++) if (!usedSlots.has(i)) { slot = i; break; }
    if (slot < 0) throw new ValidationError(`VIP table full (${MAX_VIPS})`, 409);
    const hops = await Promise.all(nv.backends.map((b) => resolveNextHop(b.address, b.port, b.mac)));
    const ids = this.allocBackendIds(nv.backends.length);
    const tunnelSource = nv.forwarding === 'ipip' ? tunnelSourceFor(this.cfg.tunnelSource, nv.family) : undefined;
    const v: VipState = { ...nv, slot, healthCheck: nv.healthCheck, ...(tunnelSource ? { tunnelSource } : {}), generation: 0, backends: new Map(), table: null };
    nv.backends.forEach((b, i) => v.backends.set(backendKey(b), mkBackend(ids[i]!, b, hops[i]!)));
    // backends first, then the ring, then the VIP entry: the VIP becomes visible fully formed
    for (const b of v.backends.values()) this.writeBackend(v, b);
    this.dp.swapRing(v.slot, (v.table = this.computeTable(v)));
    v.generation = 1;
    this.writeVipMeta(v);
    this.vips.set(v.id, v);
    this.syncVipAddr(v.address);
    if (v.healthCheck) for (const b of v.backends.values()) this.health.watch({ key: hkey(v, b), address: b.address, port: b.port });
    this.log(`vip ${v.id} added with ${v.backends.size} backend(s)`);
    return v;
  }

  removeVip(id: string): Promise<void> {
    return this.serial(() => {
      const v = this.vip(id);
      this.dp.vips.delete(this.vipKey(v));
      this.vips.delete(v.id);
      this.syncVipAddr(v.address);
      this.dp.clearRing(v.slot);
      for (const b of v.backends.values()) {
        this.health.unwatch(hkey(v, b));
        this.writeBackend(v, b, false);
      }
      this.log(`vip ${v.id} removed`);
    });
  }

  addBackend(vipId: string, c: BackendConfig | string): Promise<BackendState> {
    return this.serial(async () => {
      const v = this.vip(vipId);
      const nb = normBackend(v, c, 'backend');
      if (v.forwarding === 'ipip') checkIpipBackend(v, nb, 'backend');
      const key = backendKey(nb);
      if (v.backends.has(key)) throw new ValidationError(`VIP ${v.id} already has backend ${key}`, 409);
      const hop = await resolveNextHop(nb.address, nb.port, nb.mac);
      const [id] = this.allocBackendIds(1);
      const b = mkBackend(id!, nb, hop);
      this.writeBackend(v, b);
      v.backends.set(key, b);
      this.refreshRing(v);
      if (v.healthCheck) this.health.watch({ key: hkey(v, b), address: b.address, port: b.port });
      this.log(`backend ${key} added to ${v.id} (id ${b.id}, weight ${b.weight}, mac ${b.mac})`);
      return b;
    });
  }

  removeBackend(vipId: string, addr: string): Promise<void> {
    return this.serial(() => {
      const v = this.vip(vipId);
      const b = this.findBackend(v, addr);
      const others = [...v.backends.values()].filter((x) => x !== b && !x.draining && x.weight > 0);
      if (others.length === 0) throw new ValidationError(`removing ${backendKey(b)} would leave ${v.id} with zero backends; remove the VIP instead`);
      v.backends.delete(backendKey(b));
      // the ring stops choosing it first; then its conntrack entries lose their target and re-hash
      this.refreshRing(v);
      this.writeBackend(v, b, false);
      this.health.unwatch(hkey(v, b));
      this.log(`backend ${backendKey(b)} removed from ${v.id}`);
    });
  }

  drainBackend(vipId: string, addr: string): Promise<BackendState> {
    return this.serial(() => {
      const v = this.vip(vipId);
      const b = this.findBackend(v, addr);
      const others = [...v.backends.values()].filter((x) => x !== b && !x.draining && x.weight > 0);
      if (others.length === 0) throw new ValidationError(`draining ${backendKey(b)} would leave ${v.id} with zero backends`);
      b.draining = true;
      this.writeBackend(v, b);
      this.refreshRing(v);
      this.log(`backend ${backendKey(b)} of ${v.id} draining`);
      return b;
    });
  }

  setWeight(vipId: string, addr: string, weight: number): Promise<BackendState> {
    return this.serial(() => {
      const v = this.vip(vipId);
      const b = this.findBackend(v, addr);
      if (!Number.isInteger(weight) || weight < 0 || weight > 1000) throw new ValidationError(`weight ${weight} must be an integer 0-1000`);
      const others = [...v.backends.values()].filter((x) => x !== b && !x.draining && x.weight > 0);
      if (weight === 0 && others.length === 0) throw new ValidationError(`weight 0 would leave ${v.id} with zero backends`);
      b.weight = weight;
      b.draining = false;
      this.writeBackend(v, b);
      this.refreshRing(v);
      return b;
    });
  }

  /** Make the data plane match a list of VIPs (the vips of a config file): diff, then apply. */
  apply(vips: VipConfig[]): Promise<{ added: string[]; removed: string[]; changed: string[] }> {
    return this.serial(() => this.applyNow(vips));
  }

  private async applyNow(list: VipConfig[]) {
    const want = list.map((v, i) => normVip(v, `vips[${i}]`, false, this.vipDefaults));
    const ids = new Set<string>();
    for (const v of want) {
      if (ids.has(v.id)) throw new ValidationError(`duplicate VIP ${v.id}`, 409);
      ids.add(v.id);
    }
    const out = { added: [] as string[], removed: [] as string[], changed: [] as string[] };
    // resolve every new backend before the first write, so a bad one changes nothing
    const hops = new Map<string, NextHop>();
    for (const v of want) {
      const cur = this.vips.get(v.id);
      for (const b of v.backends) if (!cur?.backends.has(backendKey(b))) hops.set(`${v.id} ${backendKey(b)}`, await resolveNextHop(b.address, b.port, b.mac));
    }
    const newVips = want.filter((v) => !this.vips.has(v.id)).length;
    if (this.vips.size + newVips - [...this.vips.keys()].filter((k) => !ids.has(k)).length > MAX_VIPS) throw new ValidationError(`more than ${MAX_VIPS} VIPs`, 409);
    for (const id of [...this.vips.keys()]) {
      if (ids.has(id)) continue;
      const v = this.vips.get(id)!;
      this.dp.vips.delete(this.vipKey(v));
      this.vips.delete(id);
      this.syncVipAddr(v.address);
      this.dp.clearRing(v.slot);
      for (const b of v.backends.values()) { this.health.unwatch(hkey(v, b)); this.writeBackend(v, b, false); }
      out.removed.push(id);
    }
    for (const w of want) {
      const cur = this.vips.get(w.id);
      if (!cur) {
        await this.addVipNow({ vip: w.id, backends: w.backends, healthCheck: w.healthCheck, forwarding: w.forwarding });
        out.added.push(w.id);
        continue;
      }
      let changed = false;
      if (cur.forwarding !== w.forwarding) {
        // the VIP entry carries the mode: one update switches every packet (flows keep their backend)
        cur.forwarding = w.forwarding;
        const ts = w.forwarding === 'ipip' ? tunnelSourceFor(this.cfg.tunnelSource, w.family) : undefined;
        if (ts) cur.tunnelSource = ts;
        else delete cur.tunnelSource;
        this.writeVipMeta(cur);
        changed = true;
      }
      const wantKeys = new Set(w.backends.map(backendKey));
      for (const b of w.backends) {
        const k = backendKey(b);
        const have = cur.backends.get(k);
        if (!have) {
          const [id] = this.allocBackendIds(1);
          const nb = mkBackend(id!, b, hops.get(`${w.id} ${k}`)!);
          this.writeBackend(cur, nb);
          cur.backends.set(k, nb);
          if (cur.healthCheck) this.health.watch({ key: hkey(cur, nb), address: nb.address, port: nb.port });
          changed = true;
        } else if (have.weight !== b.weight || have.draining) {
          have.weight = b.weight;
          have.draining = false;
          this.writeBackend(cur, have);
          changed = true;
        }
      }
      for (const [k, b] of [...cur.backends]) {
        if (wantKeys.has(k)) continue;
        cur.backends.delete(k);
        this.health.unwatch(hkey(cur, b));
        changed = true;
        this.refreshRing(cur);
        this.writeBackend(cur, b, false);
      }
      if (this.refreshRing(cur) || changed) out.changed.push(w.id);
    }
    return out;
  }

  private onHealth(key: string, up: boolean): void {
    for (const v of this.vips.values()) {
      for (const b of v.backends.values()) {
        if (hkey(v, b) !== key || b.down === !up) continue;
        b.down = !up;
        this.writeBackend(v, b);
        this.refreshRing(v);
        this.log(`backend ${backendKey(b)} of ${v.id} is ${up ? 'up' : 'DOWN'} (health check)`);
      }
    }
  }

  /** The model as JSON (admin API, CLI list). */
  state() {
    return {
      interface: this.cfg.interface,
      instance: this.cfg.instance,
      forwarding: this.cfg.forwarding,
      ringSize: this.cfg.ringSize,
      pinDir: this.dp.pinDir,
      startedAs: this.startedAs,
      attach: this.attachResult,
      vips: [...this.vips.values()].map((v) => {
        const counts = new Map<number, number>();
        for (const x of v.table ?? []) counts.set(x, (counts.get(x) ?? 0) + 1);
        return {
          vip: v.id, slot: v.slot, generation: v.generation, healthCheck: v.healthCheck, forwarding: v.forwarding,
          ...(v.tunnelSource ? { tunnelSource: v.tunnelSource } : {}),
          backends: [...v.backends.values()].map((b) => ({
            address: b.address, port: b.port, id: b.id, weight: b.weight, mac: b.mac,
            state: b.draining ? 'draining' : b.down ? 'down' : 'up',
            ringShare: (counts.get(b.id) ?? 0) / this.cfg.ringSize,
          })),
        };
      }),
    };
  }

  ring(vipId: string): { computed: number[]; dataplane: number[] | null } {
    const v = this.vip(vipId);
    const dp = this.dp.readRing(v.slot);
    return { computed: [...(v.table ?? [])], dataplane: dp ? [...dp] : null };
  }

  /** Stop the controller. Default: leave XDP, maps and flows in place (a restart adopts them). */
  stop(opts: { purge?: boolean } = {}): void {
    this.health.stop();
    if (opts.purge) this.dp.purge();
    else this.dp.close();
  }
}

function hkey(v: VipState, b: { address: string; port: number }): string {
  return `${v.id} ${backendKey(b)}`;
}

function mkBackend(id: number, b: { address: string; port: number; weight: number }, hop: NextHop): BackendState {
  return { id, address: b.address, port: b.port, weight: b.weight, draining: false, down: false, mac: hop.mac, srcMac: hop.srcMac, ifindex: hop.ifindex };
}
