import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LAB_V8_FLAGS, REPO_ROOT, labCliArgv } from './dist.ts';

describe('how lab processes start', () => {
  it('`pnpm lab` and a lab child started by labCliArgv() get the same V8 flags', () => {
    const script = (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.lab!;
    const words = script.split(/\s+/);
    // node flags go before the program, or node takes them as the program's arguments
    const cli = words.indexOf('lab/cli.ts');
    expect(cli).toBeGreaterThan(0);
    for (const f of LAB_V8_FLAGS) expect(words.slice(0, cli), `package.json "lab": ${script}`).toContain(f);
    const argv = labCliArgv();
    expect(argv[0]).toBe(process.execPath);
    expect(argv.slice(1, 1 + LAB_V8_FLAGS.length)).toEqual(LAB_V8_FLAGS);
    expect(argv.at(-1)).toMatch(/lab[/\\]cli\.(ts|js)$/);
  });
});
