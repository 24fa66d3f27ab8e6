// `pnpm lab svc …`: the socket LB's control plane from the command line. An instance is started
// with `svc daemon` (foreground: health checks; everything removed on exit) or `svc start`
// (detached: maps and links pinned, balancing lasts until `svc stop`). Every other command opens
// the pinned maps and the state file under the instance's lock, plans the change, writes it all
// or nothing and exits. Arguments go through common/args.ts; expected failures are one-line LabErrors.
import fs from 'node:fs';
import type http from 'node:http';
import { serveMetrics } from '../../common/metrics-http.ts';
import { UsageError, commandWords as commonCommandWords, parseArgs, pickCommand, valueOptions, type CommandSpec, type Opts } from '../../common/args.ts';
import { LabError } from '../../common/errors.ts';
import { hostPort } from '../../common/ip.ts';
import { holdEarlyStops, untilSignal } from '../../common/signals.ts';
import { ValidationError } from '../lb/addr.ts';
import { deferSignalsToCaller } from '../libbpf/index.ts';
import { INSTANCE_RULE, checkBackendArgs, checkHeldBackendArgs, loadSvcConfigFile, validInstance, validateSvcConfig } from './config.ts';
import { svcRegistry } from './metrics.ts';
import { instancesIn, instancesNote } from '../../common/state-file.ts';
import { RUN_DIR, SvcController, cgroupGoneNote, cutShort, deadDaemon, removeCutShort, statePath, stopInstance, withLock, lockPath, type ApplyResult, pendingPath } from './controller.ts';
import { removeUnderLock } from '../../common/lockfile.ts';

const target = {
  instance: {
    // no `default` here: an explicit --instance default must win over the config's instance, and a
    // default would be indistinguishable from it (instanceOf gives 'default' where none is named)
    type: 'string', valueName: 'NAME', description: 'the socket LB instance (default: the config\'s, else "default")',
    // the name is joined into pin and state paths: checked here, before any of them is touched
    check: (v) => (validInstance(v) ? undefined : { message: `malformed instance name (${INSTANCE_RULE})`, fix: 'e.g. --instance default; pnpm lab svc list --instance NAME names a running one' }),
  },
} as const satisfies Opts;
const NOTE = '<vip> is tcp://ADDR:PORT or udp://[ADDR6]:PORT; <addr> is ADDR, ADDR:PORT or [ADDR6]:PORT (port defaults to the VIP\'s)';

type Args = { values: Record<string, unknown>; positionals: string[] };
interface Cmd { spec: CommandSpec<Opts>; run: (p: Args) => Promise<number> }
const cmd = (usage: string, summary: string, options: Opts, positionals: CommandSpec<Opts>['positionals'], run: Cmd['run']): Cmd => ({ spec: { usage: `pnpm lab svc ${usage}`, summary, options, positionals, epilog: NOTE }, run });

const metricsPort = { 'metrics-port': { type: 'int', min: 1, max: 65535, valueName: 'N', description: 'serve Prometheus metrics on 127.0.0.1:N/metrics' } } as const satisfies Opts;
const configOpt = { config: { type: 'string', valueName: 'FILE', description: 'socket LB config (YAML or JSON), see controller/svc/README.md' } } as const satisfies Opts;

function printResult(r: ApplyResult): void {
  console.log(`ok: ${r.changed} service(s) switched or removed, ${r.writes} map write(s), ${r.ms.toFixed(2)} ms`);
}

/** the instance a command without a config acts on */
const instanceOf = (p: Args): string => (p.values.instance as string | undefined) ?? 'default';

/** an instance whose cgroup is gone balances nothing: said before what is listed or changed */
function noteCgroupGone(c: SvcController, inst: string): void {
  const gone = cgroupGoneNote(c.model);
  if (gone) console.error(`note: instance ${inst}: ${gone}; pnpm lab svc stop --instance ${inst} removes what is left`);
}

/** run one change against a pinned instance, under its lock */
async function change(p: Args, fn: (c: SvcController) => ApplyResult): Promise<number> {
  const inst = instanceOf(p);
  await withLock(inst, () => {
    const c = SvcController.open(inst);
    try {
      noteCgroupGone(c, inst);
      printResult(fn(c));
      // a state the config itself refuses: every connect to these services now fails (EPERM)
      const none = c.list().filter((s) => !s.backends.some((b) => b.state === 'active' && b.weight > 0)).map((s) => s.id);
      if (none.length) console.error(`note: ${none.join(', ')} ${none.length > 1 ? 'have' : 'has'} no active backend with a weight: every connection to ${none.length > 1 ? 'them' : 'it'} is refused (EPERM) until one is added, given a weight or comes back up`);
    } finally {
      c.close();
    }
  });
  return 0;
}

