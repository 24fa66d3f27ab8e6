// `pnpm lab lb …`: the LB daemon and its admin CLI. Arguments go through common/args.ts (strict,
// typed, --help per command, usage errors exit 2); expected failures are LabErrors (one line and
// the fix); the admin API's 4xx answers become LabErrors too. The CLI talks to the daemon's unix
// socket (--instance NAME or --socket PATH).
import fs from 'node:fs';
import path from 'node:path';
import { UsageError, helpText, parseArgs, pickCommand, type CommandSpec, type Opts } from '../../common/args.ts';
import { LabError } from '../../common/errors.ts';
import { ValidationError, heldAddr, parseHostPort, parseMac, parseVip, vipString } from './addr.ts';
import { LbApiError, LbClient } from './client.ts';
import { DEFAULT_PIN_ROOT, backendKey, checkIpipBackend, normBackend, validateConfigFile, type LbConfig } from './config.ts';
import { purgePinned } from './dataplane.ts';
import { FAIL_OPEN, LbController } from './controller.ts';
import { deferSignalsToCaller } from '../libbpf/index.ts';
import net from 'node:net';
import { daemonLockPath, finishedPinDirs, recordPinDir, serveAdmin, socketPath, SOCKET_DIR } from './server.ts';
import { instancesIn, instancesNote } from '../../common/state-file.ts';
import { processAlive } from '../../common/host.ts';
import { tryLock, unlock } from '../../common/lockfile.ts';
import { holdEarlyStops, STOP_SIGNALS } from '../../common/signals.ts';

const target = {
  // the config's rule (controller/lb/config.ts): the name becomes paths (socket, lock, pins)
  instance: { type: 'string', valueName: 'NAME', description: 'the daemon of this instance (socket /run/ebpf-lab/lb-NAME.sock)', default: 'default', check: (v: string) => (/^[\w-]{1,40}$/.test(v) ? undefined : { message: 'not an instance name', fix: 'use 1-40 of A-Z a-z 0-9 _ - (the instance of the daemon\'s config)' }) },
  socket: { type: 'string', valueName: 'PATH', description: 'the daemon listening on this admin socket (overrides --instance)' },
} as const satisfies Opts;

const VIP_NOTE = '<vip> is tcp://ADDR:PORT or udp://[ADDR6]:PORT; <addr> is ADDR, ADDR:PORT or [ADDR6]:PORT';

type Args = { values: Record<string, unknown>; positionals: string[] };
type Run = (p: Args, api: () => LbClient) => Promise<number>;
interface Cmd { spec: CommandSpec<Opts>; run: Run }

const print = (v: unknown) => console.log(typeof v === 'string' ? v.replace(/\n$/, '') : JSON.stringify(v, null, 2));

function cmd(usage: string, summary: string, options: Opts, positionals: CommandSpec<Opts>['positionals'], run: Run): Cmd {
  return { spec: { usage: `pnpm lab lb ${usage}`, summary, options, positionals, epilog: VIP_NOTE }, run };
}

/** after a change: a VIP whose serving backends are all down sends its traffic to them (fail open) */
async function noteFailOpen(api: () => LbClient, vip?: string): Promise<void> {
  for (const v of (await api().state()).vips) {
    if (v.failOpen && (vip === undefined || v.vip === vipString(parseVip(vip, heldAddr)))) console.error(`note: VIP ${v.vip}: ${FAIL_OPEN}`);
  }
}

