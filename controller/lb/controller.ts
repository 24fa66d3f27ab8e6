// The LB control plane: a model of VIPs and backends, validated operations on it, and the
// translation into the data plane's maps. Every operation runs in four steps:
//   1. plan: copy the model and change the copy; validation and capacity (VIP slots, backend ids)
//      are checked here, so a rejected request returns before any kernel call;
//   2. resolve: route + neighbour of the new backends (netlink, batched);
//   3. rings: recompute the Maglev table of every VIP whose members changed;
//   4. commit: write the difference between the old and the new model to the maps through an undo
//      journal; if the kernel refuses a write, every earlier write is undone. The model is swapped
//      only after the last write, so /state shows the old model during a change and after a failure.
// The maps hold the whole model (addresses, weights, drain/down flags), so a restarted controller
// rebuilds it from the pins and only rewrites a ring that differs from what it would compute.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { ValidationError, addrBytes, formatAddr, formatMac, heldAddr, htons, parseHostPort, parseMac, parseVip, vipString, PROTO_NUM, type Protocol, type VipSpec } from './addr.ts';
import { backendConfigOf, backendKey, checkIpipBackend, normBackend, sameHost, normVip, startSettingsDiff, tooManyForRing, tunnelSourceFor, validateConfig, type BackendConfig, type Forwarding, type LbConfig, type NormBackend, type NormConfig, type StartSettings, type VipConfig, type VipDefaults } from './config.ts';
import { BE_ACTIVE, BE_DOWN, BE_DRAINING, Dataplane, MAX_VIPS, conntrackSize } from './dataplane.ts';
import { netnsName } from '../../common/host.ts';
import { HealthChecker } from './health.ts';
import { Journal } from './journal.ts';
import { maglevTable } from './maglev.ts';
import { resolveNextHops } from './neighbor.ts';
import { ifindexOf } from '../libbpf/attach/internal.ts';
import { mapInfo } from '../libbpf/index.ts';
import { writeFileAtomic } from '../../common/state-file.ts';
import { xdp_lb_fwd, xdp_lb_vip_flags, type backend, type vip_key, type vip_meta } from '../../bpf/gen/xdp_lb.ts';

/** beside the admin sockets (server.ts SOCKET_DIR) */
const INTENT_DIR = '/run/ebpf-lab';

const VIP_ACTIVE = xdp_lb_vip_flags.LB_VIP_F_ACTIVE;
const VIP_HEALTHCHECK = xdp_lb_vip_flags.LB_VIP_F_HEALTHCHECK;
/** vip_meta.fwd (LB_FWD_*) */
const FWD_NUM: Record<Forwarding, number> = { dsr: xdp_lb_fwd.LB_FWD_DSR, ipip: xdp_lb_fwd.LB_FWD_IPIP };

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
  /** config's egress interface name (unknown after a restart: the kernel keeps only its index) */
  egress?: string;
  /** backend_ports entry this controller owns: 0 = none (XDP_TX / redirect) */
  egressIfindex: number;
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
  /** the ring in the kernel; replaced, never mutated */
  table: Uint32Array | null;
}

export type Log = (msg: string) => void;

/** a change being planned: a copy of the model plus what the commit still has to fill in */
interface Draft {
  vips: Map<string, VipState>;
  nextBackendId: number;
  /** backends added by this change: their next hop is resolved before the commit */
  fresh: { b: BackendState; mac?: string }[];
}

export class LbController {
  vips = new Map<string, VipState>();
  private nextBackendId = 0;
  /**
   * ids that conntrack entries name but no backend holds, found at a restart: allocIds takes them
   * last. The running daemon's round robin keeps a freed id unused until every other has been
   * handed out; a restart lost that position (it resumed after the highest active id, so the id
   * of a just-removed last backend was the next one given: its idle flows went to the new host).
   */
  private lingering = new Set<number>();
  /** the VIP list an apply is making the LB match (applyNow sets it for its change) */
  private intent: VipConfig[] | null = null;

  /**
   * A change across several VIPs is several map writes per VIP, and a daemon killed between two
   * VIPs' writes left some changed and some not: each VIP whole, the apply half (restore() makes
   * every VIP consistent, not the set). The apply's list is written here before the first write
   * and removed once the change is committed or rolled back; a start that finds it applies it
   * again (review, session 65). Beside the admin socket, named by the pin dir, holding the pins'
   * map id (a start over other pins, or ones made again since, drops it).
   */
  static intentPath(pinDir: string): string {
    // by the pin dir (instances of one name under two pin roots are two LBs)
    const h = createHash('sha256').update(path.resolve(pinDir)).digest('hex').slice(0, 12);
    return path.join(INTENT_DIR, `lb-${path.basename(pinDir)}-${h}.intent.json`);
  }

  /** the pins' identity: a record of other pins of the same path (purged and made again) is not theirs */
  private pinsId(): number {
    return mapInfo(this.dp.vips.fd).id;
  }
  private health: HealthChecker;
  /** serialises writes: plan → resolve → commit, never interleaved; reads do not wait */
  private queue: Promise<unknown> = Promise.resolve();
  readonly startedAs: 'fresh' | 'restored';
  attachResult: 'attached' | 'adopted' | 'none' = 'none';
  /** test hooks: refuse the Nth map write of the next change (simulated kernel failure) */
  readonly testHooks: { failAfterWrites: number | null } = { failAfterWrites: null };
  /** map writes of the last committed change (tests size their fault sweeps with it) */
  lastWrites = 0;

  private constructor(
    readonly cfg: NormConfig,
    readonly dp: Dataplane,
    private log: Log,
  ) {
    this.startedAs = dp.restored ? 'restored' : 'fresh';
    // a health change that fails to commit is reported again at the probe's next check: the
    // checker had recorded it as told, and a dead backend stayed in the ring for good (review,
    // session 56)
    this.health = new HealthChecker(cfg.health, (key, up) => void this.serial(() => this.onHealth(key, up)).catch((e) => {
      this.log(`health update failed (retried at the next check): ${(e as Error).message}`);
      this.health.forgetReport(key);
    }));
  }