function readConfig(p: Args): ReturnType<typeof loadSvcConfigFile> {
  const file = p.values.config as string | undefined;
  if (!file) throw new UsageError('--config FILE is required', 'see controller/svc/README.md for an example config');
  if (!fs.existsSync(file)) throw new LabError(`config file ${file} does not exist`, 'give the path of a YAML or JSON socket LB config');
  try {
    const cfg = loadSvcConfigFile(file);
    if (p.values.instance !== undefined && cfg && typeof cfg === 'object') cfg.instance = instanceOf(p);
    // validated here, before the controller starts, so that every config fault is reported as one
    // in the file (a duplicate is not something `svc list` shows); start validates it again (pure)
    // the instance in use is the config's unless --instance named one: errors' fix lines name it
    p.values.instance = validateSvcConfig(cfg).instance;
    return cfg;
  } catch (e) {
    if (e instanceof ValidationError) throw new LabError(e.message.startsWith(`${file}:`) ? e.message : `${file}: ${e.message}`, 'correct the config file where the message points (controller/svc/README.md has an example); nothing was changed');
    throw e;
  }
}

/** <vip> and <addr> checked here, so a typo exits 2 before the instance is even opened */
function backendArgs(p: Args, name: string): { vip: string; addr: string } {
  const [vip, addr] = p.positionals as [string, string];
  try {
    // add checks what it adds; the others name what the instance holds (see checkHeldBackendArgs)
    if (name === 'backend add') checkBackendArgs(vip, addr);
    else checkHeldBackendArgs(vip, addr);
  } catch (e) {
    if (e instanceof ValidationError) throw new UsageError(e.message, `e.g. pnpm lab svc ${name} tcp://10.96.0.10:80 10.0.0.11:8080${name === 'backend weight' ? ' 2' : ''}`);
    throw e;
  }
  return { vip, addr };
}

