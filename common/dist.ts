// How to start the lab's own code: from the prebuilt bundle (lab/.dist, see lab/bundle.ts) when
// this process runs from it, otherwise through tsx. A guest under TCG spends 30-77 s
// transpiling with tsx; every process the lab starts inside a VM (the runner, the LB and policy
// daemons) therefore runs the bundle, and children follow their parent's mode.
// A leaf (it imports only common/paths.ts), so the control planes may use it too.
// `pnpm lab` (package.json) is `node --import tsx lab/cli.ts`, one process, like labCliArgv(). Not
// the tsx CLI: that is a parent process that relays a signal and SIGKILLs the lab unless it
// acknowledges within ~60 ms, which a lab busy in a BPF load or a sync tool call cannot — a Ctrl-C
// there ended the run with no cleanup and no report (common/dist.test.ts shows it).
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// Replaced by esbuild's `define` with the bundle directory; undeclared (typeof 'undefined') under tsx.
declare const LAB_BUNDLE_DIR: string | undefined;

export const BUNDLE_DIR: string | undefined = typeof LAB_BUNDLE_DIR === 'string' ? LAB_BUNDLE_DIR : undefined;
import { REPO_ROOT } from './paths.ts';

export { REPO_ROOT };

/**
 * A repository .ts module as the path to import in this mode (bundled entry points end in .js),
 * or in the bundle built at `bundleDir`.
 */
export function entryPath(tsFile: string, bundleDir = BUNDLE_DIR): string {
  if (!bundleDir) return tsFile;
  return path.join(bundleDir, path.relative(REPO_ROOT, tsFile)).replace(/\.ts$/, '.js');
}

/**
 * argv that starts a repository .ts program (a scenario's `*.main.ts`, bundled as an entry point of
 * its own) as a child process: the bundled .js where this process runs from the bundle — nothing is
 * transpiled at start in a guest — else through tsx's loader.
 */
export function nodeProgramArgv(tsFile: string): string[] {
  if (BUNDLE_DIR) return [process.execPath, entryPath(tsFile)];
  return [process.execPath, ...tsxArgv(), tsFile];
}

// tsx's ESM loader by path: the child may start anywhere, and `--import tsx` resolves from its cwd
const tsxArgv = () => ['--import', pathToFileURL(path.join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href];

/**
 * A worker_threads Worker's (filename, options) for a repository `*.worker.ts`: the bundled .js
 * where this process runs from the bundle (a bundled entry point of its own), else a small eval'd
 * bootstrap that registers tsx's loader in the worker and imports the .ts — Node 20 does not apply
 * an `--import`ed loader to a worker's main module, and the parent may run under another loader
 * (vitest) that a worker would not inherit anyway.
 */
export function workerEntry(tsFile: string): [string, { eval?: boolean; execArgv?: string[] }] {
  if (BUNDLE_DIR) return [entryPath(tsFile), {}];
  const api = pathToFileURL(path.join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'api', 'index.mjs')).href;
  const src = `import(${JSON.stringify(api)}).then((t) => { t.register(); return import(${JSON.stringify(pathToFileURL(tsFile).href)}); });`;
  return [src, { eval: true, execArgv: [] }];
}

/**
 * V8 flags of every `pnpm lab` process (package.json's "lab" script passes the same). The lab's
 * daemons (trace, lb, policy, svc, tc, energy top) run beside the workloads they watch, and what
 * they use is measured against them. V8's memory reducer shrinks the heap again each time a
 * process's allocation rate drops, with two full mark-compacts about every 16 s: a `pnpm lab
 * trace` beside a service at 5k req/s (1% sampled) spent a third less CPU over its first 40 s
 * without it (16–51% less, lower in 5 interleaved pairs out of 5; ARCHITECTURE.md, tracing). The price
 * is a heap kept at its high-water mark (~50 MB committed instead of ~18 for the tracer).
 */
export const LAB_V8_FLAGS = ['--no-memory-reducer'];

/** argv that starts `pnpm lab …` as a child process: [node, …, cli] — append the lab arguments. */
export function labCliArgv(): string[] {
  const [node, ...rest] = nodeProgramArgv(path.join(REPO_ROOT, 'lab', 'cli.ts'));
  return [node!, ...LAB_V8_FLAGS, ...rest];
}
