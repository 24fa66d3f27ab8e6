// A shaper daemon killed outright — SIGKILL, as a crash or the OOM killer would — run as users run
// it (`pnpm lab tc shape start`), on the scenario's veth. What it attached must keep enforcing
// (fail closed: the drop rule still drops, the class still holds its rate through fq) until
// `pnpm lab tc shape stop` removes exactly that: filters, clsact, fq, pins and state; and a restart
// under the same name takes those filters over in place, so the drop rule never lapses — also a
// restart in another mode (--filter-only after a shaping daemon: its fq goes, after the filters are
// switched). The controller's own test does this on the host, where sch_fq is missing, so only here
// (the VM kernels have it) are the fq halves of a dead instance's cleanup and takeover exercised.
import fs from 'node:fs';
import { execa } from 'execa';
import { labCliArgv } from '../../common/dist.ts';
import { collectOutput, untilReady } from '../../common/child.ts';
import { STATE_DIR, instanceAlive, pinDir, readState, reapDeadInstance, statePath } from '../../controller/tc/shaper.ts';
import { ownerAlive, terminate } from '../../common/host.ts';
import { runTempFile } from '../../common/stale.ts';
import type { Topology } from '../../lab/netns.ts';
import { scaledTimeout, type ScenarioContext } from '../../lab/scenario.ts';
import { iperf, wireMbit } from './flows.ts';
import type { Link } from './shapers.ts';

// the run's pid in the name: two runs at once (nightly beside a user's) each crashed and took over
// the other's "tcs-crash", reaping its filters mid-check (both failed their takeover check)
const INSTANCE_PREFIX = 'tcs-crash-';
const INSTANCE = `${INSTANCE_PREFIX}${process.pid}`;
const RATE_MBIT = 10;
const DATAGRAMS = 5;

/** UDP datagrams a namespace received for a port nobody listens on (/proc/net/snmp Udp NoPorts) */
export function parseUdpNoPorts(snmp: string): number {
  const [head, vals] = snmp.split('\n').filter((l) => l.startsWith('Udp: ')).map((l) => l.trim().split(/\s+/));
  const i = head?.indexOf('NoPorts') ?? -1;
  const v = i > 0 ? Number(vals?.[i]) : NaN;
  if (!Number.isFinite(v)) throw new Error('/proc/net/snmp has no Udp NoPorts counter');
  return v;
}

async function noPorts(t: Topology, role: string): Promise<number> {
  return parseUdpNoPorts(String((await t.exec(role, 'cat', ['/proc/net/snmp'])).stdout));
}

/** `n` one-byte datagrams to to:9 from the shaped device's namespace: how many reached the receiver's stack */
async function udpReached(link: Link, to: string, rcvRole: string, n: number): Promise<number> {
  const t = link.topo;
  const before = await noPorts(t, rcvRole);
  // one process for all of them: each costs ~0.3 s of a guest CPU under TCG
  await t.exec(link.role, 'bash', ['-c', `for i in $(seq ${n}); do printf x > /dev/udp/${to}/9; done`], { reject: false });
  return (await noPorts(t, rcvRole)) - before;
}

/**
 * The crash-test instances of runs that are gone (SIGKILLed before their cleanup): a daemon of
 * theirs still running is stopped (it removes what it attached), else its pins and state file are
 * removed, and its filters where the namespace is still there (its sweep comes after). A fixed
 * name did this by accident: the next run's start took the dead one over. Returns what could not
 * be removed, for the run to warn about.
 */
export async function sweepStaleCrashInstances(): Promise<string[]> {
  const kept: string[] = [];
  let files: string[] = [];
  try {
    files = fs.readdirSync(STATE_DIR);
  } catch {
    return kept;
  }
  for (const f of files) {
    const m = new RegExp(`^(${INSTANCE_PREFIX}(\\d+))\\.json$`).exec(f);
    if (!m || ownerAlive(Number(m[2]), statePath(m[1]!))) continue;
    const name = m[1]!;
    try {
      const st = readState(name);
      if (instanceAlive(st) && !(await terminate(st.pid, st.owned?.pidStart))) throw new Error(`its daemon (pid ${st.pid}) did not exit on SIGTERM`);
      reapDeadInstance(name);
    } catch (e) {
      kept.push(`${name}: ${(e as Error).message}`);
    }
  }
  return kept;
}