const COMMANDS: Record<string, Cmd> = {
  daemon: cmd('daemon --config FILE [--metrics-port N]', 'start an instance in the foreground with health checks; Ctrl-C/SIGTERM detaches and removes everything', { ...configOpt, ...target, ...metricsPort }, { max: 0 }, async (p) => {
    // Ctrl-C/SIGTERM are ours: the stop below detaches and removes everything, then exits 0 (the
    // binding's own handler would close the objects and exit 128+signal, skipping it)
    deferSignalsToCaller(true);
    // a stop signal while it starts: acted on once started (common/signals.ts holdEarlyStops)
    const early = holdEarlyStops();
    let c: SvcController;
    try {
      c = await SvcController.start(readConfig(p), { pin: true, daemon: true, log: (s) => console.error(`[svc] ${s}`) });
    } catch (e) {
      early.off();
      throw e;
    }
    const inst = c.instance;
    const bye = () => c.stop();
    process.once('exit', bye); // synchronous: also on an uncaught error
    const port = p.values['metrics-port'] as number | undefined;
    let server: http.Server | undefined;
    try {
      // `svc backend …` changes the instance from other processes: the model is re-read per scrape
      if (port !== undefined) server = await serveMetrics(svcRegistry(() => (c.reload(), c)), port);
    } catch (e) {
      c.stop();
      process.off('exit', bye);
      early.off();
      throw e;
    }
    c.enableHealthChecks((s) => console.error(`[svc ${inst}] ${s}`));
    console.log(JSON.stringify({ ready: true, instance: inst, services: c.list().length, getpeername: c.model.getpeername, order: c.model.order, ...(port !== undefined ? { metrics: `http://127.0.0.1:${port}/metrics` } : {}) }));
    const signalled = early.signal ? undefined : untilSignal();
    early.off();
    if (signalled) await signalled;
    server?.close();
    // under the instance's lock, so that no `svc backend …` writes its state back after the
    // removal; a lock that is not freed in time does not hold the stop up
    await removeUnderLock(lockPath(inst), () => c.stop());
    process.off('exit', bye);
    console.error(`[svc ${inst}] stopped: programs detached, pins and state removed`);
    return 0;
  }),
  start: cmd('start --config FILE', 'start an instance and exit: links and maps stay pinned until svc stop (no health checks)', { ...configOpt, ...target }, { max: 0 }, async (p) => {
    const cfg = readConfig(p);
    // nothing would check them, and `list` said "health-checked": a dead backend kept its share
    const checked = validateSvcConfig(cfg).services.filter((x) => x.healthCheck).map((x) => x.id);
    if (checked.length) throw new LabError(`${checked.join(', ')} ${checked.length > 1 ? 'have' : 'has'} healthCheck: true, and svc start runs no health checks (it exits)`, `run it as pnpm lab svc daemon --config ${p.values.config as string}${p.values.instance !== undefined ? ` --instance ${instanceOf(p)}` : ''}, which checks them; or set healthCheck: false`);
    const c = await SvcController.start(cfg, { pin: true, log: (s) => console.error(s) });
    console.log(`started instance ${c.instance}: ${c.list().length} service(s), getpeername hooks ${c.model.getpeername ? 'attached' : 'missing on this kernel'}; programs ${c.model.order}`);
    c.close();
    return 0;
  }),
  stop: cmd('stop', 'detach the instance\'s programs and remove its pins and state (a live svc daemon is stopped, and removes them itself)', { ...target }, { max: 0 }, async (p) => {
    const inst = instanceOf(p);
    if (!fs.existsSync(statePath(inst))) {
      const cut = cutShort(inst);
      if (cut?.starting) throw new LabError(cut.text, `wait for pid ${cut.starting} to finish starting, then stop it`);
      const removed = cut ? await removeCutShort(inst) : undefined;
      if (removed !== undefined) {
        console.log(`stopped: instance ${inst} had been cut short while starting; its ${removed} program(s) detached and its pins removed`);
        return 0;
      }
      const others = instancesIn(RUN_DIR, 'svc-', '.json');
      throw new LabError(`no running socket LB instance "${inst}" (${instancesNote(others)})`, others.length ? 'name one of them with --instance NAME' : 'nothing to stop');
    }
    console.log(await stopInstance(inst));
    return 0;
  }),
  list: cmd('list', 'services with their backends, state, weight and algorithm', { ...target }, { max: 0 }, async (p) => {
    const c = SvcController.open(instanceOf(p));
    try {
      const dead = deadDaemon(c.model);
      noteCgroupGone(c, instanceOf(p));
      if (dead) console.error(`note: its svc daemon (pid ${dead}) is gone: the services below are balanced as listed, but no health check runs (backend states are as it last saw them); pnpm lab svc daemon --config FILE --instance ${instanceOf(p)} takes it over`);
      if (fs.existsSync(pendingPath(instanceOf(p)))) console.error(`note: a change to this instance was cut short (its process was killed, or one is in progress now): the services below are its state file's; the next change puts the kernel's maps back to them first`);
      for (const s of c.list()) {
        console.log(`${s.id}  (${s.algorithm}, ${s.count} ring slot(s) in use${s.healthCheck ? (c.model.daemon && !dead ? ', health-checked' : ', healthCheck set but no daemon checks it') : ''})`);
        for (const b of s.backends) console.log(`  ${hostPort(b.address, b.port)}  weight ${b.weight}  ${b.state}`);
      }
    } finally {
      c.close();
    }
    return 0;
  }),
  metrics: cmd('metrics', 'print the instance\'s Prometheus metrics once (per-service and per-backend connections, rewrites, backend states)', { ...target }, { max: 0 }, async (p) => {
    const c = SvcController.open(instanceOf(p));
    try {
      process.stdout.write(await svcRegistry(() => c).metrics());
    } finally {
      c.close();
    }
    return 0;
  }),
  stats: cmd('stats', 'rewrite counters (connect, sendmsg, recvmsg, getpeername, refused)', { ...target }, { max: 0 }, async (p) => {
    const c = SvcController.open(instanceOf(p));
    try {
      console.log(JSON.stringify(c.stats(), null, 2));
    } finally {
      c.close();
    }
    return 0;
  }),
  // weight 0 is accepted wherever a weight is (config, add, weight): listed, no new connections
  'backend add': cmd('backend add <vip> <addr> [--weight N]', 'add a backend (the service\'s ring is rebuilt and switched in one write)', { weight: { type: 'int', min: 0, max: 1000, default: 1, valueName: 'N', description: 'weight 0-1000 (0: listed but given no new connections, as after drain)' }, ...target }, { names: ['vip', 'addr'], min: 2, max: 2 }, (p) => {
    const { vip, addr } = backendArgs(p, 'backend add');
    return change(p, (c) => c.addBackend(vip, addr, p.values.weight as number));
  }),
  'backend remove': cmd('backend remove <vip> <addr>', 'remove a backend: new connections avoid it; established ones are untouched', { ...target }, { names: ['vip', 'addr'], min: 2, max: 2 }, (p) => {
    const { vip, addr } = backendArgs(p, 'backend remove');
    return change(p, (c) => c.removeBackend(vip, addr));
  }),
  'backend drain': cmd('backend drain <vip> <addr>', 'no new connections to a backend; it stays listed (undo with backend weight)', { ...target }, { names: ['vip', 'addr'], min: 2, max: 2 }, (p) => {
    const { vip, addr } = backendArgs(p, 'backend drain');
    return change(p, (c) => c.drainBackend(vip, addr));
  }),
  'backend weight': cmd('backend weight <vip> <addr> <weight>', 'set a backend\'s weight 0-1000 (0: no new connections, as drain; a weight also ends draining)', { ...target }, { names: ['vip', 'addr', 'weight'], min: 3, max: 3 }, (p) => {
    const w = /^\d+$/.test(p.positionals[2]!) ? Number(p.positionals[2]) : NaN;
    if (!(w >= 0 && w <= 1000)) throw new UsageError(`<weight> ${JSON.stringify(p.positionals[2])}: expected a whole number 0-1000`, 'e.g. pnpm lab svc backend weight tcp://10.96.0.10:80 10.0.0.11 2');
    const { vip, addr } = backendArgs(p, 'backend weight');
    return change(p, (c) => c.setWeight(vip, addr, w));
  }),
};

