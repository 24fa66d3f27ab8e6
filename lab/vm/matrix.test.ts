// The matrix report is built from results.json files alone: feed it runs on disk, read the HTML and JUnit.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Results } from '../results.ts';
import { UsageError } from '../../common/args.ts';
import { junitXml, kernelSlug, matrixCommand, readCell, runsInDir, writeMatrixReport, type MatrixCell } from './matrix.ts';

const dir = mkdtempSync(join(tmpdir(), 'ebpf-lab-matrix-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function results(kernel: string, status: Results['status'], vm: boolean): Results {
  return {
    schema: 1, runId: `r-${kernel}`, scenario: 'hello-openat', mode: 'run', startedAt: '2026-01-01T00:00:00Z', durationMs: 12_300, status,
    options: {},
    environment: {
      kernel: { release: vm ? '6.1.0-50-amd64' : '6.18.0-host', spec: kernel }, target: vm ? 'vm' : 'host', cpu: { model: 'x', cores: 2 }, memoryBytes: 1, node: 'v20', libbpf: '1.1', git: { commit: null, dirty: false }, hostname: 'h',
      vm: vm ? { kernelVersion: '6.1.176-1', accel: 'tcg', accelNote: 'KVM unusable', bootMs: 2500, totalMs: 25_000, bootLog: 'vm-console.log', config: { BTF: 'y', BPF_LSM: 'y', LSM: 'lockdown,bpf' } } : undefined,
      probes: { ringbuf: { ok: true }, 'lsm <script>': { ok: !vm, detail: 'EPERM & co' } },
    },
    checks: status === 'unsupported'
      ? [{ name: 'event arrives', status: 'pass' }, { name: 'lsm hook', status: 'unsupported', detail: `unsupported: BPF LSM on 6.18.0-host`, evidence: 'probe: EPERM' }]
      : [{ name: 'event arrives', status: status === 'fail' ? 'fail' : 'pass', detail: 'pid 42' }],
    metrics: {}, sections: [],
  };
}

describe('matrix report', () => {
  it('junit.xml stays well-formed XML when an error or check detail carries colour codes and other control characters', () => {
    const r = results('6.1', 'fail', true);
    r.checks = [{ name: 'event \x1b[31marrives\x1b[0m', status: 'fail', detail: 'got \x00\x01\x0c\ud800 from the guest' }];
    const c: MatrixCell = { scenario: 'hello-openat', kernel: '6.1', dir: join(dir, 'ctl'), exitCode: 1, wallMs: 1000, status: 'fail', results: r, error: 'guest said \x1b[1mno\x1b[0m' } as MatrixCell;
    const x = junitXml([c], ['6.1']);
    // XML 1.0: tab, LF, CR and U+0020 on, no lone surrogate
    expect(x).not.toMatch(/[\x00-\x08\x0b\x0c\x0e-\x1f]|[\ud800-\udfff]/);
    expect(x).toContain('event \\x1b[31marrives\\x1b[0m');
  });

  it('renders scenarios × kernels with links, probes, boot times and JUnit', async () => {
    const kernels = ['6.1', 'host', '7.x', '/boot/vmlinuz-x'];
    const cells: MatrixCell[] = kernels.map((k) => ({ scenario: 'hello-openat', kernel: k, dir: join(dir, `hello-openat-${kernelSlug(k)}`), exitCode: 0, wallMs: 30_000, status: 'pending' }));
    const st: Record<string, Results['status']> = { '6.1': 'pass', host: 'unsupported', '7.x': 'fail' };
    for (const c of cells) {
      mkdirSync(c.dir, { recursive: true });
      if (st[c.kernel]) {
        writeFileSync(join(c.dir, 'results.json'), JSON.stringify(results(c.kernel, st[c.kernel]!, c.kernel !== 'host')));
        writeFileSync(join(c.dir, 'report.html'), '<html></html>');
      } else writeFileSync(`${c.dir}.log`, 'boom\n');
      readCell(c);
    }
    expect(cells.map((c) => c.status)).toEqual(['pass', 'unsupported', 'fail', 'error']);
    await writeMatrixReport(cells, ['hello-openat'], kernels, dir, '2026-01-01T00:00:00Z');
    const html = readFileSync(join(dir, 'index.html'), 'utf8');
    expect(html).toContain('href="hello-openat-6.1/report.html"');
    expect(html).toContain('href="hello-openat-vmlinuz-x.log"'); // no report: link the run log
    // a cell that never ran has no log either: no link to a file that is not there
    rmSync(`${cells[3]!.dir}.log`);
    await writeMatrixReport(cells, ['hello-openat'], kernels, dir, '2026-01-01T00:00:00Z');
    expect(readFileSync(join(dir, 'index.html'), 'utf8')).not.toContain('href="hello-openat-vmlinuz-x.log"');
    expect(html).toMatch(/<th>7\.x<br><span class="muted">6\.1\.0-50-amd64/);
    expect(html).toContain('2.5 s'); // boot-to-ready
    expect(html).toContain('lsm &lt;script&gt;'); // probe names are escaped
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3)/); // self-contained
    const junit = readFileSync(join(dir, 'junit.xml'), 'utf8');
    expect(junit).toMatch(/<testsuite name="kernel 6\.1" tests="1" failures="0" errors="0" skipped="0"/);
    expect(html).not.toContain(dir); // links are relative
    // the unsupported check is a skipped testcase of its own (prefix not doubled); the cell keeps its pass
    expect(junit).toMatch(/<testsuite name="kernel host" tests="2" failures="0" errors="0" skipped="1"/);
    expect(junit).toMatch(/<testcase classname="ebpf-lab.host" name="hello-openat" time="12.300"><system-out>/);
    expect(junit).toMatch(/<testcase classname="ebpf-lab.host" name="hello-openat: lsm hook" time="0"><skipped message="unsupported: BPF LSM on 6.18.0-host \(probe: EPERM\)"\/>/);
    expect(junit).not.toContain('unsupported: unsupported');
    // one definition of a cell's time: results.durationMs in the index, junit and matrix.json alike
    expect(junit).toMatch(/<testsuite name="kernel 6\.1"[^>]*time="12\.300"/);
    expect(html).toContain('12.3 s');
    const mj = JSON.parse(readFileSync(join(dir, 'matrix.json'), 'utf8')) as { dir: string; durationMs: number }[];
    expect(mj.map((c) => c.dir)).toEqual(['hello-openat-6.1', 'hello-openat-host', 'hello-openat-7.x', 'hello-openat-vmlinuz-x']);
    expect(mj[0]!.durationMs).toBe(12_300);
    expect(junit).toMatch(/<testsuite name="kernel 7\.x"[^>]*failures="1"[\s\S]*<failure message="event arrives: pid 42">/);
    expect(junit).toMatch(/<error message="no results\.json/);
  });
});

