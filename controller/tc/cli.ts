// `pnpm lab tc shape|filter …`: the EDT shaper daemon and the commands that change it live.
// `tc shape start` runs in the foreground (it owns the fq qdisc and the tc filters and removes
// them when it ends); it pins its maps and writes a state file, so the other commands — run from
// any shell — validate their input first and then only write maps (no reload). Arguments go
// through common/args.ts; expected failures are LabErrors (one line and the fix).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import type http from 'node:http';
import { serveMetrics } from '../../common/metrics-http.ts';
import { parseArgs, suggest, UsageError, type CommandSpec, type Opts } from '../../common/args.ts';
import { LabError } from '../../common/errors.ts';
import { untilSignal } from '../../common/signals.ts';
import { terminate } from '../../common/host.ts';
import { removeUnderLock, tryLock, unlock, withLockWait, withLockWaitSync } from '../../common/lockfile.ts';
import { deferSignalsToCaller } from '../libbpf/index.ts';
import { ensureObject } from '../../bpf/build.ts';
import { checkReplaceKeys, formatRate, loadConfigFile, parseHorizon, parseRate, PROTO_NAMES, validateConfig, type Plan } from './config.ts';
import { formatIp, fromLeading16 } from '../../common/ip.ts';
import { tcRegistry } from './metrics.ts';
import { instancesIn, instancesNote } from '../../common/state-file.ts';
import { MAP_NAMES, STATE_DIR, cgroupMoves, decodeModel, type Model, INSTANCE_NAME, instanceBusy, pinDir, removeMapPins, instanceAlive, openInstance, readState, reapDeadInstance, statePath, TcShaper, writerLockPath, type ReapReport, type TcControl } from './shaper.ts';

// checked by every command, not only start: the name becomes a path (state, lock, pins), and a
// `stop --instance ../../x` once read a state file of its choosing and sent its pid SIGTERM
const instance = { instance: { type: 'string', valueName: 'NAME', default: 'default', description: 'which running shaper (state in /run/ebpf-lab/tc/NAME.json)', check: (v: string) => (INSTANCE_NAME.test(v) ? undefined : { message: 'not an instance name', fix: 'use 1-32 of a-z 0-9 _ -, starting with a letter or digit (pnpm lab tc shape list shows the running ones)' }) } } as const satisfies Opts;

type Args = { values: Record<string, unknown>; positionals: string[] };
interface Cmd { spec: CommandSpec<Opts>; run: (p: Args) => Promise<number> }
const cmd = (usage: string, summary: string, options: Opts, positionals: CommandSpec<Opts>['positionals'], run: Cmd['run']): Cmd => ({ spec: { usage: `pnpm lab tc ${usage}`, summary, options, positionals, epilog: 'Config (YAML/JSON): see controller/tc/README.md. Rates like 10mbit, 1gbit.' }, run });

function withInstance<T>(name: string, fn: (c: TcControl) => T, readDead = false): T {
  const c = openInstance(name, { readDead });
  // a killed daemon's filters still enforce: their counters are read, and the state said
  if (c.dead) console.error(`note: ${c.dead}`);
  try {
    return fn(c);
  } finally {
    c[Symbol.dispose]();
  }
}

/**
 * A change from the CLI: read the model, write the maps, write the model back, one writer at a
 * time. Two `filter set`s at once both wrote the same idle rule slots and flipped the generation in
 * turn: the kernel could enforce a mix of both lists (or a list being rewritten while live) while
 * the state, and `filter list`, named one of them.
 */
async function changeInstance<T>(name: string, fn: (c: TcControl) => T): Promise<T> {
  if (!fs.existsSync(statePath(name))) return withInstance(name, fn); // its "no running instance" error
  return withLockWait(writerLockPath(name), () => withInstance(name, fn), (pid) => instanceBusy(name, pid));
}

function planFromFile(file: string): Plan {
  return validateConfig(loadConfigFile(file));
}

