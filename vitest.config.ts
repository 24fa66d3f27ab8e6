import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

// A checkout the test user cannot write (`pnpm test` as nobody, see README): vitest's cache and
// the JSON results go to a temp dir instead. The config itself is loaded with
// `--configLoader runner` (package.json), which needs no temp file next to node_modules.
const writable = (() => {
  try {
    fs.accessSync(import.meta.dirname, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();
const scratch = writable ? null : path.join(os.tmpdir(), `ebpf-lab-vitest-${os.userInfo().uid}`);
if (scratch) fs.mkdirSync(scratch, { recursive: true });

/**
 * vitest's order (failed, then slowest, first), except that the files needing the Jaeger binary go
 * last: `./lab.sh test` builds it in the background meanwhile (minutes cold), and they wait for it.
 * The VM runs come first of the three (their tracing run is their last test): with the host-side
 * Jaeger test before them, a slow window's CI waited 140 s for the build there.
 */
const last = ['lab/e2e.test.ts', 'controller/tracing/tracing.test.ts', 'scenarios/tracing/stop.test.ts'];
class JaegerLast extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification) => last.findIndex((l) => f.moduleId.endsWith(`/${l}`)) + 1;
    return (await super.sort(files)).sort((a, b) => rank(a) - rank(b));
  }
}

export default defineConfig({
  cacheDir: scratch ? path.join(scratch, 'vite') : undefined,
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'reports/**', 'vm-images/cache/**'],
    // BPF tests share one kernel: files run one at a time so leak checks and timings are honest
    fileParallelism: false,
    sequence: { sequencer: JaegerLast },
    globalSetup: ['lab/testing.setup.ts'],
    testTimeout: 60_000,
    // only tests marked concurrent run together: the e2e scenario runs, a guest per core (lab/e2e.test.ts)
    maxConcurrency: 2,
    hookTimeout: 120_000,
    reporters: ['default', 'json'],
    outputFile: { json: scratch ? path.join(scratch, 'results.json') : '.vitest/results.json' },
  },
});
