// Test helpers shared by the *.test.ts files next to the code they test.
import { execa } from 'execa';
import { describe, expect } from 'vitest';
import { findOnPath } from '../common/host.ts';
import { LAB_V8_FLAGS, labCliArgv } from '../common/dist.ts';
import { ensureBundle } from './bundle.ts';

/** Why a root/BPF test cannot run here, or null when it can. */
export const rootSkipReason: string | null = process.getuid?.() === 0 ? null : 'needs root (loads BPF programs)';

/**
 * [command, args] that run `argv` in a mount namespace of its own, after the sh `prelude`, with
 * nothing it mounts or unmounts propagating back. `unshare --propagation private` makes / private,
 * which fails with EINVAL where / is not a mount point — in a chroot, as the fresh-check's: there
 * /sys, the tree these cases change, is made private instead (exit 97 when neither can be).
 */
export function inOwnMountNs(prelude: string, argv: string[]): [string, string[]] {
  const isolate = '{ mount --make-rprivate / || mount --make-rprivate /sys; } 2>/dev/null || { echo "cannot make / or /sys private in a mount namespace of its own" >&2; exit 97; }';
  return ['unshare', ['--mount', '--propagation', 'unchanged', 'sh', '-c', `${isolate}; ${prelude}; exec "$@"`, 'sh', ...argv]];
}

/** Why a test that boots guests cannot run here, or '' when it can. */
export const vmSkipReason: string = process.getuid?.() !== 0 ? 'VM tests need root (9p passthrough, tap)' : !findOnPath('qemu-system-x86_64') ? 'qemu-system-x86_64 is not installed (pnpm lab setup vm)' : process.env.EBPF_LAB_SKIP_VM ? 'EBPF_LAB_SKIP_VM is set' : '';

/** describe() for tests that need root; elsewhere the suite is skipped with the reason in its name. */
export function describeRoot(name: string, fn: () => void): void {
  describeUnless(rootSkipReason, name, fn);
}

/** describe(), or describe.skip() with the reason in its name when `skipReason` is set (the subject is missing here) */
export function describeUnless(skipReason: string | null, name: string, fn: () => void): void {
  if (skipReason) describe.skip(`${name} [skipped: ${skipReason}]`, fn);
  else describe(name, fn);
}

/**
 * Why tests that drive traffic with these system commands cannot run here (the first missing one
 * and the setup command that installs it), or null. `.ci/run` installs them all, so CI never skips.
 */
export function toolMissing(setup: string, ...commands: string[]): string | null {
  const gone = commands.find((c) => !findOnPath(c));
  return gone ? `${gone} is not installed — pnpm lab setup ${setup}` : null;
}

/** Kernel BPF objects (programs, maps, links) by kind, as bpftool sees them. */
export async function bpfObjects(): Promise<{ progs: { id: number; name?: string }[]; maps: { id: number; name?: string }[]; links: { id: number; prog_id?: number }[] }> {
  const j = async (kind: string) => {
    const r = await execa('bpftool', ['-j', kind, 'show'], { reject: false });
    return r.exitCode === 0 && r.stdout.trim() ? JSON.parse(r.stdout) : [];
  };
  const [progs, maps, links] = await Promise.all([j('prog'), j('map'), j('link')]);
  return { progs, maps, links };
}

/** What fn throws (the test fails when it does not throw), for asserting on an error's fields. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw, but the call returned');
}

let bundle: Promise<string> | undefined;
/**
 * argv that starts `pnpm lab` in a test: [node, V8 flags, the prebuilt bundle's cli.js] — append
 * the lab arguments. The bundle (lab/bundle.ts, rebuilt when a source is newer) is the code a VM
 * guest runs; a process starts in ~0.35 s instead of ~1.1 s through tsx's loader, and the suite
 * starts a hundred-odd. The daemons such a process starts run from the bundle too (common/dist.ts).
 * `pnpm lab` through tsx, as a user types it, is what lab/e2e.test.ts runs.
 */
export async function labCli(): Promise<[string, ...string[]]> {
  // EBPF_LAB_TEST_TSX=1: through tsx instead (to tell a bundling problem from a code one, and to time both)
  if (process.env.EBPF_LAB_TEST_TSX === '1') return labCliArgv() as [string, ...string[]];
  bundle ??= ensureBundle();
  return [process.execPath, ...LAB_V8_FLAGS, await bundle];
}

/** `pnpm lab <command> …` (labCli; npm's warnings never reach stderr). */
export function labCommand(command: string): (...args: string[]) => Promise<{ exitCode?: number; stdout: string; stderr: string }> {
  const cwd = new URL('..', import.meta.url).pathname;
  return async (...args: string[]) => {
    const [node, ...cli] = await labCli();
    const r = await execa(node, [...cli, command, ...args], { reject: false, cwd, env: { EBPF_LAB_DEBUG: '' } });
    return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
}

/** stderr is exactly `error: <msg>` and `  fix: <fix>`: one line and the fix, no stack trace. */
export function expectOneError(stderr: string, msg: RegExp, fix: RegExp): void {
  const lines = stderr.trim().split('\n');
  expect(lines[0]).toMatch(/^error: /);
  expect(lines[0]).toMatch(msg);
  expect(lines[1]).toMatch(/^ {2}fix: /);
  expect(lines[1]).toMatch(fix);
  expect(lines).toHaveLength(2);
  expect(stderr).not.toMatch(/\n\s+at /);
}

/**
 * A `pnpm lab run <scenario> --kernel host --out <out>` (labCli) stopped with SIGINT once its output
 * shows `marker` (after `delayMs` more): the exit code ('hung' if it had not ended 90 s on, when it
 * is killed), everything it printed, and its pid (which names its namespaces and pins). `marker`
 * never showing fails the test.
 */
export async function runStoppedAt(scenario: string, out: string, marker: string, delayMs = 0): Promise<{ code: number | null | 'hung'; log: string; pid: number }> {
  const { spawn } = await import('node:child_process');
  const [node, ...cli] = await labCli();
  const p = spawn(node, [...cli, 'run', scenario, '--kernel', 'host', '--out', out], { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  p.stdout.on('data', (d: Buffer) => (log += d.toString()));
  p.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  for (let i = 0; i < 2400 && !log.includes(marker) && p.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
  expect(log).toContain(marker);
  if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
  p.kill('SIGINT');
  const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 90_000))]);
  if (code === 'hung') p.kill('SIGKILL');
  return { code, log, pid: p.pid! };
}