/** one line about what was removed of a crashed daemon, and what was left and why */
function reapLine(instance: string, r: ReapReport): string {
  const removed = r.removed.length ? `removed ${r.removed.join(', ')}` : 'nothing of it was still attached';
  return `tc instance "${instance}" had died (pid ${r.pid}): ${removed}${r.kept.length ? `; left: ${r.kept.join('; ')}` : ''}`;
}

/**
 * what start took over from a crashed daemon: each filter replaced in place (or, across a change of
 * directions, attached beside them), then what of the dead one it removed, and what it could not
 */
function tookOverLine(instance: string, t: NonNullable<TcShaper['tookOver']>): string {
  const filters = t.filters.map((f) => (f.from !== undefined ? `${f.dir} prog ${f.from} → ${f.to}` : `${f.dir} prog ${f.to} added`)).join(', ');
  const removed = t.removed.length ? `; then removed its ${t.removed.join(', ')}` : '';
  const left = t.left.length ? `\nwarning: could not remove, will retry on stop: ${t.left.join('; ')}` : '';
  return `tc instance "${instance}" had died (pid ${t.pid}): took over its filters in place, never detached (${filters})${removed}; this config is live in them${left}`;
}

function printClasses(c: TcControl): void {
  const rows = c.classStats();
  if (!rows.length) console.log('(no classes)');
  const horizon = (name: string) => {
    const m = c.model.classes.find((x) => x.name === name);
    return m ? `${+(Number(m.horizonNs) / 1e6).toFixed(3)}ms${m.horizonAuto ? ' (auto)' : ''}` : '?';
  };
  for (const s of rows) console.log(`${s.name.padEnd(16)} id ${String(s.id).padStart(3)}  rate ${formatRate(s.rateBps).padEnd(10)} horizon ${horizon(s.name)}  packets ${s.packets}  bytes ${s.bytes}  delayed ${s.delayed}  horizon-drops ${s.horizonDrops}  idle ${(Number(s.idleNs) / 1e9).toFixed(3)}s`);
}

function printRules(c: TcControl): void {
  const rows = c.ruleStats();
  if (!rows.length) console.log('(no filter rules)');
  for (const [i, r] of rows.entries()) {
    const p = c.model.rules[i]!;
    const cidr = p.family ? `${formatIp(fromLeading16(p.addr, p.family))}/${p.prefixlen}` : 'any';
    const what = `${['', 'ingress', 'egress', 'both'][p.dir]} ${cidr}${p.port ? ` port ${p.port}` : ''} proto ${PROTO_NAMES[p.proto] ?? p.proto}`;
    console.log(`${r.name.padEnd(16)} ${r.action.padEnd(5)} ${what.padEnd(44)} packets ${r.packets}  bytes ${r.bytes}`);
  }
}

/**
 * The daemon's check, each second, for a class's cgroup path that names a new cgroup (a service
 * restarted under the same path): TcControl.followCgroups moves the class to it. Looked for in
 * the state file without the lock; the move itself under the writers' lock, tried once (a CLI
 * change holding it is waited for by the next second's check, not by this thread, which also
 * serves metrics). A move that fails is said once per distinct error and tried again each second.
 */
