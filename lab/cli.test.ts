// The CLI as a user meets it: every command has --help (exit 0), mistakes are one line with a
// fix and exit 2, nothing is built, loaded, booted or created before the arguments are valid.
// Runs the prebuilt bundle (what a VM runs), so this also proves the bundle works; no root needed.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBundle } from './bundle.ts';
import { REPO_ROOT } from '../common/dist.ts';
import { archFacts } from '../common/arch.ts';
import { sampleResults } from './report/fixture.ts';
import { REPORTS_DIR, makeOutDir } from './run.ts';

/** a thread of this process that is not its main thread (V8 runs several) */
const TID = fs.readdirSync(`/proc/${process.pid}/task`).find((t) => Number(t) !== process.pid)!;

let cli = '';
const reportsWritable = (() => {
  try {
    fs.accessSync(fs.existsSync(REPORTS_DIR) ? REPORTS_DIR : REPO_ROOT, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();

beforeAll(async () => {
  cli = await ensureBundle();
}, 60_000);

function lab(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
// a finished run's directory (only its results.json matters here)
const A_RUN = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-cli-a-run-'));
fs.writeFileSync(path.join(A_RUN, 'results.json'), '{}');
// a matrix killed outright: its cell's run, no matrix.json
const A_CELL = path.join(A_RUN, 'matrix', 'hello-openat-host');
fs.mkdirSync(path.dirname(A_CELL));
fs.mkdirSync(A_CELL);
fs.writeFileSync(path.join(A_CELL, 'results.json'), '{}');
afterAll(() => fs.rmSync(A_RUN, { recursive: true, force: true }));
const noStack = (s: string) => expect(s).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
const reportDirs = () => (fs.existsSync(path.join(REPO_ROOT, 'reports')) ? fs.readdirSync(path.join(REPO_ROOT, 'reports')) : []);

describe('lab CLI', () => {
  it('`pnpm lab` alone prints help', () => {
    const r = lab([]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/usage: pnpm lab <command>/);
  });

  it.each([
    ['run', 'hello-openat'], ['bench', 'xdp-lb'], ['run', 'security'], ['doctor'], ['build'], ['matrix'], ['setup'], ['report'], ['list'], ['vm'], ['vm', 'exec'], ['vm', 'boot-times'], ['vm', 'kernels'],
  ])('%s %s --help prints usage and exits 0 without doing anything', (...cmd) => {
    const before = reportDirs();
    const r = lab([...cmd.filter(Boolean), '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/usage: pnpm lab /);
    expect(r.err).toBe('');
    expect(reportDirs()).toEqual(before);
  });

  // `vm` and `tc` alone once printed their usage and exited 0; vm, policy and energy then printed
  // the whole usage as their error, lb and svc one line: every group now says it the same way
  it.each([['vm'], ['lb'], ['policy'], ['svc'], ['energy'], ['tc'], ['tc', 'shape']])('%s without a command is a usage error: one line and the fix, exit 2', (...cmd) => {
    const r = lab(cmd);
    expect(r.code).toBe(2);
    expect(r.err).toBe(`error: ${cmd.join(' ')} needs a command\n  fix: pnpm lab ${cmd[0]} --help lists the commands\n`);
    expect(r.out).toBe('');
  });

  it('vm --help and vm kernels --help agree on --refresh', () => {
    expect(lab(['vm', '--help']).out).toMatch(/kernels \[--refresh\]/);
    expect(lab(['vm', 'kernels', '--help']).out).toMatch(/--refresh +read the indices from the mirror again/);
  });

  it('help <command> is that command\'s --help', () => {
    expect(lab(['help', 'matrix']).out).toMatch(/^usage: pnpm lab matrix/);
    expect(lab(['help', 'run', 'hello-openat']).out).toMatch(/^usage: pnpm lab run hello-openat[\s\S]*--comm NAME/);
  });

  it('a scenario\'s --help lists its own options', () => {
    expect(lab(['run', 'hello-openat', '--help']).out).toMatch(/--comm NAME[\s\S]*--rate N/);
    expect(lab(['run', 'security', '--help']).out).toMatch(/--lsm auto\|off/);
  });

  it.each([
    [['runn'], /unknown command "runn" \(did you mean run\?\)/],
    [[''], /the command is empty \(""\)/],
    // another run's directory is not written over; a matrix names each cell once
    [['run', 'hello-openat', '--out', A_RUN], /already holds a run \(results\.json\): a run does not write over another/],
    [['matrix', '--scenarios', 'hello-openat,hello-openat', '--kernels', 'host'], /--scenarios names hello-openat twice/],
    // a file that is no kernel is refused before a fetch, a cache entry or a boot
    [['vm', 'fetch', '/etc/passwd'], /kernel \/etc\/passwd: not a kernel image \(no bzImage boot header, not an ELF vmlinux\)/],
    [['run', 'hello-openat', '--kernel', '/dev/null'], /kernel \/dev\/null: \/dev\/null is not a file/],
    [['matrix', '--scenarios', 'hello-openat', '--kernels', 'host,host'], /--kernels names "host" twice/],
    // a matrix killed outright left cells and no matrix.json: a new one there would read them back as its own
    [['matrix', '--scenarios', 'hello-openat', '--kernels', 'host', '--out', path.dirname(A_CELL)], /hello-openat-host already holds a run \(results\.json\)/],
    // nor is a run's own directory a matrix's (its index and cells went in beside the report)
    [['matrix', '--scenarios', 'hello-openat', '--kernels', 'host', '--out', A_RUN], /--out \S+ holds a run \(results\.json\): a matrix writes into a directory of its own/],
    [['run', 'a\nb'], /^error: unknown scenario "a\\nb"$/m],
    [['run', 'hello-openat', '--rate', '10', '--rate', '20'], /--rate is given 2 times \("10", "20"\)/],
    [['run', 'hello-openat', '--duraton', '3'], /unknown option --duraton \(did you mean --duration\?\)/],
    [['run', 'hello-openat', '--duration', 'abc'], /--duration "abc": expected a whole number/],
    [['run', 'hello-openat', '--duration'], /--duration needs a value/],
    [['run', 'hello-openat', '--comm', 'a-name-longer-than-15'], /--comm "a-name-longer-than-15": longer than the kernel's 15-byte comm/],
    [['run', 'security', '--lsm', 'of'], /--lsm "of": expected one of auto, off/],
    [['run', 'hello-opnat'], /unknown scenario "hello-opnat" \(did you mean hello-openat\?\)/],
    [['run'], /missing <scenario>/],
    [['run', 'hello-openat', 'extra'], /unexpected argument "extra"/],
    // found by review (session 56): what follows -- was dropped unread (a --timeout there did
    // nothing); a directory with other things in it took a run's files (the reports root, /)
    [['run', 'hello-openat', '--', '--timeout', '60'], /unexpected arguments after --: --timeout 60[\s\S]*options go before --/],
    [['run', 'hello-openat', '--pid', '4194000'], /--pid 4194000: no such process/],
    // a thread's id traced nothing (the program compares the process id) and passed
    [['run', 'hello-openat', '--pid', TID], new RegExp(`--pid ${TID} is a thread of process ${process.pid}: openat is traced per process\\n {2}fix: --pid ${process.pid} `)],
    [['run', 'hello-openat', '--duration', '3000000'], /--duration "3000000": must be ≤ 86400/],
    [['run', 'hello-openat', '--out', path.join(REPO_ROOT, 'lab')], /--out \S+ is a directory with other things in it \(.*\): a run writes into a directory of its own/],
    [['matrix', '--kernels', 'host'], /matrix needs --scenarios/],
    [['matrix', '--scenarios', 'nope', '--kernels', 'host'], /unknown scenario "nope"/],
    [['matrix', '--scenarios', 'xdp_lb', '--kernels', 'host'], /unknown scenario "xdp_lb" \(did you mean xdp-lb\?\)/],
    [['run', 'hello'], /unknown scenario "hello" \(did you mean hello-openat\?\)/],
    // an option of the other mode was read by nothing (run tracing --repeat 5 ran once)
    [['run', 'tracing', '--repeat', '5'], /^error: --repeat is a bench option: pnpm lab run tracing does not read it\n {2}fix: pnpm lab bench tracing --repeat 5, or leave it out$/m],
    [['bench', 'tracing', '--requests', '500'], /--requests is a run option: pnpm lab bench tracing does not read it/],
    [['run', 'hello-openat', '--kernel', 'hots'], /unknown kernel "hots" \(did you mean host\?\)/],
    [['setup', 'vn'], /unknown tool group "vn" \(did you mean vm\?\)/],
    [['vm', 'exce'], /unknown vm command "exce" \(did you mean exec\?\)/],
    [['vm', 'exec', '6.1'], /vm exec needs a command after --/],
    [['vm', 'exec', 'host', '--', 'true'], /"host" is this machine's kernel, not a VM kernel/],
    [['run', 'hello-openat', '--vm-backend', 'vng'], /--vm-backend vng boots a VM kernel/],
    [['run', 'hello-openat', '--kernel', '6.1', '--vm-backend', 'vgn'], /--vm-backend "vgn": expected one of lab, vng/],
    // virtme-ng refuses such a shared dir at start; the lab's own runner takes it
    [['run', 'hello-openat', '--kernel', '6.1', '--vm-backend', 'vng', '--out', '/tmp/a,b'], /--vm-backend vng cannot share \/tmp\/a,b: virtme-ng takes only letters/],
    [['report'], /missing <run dir>/],
    [['run', 'hello-openat', '--timeout', '3'], /--timeout "3": must be ≥ 10/],
    [['run', 'hello-openat', '--rate', '99999999'], /--rate "99999999": must be ≤ 10000000/],
    // Number() read 1e99 (then refused by the range), 1e3 as 1000 and 0x10 as 16: decimal digits only
    [['run', 'hello-openat', '--rate', '1e3'], /--rate "1e3": expected a whole number in decimal digits \(e\.g\. 16, not 0x10, 1e3, \+16 or 16\.0\)/],
    [['run', 'hello-openat', '--duration', '0x10'], /--duration "0x10": expected a whole number in decimal digits/],
    [['run', 'hello-openat', '--rates', 'abc'], /--rates "abc": each rate is a whole number/],
    [['run', 'socket-lb', '--services', 'abc'], /--services "abc": each count is a whole number 1-100000/],
    // a typo, not the list 10,20 (the empty item was dropped and the run went on)
    [['run', 'socket-lb', '--services', '10,,20'], /--services "10,,20": an empty item in the list/],
    // the fix's name must fit the 15 bytes itself (a cut at 15 characters did not, for é)
    [['run', 'hello-openat', '--comm', 'abcdefghijklmnopq'], /--comm "abcdefghijklmnopq": longer than the kernel's 15-byte comm\n {2}fix: the kernel keeps the first 15 bytes: --comm abcdefghijklmno\n/],
    [['run', 'hello-openat', '--comm', "it's a long name"], /fix: the kernel keeps the first 15 bytes: --comm 'it'\\''s a long nam'\n/],
    [['run', 'hello-openat', '--comm', 'ééééééééé'], /--comm "ééééééééé": longer than the kernel's 15-byte comm\n {2}fix: .*end inside a character.*--pid\n/],
    // digits all the same: too large, not "expected a whole number in decimal digits"
    [['run', 'hello-openat', '--max-print', '99999999999999999999999'], /--max-print "9+": too large \(must be ≤ \d+\)/],
    [['run', 'energy', '--tdp', '5', '--idle', '50'], /--idle 50 exceeds --tdp 5/],
    // (this machine's CPUs; a guest's are checked first thing in the guest)
    [['bench', 'energy', '--pin-cpu', '9999'], /--pin-cpu 9999 is not an online CPU here \(online: [\d,-]+\)\n {2}fix: pass one of [\d, ]+ or -1\n/],
    [['run', 'hello-openat', '--out', '/proc/nope'], /--out \/proc\/nope: \/proc is on procfs/],
    [['run', 'hello-openat', '--out', '/etc/passwd/x'], /--out \/etc\/passwd\/x: \/etc\/passwd is not a directory/],
    // refused before the run starts (it failed after its start, ENAMETOOLONG as an internal error)
    [['run', 'hello-openat', '--out', `/tmp/${'a'.repeat(300)}`], /--out \/tmp\/a+…: a path component is 300 bytes long \(at most 255\)/],
    // a list with no items
    [['run', 'hello-openat', '--rates', ',,'], /--rates ",,": the list has no items/],
    [['run', 'tracing', '--tracer-sched', ','], /--tracer-sched ",": the list has no items/],
    [['run', 'socket-lb', '--services', ','], /--services ",": the list has no items/],
    [['vm', 'boot-times', '--kernels', ','], /--kernels ",": the list has no items/],
    // scenario values the scenario itself used to refuse only after the tools check or boot
    [['run', 'socket-lb', '--ring-size', '250'], /--ring-size "250": not a prime \(Maglev needs one\)\n {2}fix: the nearest primes: --ring-size 241 or --ring-size 251/],
    [['run', 'hello-openat', '--pid', '99999999999'], /--pid "99999999999": must be ≤ 4194304/],
    // --print is "no filter": with one it printed a filtered trace
    [['run', 'hello-openat', '--pid', '1', '--print'], /--print traces every process; --pid 1 traces only some\n {2}fix: drop --print \(--pid 1 prints on its own\), or drop --pid\n/],
    [['run', 'hello-openat', '--print', '--comm', 'node'], /--comm node traces only some/],
    // QEMU would refuse the share with its own message, after starting
    [['vm', 'exec', '6.1', '--out', '/nonexistent/d', '--', 'uname'], /--out \/nonexistent\/d: no such directory/],
    // a matrix refuses what its cells would, before it makes its directory
    [['matrix', '--scenarios', 'hello-openat', '--', '--bogus'], /unknown option --bogus/],
    [['matrix', '--scenarios', 'hello-openat', '--', '--duration', '0'], /--duration "0": must be ≥ 1/],
    [['matrix', '--scenarios', 'hello-openat', '--', '--kernel', '6.1'], /--kernel after "--": the matrix sets it for every cell/],
    [['matrix', '--scenarios', 'hello-openat', '--kernels', 'host,/nonexistent/bz'], /kernel \/nonexistent\/bz: no such file/],
    [['matrix', '--report-only', '--scenarios', 'hello-openat', '--out', '/nonexistent/dir'], /no runs in \/nonexistent\/dir: no such directory/],
    // paths of compare, publish and report, checked before any work
    [['compare', '--summary', '/nonexistent/dir/f', 'A', 'B'], /--summary \/nonexistent\/dir\/f: no such directory \/nonexistent\/dir/],
    [['compare', '/nonexistent/a', '/nonexistent/b'], /cannot read \/nonexistent\/a: no such file or directory/],
    [['publish', '/nonexistent/runs', '--out', '/etc/passwd'], /--out \/etc\/passwd: \/etc\/passwd is not a directory/],
    [['report', '/nonexistent/run'], /cannot read \/nonexistent\/run: no such file or directory/],
  ])('usage error %j: one line and a fix, exit 2, no stack, nothing created', (args, msg) => {
    const before = reportDirs();
    const r = lab(args as string[]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(msg as RegExp);
    expect(r.err).toMatch(/^error: .*\n {2}fix: .+\n$/);
    noStack(r.err);
    expect(reportDirs()).toEqual(before);
  });

  it('an unknown kernel is a usage error before the tools check, with a short fix', () => {
    // the indices as suiteIndex caches them, fresh, behind a mirror nobody serves: no network
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-cli-kernels-'));
    const mirror = 'http://127.0.0.1:1/debian';
    try {
      fs.mkdirSync(path.join(cache, 'index'));
      for (const [suite, v] of [['bullseye', '5.10'], ['bookworm', '6.1'], ['trixie', '6.12'], ['sid', '7.2']] as const) {
        const pkg = { name: `linux-image-${v}.0-99-${archFacts().debian}`, version: `${v}.999-1`, filename: 'pool/x.deb', size: 1, sha256: '00', depends: 'kmod' };
        fs.writeFileSync(path.join(cache, 'index', `${suite}.json`), JSON.stringify({ mirror, fetchedAt: Date.now(), packages: [pkg], verified: true }));
      }
      const env = { EBPF_LAB_VM_CACHE: cache, EBPF_LAB_DEBIAN_MIRROR: mirror };
      const before = reportDirs();
      for (const args of [
        ['run', 'hello-openat', '--kernel', '9.9'], ['vm', 'fetch', '9.9'], ['vm', 'exec', '9.9', '--', 'uname'], ['vm', 'boot-times', '--kernels', '9.9'],
        ['matrix', '--scenarios', 'hello-openat', '--kernels', 'host,9.9'],
      ]) {
        const r = lab(args, env);
        expect(r.code, args.join(' ')).toBe(2);
        expect(r.err).toMatch(/^error: unknown kernel "9\.9"\n {2}fix: known: host, 5\.10 \(5\.10\.999-1\), 6\.1 \(6\.1\.999-1\), .*\n$/);
        expect(r.err.split('\n')[1]!.length).toBeLessThan(200);
        noStack(r.err);
      }
      // one kernel spelled two ways (a series and its version, a version and its release, a file
      // and a link to it): two rows would boot it, into two cell directories
      const bz = path.join(cache, 'bzImage');
      const head = Buffer.alloc(0x400);
      head.writeUInt32LE(0x53726448, 0x202); // "HdrS": a bzImage's boot header
      fs.writeFileSync(bz, head);
      fs.symlinkSync(bz, path.join(cache, 'vmlinuz'));
      for (const [ks, one] of [['6.1,6.1.999-1', '6.1.999-1'], [`6.1.999-1,6.1.0-99-${archFacts().debian}`, '6.1.999-1'], [`${bz},${path.join(cache, 'vmlinuz')}`, bz]]) {
        const r = lab(['matrix', '--scenarios', 'hello-openat', '--kernels', ks!], env);
        expect(r.code, ks).toBe(2);
        expect(r.err).toBe(`error: --kernels names ${ks!.split(',').map((k) => JSON.stringify(k)).join(' and ')}, which are one kernel (${one}): two rows would boot it\n  fix: name each kernel once\n`);
      }
      fs.rmSync(bz);
      fs.rmSync(path.join(cache, 'vmlinuz'));
      const missing = lab(['run', 'hello-openat', '--kernel', '/nonexistent/bzImage'], env);
      expect(missing.code).toBe(2);
      expect(missing.err).toMatch(/^error: kernel \/nonexistent\/bzImage: no such file\n {2}fix: /);
      expect(reportDirs()).toEqual(before);
      expect(fs.readdirSync(cache)).toEqual(['index']);
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  }, 120_000);

  it('`report` on results.json of the wrong shape prints one clean error', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-badreport-'));
    try {
      const good = sampleResults();
      const cases: [unknown, RegExp][] = [
        [{ schema: 1 }, /"runId" is missing/],
        [{ ...good, checks: 'x' }, /"checks" must be an array/],
        [{ ...good, environment: null }, /"environment" must be an object/],
        [{ ...good, schema: 2 }, /unsupported results schema 2/],
        [[1, 2], /not a JSON object/],
        ['{"trunc', /not valid JSON/],
        // the optional parts the renderers read (they crashed report and publish as internal errors)
        [{ ...good, headline: [null] }, /headline\[0\] must be an object/],
        [{ ...good, headline: 'oops' }, /"headline" must be an array/],
        [{ ...good, headline: [{ name: 'x', label: 'x', unit: '', value: 1, better: "'><x-pwn>" }] }, /headline\[0\] "better" must be higher or lower/],
        [{ ...good, environment: { ...good.environment, cpu: { model: null } } }, /"environment\.cpu" must have a model/],
        [{ ...good, context: { busy: 'yes' } }, /"context" is not a run context/],
        [{ ...good, sections: [{ title: 't', blocks: [null] }] }, /sections\[0\]\.blocks\[0\] must be an object/],
        [{ ...good, sections: [{ title: 't', blocks: [{ kind: 'table', columns: ['a'], rows: 'x' }] }] }, /sections\[0\]\.blocks\[0\] \(table\) needs/],
        // what publish sorts, files and formats by (each crashed the whole site: review, session 65)
        [{ ...good, headline: [{ name: 'x', label: 'x', unit: '', value: 1, better: 'lower', comparator: { name: 'c', ratio: '1.2' } }] }, /headline\[0\] "comparator\.ratio" must be a number/],
        [{ ...good, headline: [{ name: 'x', label: 'x', unit: '', value: 1, better: 'lower', comparator: { name: 'c', ci: ['a', 1] } }] }, /headline\[0\] "comparator\.ci" must be numbers/],
        [{ ...good, environment: { ...good.environment, kernel: { release: '6.1.0', spec: 6.1 } } }, /"environment\.kernel\.spec" must be a string/],
        [{ ...good, environment: { ...good.environment, git: { commit: 12345, dirty: false } } }, /"environment\.git\.commit" must be a string/],
        [{ ...good, options: [1] }, /"options" must be an object/],
      ];
      for (const [json, msg] of cases) {
        fs.writeFileSync(path.join(dir, 'results.json'), typeof json === 'string' ? json : JSON.stringify(json));
        const r = lab(['report', dir]);
        expect(r.code, JSON.stringify(json).slice(0, 60)).toBe(1);
        expect(r.err).toMatch(msg);
        noStack(r.err);
        expect(fs.existsSync(path.join(dir, 'report.html'))).toBe(false);
      }
      fs.writeFileSync(path.join(dir, 'results.json'), JSON.stringify(good));
      // a broken run after a good one: nothing is re-rendered, and the error says so
      const bad = `${dir}-bad`;
      fs.mkdirSync(bad);
      try {
        fs.writeFileSync(path.join(bad, 'results.json'), '{"trunc');
        const both = lab(['report', dir, bad]);
        expect(both.code).toBe(1);
        expect(both.err).toMatch(/not valid JSON[\s\S]*nothing was re-rendered/);
        expect(fs.existsSync(path.join(dir, 'report.html'))).toBe(false);
        // …and a directory whose running.json is no run's record, with no results.json: it was
        // found only after the good one was re-rendered (review, session 57)
        fs.rmSync(path.join(bad, 'results.json'));
        fs.writeFileSync(path.join(bad, 'running.json'), '{"pid":999999}');
        const killed = lab(['report', dir, bad]);
        expect(killed.code).toBe(1);
        expect(killed.err).toMatch(/-bad: no results\.json, and its running\.json holds no run's results .*: there is no report to render\n {2}fix: .*nothing was re-rendered/);
        expect(fs.existsSync(path.join(dir, 'report.html'))).toBe(false);
      } finally {
        fs.rmSync(bad, { recursive: true, force: true });
      }
      expect(lab(['report', dir]).code).toBe(0);
      expect(fs.readFileSync(path.join(dir, 'report.html'), 'utf8')).not.toContain('undefined · undefined');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  // ./lab.sh cds to the repo and pnpm runs scripts in the package root: a relative path was looked
  // for under the repo ("cannot read run1: no such file or directory" from the directory holding it)
  it('relative paths are the caller\'s, through ./lab.sh and through pnpm lab from another directory', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-callercwd-'));
    try {
      fs.mkdirSync(path.join(dir, 'run1'));
      fs.writeFileSync(path.join(dir, 'run1', 'results.json'), JSON.stringify(sampleResults()));
      const env = { ...process.env, EBPF_LAB_CALLER_CWD: '', INIT_CWD: '', npm_lifecycle_event: '' };
      for (const [cmd, args] of [[path.join(REPO_ROOT, 'lab.sh'), ['report', 'run1']], ['pnpm', ['-s', '--dir', REPO_ROOT, 'lab', 'report', 'run1']]] as const) {
        fs.rmSync(path.join(dir, 'run1', 'report.html'), { force: true });
        const r = spawnSync(cmd, [...args], { cwd: dir, encoding: 'utf8', env, timeout: 120_000 });
        expect(r.status, `${cmd}: ${r.stderr}`).toBe(0);
        expect(fs.existsSync(path.join(dir, 'run1', 'report.html')), cmd).toBe(true);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);

  it.skipIf(!reportsWritable)('two runs started in the same second get their own directories [skipped where reports/ is read-only: pnpm test as nobody]', () => {
    const made: string[] = [];
    try {
      for (let i = 0; i < 3; i++) made.push(makeOutDir({ scenario: 'clitest', outDir: undefined }, 'host').outDir);
      expect(new Set(made).size).toBe(3);
      expect(made[1]).toBe(`${made[0]}-2`);
    } finally {
      for (const d of made) fs.rmSync(d, { recursive: true, force: true });
    }
  });

  // the --out check at parse time is no claim: two runs started together into one directory both
  // ran and one report overwrote the other
  it('a run claims its --out as it makes it: a second run into it at the same moment is refused', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-claim-'));
    try {
      expect(makeOutDir({ scenario: 'clitest', outDir: dir }, 'host').outDir).toBe(dir);
      expect(JSON.parse(fs.readFileSync(path.join(dir, 'running.json'), 'utf8')).pid).toBe(process.pid);
      expect(() => makeOutDir({ scenario: 'clitest', outDir: dir }, 'host')).toThrow(new RegExp(`another run \\(pid ${process.pid}\\) has just taken it`));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  // doctor always exited 0: a script could not gate on it (review, session 57)
  it.skipIf(process.getuid?.() !== 0)('doctor --require gates on rows: 0 when usable, 1 naming what is missing, 2 for a row it does not have [needs root: trial attaches]', () => {
    const ok = lab(['doctor', '--no-kvm', '--json', '--require', 'attach:tracepoint,map:ringbuf']);
    expect(ok.code, ok.err).toBe(0);
    const t = JSON.parse(ok.out) as Record<string, { ok: boolean }>;
    const absent = Object.keys(t).find((k) => t[k]!.ok === false && k !== 'vng');
    if (absent) {
      const no = lab(['doctor', '--no-kvm', '--require', `attach:tracepoint,${absent}`]);
      expect(no.code).toBe(1);
      expect(no.err).toContain(`missing here: ${absent} (`);
    }
    const typo = lab(['doctor', '--no-kvm', '--require', 'attach:tracepiont']);
    expect(typo.code).toBe(2);
    expect(typo.err).toMatch(/^error: --require "attach:tracepiont": no such row \(did you mean attach:tracepoint\?\)/m);
  }, 120_000);

  it.skipIf(process.getuid?.() !== 0)('--timeout stops a host run at its limit: cleaned up, reported as an error, exit 1, no process left [needs root: loads BPF]', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-lab-timeout-'));
    try {
      const t0 = Date.now();
      // a paced load of 2 minutes (an odd length, to find its generator by), stopped after 10 s
      const r = spawnSync(process.execPath, [cli, 'run', 'hello-openat', '--load-ms', '123457', '--timeout', '10', '--out', dir], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 90_000 });
      const s = (Date.now() - t0) / 1000;
      expect(r.status).toBe(1);
      expect(s).toBeLessThan(40);
      expect(r.stdout).toMatch(/ERROR .*\nerror: .*timed out after 10 s \(--timeout\)/);
      const res = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8')) as { status: string; error: string };
      expect(res.status).toBe('error');
      expect(fs.existsSync(path.join(dir, 'report.html'))).toBe(true);
      // the generator it started is gone with it
      const left = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
        try {
          return fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes('123457');
        } catch {
          return false;
        }
      });
      expect(left).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
