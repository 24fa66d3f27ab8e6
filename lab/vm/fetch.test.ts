// The kernel fetcher against a local fake Debian mirror: real HTTP, real Packages.xz, real
// SHA256 check — only the package bytes are deliberately wrong.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProgress } from '../../common/progress.ts';
import { candidates, debianMirror, type Pkg } from './debian.ts';
import { resolveKernel } from './kernels.ts';
import { parseKernelSpec, type VmKernelSpec } from './spec.ts';
import { LabError } from '../../common/errors.ts';
import { procStart } from '../../common/host.ts';

const quiet = createProgress(process.stderr, true);
const parse = (t: string) => parseKernelSpec(t) as VmKernelSpec;
const good = Buffer.from('the real package bytes\n');
const served = Buffer.from('bytes corrupted in transit\n');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const DEB = 'pool/main/l/linux-signed-amd64/linux-image-6.1.0-99-amd64_6.1.999-1_amd64.deb';

const stanza = (name: string, version: string, file: string, hash: string, depends = 'kmod') =>
  `Package: ${name}\nSource: linux-signed-amd64\nVersion: ${version}\nDepends: ${depends}\nFilename: ${file}\nSize: ${good.length}\nSHA256: ${hash}\nDescription: test\n`;

let server: http.Server;
let cache: string;
let gnupg: string;
const saved = { mirror: process.env.EBPF_LAB_DEBIAN_MIRROR, cache: process.env.EBPF_LAB_VM_CACHE, keyring: process.env.EBPF_LAB_DEBIAN_KEYRING };
/** what the mirror serves: the index, and its InRelease (signed by the test's own archive key) */
const mirror: { xz: Buffer; inRelease: Buffer } = { xz: Buffer.alloc(0), inRelease: Buffer.alloc(0) };
const gpg = (args: string[], input?: Buffer | string) => execFileSync('gpg', ['--batch', '--quiet', '--homedir', gnupg, ...args], { input, stdio: ['pipe', 'pipe', 'pipe'] });
/** a Release listing `xz`'s SHA256, clearsigned by the key in `home` */
const signedRelease = (xz: Buffer, home = gnupg) => execFileSync('gpg', ['--batch', '--quiet', '--homedir', home, '--clearsign'], { input: `Origin: Debian\nSuite: bookworm\nSHA256:\n ${sha(xz)} ${xz.length} main/binary-amd64/Packages.xz\n` });