function cgroupFollower(instance: string): () => void {
  let failed = '';
  // the state's cgroup matches, parsed again only when the file changed (a big config's state is
  // megabytes of JSON; this runs each second on the thread that serves metrics)
  let seen = '';
  let matches: Pick<Model, 'classes'> = { classes: [] };
  // moves refused (said once each, not tried again until they change)
  const warned = new Set<string>();
  const key = (m: { cls: string; path: string; to: bigint }) => `${m.cls}\0${m.path}\0${m.to}`;
  const say = (e: unknown) => {
    const msg = (e as Error).message;
    if (msg !== failed) console.error(`warning: a class's cgroup was made again but the class could not follow it: ${msg} (tried again each second)`);
    failed = msg;
  };
  return () => {
    // nothing here may throw: an exception from a timer ends the daemon, and its exit removes every
    // class and drop rule (a full /run made tryLock throw)
    try {
      let st: fs.BigIntStats;
      try {
        st = fs.statSync(statePath(instance), { bigint: true });
      } catch {
        return; // no state: a stop is removing it
      }
      const id = `${st.ino}:${st.mtimeNs}:${st.size}`;
      if (id !== seen) {
        try {
          matches = { classes: readState(instance).classes.map((c) => ({ ...c, matches: c.matches.filter((m) => m.kind === 'cgroup') })) };
          seen = id;
          warned.clear(); // another state: a refused move may be one that can be made now
        } catch {
          return; // unreadable: the CLI says that
        }
      }
      if (!cgroupMoves(matches).some((m) => !warned.has(key(m)))) return;
      const lock = writerLockPath(instance);
      if (tryLock(lock) !== true) return;
      try {
        const c = openInstance(instance);
        try {
          const r = c.followCgroups();
          for (const m of r.moved) console.log(`class ${m.cls}: ${m.path} is a new cgroup (id ${m.from} → ${m.to}): the class follows it`);
          for (const m of r.refused) {
            if (!warned.has(key(m))) console.error(`warning: class ${m.cls}: ${m.path} is a new cgroup (id ${m.to}), but ${m.why}: not followed`);
            warned.add(key(m));
          }
        } finally {
          c[Symbol.dispose]();
        }
        failed = '';
      } finally {
        unlock(lock);
      }
    } catch (e) {
      say(e);
    }
  };
}

