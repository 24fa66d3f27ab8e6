// `pnpm lab vm …`: kernels, fetch, exec, probe-kvm, boot-times.
import { REPO_ROOT } from '../../common/dist.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path, { join } from 'node:path';
import { parseArgs, suggest, UsageError, type CommandSpec, type Opts } from '../../common/args.ts';
import { LabError } from '../../common/errors.ts';
import { createProgress } from '../../common/progress.ts';
import { interruptSignal, stopExitCode, type StopSignal } from '../../common/signals.ts';
import { availableKernels, cachedKernels, checkKernel, configFacts, resolveKernel } from './kernels.ts';
import { checkNotARun, checkOutDir } from '../../common/out-dir.ts';
import { ensureTools } from '../setup.ts';
import { bootGuest, guestScript } from './guest.ts';
import { parseKernelSpec, type VmKernelSpec } from './spec.ts';
import { probeKvm } from './kvm.ts';
import { bootTimes } from './boot-times.ts';
import { bootedTempDirs, shq, TMP_PREFIX } from './qemu.ts';

const USAGE = `usage: pnpm lab vm <command>
  kernels [--refresh]                     series and versions in the Debian indices, and what is cached
  fetch <kernel>                          download + verify + extract a kernel (5.10, 6.1, 6.12, 7.x, a version, a release)
  exec <kernel> [--timeout S] [--out DIR] -- <cmd…>
                                          boot a guest and run a shell command in it; exits with its code
  probe-kvm [--force]                     does KVM run guests here? (else the lab uses TCG)
  boot-times [--kernels 5.10,6.1,…] [--runs N] [--out DIR]
                                          measure qemu start → control channel ready per kernel`;

/** A kernel argument of a vm command: any --kernel except host (these commands boot a guest). */
export function vmKernelArg(text: string): VmKernelSpec {
  const k = parseKernelSpec(text, 'the kernel');
  if (k.kind === 'host') throw new UsageError('"host" is this machine\'s kernel, not a VM kernel', 'name a VM kernel: 5.10, 6.1, 6.12, 7.x, a Debian version or a bzImage path');
  return k;
}

/** Every kernel argument parsed and checked before the first fetch or boot (a typo in the last one costs nothing). */
export async function vmKernelArgs(texts: string[]): Promise<VmKernelSpec[]> {
  const ks = texts.map(vmKernelArg);
  for (const k of ks) await checkKernel(k);
  return ks;
}

