// Holding ping_group_range open across runs at once, on stand-in files (the real sysctl is the
// machine's: other runs may hold it right now).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OPEN, holdPingRangeOpen, sweepPingRange } from './ping-range.ts';

let files: { sysctl: string; dir: string };
const value = () => fs.readFileSync(files.sysctl, 'utf8');
beforeEach(() => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ping-range-test-'));
  files = { sysctl: path.join(d, 'ping_group_range'), dir: path.join(d, 'run') };
  fs.writeFileSync(files.sysctl, '1\t0\n');
});
afterEach(() => fs.rmSync(path.dirname(files.sysctl), { recursive: true, force: true }));

describe('holdPingRangeOpen', () => {
  it('opens the range while held, and the last release puts back the value from before', () => {
    const a = holdPingRangeOpen(files);
    expect(value()).toBe(OPEN);
    const b = holdPingRangeOpen(files);
    a();
    a(); // twice is once
    expect(value()).toBe(OPEN);
    b();
    expect(value()).toBe('1\t0');
    expect(fs.readdirSync(files.dir)).toEqual([]);
  });

  it('a live holder of another process keeps it open; a dead one (killed run) does not, and its original comes back', () => {
    fs.mkdirSync(files.dir);
    const dead = spawnSync('true').pid!;
    // a killed run: it had opened the range over "1 0" and left its holder and the original
    fs.writeFileSync(path.join(files.dir, `ping-range.${dead}`), '\n');
    fs.writeFileSync(path.join(files.dir, 'ping-range.original'), '1\t0');
    fs.writeFileSync(files.sysctl, OPEN);
    const release = holdPingRangeOpen(files);
    expect(fs.readdirSync(files.dir).sort()).toEqual(['ping-range.original', `ping-range.${process.pid}`].sort());
    // another live run holds it too (pid 1 is alive: init)
    fs.writeFileSync(path.join(files.dir, 'ping-range.1'), '\n');
    release();
    expect(value()).toBe(OPEN);
    fs.rmSync(path.join(files.dir, 'ping-range.1'));
    holdPingRangeOpen(files)();
    expect(value()).toBe('1\t0');
  });
});

describe('sweepPingRange', () => {
  it('a killed run\'s open range goes back at the next sweep; a live holder keeps it; nothing left costs nothing', () => {
    expect(sweepPingRange(files)).toBeUndefined();
    expect(fs.existsSync(files.dir)).toBe(false); // no lock dir made when nothing was left
    fs.mkdirSync(files.dir);
    const dead = spawnSync('true').pid!;
    fs.writeFileSync(path.join(files.dir, `ping-range.${dead}`), '\n');
    fs.writeFileSync(path.join(files.dir, 'ping-range.original'), '1\t0');
    fs.writeFileSync(files.sysctl, OPEN);
    // a live run holds it as well (pid 1: init): kept open, the dead holder's file gone
    fs.writeFileSync(path.join(files.dir, 'ping-range.1'), '\n');
    expect(sweepPingRange(files)).toBeUndefined();
    expect(value()).toBe(OPEN);
    expect(fs.existsSync(path.join(files.dir, `ping-range.${dead}`))).toBe(false);
    expect(fs.existsSync(path.join(files.dir, 'ping-range.original'))).toBe(true);
    fs.rmSync(path.join(files.dir, 'ping-range.1'));
    expect(sweepPingRange(files)).toBe('1\t0');
    expect(value()).toBe('1\t0');
    expect(fs.existsSync(path.join(files.dir, 'ping-range.original'))).toBe(false);
  });
});
