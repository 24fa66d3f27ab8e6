// The Jaeger build lock (no root, no Go build): `./lab.sh test` builds Jaeger in the background and
// every other caller of ensureJaeger must wait for that build instead of starting a second one.
// Real processes hold the lock; the cache is a temp dir of this test's own.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureJaeger, jaegerBuildRunning, jaegerPath } from './backend.ts';

describe('the Jaeger build lock', () => {
  let dir = '';
  const saved = process.env.EBPF_LAB_CACHE;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-jaeger-lock-'));
    process.env.EBPF_LAB_CACHE = dir;
    fs.mkdirSync(path.join(dir, 'tracing'));
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.EBPF_LAB_CACHE;
    else process.env.EBPF_LAB_CACHE = saved;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('waits for the build another process holds, and returns its binary when it appears', async () => {
    const holder = spawn('sleep', ['60']);
    try {
      fs.writeFileSync(`${jaegerPath()}.building`, `${holder.pid}\n`);
      expect(jaegerBuildRunning()).toBe(holder.pid);
      const said: string[] = [];
      const done = ensureJaeger((s) => said.push(s));
      let settled = false;
      void done.then(() => (settled = true), () => (settled = true));
      await new Promise((r) => setTimeout(r, 2500));
      // still waiting: the binary is not there yet, and nothing was built
      expect(settled).toBe(false);
      expect(said.join('\n')).toMatch(new RegExp(`waiting for the Jaeger build already running \\(pid ${holder.pid}\\)`));
      fs.writeFileSync(`${jaegerPath()}.json`, JSON.stringify({ version: 'v', seconds: 7, go: 'go', builtAt: '', path: jaegerPath() }));
      fs.writeFileSync(jaegerPath(), '#!/bin/true\n', { mode: 0o755 });
      const r = await done;
      expect(r).toMatchObject({ path: jaegerPath(), built: false, info: { seconds: 7 } });
      expect(said.some((s) => s.startsWith('building'))).toBe(false);
    } finally {
      holder.kill();
    }
  });

  it('a lock whose holder is gone, that holds no pid, or that is this process\'s own is no running build to wait for', async () => {
    const gone = spawn('true');
    await new Promise((r) => gone.once('exit', r));
    fs.writeFileSync(`${jaegerPath()}.building`, `${gone.pid}\n`);
    expect(jaegerBuildRunning()).toBeNull();
    fs.writeFileSync(`${jaegerPath()}.building`, 'not a pid\n');
    expect(jaegerBuildRunning()).toBeNull();
    // this process's own lock is not somebody else's build to wait for
    fs.writeFileSync(`${jaegerPath()}.building`, `${process.pid}\n`);
    expect(jaegerBuildRunning()).toBeNull();
  });
});
