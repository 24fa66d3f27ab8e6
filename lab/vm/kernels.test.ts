// The CLI edge's kernel check: a kernel the lab cannot resolve is a usage error before any tool
// check, build, report directory or boot, with a short fix. Uses a temp cache holding Debian
// indices written by the test and an unreachable mirror: no network, no root.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../common/args.ts';
import { archFacts } from '../../common/arch.ts';
import { checkKernel } from './kernels.ts';
import { parseKernelSpec } from './spec.ts';

const saved = { mirror: process.env.EBPF_LAB_DEBIAN_MIRROR, cache: process.env.EBPF_LAB_VM_CACHE };
let cache: string;
// nothing listens on port 1: a fetch fails at once
const MIRROR = 'http://127.0.0.1:1/debian';

/** Write fresh cached indices (what suiteIndex keeps): one generic kernel per suite. */
function writeIndices(dir: string, mirror: string, suites: Record<string, string>): void {
  mkdirSync(join(dir, 'index'), { recursive: true });
  const arch = archFacts().debian;
  for (const [suite, version] of Object.entries(suites)) {
    const abi = `${version.split('-')[0]!.split('.').slice(0, 2).join('.')}.0-99`;
    const pkg = { name: `linux-image-${abi}-${arch}`, version, filename: `pool/${suite}.deb`, size: 1, sha256: '00', depends: 'kmod' };
    writeFileSync(join(dir, 'index', `${suite}.json`), JSON.stringify({ mirror, fetchedAt: Date.now(), packages: [pkg], verified: true }));
  }
}

const refusal = async (text: string) => {
  const e = await checkKernel(parseKernelSpec(text)).then(() => undefined, (x: unknown) => x);
  expect(e, text).toBeInstanceOf(UsageError);
  const u = e as UsageError;
  expect(u.exitCode).toBe(2);
  expect(`${u.message}${u.fix}`).not.toContain('\n');
  expect(u.fix!.length).toBeLessThan(200);
  return u;
};

