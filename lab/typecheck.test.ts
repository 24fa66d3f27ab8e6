import { execa } from 'execa';
import { expect, it } from 'vitest';
import { REPO_ROOT } from './env.ts';

// tsx runs TypeScript without checking it: this is where type errors fail the build.
it('the project type-checks (tsc --noEmit, strict)', async () => {
  const r = await execa('pnpm', ['exec', 'tsc', '--noEmit', '-p', '.'], { cwd: REPO_ROOT, reject: false, all: true });
  expect(r.all, 'tsc output').toBe('');
  expect(r.exitCode).toBe(0);
}, 300_000);