async function list(p: Args, api: () => LbClient): Promise<number> {
  const want = p.positionals[0] === undefined ? undefined : vipString(parseVip(heldVipArg(p.positionals[0]), heldAddr));
  const s = await api().state();
  const rows = s.vips.filter((v) => !want || v.vip === want);
  if (want && rows.length === 0) throw new LabError(`unknown VIP ${want}`, 'pnpm lab lb vip list shows the VIPs');
  for (const v of rows) {
    console.log(`${v.vip}  (slot ${v.slot}, ${v.forwarding === 'ipip' ? `ipip from ${v.tunnelSource}` : 'dsr'}, ring generation ${v.generation}${v.healthCheck ? ', health-checked' : ''}, ${v.backends.length} backend(s))${v.failOpen ? '  FAILING OPEN: every serving backend is down' : ''}`);
    for (const b of v.backends) console.log(`  ${b.address}:${b.port}  weight ${b.weight}  ${b.state.padEnd(8)} ring ${(b.ringShare * 100).toFixed(1)}%  mac ${b.mac}`);
  }
  return 0;
}

function intArg(v: string, what: string, min: number, max: number): number {
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`<${what}> ${JSON.stringify(v)}: expected a whole number ${min}-${max}`, `e.g. pnpm lab lb backend weight tcp://10.0.0.1:80 10.0.0.11 2`);
  return n;
}

// Addresses are checked here, before the daemon is contacted: a typo is a usage error (exit 2)
// whether or not a daemon runs, not "no LB daemon" first and the typo after the user started one.
// The daemon checks again (other API clients); these use its parsers, so both agree.
function usageFrom<T>(what: string, fix: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ValidationError) throw new UsageError(`<${what}> ${e.message}`, fix);
    throw e;
  }
}

const VIP_FIX = 'write it as tcp://ADDR:PORT or udp://[ADDR6]:PORT, e.g. tcp://10.0.0.1:80';
const ADDR_FIX = 'write a backend as ADDR, ADDR:PORT or [ADDR6]:PORT, e.g. 10.0.0.11, 10.0.0.11:8080 or [fd00::11]:8080';

/** <vip> in its canonical form (so `vip list "tcp://[fd00::0001]:80"` finds tcp://[fd00::1]:80) */
function vipArg(v: string): string {
  return usageFrom('vip', VIP_FIX, () => vipString(parseVip(v)));
}

function addrArg(a: string): string {
  usageFrom('addr', ADDR_FIX, () => parseHostPort(a));
  return a;
}

// A VIP or backend named to be found, not added (remove, drain, weight, list): an instance started
// by an older build may hold one in a form the parser refuses now (::ffff:a.b.c.d, a zone id it
// dropped), and it must stay removable. Only malformed text is a usage error here; the daemon
// matches what it holds, and refuses a name that matches nothing with the parser's reason.
function heldVipArg(v: string): string {
  usageFrom('vip', VIP_FIX, () => parseVip(v, heldAddr));
  return v; // as typed: a refusal from the daemon quotes the user's text
}

function heldAddrArg(a: string): string {
  usageFrom('addr', ADDR_FIX, () => parseHostPort(a, undefined, heldAddr));
  return a;
}

/** <vip> <addr>… as `vip add` sends them: each parsed, no duplicates, families matching for ipip */
function vipWithBackends(vip: string, addrs: string[], forwarding: 'dsr' | 'ipip' | undefined): void {
  const v = parseVip(vipArg(vip));
  const seen = new Map<string, string>();
  for (const a of addrs) {
    addrArg(a);
    const nb = normBackend(v, a, 'backend');
    const k = backendKey(nb);
    if (seen.has(k)) throw new UsageError(`<addr> ${JSON.stringify(a)} and ${JSON.stringify(seen.get(k))} are the same backend ${k}`, 'give each backend once');
    seen.set(k, a);
    // the daemon's default forwarding is not known here; an explicit --forwarding ipip is
    if (forwarding === 'ipip') usageFrom('addr', `give IPv${v.family} backends for ${vipString(v)}, or --forwarding dsr`, () => checkIpipBackend({ id: vipString(v), family: v.family }, nb, '--forwarding ipip'));
  }
}

