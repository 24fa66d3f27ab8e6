// Control-plane scaling for the xdp-lb bench: how long `lb apply` takes and how much memory the
// controller holds for 10 / 1,000 / 10,000 backends (issue 18: 1,000 backends used to take 25 s
// and ~1,000 `ip` processes; 10,000 crashed the daemon). Each size gets a fresh daemon (its own
// instance, a 16,384-entry backend table) on a veth of its own in the LB namespace, so the
// numbers do not depend on the data-plane runs; backends are given with their MAC (10,000 real
// neighbours do not fit a namespace's neighbour table), so this measures route lookups over
// netlink, Maglev rings, map writes and the admin API — the controller's own cost.
import type { ScenarioContext } from '../../lab/scenario.ts';
import { LbApiError } from '../../controller/lb/client.ts';
import { startDaemon, type LbTopology } from './topology.ts';

export const SCALING_SIZES = [10, 1_000, 10_000];
const DEV = 'lbscale0';
const TABLE = 16_384;
const PER_VIP = 1_000;
const backend = (i: number) => ({ address: `10.98.${1 + (i >> 8)}.${i & 255}`, mac: '02:00:00:98:00:01' });

export interface ScalingRow {
  backends: number;
  vips: number;
  applySeconds: number;
  /** one GET /state right after the apply (the whole model as JSON) */
  stateMs: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  /** a VIP that does not fit the rest of the table: rejected before any write */
  overflow409Ms: number;
}

export async function controlPlaneScaling(ctx: ScenarioContext, t: LbTopology, sizes = SCALING_SIZES): Promise<ScalingRow[]> {
  ctx.progress.step(`control-plane scaling: lb apply of ${sizes.join(' / ')} backends, controller RSS`);
  // a veth pair, not a dummy: not every kernel build has the dummy driver
  await t.topo.exec('lb', 'ip', ['link', 'add', DEV, 'type', 'veth', 'peer', 'name', `${DEV}p`]);
  await t.topo.exec('lb', 'ip', ['addr', 'add', '10.98.0.1/16', 'dev', DEV]);
  await t.topo.exec('lb', 'ip', ['link', 'set', `${DEV}p`, 'up']);
  await t.topo.exec('lb', 'ip', ['link', 'set', DEV, 'up']);
  const rows: ScalingRow[] = [];
  try {
    for (const n of sizes) {
      const instance = `xlbs${process.pid}`;
      const d = await startDaemon(t, { interface: DEV, instance, backendTableSize: TABLE, vips: [] });
      try {
        const rssBefore = (await d.api.stats()).controllerRssBytes;
        const nv = Math.ceil(n / PER_VIP);
        const vips = Array.from({ length: nv }, (_, v) => ({
          vip: `tcp://10.97.0.${v + 1}:80`, healthCheck: false,
          backends: Array.from({ length: Math.min(PER_VIP, n - v * PER_VIP) }, (_, i) => backend(v * PER_VIP + i)),
        }));
        const t0 = performance.now();
        const r = await d.api.apply({ interface: DEV, vips });
        const applySeconds = (performance.now() - t0) / 1000;
        if (r.added.length !== nv) throw new Error(`apply of ${n} backends added ${r.added.length} of ${nv} VIPs`);
        const s0 = performance.now();
        const st = await d.api.state();
        const stateMs = performance.now() - s0;
        const have = st.vips.reduce((k, v) => k + v.backends.length, 0);
        if (have !== n) throw new Error(`after applying ${n} backends the controller reports ${have}`);
        const rssAfter = (await d.api.stats()).controllerRssBytes;
        const extra = TABLE - n + 1;
        const o0 = performance.now();
        const e = await d.api.addVip('tcp://10.97.1.1:80', Array.from({ length: extra }, (_, i) => backend(20_000 + i)), false).then(() => null, (x: unknown) => x);
        const overflow409Ms = performance.now() - o0;
        if (!(e instanceof LbApiError) || e.status !== 409) throw new Error(`a VIP of ${extra} backends beyond the table was not rejected with 409: ${String(e)}`);
        rows.push({ backends: n, vips: nv, applySeconds, stateMs, rssBeforeBytes: rssBefore, rssAfterBytes: rssAfter, overflow409Ms });
        ctx.progress.info(`${n} backends: apply ${applySeconds.toFixed(2)} s, RSS ${(rssAfter / 1048576).toFixed(0)} MiB`);
      } finally {
        await d.stop(true);
      }
    }
  } finally {
    await t.topo.exec('lb', 'ip', ['link', 'del', DEV], { reject: false });
  }
  const mib = (b: number) => Math.round((b / 1048576) * 10) / 10;
  ctx.metric('controlPlaneScaling', rows);
  ctx.check('control plane: 10,000 backends apply in seconds and beyond the table is a fast 409',
    rows.every((r) => r.applySeconds < 30 && r.overflow409Ms < 2000),
    rows.map((r) => `${r.backends}: ${r.applySeconds.toFixed(2)} s, 409 in ${Math.round(r.overflow409Ms)} ms`).join('; '));
  ctx.section('Control plane scaling',
    { kind: 'text', text: `lb apply through the admin API (unix socket) into a fresh daemon per size (backend table ${TABLE}, ${PER_VIP} backends per VIP, Maglev ring 65537 per VIP, MACs given: route lookups over one netlink socket, no neighbour resolution). RSS is the daemon's resident memory (Node + V8 heap + libbpf), before and after the apply. "409" is a VIP that does not fit what is left of the table, rejected before any write.` },
    { kind: 'table', columns: ['backends', 'VIPs', 'apply s', 'GET /state ms', 'RSS before MiB', 'RSS after MiB', 'over-capacity 409 ms'],
      rows: rows.map((r) => [r.backends, r.vips, Math.round(r.applySeconds * 100) / 100, Math.round(r.stateMs), mib(r.rssBeforeBytes), mib(r.rssAfterBytes), Math.round(r.overflow409Ms)]) },
  );
  return rows;
}
