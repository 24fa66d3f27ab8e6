// The sweep of temp entries dead lab runs left (common/stale.ts). The names are pure logic; the
// sweep itself runs against real processes in a temp dir of its own (no root needed).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTempDir, runTempFile, sweepStaleTemp, tempOwner } from './stale.ts';

describe('tempOwner', () => {
  it('reads the pid of ebpf-lab-<what>-<pid>-XXXXXX and ebpf-lab-<what>-<pid>.<ext>, and nothing else', () => {
    expect(tempOwner('ebpf-lab-pg-4242-a1B2c3')).toBe(4242);
    expect(tempOwner('ebpf-lab-pg-template-17-zzzzzz')).toBe(17);
    expect(tempOwner('ebpf-lab-slb-crash-99.json')).toBe(99);
    expect(tempOwner('ebpf-lab-tcs-stream-5.stop')).toBe(5);
    // mkdtemp's six characters can be digits: without a pid before them they name no owner
    expect(tempOwner('ebpf-lab-secstop-123456')).toBeUndefined();
    expect(tempOwner('ebpf-lab-pg-template-123456')).toBeUndefined();
    expect(tempOwner('ebpf-lab-hello-140-1796387756523')).toBeUndefined();
    expect(tempOwner('xlb-abcdef')).toBeUndefined();
    expect(tempOwner('ebpf-lab-pg-4242-a1B2c3/..')).toBeUndefined();
  });

  it('names made by runTempDir and runTempFile carry this pid', () => {
    const d = runTempDir('stale-test');
    try {
      expect(tempOwner(path.basename(d))).toBe(process.pid);
      expect(tempOwner(path.basename(runTempFile('stale-test', 'json')))).toBe(process.pid);
      expect(() => runTempDir('Bad Name')).toThrow(/lowercase/);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('sweepStaleTemp', () => {
  it('removes a dead owner\'s dir and file and stops what runs from that dir; keeps a live owner\'s, anything unnamed, and unrelated processes', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stale-sweep-'));
    const dead = spawnSync('true').pid!;
    const staleDir = path.join(tmp, `ebpf-lab-pg-${dead}-AbC123`);
    const staleFile = path.join(tmp, `ebpf-lab-slb-crash-${dead}.json`);
    const liveDir = path.join(tmp, `ebpf-lab-pg-${process.pid}-XyZ789`);
    const unnamed = path.join(tmp, 'ebpf-lab-secstop-123456');
    for (const d of [staleDir, liveDir, unnamed]) fs.mkdirSync(d);
    fs.writeFileSync(staleFile, '{}');
    // an orphan of the dead run (working there, as PostgreSQL does in its data dir), one naming
    // the dir in its arguments, and a bystander
    const inDir = spawn('sleep', ['30'], { cwd: staleDir, stdio: 'ignore' });
    fs.writeFileSync(path.join(staleDir, 'log'), '');
    const byArg = spawn('tail', ['-f', path.join(staleDir, 'log')], { stdio: 'ignore' });
    const bystander = spawn('sleep', ['32'], { cwd: liveDir, stdio: 'ignore' });
    const exited = (c: ReturnType<typeof spawn>) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(c.signalCode) : c.once('exit', (_code, sig) => r(sig))));
    try {
      await new Promise((r) => setTimeout(r, 200));
      const removed = await sweepStaleTemp(tmp);
      expect(removed.sort()).toEqual([path.basename(staleDir), path.basename(staleFile)].sort());
      expect(fs.existsSync(staleDir) || fs.existsSync(staleFile)).toBe(false);
      expect(fs.existsSync(liveDir) && fs.existsSync(unnamed)).toBe(true);
      expect(await exited(inDir)).toBe('SIGTERM');
      expect(await exited(byArg)).toBe('SIGTERM');
      expect(bystander.exitCode).toBeNull();
    } finally {
      for (const c of [inDir, byArg, bystander]) c.kill('SIGKILL');
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('takes an owner whose pid a process started after the entry now holds for dead (a reused pid), and leaves that process alone', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stale-sweep-'));
    const holder = spawn('sleep', ['30'], { stdio: 'ignore' });
    const entry = path.join(tmp, `ebpf-lab-pg-${holder.pid}-AbC123`);
    const fresh = path.join(tmp, `ebpf-lab-pg-${holder.pid}-XyZ789`);
    try {
      fs.mkdirSync(entry);
      fs.mkdirSync(fresh);
      // made two hours before its pid's holder started (a wall-clock step of a minute is tolerated)
      const past = new Date(Date.now() - 2 * 3600_000);
      fs.utimesSync(entry, past, past);
      expect(await sweepStaleTemp(tmp)).toEqual([path.basename(entry)]);
      expect(fs.existsSync(fresh)).toBe(true);
      expect(holder.exitCode === null && holder.signalCode === null).toBe(true);
    } finally {
      holder.kill('SIGKILL');
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