/** Boot a guest, run one shell command, stream its output; resolves to its exit code. */
export async function vmExec(spec: VmKernelSpec, command: string, o: { timeoutMs?: number; outDir?: string; quiet?: boolean; signal?: AbortSignal; stdout?: (b: Buffer) => void; stderr?: (b: Buffer) => void } = {}) {
  const progress = createProgress(process.stderr, o.quiet);
  const tmp = await mkdtemp(join(tmpdir(), `${TMP_PREFIX}exec-${process.pid}-`));
  bootedTempDirs.push(tmp);
  const t0 = Date.now();
  const timeoutMs = o.timeoutMs ?? 30 * 60_000;
  try {
    const kernel = await resolveKernel(spec, progress, o.signal);
    const b = await bootGuest({ kernel, progress, outDir: o.outDir, consoleLog: join(tmp, 'console.log'), signal: o.signal, bootTimeoutMs: Math.min(timeoutMs, 90_000) });
    const kill = () => void b.vm.close({ force: true });
    o.signal?.addEventListener('abort', kill, { once: true });
    try {
      const left = Math.max(1000, timeoutMs - (Date.now() - t0));
      // the caller's directory, as on the host: the guest sees the host's tree, but not its /run,
      // /proc, /sys or /dev (its own): from there, the lab's root
      const cwd = /^\/(run|proc|sys|dev)(\/|$)/.test(process.cwd()) ? REPO_ROOT : process.cwd();
      const code = await b.vm.exec(guestScript(b, command, { outDir: o.outDir, cwd }), {
        onStdout: o.stdout ?? ((d) => process.stdout.write(d)),
        onStderr: o.stderr ?? ((d) => process.stderr.write(d)),
        timeoutMs: left,
        signal: o.signal,
      }).catch((e: unknown) => {
        // the budget covers the boot too: "timed out after 3 s" read as a mistake with --timeout 5,
        // and the console tail that follows it is the boot log, which says nothing about a command
        if (e instanceof Error && /^timed out after/.test(e.message)) {
          throw new LabError(`the command did not finish within --timeout ${Math.round(timeoutMs / 1000)} s (the guest booted in ${(b.vm.bootMs / 1000).toFixed(1)} s, the command had the ${(left / 1000).toFixed(0)} s left); the guest was killed${b.vm.lastHang ? `. ${b.vm.lastHang.summary}` : ''}`, 'raise --timeout');
        }
        throw e;
      });
      await b.vm.close();
      return { exitCode: code, bootMs: b.vm.bootMs, guestBootMs: Math.round(b.vm.guestUptime * 1000), totalMs: Date.now() - t0, release: b.kernel.release, accel: b.accel, phases: b.phases, bootRetries: b.bootRetries, accelFallback: b.accelFallback };
    } finally {
      o.signal?.removeEventListener('abort', kill);
      await b.vm.close({ force: true });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

const SUB = {
  kernels: { usage: 'pnpm lab vm kernels [--refresh]', summary: 'series and versions in the Debian indices, and what is cached', options: { refresh: { type: 'boolean', description: 'read the indices from the mirror again (cached copies are kept 6 h)' } } },
  fetch: { usage: 'pnpm lab vm fetch <kernel>…', summary: 'download, verify and extract kernels (5.10, 6.1, 6.12, 7.x, a version, a release)', options: {}, positionals: { names: ['kernel'], min: 1 } },
  exec: {
    usage: 'pnpm lab vm exec <kernel> [--timeout S] [--out DIR] -- <cmd…>', summary: 'boot a guest and run a shell command in it; exits with its code (128+n when a stop signal ends it; through pnpm an exit of 127 reads as 1: ./lab.sh passes it). Its stdin is /dev/null: put input in a file under the shared checkout or --out',
    options: { timeout: { type: 'int', min: 1, max: 86_400, valueName: 'S', description: 'seconds before the guest is killed (default 1800)' }, out: { type: 'string', valueName: 'DIR', description: 'existing host directory shared read-write at the same path' } },
    positionals: { names: ['kernel'], min: 1, max: 1 },
  },
  'probe-kvm': { usage: 'pnpm lab vm probe-kvm [--force]', summary: 'does KVM run guests here? (else the lab uses TCG)', options: { force: { type: 'boolean', description: 'ignore the cached answer' } } },
  'boot-times': {
    usage: 'pnpm lab vm boot-times [--kernels 5.10,6.1,…] [--runs N] [--out DIR]', summary: 'measure qemu start → control channel ready per kernel, stored as a run',
    options: {
      kernels: { type: 'list', default: '5.10,6.1,6.12,7.x', valueName: 'K,K', description: 'kernels to boot' },
      runs: { type: 'int', min: 1, default: 1, valueName: 'N', description: 'boots per kernel (interleaved rounds: every kernel once per round)' },
      out: { type: 'string', valueName: 'DIR', description: 'where results.json and report.html go (default reports/boot-times-<stamp>)' },
    },
  },
} as const satisfies Record<string, CommandSpec<Opts>>;

export async function vmCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  // a missing command is a usage mistake: one line and the fix, as every command group (lb, svc, tc …)
  if (!sub) throw new UsageError('vm needs a command', 'pnpm lab vm --help lists the commands');
  if (sub === '--help' || sub === '-h') {
    console.log(USAGE);
    return 0;
  }
  if (!(sub in SUB)) {
    const s = suggest(sub, Object.keys(SUB));
    throw new UsageError(`unknown vm command ${JSON.stringify(sub)}${s ? ` (did you mean ${s}?)` : ''}`, `commands: ${Object.keys(SUB).join(', ')}`);
  }
  const progress = createProgress();
  switch (sub as keyof typeof SUB) {
    case 'kernels': {
      const p = parseArgs(rest, SUB.kernels);
      if (!p) return 0;
      const cached = cachedKernels();
      const isCached = (v: string) => cached.some((k) => k.version === v);
      for (const s of await availableKernels(progress, { refresh: p.values.refresh === true })) {
        console.log(`${s.series.padEnd(5)} ${s.suite.padEnd(9)} ${s.versions.map((v) => `${v.version} (${v.release})${isCached(v.version) ? ' [cached]' : ''}`).join(', ') || 'index unavailable'}`);
      }
      const other = cached.filter((k) => !k.suite);
      for (const k of other) console.log(`cached ${k.version} (${k.release})`);
      console.log('also: host, or a path to a bzImage[:modules dir]');
      return 0;
    }
    case 'fetch': {
      const p = parseArgs(rest, SUB.fetch);
      if (!p) return 0;
      const specs = await vmKernelArgs(p.positionals);
      // xz/zstd/cpio: without them a fetch died with "spawn xz ENOENT" as an internal error
      await ensureTools(['vm'], (s) => progress.info(s));
      for (const [i, spec] of p.positionals.entries()) {
        const k = await resolveKernel(specs[i]!, progress);
        console.log(`${spec}: ${k.version} (${k.release}) → ${k.vmlinux ?? k.bzImage}`);
        const c = configFacts(k);
        console.log(`  ${['BTF', 'BPF_LSM', 'KPROBES', 'XDP_SOCKETS', 'NET_9P', 'VIRTIO_FS'].map((x) => `${x}=${c[x]}`).join(' ')}`);
      }
      return 0;
    }
    case 'exec': {
      const p = parseArgs(rest, SUB.exec);
      if (!p) return 0;
      const cmd = p.rest;
      if (!cmd.length) throw new UsageError('vm exec needs a command after --', `usage: ${SUB.exec.usage}`);
      const [kernel] = await vmKernelArgs(p.positionals);
      // QEMU shares the directory as it is: a missing one fails the boot with QEMU's own message
      if (p.values.out !== undefined) checkOutDir(p.values.out, { mustExist: true, example: '--out /tmp' });
      // after the input checks: bad input installs nothing
      await ensureTools(['vm'], (s) => progress.info(s));
      // one argument is a shell command line; several are an argv to quote
      const command = cmd.length === 1 ? cmd[0]! : cmd.map(shq).join(' ');
      const { signal, dispose, stoppedBy } = interruptSignal();
      try {
        const r = await vmExec(kernel!, command, { timeoutMs: p.values.timeout ? p.values.timeout * 1000 : undefined, outDir: p.values.out, signal });
        progress.info(`exit ${r.exitCode}; boot ${(r.bootMs / 1000).toFixed(1)} s, total ${(r.totalMs / 1000).toFixed(1)} s (${r.release}, ${r.accel})`);
        return r.exitCode;
      } catch (e) {
        throw stopped(e, stoppedBy());
      } finally {
        dispose();
      }
    }
    case 'probe-kvm': {
      const p = parseArgs(rest, SUB['probe-kvm']);
      if (!p) return 0;
      const k = await probeKvm({ force: p.values.force === true });
      console.log(`${k.ok ? 'KVM works' : 'KVM unusable'}: ${k.note}`);
      return k.ok ? 0 : 1;
    }
    case 'boot-times': {
      const p = parseArgs(rest, SUB['boot-times']);
      if (!p) return 0;
      const specs = await vmKernelArgs(p.values.kernels ?? []);
      // a run's directory is its own, as for lab run (a hello-openat run's results were replaced)
      if (p.values.out !== undefined) {
        checkOutDir(p.values.out, { example: '--out /tmp/boot-times' });
        checkNotARun(p.values.out);
      }
      const { signal, dispose, stoppedBy } = interruptSignal();
      try {
        const byText = new Map(specs.map((k) => [k.text, k]));
        const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
        const { results, outDir } = await bootTimes([...byText.keys()], p.values.runs ?? 1, async (k) => {
          const r = await vmExec(byText.get(k)!, 'true', { quiet: true, signal });
          if (r.exitCode !== 0) throw new Error(`the guest on ${k} could not run \`true\` (exit ${r.exitCode})`);
          return { release: r.release, accel: r.accel, phases: r.phases, totalMs: r.totalMs };
        }, {
          outDir: p.values.out,
          onPartial: (dir) => console.error(`the boots so far are kept: ${path.join(dir, 'report.html')}`),
          onSample: (x) => console.log(`${x.kernel.padEnd(6)} ${x.release.padEnd(22)} ${x.accel}  boot-to-ready ${s(x.phases.readyMs)}  = qemu ${s(x.phases.qemuMs)} + kernel ${s(x.phases.kernelMs)} + init ${s(x.phases.initMs)} + root mount ${s(x.phases.mountMs)}   total ${s(x.totalMs)}`),
        });
        for (const k of results.summary) console.log(`${k.kernel.padEnd(6)} median ${s(k.readyMs.median)} (${s(k.readyMs.min)}–${s(k.readyMs.max)}); ≤ 3 s: ${k.goal.verdict}, ${k.goal.detail}`);
        if (results.context?.busy.length) console.log(`busy machine: ${results.context.busy.join('; ')}`);
        console.log(`report: ${path.join(outDir, 'report.html')}`);
      } catch (e) {
        throw stopped(e, stoppedBy());
      } finally {
        dispose();
      }
      return 0;
    }
  }
}

/** a stop signal's error exits 128 + its number, as the shell reports a process it ended (it exited 1, as a failed command) */
function stopped(e: unknown, sig: StopSignal | undefined): unknown {
  if (!sig) return e;
  return Object.assign(new LabError(`stopped by ${sig}: ${(e as Error)?.message?.split('\n')[0] ?? String(e)}`), { exitCode: stopExitCode(sig) ?? 1 });
}
