import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { OpenatTracer, formatEvent, type OpenatEvent } from '../../controller/hello/openat.ts';
import { describeRoot } from '../../lab/testing.ts';
import { coalesceDelayMs } from '../../controller/libbpf/index.ts';
import { trimQuietTail } from './consumer.ts';

async function until<T>(f: () => T | undefined, ms = 5000): Promise<T | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describeRoot('hello-openat', () => {
  it('sees an openat made by the test, with the right pid, comm and filename', async () => {
    using tracer = await OpenatTracer.start({ pid: process.pid });
    const file = path.join(os.tmpdir(), `hello-test-${Date.now()}`);
    fs.writeFileSync(file, 'x');
    fs.rmSync(file);
    const seen: { pid: number; comm: string; filename: string }[] = [];
    const e = await until(() => {
      seen.push(...tracer.ring.drain());
      return seen.find((x) => x.filename === file);
    });
    expect(e, `saw ${seen.length} events, none for ${file}`).toBeDefined();
    expect(e!.pid).toBe(process.pid);
    expect(e!.comm).toBe(fs.readFileSync('/proc/self/comm', 'utf8').trim());
    // the pid filter runs in the kernel: nothing from other processes
    expect(seen.every((x) => x.pid === process.pid)).toBe(true);
  });

  it('live print escapes a comm and a file name that carry terminal controls (any process picks both)', async () => {
    // the child renames itself and opens a name with an OSC (retitle) and a CSI (clear screen) in it
    const py = `import ctypes, os, sys, time
ctypes.CDLL(None).prctl(15, b"\\x1b[31mRED\\x07", 0, 0, 0)
sys.stdin.readline()
try: os.open("/nonexistent/\\x1b]0;pwned\\x07\\x1b[2J\\u202ename", os.O_RDONLY)
except OSError: pass`;
    const child = execa('python3', ['-c', py], { stdin: 'pipe' });
    try {
      using tracer = await OpenatTracer.start({ pid: child.pid });
      child.stdin!.write('go\n');
      const seen: OpenatEvent[] = [];
      const e = await until(() => {
        seen.push(...tracer.ring.drain());
        return seen.find((x) => x.filename.startsWith('/nonexistent/'));
      });
      expect(e, `saw ${seen.length} events from the child, none of its crafted name`).toBeDefined();
      expect(e!.comm).toBe('\x1b[31mRED\x07'); // decoded as the kernel holds it
      const line = formatEvent(e!);
      expect(line).not.toMatch(/[\x00-\x1f\x7f-\x9f\u202e]/);
      expect(line).toContain('\\x1b[31mRED\\x07');
      expect(line).toContain('/nonexistent/\\x1b]0;pwned\\x07\\x1b[2J\\u202ename');
    } finally {
      await child.catch(() => {});
    }
  });

  it('filters by comm in the kernel', async () => {
    using tracer = await OpenatTracer.start({ comm: 'cat' });
    const file = path.join(os.tmpdir(), `hello-cat-${Date.now()}`);
    fs.writeFileSync(file, 'x');
    await execa('cat', [file]);
    fs.rmSync(file);
    const seen: { comm: string; filename: string }[] = [];
    const e = await until(() => {
      seen.push(...tracer.ring.drain());
      return seen.find((x) => x.filename === file);
    });
    expect(e?.comm).toBe('cat');
    expect(seen.every((x) => x.comm === 'cat')).toBe(true);
  });

  it('the lost count is still readable once the tracer is closed (live print reads it after its timer closed the tracer)', async () => {
    const tracer = await OpenatTracer.start({ comm: 'cat' });
    tracer.close();
    expect(tracer.lost).toBe(0);
  });

  it('rejects a comm longer than the kernel keeps', async () => {
    await expect(OpenatTracer.start({ comm: 'a-very-long-command-name' })).rejects.toThrow(/15-byte comm/);
  });

  it('the C consumer of the same object delivers every event, formatted like the TS consumer', async () => {
    const { buildCConsumer, runCConsumer } = await import('./c-consumer.ts');
    const { buildLoadgen } = await import('./consumer.ts');
    const [cBin, gen] = await Promise.all([buildCConsumer(), buildLoadgen()]);
    const out = path.join(os.tmpdir(), `hello-c-${process.pid}.out`);
    try {
      const r = await runCConsumer(cBin, gen, 5000, 400, '/nonexistent/hello-c-test', out);
      expect(r.consumer).toBe('c');
      expect(r.lost).toBe(0);
      expect(r.delivered).toBe(r.gen.ops);
      expect(r.cpuNsPerEvent).not.toBeNull();
      const lines = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean);
      expect(lines).toHaveLength(r.gen.ops);
      // formatEvent(): pid right-aligned in 7, comm left-aligned in 16, the file name
      expect(lines[0]).toMatch(/^ {0,6}\d+ openat-loadgen {3}\/nonexistent\/hello-c-test$/);
    } finally {
      fs.rmSync(out, { force: true });
    }
  }, 60_000);

  it.each(['worker', 'loop'] as const)('the TS consumer in a process of its own, compiled (the bench\'s TS rows; %s) delivers every event, lines as the C consumer prints them, and reports on SIGINT', async (thread) => {
    const { runTsProcess } = await import('./c-consumer.ts');
    const { buildLoadgen } = await import('./consumer.ts');
    const gen = await buildLoadgen();
    const out = path.join(os.tmpdir(), `hello-tsp-${process.pid}.out`);
    try {
      const r = await runTsProcess(gen, 5000, 400, '/nonexistent/hello-ts-test', out, 2, 0, 0, thread);
      expect(r.consumer).toBe(thread === 'worker' ? 'ts' : 'ts-loop');
      expect(r.lost).toBe(0);
      expect(r.delivered).toBe(r.gen.ops);
      expect(r.batches).toBeGreaterThan(0);
      expect(r.batches!).toBeLessThan(r.delivered / 4); // coalesced, not woken per record
      expect(r.deliveredPerSec).toBeGreaterThan(0); // its last_ns is on the driver's clock
      const lines = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean);
      expect(lines).toHaveLength(r.gen.ops);
      expect(lines[0]).toMatch(/^ {0,6}\d+ openat-loadgen {3}\/nonexistent\/hello-ts-test$/);
    } finally {
      fs.rmSync(out, { force: true });
    }
  }, 90_000);

  it('a bench row with a warm-up measures only the run after it: the generator\'s count, the consumer\'s deliveries and its CPU exclude the warm-up', async () => {
    const { runTsProcess } = await import('./c-consumer.ts');
    const { buildLoadgen } = await import('./consumer.ts');
    const gen = await buildLoadgen();
    const out = path.join(os.tmpdir(), `hello-warm-${process.pid}.out`);
    try {
      const r = await runTsProcess(gen, 5000, 400, '/nonexistent/hello-warm-test', out, 2, 0, 600);
      expect(r.lost).toBe(0);
      // paced at 5000/s: 400 ms measured is ~2000 ops, the 600 ms warm-up another ~3000 not in it
      expect(r.gen.ops).toBeGreaterThan(1700);
      expect(r.gen.ops).toBeLessThan(2300);
      expect(r.warmup?.ms).toBe(600);
      expect(r.warmup!.delivered).toBeGreaterThan(2500);
      expect(r.delivered).toBe(r.gen.ops);
      const lines = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean);
      expect(lines).toHaveLength(r.warmup!.delivered + r.delivered);
    } finally {
      fs.rmSync(out, { force: true });
    }
  }, 90_000);

  it('the bench pair: the TS and C consumers on one generator at once each deliver every event of the same measured window, warm-up excluded', async () => {
    const { buildCConsumer, runTsAndCTogether } = await import('./c-consumer.ts');
    const { buildLoadgen } = await import('./consumer.ts');
    const [cBin, gen] = await Promise.all([buildCConsumer(), buildLoadgen()]);
    const outs: [string, string] = [path.join(os.tmpdir(), `hello-pair-ts-${process.pid}.out`), path.join(os.tmpdir(), `hello-pair-c-${process.pid}.out`)];
    try {
      const [ts, c] = await runTsAndCTogether(cBin, gen, 5000, 400, '/nonexistent/hello-pair-test', outs, 2, 0, 600);
      expect([ts.consumer, c.consumer]).toEqual(['ts', 'c-coalesced']);
      expect([ts.together, c.together]).toEqual([['c-coalesced'], ['ts']]);
      // one generator, each consumer with its own ring: both deliver every op of it
      expect(ts.gen.ops).toBeGreaterThan(1700);
      for (const [r, out] of [[ts, outs[0]], [c, outs[1]]] as const) {
        expect(r.lost).toBe(0);
        expect(r.delivered).toBe(r.gen.ops);
        expect(r.warmup!.delivered).toBeGreaterThan(2500);
        expect(r.consumerCpuNs).toBeGreaterThan(0);
        expect(fs.readFileSync(out, 'utf8').split('\n').filter(Boolean)).toHaveLength(r.warmup!.delivered + r.delivered);
      }
      // every second round the C consumer starts first: the runs still come back as [ts, c]
      const [ts2, c2] = await runTsAndCTogether(cBin, gen, 5000, 300, '/nonexistent/hello-pair-test', outs, 2, 0, 0, undefined, true);
      expect([ts2.consumer, c2.consumer, ts2.lost, c2.lost]).toEqual(['ts', 'c-coalesced', 0, 0]);
      expect([ts2.delivered, c2.delivered]).toEqual([ts2.gen.ops, c2.gen.ops]);
    } finally {
      for (const f of outs) fs.rmSync(f, { force: true });
    }
  }, 90_000);

  it('with a warm-up, a consumer that buffers its output (the C consumer in libbpf\'s loop, stdio) is still counted exactly', async () => {
    const { buildCConsumer, runCConsumer } = await import('./c-consumer.ts');
    const { buildLoadgen } = await import('./consumer.ts');
    const [cBin, gen] = await Promise.all([buildCConsumer(), buildLoadgen()]);
    const out = path.join(os.tmpdir(), `hello-cwarm-${process.pid}.out`);
    try {
      const r = await runCConsumer(cBin, gen, 5000, 400, '/nonexistent/hello-cwarm-test', out, undefined, 600);
      expect(r.consumer).toBe('c');
      expect(r.lost).toBe(0);
      expect(r.delivered).toBe(r.gen.ops);
      expect(fs.readFileSync(out, 'utf8').split('\n').filter(Boolean)).toHaveLength(r.warmup!.delivered + r.delivered);
    } finally {
      fs.rmSync(out, { force: true });
    }
  }, 60_000);

  it('the TS consumer process rejects bad arguments with its usage line', async () => {
    const r = await execa(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'ts-consumer.main.ts'), 'nope'], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/^usage: ts-consumer\.main\.ts PID \[COALESCE_MS\] \[worker\|loop\]/);
  }, 60_000);

  it.each(['loop', 'worker'] as const)('the TS line sink (%s) writes byte for byte what the C consumer prints, for the same events (UTF-8, invalid UTF-8, a cut name and an unreadable one, each marked)', async (thread) => {
    const { buildCConsumer } = await import('./c-consumer.ts');
    const { ensureObject } = await import('../../bpf/build.ts');
    const { spawn } = await import('node:child_process');
    const cBin = await buildCConsumer();
    const obj = await ensureObject('hello_openat');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hello-eq-'));
    const tsOut = path.join(dir, 'ts.out');
    const fd = fs.openSync(tsOut, 'w');
    // both consumers filter on this process; the C one with the TS wake-up policy (2 ms bound)
    const c = spawn(cBin, [obj, String(process.pid), '2'], { stdio: ['ignore', fs.openSync(path.join(dir, 'c.out'), 'w'), 'pipe'] });
    let stderr = '';
    c.stderr!.on('data', (d) => (stderr += d));
    const tracer = await OpenatTracer.start({ pid: process.pid, coalesceMs: 2 });
    let batches = 0;
    // a small buffer: flushes inside a batch too
    const worker = thread === 'worker' ? tracer.writeLinesInWorker(fd, { bufBytes: 4096 }) : null;
    const sink = worker ? worker.done : tracer.writeLines(fd, () => batches++, 4096);
    await worker?.ready;
    try {
      expect(await until(() => (stderr.includes('READY') ? true : undefined), 15000)).toBe(true);
      const names: (string | Buffer)[] = ['/nonexistent/plain', '/nonexistent/ü-ß-日本', Buffer.from([0x2f, 0x6e, 0x6f, 0xff, 0xfe, 0x41]), `/nonexistent/${'x'.repeat(300)}`, `/nonexistent/exact-${'y'.repeat(255 - '/nonexistent/exact-'.length)}`];
      for (let i = 0; i < 2000; i++) names.push(`/nonexistent/hello-eq-${i}`);
      for (const n of names) {
        try {
          fs.openSync(n, 'r');
        } catch {
          // ENOENT is the point: the openat happened
        }
      }
      // a name the kernel cannot read: openat(AT_FDCWD, (char *)1, O_RDONLY) fails with EFAULT
      const { libc } = await import('../../controller/libbpf/ffi.ts');
      const openatNr = process.arch === 'x64' ? 257 : 56;
      expect(Number(libc.func('long syscall(long nr, int dirfd, uintptr_t name, int flags)')(openatNr, -100, 1, 0))).toBe(-1);
      const unreadable = `${String(process.pid).padStart(7)} ${fs.readFileSync('/proc/self/comm', 'latin1').trim().padEnd(16)} (unreadable: errno 14)`;
      // ours: the names above (other threads of this process may open other files)
      const ours = (f: string) => fs.readFileSync(path.join(dir, f)).toString('latin1').split('\n').filter((l) => l.includes(' /nonexistent/') || l.endsWith(' /no\xff\xfeA') || l === unreadable);
      expect(await until(() => (ours('ts.out').length >= names.length + 1 ? true : undefined), 10000)).toBe(true);
      c.kill('SIGINT');
      await new Promise((r) => c.once('exit', r));
      // latin1 keeps every byte: equal strings are equal bytes
      const ts = ours('ts.out');
      const cl = ours('c.out');
      expect(ts).toHaveLength(names.length + 1);
      expect(cl).toEqual(ts);
      expect(ts).toContain(unreadable);
      const long = ts.find((l) => l.includes('xxxx'))!;
      expect(long.length).toBe(7 + 1 + 16 + 1 + 255 + ' (truncated)'.length); // the BPF side keeps 255 bytes + NUL
      expect(long.endsWith('x (truncated)')).toBe(true);
      // the name at the field's exact size (255 bytes) is whole: no mark
      expect(ts.find((l) => l.includes('/exact-')), 'the 255-byte name').toMatch(/\/exact-y+$/);
      expect(ts).toContain(`${String(process.pid).padStart(7)} ${fs.readFileSync('/proc/self/comm', 'latin1').trim().padEnd(16)} ${Buffer.from('/nonexistent/ü-ß-日本').toString('latin1')}`);
      if (worker) {
        await worker.stop();
        batches = worker.stats().batches;
        expect(worker.stats().delivered).toBeGreaterThanOrEqual(names.length);
      }
      expect(batches).toBeLessThan(names.length / 4); // coalesced, not woken per record
    } finally {
      if (c.exitCode === null) c.kill('SIGKILL');
      await worker?.stop();
      tracer.close();
      await sink;
      fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('closing the tracer ends its line worker (which maps the ring on its own and would otherwise keep the process alive)', async () => {
    const tracer = await OpenatTracer.start({ pid: process.pid, coalesceMs: 2 });
    const fd = fs.openSync('/dev/null', 'w');
    try {
      const w = tracer.writeLinesInWorker(fd);
      await w.ready;
      const t0 = Date.now();
      tracer.close();
      await w.done;
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      tracer.close();
      fs.closeSync(fd);
    }
  }, 30_000);

  it('the scenario runs end to end and writes results.json and a self-contained report', async () => {
    const { runOnHost, parseRunArgs } = await import('../../lab/run.ts');
    const { createProgress } = await import('../../common/progress.ts');
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'hello-run-'));
    try {
      const args = (await parseRunArgs(['hello-openat', '--out', out, '--load-ms', '1000', '--rate', '5000'], 'run'))!;
      const { results, html } = await runOnHost(args, createProgress(process.stderr, true));
      expect(results.error).toBeUndefined();
      expect(results.status).toBe('pass');
      expect(results.checks.find((c) => /^no event lost at [\d,]+ events\/s/.test(c.name))?.status).toBe('pass');
      const json = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
      expect(json.metrics.load.delivered).toBe(json.metrics.load.gen.ops);
      expect(json.metrics.load.gen.ops).toBeGreaterThan(4500); // paced 5000/s for 1 s: a stall at the window's end is not caught up
      // measured in the consumer's own process, with the program's cost from its own stats
      expect(json.metrics.load.consumer).toBe('ts');
      expect(json.metrics.load.progNsPerEvent).toBeGreaterThan(0);
      expect(json.environment.probes['attach:tracepoint'].ok).toBe(true);
      // every run: declared headline figures and the machine's state around the run
      expect(json.headline.map((h: { name: string }) => h.name)).toEqual(['load.deliveredPerSec', 'load.lost', 'load.cpuNsPerEvent']);
      expect(json.headline[1]).toMatchObject({ value: 0, goal: { verdict: 'met' } });
      expect(json.context.loadavg.before).toHaveLength(3);
      expect(json.context.loadavg.after).toHaveLength(3);
      expect(typeof json.context.stealShare).toBe('number');
      expect(Array.isArray(json.context.busy)).toBe(true);
      const page = fs.readFileSync(html, 'utf8');
      expect(page).toMatch(/data:image\/png;base64,/);
      expect(page).not.toMatch(/<script[^>]+src=|https?:\/\//);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('coalescing delay', () => {
  it('waits for about targetBatch records at the measured rate, bounded, and not below a timer tick', () => {
    expect(coalesceDelayMs(100_000, 1024, 5)).toBe(5); // 10.24 ms wanted, 5 allowed
    expect(coalesceDelayMs(500_000, 1024, 5)).toBe(2);
    expect(coalesceDelayMs(2_000_000, 1024, 5)).toBe(0); // under 1 ms: just yield
    expect(coalesceDelayMs(0, 1024, 5)).toBe(5); // rate unknown: the bound
    expect(coalesceDelayMs(100_000, 1024, 0)).toBe(0); // off
  });
});

describe('rate timeline', () => {
  it('drops the quiet tail after the last delivery, keeps dips in the middle', () => {
    const t = [{ t: 0.25, rate: 1000 }, { t: 0.5, rate: 10 }, { t: 0.75, rate: 900 }, { t: 1, rate: 5 }, { t: 1.25, rate: 0 }];
    expect(trimQuietTail(t).map((p) => p.t)).toEqual([0.25, 0.5, 0.75]);
    expect(trimQuietTail([])).toEqual([]);
  });
});