const COMMANDS: Record<string, Cmd> = {
  daemon: cmd('daemon --config FILE [--socket PATH]', 'run the controller (inside the LB\'s network namespace: nsenter --net=/run/netns/NAME -- …)', {
    config: { type: 'string', valueName: 'FILE', description: 'LB config (YAML or JSON), see controller/lb/README.md' },
    socket: { type: 'string', valueName: 'PATH', description: 'admin socket to listen on (default /run/ebpf-lab/lb-INSTANCE.sock, INSTANCE from the config\'s `instance`)' },
  }, { max: 0 }, async (p) => {
    const file = p.values.config as string | undefined;
    if (!file) throw new UsageError('lb daemon needs --config FILE', 'see controller/lb/README.md for an example config');
    if (!fs.existsSync(file)) throw new LabError(`config file ${file} does not exist`, 'give the path of a YAML or JSON LB config');
    return runDaemon(file, p.values.socket as string | undefined);
  }),
  'backend add': cmd('backend add <vip> <addr> [--weight N] [--mac MAC]', 'add a backend to a VIP (its ring is rebuilt; established flows stay)', {
    weight: { type: 'int', min: 0, max: 1000, valueName: 'N', description: 'Maglev weight', default: 1 },
    mac: { type: 'string', valueName: 'MAC', description: 'next-hop MAC (skips neighbour resolution)',
      check: (v) => {
        try {
          parseMac(v);
          return undefined;
        } catch {
          return { message: 'is not a MAC address', fix: 'six hex pairs separated by colons, e.g. 02:00:00:00:00:01' };
        }
      } },
    ...target,
  }, { names: ['vip', 'addr'], min: 2, max: 2 }, async (p, api) => {
    const [vip, addr] = [vipArg(p.positionals[0]!), addrArg(p.positionals[1]!)];
    print(await api().addBackend(vip, addr, { weight: p.values.weight as number, ...(p.values.mac ? { mac: p.values.mac as string } : {}) }));
    return 0;
  }),
  'backend remove': cmd('backend remove <vip> <addr>', 'remove a backend (its flows re-hash)', { ...target }, { names: ['vip', 'addr'], min: 2, max: 2 }, async (p, api) => {
    const [vip, addr] = [heldVipArg(p.positionals[0]!), heldAddrArg(p.positionals[1]!)];
    print(await api().removeBackend(vip, addr));
    await noteFailOpen(api, vip);
    return 0;
  }),
  'backend drain': cmd('backend drain <vip> <addr>', 'take a backend out of the ring, keep its established flows', { ...target }, { names: ['vip', 'addr'], min: 2, max: 2 }, async (p, api) => {
    const [vip, addr] = [heldVipArg(p.positionals[0]!), heldAddrArg(p.positionals[1]!)];
    print(await api().drain(vip, addr));
    await noteFailOpen(api, vip);
    return 0;
  }),
  'backend weight': cmd('backend weight <vip> <addr> <weight>', 'set a backend\'s weight (0-1000; also ends draining)', { ...target }, { names: ['vip', 'addr', 'weight'], min: 3, max: 3 }, async (p, api) => {
    const [vip, addr, weight] = [heldVipArg(p.positionals[0]!), heldAddrArg(p.positionals[1]!), intArg(p.positionals[2]!, 'weight', 0, 1000)];
    print(await api().weight(vip, addr, weight));
    await noteFailOpen(api, vip);
    return 0;
  }),
  'backend list': cmd('backend list [<vip>]', 'backends per VIP with state, weight, ring share and MAC', { ...target }, { names: ['vip'], max: 1 }, list),
  'vip add': cmd('vip add <vip> <addr>… [--forwarding dsr|ipip]', 'add a VIP with its backends', {
    forwarding: { type: 'string', choices: ['dsr', 'ipip'], description: 'L2 direct server return or IPIP/IP6IP6 (default: the daemon config\'s)' },
    ...target,
  }, { names: ['vip', 'addr…'], min: 2 }, async (p, api) => {
    const [vip, ...addrs] = p.positionals;
    const forwarding = p.values.forwarding as 'dsr' | 'ipip' | undefined;
    vipWithBackends(vip!, addrs, forwarding);
    print(await api().addVip(vipArg(vip!), addrs.map((a) => ({ address: a })), undefined, forwarding));
    return 0;
  }),
  'vip remove': cmd('vip remove <vip>', 'remove a VIP and its backends', { ...target }, { names: ['vip'], min: 1, max: 1 }, async (p, api) => {
    print(await api().removeVip(heldVipArg(p.positionals[0]!)));
    return 0;
  }),
  'vip list': cmd('vip list [<vip>]', 'VIPs and their backends', { ...target }, { names: ['vip'], max: 1 }, list),
  apply: cmd('apply <config-file>', 'make the running LB match a config file: plan, check, write; all or nothing', { ...target }, { names: ['config-file'], min: 1, max: 1 }, async (p, api) => {
    const file = path.resolve(p.positionals[0]!);
    if (!fs.existsSync(file)) throw new LabError(`config file ${p.positionals[0]} does not exist`, 'give the path of a YAML or JSON LB config');
    // the file's own faults before the daemon is asked (the daemon reads it again and compares its
    // start settings with what runs). apply takes `interface` from the daemon when the file has
    // none: a stand-in name lets the rest be checked here.
    validateConfigFile(file, (c: LbConfig) => (c && typeof c === 'object' && !Array.isArray(c) && c.interface === undefined ? { ...c, interface: 'lo' } : c));
    const r = await api().apply({ file });
    print(r);
    // the file does not end a runtime drain: say so, so nobody takes the apply for putting it back
    for (const b of r.keptDraining ?? []) {
      const [addr, vip] = b.split(' of ');
      console.error(`note: backend ${b} stays draining (drained at runtime; a file does not end a drain unless it gives a new weight): pnpm lab lb backend weight ${vip} ${addr} WEIGHT${p.values.instance !== 'default' ? ` --instance ${p.values.instance}` : ''} puts it back`);
    }
    for (const b of r.drainEnded ?? []) console.error(`note: backend ${b}: its drain ended, it is back in the ring`);
    await noteFailOpen(api);
    return 0;
  }),
  stats: cmd('stats', 'packet counters by outcome, program run time, map and controller memory', { ...target }, { max: 0 }, async (_p, api) => {
    print(await api().stats());
    return 0;
  }),
  metrics: cmd('metrics', 'Prometheus metrics', { ...target }, { max: 0 }, async (_p, api) => {
    print(await api().metrics());
    return 0;
  }),
  stop: cmd('stop [--purge] [--pin-root DIR]', 'stop the daemon; XDP and pins stay (restart-safe) unless --purge, which also removes what a daemon that died left pinned', {
    purge: { type: 'boolean', description: 'also detach XDP and remove the pins' },
    'pin-root': { type: 'string', valueName: 'DIR', description: `where the instance's pins are when its daemon is gone: the config's pinRoot (default: where its last daemon pinned, else ${DEFAULT_PIN_ROOT})` },
    ...target,
  }, { max: 0 }, async (p, api) => {
    try {
      const purge = p.values.purge === true;
      const r = (await api().shutdown(purge)) as { ok: boolean; pid?: number; startTime?: string };
      // returns once the daemon is gone (its lock and socket released), so that a script's next
      // `lb daemon` is not refused as a second one
      const deadline = Date.now() + 15_000;
      while (r.pid && processAlive(r.pid, r.startTime) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
      if (r.pid && processAlive(r.pid, r.startTime)) throw new LabError(`the LB daemon (pid ${r.pid}) took the stop but has not exited within 15 s`, `see its log; kill ${r.pid} ends it (its XDP program and pins stay${purge ? '; then lb stop --purge removes them' : ''})`);
      console.log(`stopped LB daemon${r.pid ? ` pid ${r.pid}` : ''}: ${purge ? 'XDP program detached and pins removed' : 'its XDP program keeps forwarding from the pins (restart-safe: the next daemon adopts them; lb stop --purge removes them)'}`);
      return 0;
    } catch (e) {
      // no daemon answers: one stopped without --purge or killed outright left its XDP program
      // forwarding from the pins (fail static); --purge removes them here, without it
      const code = (e as NodeJS.ErrnoException).code;
      const inst = p.values.instance as string;
      const dir = p.values['pin-root'] !== undefined ? path.join(p.values['pin-root'] as string, inst) : finishedPinDirs(inst)[0] ?? path.join(DEFAULT_PIN_ROOT, inst);
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || !fs.existsSync(dir)) throw e;
      const socket = (p.values.socket as string | undefined) ?? socketPath(inst);
      if (p.values.purge !== true) throw new LabError(`no LB daemon at ${socket}, but instance "${inst}" still forwards from its pins under ${dir} (a daemon stopped without --purge, or killed, leaves its XDP program attached)`, `pnpm lab lb stop --purge --instance ${inst} detaches it and removes the pins; or start the daemon again: it adopts them`);
      // The instance's lock, held while purging: a daemon holds it from before it opens the pins
      // until it exits, so a live one that does not answer here (starting, or on another --socket)
      // is not purged under, and none starts meanwhile. Without it such a purge removed the pins a
      // running daemon had made or adopted, and it ran on from maps nothing else could reach.
      const lock = daemonLockPath(inst);
      fs.mkdirSync(path.dirname(lock), { recursive: true });
      const held = tryLock(lock);
      if (held !== true) throw new LabError(`a daemon of instance "${inst}" (pid ${held}) is running but does not answer on ${socket} (still starting, or serving another --socket); nothing was removed`, `wait until it is up, or name its socket: pnpm lab lb stop --purge --instance ${inst} --socket PATH`);
      try {
        const r = purgePinned(dir);
        if (r.attachedBy) throw new LabError(`no LB daemon at ${socket}, and instance "${inst}" has no pinned XDP link: its daemon attached by netlink (xdpMode native/generic), and its program (id ${r.attachedBy.join(', ')}) is still attached in a namespace this command cannot detach from; nothing was removed`, `start the daemon again (nsenter --net=/run/netns/NAME -- pnpm lab lb daemon --config FILE: it takes the program over), then pnpm lab lb stop --purge --instance ${inst}`);
        if (code === 'ECONNREFUSED') fs.rmSync(socket, { force: true }); // the dead daemon's socket file
        recordPinDir(inst, dir, false);
        fs.rmSync(LbController.intentPath(dir), { force: true }); // nothing left to finish
        print(`no LB daemon was running: ${r.link ? 'detached its XDP program (pinned link removed)' : 'no XDP link was pinned'}, removed ${r.maps} map pin(s) under ${dir}`);
        return 0;
      } finally {
        unlock(lock); // and with it a dead daemon's, which tryLock took over
      }
    }
  }),
};

