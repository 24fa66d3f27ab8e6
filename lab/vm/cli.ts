// `pnpm lab vm …`: kernels, fetch, exec, probe-kvm, boot-times.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LabError } from '../errors.ts';
import { createProgress } from '../progress.ts';
import { availableKernels, cachedKernels, configFacts, resolveKernel } from '../../vm-images/kernels.ts';
import { bootGuest, guestScript } from './index.ts';
import { probeKvm } from './kvm.ts';
import { bootedTempDirs, shq, TMP_PREFIX } from './qemu.ts';

const USAGE = `usage: pnpm lab vm <command>
  kernels [--refresh]                     series and versions in the Debian indices, and what is cached
  fetch <kernel>                          download + verify + extract a kernel (5.10, 6.1, 6.12, 7.x, a version, a release)
  exec <kernel> [--timeout S] [--out DIR] -- <cmd…>
                                          boot a guest and run a shell command in it; exits with its code
  probe-kvm [--force]                     does KVM run guests here? (else the lab uses TCG)
  boot-times [--kernels 5.10,6.1,…] [--runs N]
                                          measure qemu start → control channel ready per kernel`;

/** SIGINT/SIGTERM → abort, so QEMU and temp dirs are cleaned up on Ctrl-C. */
export function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const on = () => ac.abort();
  process.on('SIGINT', on);
  process.on('SIGTERM', on);
  return { signal: ac.signal, dispose: () => { process.off('SIGINT', on); process.off('SIGTERM', on); } };
}

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** Boot a guest, run one shell command, stream its output; resolves to its exit code. */
export async function vmExec(kernel: string, command: string, o: { timeoutMs?: number; outDir?: string; quiet?: boolean; signal?: AbortSignal; stdout?: (b: Buffer) => void; stderr?: (b: Buffer) => void } = {}) {
  const progress = createProgress(process.stderr, o.quiet);
  const tmp = await mkdtemp(join(tmpdir(), `${TMP_PREFIX}exec-`));
  bootedTempDirs.push(tmp);
  const t0 = Date.now();
  const timeoutMs = o.timeoutMs ?? 30 * 60_000;
  try {
    const b = await bootGuest({ kernel, progress, outDir: o.outDir, consoleLog: join(tmp, 'console.log'), signal: o.signal, bootTimeoutMs: Math.min(timeoutMs, 90_000) });
    const kill = () => void b.vm.close({ force: true });
    o.signal?.addEventListener('abort', kill, { once: true });
    try {
      const code = await b.vm.exec(guestScript(b, command, { outDir: o.outDir, cwd: process.cwd() }), {
        onStdout: o.stdout ?? ((d) => process.stdout.write(d)),
        onStderr: o.stderr ?? ((d) => process.stderr.write(d)),
        timeoutMs: Math.max(1000, timeoutMs - (Date.now() - t0)),
        signal: o.signal,
      });
      await b.vm.close();
      return { exitCode: code, bootMs: b.vm.bootMs, guestBootMs: Math.round(b.vm.guestUptime * 1000), totalMs: Date.now() - t0, release: b.kernel.release, accel: b.accel };
    } finally {
      o.signal?.removeEventListener('abort', kill);
      await b.vm.close({ force: true });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export async function vmCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const progress = createProgress();
  switch (sub) {
    case 'kernels': {
      const cached = cachedKernels();
      const isCached = (v: string) => cached.some((k) => k.version === v);
      for (const s of await availableKernels(progress)) {
        if (rest.includes('--refresh')) { /* availableKernels refreshes stale indices; --refresh is accepted for habit */ }
        console.log(`${s.series.padEnd(5)} ${s.suite.padEnd(9)} ${s.versions.map((v) => `${v.version} (${v.release})${isCached(v.version) ? ' [cached]' : ''}`).join(', ') || 'index unavailable'}`);
      }
      const other = cached.filter((k) => !k.suite);
      for (const k of other) console.log(`cached ${k.version} (${k.release})`);
      console.log('also: host, or a path to a bzImage[:modules dir]');
      return 0;
    }
    case 'fetch': {
      if (!rest[0]) throw new LabError('vm fetch needs a kernel', 'e.g. pnpm lab vm fetch 6.1');
      for (const spec of rest) {
        const k = await resolveKernel(spec, progress);
        console.log(`${spec}: ${k.version} (${k.release}) → ${k.vmlinux ?? k.bzImage}`);
        const c = configFacts(k);
        console.log(`  ${['BTF', 'BPF_LSM', 'KPROBES', 'XDP_SOCKETS', 'NET_9P', 'VIRTIO_FS'].map((x) => `${x}=${c[x]}`).join(' ')}`);
      }
      return 0;
    }
    case 'exec': {
      const dd = rest.indexOf('--');
      const opts = dd >= 0 ? rest.slice(0, dd) : rest.slice(0, 1);
      const cmd = dd >= 0 ? rest.slice(dd + 1) : rest.slice(1);
      const kernel = opts[0];
      if (!kernel || !cmd.length) throw new LabError('usage: pnpm lab vm exec <kernel> [--timeout S] [--out DIR] -- <cmd…>');
      // one argument is a shell command line; several are an argv to quote
      const command = cmd.length === 1 ? cmd[0]! : cmd.map(shq).join(' ');
      const t = flag(opts, '--timeout');
      const { signal, dispose } = interruptSignal();
      try {
        const r = await vmExec(kernel, command, { timeoutMs: t ? Number(t) * 1000 : undefined, outDir: flag(opts, '--out'), signal });
        progress.info(`exit ${r.exitCode}; boot ${(r.bootMs / 1000).toFixed(1)} s, total ${(r.totalMs / 1000).toFixed(1)} s (${r.release}, ${r.accel})`);
        return r.exitCode;
      } finally {
        dispose();
      }
    }
    case 'probe-kvm': {
      const p = await probeKvm({ force: rest.includes('--force') });
      console.log(`${p.ok ? 'KVM works' : 'KVM unusable'}: ${p.note}`);
      return p.ok ? 0 : 1;
    }
    case 'boot-times': {
      const kernels = (flag(rest, '--kernels') ?? '5.10,6.1,6.12,7.x').split(',');
      const runs = Number(flag(rest, '--runs') ?? 1);
      const rows: string[] = [];
      const { signal, dispose } = interruptSignal();
      try {
        for (const k of kernels) {
          for (let i = 0; i < runs; i++) {
            const r = await vmExec(k, 'true', { quiet: true, signal });
            rows.push(`${k.padEnd(6)} ${r.release.padEnd(22)} ${r.accel}  boot-to-ready ${(r.bootMs / 1000).toFixed(2)} s  (guest uptime at ready ${(r.guestBootMs / 1000).toFixed(2)} s)  total ${(r.totalMs / 1000).toFixed(2)} s`);
            console.log(rows[rows.length - 1]);
          }
        }
      } finally {
        dispose();
      }
      return 0;
    }
    default:
      console.log(USAGE);
      return sub ? 2 : 0;
  }
}
