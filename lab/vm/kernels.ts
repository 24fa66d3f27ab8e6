// A parsed --kernel (lab/vm/spec.ts) → a bootable kernel on disk (fetched and cached on first use).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { processAlive } from '../../common/host.ts';
import { LabError } from '../../common/errors.ts';
import { UsageError, suggest } from '../../common/args.ts';
import type { Progress } from '../../common/progress.ts';
import { SERIES, candidates, compareVersions, downloadPackage, suiteIndex, verifyPackageFile, type Candidate } from './debian.ts';
import { cacheDir } from './paths.ts';
import { withLockWait } from '../../common/lockfile.ts';
import { run } from './exec.ts';
import { bzImageRelease, extractVmlinux, kernelImageProblem, readHead } from './vmlinux.ts';
import type { KernelSpec, VmKernelSpec } from './spec.ts';
import { archFacts } from '../../common/arch.ts';

export interface KernelImage {
  spec: string;
  source: 'debian' | 'path';
  /** Debian version (6.1.176-1), or "custom" for a bzImage path */
  version: string;
  /** uname -r */
  release: string;
  suite?: string;
  bzImage: string;
  /** ELF vmlinux for PVH boot when we could extract it */
  vmlinux?: string;
  config?: string;
  /** …/lib/modules/<release> */
  modulesDir?: string;
  packages?: { name: string; version: string; sha256: string }[];
}

export function parseConfig(path: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!path || !existsSync(path)) return out;
  for (const l of readFileSync(path, 'utf8').split('\n')) {
    const m = /^CONFIG_([A-Z0-9_]+)=(.*)$/.exec(l);
    if (m) out[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1');
  }
  return out;
}

/** The config facts the lab's scenarios care about; 'y', 'm', a value, or 'n' when unset. */
export function configFacts(k: KernelImage): Record<string, string> {
  const c = parseConfig(k.config);
  if (!Object.keys(c).length) return {};
  const keys = ['DEBUG_INFO_BTF', 'DEBUG_INFO_BTF_MODULES', 'BPF_SYSCALL', 'BPF_JIT', 'BPF_LSM', 'LSM', 'KPROBES', 'KPROBE_EVENTS', 'FPROBE',
    'DYNAMIC_FTRACE_WITH_DIRECT_CALLS', 'FUNCTION_ERROR_INJECTION', 'BPF_KPROBE_OVERRIDE', 'XDP_SOCKETS', 'NET_CLS_BPF', 'NET_ACT_BPF', 'NET_SCH_INGRESS',
    'CGROUP_BPF', 'VETH', 'VIRTIO_NET', 'NET_9P', 'NET_9P_VIRTIO', '9P_FS', 'VIRTIO_FS', 'OVERLAY_FS', 'VIRTIO_CONSOLE', 'PVH', 'SECURITY_LOCKDOWN_LSM'];
  const out: Record<string, string> = { BTF: c.DEBUG_INFO_BTF ?? 'n' };
  for (const k2 of keys) out[k2] = c[k2] ?? 'n';
  return out;
}

function kernelsIn(root: string): { release: string; vmlinuz?: string; config?: string; modulesDir?: string } | undefined {
  for (const base of ['usr/lib/modules', 'lib/modules']) {
    const d = join(root, base);
    if (!existsSync(d)) continue;
    for (const rel of readdirSync(d)) {
      const mdir = join(d, rel);
      const vmlinuz = [join(root, 'boot', `vmlinuz-${rel}`), join(mdir, 'vmlinuz')].find((p) => existsSync(p));
      const config = [join(root, 'boot', `config-${rel}`), join(mdir, 'config')].find((p) => existsSync(p));
      if (vmlinuz) return { release: rel, vmlinuz, config, modulesDir: mdir };
    }
  }
  return undefined;
}