describe('matrix run totals', () => {
  // review, session 60: the cross-kernel tables were written and tested, but the index never showed them
  it('shows each scenario\'s headline figures and attacks by kernel, a figure JSON wrote as null as "—"', async () => {
    const d = mkdtempSync(join(tmpdir(), 'matrix-x-'));
    try {
      const cells: MatrixCell[] = ['6.1', 'host'].map((k) => ({ scenario: 'security', kernel: k, dir: join(d, `security-${k}`), exitCode: 0, wallMs: 1000, status: 'pending' }));
      for (const [i, c] of cells.entries()) {
        mkdirSync(c.dir, { recursive: true });
        const r = results(c.kernel, 'pass', c.kernel !== 'host') as Results;
        r.headline = [{ name: 'exec.ns', label: 'exec check', unit: 'ns', better: 'lower', value: i === 0 ? 412 : (null as unknown as number), comparator: { name: 'none', ratio: Infinity, likeForLike: true } }];
        r.metrics = { ...r.metrics, attacks: [{ name: 'memfd exec', expect: 'denied', outcome: 'denied', ok: true }] };
        writeFileSync(join(c.dir, 'results.json'), JSON.stringify(r));
        writeFileSync(join(c.dir, 'report.html'), '<html></html>');
        readCell(c);
      }
      await writeMatrixReport(cells, ['security'], ['6.1', 'host'], d, '2026-01-01T00:00:00Z');
      const html = readFileSync(join(d, 'index.html'), 'utf8');
      expect(html).toContain('security: headline figures by kernel');
      expect(html).toMatch(/<a href="security-6\.1\/report\.html">412 ns<\/a>/);
      expect(html).toContain('— ns'); // null in results.json: no crash, no number
      expect(html).toContain('security: attack × kernel');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('a kernel\'s run total adds up all its scenarios', async () => {
    const d2 = mkdtempSync(join(dir, 'tot-'));
    const cells: MatrixCell[] = ['hello-openat', 'security'].map((sc) => ({ scenario: sc, kernel: '6.1', dir: join(d2, `${sc}-6.1`), exitCode: 0, wallMs: 1, status: 'pending' }));
    for (const c of cells) {
      mkdirSync(c.dir, { recursive: true });
      writeFileSync(join(c.dir, 'results.json'), JSON.stringify({ ...results('6.1', 'pass', true), scenario: c.scenario }));
      readCell(c);
    }
    await writeMatrixReport(cells, ['hello-openat', 'security'], ['6.1'], d2, '2026-01-01T00:00:00Z');
    expect(readFileSync(join(d2, 'index.html'), 'utf8')).toContain('<td class="num">24.6 s</td>');
  });
});

describe('matrix index: boot phases and accel per cell', () => {
  it('shows each kernel\'s boot-to-ready by phase, the runner start, one boot per row and the accel of every cell', async () => {
    const d3 = mkdtempSync(join(dir, 'phases-'));
    const scen = ['hello-openat', 'security'];
    const cells: MatrixCell[] = scen.map((sc) => ({ scenario: sc, kernel: '6.1', dir: join(d3, `${sc}-6.1`), exitCode: 0, wallMs: 1, status: 'pending' }));
    for (const [i, c] of cells.entries()) {
      const r = { ...results('6.1', 'pass', true), scenario: c.scenario };
      r.environment.vm = {
        ...r.environment.vm, bootMs: 2900, boot: { qemuMs: 400, kernelMs: 1700, initMs: 650, mountMs: 150, readyMs: 2900 }, runnerStartMs: 1000 + 500 * i, inGuestMs: 5000,
        row: { index: i, of: 2, scenarios: scen, sharedBoot: i > 0 },
        ...(i === 1 ? { accelFallback: 'KVM boot failed (timed out); booted again under TCG' } : {}),
      };
      mkdirSync(c.dir, { recursive: true });
      writeFileSync(join(c.dir, 'results.json'), JSON.stringify(r));
      readCell(c);
    }
    await writeMatrixReport(cells, scen, ['6.1'], d3, '2026-01-01T00:00:00Z', 61_000);
    const html = readFileSync(join(d3, 'index.html'), 'utf8');
    expect(html).toContain('wall time <b>61.0 s</b>');
    // QEMU start, kernel, init, root mount, boot-to-ready, boots, runner start (median of 1.0/1.5 → upper), in guest
    expect(html).toContain('<td class="num">0.4 s</td><td class="num">1.7 s</td><td class="num">0.7 s</td><td class="num">0.1 s</td><td class="num">2.9 s</td><td class="num">1</td><td class="num">1.5 s</td><td class="num">10.0 s</td>');
    expect(html).toContain('(tcg, boot 2.9 s, guest 5.0 s)');
    expect(html).toContain('(tcg (KVM boot failed → TCG), same VM, guest 5.0 s)');
    expect(html).toContain('tcg, tcg (KVM boot failed → TCG)');
    // matrix.json keeps its shape (other tools read it): the cell fields plus vm
    const mj = JSON.parse(readFileSync(join(d3, 'matrix.json'), 'utf8')) as Record<string, unknown>[];
    expect(Object.keys(mj[0]!).sort()).toEqual(['dir', 'durationMs', 'exitCode', 'kernel', 'scenario', 'status', 'vm', 'wallMs']);
    expect((mj[0]!.vm as { boot: { kernelMs: number } }).boot.kernelMs).toBe(1700);
  });
});

describe('matrix --report-only', () => {
  const refused = async (argv: string[], msg: RegExp) => {
    const e = await matrixCommand(argv).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(UsageError);
    expect((e as UsageError).message).toMatch(msg);
  };

  it('refuses a directory without runs, and creates or writes nothing', async () => {
    const missing = join(dir, 'ro-missing', 'sub');
    await refused(['--report-only', '--scenarios', 'hello-openat', '--out', missing], /^no runs in .*ro-missing\/sub: no such directory$/);
    expect(existsSync(join(dir, 'ro-missing'))).toBe(false);
    const empty = mkdtempSync(join(dir, 'ro-empty-'));
    await refused(['--report-only', '--out', empty], /^no runs in /);
    await refused(['--report-only', '--scenarios', 'hello-openat', '--kernels', '6.1', '--out', empty], /^no runs of hello-openat on 6\.1 in /);
    expect(readdirSync(empty)).toEqual([]);
  });

  it('without --scenarios/--kernels takes the cells from the runs in the directory', async () => {
    const d = mkdtempSync(join(dir, 'ro-found-'));
    for (const [sc, k] of [['hello-openat', '6.1'], ['security', '6.1'], ['hello-openat', '/boot/vmlinuz-x'], ['security', '/boot/vmlinuz-x']] as const) {
      const cd = join(d, `${sc}-${kernelSlug(k)}`);
      mkdirSync(cd);
      writeFileSync(join(cd, 'results.json'), JSON.stringify({ ...results(k, 'pass', true), scenario: sc }));
    }
    mkdirSync(join(d, 'not-a-run'));
    expect(runsInDir(d)).toEqual([
      { scenario: 'hello-openat', kernel: '6.1' }, { scenario: 'hello-openat', kernel: '/boot/vmlinuz-x' },
      { scenario: 'security', kernel: '6.1' }, { scenario: 'security', kernel: '/boot/vmlinuz-x' },
    ]);
    expect(await matrixCommand(['--report-only', '--out', d])).toBe(0);
    const mj = JSON.parse(readFileSync(join(d, 'matrix.json'), 'utf8')) as { scenario: string; kernel: string; status: string; dir: string }[];
    expect(mj.map((c) => `${c.scenario}@${c.kernel}=${c.status}`)).toEqual(['hello-openat@6.1=pass', 'security@6.1=pass', 'hello-openat@/boot/vmlinuz-x=pass', 'security@/boot/vmlinuz-x=pass']);
    // --scenarios alone: the kernels are still the ones found, not the default five
    expect(await matrixCommand(['--report-only', '--scenarios', 'security', '--out', d])).toBe(0);
    expect((JSON.parse(readFileSync(join(d, 'matrix.json'), 'utf8')) as { kernel: string }[]).map((c) => c.kernel)).toEqual(['6.1', '/boot/vmlinuz-x']);
  });

  it('without --scenarios/--kernels: a cut-short results.json is an error cell, a bare one is no PASS, and uneven runs get no phantom cells', async () => {
    const d = mkdtempSync(join(dir, 'ro-damaged-'));
    const put = (name: string, text: string) => {
      mkdirSync(join(d, name));
      writeFileSync(join(d, name, 'results.json'), text);
    };
    put('hello-openat-6.1', JSON.stringify(results('6.1', 'pass', true)));
    put('xdp-lb-6.1', JSON.stringify({ ...results('6.1', 'pass', true), scenario: 'xdp-lb' }).slice(0, 200));
    put('security-host', JSON.stringify({ scenario: 'security', status: 'pass', environment: {} }));
    put('tc-shaping-host', JSON.stringify({ scenario: 'tc-shaping' }));
    expect(await matrixCommand(['--report-only', '--out', d])).toBe(1);
    const mj = JSON.parse(readFileSync(join(d, 'matrix.json'), 'utf8')) as { scenario: string; kernel: string; status: string; error?: string }[];
    expect(mj.map((c) => `${c.scenario}@${c.kernel}=${c.status}`).sort()).toEqual(['hello-openat@6.1=pass', 'security@host=error', 'tc-shaping@host=error', 'xdp-lb@6.1=error']);
    expect(mj.find((c) => c.scenario === 'security')!.error).toMatch(/^unreadable results\.json: /);
  });

  // shards merged from elsewhere: a status its checks contradict showed as a pass in the index and junit
  it('a status its own checks contradict is not taken: "pass" with a failed check fails, with none is an error', async () => {
    const d = mkdtempSync(join(dir, 'ro-liar-'));
    const put = (name: string, r: Results) => {
      mkdirSync(join(d, name));
      writeFileSync(join(d, name, 'results.json'), JSON.stringify(r));
    };
    put('hello-openat-6.1', { ...results('6.1', 'fail', true), status: 'pass' });
    put('xdp-lb-6.1', { ...results('6.1', 'pass', true), scenario: 'xdp-lb', checks: [] });
    put('tc-shaping-6.1', { ...results('6.1', 'unsupported', true), scenario: 'tc-shaping' });
    expect(await matrixCommand(['--report-only', '--out', d])).toBe(1);
    const mj = JSON.parse(readFileSync(join(d, 'matrix.json'), 'utf8')) as { scenario: string; status: string; error?: string }[];
    expect(Object.fromEntries(mj.map((c) => [c.scenario, [c.status, c.error]]))).toEqual({
      'hello-openat': ['fail', 'its results.json says pass, but its checks say fail'],
      'xdp-lb': ['error', 'its results.json says pass, but its checks say nothing (none ran)'],
      'tc-shaping': ['unsupported', undefined],
    });
    expect(readFileSync(join(d, 'junit.xml'), 'utf8')).toMatch(/<testcase [^>]*name="hello-openat"[^>]*><failure /);
    // one run named twice is refused, not counted twice
    await refused(['--report-only', '--out', d, '--scenarios', 'hello-openat,hello-openat'], /^--scenarios names hello-openat twice$/);
    await refused(['--report-only', '--out', d, '--scenarios', 'hello-openat', '--kernels', '6.1,6.1'], /^--kernels names "6\.1" twice$/);
  });

  it('a directory another live matrix writes into is refused; a dead one\'s claim is taken over and released', async () => {
    const d = mkdtempSync(join(dir, 'ro-claim-'));
    mkdirSync(join(d, 'hello-openat-6.1'));
    writeFileSync(join(d, 'hello-openat-6.1', 'results.json'), JSON.stringify(results('6.1', 'pass', true)));
    // a live holder: this test's own parent process (a lock file names its holder by pid)
    writeFileSync(join(d, 'matrix.running.json'), `${process.ppid}\n`);
    await refused(['--report-only', '--out', d], new RegExp(`^--out .* is in use by another matrix \\(pid ${process.ppid}\\)$`));
    writeFileSync(join(d, 'matrix.running.json'), '999999999\n');
    expect(await matrixCommand(['--report-only', '--out', d])).toBe(0);
    expect(existsSync(join(d, 'matrix.running.json'))).toBe(false);
  });

  it('--out of a run\'s own directory is refused before anything runs', async () => {
    const d = mkdtempSync(join(dir, 'run-dir-'));
    writeFileSync(join(d, 'results.json'), '{}');
    await refused(['--scenarios', 'hello-openat', '--kernels', 'host', '--out', d], /^--out .* holds a run \(results\.json\): a matrix writes into a directory of its own$/);
    expect(readdirSync(d)).toEqual(['results.json']);
  });
});