async function daemon(p: Args): Promise<number> {
  const dev = p.values.dev as string | undefined;
  if (!dev) throw new UsageError('tc shape start needs --dev DEV', 'e.g. pnpm lab tc shape start --dev eth0 --config shape.yaml');
  // validate the config before anything is attached
  // none given: a dead instance of this name keeps its own (TcShaper.start), else nothing
  const plan = p.values.config ? planFromFile(p.values.config as string) : undefined;
  // …and the device: a mistyped one cost a compile of the program first (a fresh clone has none
  // built). Entered as the shaper enters it (nsenter: `ip -n` remounts / first, which fails in a chroot)
  const netns = p.values.netns as string | undefined;
  if (netns && !fs.existsSync(`/run/netns/${netns}`)) throw new UsageError(`--netns ${JSON.stringify(netns)}: no such network namespace`, 'ip netns lists them');
  const probe = netns ? spawnSync('nsenter', [`--net=/run/netns/${netns}`, '--', 'ip', 'link', 'show', 'dev', dev], { encoding: 'utf8' }) : spawnSync('ip', ['link', 'show', 'dev', dev], { encoding: 'utf8' });
  if ((probe.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') throw new LabError(`${netns ? 'nsenter' : 'ip'} is not installed (not found on PATH)`, 'pnpm lab setup tc (as root) installs the tools tc shaping runs');
  if (probe.status !== 0) throw new UsageError(`--dev ${JSON.stringify(dev)}: no such device${netns ? ` in netns ${netns}` : ''} (${(probe.stderr || probe.error?.message || '').trim().split('\n')[0]})`, `${netns ? `ip -n ${netns} link` : 'ip link'} lists the devices${netns ? '' : '; one inside a network namespace needs --netns NAME'}`);
  deferSignalsToCaller(true);
  const instance = p.values.instance as string;
  let shaper: TcShaper | undefined;
  // the port first: one that is taken fails the start before a dead instance's filters are touched
  const port = p.values['metrics-port'] as number | undefined;
  const server = port === undefined ? undefined : await serveMetrics(tcRegistry(() => {
    if (!shaper) throw new Error('the shaper is starting');
    // the CLI may have changed the model from another process: re-read it per scrape
    const st = decodeModel(fs.readFileSync(statePath(instance), 'utf8'));
    shaper.control.model = { classes: st.classes, rules: st.rules, gen: st.gen };
    return shaper.control;
  }), port);
  try {
    // built here when missing (a fresh clone): start is synchronous and only opens it
    await ensureObject('tc_shape');
    // the plan is in the maps before the filters are attached: enforced from the first packet, and
    // a dead daemon's filters of this instance are replaced in place by ones that already hold it
    shaper = TcShaper.start({ dev, netns: p.values.netns as string | undefined, instance, filterOnly: !!p.values['filter-only'], ingress: !p.values['egress-only'], plan });
  } catch (e) {
    server?.close();
    throw e;
  }
  if (shaper.reaped) console.error(reapLine(instance, shaper.reaped));
  if (shaper.tookOver) console.error(tookOverLine(instance, shaper.tookOver));
  if (shaper.carried) console.error(`no --config: kept what the dead instance "${instance}" enforced (${shaper.carried.classes} class(es), ${shaper.carried.rules} rule(s)); pnpm lab tc shape stop --instance ${instance} first to start empty`);
  const model = shaper.control.model;
  console.log(`shaping ${dev}${p.values.netns ? ` (netns ${p.values.netns})` : ''}: instance ${p.values.instance}, ${model.classes.length} class(es), ${model.rules.length} rule(s)${p.values['egress-only'] ? ', egress only' : ''}${p.values['metrics-port'] !== undefined ? `, metrics http://127.0.0.1:${p.values['metrics-port']}/metrics` : ''}; Ctrl-C removes everything`);
  const follow = setInterval(cgroupFollower(instance), 1000);
  await untilSignal();
  clearInterval(follow);
  server?.close();
  // under the writers' lock, so that a change from the CLI that had opened the instance does not
  // write its state back after the removal; a lock that is not freed in time does not hold the stop up
  await removeUnderLock(writerLockPath(instance), () => shaper!.close());
  console.log(`stopped: instance ${p.values.instance} removed its filters${p.values['filter-only'] ? '' : ', the fq root qdisc'} and its pins from ${dev}`);
  return 0;
}

const COMMANDS: Record<string, Cmd> = {
  'shape start': cmd('shape start --dev DEV [--netns NAME] [--config FILE] [--instance NAME] [--metrics-port N] [--filter-only] [--egress-only]', 'run the shaper on a device in the foreground (fq at the root, BPF on clsact egress+ingress); Ctrl-C removes it all', {
    dev: { type: 'string', valueName: 'DEV', description: 'network device to shape' },
    netns: { type: 'string', valueName: 'NAME', description: 'network namespace of the device (/run/netns/NAME)' },
    config: { type: 'string', valueName: 'FILE', description: 'classes and filter rules (YAML or JSON), validated before anything is attached' },
    'metrics-port': { type: 'int', min: 1, max: 65535, valueName: 'N', description: 'serve Prometheus metrics on 127.0.0.1:N/metrics' },
    'filter-only': { type: 'boolean', description: 'filters only, no fq (kernels without sch_fq); classes are refused' },
    'egress-only': { type: 'boolean', description: 'no ingress program (received packets pay nothing); rules with dir ingress or both are refused' },
    ...instance,
  }, { max: 0 }, daemon),
  'shape apply': cmd('shape apply --config FILE [--instance NAME]', 'replace classes and rules of a running shaper as a whole (all or nothing)', {
    config: { type: 'string', valueName: 'FILE', description: 'the new config (YAML or JSON)' },
    ...instance,
  }, { max: 0 }, async (p) => {
    if (!p.values.config) throw new UsageError('tc shape apply needs --config FILE', 'see controller/tc/README.md for the format');
    const raw = loadConfigFile(p.values.config as string);
    const plan = validateConfig(raw);
    const r = await changeInstance(p.values.instance as string, (c) => {
      checkReplaceKeys(p.values.config as string, raw, { classes: c.model.classes.length, filters: c.model.rules.length });
      return c.apply(plan);
    });
    console.log(`applied: ${plan.classes.length} class(es), ${plan.rules.length} rule(s), ${r.writes} map write(s)`);
    return 0;
  }),
  'shape set': cmd('shape set <class> <rate> [--horizon D] [--instance NAME]', 'change one class\'s rate live (one map write, no reload)', {
    horizon: { type: 'string', valueName: 'D', description: 'drop horizon, e.g. 2s, 500ms, or auto (one 64 KiB GSO packet\'s wire time at the rate +10%, at least 8 ms; rates from 59.955kbit)' },
    ...instance,
  }, { names: ['class', 'rate'], min: 2, max: 2 }, async (p) => {
    const [name, rateS] = p.positionals as [string, string];
    const rate = parseRate(rateS);
    if (rate === undefined || rate < 8_000n || rate > 400_000_000_000n) throw new UsageError(`<rate> ${JSON.stringify(rateS)}: expected a rate 8kbit-400gbit`, 'e.g. pnpm lab tc shape set bulk 50mbit');
    const h = p.values.horizon === undefined ? undefined : parseHorizon(p.values.horizon);
    if (p.values.horizon !== undefined && h === undefined) throw new UsageError(`--horizon ${JSON.stringify(p.values.horizon)}: expected 1ms-10s or auto`, 'e.g. --horizon 2s');
    await changeInstance(p.values.instance as string, (c) => c.setRate(name, rate, h));
    console.log(`${name}: ${formatRate(rate)}`);
    return 0;
  }),
  'shape list': cmd('shape list [--instance NAME]', 'classes with their rate and counters', { ...instance }, { max: 0 }, async (p) => {
    withInstance(p.values.instance as string, printClasses, true);
    return 0;
  }),
  'shape metrics': cmd('shape metrics [--instance NAME]', 'print the Prometheus metrics once', { ...instance }, { max: 0 }, async (p) => {
    const c = openInstance(p.values.instance as string, { readDead: true });
    if (c.dead) console.error(`note: ${c.dead}`);
    try {
      process.stdout.write(await tcRegistry(() => c).metrics());
    } finally {
      c[Symbol.dispose]();
    }
    return 0;
  }),
  'shape stop': cmd('shape stop [--instance NAME]', 'stop a running shaper (it removes its qdisc and filters); of one that was killed, remove what its state file says it attached', { ...instance }, { max: 0 }, async (p) => {
    const name = p.values.instance as string;
    if (!fs.existsSync(statePath(name))) {
      // a start killed after making its pins but before its state file: maps pinned, nothing
      // attached yet (the state is written before the first filter). A live start pins and writes
      // its state under the writers' lock: taken here, such a start is seen with its state.
      const pins = pinDir(name);
      const look = () => {
        if (fs.existsSync(statePath(name))) return 'started' as const;
        // only a directory of tc maps: an LB instance may be named tc-x under the same root
        if (fs.existsSync(pins) && fs.readdirSync(pins).every((f) => (MAP_NAMES as readonly string[]).includes(f))) return removeMapPins(name);
        return null;
      };
      // (no state directory: no start has got as far as its lock, which lives there)
      const cutShort = !fs.existsSync(STATE_DIR) ? look() : withLockWaitSync(writerLockPath(name), look, (pid) => instanceBusy(name, pid));
      if (cutShort === null) throw new LabError(`no running tc instance "${name}" (${instancesNote(instancesIn(STATE_DIR, '', '.json'))})`, 'pnpm lab tc shape start … starts one');
      if (cutShort !== 'started') {
        console.log(`stopped: tc instance "${name}" had been cut short while starting (no state, nothing attached): removed ${cutShort} map pin(s) under ${pins}`);
        return 0;
      }
    }
    const st = readState(name);
    if (instanceAlive(st)) {
      // the daemon removes its qdisc, filters and pins itself on SIGTERM; the stop returns when it
      // is done, so that a script's next step finds the device unshaped
      if (!(await terminate(st.pid, st.owned?.pidStart))) throw new LabError(`tc instance "${name}" (pid ${st.pid}) did not exit within 10 s of SIGTERM; nothing was removed`, `find out why from its log, or end it with kill -9 ${st.pid} and run pnpm lab tc shape stop --instance ${name} again (it removes what the daemon left)`);
      if (!fs.existsSync(statePath(name))) {
        console.log(`stopped tc instance "${name}": pid ${st.pid} exited and removed its qdisc, filters and pins`);
        return 0;
      }
      // it exited without removing its state: what it attached is removed below, as for a crash
    }
    // killed outright, it left its filters enforcing (fail closed) until this explicit stop
    const r = reapDeadInstance(name)!;
    if (r.unproven.length) throw new LabError(`${reapLine(name, r)}; but ${r.dev}${r.netns ? ` (netns ${r.netns})` : ''} still has shaper filters its state does not record as its own`, `if no shaper runs there, remove them: ${r.unproven.join('; ')}`);
    console.log(reapLine(name, r));
    return 0;
  }),
  'filter set': cmd('filter set --config FILE [--instance NAME]', 'replace the filter rules (the config\'s "filters"; classes stay) in one switch', {
    config: { type: 'string', valueName: 'FILE', description: 'a config with a "filters" list (required; "filters: []" removes every rule)' },
    ...instance,
  }, { max: 0 }, async (p) => {
    if (!p.values.config) throw new UsageError('tc filter set needs --config FILE', 'see controller/tc/README.md for the format');
    const raw = loadConfigFile(p.values.config as string);
    checkReplaceKeys(p.values.config as string, raw, { filters: 'always' });
    const rules = validateConfig({ filters: (raw as { filters: unknown }).filters }).rules;
    await changeInstance(p.values.instance as string, (c) => {
      c.apply({ classes: c.model.classes.map((x) => ({ name: x.name, rateBps: x.rateBps, horizonNs: x.horizonNs, horizonAuto: x.horizonAuto, matches: x.matches })), rules });
    });
    console.log(`${rules.length} rule(s) live`);
    return 0;
  }),
  'filter list': cmd('filter list [--instance NAME]', 'filter rules with their counters', { ...instance }, { max: 0 }, async (p) => {
    withInstance(p.values.instance as string, printRules, true);
    return 0;
  }),
};

function usage(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return ['usage: pnpm lab tc <shape|filter> <command> [options]', '', ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(w)}  ${c.spec.summary}`), '', '<command> --help shows its options'].join('\n');
}

export async function tcCommand(argv: string[]): Promise<number> {
  const [group, sub, ...rest] = argv;
  if (!group) throw new UsageError('tc needs a command', 'pnpm lab tc --help lists the commands');
  if (group === '--help' || group === '-h' || group === 'help') {
    console.log(usage());
    return 0;
  }
  if (group !== 'shape' && group !== 'filter') {
    const s = suggest(group, ['shape', 'filter']);
    throw new UsageError(`unknown tc command ${JSON.stringify(group)}${s ? ` (did you mean ${s}?)` : ''}`, 'pnpm lab tc --help lists the commands');
  }
  if (!sub) throw new UsageError(`tc ${group} needs a command`, 'pnpm lab tc --help lists the commands');
  if (sub === '--help' || sub === '-h') {
    console.log(usage());
    return 0;
  }
  const c = COMMANDS[`${group} ${sub}`];
  if (!c && sub.startsWith('-')) {
    // `tc shape --dev x` read as the command "tc shape --dev"
    const names = Object.keys(COMMANDS).filter((n) => n.startsWith(`${group} `)).map((n) => n.slice(group.length + 1));
    throw new UsageError(`tc ${group} needs a command before its options (${names.join(', ')})`, `e.g. pnpm lab tc ${group} ${names[0]} ${sub} …; pnpm lab tc --help lists the commands`);
  }
  if (!c) {
    const s = suggest(`${group} ${sub}`, Object.keys(COMMANDS));
    throw new UsageError(`unknown command "tc ${group} ${sub}"${s ? ` (did you mean tc ${s}?)` : ''}`, 'pnpm lab tc --help lists the commands');
  }
  const p = parseArgs(rest, c.spec);
  if (!p) return 0;
  return c.run(p as Args);
}

