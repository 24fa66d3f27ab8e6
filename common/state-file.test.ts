// Whole-file writes: no half file for a reader, and no temporary file left by a killed writer.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instancesIn, instancesNote, writeFileAtomic } from './state-file.ts';

let dir: string;
beforeAll(() => void (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-state-file-test-'))));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('writeFileAtomic', () => {
  it('writes the file whole, with its mode', () => {
    const f = path.join(dir, 'state.json');
    writeFileAtomic(f, '{"a":1}\n', 0o600);
    expect(fs.readFileSync(f, 'utf8')).toBe('{"a":1}\n');
    expect(fs.statSync(f).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir)).toEqual(['state.json']);
  });

  it("removes a dead writer's temporary file of the same file, and leaves a live writer's and other files'", () => {
    const f = path.join(dir, 'model.json');
    // a pid that is surely dead: a child that has exited and been reaped
    const dead = Number(execFileSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).trim());
    const live = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      for (const n of [`model.json.${dead}.tmp`, `model.json.${live.pid}.tmp`, `other.json.${dead}.tmp`, 'model.json.x.tmp']) fs.writeFileSync(path.join(dir, n), 'half');
      writeFileAtomic(f, 'whole');
      expect(fs.readdirSync(dir).filter((n) => n.startsWith('model.json') || n.startsWith('other')).sort()).toEqual(['model.json', `model.json.${live.pid}.tmp`, 'model.json.x.tmp', `other.json.${dead}.tmp`].sort());
    } finally {
      live.kill('SIGKILL');
    }
  });
});

describe('common/state-file: instancesIn', () => {
  it('names the instances by their state files, nothing else in the directory', () => {
    const d = fs.mkdtempSync(path.join(dir, 'inst-'));
    for (const f of ['svc-b.json', 'svc-a.json', 'svc-a.lock', 'svc-.json', 'lb-x.sock', 'svc-c.json.tmp']) fs.writeFileSync(path.join(d, f), '');
    expect(instancesIn(d, 'svc-', '.json')).toEqual(['a', 'b']);
    expect(instancesIn(d, 'lb-', '.sock')).toEqual(['x']);
    expect(instancesIn(path.join(d, 'missing'), '', '.json')).toEqual([]);
    expect(instancesNote(['a', 'b'])).toBe('instances here: a, b');
    expect(instancesNote([])).toBe('no instance has state here');
  });
});
