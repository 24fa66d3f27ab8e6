// One QEMU guest: boot, control channel, run scripts, tear down. Every exit path — success,
// guest failure, timeout, abort, an exception in our own code — goes through close(), which
// kills QEMU and virtiofsd and removes the temp dir; setpriv --pdeathsig makes the kernel kill
// them too if this Node process itself is killed.
import { spawn, type ChildProcess } from 'node:child_process';
import { dyingWithUs } from './reaper.ts';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LabError } from '../../common/errors.ts';
import { shq } from '../../common/printable.ts';
import type { Progress } from '../../common/progress.ts';
import type { KernelImage } from './kernels.ts';
import type { Initramfs } from './initramfs.ts';
import { archFacts } from '../../common/arch.ts';
import { guestCmdline, machineArg, tcgAccelArg } from './cmdline.ts';
import { wireQemuArgs } from './wire.ts';
import { answeredReport, qmpHmp, sampleVcpus, unansweredReport, type HangReport } from './hang.ts';
import { kernelSymbols } from './symbols.ts';

/**
 * A value inside a QEMU option list (-chardev, -fsdev …): a comma there ends the value, and QEMU
 * reads a doubled one as a comma. An --out dir named "a,b" made QEMU refuse to start.
 */
export function qemuOpt(v: string): string {
  return v.replaceAll(',', ',,');
}

/** a value inside the C virtiofsd's -o list (FUSE option syntax: backslash escapes a comma) */
export function fuseOpt(v: string): string {
  return v.replace(/[\\,]/g, (c) => `\\${c}`);
}

export const TMP_PREFIX = 'ebpf-lab-vm-';
/** temp dirs of every guest this process booted: tests check none of them (or a process using them) survives */
export const bootedTempDirs: string[] = [];
const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

export interface BootOptions {
  kernel: KernelImage;
  initramfs: Initramfs;
  accel: 'kvm' | 'tcg';
  fs: '9p' | 'virtiofs';
  /** host dir shared read-write at the same path in the guest */
  outDir?: string;
  net: 'tap' | 'user' | 'none';
  /** add the two-port virtio-net wire (lab/vm/wire.ts) */
  wire?: boolean;
  cpus: number;
  memMB: number;
  /** kernel console output goes here */
  consoleLog: string;
  append?: string;
  bootTimeoutMs: number;
  progress: Progress;
  signal?: AbortSignal;
}

export interface ExecOptions {
  onStdout: (b: Buffer) => void;
  onStderr: (b: Buffer) => void;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** how long a timed-out command's guest gets to answer diagnose() */
  diagnoseMs?: number;
}

function spawnKillable(cmd: string, args: string[]): ChildProcess {
  // pdeathsig: if this process dies without cleaning up (SIGKILL, OOM), the kernel kills QEMU too.
  // detached: a terminal Ctrl-C reaches only us, so QEMU is stopped by our teardown, not by the
  // signal racing it (QEMU quits on SIGINT and we would report a crash).
  const [c, a] = dyingWithUs(cmd, args);
  return spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
}

/** Last resort when the process exits without awaiting close(): synchronous kill + rm. */
const live = new Set<Vm>();
process.on('exit', () => {
  for (const vm of live) vm.killSync();
});

