#!/usr/bin/env -S npx tsx
// The lab's one entry point: `pnpm lab <command> …`. Commands are loaded lazily so that
// `pnpm lab doctor` does not pay for chart rendering or QEMU code it never uses.
import { LabError } from './errors.ts';
import { quietOnEpipe } from './stdio.ts';

quietOnEpipe();

type Command = { summary: string; load: () => Promise<(argv: string[]) => Promise<number>> };

const commands: Record<string, Command> = {
  setup: { summary: 'install the system tools the lab needs (idempotent)', load: async () => (await import('./setup.ts')).setupCommand },
  doctor: { summary: 'probe the running kernel for the BPF features the lab uses', load: async () => (await import('./doctor.ts')).doctorCommand },
  build: { summary: 'compile bpf/*.bpf.c (CO-RE) and generate TS types from BTF', load: async () => (await import('../bpf/build.ts')).buildCommand },
  run: { summary: 'run a scenario: run <scenario> [--kernel host|5.10|6.1|6.12|7.x|<version>|<bzImage>]', load: async () => (await import('./run.ts')).runCommand },
  bench: { summary: 'run a scenario in benchmark mode: bench <scenario> [--kernel …]', load: async () => (await import('./run.ts')).benchCommand },
  list: { summary: 'list scenarios', load: async () => (await import('./run.ts')).listCommand },
  matrix: { summary: 'run scenarios × kernels and write the matrix report', load: async () => (await import('./vm/matrix.ts')).matrixCommand },
  report: { summary: 're-render reports/<run-id>/report.html from its results.json', load: async () => (await import('./report/cli.ts')).reportCommand },
  vm: { summary: 'kernels and VMs: vm kernels | vm fetch <k> | vm exec <k> -- <cmd…>', load: async () => (await import('./vm/cli.ts')).vmCommand },
  lb: { summary: 'XDP load balancer control plane: lb backend add|remove|drain|list …', load: async () => (await import('../controller/lb/cli.ts')).lbCommand },
  policy: { summary: 'runtime security policies: policy apply|list|delete|events …', load: async () => (await import('../controller/security/cli.ts')).policyCommand },
};

function usage(): string {
  const w = Math.max(...Object.keys(commands).map((c) => c.length));
  return ['usage: pnpm lab <command> [options]', '', ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(w)}  ${c.summary}`)].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return (await cmd.load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    if (err instanceof LabError) {
      console.error(`error: ${err.message}${err.fix ? `\n  fix: ${err.fix}` : ''}`);
    } else if (process.env.EBPF_LAB_DEBUG) {
      console.error(err);
    } else {
      // not an expected failure (those are LabErrors): one line, the stack on request
      console.error(`error: ${String(err instanceof Error ? err.message : err).split('\n')[0]}\n  fix: this looks like a bug; EBPF_LAB_DEBUG=1 pnpm lab … prints the stack trace for a report`);
    }
    process.exitCode = (err as { exitCode?: number })?.exitCode ?? 1;
  },
);
