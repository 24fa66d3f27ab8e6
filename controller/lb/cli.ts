// `pnpm lab lb …`: the LB daemon and its admin CLI.
//   lb daemon --config lb.yaml [--socket PATH]     run the controller (in the LB's network namespace)
//   lb backend add|remove|drain|weight|list <vip> [<addr[:port]>] [--weight N]
//   lb vip add <vip> <addr>… | remove <vip> | list
//   lb apply <config>   lb stats   lb metrics   lb stop [--purge]
// The CLI talks to the daemon's unix socket (--instance NAME or --socket PATH).
import path from 'node:path';
import { LabError } from '../../lab/errors.ts';
import { ValidationError } from './addr.ts';
import { LbApiError, LbClient } from './client.ts';
import { loadConfigFile, validateConfig } from './config.ts';
import { LbController } from './controller.ts';
import { serveAdmin, socketPath } from './server.ts';

function flags(argv: string[]): { pos: string[]; opt: Record<string, string | true> } {
  const pos: string[] = [];
  const opt: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) {
      const [k, v] = a.slice(2).split('=', 2) as [string, string | undefined];
      if (v !== undefined) opt[k] = v;
      else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--') && k !== 'purge' && k !== 'json') opt[k] = argv[++i]!;
      else opt[k] = true;
    } else pos.push(a);
  }
  return { pos, opt };
}

const USAGE = `usage: pnpm lab lb <command>
  daemon --config FILE [--socket PATH]        run the controller (inside the LB's network namespace)
  backend add <vip> <addr[:port]> [--weight N] [--mac MAC]
  backend remove|drain <vip> <addr[:port]>
  backend weight <vip> <addr[:port]> <N>
  backend list [<vip>]
  vip add <vip> <addr>… [--forwarding dsr|ipip]  |  vip remove <vip>  |  vip list
  apply <config-file>    make the running LB match a config file (diff, then apply)
  stats | metrics | stop [--purge]
  <vip> is tcp://ADDR:PORT or udp://[ADDR6]:PORT; --instance NAME or --socket PATH picks the daemon`;

export async function runDaemon(configFile: string, socketOverride?: string): Promise<number> {
  const raw = loadConfigFile(configFile);
  const cfg = validateConfig(raw);
  const log = (m: string) => console.error(`[lb ${cfg.instance}] ${m}`);
  const c = await LbController.start(raw, { log });
  const socket = socketOverride ?? socketPath(cfg.instance);
  const srv = await serveAdmin(c, { socket, listen: cfg.listen });
  log(`admin API on ${socket}${cfg.listen ? ` and http://${cfg.listen}` : ''} (${c.startedAs})`);
  console.log(JSON.stringify({ ready: true, socket, startedAs: c.startedAs, attach: c.attachResult }));
  const sig = new Promise<{ purge: boolean }>((res) => {
    for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => res({ purge: false }));
  });
  const { purge } = await Promise.race([srv.shutdown, sig]);
  await srv.close();
  c.stop({ purge });
  log(purge ? 'stopped and purged (XDP detached, pins removed)' : 'stopped; XDP program and maps stay pinned for the next start');
  return 0;
}

export async function lbCommand(argv: string[]): Promise<number> {
  const { pos, opt } = flags(argv);
  const [cmd, sub, ...rest] = pos;
  if (!cmd || opt.help) {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  try {
    if (cmd === 'daemon') {
      if (typeof opt.config !== 'string') throw new LabError('lb daemon needs --config FILE', 'see controller/lb/README or the xdp-lb scenario for an example');
      return await runDaemon(opt.config, typeof opt.socket === 'string' ? opt.socket : undefined);
    }
    const api = new LbClient(typeof opt.socket === 'string' ? opt.socket : socketPath(typeof opt.instance === 'string' ? opt.instance : 'default'));
    const print = (v: unknown) => console.log(typeof v === 'string' ? v : JSON.stringify(v, null, 2));
    const need = (v: string | undefined, what: string): string => {
      if (!v) throw new LabError(`missing ${what}`, USAGE);
      return v;
    };
    switch (['apply', 'stats', 'metrics', 'stop'].includes(cmd) ? cmd : `${cmd} ${sub ?? ''}`.trim()) {
      case 'backend add':
        print(await api.addBackend(need(rest[0], '<vip>'), need(rest[1], '<addr>'), { ...(opt.weight ? { weight: Number(opt.weight) } : {}), ...(typeof opt.mac === 'string' ? { mac: opt.mac } : {}) }));
        return 0;
      case 'backend remove':
        print(await api.removeBackend(need(rest[0], '<vip>'), need(rest[1], '<addr>')));
        return 0;
      case 'backend drain':
        print(await api.drain(need(rest[0], '<vip>'), need(rest[1], '<addr>')));
        return 0;
      case 'backend weight':
        print(await api.weight(need(rest[0], '<vip>'), need(rest[1], '<addr>'), Number(need(rest[2], '<weight>'))));
        return 0;
      case 'backend list':
      case 'vip list': {
        const s = await api.state();
        const rows = s.vips.filter((v) => !rest[0] || v.vip === rest[0]);
        for (const v of rows) {
          console.log(`${v.vip}  (slot ${v.slot}, ${v.forwarding === 'ipip' ? `ipip from ${v.tunnelSource}` : 'dsr'}, ring generation ${v.generation}${v.healthCheck ? ', health-checked' : ''})`);
          for (const b of v.backends) console.log(`  ${b.address}:${b.port}  weight ${b.weight}  ${b.state.padEnd(8)} ring ${(b.ringShare * 100).toFixed(1)}%  mac ${b.mac}`);
        }
        return 0;
      }
      case 'vip add':
        print(await api.addVip(need(rest[0], '<vip>'), rest.slice(1).map((a) => ({ address: a })), undefined, typeof opt.forwarding === 'string' ? (opt.forwarding as 'dsr' | 'ipip') : undefined));
        return 0;
      case 'vip remove':
        print(await api.removeVip(need(rest[0], '<vip>')));
        return 0;
      case 'apply':
        print(await api.apply({ file: path.resolve(need(sub, '<config-file>')) }));
        return 0;
      case 'stats':
        print(await api.stats());
        return 0;
      case 'metrics':
        print(await api.metrics());
        return 0;
      case 'stop':
        print(await api.shutdown(opt.purge === true));
        return 0;
      default:
        console.error(USAGE);
        return 2;
    }
  } catch (e) {
    if (e instanceof LbApiError || e instanceof ValidationError) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ECONNREFUSED') {
      console.error(`error: no LB daemon at ${(e as { address?: string }).address ?? 'its socket'}: start one with pnpm lab lb daemon --config FILE`);
      return 1;
    }
    throw e;
  }
}