async function waitFor(cond: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const t = Date.now();
  while (!(await cond())) {
    if (Date.now() - t > ms) throw new LabError(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function readFrom(file: string, offset: number, max = 256 * 1024): string {
  try {
    const b = readFileSync(file);
    return b.subarray(Math.max(offset, b.length - max)).toString('utf8');
  } catch {
    return '';
  }
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no console output)';
  }
}

export { shq }; // the guest's /bin/sh takes the same quoting

export class Vm {
  readonly startedAt = Date.now();
  bootMs = 0;
  /** guest uptime (s) when it said READY: kernel + init time without QEMU/firmware start */
  guestUptime = 0;
  /** the guest's clock (s) at READY, /init start, before and after the root mount (init.sh) */
  readyMarks: number[] = [];
  private qemu?: ChildProcess;
  private daemons: ChildProcess[] = [];
  private servers: net.Server[] = [];
  private ports: Record<string, net.Socket> = {};
  private lines: string[] = [];
  private lineWaiters: (() => void)[] = [];
  private qemuStderr = '';
  private exited = false;
  private exitWaiters: (() => void)[] = [];
  private closing?: Promise<void>;
  private busy = false;
  /** the kernel's _text at run time (KTEXT from init.sh), for symbolizing vCPU addresses */
  private ktext?: bigint;
  private diagWaiters: (() => void)[] = [];
  /** what diagnose() found, the last time the host gave up on a command */
  lastHang?: HangReport;
  private constructor(readonly opts: BootOptions, readonly tmp: string) {}

  static async boot(opts: BootOptions): Promise<Vm> {
    const tmp = await mkdtemp(join(tmpdir(), `${TMP_PREFIX}${process.pid}-`));
    bootedTempDirs.push(tmp);
    const vm = new Vm(opts, tmp);
    live.add(vm);
    try {
      await vm.start();
      return vm;
    } catch (e) {
      await vm.close();
      throw e;
    }
  }

  private onLine(cb: () => void) { this.lineWaiters.push(cb); }

  private async listen(name: string): Promise<string> {
    const path = join(this.tmp, `${name}.sock`);
    const srv = net.createServer((sock) => {
      this.ports[name] = sock;
      if (name === 'ctl') {
        let buf = '';
        sock.on('data', (d) => {
          buf += d.toString();
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i).trim();
            buf = buf.slice(i + 1);
            // init's asides, not answers to a command: kept out of the line queue
            if (line.startsWith('KTEXT ')) {
              // a kernel address, not the zeros kallsyms shows where kptr_restrict hides them
              if (/^KTEXT ffff[0-9a-f]{12}$/.test(line)) this.ktext = BigInt(`0x${line.slice(6)}`);
              continue;
            }
            if (line === 'DIAG-DONE') {
              for (const w of this.diagWaiters.splice(0)) w();
              continue;
            }
            this.lines.push(line);
            for (const w of this.lineWaiters.splice(0)) w();
          }
        });
      }
      sock.on('error', () => { /* QEMU went away; handled by the exit watcher */ });
    });
    this.servers.push(srv);
    await new Promise<void>((res, rej) => srv.listen(path, res).once('error', rej));
    return path;
  }

  private async startVirtiofsd(tag: string, source: string): Promise<string[]> {
    if (!existsSync(VIRTIOFSD)) throw new LabError(`${VIRTIOFSD} not found`, 'apt-get install qemu-system-x86');
    const sock = join(this.tmp, `${tag}.vfs.sock`);
    // QEMU 7.2's C virtiofsd has no read-only mode: the guest mounts the root ro, which is what protects the host tree.
    const d = spawnKillable(VIRTIOFSD, [`--socket-path=${sock}`, '-o', `source=${fuseOpt(source)}`, '-o', 'sandbox=chroot', '-o', 'cache=auto', '-o', 'xattr']);
    let err = '';
    d.stderr!.on('data', (b) => (err += b.toString()));
    this.daemons.push(d);
    await waitFor(() => existsSync(sock) || d.exitCode !== null, 5000, 'virtiofsd');
    if (d.exitCode !== null) throw new LabError(`virtiofsd failed: ${err.trim()}`);
    return ['-chardev', `socket,id=${tag}fs,path=${qemuOpt(sock)}`, '-device', `vhost-user-fs-pci,chardev=${tag}fs,tag=${tag}`];
  }

  private async start(): Promise<void> {
    const o = this.opts;
    const k = o.kernel;
    const ctl = await this.listen('ctl');
    const out = await this.listen('out');
    const err = await this.listen('err');
    const args = ['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-machine', machineArg()];
    // the monitor, for diagnose() when the guest itself stops answering
    args.push('-qmp', `unix:${qemuOpt(this.qmpPath)},server=on,wait=off`);
    if (process.env.EBPF_LAB_VM_BIOS) args.push('-bios', process.env.EBPF_LAB_VM_BIOS);
    args.push(...(o.accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', tcgAccelArg(), '-cpu', 'max']));
    args.push('-smp', String(o.cpus), '-m', `${o.memMB}M`);
    // PVH: an ELF vmlinux skips the in-guest decompressor (seconds under TCG)
    args.push('-kernel', k.vmlinux ?? k.bzImage, '-initrd', o.initramfs.path);
    // the kernel command line and its boot trims: lab/vm/cmdline.ts; EBPF_LAB_VM_APPEND (experiments) last, so it wins
    args.push('-append', guestCmdline(k, o.fs, o.accel, [o.append, process.env.EBPF_LAB_VM_APPEND]));
    args.push('-chardev', `file,id=con,path=${qemuOpt(o.consoleLog)}`, '-serial', 'chardev:con');
    args.push('-device', 'virtio-serial-pci,id=vser');
    for (const [name, path] of [['ctl', ctl], ['out', out], ['err', err]] as const) {
      args.push('-chardev', `socket,id=${name},path=${qemuOpt(path)}`, '-device', `virtserialport,bus=vser.0,chardev=${name},name=lab.${name}`);
    }
    if (o.fs === 'virtiofs') {
      // vhost-user needs guest RAM shared with virtiofsd
      args.push('-object', `memory-backend-memfd,id=mem,size=${o.memMB}M,share=on`, '-numa', 'node,memdev=mem');
      args.push(...(await this.startVirtiofsd('labroot', '/')));
      if (o.outDir) args.push(...(await this.startVirtiofsd('labout', o.outDir)));
    } else {
      args.push('-fsdev', 'local,id=root,path=/,security_model=none,readonly=on,multidevs=remap', '-device', 'virtio-9p-pci,fsdev=root,mount_tag=labroot');
      if (o.outDir) args.push('-fsdev', `local,id=out,path=${qemuOpt(o.outDir)},security_model=none,multidevs=remap`, '-device', 'virtio-9p-pci,fsdev=out,mount_tag=labout');
    }
    if (o.net === 'tap') {
      // multiqueue needs a tap backend (slirp has one queue): XDP_TX/REDIRECT then get their own
      // TX queues. The tap is not persistent, so it vanishes with QEMU; nothing configures it on the host.
      const q = Math.max(2, o.cpus);
      args.push('-netdev', `tap,id=n0,queues=${q},script=no,downscript=no,vhost=off`, '-device', `virtio-net-pci,netdev=n0,mq=on,vectors=${2 * q + 2},romfile=`);
    } else if (o.net === 'user') {
      args.push('-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0,romfile=');
    }
    // two more virtio-net ports joined by a hub: native XDP on a NIC driver (lab/vm/wire.ts)
    if (o.wire) args.push(...wireQemuArgs());
    this.qemu = spawnKillable(archFacts().qemu, args);
    this.qemu.stderr!.on('data', (b) => (this.qemuStderr += b.toString()));
    this.qemu.on('exit', () => {
      this.exited = true;
      for (const w of this.exitWaiters.splice(0)) w();
      for (const w of this.lineWaiters.splice(0)) w();
    });
    this.qemu.on('error', (e) => { this.qemuStderr += String(e); this.exited = true; for (const w of this.lineWaiters.splice(0)) w(); });
    o.progress.step(`booting ${k.release} (${o.accel}, ${o.fs})`);
    const line = await this.nextLine(o.bootTimeoutMs, o.signal, 'the guest to boot');
    if (!line.startsWith('READY')) throw new LabError(`guest failed to boot: ${line}\n${tail(o.consoleLog)}`);
    this.bootMs = Date.now() - this.startedAt;
    this.readyMarks = line.split(' ').slice(1).map(Number).filter((n) => Number.isFinite(n));
    this.guestUptime = this.readyMarks[0] ?? 0;
    o.progress.info(`guest ready after ${(this.bootMs / 1000).toFixed(1)} s (guest kernel+init ${this.guestUptime.toFixed(1)} s)`);
  }

  /** QEMU still runs (a timed-out command is killed with its guest: the next one needs a new boot) */
  get alive(): boolean { return !this.exited && !this.closing; }

  get qemuArgsNote(): string { return this.qemuStderr.trim(); }

  private get qmpPath(): string { return join(this.tmp, 'qmp.sock'); }

  /** one human-monitor command (QMP underneath): diagnose()'s register reads, tests' "stop" */
  hmp(command: string, timeoutMs = 5000): Promise<string> {
    return qmpHmp(this.qmpPath, command, timeoutMs);
  }

  /**
   * The running command looks stuck: ask the guest what its tasks are doing (lab/vm/hang.ts) before
   * it is killed. init answers DIAG on the console within `answerMs`; if it does not, the guest
   * kernel stopped too, and the vCPUs' registers (QMP) say where. Never throws; the report is
   * also kept in lastHang. Nothing to ask when no command runs or QEMU is gone.
   */
  async diagnose(answerMs = 20_000): Promise<HangReport | undefined> {
    if (this.exited || this.closing || !this.busy || !this.ports.ctl) return undefined;
    const consoleAt = (() => {
      try {
        return statSync(this.opts.consoleLog).size;
      } catch {
        return 0;
      }
    })();
    const answered = await new Promise<boolean>((res) => {
      const t = setTimeout(() => res(false), answerMs);
      this.diagWaiters.push(() => (clearTimeout(t), res(true)));
      this.ports.ctl!.write('DIAG\n');
    });
    let report: HangReport;
    if (answered) {
      // printk may reach the serial console after init's answer (deferred console output,
      // NMI backtraces): until its last line is there, or a few seconds
      let text = '';
      for (let i = 0; i < 50; i++) {
        text = readFrom(this.opts.consoleLog, consoleAt);
        if (text.includes('lab-diag: end')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      report = answeredReport(text);
    } else {
      const { rounds, err } = await sampleVcpus((c) => this.hmp(c), () => !this.exited);
      const symbols = await kernelSymbols(this.opts.kernel);
      report = unansweredReport({ answerMs, rounds, err, ktext: this.ktext, symbols, console: readFrom(this.opts.consoleLog, consoleAt) });
    }
    this.lastHang = report;
    return report;
  }

  private async nextLine(timeoutMs: number, signal: AbortSignal | undefined, what: string): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = this.lines.shift();
      if (l !== undefined) return l;
      if (this.exited) {
        throw new LabError(`QEMU exited while waiting for ${what}${this.qemuStderr.trim() ? `: ${this.qemuStderr.trim().slice(-800)}` : ''}\n--- guest console (tail) ---\n${tail(this.opts.consoleLog)}`);
      }
      if (signal?.aborted) throw new LabError(`interrupted while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new LabError(`timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what}\n--- guest console (tail) ---\n${tail(this.opts.consoleLog)}`, 'raise --timeout, or check the console log');
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        const onAbort = () => res();
        signal?.addEventListener('abort', onAbort, { once: true });
        this.onLine(() => { clearTimeout(t); signal?.removeEventListener('abort', onAbort); res(); });
      });
    }
  }

  /** Run a /bin/sh script in the guest root; resolves to its exit code. */
  async exec(script: string, o: ExecOptions): Promise<number> {
    const outS = this.ports.out;
    const errS = this.ports.err;
    const ctl = this.ports.ctl;
    if (!outS || !errS || !ctl) throw new LabError('control channel not connected');
    const onOut = (b: Buffer) => o.onStdout(b);
    const onErr = (b: Buffer) => o.onStderr(b);
    outS.on('data', onOut);
    errS.on('data', onErr);
    this.busy = true;
    try {
      ctl.write(`RUN ${Buffer.from(script).toString('base64')}\n`);
      for (;;) {
        const l = await this.nextLine(o.timeoutMs ?? 24 * 3600_000, o.signal, 'the guest command').catch(async (e: Error) => {
          // a command past its time: what it was doing, before the caller kills the guest
          if (!/^timed out after/.test(e.message) || o.signal?.aborted) throw e;
          const h = await this.diagnose(o.diagnoseMs);
          throw h ? new LabError(`${e.message.split('\n')[0]}; ${h.summary}\n${e.message.split('\n').slice(1).join('\n')}`, (e as LabError).fix) : e;
        });
        if (l.startsWith('EXIT ')) {
          // stdout/stderr travel on their own ports: give QEMU a moment to flush what the guest wrote before EXIT
          await this.drain();
          this.busy = false;
          return Number(l.slice(5));
        }
      }
    } finally {
      outS.off('data', onOut);
      errS.off('data', onErr);
    }
  }

  /** Ask the running command to stop: SIGTERM in the guest (init.sh); exec() still ends with its EXIT. */
  requestStop(): void {
    if (this.busy && !this.exited) this.ports.ctl?.write('STOP\n');
  }

  private async drain(): Promise<void> {
    let last = Date.now();
    const bump = () => (last = Date.now());
    this.ports.out?.on('data', bump);
    this.ports.err?.on('data', bump);
    const t0 = Date.now();
    while (Date.now() - last < 30 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
    this.ports.out?.off('data', bump);
    this.ports.err?.off('data', bump);
  }

  /**
   * Ask the guest to power off (when it is idle), then make sure everything is gone: QEMU,
   * virtiofsd, sockets, the temp dir. Idempotent; force skips the polite part.
   */
  close(o: { force?: boolean } = {}): Promise<void> {
    // every caller (abort handler, finally blocks) waits for the one teardown to finish
    this.closing ??= this.teardown(o.force === true);
    return this.closing;
  }

  private async teardown(force: boolean): Promise<void> {
    // only a guest that said READY can answer BYE: a stop during boot waited 3 s for nothing (review, session 57)
    if (!force && !this.busy && this.qemu && !this.exited && this.ports.ctl && this.bootMs > 0) {
      this.ports.ctl.write('BYE\n');
      await new Promise<void>((res) => {
        const t = setTimeout(res, 3000);
        this.exitWaiters.push(() => { clearTimeout(t); res(); });
      });
    }
    await this.kill();
  }

  killSync(): void {
    for (const p of [this.qemu, ...this.daemons]) if (p && p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    rmSync(this.tmp, { recursive: true, force: true });
  }

  private async kill(): Promise<void> {
    live.delete(this);
    const procs = [this.qemu, ...this.daemons].filter((p): p is ChildProcess => !!p);
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => (p.exitCode !== null || p.signalCode !== null ? undefined : new Promise((r) => p.once('exit', r)))));
    for (const s of Object.values(this.ports)) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
    await rm(this.tmp, { recursive: true, force: true });
  }
}

export async function fileExists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}
