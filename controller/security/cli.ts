// `pnpm lab policy …`: the operator's view of the security controller. Rules live in maps, so the
// CLI edits the maps a running `policy daemon` pinned under /sys/fs/bpf/ebpf-lab/security; the
// daemon owns the programs and the event stream (appended to /run/ebpf-lab/security/events.jsonl).
import fs from 'node:fs';
import { PolicyError, readPolicyFile } from './policy.ts';
import { EVENTS_PATH, SecurityController, pinnedStore } from './controller.ts';
import { resolveShells } from './files.ts';
import { deferSignalsToCaller } from '../libbpf/index.ts';

const USAGE = `usage: pnpm lab policy <command>
  daemon [--lsm off]          load and attach the programs, pin the maps, stream events (until Ctrl-C)
  apply <file.yaml|json>      create or update the policies in the file (live: no program reload)
  validate <file>             check a policy file without applying it
  list [--json]               policies in force, with their rule ids
  delete <name…> | --all      remove policies
  events [--follow] [--json]  decisions (blocked / would-block) as JSON lines
  shells                      the binaries "shells" resolves to on this system`;

export async function policyCommand(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const flags = new Set(rest.filter((a) => a.startsWith('--')));
  const args = rest.filter((a) => !a.startsWith('--'));
  try {
    switch (cmd) {
      case 'daemon':
        return await daemon(rest.includes('--lsm') && rest[rest.indexOf('--lsm') + 1] === 'off');
      case 'validate':
      case 'apply': {
        if (!args[0]) return usage();
        const policies = readPolicyFile(args[0]);
        if (cmd === 'validate') {
          console.log(`${args[0]}: ${policies.length} polic${policies.length === 1 ? 'y' : 'ies'} valid`);
          return 0;
        }
        const h = await pinnedStore();
        try {
          for (const r of h.store.apply(policies)) {
            console.log(`${r.action} ${r.name} (policy ${r.policyId}, slot ${r.slot}): ${r.execEntries} exec and ${r.egressEntries} egress entries written in ${r.writeMs.toFixed(2)} ms`);
            for (const rule of r.rules) console.log(`  rule ${rule.id}: ${rule.name}`);
          }
        } finally {
          h.close();
        }
        return 0;
      }
      case 'list': {
        const h = await pinnedStore();
        try {
          const l = h.store.list();
          if (flags.has('--json')) console.log(JSON.stringify(l, null, 2));
          else if (!l.length) console.log('no policies');
          else
            for (const p of l) {
              const sel = p.selector.kind === 'cgroup' ? `cgroup ${p.selector.dir}` : `executable ${p.policy.select.executable}`;
              console.log(`${p.name}  ${p.policy.mode}  ${sel}${p.policy.select.uid !== undefined ? ` uid ${p.policy.select.uid}` : ''}  (applied ${p.appliedAt})`);
              for (const r of p.rules) console.log(`  rule ${r.id}: ${r.name}`);
              for (const i of p.identities ?? []) console.log(`  binary ${i.path}: ${BigInt(i.dev) >> 20n}:${BigInt(i.dev) & 0xfffffn}:${i.ino} (${i.how}${i.why ? `: ${i.why}` : ''})`);
            }
        } finally {
          h.close();
        }
        return 0;
      }
      case 'delete': {
        const h = await pinnedStore();
        try {
          if (flags.has('--all')) h.store.deleteAll();
          else {
            if (!args.length) return usage();
            for (const n of args) {
              if (!h.store.delete(n)) {
                console.error(`no policy "${n}" (have: ${Object.keys(h.store.state.policies).join(', ') || 'none'})`);
                return 1;
              }
              console.log(`deleted ${n}`);
            }
          }
        } finally {
          h.close();
        }
        return 0;
      }
      case 'events':
        return await events(flags.has('--follow'));
      case 'shells':
        for (const s of resolveShells()) console.log(`${s.path}  dev ${s.dev >> 20n}:${s.dev & 0xfffffn} ino ${s.ino}`);
        return 0;
      default:
        return usage();
    }
  } catch (e) {
    if (e instanceof PolicyError) {
      console.error(e.message);
      console.error('nothing was changed: the running policies are as before');
      return 1;
    }
    throw e;
  }
}

function usage(): number {
  console.error(USAGE);
  return 2;
}

async function daemon(lsmOff: boolean): Promise<number> {
  // our stop path unpins and detaches in order; the binding's default would just exit
  deferSignalsToCaller();
  const c = await SecurityController.start({ pin: true, lsm: lsmOff ? 'off' : 'auto' });
  const m = c.mechanisms;
  console.error(`security controller ${process.pid}: exec via ${m.exec} (${m.lsmEvidence}); egress via ${m.egress.join(', ') || 'nothing'}`);
  for (const u of m.unsupported) console.error(`unsupported: ${u.hook} on ${fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}: ${u.evidence}`);
  fs.writeFileSync(EVENTS_PATH, '');
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  const onSig = () => stop();
  process.on('SIGINT', onSig);
  process.on('SIGTERM', onSig);
  const rb = c.events();
  const pump = (async () => {
    for await (const batch of rb.batches()) {
      c.store.reload(); // rule names may have changed through the CLI
      const lines = batch.map((e) => JSON.stringify(c.format(e))).join('\n') + '\n';
      fs.appendFileSync(EVENTS_PATH, lines);
      process.stdout.write(lines);
    }
  })();
  await stopped;
  c.close(); // closes the ring buffer (ends the pump), unpins, detaches
  await pump.catch(() => {});
  process.off('SIGINT', onSig);
  process.off('SIGTERM', onSig);
  return 0;
}

async function events(follow: boolean): Promise<number> {
  if (!fs.existsSync(EVENTS_PATH)) {
    console.error(`no events file ${EVENTS_PATH}: is \`pnpm lab policy daemon\` running?`);
    return 1;
  }
  let pos = 0;
  const dump = () => {
    const size = fs.statSync(EVENTS_PATH).size;
    if (size < pos) pos = 0; // a new daemon truncated it
    if (size === pos) return;
    const fd = fs.openSync(EVENTS_PATH, 'r');
    const buf = Buffer.alloc(size - pos);
    fs.readSync(fd, buf, 0, buf.length, pos);
    fs.closeSync(fd);
    const end = buf.lastIndexOf(10) + 1; // whole lines only
    process.stdout.write(buf.subarray(0, end));
    pos += end;
  };
  dump();
  while (follow && fs.existsSync(EVENTS_PATH)) {
    await new Promise((r) => setTimeout(r, 200));
    dump();
  }
  return 0;
}