/** Kernels already extracted in the cache. */
export function cachedKernels(): KernelImage[] {
  const dir = cacheDir();
  if (!existsSync(dir)) return [];
  const out: KernelImage[] = [];
  for (const d of readdirSync(dir)) {
    const meta = join(dir, d, 'kernel.json');
    if (!existsSync(meta)) continue;
    try {
      out.push(JSON.parse(readFileSync(meta, 'utf8')));
    } catch { /* half-written entry: ignored, refetched on demand */ }
  }
  return out.sort((a, b) => compareVersions(b.version, a.version));
}

/**
 * What fetches killed outright (SIGKILL, a lost terminal) left in the cache: their extraction
 * dirs (.tmp-<version>-<pid>, hundreds of MB) and partial downloads (debs/*.part<pid>), by dead pid
 * and untouched for an hour (a container sharing the cache has pids this one cannot see: its live
 * fetch's pid reads as dead).
 */
export async function sweepDeadFetches(minAgeMs = 3600_000): Promise<string[]> {
  const out: string[] = [];
  const at = (dir: string, re: RegExp) => {
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch { /* none */ }
    return names.filter((n) => {
      const m = re.exec(n);
      if (!m || Number(m[1]) === process.pid || processAlive(Number(m[1]))) return false;
      try {
        return Date.now() - statSync(join(dir, n)).mtimeMs > minAgeMs;
      } catch {
        return false;
      }
    }).map((n) => join(dir, n));
  };
  for (const p of [...at(cacheDir(), /^\.tmp-.+-(\d+)$/), ...at(join(cacheDir(), 'debs'), /\.part(\d+)$/)]) {
    await rm(p, { recursive: true, force: true, maxRetries: 3 }).then(() => out.push(p), () => {});
  }
  return out;
}

