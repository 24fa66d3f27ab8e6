// virtme-ng as a second VM backend (`--vm-backend vng`): for users who already boot kernels with
// `vng`, the same scenario through it, with its boot-to-ready beside the lab's own. virtme-ng is
// installed the way its users install it, from PyPI, into a lab-owned venv outside any home
// directory (/opt/ebpf-lab/virtme-ng, EBPF_LAB_VNG_PREFIX moves it) so every user can run it.
// vng boots one guest per command: a row under this backend boots once per scenario.
//
// Boot-to-ready here = vng's spawn → the first line of our command in the guest (it prints the
// guest's uptime, so the guest-kernel part is known too). vng shares / read-only with overlays
// (like the lab) and gives the out dir read-write with --rwdir.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './paths.ts';
import { LabError } from '../../common/errors.ts';
import { run } from './exec.ts';
import { ensureVenv, venvBinary } from './venv.ts';
import { groupDyingWithUs } from './reaper.ts';
import type { KernelImage } from './kernels.ts';
import { archFacts } from '../../common/arch.ts';
import { qmpHmp } from './hang.ts';
import { tcgAccelArg } from './cmdline.ts';

export const VNG_PREFIX = () => process.env.EBPF_LAB_VNG_PREFIX || '/opt/ebpf-lab/virtme-ng';
export const VNG_PACKAGE = 'virtme-ng';

/** virtme-ng's venv (lab/vm/venv.ts) */
const vngTool = () => ({ prefix: VNG_PREFIX(), packages: [VNG_PACKAGE], bin: 'vng', probe: ['--version'] });

/** vng, where a venv of ours has it (vngStatus runs it: a half-made one says why it fails there) */
export function vngBinary(): string | undefined {
  const bin = venvBinary(vngTool());
  return existsSync(bin) ? bin : undefined;
}

/** Can vng run here, and if not, why (lab doctor prints this). */
export async function vngStatus(): Promise<{ ok: boolean; version?: string; why?: string }> {
  const bin = vngBinary();
  if (!bin) return { ok: false, why: `virtme-ng is not installed in ${VNG_PREFIX()} (pnpm lab setup vng installs it from PyPI)` };
  const v = await run(bin, ['--version'], { reject: false, env: vngEnv() }).catch((e: Error) => ({ exitCode: 1, stdout: Buffer.from(''), stderr: e.message }));
  if (v.exitCode !== 0) return { ok: false, why: `${bin} --version failed: ${v.stderr.trim().split('\n').pop()}` };
  const q = await run(archFacts().qemu, ['--version'], { reject: false }).catch(() => ({ exitCode: 1 }));
  if (q.exitCode !== 0) return { ok: false, why: `${archFacts().qemu} is missing (pnpm lab setup vm)` };
  if (process.getuid?.() !== 0) return { ok: false, why: 'the lab runs scenarios in vng guests as root (vng maps the host user into the guest)' };
  // vng's guest init (virtme-ng-init) opens its command's stdin/stdout/stderr and the exit-status
  // port as /dev/virtio-ports/virtme.*, links only udevd creates; without it the command runs on
  // the console and vng exits 255 whatever the command returned
  if (!udevd()) return { ok: false, why: 'udev is not installed: vng\'s guest finds its command and exit-status ports only through udevd (without it every run exits 255); pnpm lab setup vng installs it' };
  // vng runs `file -L` on busybox before it boots, and exits 1 with a traceback without it
  const f = await run('file', ['--version'], { reject: false }).catch(() => ({ exitCode: 127 }));
  if (f.exitCode !== 0) return { ok: false, why: 'file(1) is not installed: vng runs it before every boot and fails without it; pnpm lab setup vng installs it' };
  return { ok: true, version: v.stdout.toString().trim() };
}

/** pip install virtme-ng into the lab's venv (idempotent; a venv cut short is made again). */
export async function installVng(log: (s: string) => void): Promise<string> {
  return ensureVenv(vngTool(), { log });
}

/** The udevd virtme-ng-init looks for (it runs the host's, in the guest). */
export function udevd(): string | undefined {
  return ['/usr/lib/systemd/systemd-udevd', '/lib/systemd/systemd-udevd'].find((p) => existsSync(p));
}