beforeAll(() => {
  cache = mkdtempSync(join(tmpdir(), 'ebpf-lab-kernels-test-'));
  process.env.EBPF_LAB_VM_CACHE = cache;
  process.env.EBPF_LAB_DEBIAN_MIRROR = MIRROR;
});
afterAll(() => {
  rmSync(cache, { recursive: true, force: true });
  for (const [k, v] of [['EBPF_LAB_DEBIAN_MIRROR', saved.mirror], ['EBPF_LAB_VM_CACHE', saved.cache]] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

describe('checkKernel (the CLI edge)', () => {
  it('lets host and the named series through without reading any index', async () => {
    for (const k of ['host', '5.10', '6.1', '6.12', '7.x']) await expect(checkKernel(parseKernelSpec(k))).resolves.toBeUndefined();
  });

  it('cannot tell without any index (offline, no copy): resolution decides later', async () => {
    await expect(checkKernel(parseKernelSpec('9.9'))).resolves.toBeUndefined();
  });

  it('refuses a series or version no index carries, with a short fix naming the known ones', async () => {
    writeIndices(cache, MIRROR, { bullseye: '5.10.223-1', bookworm: '6.1.176-1', trixie: '6.12.117-1', sid: '7.2.13-1' });
    const u = await refusal('9.9');
    expect(u.message).toBe('unknown kernel "9.9"');
    expect(u.fix).toMatch(/^known: host, 5\.10 \(5\.10\.223-1\), 6\.1 \(6\.1\.176-1\), 6\.12 \(6\.12\.117-1\), 7\.x \(7\.2\.13-1\); .*pnpm lab vm kernels/);
    await refusal('6.1.999-1');
    // a typo of a series is named; a version is not taken for a typo of one
    expect((await refusal('6.l')).message).toBe('unknown kernel "6.l" (did you mean 6.1?)');
    expect((await refusal('6.11')).message).toBe('unknown kernel "6.11"');
    // what the indices carry passes: a version, a release, an X.Y series of a suite
    for (const k of ['6.1.176-1', `6.1.0-99-${archFacts().debian}`, '6.1.0-99', '6.12', '7.2', '7']) await expect(checkKernel(parseKernelSpec(k)), k).resolves.toBeUndefined();
  });

  it('an old cached index is enough to pass; a miss in it reads the mirror again before refusing', async () => {
    writeIndices(cache, MIRROR, { bullseye: '5.10.223-1', bookworm: '6.1.176-1', trixie: '6.12.117-1', sid: '7.2.13-1' });
    const { readFileSync } = await import('node:fs');
    for (const s of ['bullseye', 'bookworm', 'trixie', 'sid']) {
      const f = join(cache, 'index', `${s}.json`);
      writeFileSync(f, JSON.stringify({ ...JSON.parse(readFileSync(f, 'utf8')), fetchedAt: 0 }));
    }
    await expect(checkKernel(parseKernelSpec('6.1.176-1'))).resolves.toBeUndefined();
    // the refresh fails (unreachable mirror) and suiteIndex falls back to the old copy: still unknown
    await refusal('9.9');
  });

  it('a bzImage path that does not exist says "no such file", one that is no kernel says so', async () => {
    const u = await refusal('/nonexistent/bzImage');
    expect(u.message).toBe('kernel /nonexistent/bzImage: no such file');
    expect((await refusal(`${cache}`)).message).toMatch(/is not a file/);
    const bz = join(cache, 'bzImage');
    writeFileSync(bz, 'x');
    expect((await refusal(bz)).message).toBe(`kernel ${bz}: 1 bytes: too short for a kernel image`);
    const notKernel = Buffer.alloc(0x400);
    writeFileSync(bz, notKernel);
    expect((await refusal(bz)).message).toBe(`kernel ${bz}: not a kernel image (no bzImage boot header, not an ELF vmlinux)`);
    // the boot header's "HdrS" (a bzImage), or an ELF vmlinux
    notKernel.writeUInt32LE(0x53726448, 0x202);
    writeFileSync(bz, notKernel);
    await expect(checkKernel(parseKernelSpec(bz))).resolves.toBeUndefined();
    const elf = Buffer.alloc(64 + 56);
    elf.writeUInt32BE(0x7f454c46, 0);
    elf[4] = 2; // 64-bit
    elf.writeUInt16LE(2, 16); // ET_EXEC
    elf.writeUInt16LE(0x3e, 18); // x86-64
    elf.writeBigUInt64LE(64n, 32); // program headers right after
    elf.writeUInt16LE(56, 54);
    elf.writeUInt16LE(1, 56);
    elf.writeUInt32LE(1, 64); // PT_LOAD …
    elf.writeBigUInt64LE(0xffffffff81000000n, 64 + 16); // … at the kernel's address
    writeFileSync(bz, elf);
    await expect(checkKernel(parseKernelSpec(bz))).resolves.toBeUndefined();
    // an ELF that is no vmlinux (a program, a shared object) is not booted
    expect((await refusal(process.execPath)).message).toBe(`kernel ${process.execPath}: an ELF file, but no x86-64 vmlinux (no part of it loads at kernel addresses)`);
    expect((await refusal(`${bz}:/nonexistent/mods`)).message).toMatch(/no such modules directory \/nonexistent\/mods/);
  });
});

// review, session 65: a fetch killed outright left its extraction dir and partial download forever
describe('the cache after a fetch killed outright', () => {
  it('dead fetches\' extraction dirs and partial downloads are removed; live ones and finished entries stay', async () => {
    const { sweepDeadFetches } = await import('./kernels.ts');
    const { spawnSync } = await import('node:child_process');
    const { existsSync } = await import('node:fs');
    const gone = spawnSync('true').pid!; // exited: a dead pid (not reused this soon)
    const mk = (p: string) => (mkdirSync(join(cache, p), { recursive: true }), join(cache, p));
    const deadTmp = mk(`.tmp-6.1.999-1-${gone}`);
    writeFileSync(join(deadTmp, 'half'), 'x');
    const liveTmp = mk(`.tmp-6.1.999-1-${process.ppid}`);
    mkdirSync(join(cache, 'debs'), { recursive: true });
    writeFileSync(join(cache, 'debs', `linux-image.deb.part${gone}`), 'x');
    writeFileSync(join(cache, 'debs', 'linux-image.deb'), 'x');
    const entry = mk('6.1.999-1');
    // untouched for an hour only (a live fetch of another pid namespace reads as dead)
    expect(await sweepDeadFetches()).toEqual([]);
    const removed = await sweepDeadFetches(0);
    expect(removed.sort()).toEqual([deadTmp, join(cache, 'debs', `linux-image.deb.part${gone}`)].sort());
    expect([existsSync(liveTmp), existsSync(join(cache, 'debs', 'linux-image.deb')), existsSync(entry)]).toEqual([true, true, true]);
    rmSync(liveTmp, { recursive: true });
  });
});
