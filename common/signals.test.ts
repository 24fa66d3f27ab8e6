// How a virtme-ng guest's run is asked to stop (no root): a real child process, a real file.
import { execa } from 'execa';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';

it('stopOnFile: the file appearing is the run\'s SIGTERM, and its children are not told the file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-stopfile-'));
  const file = path.join(dir, 'stop');
  try {
    const src = new URL('./signals.ts', import.meta.url).pathname;
    const code = `const m = await import(${JSON.stringify(src)}); m.stopOnFile();
      process.on('SIGTERM', () => { console.log('SIGTERM; child sees ' + (process.env.EBPF_LAB_STOP_FILE ?? 'nothing')); process.exit(3); });
      console.log('up'); setInterval(() => {}, 1000);`;
    const p = execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { env: { EBPF_LAB_STOP_FILE: file }, reject: false, buffer: false, stdout: 'pipe' });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    for (let i = 0; i < 200 && !out.includes('up'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(out).toBe('up\n');
    // not before the file exists
    await new Promise((r) => setTimeout(r, 600));
    expect(p.exitCode).toBe(null);
    const t0 = performance.now();
    fs.writeFileSync(file, '');
    const r = await p;
    expect(r.exitCode).toBe(3);
    expect(out).toBe('up\nSIGTERM; child sees nothing\n');
    expect(performance.now() - t0).toBeLessThan(2000);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

it('stopWithParent: the end of stdin (the matrix gone) is the run\'s SIGTERM; the watch alone keeps nothing alive', async () => {
  const src = new URL('./signals.ts', import.meta.url).pathname;
  const code = `const m = await import(${JSON.stringify(src)}); m.stopWithParent();
    process.on('SIGTERM', () => { console.log('SIGTERM; child sees ' + (process.env.EBPF_LAB_STOP_WITH_PARENT ?? 'nothing')); process.exit(3); });
    console.log('up'); setInterval(() => {}, 1000);`;
  const p = execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { env: { EBPF_LAB_STOP_WITH_PARENT: '1' }, reject: false, buffer: false, stdin: 'pipe', stdout: 'pipe' });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 200 && !out.includes('up'); i++) await new Promise((r) => setTimeout(r, 50));
  expect(out).toBe('up\n');
  // not while the pipe is open
  await new Promise((r) => setTimeout(r, 600));
  expect(p.exitCode).toBe(null);
  const t0 = performance.now();
  p.stdin!.end();
  const r = await p;
  expect(r.exitCode).toBe(3);
  expect(out).toBe('up\nSIGTERM; child sees nothing\n');
  expect(performance.now() - t0).toBeLessThan(2000);

  // a run that finishes exits although its stdin stays open
  const done = execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `const m = await import(${JSON.stringify(src)}); m.stopWithParent(); setTimeout(() => console.log('done'), 200);`], { env: { EBPF_LAB_STOP_WITH_PARENT: '1' }, reject: false, stdin: 'pipe', timeout: 10_000 });
  const d = await done;
  expect([d.exitCode, d.stdout, d.timedOut]).toEqual([0, 'done', false]);
}, 30_000);