/** vng runs its helpers (virtme-run) by name: the venv's bin first on PATH. */
function vngEnv(): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${join(VNG_PREFIX(), 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}` };
}

export interface VngRun {
  exitCode: number;
  /** vng spawn → our command's first line in the guest */
  bootMs: number;
  /** the guest's uptime then (kernel + vng's init) */
  guestReadyMs: number;
  /** the guest's clock when the kernel ran vng's /init (from the kernel log; 0 if not found) */
  guestInitMs: number;
  runMs: number;
  argv: string[];
}

const READY = 'LAB-VNG-READY';
const KTEXT = 'LAB-VNG-KTEXT';

/**
 * udev's coldplug in vng's guest loads a module for every emulated device and CPU feature:
 * ~16 s of a 25 s boot to the command under TCG (6.1; kvm_amd alone ~9 s). The lab masks that
 * one rule file in the guest (lab/vm/vng-udev, read-only over /etc/udev/rules.d), so udev only
 * makes the /dev/virtio-ports links vng needs and modules load on demand, as in the lab's own
 * guest. EBPF_LAB_VNG_COLDPLUG=1 keeps vng's full coldplug.
 */
export const UDEV_MASK_DIR = join(REPO_ROOT, 'lab', 'vm', 'vng-udev');
const maskArgs = () => (process.env.EBPF_LAB_VNG_COLDPLUG === '1' ? [] : ['--rodir', `/etc/udev/rules.d=${UDEV_MASK_DIR}`]);

/**
 * The paths virtme-ng shares (its --rwdir pattern, _SAFE_PATH_PATTERN in virtme/commands/run.py):
 * it refuses anything else at start ("invalid --rwdir parameter"), e.g. an --out dir with a comma
 * or a quote, which the lab's own runner shares. Checked before a run starts.
 */
const VNG_SHARABLE = /^[a-zA-Z0-9_+ /.-]+$/;
export function vngCannotShare(dir: string): LabError | undefined {
  if (VNG_SHARABLE.test(dir)) return undefined;
  return new LabError(`--vm-backend vng cannot share ${dir}: virtme-ng takes only letters, digits, spaces and _ + / . - in a shared directory's path`, 'give --out a directory whose path has only those, or use --vm-backend lab');
}

/** vng's --qemu-opts: one bundled word (vng splits it on spaces), none when there is nothing to add */
export function qemuOpts(args: string[]): string[] {
  return args.length ? [`--qemu-opts=${args.join(' ')}`] : [];
}