  static pinDir(cfg: Pick<NormConfig, 'pinRoot' | 'instance'>): string {
    return path.join(cfg.pinRoot, cfg.instance);
  }

  get backendCapacity(): number {
    return this.dp.backendCapacity;
  }

  /**
   * Start: load (reusing pins), rebuild the model from the maps when they were pinned, else seed
   * from the config; attach (or adopt the pinned link).
   */
  static async start(config: LbConfig, opts: { log?: Log; attach?: boolean; pinsUnfinished?: boolean } = {}): Promise<LbController> {
    const cfg = validateConfig(config);
    const log = opts.log ?? (() => {});
    const dp = await Dataplane.open({ pinDir: LbController.pinDir(cfg), conntrackEntries: cfg.conntrackEntries, backends: cfg.backendTableSize, tooBigPerSec: cfg.icmpTooBig.perSec, tooBigBurst: cfg.icmpTooBig.burst });
    const c = new LbController(cfg, dp, log);
    try {
      // before restore(), which may rewrite the rings the pinned link forwards with
      if (dp.restored && opts.attach !== false) dp.checkPinnedLink(cfg.interface);
      if (dp.restored) {
        if (dp.backendCapacity !== cfg.backendTableSize) log(`pinned backend table has ${dp.backendCapacity} entries (config says ${cfg.backendTableSize}): keeping the pinned size; "lb stop --purge" and restart to change it`);
        c.restore();
        const held = `${c.vips.size} VIP(s), ${[...c.vips.values()].reduce((n, v) => n + v.backends.size, 0)} backend(s)`;
        if (opts.pinsUnfinished) {
          // pins of a fresh start killed before its VIPs were all written (a subset of its config):
          // the pins are not the instance's state, this config is. Applied as a change, so what
          // the partial pins already forward keeps forwarding.
          // in the queue: restore() started the health checks, and a verdict's change between
          // this apply's writes would interleave with them
          const r = await c.serial(() => c.applyNow(cfg.vips.map((v) => ({ vip: v.id, backends: v.backends.map(backendConfigOf), healthCheck: v.healthCheck, forwarding: v.forwarding }))));
          log(`the pins under ${dp.pinDir} are a start's that was cut short (they held ${held}): applied this config to them (${r.added.length} VIP(s) added, ${r.changed.length} changed, ${r.removed.length} removed)`);
          // that apply was the config's: an apply record it left is done with
          fs.rmSync(LbController.intentPath(dp.pinDir), { force: true });
        } else {
          log(`restored ${held} from ${dp.pinDir}`);
          await c.serial(() => c.replayIntent());
        }
      } else {
        // new pins: a record of ones that were here before is not theirs
        fs.rmSync(LbController.intentPath(dp.pinDir), { force: true });
        await c.applyNow(cfg.vips.map((v) => ({ vip: v.id, backends: v.backends.map(backendConfigOf), healthCheck: v.healthCheck, forwarding: v.forwarding })));
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

  /** an apply across VIPs that a kill cut short (intentPath): applied again, whole */
  private async replayIntent(): Promise<void> {
    const file = LbController.intentPath(this.dp.pinDir);
    let rec: { pinDir?: unknown; pinsId?: unknown; pid?: unknown; vips?: unknown };
    try {
      rec = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.log(`${file} is not an apply's record (${(e as Error).message}): removed; check the VIPs (pnpm lab lb vip list) and apply the config again if a change was cut short`);
        fs.rmSync(file, { force: true });
      }
      return;
    }
    // of other pins (these were purged and made again since): not this LB's to finish
    if (rec.pinDir !== this.dp.pinDir || rec.pinsId !== this.pinsId() || !Array.isArray(rec.vips)) {
      fs.rmSync(file, { force: true });
      return;
    }
    const what = `an apply across VIPs was cut short (pid ${String(rec.pid)} stopped while writing it)`;
    try {
      const r = await this.applyNow(rec.vips as VipConfig[]);
      this.log(`${what}: applied it again (${r.added.length} VIP(s) added, ${r.changed.length} changed, ${r.removed.length} removed)`);
    } catch (e) {
      // not a reason to refuse the start (the LB forwards from its pins either way): said
      this.log(`${what}, and applying it again failed (${(e as Error).message.split('\n')[0]}): each VIP is whole, the set is part old, part new; apply the config again (pnpm lab lb apply FILE)`);
    } finally {
      fs.rmSync(file, { force: true });
    }
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
    // What a change killed part-way leaves (a SIGKILL between its writes; commit orders them so
    // the data plane never sees half a VIP, but the pins can hold half a change): active backends
    // of a VIP that is gone, rings of empty slots, address counts of no VIP. Left as they were,
    // a later VIP on that slot took the orphaned backends back in at the next restart (review,
    // session 56). Cleared here, before the model is built from the rest.
    const orphans: number[] = [];
    const active = new Set<number>();
    let lastUsed = -1;
    for (const [id, bv] of this.dp.backends.entries()) {
      const b = bv as backend;
      // a removed backend keeps its address (inactive): round robin resumes after the last id used
      if (b.family !== 0) lastUsed = Math.max(lastUsed, id);
      if (!(b.flags & BE_ACTIVE)) continue;
      const v = byVipId.get(b.vip_id);
      if (!v) {
        this.dp.backends.set(id, { ...b, flags: 0 });
        this.dp.setBackendPort(id, null);
        orphans.push(id);
        continue;
      }
      const st: BackendState = {
        id, address: formatAddr(b.addr, b.family), port: b.port, weight: b.weight,
        draining: (b.flags & BE_DRAINING) !== 0, down: (b.flags & BE_DOWN) !== 0,
        mac: formatMac(b.mac), srcMac: formatMac(b.src_mac), ifindex: b.ifindex, egressIfindex: this.dp.backendPorts.get(id) ?? 0,
      };
      v.backends.set(backendKey(st), st);
      active.add(id);
    }
    this.nextBackendId = (lastUsed + 1) % this.backendCapacity;
    // the value's first u32 (struct ct_value.backend_id), read raw: nothing per entry is kept
    // (a full table is up to 2^26 entries)
    const idAt = this.dp.obj.btf.layout('ct_value').backend_id!.offset;
    this.dp.conntrack.scanValues((dv, off) => {
      const id = dv.getUint32(off + idAt, true);
      if (!active.has(id)) this.lingering.add(id);
    });
    const slots = new Set([...this.vips.values()].map((v) => v.slot));
    const emptyRings: number[] = [];
    for (let slot = 0; slot < MAX_VIPS; slot++) if (!slots.has(slot) && this.dp.rings.innerId(slot)) (this.dp.clearRing(slot), emptyRings.push(slot));
    const addrs = addrCounts(this.vips);
    let addrFixes = 0;
    const seen = new Set<string>();
    for (const [a, n] of this.dp.vipAddrs.entries()) {
      seen.add(hex(a));
      const want = addrs.get(hex(a))?.n ?? 0;
      if (want !== n) {
        if (want) this.dp.vipAddrs.set(a, want);
        else this.dp.vipAddrs.delete(a);
        addrFixes++;
      }
    }
    for (const [h, e] of addrs) if (!seen.has(h)) (this.dp.vipAddrs.set(e.bytes, e.n), addrFixes++);
    if (orphans.length || emptyRings.length || addrFixes) this.log(`the pins held what a change cut short left: ${orphans.length} backend(s) of no VIP deactivated, ${emptyRings.length} ring(s) of no VIP cleared, ${addrFixes} VIP address count(s) corrected`);
    // the computed ring must equal the kernel's; rewrite only a ring that differs
    for (const v of this.vips.values()) {
      const want = this.computeTable(v);
      const have = this.dp.readRing(v.slot);
      if (have && sameTable(have, want)) v.table = want;
      else {
        this.dp.swapRing(v.slot, want);
        v.table = want;
        v.generation++;
      }
      // the VIP's slot too: pins from before the fast path have none
      this.dp.setVip(this.vipKey(v), this.vipMeta(v));
      for (const b of v.backends.values()) if (v.healthCheck) this.health.watch({ key: hkey(v, b), address: b.address, port: b.port }, !b.down);
    }
  }

  // ---- model → map values ----

  private computeTable(v: VipState): Uint32Array {
    const serving = [...v.backends.values()].filter((b) => !b.draining && b.weight > 0);
    const up = serving.filter((b) => !b.down);
    // all down: fail open to every serving backend rather than black-holing the VIP (said:
    // failingOpen, logged by change() and noted by the CLI)
    const members = up.length ? up : serving;
    return maglevTable(members.map((b) => ({ key: backendKey(b), id: b.id, weight: b.weight })), this.cfg.ringSize);
  }

  private vipKey(v: VipSpec): vip_key {
    return { addr: addrBytes(v.address), port: htons(v.port), proto: PROTO_NUM[v.protocol as Protocol], family: v.family };
  }

  private vipMeta(v: VipState): vip_meta {
    return {
      vip_id: v.slot, ring_size: this.cfg.ringSize, flags: VIP_ACTIVE | (v.healthCheck ? VIP_HEALTHCHECK : 0), generation: v.generation,
      fwd: FWD_NUM[v.forwarding], tun_src: v.forwarding === 'ipip' && v.tunnelSource ? addrBytes(v.tunnelSource) : new Uint8Array(16),
    };
  }

  private backendValue(v: VipState, b: BackendState, active = true): backend {
    const flags = (active ? BE_ACTIVE : 0) | (b.draining ? BE_DRAINING : 0) | (b.down ? BE_DOWN : 0);
    return {
      mac: parseMac(b.mac), src_mac: parseMac(b.srcMac), ifindex: b.ifindex, addr: addrBytes(b.address),
      port: b.port, family: b.address.includes(':') ? 6 : 4, flags, vip_id: v.slot, weight: b.weight,
    };
  }

  // ---- planning ----

  private draft(): Draft {
    const vips = new Map<string, VipState>();
    for (const [k, v] of this.vips) vips.set(k, { ...v, backends: new Map([...v.backends].map(([bk, b]) => [bk, { ...b }])) });
    return { vips, nextBackendId: this.nextBackendId, fresh: [] };
  }

  /** defaults a new or re-applied VIP is validated against */
  private get vipDefaults(): VipDefaults {
    return { forwarding: this.cfg.forwarding, tunnelSource: this.cfg.tunnelSource };
  }

  /**
   * n free backend ids for a draft, or a 409 before anything is resolved or written. An id the
   * running model uses but this change frees, or one conntrack named at the restart (lingering),
   * is taken only when no other is left, and never before round robin has passed every other id:
   * conntrack entries may still name it.
   */
  private allocIds(d: Draft, n: number): number[] {
    if (n === 0) return [];
    const cap = this.backendCapacity;
    const inDraft = new Set<number>();
    for (const v of d.vips.values()) for (const b of v.backends.values()) inDraft.add(b.id);
    const inCur = new Set<number>();
    for (const v of this.vips.values()) for (const b of v.backends.values()) inCur.add(b.id);
    const free = cap - inDraft.size;
    if (n > free) throw new ValidationError(`backend table full: this change adds ${n} backend(s) but ${free} of ${cap} slots are free; remove backends first or raise backendTableSize (a map size: set it in the config, then "lb stop --purge" and start again)`, 409);
    const out: number[] = [];
    for (const avoidCur of [true, false]) {
      for (let i = 0; i < cap && out.length < n; i++) {
        const id = (d.nextBackendId + i) % cap;
        if (inDraft.has(id) || (avoidCur && (inCur.has(id) || this.lingering.has(id)))) continue;
        inDraft.add(id);
        out.push(id);
      }
    }
    d.nextBackendId = (out.at(-1)! + 1) % cap;
    return out;
  }

  private addFresh(d: Draft, v: VipState, list: NormBackend[]): BackendState[] {
    const ids = this.allocIds(d, list.length);
    return list.map((nb, i) => {
      const b: BackendState = { id: ids[i]!, address: nb.address, port: nb.port, weight: nb.weight, draining: false, down: false, mac: '', srcMac: '', ifindex: 0, egressIfindex: 0, ...(nb.egress ? { egress: nb.egress } : {}) };
      v.backends.set(backendKey(b), b);
      d.fresh.push({ b, ...(nb.mac ? { mac: nb.mac } : {}) });
      return b;
    });
  }

  private freeSlot(d: Draft, taken: Set<number>): number {
    const used = new Set([...this.vips.values(), ...d.vips.values()].map((v) => v.slot));
    for (let i = 0; i < MAX_VIPS; i++) if (!used.has(i) && !taken.has(i)) return i;
    throw new ValidationError(`VIP table full (${MAX_VIPS} VIPs)`, 409);
  }

  private newVip(d: Draft, nv: ReturnType<typeof normVip>, taken: Set<number>): VipState {
    const slot = this.freeSlot(d, taken);
    taken.add(slot);
    const tunnelSource = nv.forwarding === 'ipip' ? tunnelSourceFor(this.cfg.tunnelSource, nv.family) : undefined;
    const { backends: list, ...spec } = nv;
    const v: VipState = { ...spec, slot, ...(tunnelSource ? { tunnelSource } : {}), generation: 0, backends: new Map(), table: null };
    d.vips.set(v.id, v);
    this.addFresh(d, v, list);
    return v;
  }

  /** plan → resolve → rings → commit; see the header comment */
  private async change<R>(what: string, plan: (d: Draft) => R): Promise<R> {
    const d = this.draft();
    const result = plan(d);
    // one check for every operation that can grow a VIP (add, apply, add VIP); a VIP that only
    // shrinks or keeps its size passes (pins restored under a smaller ringSize stay changeable)
    for (const v of d.vips.values()) {
      const n = v.backends.size;
      if (n > this.cfg.ringSize && n > (this.vips.get(v.id)?.backends.size ?? 0)) {
        throw tooManyForRing(v.id, n, this.cfg.ringSize, 'remove one, or restart the LB with a ringSize of at least P (lb stop --purge, then lb daemon)', 409);
      }
    }
    if (d.fresh.length) {
      const hops = await resolveNextHops(d.fresh.map((f) => ({ address: f.b.address, ...(f.mac ? { mac: f.mac } : {}) })));
      d.fresh.forEach((f, i) => Object.assign(f.b, { mac: hops[i]!.mac, srcMac: hops[i]!.srcMac, ifindex: hops[i]!.ifindex }));
    }
    // egress ports by name, in this process's network namespace; an unknown name fails the change
    const egress = new Map<string, number>();
    const missingEgress = new Set<string>();
    for (const v of d.vips.values()) {
      for (const b of v.backends.values()) {
        if (!b.egress) continue;
        if (!egress.has(b.egress)) {
          try {
            egress.set(b.egress, ifindexOf('xdp', b.egress));
          } catch {
            egress.set(b.egress, -1);
          }
        }
        const ix = egress.get(b.egress)!;
        if (ix >= 0) {
          b.egressIfindex = ix;
          continue;
        }
        // gone: a backend this change adds or moves to that port fails the change; one it does
        // not touch keeps its port as it was (every change — a health update too — failed on one
        // missing port, review, session 56), and the log says so
        const old = this.vips.get(v.id)?.backends.get(backendKey(b));
        if (!old || old.egress !== b.egress) throw new ValidationError(`backend ${backendKey(b)} of ${v.id}: egress interface "${b.egress}" does not exist in the controller's network namespace`);
        if (!missingEgress.has(b.egress)) this.log(`egress interface "${b.egress}" (backend ${backendKey(b)} of ${v.id}) is gone: its frames go on to the ifindex it had (${old.egressIfindex}) until it is back and the backend is changed`);
        missingEgress.add(b.egress);
      }
    }
    for (const v of d.vips.values()) {
      const table = this.computeTable(v);
      const cur = this.vips.get(v.id);
      if (cur?.table && sameTable(cur.table, table)) continue;
      v.table = table;
      v.generation = (cur?.generation ?? 0) + 1;
      await yieldNow(); // a big apply computes many rings: let reads through in between
    }
    const wasOpen = new Set([...this.vips.values()].filter(failingOpen).map((v) => v.id));
    await this.commit(d);
    if (what) this.log(what);
    // a drain, removal or weight 0 of the last backend the checks find up sent the VIP's traffic
    // to the down ones without a word (review, session 57): every entry into and out of it is said
    for (const v of this.vips.values()) {
      const open = failingOpen(v);
      if (open && !wasOpen.has(v.id)) this.log(`VIP ${v.id}: ${FAIL_OPEN}`);
      else if (!open && wasOpen.has(v.id)) this.log(`VIP ${v.id}: a serving backend is up again; the down ones left the ring`);
    }
    return result;
  }

  /** write the difference between this.vips and d.vips; all or nothing */
  private async commit(d: Draft): Promise<void> {
    const cur = this.vips;
    const next = d.vips;
    const j = new Journal(this.dp, this.testHooks.failAfterWrites);
    this.testHooks.failAfterWrites = null;
    const touched = [...new Set([...cur.keys(), ...next.keys()])].filter((id) => {
      const a = cur.get(id), b = next.get(id);
      if (!a || !b) return true;
      if (a.table !== b.table || JSON.stringify(this.vipMeta(a)) !== JSON.stringify(this.vipMeta(b)) || a.backends.size !== b.backends.size) return true;
      return [...b.backends].some(([k, x]) => { const y = a.backends.get(k); return !y || backendSig(a, y) !== backendSig(b, x); });
    });
    let intentFile = this.intent && touched.length > 1 ? LbController.intentPath(this.dp.pinDir) : null;
    if (intentFile) {
      try {
        fs.mkdirSync(path.dirname(intentFile), { recursive: true });
        writeFileAtomic(intentFile, JSON.stringify({ pinDir: this.dp.pinDir, pinsId: this.pinsId(), pid: process.pid, vips: this.intent }));
      } catch (e) {
        // the record is for a kill; a full /run fails no change: said, and the change goes on
        this.log(`could not record this apply for a restart to finish (${(e as Error).message}): a daemon killed during it comes back with its VIPs part old, part new`);
        intentFile = null;
      }
    }
    try {
      await this.commitWrites(cur, next, j, d);
    } finally {
      if (intentFile) fs.rmSync(intentFile, { force: true });
    }
  }

  private async commitWrites(cur: Map<string, VipState>, next: Map<string, VipState>, j: Journal, d: Draft): Promise<void> {
    const ca = addrCounts(cur), na = addrCounts(next);
    try {
      // 1. fragments to a new VIP address are recognised before its VIP entry exists
      for (const [a, { bytes, n }] of na) if (n > (ca.get(a)?.n ?? 0)) j.setVipAddr(bytes, n);
      // 2. new and changed backends, before any ring can name them. A new backend's id and a new
      //    VIP's slot may have counted for one removed before: their counters start at 0 (the
      //    metrics showed the old one's totals under the new labels). Not journaled: a slot or id
      //    this change hands out is unused (an id this change frees only when the table has no
      //    other: its last counts go), and a rolled-back change leaves it so
      const freshIds = new Set(d.fresh.map((f) => f.b.id));
      for (const id of freshIds) this.dp.resetStats(MAX_VIPS + id);
      for (const v of next.values()) if (!cur.has(v.id)) this.dp.resetStats(v.slot);
      for (const v of next.values()) {
        const cv = cur.get(v.id);
        for (const [k, b] of v.backends) {
          const old = cv?.backends.get(k);
          if (!old || !cv || backendSig(cv, old) !== backendSig(v, b)) {
            j.setBackend(b.id, this.backendValue(v, b));
            // ports this controller owns (config "egress"); a port set by someone else on a
            // backend without egress is left alone (bench tools write backend_ports directly)
            if (b.egressIfindex || old?.egressIfindex) j.setBackendPort(b.id, b.egressIfindex || null);
          }
        }
      }
      // 3. rings, then VIP entries: a new VIP becomes visible fully formed
      for (const v of next.values()) {
        const cv = cur.get(v.id);
        if (v.table && v.table !== cv?.table) j.swapRing(v.slot, v.table);
        const meta = this.vipMeta(v);
        if (!cv || JSON.stringify(this.vipMeta(cv)) !== JSON.stringify(meta)) j.setVip(this.vipKey(v), meta);
        await yieldNow();
      }
      // 4. removed VIPs; then backends that left (no ring names them any more): their conntrack
      //    entries lose their target and re-hash
      for (const v of cur.values()) {
        if (next.has(v.id)) continue;
        j.deleteVip(this.vipKey(v));
        j.clearRing(v.slot);
      }
      const nextIds = new Set<number>();
      for (const v of next.values()) for (const b of v.backends.values()) nextIds.add(b.id);
      for (const v of cur.values()) {
        const nv = next.get(v.id);
        for (const [k, b] of v.backends) {
          if (nv?.backends.has(k) || nextIds.has(b.id)) continue;
          j.setBackend(b.id, this.backendValue(v, b, false));
          if (b.egressIfindex) j.setBackendPort(b.id, null);
        }
      }
      // 5. addresses that carry fewer (or no) VIPs now
      for (const [a, { bytes, n }] of ca) if ((na.get(a)?.n ?? 0) < n) j.setVipAddr(bytes, na.get(a)?.n ?? 0);
    } catch (e) {
      const errs = j.rollback();
      if (errs.length) this.log(`ROLLBACK INCOMPLETE after "${(e as Error).message}": ${errs.map((x) => x.message).join('; ')}`);
      throw new Error(`kernel refused a map write (${(e as Error).message}); ${errs.length ? `rollback incomplete: ${errs[0]!.message}` : 'every earlier write was undone, nothing changed'}`);
    }
    j.commit();
    this.lastWrites = j.writes;
    // the model follows the kernel; health checks follow the model
    for (const v of cur.values()) {
      const nv = next.get(v.id);
      for (const [k, b] of v.backends) if (v.healthCheck && (!nv?.healthCheck || !nv.backends.has(k))) this.health.unwatch(hkey(v, b));
    }
    for (const v of next.values()) {
      const cv = cur.get(v.id);
      for (const [k, b] of v.backends) if (v.healthCheck && (!cv?.healthCheck || !cv.backends.has(k))) this.health.watch({ key: hkey(v, b), address: b.address, port: b.port }, !b.down);
    }
    this.vips = next;
    this.nextBackendId = d.nextBackendId;
    for (const f of d.fresh) this.lingering.delete(f.b.id);
  }

  /**
   * The VIP named `id`, as this instance holds it. Pins written by an older build may hold a VIP
   * that validation refuses now (tcp://[::ffff:10.0.0.1]:80, a multicast one): it is looked up by
   * its canonical text all the same, so `vip remove` can take out what is in force. A name that
   * matches nothing held gets the parser's refusal if it has one (it says what to write), else 404.
   */
  private vipIn(d: Draft, id: string): VipState {
    const v = d.vips.get(vipString(parseVip(id, heldAddr)));
    if (v) return v;
    parseVip(id);
    throw new ValidationError(`unknown VIP ${id}`, 404);
  }

  /** a backend of v by its name, found as vipIn finds a VIP (a refused form it holds included) */
  private backendIn(v: VipState, addr: string): BackendState {
    const hp = parseHostPort(addr, undefined, heldAddr);
    const b = v.backends.get(backendKey({ address: hp.address, port: hp.port ?? v.port }));
    if (b) return b;
    // named by its host alone: the data plane forwards to a host (one per VIP), whatever port its
    // health checks use, so the host names it (it was looked for on the VIP's port only)
    if (hp.port === undefined) {
      const same = [...v.backends.values()].filter((x) => x.address === hp.address);
      if (same.length === 1) return same[0]!;
      if (same.length > 1) throw new ValidationError(`VIP ${v.id} holds ${hp.address} as ${same.map((x) => backendKey(x)).join(' and ')} (an older build took one host twice): name one with its port`, 409);
    }
    const nb = normBackend(v, { address: addr }, 'backend');
    throw new ValidationError(`VIP ${v.id} has no backend ${backendKey(nb)}`, 404);
  }

  private serving(v: VipState, except: BackendState): BackendState[] {
    return [...v.backends.values()].filter((x) => x !== except && !x.draining && x.weight > 0);
  }

  // ---- operations (serialised) ----

  addVip(c: VipConfig): Promise<VipState> {
    return this.serial(async () => {
      let id = '';
      await this.change('', (d) => {
        const nv = normVip(c, 'vip', false, this.vipDefaults);
        if (d.vips.has(nv.id)) throw new ValidationError(`VIP ${nv.id} exists`, 409);
        id = this.newVip(d, nv, new Set()).id;
      });
      const v = this.vips.get(id)!;
      this.log(`vip ${v.id} added with ${v.backends.size} backend(s)`);
      return v;
    });
  }

  removeVip(id: string): Promise<void> {
    return this.serial(() => this.change(`vip ${id} removed`, (d) => void d.vips.delete(this.vipIn(d, id).id)));
  }

  addBackend(vipId: string, c: BackendConfig | string): Promise<BackendState> {
    return this.serial(async () => {
      let key = '', vid = '';
      await this.change('', (d) => {
        // a VIP validation refuses now is only named to be taken out, not grown
        parseVip(vipId);
        const v = this.vipIn(d, vipId);
        const nb = normBackend(v, c, 'backend');
        if (v.forwarding === 'ipip') checkIpipBackend(v, nb, 'backend');
        key = backendKey(nb);
        vid = v.id;
        if (v.backends.has(key)) throw new ValidationError(`VIP ${v.id} already has backend ${key}`, 409);
        const other = [...v.backends.values()].find((x) => x.address === nb.address);
        if (other) throw sameHost(v.id, nb, other, null);
        this.addFresh(d, v, [nb]);
      });
      const b = this.vips.get(vid)!.backends.get(key)!;
      this.log(`backend ${key} added to ${vid} (id ${b.id}, weight ${b.weight}, mac ${b.mac})`);
      return b;
    });
  }

  removeBackend(vipId: string, addr: string): Promise<void> {
    return this.serial(() => this.change(`backend ${addr} removed from ${vipId}`, (d) => {
      const v = this.vipIn(d, vipId);
      const b = this.backendIn(v, addr);
      if (this.serving(v, b).length === 0) throw new ValidationError(`removing ${backendKey(b)} would leave ${v.id} with zero backends; remove the VIP instead`);
      v.backends.delete(backendKey(b));
    }));
  }

  drainBackend(vipId: string, addr: string): Promise<BackendState> {
    return this.serial(() => this.change(`backend ${addr} of ${vipId} draining`, (d) => {
      const v = this.vipIn(d, vipId);
      const b = this.backendIn(v, addr);
      if (this.serving(v, b).length === 0) throw new ValidationError(`draining ${backendKey(b)} would leave ${v.id} with zero backends`);
      b.draining = true;
      return b;
    }));
  }

  setWeight(vipId: string, addr: string, weight: number): Promise<BackendState> {
    return this.serial(() => this.change('', (d) => {
      const v = this.vipIn(d, vipId);
      const b = this.backendIn(v, addr);
      if (!Number.isInteger(weight) || weight < 0 || weight > 1000) throw new ValidationError(`weight ${weight} must be an integer 0-1000`);
      if (weight === 0 && this.serving(v, b).length === 0) throw new ValidationError(`weight 0 would leave ${v.id} with zero backends`);
      b.weight = weight;
      b.draining = false;
      return b;
    }));
  }

  /** the start settings in force; map sizes as the kernel has them (pinned maps keep theirs) */
  startSettings(): StartSettings {
    const { interface: ifname, instance, pinRoot, ringSize, xdpMode, health, tunnelSource, listen, icmpTooBig } = this.cfg;
    return { interface: ifname, instance, pinRoot, ringSize, conntrackEntries: this.dp.conntrack.meta.maxEntries, backendTableSize: this.backendCapacity, xdpMode, health, tunnelSource, listen, icmpTooBig };
  }

  /**
   * `lb apply`: make the LB match a whole config. Only VIPs and backends change live; a config
   * that differs in a start setting is refused before anything is planned, because applying its
   * VIPs alone would report success for a file the LB does not run (it would stay on its old
   * interface, ring size, map sizes). `file` names the config in the error (and in its fix).
   */
  applyConfig(norm: NormConfig, file?: string): Promise<ApplyResult> {
    const running = this.startSettings();
    // the file's conntrack size as the kernel would make it (rounded to the CPUs: conntrackSize)
    const diff = startSettingsDiff(running, { ...norm, conntrackEntries: conntrackSize(norm.conntrackEntries) });
    if (diff.length) {
      const what = file ?? 'the config';
      const inst = diff.find((d) => d.field === 'instance');
      // another instance's file: most likely the wrong daemon was addressed, the rest follows from that
      if (inst) throw new ValidationError(`${what} is for LB instance ${inst.file}, this daemon runs instance ${inst.running}; nothing was changed`, 409, [], `send it to that instance's daemon: pnpm lab lb apply ${file ?? 'FILE'} --instance ${norm.instance}`);
      throw new ValidationError(
        `${what} differs from the running LB in settings fixed when the daemon starts (apply changes VIPs and backends only): ${diff.map((d) => `${d.field}: running ${d.running}, file ${d.file}`).join('; ')}; nothing was changed`,
        409, [],
        `to run the file's settings, restart the LB with it: pnpm lab lb stop --purge --instance ${running.instance} (detaches XDP and drops conntrack), then ${nsenterPrefix()}pnpm lab lb daemon --config ${file ?? 'FILE'}; to keep the running LB, put the running values in the file`,
      );
    }
    return this.apply(norm.vips.map((v) => ({ vip: v.id, backends: v.backends.map(backendConfigOf), healthCheck: v.healthCheck, forwarding: v.forwarding })));
  }

  /**
   * Make the data plane match a list of VIPs (the vips of a config file): diff, then apply.
   * keptDraining: backends the list still has that stay drained ("ADDR:PORT of VIP"); drainEnded:
   * those whose drain the list's new weight ended (both only when there are any).
   */
  apply(vips: VipConfig[]): Promise<ApplyResult> {
    return this.serial(() => this.applyNow(vips));
  }

  private async applyNow(list: VipConfig[]): Promise<ApplyResult> {
    this.intent = list;
    try {
      return await this.applyList(list);
    } finally {
      this.intent = null;
    }
  }

  private async applyList(list: VipConfig[]): Promise<ApplyResult> {
    const out = { added: [] as string[], removed: [] as string[], changed: [] as string[] };
    const keptDraining: string[] = [], drainEnded: string[] = [];
    const before = new Map([...this.vips].map(([k, v]) => [k, { gen: v.generation, sig: JSON.stringify(this.vipMeta(v)), bs: [...v.backends.values()].map((b) => backendSig(v, b)).join() }]));
    await this.change('', (d) => {
      keptDraining.length = drainEnded.length = 0;
      const want = list.map((v, i) => normVip(v, `vips[${i}]`, false, this.vipDefaults));
      const ids = new Set<string>();
      for (const v of want) {
        if (ids.has(v.id)) throw new ValidationError(`duplicate VIP ${v.id}`, 409);
        ids.add(v.id);
      }
      if (want.length > MAX_VIPS) throw new ValidationError(`${want.length} VIPs: more than ${MAX_VIPS}`, 409);
      for (const id of [...d.vips.keys()]) if (!ids.has(id)) { d.vips.delete(id); out.removed.push(id); }
      for (const w of want) {
        const v = d.vips.get(w.id);
        if (!v) continue;
        const wantKeys = new Set(w.backends.map(backendKey));
        for (const k of [...v.backends.keys()]) if (!wantKeys.has(k)) v.backends.delete(k);
      }
      // capacity of the whole result before any VIP is built: one clear 409, in milliseconds
      const adds = want.reduce((n, w) => n + w.backends.filter((b) => !d.vips.get(w.id)?.backends.has(backendKey(b))).length, 0);
      this.allocIds({ ...d }, adds);
      const taken = new Set<number>();
      for (const w of want) {
        const v = d.vips.get(w.id);
        if (!v) {
          this.newVip(d, w, taken);
          out.added.push(w.id);
          continue;
        }
        v.forwarding = w.forwarding;
        v.healthCheck = w.healthCheck;
        const ts = w.forwarding === 'ipip' ? tunnelSourceFor(this.cfg.tunnelSource, w.family) : undefined;
        if (ts) v.tunnelSource = ts;
        else delete v.tunnelSource;
        const fresh: NormBackend[] = [];
        for (const b of w.backends) {
          const have = v.backends.get(backendKey(b));
          if (!have) fresh.push(b);
          else {
            // A backend keeps its drain across an apply (as across a restart, and in svc): drain is
            // not in a config, so a file states nothing about it, and a backend taken out for
            // maintenance must not go back into the ring because an unrelated change was applied.
            // A weight the file gives anew (not the one held) ends it, as `lb backend weight` does;
            // the default a backend without a weight takes is not one (the file says nothing).
            if (have.draining && !b.weightDefault && b.weight !== have.weight) {
              have.draining = false;
              drainEnded.push(`${backendKey(have)} of ${v.id} (weight ${have.weight} → ${b.weight} from the file)`);
            } else if (have.draining) keptDraining.push(`${backendKey(have)} of ${v.id}`);
            have.weight = b.weight;
            // down is the health checks' to end; with them turned off for the VIP nothing would
            if (!w.healthCheck) have.down = false;
            // a backend re-applied without egress gives its port back; one adopted after a
            // restart (index known, name not) keeps it when the config names the same interface
            if (b.egress) have.egress = b.egress;
            else {
              delete have.egress;
              have.egressIfindex = 0;
            }
            // a corrected MAC (a typo fixed in the file) must reach the map: resolved again with
            // it, like a new backend, so the entry is rewritten and reported as changed. Without
            // a mac in the file the resolved one stays (no neighbour lookup on every apply).
            if (b.mac && b.mac !== have.mac) d.fresh.push({ b: have, mac: b.mac });
          }
        }
        this.addFresh(d, v, fresh);
        // drains kept: a VIP must still have a backend to serve (as lb backend drain checks)
        const all = [...v.backends.values()];
        if (!all.some((x) => !x.draining && x.weight > 0)) {
          const drained = all.filter((x) => x.draining).map(backendKey);
          throw new ValidationError(
            `${v.id}: every backend the file lists is drained (${drained.join(', ')})${drained.length < all.length ? ' or has weight 0' : ''}; nothing was changed`,
            409, [],
            `end a drain first (pnpm lab lb backend weight ${v.id} ${drained[0]} WEIGHT), give it a new weight in the file, or list a backend that serves`,
          );
        }
      }
    });
    for (const [k, v] of this.vips) {
      const b = before.get(k);
      if (b && (b.gen !== v.generation || b.sig !== JSON.stringify(this.vipMeta(v)) || b.bs !== [...v.backends.values()].map((x) => backendSig(v, x)).join())) out.changed.push(k);
    }
    return { ...out, ...(keptDraining.length ? { keptDraining } : {}), ...(drainEnded.length ? { drainEnded } : {}) };
  }

  private async onHealth(key: string, up: boolean): Promise<void> {
    const hit = [...this.vips.values()].some((v) => [...v.backends.values()].some((b) => hkey(v, b) === key && b.down === up));
    if (!hit) return;
    const said = await this.change('', (d) => {
      const out: string[] = [];
      for (const v of d.vips.values()) {
        for (const b of v.backends.values()) {
          if (hkey(v, b) !== key || b.down === !up) continue;
          b.down = !up;
          out.push(`backend ${backendKey(b)} of ${v.id} is ${up ? 'up' : 'DOWN'} (health check)`);
        }
      }
      return out;
    });
    for (const l of said) this.log(l); // once it is in force, not before a commit that may fail
  }

  /** The model as JSON (admin API, CLI list). */
  state() {
    return {
      interface: this.cfg.interface,
      instance: this.cfg.instance,
      forwarding: this.cfg.forwarding,
      ringSize: this.cfg.ringSize,
      backendTableSize: this.backendCapacity,
      pinDir: this.dp.pinDir,
      startedAs: this.startedAs,
      attach: this.attachResult,
      vips: [...this.vips.values()].map((v) => {
        const counts = new Map<number, number>();
        for (const x of v.table ?? []) counts.set(x, (counts.get(x) ?? 0) + 1);
        return {
          vip: v.id, slot: v.slot, generation: v.generation, healthCheck: v.healthCheck, forwarding: v.forwarding, failOpen: failingOpen(v),
          ...(v.tunnelSource ? { tunnelSource: v.tunnelSource } : {}),
          backends: [...v.backends.values()].map((b) => ({
            address: b.address, port: b.port, id: b.id, weight: b.weight, mac: b.mac,
            ...(b.egressIfindex ? { egress: b.egress ?? null, egressIfindex: b.egressIfindex } : {}),
            state: b.draining ? 'draining' : b.down ? 'down' : 'up',
            ringShare: (counts.get(b.id) ?? 0) / this.cfg.ringSize,
          })),
        };
      }),
    };
  }

  ring(vipId: string): { computed: number[]; dataplane: number[] | null } {
    const v = this.vips.get(vipString(parseVip(vipId, heldAddr)));
    if (!v) throw new ValidationError(`unknown VIP ${vipId}`, 404);
    const dp = this.dp.readRing(v.slot);
    return { computed: [...(v.table ?? [])], dataplane: dp ? [...dp] : null };
  }

  /** Stop the controller. Default: leave XDP, maps and flows in place (a restart adopts them). */
  stop(opts: { purge?: boolean } = {}): void {
    this.health.stop();
    if (opts.purge) {
      this.dp.purge();
      fs.rmSync(LbController.intentPath(this.dp.pinDir), { force: true }); // nothing left to finish
    } else this.dp.close();
  }
}

/** what `lb apply` did; keptDraining/drainEnded only when there are any (see LbController.apply) */
export interface ApplyResult { added: string[]; removed: string[]; changed: string[]; keptDraining?: string[]; drainEnded?: string[] }

/** how to start a daemon in this process's network namespace, for a fix line */
function nsenterPrefix(): string {
  const ns = netnsName();
  return ns === undefined ? '' : `nsenter --net=/run/netns/${ns} -- `;
}

/** hex of a vip_addrs key */
const hex = (a: Uint8Array) => Buffer.from(a).toString('hex');

/**
 * VIPs per vip_addrs key, by the key's bytes (restore and commit): an IPv4 address and an IPv6 one
 * with the same leading bytes and a zero tail are one key (counted by text, removing one deleted
 * the key while the other's VIP still needed it)
 */
function addrCounts(vips: Map<string, VipState>): Map<string, { bytes: Uint8Array; n: number }> {
  const out = new Map<string, { bytes: Uint8Array; n: number }>();
  for (const v of vips.values()) {
    const bytes = addrBytes(v.address);
    const e = out.get(hex(bytes)) ?? { bytes, n: 0 };
    e.n++;
    out.set(hex(bytes), e);
  }
  return out;
}

function hkey(v: VipState, b: { address: string; port: number }): string {
  return `${v.id} ${backendKey(b)}`;
}

/** everything of a backend that its map entry holds */
function backendSig(v: VipState, b: BackendState): string {
  return `${v.slot}|${b.id}|${b.address}|${b.port}|${b.weight}|${b.draining}|${b.down}|${b.mac}|${b.srcMac}|${b.ifindex}|${b.egressIfindex}`;
}

function sameTable(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** every backend that would serve (not draining, weight > 0) is down, so the ring holds them all */
export function failingOpen(v: Pick<VipState, 'backends'>): boolean {
  const serving = [...v.backends.values()].filter((b) => !b.draining && b.weight > 0);
  return serving.length > 0 && serving.every((b) => b.down);
}

export const FAIL_OPEN = 'every backend that serves is down by its health checks: the ring holds them all (fail open) until one is up again, rather than dropping the VIP\'s traffic';