async function extractCandidate(c: Candidate, spec: string, progress: Progress, signal?: AbortSignal): Promise<KernelImage> {
  const final = join(cacheDir(), c.version);
  const tmp = join(cacheDir(), `.tmp-${c.version}-${process.pid}`);
  const swept = await sweepDeadFetches();
  if (swept.length) progress.info(`removed what ${swept.length === 1 ? 'a fetch' : 'fetches'} killed outright left in the cache: ${swept.map((p) => basename(p)).join(', ')}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(join(tmp, 'root'), { recursive: true });
  try {
    const debs: string[] = [];
    for (const p of c.packages) {
      const deb = await downloadPackage(p, progress, signal);
      await verifyPackageFile(deb, p);
      progress.info(`extracting ${p.name}`);
      await run('dpkg-deb', ['-x', deb, join(tmp, 'root')], { signal });
      debs.push(deb);
    }
    const found = kernelsIn(join(tmp, 'root'));
    if (!found) throw new LabError(`package(s) ${c.packages.map((p) => p.name).join(', ')} contain no vmlinuz`);
    const rel = (p?: string) => (p ? p.slice(tmp.length + 1) : undefined);
    // kmod looks for <base>/lib/modules; merged-/usr packages (trixie, sid) only ship usr/lib.
    if (!existsSync(join(tmp, 'root', 'lib'))) await symlink('usr/lib', join(tmp, 'root', 'lib'));
    const dep = await run('depmod', ['-b', join(tmp, 'root'), found.release], { reject: false });
    if (dep.exitCode !== 0) progress.warn(`depmod failed for ${found.release} (modprobe in the guest will not work): ${dep.stderr.slice(0, 200)}`);
    progress.info('extracting the ELF vmlinux for PVH boot');
    const hasVmlinux = await extractVmlinux(found.vmlinuz!, join(tmp, 'vmlinux'));
    const k: KernelImage = {
      spec, source: 'debian', version: c.version, release: found.release, suite: c.suite,
      bzImage: rel(found.vmlinuz)!, vmlinux: hasVmlinux ? 'vmlinux' : undefined, config: rel(found.config), modulesDir: rel(found.modulesDir),
      packages: c.packages.map((p) => ({ name: p.name, version: p.version, sha256: p.sha256 })),
    };
    // kernel.json is written last and paths in it are relative, so a renamed or moved cache stays valid.
    await writeFile(join(tmp, 'kernel.json'), JSON.stringify(k, null, 2));
    try {
      await rename(tmp, final);
    } catch (e) {
      // another lab process (matrix --jobs) finished the same kernel first: keep theirs
      if (!existsSync(join(final, 'kernel.json'))) throw e;
      await rm(tmp, { recursive: true, force: true });
    }
    for (const d of debs) await rm(d, { force: true });
    return absolutize(k, final);
  } catch (e) {
    // a stopped dpkg-deb's tar may still be writing for a moment (ENOTEMPTY): retried, and a
    // failure here never replaces the error that ended the fetch
    await rm(tmp, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }).catch((r: Error) => progress.warn(`could not remove ${tmp}: ${r.message} (the next fetch removes it)`));
    throw e;
  }
}

function absolutize(k: KernelImage, dir: string): KernelImage {
  const a = (p?: string) => (p ? resolve(dir, p) : undefined);
  return { ...k, bzImage: a(k.bzImage)!, vmlinux: a(k.vmlinux), config: a(k.config), modulesDir: a(k.modulesDir) };
}

function cachedEntry(version: string): KernelImage | undefined {
  const dir = join(cacheDir(), version);
  const meta = join(dir, 'kernel.json');
  if (!existsSync(meta)) return undefined;
  return absolutize(JSON.parse(readFileSync(meta, 'utf8')), dir);
}

async function pathKernel(k: Extract<VmKernelSpec, { kind: 'image' }>): Promise<KernelImage> {
  const spec = k.text;
  const mods = k.modules;
  const bz = resolve(k.path);
  if (!existsSync(bz) || !statSync(bz).isFile()) throw new LabError(`kernel image ${bz}: no such file`, 'give the path of a bzImage/vmlinuz file, or a kernel the lab fetches: --kernel 6.1 (pnpm lab vm kernels lists them)');
  const problem = kernelImageProblem(readHead(bz));
  if (problem) throw new LabError(`kernel image ${bz}: ${problem}`, 'give the path of a bzImage/vmlinuz file, or a kernel the lab fetches: 6.1 (pnpm lab vm kernels lists them)');
  const release = bzImageRelease(readFileSync(bz)) ?? 'unknown';
  let modulesDir = mods ? resolve(mods) : undefined;
  if (modulesDir && existsSync(join(modulesDir, 'lib/modules', release))) modulesDir = join(modulesDir, 'lib/modules', release);
  // /boot/vmlinuz-X next to /lib/modules/X (an installed or extracted Debian kernel), or a build tree's modules/
  if (!modulesDir) modulesDir = [join(dirname(bz), 'lib/modules', release), join(dirname(bz), '..', 'lib/modules', release), join(dirname(bz), '..', 'usr/lib/modules', release), join(dirname(bz), 'modules')].find((p) => existsSync(p));
  const config = [join(dirname(bz), '.config'), join(dirname(bz), `config-${release}`), modulesDir && join(modulesDir, 'config')].find((p): p is string => !!p && existsSync(p));
  // the ELF vmlinux boots without the in-guest decompressor (5 s of a 9 s boot under TCG): cache it per image
  const st = statSync(bz);
  const vmlinux = join(cacheDir(), 'custom', `${createHash('sha256').update(`${bz}:${st.size}:${st.mtimeMs}`).digest('hex').slice(0, 16)}.vmlinux`);
  let hasVmlinux = existsSync(vmlinux);
  if (!hasVmlinux) {
    await mkdir(dirname(vmlinux), { recursive: true });
    hasVmlinux = await extractVmlinux(bz, vmlinux).catch(() => false);
  }
  return { spec, source: 'path', version: 'custom', release, bzImage: bz, vmlinux: hasVmlinux ? vmlinux : undefined, config, modulesDir };
}

/** Every spec the lab can resolve right now: series, versions in the indices, cached entries. */
export async function availableKernels(progress?: Progress, opts: { refresh?: boolean } = {}): Promise<{ series: string; suite: string; versions: Candidate[] }[]> {
  const out = [];
  for (const [series, suite] of Object.entries(SERIES)) {
    let versions: Candidate[] = [];
    try {
      versions = candidates(suite, await suiteIndex(suite, { progress, refresh: opts.refresh }));
    } catch (e) {
      progress?.warn(`${suite}: ${(e as Error).message}`);
    }
    out.push({ series, suite, versions });
  }
  return out;
}

type IndexSpec = Extract<VmKernelSpec, { kind: 'series' | 'debian' }>;

/** Does a Debian kernel of an index match what the user named? (one rule for the edge and resolution) */
function matches(k: IndexSpec, c: Candidate): boolean {
  if (k.kind === 'series') return c.version.startsWith(k.prefix);
  return c.version === k.version || c.release === k.version || c.release === `${k.version}-${archFacts().debian}` || c.packages[0]!.name === k.version;
}

/** A cached kernel resolveKernel takes without reading an index (an exact name, or offline a series' newest). */
function cachedMatch(k: IndexSpec, c: KernelImage): boolean {
  return c.version === k.text || c.release === k.text || c.release === `${k.text}-${archFacts().debian}` || (k.kind === 'series' && c.version.startsWith(k.prefix));
}

/**
 * What to offer for a kernel the lab does not know: the series with their newest version, in one
 * short line (every version of every suite made a fix of ~600 characters; vm kernels lists them).
 */
async function knownKernels(): Promise<string> {
  const series = [];
  for (const [name, suite] of Object.entries(SERIES)) {
    let newest: string | undefined;
    try {
      newest = candidates(suite, await suiteIndex(suite, { maxAgeMs: Infinity }))[0]?.version;
    } catch { /* offline without a copy: the series alone */ }
    series.push(newest ? `${name} (${newest})` : name);
  }
  return `known: host, ${series.join(', ')}; a Debian version (pnpm lab vm kernels lists them) or a bzImage path`;
}

/**
 * The CLI edge's check of a kernel (before tools, builds, report dirs or boots): a missing bzImage,
 * or a series or version no index carries, is a usage error. Reads the indices' cached copies
 * whatever their age first, so a kernel the lab knows costs no network here, and refreshes only
 * on a miss. An index it cannot read at all (offline, no copy) leaves the verdict to resolution.
 */
export async function checkKernel(k: KernelSpec): Promise<void> {
  if (k.kind === 'host') return;
  if (k.kind === 'image') {
    const fix = 'give the path of a bzImage/vmlinuz file, or a kernel the lab fetches: 5.10, 6.1, 6.12, 7.x';
    const bz = resolve(k.path);
    if (!existsSync(bz)) throw new UsageError(`kernel ${k.text}: no such file`, fix);
    if (!statSync(bz).isFile()) throw new UsageError(`kernel ${k.text}: ${bz} is not a file`, fix);
    let problem: string | undefined;
    try {
      problem = kernelImageProblem(readHead(bz));
    } catch (e) {
      problem = `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
    }
    if (problem) throw new UsageError(`kernel ${k.text}: ${problem}`, fix);
    if (k.modules && !existsSync(resolve(k.modules))) throw new UsageError(`kernel ${k.text}: no such modules directory ${k.modules}`, 'give bzImage:modules-dir with an existing directory, or the bzImage alone');
    return;
  }
  if (k.kind === 'series' && SERIES[k.text]) return;
  if (cachedKernels().some((c) => cachedMatch(k, c))) return;
  const suites = k.kind === 'series' && k.suites ? k.suites : Object.values(SERIES);
  for (const maxAgeMs of [Infinity, undefined]) {
    let unreadable = false;
    for (const suite of suites) {
      try {
        if (candidates(suite, await suiteIndex(suite, { maxAgeMs })).some((c) => matches(k, c))) return;
      } catch {
        unreadable = true;
      }
    }
    if (unreadable) return;
  }
  throw new UsageError(unknownKernelText(k.text), await knownKernels());
}

