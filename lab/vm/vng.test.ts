// virtme-ng as the second backend, on a real guest (Debian 6.1 from the kernel cache): the
// command's output, a file written to the read-write share and — what used to be lost — its
// exit status come back to the host. One vng boot, ~15-30 s under TCG on 2 cores.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createProgress } from '../../common/progress.ts';
import { REPO_ROOT } from './paths.ts';
import { resolveKernel, type KernelImage } from './kernels.ts';
import { vmKernelArg } from './cli.ts';
import { chooseAccel } from './kvm.ts';
import { runInVng, vngStatus } from './vng.ts';
import { sampleVcpus } from './hang.ts';

const KERNEL = process.env.EBPF_LAB_TEST_KERNEL ?? '6.1';
const status = await vngStatus();
const skipReason = !status.ok ? status.why! : process.env.EBPF_LAB_SKIP_VM ? 'EBPF_LAB_SKIP_VM is set' : '';

describe.skipIf(!!skipReason)(`virtme-ng backend on ${KERNEL} ${skipReason ? `(skipped: ${skipReason})` : ''}`, () => {
  let kernel: KernelImage;
  beforeAll(async () => {
    kernel = await resolveKernel(vmKernelArg(KERNEL), createProgress(process.stderr, true));
  }, 300_000);

  it('runs a command through vng and brings back its output, a file in the rw share and its exit status', async () => {
    const rw = mkdtempSync(join(REPO_ROOT, 'reports', 'vngtest-'));
    try {
      const out: Buffer[] = [];
      const { accel } = await chooseAccel();
      // QEMU's monitor (what a stuck guest's diagnosis reads): sampled while the command runs
      let hmp: ((c: string) => Promise<string>) | undefined;
      let sampled: ReturnType<typeof sampleVcpus> | undefined;
      let ktext: bigint | undefined;
      // 7, not 0 or 1: vng's own failures exit 255 (no exit-status port) or 1
      const r = await runInVng({
        kernel, accel, cpus: 2, memMB: 1024, rwdir: rw, timeoutMs: 240_000,
        out: (b) => {
          out.push(b);
          if (!sampled && hmp && Buffer.concat(out).includes('sample-now')) sampled = sampleVcpus(hmp);
        },
        monitor: (h) => (hmp = h),
        onKtext: (t) => (ktext = t),
        // the checkout is an overlay (writable in the guest, untouched on the host), the rw share is not
        overlays: [REPO_ROOT],
        script: `uname -r; echo sample-now; sleep 3; echo written-in-vng > ${rw}/from-guest.txt; touch ${REPO_ROOT}/.vng-overlay-probe && echo overlay-writable; exit 7`,
      });
      const text = Buffer.concat(out).toString();
      expect(r.exitCode, text).toBe(7);
      expect(text).toContain(kernel.release);
      expect(readFileSync(join(rw, 'from-guest.txt'), 'utf8')).toBe('written-in-vng\n');
      expect(text).toContain('overlay-writable');
      expect(existsSync(join(REPO_ROOT, '.vng-overlay-probe'))).toBe(false);
      expect(r.bootMs).toBeGreaterThan(0);
      expect(r.guestReadyMs).toBeGreaterThan(0);
      expect(r.guestReadyMs).toBeLessThan(r.bootMs);
      expect(sampled, 'the monitor was handed over and the command ran').toBeDefined();
      const { rounds, err } = await sampled!;
      expect(err).toBe('');
      expect(rounds.map((x) => x.map((v) => v.cpu))).toEqual([[0, 1], [0, 1], [0, 1]]);
      // the guest kernel's _text (KASLR under vng: 2 MiB aligned in the kernel's half), what a
      // stuck vCPU's address is symbolized by
      expect(ktext).toBeDefined();
      expect(ktext! >= 0xffffffff80000000n && ktext! % 0x200000n === 0n, ktext!.toString(16)).toBe(true);
      // no vng/QEMU of this run survives it
      const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
      expect(ps.split('\n').filter((l) => l.includes('qemu-system') && l.includes(rw))).toEqual([]);
    } finally {
      if (existsSync(rw)) rmSync(rw, { recursive: true, force: true });
    }
  }, 600_000);

  // The lab's process killed outright (SIGKILL: no teardown of its own runs), as a test harness
  // does to a run past its budget: its vng guest once ran on for 53 min at full CPU.
  it('a lab process killed outright takes its vng guest down, and vng\'s temp files stay in the run\'s own dir', async () => {
    const rw = mkdtempSync(join(REPO_ROOT, 'reports', 'vngkill-'));
    const tmpBefore = new Set(readdirSync(tmpdir()));
    const { accel } = await chooseAccel();
    const src = `const { runInVng } = await import(${JSON.stringify(join(REPO_ROOT, 'lab', 'vm', 'vng.ts'))});
      const o = JSON.parse(process.argv[1]);
      await runInVng({ kernel: o.kernel, accel: o.accel, cpus: 2, memMB: 1024, rwdir: o.rw, timeoutMs: 600_000, out: (b) => process.stdout.write(b), script: 'echo guest-up; sleep 600' });`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', src, JSON.stringify({ kernel, accel, rw })], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const qemu = () => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes('qemu-system') && l.includes(rw));
    try {
      let out = '';
      await new Promise<void>((res, rej) => {
        const t = setTimeout(() => rej(new Error(`the guest did not start within 300 s: ${out.slice(-400)}`)), 300_000);
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('guest-up')) { clearTimeout(t); res(); }
        });
        child.on('exit', (c) => { clearTimeout(t); rej(new Error(`the lab process exited (${c}) before the guest started: ${out.slice(-400)}`)); });
      });
      expect(qemu().length, 'the guest runs').toBeGreaterThan(0);
      child.kill('SIGKILL');
      for (let i = 0; i < 100 && qemu().length; i++) await new Promise((r) => setTimeout(r, 200));
      expect(qemu(), 'QEMU left running after the lab process died').toEqual([]);
      // vng's temp files (virtme_ret*) only in the run's own dir, named to its pid (what the next
      // run's sweep removes); other files of this machine (a build in the background) are not asked about
      const added = readdirSync(tmpdir()).filter((f) => !tmpBefore.has(f) && /virtme|vng|qemu/i.test(f));
      expect(added.filter((f) => !f.startsWith(`ebpf-lab-vng-${child.pid}-`))).toEqual([]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      for (const f of readdirSync(tmpdir())) if (f.startsWith(`ebpf-lab-vng-${child.pid}-`)) rmSync(join(tmpdir(), f), { recursive: true, force: true });
      rmSync(rw, { recursive: true, force: true });
    }
  }, 600_000);
});

describe('vng status (lab doctor)', () => {
  it('says why vng cannot run and what installs it when virtme-ng is missing', async () => {
    const prev = process.env.EBPF_LAB_VNG_PREFIX;
    process.env.EBPF_LAB_VNG_PREFIX = '/nonexistent/ebpf-lab-vng';
    try {
      const s = await vngStatus();
      expect(s.ok).toBe(false);
      expect(s.why).toMatch(/not installed in \/nonexistent\/ebpf-lab-vng .*pnpm lab setup vng/);
    } finally {
      if (prev === undefined) delete process.env.EBPF_LAB_VNG_PREFIX;
      else process.env.EBPF_LAB_VNG_PREFIX = prev;
    }
  });
});