export function usage(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return ['usage: pnpm lab lb <command> [options]   (pnpm lab lb <command> --help for its options)', '',
    ...Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(w)}  ${c.spec.summary}`), '', VIP_NOTE].join('\n');
}

export async function runDaemon(configFile: string, socketOverride?: string): Promise<number> {
  const { config: raw, norm: cfg } = validateConfigFile(configFile);
  const log = (m: string) => console.error(`[lb ${cfg.instance}] ${m}`);
  const socket = socketOverride ?? socketPath(cfg.instance);
  const running = (what: string) => new LabError(`an LB daemon of instance "${cfg.instance}" is already running (${what})`, `stop it first (pnpm lab lb stop --instance ${cfg.instance}), or give this one another instance name in its config`);
  // A second daemon of an instance would adopt the first one's pinned program and maps and take
  // its admin socket over, leaving the first running and unreachable: refuse while one answers.
  // Two started at once both found no socket answering: one created the pins, the other "restored"
  // them while still empty (its config's VIPs ignored) and attached first, and the one that then
  // failed to attach purged the pins it had made: a daemon balancing nothing, with nothing pinned.
  // The lock settles it before either opens the pins.
  fs.mkdirSync(path.dirname(daemonLockPath(cfg.instance)), { recursive: true });
  const held = tryLock(daemonLockPath(cfg.instance));
  if (held !== true) throw running(`pid ${held}`);
  try {
    return await runLocked(cfg, raw, socket, log, running);
  } finally {
    unlock(daemonLockPath(cfg.instance));
  }
}

/** the daemon once it holds its instance's lock */
async function runLocked(cfg: ReturnType<typeof validateConfigFile>['norm'], raw: LbConfig, socket: string, log: (m: string) => void, running: (what: string) => LabError): Promise<number> {
  for (const s of new Set([socket, socketPath(cfg.instance)])) {
    if (await answers(s)) throw running(`admin socket ${s}`);
  }
  // Ctrl-C/SIGTERM are ours: the admin socket is closed (and its file removed) before the
  // controller stops; the binding's own handler would exit 128+signal and leave the socket file
  deferSignalsToCaller(true);
  // a pin directory is recorded once a start there has seeded its pins and attached: pins at one
  // that is not are a start killed part-way, holding only some of its VIPs (see LbController.start)
  const pinDir = LbController.pinDir(cfg);
  // no pins there: a record of that place is from pins removed since (by hand), not these
  if (!fs.existsSync(path.join(pinDir, 'vips'))) recordPinDir(cfg.instance, pinDir, false);
  // a stop signal while it starts: acted on once started (common/signals.ts holdEarlyStops)
  const early = holdEarlyStops();
  let c: LbController;
  try {
    c = await LbController.start(raw, { log, pinsUnfinished: !finishedPinDirs(cfg.instance).includes(pinDir) });
  } catch (e) {
    early.off();
    throw e;
  }
  recordPinDir(cfg.instance, pinDir, true);
  let srv;
  try {
    srv = await serveAdmin(c, { socket, listen: cfg.listen });
  } catch (e) {
    early.off();
    c.stop({ purge: c.startedAs === 'fresh' }); // nothing half-applied: a fresh start leaves no pins
    if (c.startedAs === 'fresh') recordPinDir(cfg.instance, pinDir, false);
    throw new LabError(`admin API on ${socket}${cfg.listen ? ` / ${cfg.listen}` : ''}: ${(e as Error).message}`, 'another daemon of this instance runs, or the address is taken: pick --socket / listen, or stop it');
  }
  log(`admin API on ${socket}${cfg.listen ? ` and http://${cfg.listen}` : ''} (${c.startedAs}, backend table ${c.backendCapacity})`);
  console.log(JSON.stringify({ ready: true, socket, startedAs: c.startedAs, attach: c.attachResult }));
  const sig = new Promise<{ purge: boolean }>((res) => {
    for (const s of STOP_SIGNALS) process.once(s, () => res({ purge: false }));
  });
  early.off();
  const { purge } = early.signal ? { purge: false } : await Promise.race([srv.shutdown, sig]);
  await srv.close();
  c.stop({ purge });
  if (purge) recordPinDir(cfg.instance, pinDir, false);
  log(purge ? 'stopped and purged (XDP detached, pins removed)' : 'stopped; XDP program and maps stay pinned for the next start');
  return 0;
}

/** does a process accept connections on this unix socket? (a file left by a crashed daemon does not) */
function answers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socket);
    const done = (v: boolean) => (clearTimeout(t), c.destroy(), resolve(v));
    // a daemon too busy to accept within 2 s is still a daemon
    const t = setTimeout(() => done(true), 2000);
    c.once('connect', () => done(true)).once('error', () => done(false));
  });
}

/** an admin API or validation failure as a one-line error with the fix */
function asLabError(e: unknown, name: string, socket: string, instance?: string): LabError | null {
  // an error that knows its fix (a start setting apply cannot change, pins off the bpffs) says it
  if ((e instanceof ValidationError || e instanceof LbApiError) && e.fix) return new LabError(e.message, e.fix);
  // a config file checked here, before anything is sent or attached: the fix is in that file
  if (e instanceof ValidationError && (name === 'daemon' || name === 'apply')) return new LabError(e.message, 'correct the config file where the message points (controller/lb/README.md has an example); nothing was changed');
  if (e instanceof LbApiError || e instanceof ValidationError) {
    const status = e instanceof LbApiError ? e.status : e.status;
    const fix = /backend table full/.test(e.message) ? 'remove backends, or start the daemon with a larger backendTableSize (lb stop --purge first: it is a map size)'
      : status === 404 ? 'pnpm lab lb vip list shows the VIPs and their backends'
      : status === 409 ? 'pnpm lab lb vip list shows what is there already'
      : status >= 500 ? 'the daemon\'s log (stderr) has the details; nothing was changed'
      : `pnpm lab lb ${name} --help`;
    return new LabError(e.message, fix);
  }
  const code = (e as NodeJS.ErrnoException).code;
  if ((code === 'ENOENT' || code === 'ECONNREFUSED') && instance !== undefined) {
    // a daemon killed, or stopped without --purge: its XDP program still forwards from the pins
    const dir = finishedPinDirs(instance)[0] ?? path.join(DEFAULT_PIN_ROOT, instance);
    if (fs.existsSync(dir)) return new LabError(`no LB daemon at ${socket}, but instance "${instance}" still forwards from its pins under ${dir}`, `start the daemon again (it adopts them) to change or list it; pnpm lab lb stop --purge --instance ${instance} detaches it`);
  }
  if (code === 'ENOENT' || code === 'ECONNREFUSED') return new LabError(`no LB daemon at ${socket}${path.dirname(socket) === SOCKET_DIR ? ` (${instancesNote(instancesIn(SOCKET_DIR, 'lb-', '.sock'))})` : ''}`, 'start one: nsenter --net=/run/netns/NAME -- pnpm lab lb daemon --config FILE (or pick it with --instance NAME / --socket PATH)');
  if (code === 'EACCES') return new LabError(`no permission to talk to ${socket}`, 'the admin socket is root-only: run as root');
  if (/timeout/.test((e as Error).message ?? '')) return new LabError((e as Error).message, 'the daemon is busy or hung: check its log; pnpm lab lb stats tells whether it answers');
  return null;
}

export async function lbCommand(argv: string[]): Promise<number> {
  // `pnpm lab lb … | head`: the reader went away; that ends the output, it is not an error
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  let picked: ReturnType<typeof pickCommand<(typeof COMMANDS)[string]>> = null;
  try {
    picked = pickCommand('lb', argv, COMMANDS, ['backend', 'vip']);
    if (!picked) {
      if (argv.includes('--help') || argv.includes('-h')) {
        console.log(usage());
        return 0;
      }
      throw new UsageError('lb needs a command', 'pnpm lab lb --help lists the commands');
    }
    const { name, command: c, rest } = picked;
    const p = parseArgs(rest, c.spec);
    if (!p) return 0;
    const socket = (p.values.socket as string | undefined) ?? socketPath((p.values.instance as string | undefined) ?? 'default');
    try {
      return await c.run({ values: p.values as Record<string, unknown>, positionals: p.positionals }, () => new LbClient(socket));
    } catch (e) {
      throw asLabError(e, name, socket, p.values.socket === undefined ? ((p.values.instance as string | undefined) ?? 'default') : undefined) ?? e;
    }
  } catch (e) {
    // usage errors exit 2 (lab/cli.ts prints LabErrors; it exits 1 for every kind)
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}\n  fix: ${e.fix ?? `see pnpm lab lb ${picked?.name ?? ''} --help`.replace('  ', ' ')}`);
      return e.exitCode;
    }
    if (e instanceof ValidationError) throw new LabError(e.message, `check the config; ${helpText(picked!.command.spec).split('\n')[0]}`);
    throw e;
  }
}