export async function crashCheck(ctx: ScenarioContext, link: Link, o: { fq: boolean; rcv: string; rcvRole: string; port: number; secs: number }): Promise<void> {
  const t = link.topo;
  const file = runTempFile('tcs-crash', 'json');
  const dropRule = [{ name: 'udp-drop', dir: 'egress', cidr: `${o.rcv}/32`, proto: 'udp', port: 9, action: 'drop' }];
  fs.writeFileSync(file, JSON.stringify({
    ...(o.fq ? { classes: [{ name: 'crash', rate: `${RATE_MBIT}mbit`, match: [{ dst: `${o.rcv}/32` }] }] } : {}),
    filters: dropRule,
  }));
  // the same drop rule for a filter-only restart (classes are refused there)
  const filterOnlyFile = runTempFile('tcs-crash-fo', 'json');
  fs.writeFileSync(filterOnlyFile, JSON.stringify({ filters: dropRule }));
  const [node, ...cli] = labCliArgv();
  const lab = (args: string[]) => execa(node!, [...cli, ...args], { reject: false, all: true, timeout: scaledTimeout(60_000) });
  const tcShow = async (...what: string[]) => String((await t.exec(link.role, 'tc', [...what.slice(0, 1), 'show', 'dev', link.dev, ...what.slice(1)], { reject: false })).stdout);
  const filters = async () => (await tcShow('filter', 'egress')) + (await tcShow('filter', 'ingress'));
  // whatever fails below, the instance does not outlive the run: its namespace takes the filters
  // along, but not its pins and state file
  ctx.defer('stop the crash-test tc instance', async () => {
    fs.rmSync(file, { force: true });
    fs.rmSync(filterOnlyFile, { force: true });
    if (fs.existsSync(statePath(INSTANCE))) await lab(['tc', 'shape', 'stop', '--instance', INSTANCE]);
  });

  /** `tc shape start` of this instance, ready: its output; a check that failed when it does not come up */
  const startDaemon = async (what: string, filterOnly = !o.fq): Promise<{ d: ReturnType<typeof execa>; out: () => string } | undefined> => {
    const d = execa(node!, [...cli, 'tc', 'shape', 'start', '--dev', link.dev, '--netns', link.ns, '--instance', INSTANCE, '--config', filterOnly ? filterOnlyFile : file, ...(filterOnly ? ['--filter-only'] : [])], { reject: false, all: true });
    const out = collectOutput([d.all]);
    try {
      await untilReady(d, out, /^shaping /m, scaledTimeout(20_000), 'pnpm lab tc shape start');
      return { d, out };
    } catch (e) {
      d.kill('SIGKILL');
      await d;
      ctx.check(what, false, (e as Error).message);
      return undefined;
    }
  };
  const kill = async (d: ReturnType<typeof execa>) => {
    const pid = (JSON.parse(fs.readFileSync(statePath(INSTANCE), 'utf8')) as { pid: number }).pid;
    process.kill(pid, 'SIGKILL');
    await d;
  };
  const first = await startDaemon('a tc shaper daemon killed with SIGKILL keeps enforcing (fail closed)');
  if (!first) return;
  await kill(first.d);

  // dead daemon: everything it attached is still there and still acts
  const attached = await filters();
  const root = await tcShow('qdisc');
  const reached = await udpReached(link, o.rcv, o.rcvRole, DATAGRAMS);
  const flow = o.fq ? await iperf(t, link.role, o.rcv, o.port, o.secs) : undefined;
  const wire = flow ? wireMbit(flow) : NaN;
  const held = !o.fq || (/^qdisc fq /m.test(root) && wire <= RATE_MBIT * 1.03 && wire >= RATE_MBIT * 0.9);
  ctx.check(
    `a tc shaper daemon killed with SIGKILL keeps enforcing (fail closed): its drop rule still drops${o.fq ? `, its ${RATE_MBIT} Mbit/s class still holds (±3% over, 10% under)` : ''}`,
    /tc_shape_egress/.test(attached) && reached === 0 && held,
    `UDP to ${o.rcv}:9 reached the receiver ${reached} of ${DATAGRAMS} times; egress filter ${/tc_shape_egress/.test(attached) ? 'attached' : 'gone'}${o.fq ? `; root qdisc ${/^qdisc fq /m.test(root) ? 'fq' : 'not fq'}; one TCP flow ${wire.toFixed(2)} Mbit/s on the wire` : ' (no sch_fq on this kernel: the class half is not exercised)'}`,
  );

  // a restart under the same name takes the dead daemon's filters over in place, with the config
  // already in them: a stream of datagrams to the dropped port, sent all through the restart, must
  // not get one through (a removal and a fresh attach left a gap: the controller's test saw 69–81
  // datagrams of ~2k/s pass)
  const tookOver = 'a restarted tc shaper takes the dead one\'s filters over in place: its drop rule never lapses' + (o.fq ? `, its ${RATE_MBIT} Mbit/s class holds after` : '');
  /** a start of the instance while a stream of datagrams to the dropped port runs: how many got through */
  const throughRestart = async (what: string, filterOnly?: boolean) => {
    const stopFile = runTempFile('tcs-stream', 'stop');
    fs.rmSync(stopFile, { force: true });
    const rcvBefore = await noPorts(t, o.rcvRole);
    // one bash process, no fork per datagram (a fork costs ~0.3 s of a guest CPU under TCG)
    const stream = t.exec(link.role, 'bash', ['-c', `n=0; while [ ! -e ${stopFile} ]; do printf x > /dev/udp/${o.rcv}/9; n=$((n+1)); done; echo $n`], { reject: false });
    const daemon = await startDaemon(what, filterOnly);
    fs.writeFileSync(stopFile, '');
    const sent = Number(String((await stream).stdout).trim()) || 0;
    fs.rmSync(stopFile, { force: true });
    return { daemon, sent, leaked: (await noPorts(t, o.rcvRole)) - rcvBefore };
  };
  const { daemon: second, sent, leaked } = await throughRestart(tookOver);
  if (second) {
    const flow2 = o.fq ? await iperf(t, link.role, o.rcv, o.port, o.secs) : undefined;
    const wire2 = flow2 ? wireMbit(flow2) : NaN;
    const line = second.out().split('\n').find((l) => /took over its filters in place/.test(l)) ?? '';
    ctx.check(
      tookOver,
      !!line && sent > 0 && leaked === 0 && (!o.fq || (wire2 <= RATE_MBIT * 1.03 && wire2 >= RATE_MBIT * 0.9)),
      `${line || `no takeover reported: ${second.out().trim().split('\n').slice(-3).join(' | ')}`}; ${sent} datagrams to ${o.rcv}:9 sent through the restart, ${leaked} reached the receiver${o.fq ? `; one TCP flow ${wire2.toFixed(2)} Mbit/s on the wire after` : ''}`,
    );
    ctx.metric('crash-takeover', { sent, leaked, mbitAfter: o.fq ? wire2 : null, line });
    // killed in turn: the stop below removes what the taker now holds (its clsact is the first's)
    await kill(second.d);
  }

  // a restart in another mode: filters only after a shaping daemon. Its filters are switched in
  // place as before, and only then its fq removed (this removed the filters first and attached
  // afresh: 2041-2056 datagrams of the stream got through in a 6.1 guest)
  if (second && o.fq) {
    const modeChange = 'a tc shaper restarted with --filter-only after a shaping one takes its filters over in place too (the drop rule never lapses), then removes its fq';
    const { daemon: third, sent: sent3, leaked: leaked3 } = await throughRestart(modeChange, true);
    if (third) {
      const line = third.out().split('\n').find((l) => /took over its filters in place/.test(l)) ?? '';
      const root = await tcShow('qdisc');
      ctx.check(
        modeChange,
        !!line && /removed its fq root qdisc/.test(line) && sent3 > 0 && leaked3 === 0 && !/^qdisc fq /m.test(root),
        `${line || `no takeover reported: ${third.out().trim().split('\n').slice(-3).join(' | ')}`}; ${sent3} datagrams to ${o.rcv}:9 sent through the restart, ${leaked3} reached the receiver; root qdisc after: ${/^qdisc fq /m.test(root) ? 'fq (left behind)' : 'not fq'}`,
      );
      ctx.metric('crash-takeover-mode-change', { sent: sent3, leaked: leaked3, line });
      await kill(third.d);
    }
  }

  // and `stop` removes exactly that
  const stop = await lab(['tc', 'shape', 'stop', '--instance', INSTANCE]);
  const filtersAfter = await filters();
  const qdiscsAfter = await tcShow('qdisc');
  const reachedAfter = await udpReached(link, o.rcv, o.rcvRole, DATAGRAMS);
  const left = [
    /tc_shape/.test(filtersAfter) && 'filters',
    /clsact/.test(qdiscsAfter) && 'clsact',
    /^qdisc fq /m.test(qdiscsAfter) && 'fq',
    fs.existsSync(pinDir(INSTANCE)) && `pins (${pinDir(INSTANCE)})`,
    fs.existsSync(statePath(INSTANCE)) && 'state file',
  ].filter(Boolean);
  ctx.check(
    `pnpm lab tc shape stop after the crash removes what the daemon attached (filters, clsact${o.fq ? ', fq' : ''}, pins, state) and traffic flows again`,
    stop.exitCode === 0 && /had died/.test(String(stop.stdout)) && left.length === 0 && reachedAfter === DATAGRAMS,
    `exit ${stop.exitCode}: ${String(stop.all).trim().split('\n')[0]}; left: ${left.length ? left.join(', ') : 'nothing'}; UDP to :9 then reached the receiver ${reachedAfter} of ${DATAGRAMS} times`,
  );
  ctx.metric('crash', { reachedWhileDead: reached, mbitWhileDead: flow ? wire : null, stop: String(stop.stdout).trim(), left, reachedAfterStop: reachedAfter });
}