beforeAll(async () => {
  const index = [stanza('linux-image-6.1.0-99-amd64', '6.1.999-1', DEB, sha(good)), stanza('linux-image-6.1.0-99-cloud-amd64', '6.1.999-1', 'pool/x.deb', sha(good)), 'Package: hello\nVersion: 1\nFilename: pool/h.deb\nSHA256: 00\n'].join('\n');
  mirror.xz = execFileSync('xz', ['-c'], { input: index });
  // the test mirror's archive key, in a keyring of its own (EBPF_LAB_DEBIAN_KEYRING)
  gnupg = mkdtempSync(join(tmpdir(), 'ebpf-lab-gpg-'));
  gpg(['--passphrase', '', '--quick-gen-key', 'ebpf-lab test archive <test@invalid>', 'ed25519', 'sign', 'never']);
  writeFileSync(join(gnupg, 'archive.gpg'), gpg(['--export']));
  mirror.inRelease = signedRelease(mirror.xz);
  server = http.createServer((req, res) => {
    if (req.url === '/debian/dists/bookworm/main/binary-amd64/Packages.xz') return res.end(mirror.xz);
    if (req.url === '/debian/dists/bookworm/InRelease') return res.end(mirror.inRelease);
    if (req.url === `/debian/${DEB}`) return res.end(served);
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  cache = mkdtempSync(join(tmpdir(), 'ebpf-lab-fetch-test-'));
  process.env.EBPF_LAB_DEBIAN_MIRROR = `http://127.0.0.1:${port}/debian/`;
  process.env.EBPF_LAB_VM_CACHE = cache;
  process.env.EBPF_LAB_DEBIAN_KEYRING = join(gnupg, 'archive.gpg');
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(cache, { recursive: true, force: true });
  if (gnupg) {
    execFileSync('gpgconf', ['--homedir', gnupg, '--kill', 'gpg-agent'], { stdio: 'ignore' });
    rmSync(gnupg, { recursive: true, force: true });
  }
  for (const [k, v] of [['EBPF_LAB_DEBIAN_MIRROR', saved.mirror], ['EBPF_LAB_VM_CACHE', saved.cache], ['EBPF_LAB_DEBIAN_KEYRING', saved.keyring]] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

describe('kernel fetcher', () => {
  it('takes the mirror from the override, without a trailing slash', () => {
    expect(debianMirror()).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/debian$/);
  });

  // review, session 65: the index was taken as served (plain HTTP): whoever served it chose the
  // SHA256s the packages were then checked against
  it('refuses an index whose InRelease is not signed by the archive keyring, or whose SHA256 is not the signed one', async () => {
    const { suiteIndex } = await import('./debian.ts');
    const real = { ...mirror };
    const other = mkdtempSync(join(tmpdir(), 'ebpf-lab-gpg-'));
    // a checked copy in the cache first: a refused index must not be answered from it
    expect((await suiteIndex('bookworm', { refresh: true })).map((p) => p.name)).toContain('linux-image-6.1.0-99-amd64');
    try {
      // two clearsigned blocks (which one a good signature was for is not said): refused
      mirror.inRelease = Buffer.concat([real.inRelease, real.inRelease]);
      await expect(suiteIndex('bookworm', { refresh: true })).rejects.toThrow(/not one clearsigned block/);
      // signed by a key the keyring lacks
      execFileSync('gpg', ['--batch', '--quiet', '--homedir', other, '--passphrase', '', '--quick-gen-key', 'someone else <x@invalid>', 'ed25519', 'sign', 'never'], { stdio: 'ignore' });
      mirror.inRelease = signedRelease(mirror.xz, other);
      await expect(suiteIndex('bookworm', { refresh: true })).rejects.toThrow(/InRelease is not signed by a key in .*archive\.gpg.*refusing its index/);
      // signed, but altered after signing
      mirror.inRelease = Buffer.from(real.inRelease.toString('utf8').replace('Origin: Debian', 'Origin: Debiam'));
      await expect(suiteIndex('bookworm', { refresh: true })).rejects.toThrow(/not signed by a key/);
      // a good InRelease, another index
      mirror.inRelease = real.inRelease;
      mirror.xz = execFileSync('xz', ['-c'], { input: stanza('linux-image-6.1.0-99-amd64', '6.1.999-1', DEB, sha(served)) });
      await expect(suiteIndex('bookworm', { refresh: true })).rejects.toThrow(/checksum mismatch for .*Packages\.xz: the signed Release says SHA256 /);
      // no keyring: the last checked copy (a machine problem, not a refused index, as offline)…
      process.env.EBPF_LAB_DEBIAN_KEYRING = join(gnupg, 'none.gpg');
      expect((await suiteIndex('bookworm', { refresh: true })).map((p) => p.name)).toContain('linux-image-6.1.0-99-amd64');
      // …and without one, named with the fix
      rmSync(join(cache, 'index', 'bookworm.json'));
      await expect(suiteIndex('bookworm', { refresh: true })).rejects.toThrow(/no keyring at .*none\.gpg/);
    } finally {
      Object.assign(mirror, real);
      process.env.EBPF_LAB_DEBIAN_KEYRING = join(gnupg, 'archive.gpg');
      execFileSync('gpgconf', ['--homedir', other, '--kill', 'gpg-agent'], { stdio: 'ignore' });
      rmSync(other, { recursive: true, force: true });
    }
    // the real ones pass
    expect((await suiteIndex('bookworm', { refresh: true })).map((p) => p.name)).toContain('linux-image-6.1.0-99-amd64');
  });

  it('refuses a download whose SHA256 does not match the index, and keeps nothing of it', async () => {
    const err = await resolveKernel(parse('6.1'), quiet).catch((e) => e);
    expect(err).toBeInstanceOf(LabError);
    expect(err.message).toMatch(/checksum mismatch for linux-image-6\.1\.0-99-amd64_6\.1\.999-1_amd64\.deb/);
    expect(err.message).toContain(sha(good));
    expect(err.message).toContain(sha(served));
    expect(err.message).toMatch(/refusing/);
    // no partial download, no extracted kernel, no temp extraction dir
    expect(existsSync(join(cache, 'debs')) ? readdirSync(join(cache, 'debs')) : []).toEqual([]);
    expect(readdirSync(cache).filter((d) => d !== 'index' && d !== 'debs')).toEqual([]);
  });

  it('re-checks a corrupted cached .deb and refuses the corrupted re-download too', async () => {
    mkdirSync(join(cache, 'debs'), { recursive: true });
    const cached = join(cache, 'debs', 'linux-image-6.1.0-99-amd64_6.1.999-1_amd64.deb');
    writeFileSync(cached, 'a truncated file');
    const err = await resolveKernel(parse('6.1.999-1'), quiet).catch((e) => e);
    expect(err).toBeInstanceOf(LabError);
    expect(err.message).toMatch(/checksum mismatch/);
    expect(existsSync(cached)).toBe(false);
  });

  it('waits for another process fetching the same kernel and takes its result instead of fetching it again', async () => {
    // Two fetches at once shared the cached .debs; the first to finish deleted them under the other.
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    const lock = join(cache, '.fetch-6.1.999-1.lock');
    try {
      writeFileSync(lock, `${other.pid} ${procStart(other.pid!)}\n`);
      const lines: string[] = [];
      const progress = { ...quiet, info: (m: string) => void lines.push(m) };
      const fetching = resolveKernel(parse('6.1.999-1'), progress);
      await new Promise((r) => setTimeout(r, 600));
      expect(lines.join('\n')).toMatch(new RegExp(`waiting for pid ${other.pid}, which is fetching kernel 6\\.1\\.999-1`));
      // the other process finishes: its kernel is cached (the mirror serves corrupt bytes, so a
      // second download would fail the checksum), and it releases the lock
      mkdirSync(join(cache, '6.1.999-1'), { recursive: true });
      writeFileSync(join(cache, '6.1.999-1', 'kernel.json'), JSON.stringify({ spec: '6.1', source: 'debian', version: '6.1.999-1', release: '6.1.0-99-amd64', suite: 'bookworm', bzImage: 'vmlinuz', packages: [] }));
      rmSync(lock);
      const k = await fetching;
      expect(k.version).toBe('6.1.999-1');
      expect(k.bzImage).toBe(join(cache, '6.1.999-1', 'vmlinuz'));
      expect(existsSync(lock)).toBe(false);
    } finally {
      other.kill('SIGKILL');
      rmSync(join(cache, '6.1.999-1'), { recursive: true, force: true });
      rmSync(lock, { force: true });
    }
  });

  it('lists the available kernels for an unknown version', async () => {
    const err = await resolveKernel(parse('4.19'), quiet).catch((e) => e);
    expect(err).toBeInstanceOf(LabError);
    expect(err.message).toMatch(/unknown kernel "4\.19"/);
    // the series with their newest version, briefly (every version made a ~600-character line)
    expect(err.fix).toMatch(/6\.1 \(6\.1\.999-1\)/);
    // suites the (fake) mirror lacks are still listed, by name
    expect(err.fix).toMatch(/^known: host, 5\.10, 6\.1 .*, 6\.12, 7\.x;/);
    expect(`${err.message}${err.fix}`).not.toContain('\n');
    expect(err.fix.length).toBeLessThan(200);
  });
});

describe('Debian index parsing', () => {
  it('assembles sid-style split kernels (meta image + binary/modules/base) and skips cloud/rt', () => {
    const p = (name: string, depends = ''): Pkg => ({ name, version: '7.2.13-1', filename: `pool/${name}.deb`, size: 1, sha256: 'x', depends });
    const pkgs = [
      p('linux-image-7.2.13+deb14-amd64', 'dracut | initramfs-tools, linux-base-7.2.13+deb14-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1), linux-modules-7.2.13+deb14-amd64 (= 7.2.13-1)'),
      p('linux-binary-7.2.13+deb14-amd64'), p('linux-modules-7.2.13+deb14-amd64'), p('linux-base-7.2.13+deb14-amd64'),
      p('linux-image-7.2.13+deb14-cloud-amd64'), p('linux-image-7.2.13+deb14-rt-amd64'), p('linux-image-7.2.13+deb14-amd64-dbg'),
    ];
    const c = candidates('sid', pkgs);
    expect(c).toHaveLength(1);
    expect(c[0]!.release).toBe('7.2.13+deb14-amd64');
    expect(c[0]!.packages.map((x) => x.name)).toEqual(['linux-image-7.2.13+deb14-amd64', 'linux-base-7.2.13+deb14-amd64', 'linux-binary-7.2.13+deb14-amd64', 'linux-modules-7.2.13+deb14-amd64']);
  });
});
