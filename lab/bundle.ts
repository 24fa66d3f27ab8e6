// The lab's TypeScript, prebuilt for guests: esbuild bundles lab/cli.ts and every
// scenarios/<name>/index.ts into lab/.dist/ (ESM, shared chunks, so module singletons such as the
// libbpf lifecycle registry stay single). A VM runs `node lab/.dist/lab/cli.js …`: no transpiling
// at start (tsx took 30-77 s per process under TCG).
//
// Paths: the code finds its files (init.sh, attack scripts, bpf/.output) relative to its own
// module via import.meta.url. A bundle would move every module to its chunk's location, so the
// plugin below pins each module's import.meta.url to its source file's URL. The bundle is a cache
// of this checkout (absolute paths inside): git-ignored, rebuilt when any source is newer.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BUNDLE_DIR, REPO_ROOT, entryPath, nodeProgramArgv } from '../common/dist.ts';
import { LabError } from '../common/errors.ts';

export const DIST_DIR = distDir();

/**
 * lab/.dist, or, where the checkout is read-only to this user (`pnpm test` as nobody), a
 * per-user temp dir whose node_modules links to the checkout's, so the bundle's external native
 * addons still resolve. VM runs need root, and root writes lab/.dist.
 */
function distDir(): string {
  const inRepo = path.join(REPO_ROOT, 'lab', '.dist');
  try {
    fs.accessSync(fs.existsSync(inRepo) ? inRepo : path.dirname(inRepo), fs.constants.W_OK);
    return inRepo;
  } catch {
    // per checkout too: a second clone's run used the first one's directory, and once that clone
    // was gone its dangling node_modules link failed every run with EEXIST (review, session 57)
    const dir = path.join(os.tmpdir(), `ebpf-lab-dist-${os.userInfo().uid}-${createHash('sha256').update(REPO_ROOT).digest('hex').slice(0, 8)}`);
    fs.mkdirSync(dir, { recursive: true });
    const nm = path.join(dir, 'node_modules');
    const want = path.join(REPO_ROOT, 'node_modules');
    let have: string | null = null;
    try {
      have = fs.readlinkSync(nm);
    } catch { /* none yet */ }
    if (have !== want) {
      fs.rmSync(nm, { force: true });
      try {
        fs.symlinkSync(want, nm);
      } catch (e) {
        // another process of this user made it at the same moment
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    return dir;
  }
}
const SOURCE_DIRS = ['common', 'lab', 'controller', 'scenarios', 'bpf'];
/** native addons stay in node_modules: a .node file cannot be bundled */
const EXTERNAL = ['koffi', '@napi-rs/canvas'];

function walk(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.') || e.name === 'node_modules' || e.name === 'cache') continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

export function entryPoints(): string[] {
  const scen = path.join(REPO_ROOT, 'scenarios');
  const dirs = fs.readdirSync(scen, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => path.join(scen, d.name));
  return [
    path.join(REPO_ROOT, 'lab', 'cli.ts'),
    ...dirs.flatMap((d) => ['index.ts', 'sweep.ts'].map((f) => path.join(d, f))).filter((f) => fs.existsSync(f)),
    // programs a scenario starts as processes of their own (common/dist.ts nodeProgramArgv)
    ...dirs.flatMap((d) => fs.readdirSync(d).filter((f) => f.endsWith('.main.ts')).map((f) => path.join(d, f))),
    // worker_threads entry points of the control planes (common/dist.ts workerEntry)
    ...workerEntries(),
  ];
}

function workerEntries(): string[] {
  const ctl = path.join(REPO_ROOT, 'controller');
  return fs.readdirSync(ctl, { withFileTypes: true }).filter((d) => d.isDirectory())
    .flatMap((d) => fs.readdirSync(path.join(ctl, d.name)).filter((f) => f.endsWith('.worker.ts')).map((f) => path.join(ctl, d.name, f)));
}

/** lab/.dist/current.json names the newest build; each build has a directory of its own */
const CURRENT = () => path.join(DIST_DIR, 'current.json');
interface Stamp { root: string; entries: string[]; builtAt: number; dir: string }

/** Newest input, so an unchanged tree is not rebuilt (~1 s saved per VM run). */
function newestInput(): number {
  const files = [
    ...SOURCE_DIRS.flatMap((d) => (fs.existsSync(path.join(REPO_ROOT, d)) ? walk(path.join(REPO_ROOT, d)) : [])),
    path.join(REPO_ROOT, 'package.json'),
    path.join(REPO_ROOT, 'pnpm-lock.yaml'),
  ];
  return Math.max(...files.map((f) => (fs.existsSync(f) ? fs.statSync(f).mtimeMs : 0)));
}

function current(entries: string[]): Stamp | undefined {
  try {
    const s = JSON.parse(fs.readFileSync(CURRENT(), 'utf8')) as Stamp;
    const fresh = s.root === REPO_ROOT && s.entries.join('\n') === entries.join('\n') && s.builtAt >= newestInput() &&
      entries.every((e) => fs.existsSync(entryPath(e, s.dir)));
    return fresh ? s : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Builds are never replaced in place: a guest that is running one (over 9p, with cached
 * dentries) would find its chunks gone when a concurrent run or an edit rebuilds. Old builds are
 * removed once they are neither among the newest three nor younger than a day.
 */
function prune(keep: string): void {
  const builds = fs.readdirSync(DIST_DIR).filter((d) => d.startsWith('b-')).map((d) => path.join(DIST_DIR, d))
    .map((d) => ({ d, t: fs.statSync(d).mtimeMs })).sort((a, b) => b.t - a.t);
  for (const [i, b] of builds.entries()) {
    if (b.d !== keep && i >= 3 && Date.now() - b.t > 24 * 3600_000) fs.rmSync(b.d, { recursive: true, force: true });
  }
}

/** Build the bundle if any source changed; returns the CLI entry of the current build. */
export async function ensureBundle(log: (s: string) => void = () => {}): Promise<string> {
  const entries = entryPoints();
  const have = current(entries);
  if (have) return path.join(have.dir, 'lab', 'cli.js');
  log('bundling the lab for the guest (esbuild)');
  const t0 = Date.now();
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch (e) {
    throw new LabError(`esbuild is not installed: ${(e as Error).message}`, 'pnpm install');
  }
  fs.mkdirSync(DIST_DIR, { recursive: true });
  const dir = fs.mkdtempSync(path.join(DIST_DIR, `b-${Date.now().toString(36)}-`));
  const pinMetaUrl: import('esbuild').Plugin = {
    name: 'pin-import-meta-url',
    setup(b) {
      b.onLoad({ filter: /\.ts$/ }, (a) => {
        if (a.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
        const src = fs.readFileSync(a.path, 'utf8');
        const url = JSON.stringify(pathToFileURL(a.path).href);
        return { contents: src.replaceAll('import.meta.url', url).replaceAll('import.meta.dirname', JSON.stringify(path.dirname(a.path))), loader: 'ts' };
      });
    },
  };
  try {
    const r = await esbuild.build({
      entryPoints: entries,
      outbase: REPO_ROOT,
      outdir: dir,
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      external: EXTERNAL,
      sourcemap: 'linked',
      // less to read and parse under TCG; names kept for readable stack traces
      minifyWhitespace: true,
      minifySyntax: true,
      logLevel: 'silent',
      chunkNames: 'chunks/[name]-[hash]',
      define: { LAB_BUNDLE_DIR: JSON.stringify(dir) },
      // CommonJS dependencies inside an ESM bundle still call require()
      // (spelled in two parts so the plugin above leaves this file's own text alone)
      banner: { js: `import { createRequire as __labCreateRequire } from 'node:module'; const require = __labCreateRequire(${'import.meta'}.url);` },
      plugins: [pinMetaUrl],
    });
    for (const w of r.warnings) log(`esbuild: ${w.text}`);
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new LabError(`bundling the lab failed: ${(e as Error).message.split('\n').slice(0, 5).join(' ')}`, 'fix the TypeScript error above (pnpm typecheck)');
  }
  const tmp = `${CURRENT()}.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify({ root: REPO_ROOT, entries, builtAt: t0, dir } satisfies Stamp));
  fs.renameSync(tmp, CURRENT());
  prune(dir);
  log(`bundled ${entries.length} entry points in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return path.join(dir, 'lab', 'cli.js');
}

/**
 * argv that starts a repository `*.main.ts` as compiled JavaScript from the bundle (rebuilt first
 * if any source changed), never through tsx: the form a deployed Node program takes. Benchmarks
 * that compare such a program with a compiled C one use this. Under tsx the process also carries
 * the loader's hooks thread and its isolate, and V8's helper threads spent ~3-4x more CPU
 * (~150 ns per event of the TS ring consumer at 100k/s, 4 alternating pairs, exploratory).
 */
export async function bundledProgramArgv(tsFile: string): Promise<string[]> {
  if (BUNDLE_DIR) return nodeProgramArgv(tsFile);
  return [process.execPath, entryPath(tsFile, path.dirname(path.dirname(await ensureBundle())))];
}