/** Boot `kernel` with vng and run a /bin/sh script in it; resolves with its exit code and the boot figures. */
export async function runInVng(o: {
  kernel: KernelImage; script: string; rwdir: string;
  /** host dirs the guest may write to, into a tmpfs overlay (like the lab's own guest root) */
  overlays?: string[];
  accel: 'kvm' | 'tcg'; cpus: number; memMB: number;
  timeoutMs: number; signal?: AbortSignal; out: (b: Buffer) => void;
  /** QEMU's monitor (a QMP socket of ours, through vng's --qemu-opts), handed over at spawn: where
   *  a stuck guest's vCPUs are read from, since vng's guest has no control port of ours to ask */
  monitor?: (hmp: (command: string) => Promise<string>) => void;
  /** the guest kernel's _text, once its command started (for symbolizing its vCPUs) */
  onKtext?: (text: bigint) => void;
  /** awaited before a guest that outlived timeoutMs is killed (the diagnosis) */
  beforeKill?: () => Promise<unknown>;
}): Promise<VngRun> {
  const bin = vngBinary();
  if (!bin) throw new LabError(`virtme-ng is not installed in ${VNG_PREFIX()}`, 'pnpm lab setup vng');
  // an abort listener added now would never fire: the guest would run to its end
  if (o.signal?.aborted) throw new LabError('interrupted before vng started');
  const unsharable = vngCannotShare(o.rwdir);
  if (unsharable) throw unsharable;
  // the kernel's "Run /init" line stays in its log buffer however quiet the console: it splits
  // the guest's part into kernel and vng's init (initramfs, virtme-ng-init, udev)
  // and its kernel's _text (KASLR moves it under vng), which names a stuck vCPU's function (hang.ts)
  const script = `echo "${KTEXT} $(grep -m1 ' _text$' /proc/kallsyms | cut -d' ' -f1)"\necho "${READY} $(cut -d' ' -f1 /proc/uptime) $(dmesg 2>/dev/null | sed -n 's/^\\[ *\\([0-9.]*\\)\\] Run .* as init process.*/\\1/p' | head -n 1)"\n${o.script}`;
  // vng wires the guest's stdout/stderr to /proc/self/fd/{1,2}, which it must be able to reopen
  // read-write: Node's stdio pipes are sockets and cannot be, so vng writes to a file we follow
  const logDir = await mkdtemp(join(tmpdir(), `ebpf-lab-vng-${process.pid}-`));
  // vng hands --qemu-opts to QEMU through a shell: the path is ours (tmpdir, pid, mkdtemp's letters)
  const qmp = join(logDir, 'qmp.sock');
  // vng boots the bzImage it is given; 9p because the Debian kernels have it (virtiofs needs a daemon vng may not find)
  const argv = ['--run', o.kernel.bzImage, '--force-9p', '--cpus', String(o.cpus), '--memory', `${o.memMB}M`, '--rwdir', o.rwdir,
    ...(o.overlays ?? []).flatMap((d) => ['--overlay-rwdir', d]),
    ...maskArgs(), ...(o.accel === 'tcg' ? ['--disable-kvm'] : []),
    // one --opt=value word: argparse takes a separate value starting with '-' for an option.
    // Under TCG the lab's own accel (single-threaded: see tcgAccelArg); vng sets none without KVM
    ...qemuOpts([...(o.accel === 'tcg' ? ['-accel', tcgAccelArg()] : []), ...(o.monitor ? ['-qmp', `unix:${qmp},server=on,wait=off`] : [])]), '--exec', script];
  const logFile = join(logDir, 'out.log');
  const fd = openSync(logFile, 'w+');
  const t0 = Date.now();
  // its own group, which we kill whole when done; and which dies with us if we die first
  const [cmd, args] = groupDyingWithUs(bin, argv);
  // TMPDIR: vng's own temp files (its exit-status file) go into this run's dir, so a run killed
  // outright, whose vng is killed before its atexit cleanup, leaves them where the next run's
  // sweep of dead runs' dirs finds them, not loose in /tmp
  const p = spawn(cmd, args, { env: { ...vngEnv(), TMPDIR: logDir }, stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  let bootMs = 0;
  let guestReadyMs = 0;
  let guestInitMs = 0;
  let buf = '';
  let pos = 0;
  const follow = () => {
    let all: Buffer;
    try {
      all = readFileSync(logFile);
    } catch { return; }
    // QEMU opens /proc/self/fd/1 once per port (with O_TRUNC), so the file can shrink or be
    // rewritten: scan all of it for the marker, stream only what grows past the last read
    if (all.length < pos) pos = 0;
    const d = all.subarray(pos);
    if (!d.length) return;
    pos = all.length;
    if (!bootMs) {
      buf = all.toString();
      const m = new RegExp(`${READY} ([0-9.]+) ?([0-9.]*)`).exec(buf);
      if (m) {
        const kt = new RegExp(`${KTEXT} (ffff[0-9a-f]{12})\\b`).exec(buf);
        if (kt) o.onKtext?.(BigInt(`0x${kt[1]}`));
        bootMs = Date.now() - t0;
        guestReadyMs = Math.round(Number(m[1]) * 1000);
        guestInitMs = m[2] ? Math.round(Number(m[2]) * 1000) : 0;
        const rest = buf.slice(buf.indexOf(m[0]) + m[0].length).replace(/^\r?\n/, '');
        if (rest) o.out(Buffer.from(rest));
      }
      return;
    }
    o.out(d);
  };
  const poll = setInterval(follow, 100);
  const killAll = () => { try { process.kill(-p.pid!, 'SIGKILL'); } catch { /* gone */ } };
  o.monitor?.((command) => qmpHmp(qmp, command, 5_000));
  const timer = setTimeout(() => void (o.beforeKill?.() ?? Promise.resolve()).catch(() => undefined).finally(killAll), o.timeoutMs);
  o.signal?.addEventListener('abort', killAll, { once: true });
  const code = await new Promise<number>((res) => {
    p.on('error', (e) => { o.out(Buffer.from(`vng: ${e.message}\n`)); res(127); });
    p.on('close', (c, sig) => res(c ?? (sig ? 128 : 1)));
  });
  clearTimeout(timer);
  clearInterval(poll);
  follow();
  o.signal?.removeEventListener('abort', killAll);
  killAll();
  await rm(logDir, { recursive: true, force: true });
  if (o.signal?.aborted) throw new LabError('interrupted while vng ran the guest command');
  // its last lines: a Python traceback ends with the exception (cut at 400 characters, the message
  // once began mid-traceback)
  const tail = buf.trim().split('\n').filter((l) => l.trim()).slice(-2).join(' | ').slice(-400);
  if (!bootMs) throw new LabError(`vng exited (${code}) before the guest command started${tail ? `: ${tail}` : ''}`);
  return { exitCode: code, bootMs, guestReadyMs, guestInitMs, runMs: Date.now() - t0 - bootMs, argv: [bin, ...argv.slice(0, -1), '<script>'] };
}