export function usage(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return ['usage: pnpm lab svc <command> [options]   (pnpm lab svc <command> --help for its options)', '', ...Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(w)}  ${c.spec.summary}`), '', NOTE].join('\n');
}

const GROUPS = ['backend'];
/** options that take a value, of any command: their value is never a command word */
const VALUE_OPTS = valueOptions(COMMANDS);

const commandWords = (argv: string[]): number[] => commonCommandWords(argv, GROUPS, VALUE_OPTS);

/**
 * Negative numbers: node's parseArgs reads "-1" as a short option ("unknown option -1"). As an
 * option's value it is rejoined (`--weight=-1`, then range-checked like any value); as an argument
 * it is named for what it is.
 */
function negatives(name: string, args: string[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    const prev = out[out.length - 1];
    if (!/^-\d/.test(a)) out.push(a);
    else if (prev !== undefined && /^--[^=]+$/.test(prev) && VALUE_OPTS.has(prev.slice(2))) out[out.length - 1] = `${prev}=${a}`;
    else if (name === 'backend weight') throw new UsageError(`<weight> ${JSON.stringify(a)}: a weight cannot be negative; expected a whole number 0-1000`, '0 takes a backend out of new connections (as drain does), e.g. pnpm lab svc backend weight tcp://10.96.0.10:80 10.0.0.11 0');
    else throw new UsageError(`unexpected argument ${JSON.stringify(a)}: svc ${name} takes no negative numbers`, `pnpm lab svc ${name} --help`);
  }
  return out;
}

export async function svcCommand(argv: string[]): Promise<number> {
  const words = commandWords(argv);
  const picked = pickCommand('svc', words.map((i) => argv[i]!), COMMANDS, GROUPS);
  if (!picked) {
    if (argv.includes('--help') || argv.includes('-h')) {
      console.log(usage());
      return 0;
    }
    throw new UsageError('svc needs a command', 'pnpm lab svc --help lists the commands');
  }
  const { name, command: c } = picked;
  const rest = negatives(name, argv.filter((_, i) => !words.includes(i)));
  const p = parseArgs(rest, c.spec);
  if (!p) return 0;
  try {
    return await c.run({ values: p.values as Record<string, unknown>, positionals: p.positionals });
  } catch (e) {
    if (e instanceof ValidationError) {
      const fix = e.fix ?? (e.status === 400 ? `pnpm lab svc ${name} --help` : `pnpm lab svc list --instance ${p.values.instance ?? 'default'} shows the services and backends${name === 'backend add' ? '; svc backend weight changes a listed one' : ''}`);
      throw new LabError(e.message, fix);
    }
    throw e;
  }
}