async function unknownKernel(spec: string): Promise<LabError> {
  return new LabError(unknownKernelText(spec), await knownKernels());
}

/** a typo of a series name gets "did you mean"; a well-formed version (6.11) is not a typo of one */
function unknownKernelText(text: string): string {
  const s = /^\d+(\.\d+)*(-\S+)?$/.test(text) ? undefined : suggest(text, ['host', ...Object.keys(SERIES)]);
  return `unknown kernel ${JSON.stringify(text)}${s ? ` (did you mean ${s}?)` : ''}`;
}

/**
 * What resolveKernel boots for a Debian series or version, without fetching it: a cached kernel,
 * or the index's candidate it would download. One rule for resolution and for the matrix's check
 * that two of its kernels are not one (6.1 and 6.1.176-1).
 */
export async function pickKernel(k: IndexSpec, progress?: Progress): Promise<{ cached: KernelImage } | { candidate: Candidate }> {
  const spec = k.text;
  // exact cached match first: works offline and costs no index read
  const exact = cachedKernels().find((c) => c.version === spec || c.release === spec || c.release === `${spec}-${archFacts().debian}`);
  if (exact) return { cached: { ...cachedEntry(exact.version)!, spec } };

  let pick: Candidate | undefined;
  if (k.kind === 'series') {
    const suites = k.suites ?? Object.values(SERIES);
    const all: Candidate[] = [];
    const errors: Error[] = [];
    for (const suite of suites) {
      try {
        all.push(...candidates(suite, await suiteIndex(suite, { progress })).filter((c) => matches(k, c)));
      } catch (e) {
        errors.push(e as Error);
      }
    }
    if (!all.length && errors.length) {
      // offline: fall back to the newest cached kernel of the series
      const cached = cachedKernels().find((c) => c.version.startsWith(k.prefix));
      if (cached) {
        progress?.warn(`${errors[0]!.message}; using cached ${cached.version}`);
        return { cached: { ...cachedEntry(cached.version)!, spec } };
      }
      if (errors.length === suites.length) throw errors[0];
    }
    pick = all.sort((a, b) => compareVersions(b.version, a.version))[0];
  } else {
    for (const suite of Object.values(SERIES)) {
      let list: Candidate[] = [];
      try {
        list = candidates(suite, await suiteIndex(suite, { progress }));
      } catch { continue; }
      pick = list.find((c) => matches(k, c));
      if (pick) break;
    }
  }
  if (!pick) throw await unknownKernel(spec);
  const hit = cachedEntry(pick.version);
  return hit ? { cached: { ...hit, spec } } : { candidate: pick };
}

