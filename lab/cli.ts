#!/usr/bin/env -S npx tsx
// The lab's one entry point: `pnpm lab <command> …`. Commands are loaded lazily so that
// `pnpm lab doctor` does not pay for chart rendering or QEMU code it never uses.
import { suggest, UsageError } from '../common/args.ts';
import { describeFailure } from '../common/errors.ts';
import { quietOnLostOutput, releaseDeadTerminalAtExit } from '../common/stdio.ts';
import { stopOnFile, stopWithLauncher, stopWithParent } from '../common/signals.ts';

// Relative paths a user types are relative to where they typed them. `./lab.sh` cds to the repo
// and pnpm runs a script in the package's root, so `report <dir>` and `publish … --out site` were
// resolved against the repo instead. Both say where they were called (lab.sh: EBPF_LAB_CALLER_CWD;
// pnpm: INIT_CWD, trusted only for its own "lab" script). Kept in the environment: the lab's own
// subprocesses (matrix rows, started in the repo) resolve the same arguments the same way.
const callerCwd = process.env.EBPF_LAB_CALLER_CWD || (process.env.npm_lifecycle_event === 'lab' ? process.env.INIT_CWD : undefined);
if (callerCwd) {
  try {
    process.chdir(callerCwd);
    process.env.EBPF_LAB_CALLER_CWD = callerCwd;
  } catch {
    /* a directory gone since: stay in the repo */
  }
}

quietOnLostOutput();
releaseDeadTerminalAtExit();
stopOnFile();
stopWithParent();
stopWithLauncher();

type Command = { summary: string; load: () => Promise<(argv: string[]) => Promise<number>> };

const commands: Record<string, Command> = {
  setup: { summary: 'install the system tools the lab needs (idempotent)', load: async () => (await import('./setup.ts')).setupCommand },
  doctor: { summary: 'probe the running kernel for the BPF features the lab uses', load: async () => (await import('./doctor.ts')).doctorCommand },
  build: { summary: 'compile bpf/*.bpf.c (CO-RE) and generate TS types from BTF', load: async () => (await import('../bpf/build.ts')).buildCommand },
  run: { summary: 'run a scenario: run <scenario> [--kernel host|5.10|6.1|6.12|7.x|<version>|<bzImage>]', load: async () => (await import('./run.ts')).runCommand },
  bench: { summary: 'run a scenario in benchmark mode: bench <scenario> [--kernel …]', load: async () => (await import('./run.ts')).benchCommand },
  list: { summary: 'list scenarios', load: async () => (await import('./run.ts')).listCommand },
  matrix: { summary: 'run scenarios × kernels and write the matrix report', load: async () => (await import('./vm/index.ts')).matrixCommand },
  compare: { summary: 'flag headline regressions: compare <baseline results…> <candidate results…> [--fail-on-regression]', load: async () => (await import('./publish/cli.ts')).compareCommand },
  publish: { summary: 'build the static benchmark site: publish <results dir…> --out site/', load: async () => (await import('./publish/cli.ts')).publishCommand },
  report: { summary: 're-render reports/<run-id>/report.html from its results.json', load: async () => (await import('./report/cli.ts')).reportCommand },
  vm: { summary: 'kernels and VMs: vm kernels | vm fetch <k> | vm exec <k> -- <cmd…>', load: async () => (await import('./vm/index.ts')).vmCommand },
  lb: { summary: 'XDP load balancer control plane: lb backend add|remove|drain|list …', load: async () => (await import('../controller/lb/cli.ts')).lbCommand },
  energy: { summary: 'energy per cgroup/process from sched_switch: energy top [--interval MS] …', load: async () => (await import('../controller/energy/cli.ts')).energyCommand },
  trace: { summary: 'zero-code HTTP tracing → OpenTelemetry: trace --service NAME=<cgroup|exe|pid> … [--otlp URL]', load: async () => (await import('../controller/tracing/cli.ts')).traceCommand },
  tc: { summary: 'EDT bandwidth shaping and filter rules at tc: tc shape start|apply|set|list|stop, tc filter set|list', load: async () => (await import('../controller/tc/cli.ts')).tcCommand },
  policy: { summary: 'runtime security policies: policy apply|list|delete|events …', load: async () => (await import('../controller/security/cli.ts')).policyCommand },
  svc: { summary: 'socket-level service LB: svc daemon|start|stop|list|stats, svc backend add|remove|drain|weight …', load: async () => (await import('../controller/svc/cli.ts')).svcCommand },
};

function usage(): string {
  const w = Math.max(...Object.keys(commands).map((c) => c.length));
  return ['usage: pnpm lab <command> [options]', '', ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(w)}  ${c.summary}`)].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  // `help <command>` is that command's --help
  if (name === 'help' && rest.length) return main([...rest, '--help']);
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    console.log(usage());
    return 0;
  }
  // an empty word (an unset shell variable, "$cmd") is a mistake, not a request for help
  if (!name.trim()) throw new UsageError(`the command is empty (${JSON.stringify(name)})`, 'pnpm lab --help lists the commands');
  const cmd = commands[name];
  if (!cmd) {
    const s = suggest(name, Object.keys(commands));
    throw new UsageError(`unknown command ${JSON.stringify(name)}${s ? ` (did you mean ${s}?)` : ''}`, 'pnpm lab --help lists the commands');
  }
  return (await cmd.load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    const f = describeFailure(err, !!process.env.EBPF_LAB_DEBUG);
    console.error(f.text);
    process.exitCode = f.exitCode;
  },
);
