// A `svc daemon` killed outright, run as users run it (`pnpm lab svc daemon` as a subprocess) in the
// scenario's topology, on the kernel under test: its pinned cgroup links must keep balancing (fail
// static, like the XDP LB), the next `svc daemon` for the instance must take it over with its own
// config (no gap in which new connections go unbalanced), and `svc stop` must end it through that
// daemon, leaving nothing. The controller's own test does the same on the host; here it runs on
// the VM kernels too, where pinned cgroup links' lifetime is the kernel's, not this host's.
import fs from 'node:fs';
import { execa } from 'execa';
import { labCliArgv } from '../../common/dist.ts';
import { runTempFile } from '../../common/stale.ts';
import { collectOutput, untilReady } from '../../common/child.ts';
import { PIN_ROOT, RUN_DIR, pinDir, removeCutShort, statePath, stopInstance } from '../../controller/svc/controller.ts';
import { ownerAlive } from '../../common/host.ts';
import { scaledTimeout, type ScenarioContext } from '../../lab/scenario.ts';
import { BACKEND_PORT, type SockLab } from './topology.ts';

interface Reply { reply?: string; error?: string }

const CRASH_PREFIX = 'slb-crash-';

/**
 * The crash-test instances of runs that are gone (SIGKILLed before their cleanup): their pinned
 * links kept balancing a cgroup that no longer exists, and nothing removed them (tc-shaping's
 * sweepStaleCrashInstances is the same for its instance). A daemon of theirs still running is
 * stopped (it removes what it attached), else the pins and state go; pins of one cut short while
 * starting too. What was removed and what could not be, for the run to say.
 */
export async function sweepStaleCrashInstances(): Promise<{ removed: string[]; kept: string[] }> {
  const removed: string[] = [];
  const kept: string[] = [];
  const names = new Set<string>();
  for (const [dir, re] of [[RUN_DIR, /^svc-(slb-crash-\d+)\.json$/], [PIN_ROOT, /^svc-(slb-crash-\d+)$/]] as const) {
    try {
      for (const f of fs.readdirSync(dir)) {
        const m = re.exec(f);
        if (m) names.add(m[1]!);
      }
    } catch { /* none */ }
  }
  for (const name of names) {
    const pid = Number(name.slice(CRASH_PREFIX.length));
    if (ownerAlive(pid, fs.existsSync(statePath(name)) ? statePath(name) : pinDir(name))) continue;
    try {
      if (fs.existsSync(statePath(name))) await stopInstance(name);
      else if ((await removeCutShort(name)) === undefined) throw new Error(`pins under ${pinDir(name)} are not only an svc instance's`);
      removed.push(name);
    } catch (e) {
      kept.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return { removed, kept };
}
type Once = (proto: string, addr: string, port: number, n: number) => Promise<Reply[]>;

const VIP = '10.97.0.20';

export async function daemonCrashCheck(ctx: ScenarioContext, lab: SockLab, once: Once): Promise<void> {
  const instance = `${CRASH_PREFIX}${process.pid}`;
  const file = runTempFile('slb-crash', 'json');
  const be = lab.backends4.map((a) => `${a}:${BACKEND_PORT}`);
  const write = (backends: string[]) => fs.writeFileSync(file, JSON.stringify({ cgroup: lab.cgClientRel, instance, services: [{ vip: `tcp://${VIP}:80`, algorithm: 'random', backends }] }));
  const [node, ...cli] = labCliArgv();
  const lab_ = (args: string[]) => execa(node!, [...cli, ...args], { reject: false, all: true, timeout: scaledTimeout(60_000) });
  const live: ReturnType<typeof execa>[] = [];
  ctx.defer('stop the crash-test svc instance', async () => {
    for (const d of live) d.kill('SIGKILL');
    fs.rmSync(file, { force: true });
    if (fs.existsSync(statePath(instance))) await lab_(['svc', 'stop', '--instance', instance]);
  });
  const daemon = async (): Promise<{ d: ReturnType<typeof execa>; out: () => string }> => {
    const d = execa(node!, [...cli, 'svc', 'daemon', '--config', file], { reject: false, all: true });
    live.push(d);
    const out = collectOutput([d.all]);
    await untilReady(d, out, /"ready":true/, scaledTimeout(30_000), 'pnpm lab svc daemon');
    return { d, out };
  };
  const reached = async (n: number) => {
    const rs = await once('tcp', VIP, 80, n);
    return { seen: new Set(rs.filter((r) => !r.error).map((r) => r.reply!)), errors: rs.filter((r) => r.error).length };
  };
  const fmt = (r: { seen: Set<string>; errors: number }) => `backends seen ${[...r.seen].join(', ') || 'none'}, ${r.errors} failed`;

  const name1 = 'a svc daemon killed with SIGKILL: its pinned links keep balancing (fail static)';
  const name2 = 'the next svc daemon takes the instance over with its config (no unbalanced gap)';
  const name3 = 'svc stop ends the instance through its live daemon, leaving nothing';
  try {
    write(be.slice(0, 2));
    const d1 = await daemon();
    process.kill(d1.d.pid!, 'SIGKILL');
    await d1.d;
    const dead = await reached(12);
    ctx.check(name1, dead.errors === 0 && dead.seen.size > 0 && [...dead.seen].every((b) => be.slice(0, 2).includes(b)), `after SIGKILL: ${fmt(dead)} (the daemon's two: ${be.slice(0, 2).join(', ')})`);

    write(be);
    const d2 = await daemon();
    const line = d2.out().split('\n').find((l) => /took over instance/.test(l)) ?? '';
    const taken = await reached(24);
    ctx.check(name2, !!line && taken.errors === 0 && taken.seen.has(be[2]!), `${line.replace(/^\[svc\] /, '') || 'no takeover reported'}; then ${fmt(taken)}`);

    const stop = await lab_(['svc', 'stop', '--instance', instance]);
    const end = await d2.d;
    const after = await reached(1);
    const left = [fs.existsSync(statePath(instance)) && 'state file', fs.existsSync(pinDir(instance)) && 'pins'].filter(Boolean);
    // with the rewrite gone the VIP is an address nobody has: connections fail
    ctx.check(name3, stop.exitCode === 0 && end.exitCode === 0 && left.length === 0 && after.seen.size === 0, `${String(stop.all).trim()}; daemon exit ${end.exitCode}; left: ${left.join(', ') || 'nothing'}; the VIP then: ${fmt(after)}`);
    ctx.metric('daemon-crash', { afterKill: [...dead.seen], takeover: line, afterTakeover: [...taken.seen], stop: String(stop.all).trim() });
  } catch (e) {
    ctx.check(`${name1}; ${name2}; ${name3}`, false, (e as Error).message);
  }
}