/** Resolve a parsed --kernel to a kernel on disk, downloading and extracting it if needed. */
export async function resolveKernel(k: VmKernelSpec, progress: Progress, signal?: AbortSignal): Promise<KernelImage> {
  if (k.kind === 'image') return pathKernel(k);
  const spec = k.text;
  const picked = await pickKernel(k, progress);
  if ('cached' in picked) return picked.cached;
  const pick = picked.candidate;
  // One fetch of a version at a time: two at once shared the cached .debs, and the first to finish
  // deleted them while the other was still verifying or extracting them.
  await mkdir(cacheDir(), { recursive: true });
  const chosen = pick;
  return withLockWait(
    join(cacheDir(), `.fetch-${chosen.version}.lock`),
    () => {
      const done = cachedEntry(chosen.version);
      if (done) return { ...done, spec };
      progress.step(`fetching kernel ${chosen.release} (${chosen.version}) from ${chosen.suite}`);
      return extractCandidate(chosen, spec, progress, signal);
    },
    (pid) => new LabError(`another lab process (pid ${pid}) is still fetching kernel ${chosen.version} after 30 min`, `wait for it to finish or stop it, then run the command again`),
    30 * 60_000,
    { pollMs: 250, signal, onWait: (pid) => progress.info(`waiting for pid ${pid}, which is fetching kernel ${chosen.version}`) },
  );
}

export async function readKernelMeta(dir: string): Promise<KernelImage> {
  return absolutize(JSON.parse(await readFile(join(dir, 'kernel.json'), 'utf8')), dir);
}
