// Debian kernel packages: which mirror, which package per series, download + SHA256 check
// against the suite's index, whose own SHA256 comes from the InRelease gpgv verified.
// We read the suite's Packages index ourselves rather than asking apt, because apt only knows
// the host's own suite (bookworm) and we must not touch the system's apt sources.
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { LabError } from '../../common/errors.ts';
import type { Progress } from '../../common/progress.ts';
import { cacheDir } from './paths.ts';
import { run } from './exec.ts';
import { archFacts } from '../../common/arch.ts';

/** Series the lab knows by name → Debian suite that carries it. */
export const SERIES: Record<string, string> = { '5.10': 'bullseye', '6.1': 'bookworm', '6.12': 'trixie', '7.x': 'sid' };

export interface Pkg {
  name: string;
  version: string;
  filename: string;
  size: number;
  sha256: string;
  depends: string;
}

/** One installable generic amd64 kernel: the linux-image package plus, on sid, its split parts. */
export interface Candidate {
  suite: string;
  /** uname -r, e.g. 6.1.0-50-amd64 */
  release: string;
  /** Debian version, e.g. 6.1.176-1 */
  version: string;
  packages: Pkg[];
}

const INDEX_MAX_AGE_MS = 6 * 3600_000;

/** Mirror from EBPF_LAB_DEBIAN_MIRROR, else the first non-security URI of the system's apt sources. */
export function debianMirror(): string {
  const env = process.env.EBPF_LAB_DEBIAN_MIRROR;
  if (env) return env.replace(/\/+$/, '');
  const uris: string[] = [];
  try {
    for (const f of readdirSync('/etc/apt/sources.list.d')) {
      if (!f.endsWith('.sources')) continue;
      for (const stanza of readFileSync(join('/etc/apt/sources.list.d', f), 'utf8').split(/\n\s*\n/)) {
        if (!/^Types:.*\bdeb\b/m.test(stanza) || /^Enabled:\s*no/im.test(stanza)) continue;
        const u = /^URIs:\s*(.+)$/m.exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
        const suites = /^Suites:\s*(.+)$/m.exec(stanza)?.[1] ?? '';
        if (!/-security\b/.test(suites)) uris.push(...u);
      }
    }
  } catch { /* no deb822 sources */ }
  try {
    for (const l of readFileSync('/etc/apt/sources.list', 'utf8').split('\n')) {
      const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(l.trim());
      if (m && !m[2]!.includes('security')) uris.push(m[1]!);
    }
  } catch { /* no legacy sources */ }
  const uri = uris.find((u) => /^https?:\/\//.test(u) && !u.includes('security'));
  if (!uri) throw new LabError('no Debian mirror found in the apt sources (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list)', 'set EBPF_LAB_DEBIAN_MIRROR to a Debian mirror URL');
  return uri.replace(/\/+$/, '');
}

function parsePackages(text: string): Pkg[] {
  const out: Pkg[] = [];
  for (const stanza of text.split('\n\n')) {
    // The index has ~60k stanzas; only kernel ones matter, so skip the rest before parsing fields.
    if (!/^Package: linux-(image|binary|modules|base)-\d/.test(stanza)) continue;
    const f: Record<string, string> = {};
    for (const line of stanza.split('\n')) {
      const m = /^([A-Za-z0-9-]+):\s?(.*)$/.exec(line);
      if (m) f[m[1]!] = m[2]!;
    }
    if (!f.Package || !f.Filename || !f.SHA256) continue;
    // the version names cache directories (kernels.ts): nothing but Debian's version characters
    if (!/^[0-9A-Za-z.+~:-]+$/.test(f.Version ?? '') || f.Filename.split('/').includes('..')) continue;
    out.push({ name: f.Package, version: f.Version ?? '', filename: f.Filename, size: Number(f.Size ?? 0), sha256: f.SHA256, depends: f.Depends ?? '' });
  }
  return out;
}

async function fetchOk(url: string, signal?: AbortSignal): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { signal });
  } catch (e) {
    throw new LabError(`cannot reach ${url}: ${(e as Error).message}`, 'check the network, or set EBPF_LAB_DEBIAN_MIRROR to a reachable Debian mirror', { cause: e });
  }
  if (!res.ok) throw new LabError(`${url}: HTTP ${res.status}`, 'set EBPF_LAB_DEBIAN_MIRROR to a Debian mirror that carries this suite');
  return res;
}

/** an index the checks refused (signature, SHA256): never answered from a cached copy instead */
class IndexRefused extends LabError {}

/** the keys a suite's InRelease must be signed by (EBPF_LAB_DEBIAN_KEYRING: a test mirror's own) */
function archiveKeyring(): string {
  return process.env.EBPF_LAB_DEBIAN_KEYRING || '/usr/share/keyrings/debian-archive-keyring.gpg';
}

/**
 * A suite's InRelease, its signature checked with gpgv against the Debian archive keyring, as
 * apt does: the text of the signed part. The Packages index's SHA256 comes from it, and the
 * packages' from the index, so every byte booted is tied to Debian's keys (a plain-HTTP mirror or
 * anyone on the path served an index of their own before, with matching SHA256s for their own
 * packages). A signature by a key the keyring lacks is fine beside one it has (a suite signed by
 * two archive keys during a key change); none valid, or one bad, is refused.
 */
