// How a run is asked to stop from outside its process group (no root): a real child process, a
// real file (virtme-ng's guest), a real pipe (a matrix's subprocess).
import { execa } from 'execa';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { onStopSignals, REPEAT_STOP_MS, stopExitCode } from './signals.ts';

const SRC = new URL('./signals.ts', import.meta.url).pathname;

/**
 * A child that installs the watch `fn`, reports a SIGTERM (and whether its own children would
 * still see `envVar`), and idles. `stop` is what should end it; it must not end before.
 */
async function stopsOn(fn: string, envVar: string, env: Record<string, string>, stop: (p: ReturnType<typeof execa>) => void): Promise<void> {
  const code = `const m = await import(${JSON.stringify(SRC)}); m.${fn}();
    process.on('SIGTERM', () => { console.log('SIGTERM; child sees ' + (process.env.${envVar} ?? 'nothing')); process.exit(3); });
    console.log('up'); setInterval(() => {}, 1000);`;
  const p = execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { env, reject: false, buffer: false, stdin: 'pipe', stdout: 'pipe' });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 200 && !out.includes('up'); i++) await new Promise((r) => setTimeout(r, 50));
  expect(out).toBe('up\n');
  // not before it is asked
  await new Promise((r) => setTimeout(r, 600));
  expect(p.exitCode).toBe(null);
  const t0 = performance.now();
  stop(p);
  const r = await p;
  expect(r.exitCode).toBe(3);
  expect(out).toBe('up\nSIGTERM; child sees nothing\n');
  expect(performance.now() - t0).toBeLessThan(2000);
}

it('stopOnFile: the file appearing is the run\'s SIGTERM, and its children are not told the file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-stopfile-'));
  const file = path.join(dir, 'stop');
  try {
    await stopsOn('stopOnFile', 'EBPF_LAB_STOP_FILE', { EBPF_LAB_STOP_FILE: file }, () => fs.writeFileSync(file, ''));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

it('stopWithParent: the end of stdin (the matrix gone) is the run\'s SIGTERM; the watch alone keeps nothing alive', async () => {
  await stopsOn('stopWithParent', 'EBPF_LAB_STOP_WITH_PARENT', { EBPF_LAB_STOP_WITH_PARENT: '1' }, (p) => p.stdin!.end());
  // a run that finishes exits although its stdin stays open
  const done = execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `const m = await import(${JSON.stringify(SRC)}); m.stopWithParent(); setTimeout(() => console.log('done'), 200);`], { env: { EBPF_LAB_STOP_WITH_PARENT: '1' }, reject: false, stdin: 'pipe', timeout: 10_000 });
  const d = await done;
  expect([d.exitCode, d.stdout, d.timedOut]).toEqual([0, 'done', false]);
}, 30_000);

it("stopWithLauncher: the death of the process that started it (pnpm) is the run's SIGTERM; its children are not told; without pnpm's mark nothing changes", async () => {
  const code = `const m = await import(${JSON.stringify(SRC)}); m.stopWithLauncher();
    process.on('SIGTERM', () => { console.log('SIGTERM; child sees ' + (process.env.npm_lifecycle_event ?? 'nothing')); process.exit(3); });
    console.log('up ' + process.pid); setInterval(() => {}, 1000);`;
  for (const marked of [true, false]) {
    // the launcher: a shell that starts the run and waits, as pnpm does; killed outright
    const sh = execa('sh', ['-c', '"$0" --import tsx --input-type=module -e "$1" & wait', process.execPath, code], { env: marked ? { npm_lifecycle_event: 'lab' } : {}, reject: false, buffer: false, stdout: 'pipe' });
    let out = '';
    sh.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    for (let i = 0; i < 200 && !out.includes('up'); i++) await new Promise((r) => setTimeout(r, 50));
    const pid = Number(/^up (\d+)$/m.exec(out)?.[1]);
    expect(pid, out).toBeGreaterThan(0);
    try {
      await new Promise((r) => setTimeout(r, 600));
      expect(out, 'not before its launcher is gone').toBe(`up ${pid}\n`);
      sh.kill('SIGKILL');
      for (let i = 0; i < 40 && !out.includes('SIGTERM'); i++) await new Promise((r) => setTimeout(r, 50));
      if (marked) expect(out).toBe(`up ${pid}\nSIGTERM; child sees nothing\n`);
      else expect(out, 'unmarked: not tied to its parent').toBe(`up ${pid}\n`);
    } finally {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
      await sh;
    }
  }
}, 30_000);

// pnpm passes the terminal's SIGINT on to the run the group signal already reached; a parent
// SIGKILLed sends PR_SET_PDEATHSIG once per thread: one stop, two signals a moment apart
it('onStopSignals takes a repeat within REPEAT_STOP_MS as the same stop, a later one as a second', async () => {
  const seen: string[] = [];
  const off = onStopSignals((s) => seen.push(s));
  try {
    process.emit('SIGINT', 'SIGINT');
    process.emit('SIGINT', 'SIGINT');
    process.emit('SIGTERM', 'SIGTERM');
    expect(seen).toEqual(['SIGINT']);
    await new Promise((r) => setTimeout(r, REPEAT_STOP_MS + 100));
    process.emit('SIGINT', 'SIGINT');
    expect(seen).toEqual(['SIGINT', 'SIGINT']);
  } finally {
    off();
  }
});

it('stopExitCode: a run a stop signal ended exits as a shell reports that signal; other stops are failures', () => {
  expect([stopExitCode('SIGINT'), stopExitCode('SIGTERM'), stopExitCode('SIGHUP')]).toEqual([130, 143, 129]);
  // --timeout, a killed guest, no stop at all, a signal that is not a stop
  expect([stopExitCode('--timeout 20 s'), stopExitCode('killed'), stopExitCode(undefined), stopExitCode('SIGKILL')]).toEqual([undefined, undefined, undefined, undefined]);
});
