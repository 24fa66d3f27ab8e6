// The bounded export queue against a fake exporter (no root, no sockets): what a send that never
// answers, or answers late, does to the queue. The real-socket and real-backend cases are in
// tracing.test.ts.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import { BoundedExporter, SpanConverter } from './export.ts';

// the exporter's clock is faked (its timers and Date.now): the windows these tests look into
// (timed out at 400 ms, given up at 800) are exact, not at the mercy of a loaded machine's timers
const sleep = (ms: number) => vi.advanceTimersByTimeAsync(ms);
const conv = new SpanConverter(new Map([[1, { name: 'svc' }]]));
const base = (i: number) => ({
  kind: 'server' as const, service: 1, pid: 1, tid: 1, comm: 'x', cgroupId: 1n, spanId: i.toString(16).padStart(16, '0'), traceId: 'b'.repeat(32), link: 'root' as const,
  local: { addr: '127.0.0.1', port: 1 }, peer: { addr: '127.0.0.1', port: 2 }, startTs: 1n, endTs: 2n, done: true,
  request: { kind: 'request' as const, method: 'GET', target: '/', version: '1.1', headers: new Map(), startTs: 1n, headEndTs: 1n, endTs: 1n, bodyBytes: 0, truncated: false, endInferred: false },
});
const mk = (i: number) => conv.convert(base(i));

/** an exporter whose sends wait until answer() is called (code 0: exported) */
function stalled() {
  type Done = Parameters<SpanExporter['export']>[1];
  const waiting: Done[] = [];
  const sent: string[] = [];
  const exporter: SpanExporter = {
    export: (spans: ReadableSpan[], done: Done) => {
      sent.push(...spans.map((s) => s.spanContext().spanId));
      waiting.push(done);
    },
    shutdown: async () => {},
  };
  return { exporter, waiting, sent, answer: (code: number) => waiting.splice(0).forEach((d) => d({ code })) };
}

describe('BoundedExporter', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  // review, session 60: a timed-out send went on in the exporter while its batch was queued again
  it('a send past its timeout holds its batch until it settles: one send at a time, nothing sent twice, nothing outside the bound', async () => {
    const f = stalled();
    // timed out at 400 ms, given up at 800 (the next test): looked at in between
    const ex = new BoundedExporter('fake', f.exporter, { maxQueue: 10, batch: 10, intervalMs: 10, timeoutMs: 400 });
    for (let i = 0; i < 10; i++) ex.add(mk(i));
    await sleep(600);
    expect(f.waiting).toHaveLength(1); // one send outstanding, not one per timeout
    expect(ex.stats.failedBatches).toBe(1);
    for (let i = 10; i < 30; i++) ex.add(mk(i)); // the queue holds 10 beside the batch in the send
    expect(ex.stats.highWater).toBeLessThanOrEqual(10);
    expect(ex.stats.dropped).toBe(10);
    f.answer(0); // the late send got through: its spans count as exported, and are not sent again
    await sleep(200);
    f.answer(0);
    await sleep(50);
    expect(ex.stats.exported).toBe(20);
    expect(new Set(f.sent).size).toBe(f.sent.length);
    expect(ex.stats.queued).toBe(0);
    await ex.close(100);
  });

  it('a late send that fails puts its batch back in the queue, and close() counts a send still out as dropped', async () => {
    const f = stalled();
    const ex = new BoundedExporter('fake', f.exporter, { maxQueue: 10, batch: 5, intervalMs: 10, timeoutMs: 400 });
    for (let i = 0; i < 5; i++) ex.add(mk(i));
    await sleep(600);
    expect(f.waiting).toHaveLength(1);
    f.answer(1);
    await sleep(300); // queued again, then sent again (and stalled again)
    expect(f.sent).toHaveLength(10);
    expect(f.waiting).toHaveLength(1);
    await ex.close(50);
    expect([ex.stats.exported, ex.stats.dropped]).toEqual([0, 5]);
  });

  // review, session 63: per-resource sends (Zipkin) whose second POST failed sent the first again
  it('a per-resource send that fails part way puts back only what did not get through', async () => {
    const two = new SpanConverter(new Map([[1, { name: 'a' }], [2, { name: 'b' }]]));
    const span = (i: number, service: number) => two.convert({ ...base(i), service });
    const sent: string[] = [];
    let fails = 1;
    const exporter: SpanExporter = {
      export: (spans, done) => {
        sent.push(...spans.map((s) => s.spanContext().spanId));
        // the first POST of service b fails once
        done({ code: spans[0]!.resource.attributes['service.name'] === 'b' && fails-- > 0 ? 1 : 0 });
      },
      shutdown: async () => {},
    };
    const ex = new BoundedExporter('fake', exporter, { maxQueue: 10, batch: 4, intervalMs: 10, timeoutMs: 400 }, true);
    for (const [i, svc] of [[1, 1], [2, 2], [3, 1], [4, 2]]) ex.add(span(i!, svc!));
    await sleep(100);
    expect([ex.stats.exported, ex.stats.dropped, ex.stats.failedBatches]).toEqual([4, 0, 1]);
    // a's two spans once, b's two twice (the failed POST and its retry)
    expect(sent.map((id) => Number.parseInt(id, 16))).toEqual([1, 3, 2, 4, 2, 4]);
    await ex.close(50);
  });

  it('a per-resource exporter that throws for one group puts back that group and those after it, not the ones sent', async () => {
    const two = new SpanConverter(new Map([[1, { name: 'a' }], [2, { name: 'b' }]]));
    const span = (i: number, service: number) => two.convert({ ...base(i), service });
    const sent: string[] = [];
    let throws = 1;
    const exporter: SpanExporter = {
      export: (spans, done) => {
        if (spans[0]!.resource.attributes['service.name'] === 'b' && throws-- > 0) throw new Error('cannot serialise');
        sent.push(...spans.map((s) => s.spanContext().spanId));
        done({ code: 0 });
      },
      shutdown: async () => {},
    };
    const ex = new BoundedExporter('fake', exporter, { maxQueue: 10, batch: 4, intervalMs: 10, timeoutMs: 400 }, true);
    for (const [i, svc] of [[1, 1], [2, 2], [3, 1], [4, 2]]) ex.add(span(i!, svc!));
    await sleep(100);
    expect([ex.stats.exported, ex.stats.dropped, ex.stats.failedBatches]).toEqual([4, 0, 1]);
    expect(ex.stats.lastError).toBe('cannot serialise');
    // a's spans once (they were sent again before)
    expect(sent.map((id) => Number.parseInt(id, 16))).toEqual([1, 3, 2, 4]);
    await ex.close(50);
  });

  // review, session 60: a send that never settles held every later one back, for good
  it('a send that never settles is given up after another timeout: its spans count as dropped and sending resumes', async () => {
    const f = stalled();
    const ex = new BoundedExporter('fake', f.exporter, { maxQueue: 10, batch: 5, intervalMs: 10, timeoutMs: 30 });
    for (let i = 0; i < 5; i++) ex.add(mk(i));
    await sleep(300);
    for (let i = 5; i < 10; i++) ex.add(mk(i));
    await sleep(300);
    expect(f.waiting.length).toBeGreaterThanOrEqual(2); // the second batch went out
    expect(ex.stats.dropped).toBeGreaterThanOrEqual(5);
    f.answer(0); // both got through after all: counted exported, not dropped
    await sleep(50);
    expect([ex.stats.exported, ex.stats.dropped]).toEqual([10, 0]);
    expect(new Set(f.sent).size).toBe(f.sent.length);
    await ex.close(50);
  });
});