async function verifiedRelease(mirror: string, suite: string): Promise<string> {
  const url = `${mirror}/dists/${suite}/InRelease`;
  const signed = Buffer.from(await (await fetchOk(url)).arrayBuffer());
  const keyring = archiveKeyring();
  const fix = `install Debian's archive keys and gpgv (pnpm lab setup vm), or set EBPF_LAB_DEBIAN_MIRROR to a Debian mirror`;
  if (!existsSync(keyring)) throw new LabError(`cannot check ${url}: no keyring at ${keyring}`, fix);
  const dir = await mkdtemp(join(tmpdir(), 'ebpf-lab-inrelease-'));
  try {
    await writeFile(join(dir, 'InRelease'), signed);
    const r = await run('gpgv', ['--status-fd', '1', '--keyring', keyring, '--output', join(dir, 'out'), join(dir, 'InRelease')], { reject: false }).catch((e: NodeJS.ErrnoException) => {
      throw new LabError(`cannot check ${url}: ${e.code === 'ENOENT' ? 'gpgv is not installed' : e.message}`, fix);
    });
    const status = r.stdout.toString('utf8');
    // apt's rule: a good signature (GOODSIG with its VALIDSIG) by a key of the keyring that is
    // neither expired nor revoked, and no bad one; a signature by a key the keyring lacks
    // (ERRSIG) beside it is fine. VALIDSIG alone is also printed for EXPKEYSIG/REVKEYSIG/EXPSIG.
    const has = (tag: string) => new RegExp(`^\\[GNUPG:\\] ${tag} `, 'm').test(status);
    // one clearsigned block and nothing around it: gpgv's output and its status need not say which
    // of two blocks a good signature was for
    const text = signed.toString('latin1');
    const oneBlock = /^\s*-----BEGIN PGP SIGNED MESSAGE-----\n/.test(text) && text.split('-----BEGIN PGP SIGNED MESSAGE-----').length === 2 && /-----END PGP SIGNATURE-----\s*$/.test(text);
    if (!oneBlock || !has('GOODSIG') || !has('VALIDSIG') || ['BADSIG', 'EXPKEYSIG', 'REVKEYSIG', 'EXPSIG'].some(has) || !existsSync(join(dir, 'out'))) {
      const why = !oneBlock ? 'not one clearsigned block' : r.stderr.trim().split('\n').filter((l) => /signature|key/i.test(l)).slice(-2).join('; ') || `gpgv exited ${r.exitCode}`;
      throw new IndexRefused(`${url} is not signed by a key in ${keyring} (${why}): refusing its index`, fix);
    }
    return await readFile(join(dir, 'out'), 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** the SHA256 a (verified) Release text gives for `path` (e.g. main/binary-amd64/Packages.xz) */
function releaseSha256(release: string, path: string): string | undefined {
  const section = /^SHA256:\n((?:[ \t].*\n?)*)/m.exec(release)?.[1] ?? '';
  for (const l of section.split('\n')) {
    const [hash, , file] = l.trim().split(/\s+/);
    if (file === path && /^[0-9a-f]{64}$/.test(hash ?? '')) return hash;
  }
  return undefined;
}

/** Kernel packages of one suite, cached as JSON for INDEX_MAX_AGE_MS; a stale copy is used when offline. */
export async function suiteIndex(suite: string, opts: { refresh?: boolean; progress?: Progress; maxAgeMs?: number } = {}): Promise<Pkg[]> {
  const mirror = debianMirror();
  const file = join(cacheDir(), 'index', `${suite}.json`);
  let cached: { mirror: string; fetchedAt: number; packages: Pkg[]; verified?: boolean } | undefined;
  try {
    cached = JSON.parse(await readFile(file, 'utf8'));
  } catch { /* none yet */ }
  // only a copy of an index whose signature was checked, of this mirror (one written before the
  // check existed is read again)
  if (cached && (cached.verified !== true || cached.mirror !== mirror)) cached = undefined;
  if (cached && !opts.refresh && Date.now() - cached.fetchedAt < (opts.maxAgeMs ?? INDEX_MAX_AGE_MS)) return cached.packages;
  const rel = `main/binary-${archFacts().debian}/Packages.xz`;
  const url = `${mirror}/dists/${suite}/${rel}`;
  opts.progress?.info(`reading ${url}`);
  try {
    const want = releaseSha256(await verifiedRelease(mirror, suite), rel);
    if (!want) throw new IndexRefused(`the signed ${suite} Release lists no SHA256 for ${rel}`, 'set EBPF_LAB_DEBIAN_MIRROR to a complete Debian mirror');
    const buf = Buffer.from(await (await fetchOk(url)).arrayBuffer());
    const got = createHash('sha256').update(buf).digest('hex');
    if (got !== want) throw new IndexRefused(`checksum mismatch for ${url}: the signed Release says SHA256 ${want}, the download has ${got}; refusing it`, 'run the command again (a mirror mid-update), or set EBPF_LAB_DEBIAN_MIRROR to another mirror');
    const xz = await run('xz', ['-dc'], { input: buf });
    const packages = parsePackages(xz.stdout.toString('utf8'));
    await mkdir(join(cacheDir(), 'index'), { recursive: true });
    await writeFile(`${file}.tmp${process.pid}`, JSON.stringify({ mirror, fetchedAt: Date.now(), packages, verified: true }));
    await rename(`${file}.tmp${process.pid}`, file);
    return packages;
  } catch (e) {
    // offline or a mirror that does not answer: the last checked copy. A refused index is not
    // that: a corrupted InRelease must not put an older copy in its place silently
    if (cached && !(e instanceof IndexRefused)) {
      opts.progress?.warn(`could not refresh the ${suite} index (${(e as Error).message}); using the copy from ${new Date(cached.fetchedAt).toISOString()}`);
      return cached.packages;
    }
    throw e;
  }
}

/** Compare Debian-ish versions by their numeric runs (good enough for kernel versions). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[^0-9]+/).filter(Boolean).map(Number);
  const pb = b.split(/[^0-9]+/).filter(Boolean).map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d) return d;
  }
  return 0;
}

/** Generic (not cloud/rt) amd64 kernels in a suite. The generic flavour is the one with 9p modules. */
export function candidates(suite: string, pkgs: Pkg[]): Candidate[] {
  const byName = new Map(pkgs.map((p) => [p.name, p]));
  const out: Candidate[] = [];
  for (const p of pkgs) {
    const m = new RegExp(`^linux-image-(\\d.*)-${archFacts().debian}$`).exec(p.name);
    if (!m || /-(cloud|rt)$/.test(m[1]!)) continue;
    const abi = m[1]!;
    // sid splits the kernel: linux-image-* is a meta package depending on binary/modules/base.
    const parts = [...p.depends.matchAll(/\b(linux-(?:binary|modules|base)-[^\s,(|]+)/g)]
      .map((x) => x[1]!)
      .filter((n) => n.endsWith(`${abi}-${archFacts().debian}`))
      .map((n) => byName.get(n))
      .filter((x): x is Pkg => !!x);
    out.push({ suite, release: `${abi}-${archFacts().debian}`, version: p.version, packages: [p, ...parts] });
  }
  return out.sort((a, b) => compareVersions(b.version, a.version));
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  const { createReadStream } = await import('node:fs');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function mismatch(file: string, url: string, want: string, got: string): LabError {
  return new LabError(
    `checksum mismatch for ${file}: the Packages index says SHA256 ${want}, the downloaded file has ${got} (${url}); refusing to use it`,
    'the download was corrupted or the mirror is inconsistent: run the command again, or set EBPF_LAB_DEBIAN_MIRROR to another mirror',
  );
}

/**
 * Download one package into cacheDir()/debs and verify its SHA256 against the index. A cached
 * .deb is re-verified (a half-written or corrupted file is discarded and fetched again); a
 * fresh download that does not match is refused, never extracted.
 */
export async function downloadPackage(pkg: Pkg, progress: Progress, signal?: AbortSignal): Promise<string> {
  const dir = join(cacheDir(), 'debs');
  await mkdir(dir, { recursive: true });
  const dest = join(dir, basename(pkg.filename));
  const url = `${debianMirror()}/${pkg.filename}`;
  if (existsSync(dest)) {
    const got = await sha256File(dest);
    if (got === pkg.sha256) return dest;
    progress.warn(`cached ${basename(dest)} does not match the index (SHA256 ${got}); downloading it again`);
    await rm(dest, { force: true });
  }
  progress.step(`downloading ${pkg.name} ${pkg.version} (${(pkg.size / 1e6).toFixed(1)} MB)`);
  const res = await fetchOk(url, signal);
  const total = Number(res.headers.get('content-length') ?? pkg.size) || pkg.size;
  const part = `${dest}.part${process.pid}`;
  const h = createHash('sha256');
  const out = createWriteStream(part);
  let got = 0;
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      h.update(chunk);
      got += chunk.length;
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
      progress.update(total ? got / total : 0, `${(got / 1e6).toFixed(1)}/${(total / 1e6).toFixed(1)} MB`);
    }
    await new Promise<void>((res2, rej) => out.end((e?: Error | null) => (e ? rej(e) : res2())));
  } catch (e) {
    out.destroy();
    await rm(part, { force: true });
    throw e;
  }
  progress.update(1);
  const digest = h.digest('hex');
  if (digest !== pkg.sha256) {
    await rm(part, { force: true });
    throw mismatch(basename(dest), url, pkg.sha256, digest);
  }
  await rename(part, dest);
  return dest;
}

/** Verify a .deb on disk against the index again right before extracting it. */
export async function verifyPackageFile(path: string, pkg: Pkg): Promise<void> {
  const got = await sha256File(path);
  if (got !== pkg.sha256) throw mismatch(basename(path), `${debianMirror()}/${pkg.filename}`, pkg.sha256, got);
}

export async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size;
}
