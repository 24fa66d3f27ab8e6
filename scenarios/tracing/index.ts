// tracing: zero-code distributed tracing. HTTP requests seen from the kernel (syscall
// tracepoints + sock:inet_sock_set_state) become OpenTelemetry spans, exported over OTLP/HTTP
// protobuf to a real Jaeger v2 on loopback, whose own query API verifies them.
//   chain:  load generator → Node frontend → threaded Python http.server → nginx leaf,
//           each service in its own cgroup, none of them instrumented.
//   checks: every generated request is a frontend server span with the right method, path,
//           status, starting inside the generator's request and ending before the server reads
//           the next one (bounds that hold by causality, not timing); each chain is one
//           trace with the right parents; errors are error spans; garbage yields nothing;
//           Jaeger returns what was exported; with Jaeger stopped the export queue stays
//           bounded (drops counted) and export resumes when it is back.
import { scaledTimeout, timeScale, type Scenario, type ScenarioContext } from '../../lab/scenario.ts';
import { Tracer } from '../../controller/tracing/tracer.ts';
import type { Span } from '../../controller/tracing/spans.ts';
import fs from 'node:fs';
import { checkOutDir, withoutOption } from '../../common/out-dir.ts';
import { Jaeger, Zipkin, ensureJaeger, zipkinPath, JAEGER_VERSION, ZIPKIN_VERSION } from '../../controller/tracing/backend.ts';
import { routeOf } from '../../controller/tracing/export.ts';
import { Chain, generate, sendGarbage } from './chain.ts';
import { bench, SCHEDS } from './bench.ts';
import { setTimeout as sleep } from 'node:timers/promises';

interface Collected {
  spans: Span[];
}

/**
 * Wait until cond holds, at most ms (each step ~200 ms): the waits below were fixed scaled sleeps,
 * ~10 s each under TCG where what they wait for is there after a second or two. Bounded by the
 * old sleep, so a slow machine waits no less than it did.
 */
// both end early on the run's stop: what they wait for went with the cleanups
async function pollUntil(cond: () => boolean | Promise<boolean>, ms: number, signal: AbortSignal): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until && !signal.aborted && !(await cond())) await sleep(200);
}

async function settle(t: Tracer, c: Collected, ms: number, signal: AbortSignal): Promise<void> {
  // records reach user space within coalesceMs; spans wait graceMs; then nothing new arrives
  const until = Date.now() + ms;
  let last = -1;
  while (Date.now() < until && !signal.aborted) {
    await sleep(150);
    if (t.settled && c.spans.length === last) return;
    last = c.spans.length;
  }
}

function frontendServer(c: Collected): Map<string, Span> {
  const m = new Map<string, Span>();
  for (const s of c.spans) if (s.kind === 'server' && s.service === 1 && s.request?.target) m.set(s.request.target, s);
  return m;
}

function traceOf(c: Collected, id: string): Span[] {
  return c.spans.filter((s) => s.traceId === id);
}

const SERVICE_NAMES = ['', 'frontend', 'middle', 'leaf'];

/** expected chain below a frontend request: [service, kind] from the top */
function expectedChain(path: string): [number, 'server' | 'client'][] {
  if (path.startsWith('/api/') || path.startsWith('/error')) return [[1, 'server'], [1, 'client'], [2, 'server'], [2, 'client'], [3, 'server']];
  if (path.startsWith('/refused')) return [[1, 'server'], [1, 'client'], [2, 'server'], [2, 'client']];
  return [[1, 'server']];
}

/** does the trace under `root` have exactly the expected shape, each span the child of the one above? */
function chainProblem(c: Collected, root: Span): string | null {
  const want = expectedChain(root.request!.target!);
  const all = traceOf(c, root.traceId!);
  if (all.length !== want.length) return `${all.length} spans in the trace, expected ${want.length}`;
  let cur: Span = root;
  for (let i = 1; i < want.length; i++) {
    const kids = all.filter((s) => s.parent === cur);
    if (kids.length !== 1) return `${kids.length} children under ${SERVICE_NAMES[cur.service]} ${cur.kind}`;
    const k = kids[0]!;
    if (k.service !== want[i]![0] || k.kind !== want[i]![1]) return `level ${i}: ${SERVICE_NAMES[k.service]} ${k.kind}, expected ${SERVICE_NAMES[want[i]![0]]} ${want[i]![1]}`;
    cur = k;
  }
  return null;
}

function waterfall(spans: Span[], width = 60): string {
  const t0 = spans.reduce((m, s) => (s.startTs < m ? s.startTs : m), spans[0]!.startTs);
  const t1 = spans.reduce((m, s) => (s.endTs > m ? s.endTs : m), spans[0]!.endTs);
  const total = Number(t1 - t0) || 1;
  const depth = (s: Span) => {
    let d = 0;
    for (let p = s.parent; p && d < 10; p = p.parent) d++;
    return d;
  };
  const rows = [...spans].sort((a, b) => (a.startTs < b.startTs ? -1 : a.startTs > b.startTs ? 1 : depth(a) - depth(b)));
  return rows
    .map((s) => {
      const a = Math.floor((Number(s.startTs - t0) / total) * width);
      const b = Math.max(a + 1, Math.ceil((Number(s.endTs - t0) / total) * width));
      const label = `${'  '.repeat(depth(s))}${SERVICE_NAMES[s.service]} ${s.kind} ${s.request ? `${s.request.method} ${s.request.target}` : 'connect'} ${s.response?.status ?? s.errorType ?? ''}`;
      return `${label.padEnd(44).slice(0, 44)} |${' '.repeat(a)}${'█'.repeat(b - a)}${' '.repeat(Math.max(0, width - b))}| ${(Number(s.endTs - s.startTs) / 1000).toFixed(0).padStart(6)} µs  [${s.link}]`;
    })
    .join('\n');
}

async function run(ctx: ScenarioContext): Promise<void> {
  const n = ctx.options.requests as number;
  const conc = ctx.options.concurrency as number;
  const maxQueue = ctx.options['max-queue'] as number;
  // A stopped run ends at its next step (ctx.progress.step throws then: lab/run.ts). Between
  // steps, what starts a process checks too: phase C once started Jaeger again after the
  // cleanups had stopped it (10–16 s more before the report under TCG).
  const stopped = () => ctx.signal.throwIfAborted();

  ctx.progress.step('backend: Jaeger v2 (built once into the lab cache)');
  const built = await ensureJaeger((s) => ctx.progress.info(s));
  const jaeger = await Jaeger.create(built.path);
  ctx.defer('stop Jaeger', () => jaeger.close());
  await jaeger.start(scaledTimeout(30_000));
  ctx.metric('backend', { name: 'jaeger', version: JAEGER_VERSION, binary: built.path, build: built.info, otlp: jaeger.otlpUrl, query: jaeger.queryUrl });

  // Zipkin as a second backend, when `pnpm lab setup tracing` could fetch it (JSON v2 exporter)
  let zipkin: Zipkin | null = null;
  // (not under TCG: a JVM starting there takes minutes and proves nothing Jaeger does not)
  if (ctx.options.zipkin === 'auto' && fs.existsSync(zipkinPath()) && timeScale() <= 2) {
    ctx.progress.step(`backend: Zipkin ${ZIPKIN_VERSION} (jar from Maven Central)`);
    zipkin = await Zipkin.create();
    ctx.defer('stop Zipkin', () => zipkin!.close());
    await zipkin.start(scaledTimeout(90_000));
  }

  ctx.progress.step('chain: Node frontend → Python http.server → nginx, one cgroup each');
  const chain = await Chain.start(scaledTimeout(15_000));
  ctx.defer('stop the chain', () => chain.close());

  stopped();
  const col: Collected = { spans: [] };
  const tracer = await Tracer.start({
    services: chain.services.map((s) => ({ name: s.name, cgroup: s.cgroup })),
    otlp: jaeger.otlpUrl,
    zipkin: zipkin?.url,
    captureBytes: ctx.options['capture-bytes'] as number,
    graceMs: scaledTimeout(250),
    maxQueue,
    exportBatch: 64,
    exportIntervalMs: 100,
    metricsPort: 0,
    stats: true,
    onSpan: (s) => col.spans.push(s),
  });
  ctx.defer('stop the tracer', () => tracer.stop());
  ctx.metric('mechanism', tracer.kernel.mechanism);
  ctx.check('kernel side attached (tracepoints)', tracer.kernel.mechanism.attached.length > 0, tracer.kernel.mechanism.summary);
  // first in the report; the figures are added to it at the end
  ctx.section('Result', {
    kind: 'kv',
    items: {
      backend: `Jaeger ${JAEGER_VERSION} (built from the Go module proxy${built.info ? ` in ${built.info.seconds} s with ${built.info.go}` : ''}; OTLP/HTTP protobuf, memory store)`,
      mechanism: tracer.kernel.mechanism.summary,
      'second backend': zipkin ? `Zipkin ${ZIPKIN_VERSION} (Zipkin JSON v2 via @opentelemetry/exporter-zipkin)` : 'none',
    },
  });

  // ---------------------------------------------------------------- phase A: sequential mix
  ctx.progress.step(`phase A: ${n} requests, one at a time (api, error, refused, fail, local)`);
  const kinds = ['/api/', '/api/', '/api/', '/api/', '/error?i=', '/refused?i=', '/fail?i=', '/local?i='];
  const pathsA = Array.from({ length: n }, (_, i) => `${kinds[i % kinds.length]}${i}`);
  const genA = await generate(chain.frontend.port, pathsA, 1, ctx.signal);
  // a garbage connection is known by its whole tuple and time: loopback reuses ephemeral ports
  // (tcp_tw_reuse), so a port alone matched a later middle/leaf span once
  const garbageT0 = process.hrtime.bigint();
  const junk = async (server: number, bytes: Buffer) => ({ client: await sendGarbage(server, bytes), server });
  const garbage = [
    await junk(chain.frontend.port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0, 0, 0])),
    await junk(chain.services[1]!.port, Buffer.from('SSH-2.0-OpenSSH_9.2p1\r\n')),
    await junk(chain.services[2]!.port, Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7919) & 255))),
    await junk(chain.frontend.port, Buffer.from(`GET / HTTP/1.1\r\n${'X-Huge: '.padEnd(20000, 'h')}\r\n\r\n`)),
  ];
  await settle(tracer, col, scaledTimeout(5000), ctx.signal);

  const front = frontendServer(col);
  const bad: string[] = [];
  let matched = 0;
  for (const [i, g] of genA.entries()) {
    const s = front.get(g.path);
    const next = genA[i + 1] ? front.get(genA[i + 1]!.path) : undefined;
    const why = !s ? 'no span'
      : s.request!.method !== g.method ? `method ${s.request!.method}`
      : (s.response?.status ?? null) !== g.status ? `status ${s.response?.status} ≠ ${g.status}`
      // Bounds that hold by causality, not by timing: the server reads the request after the
      // generator sent it and before the generator has the answer. The span's end is the server's
      // write returning, which can come after the generator already has the bytes (the write woke
      // it, and under TCG the server's thread can stay preempted for milliseconds: 1.5 ms seen on
      // 5.10, 0.26 ms past the generator's whole request on 6.1), so the end is bounded by what
      // the same single-threaded server does next: reading the next request.
      : s.startTs < g.startNs ? `span starts ${g.startNs - s.startTs} ns before the generator sent the request`
      : s.startTs > g.endNs ? `span starts ${s.startTs - g.endNs} ns after the generator had the response`
      : next && s.endTs > next.startTs ? `span ends ${s.endTs - next.startTs} ns after the next request's span started`
      : null;
    if (why) bad.push(`${g.path}: ${why}`);
    else matched++;
  }
  ctx.check('every generated request is a frontend server span (method, path, status; starts inside the generator\'s request, ends before the next one is read)', bad.length === 0 && genA.length === n,
    `${matched}/${genA.length} match${bad.length ? `; ${bad.slice(0, 5).join('; ')}` : ''}`);

  const chainBad: string[] = [];
  let chainsOk = 0;
  for (const g of genA) {
    const s = front.get(g.path);
    if (!s) continue;
    const p = chainProblem(col, s);
    if (p) chainBad.push(`${g.path}: ${p}`);
    else chainsOk++;
  }
  ctx.check('each request chain is one trace with the right parent/child links', chainBad.length === 0, `${chainsOk}/${genA.length} complete${chainBad.length ? `; ${chainBad.slice(0, 5).join('; ')}` : ''}`);

  const errOf = (s: Span | undefined) => !!s && (s.errorType !== undefined || (s.response?.status ?? 0) >= (s.kind === 'server' ? 500 : 400));
  const errPaths = genA.filter((g) => /^\/(error|refused|fail)/.test(g.path));
  const errProblems: string[] = [];
  for (const g of errPaths) {
    const s = front.get(g.path);
    if (!errOf(s)) errProblems.push(`${g.path}: frontend span not an error`);
    if (g.path.startsWith('/refused') && s) {
      const refused = traceOf(col, s.traceId!).find((x) => x.errorType === 'connection_refused');
      if (!refused) errProblems.push(`${g.path}: no connection_refused client span`);
    }
    if (g.path.startsWith('/error') && s) {
      const leaf = traceOf(col, s.traceId!).find((x) => x.service === 3 && x.kind === 'server');
      if (!leaf || leaf.response?.status !== 503) errProblems.push(`${g.path}: no leaf 503 span`);
    }
  }
  ctx.check('errors (5xx, connection refused) become error spans', errPaths.length > 0 && errProblems.length === 0, `${errPaths.length - errProblems.length}/${errPaths.length}${errProblems.length ? `; ${errProblems.slice(0, 4).join('; ')}` : ''}`);

  const garbageSpans = col.spans.filter((s) => s.kind === 'server' && s.startTs >= garbageT0 && garbage.some((g) => g.client === s.peer.port && g.server === s.local.port));
  ctx.check('non-HTTP traffic and garbage produce no spans', garbageSpans.length === 0, `${garbage.length} garbage connections, ${garbageSpans.length} spans from them${garbageSpans.map((s) => `; ${SERVICE_NAMES[s.service]} ${s.request?.method ?? ''} ${(s.request?.target ?? '').slice(0, 40)} ${s.response?.status ?? s.errorType ?? ''} from :${s.peer.port}`).join('')}`);

  // Jaeger's own API
  ctx.progress.step('Jaeger: query API');
  const sample = genA.map((g) => front.get(g.path)).find((s) => s && s.request!.target!.startsWith('/api/') && !chainProblem(col, s));
  // exported spans are in Jaeger's store once its receiver has them: wait for the ones checked below
  await pollUntil(async () => {
    const have = await jaeger.services();
    if (!['frontend', 'middle', 'leaf'].every((x) => have.includes(x))) return false;
    return !sample || (await jaeger.trace(sample.traceId!))?.spans.length === traceOf(col, sample.traceId!).length;
  }, scaledTimeout(1000), ctx.signal);
  const services = await jaeger.services();
  ctx.check('Jaeger lists the three services', ['frontend', 'middle', 'leaf'].every((x) => services.includes(x)), `services: ${services.join(', ')}`);
  if (sample) {
    const jt = await jaeger.trace(sample.traceId!);
    const ours = traceOf(col, sample.traceId!);
    const refsOk = !!jt && ours.every((s) => {
      const js = jt.spans.find((x) => x.spanID === s.spanId);
      if (!js) return false;
      const ref = js.references.find((r) => r.refType === 'CHILD_OF');
      return s.parent ? ref?.spanID === s.parent.spanId : !ref;
    });
    ctx.check('Jaeger returns a chain as one trace with our parent links', refsOk, jt ? `${jt.spans.length} spans in Jaeger trace ${sample.traceId}` : `trace ${sample.traceId} not found`);
    ctx.metric('sampleTrace', { traceId: sample.traceId, jaeger: jt ? jt.spans.map((s) => ({ op: s.operationName, service: jt.processes[s.processID]?.serviceName, durationUs: s.duration })) : null });
    ctx.section('One trace (waterfall)', { kind: 'text', text: `Trace ${sample.traceId} as Jaeger stores it (${jaeger.queryUrl}/api/traces/${sample.traceId}); bar = span duration on one time axis, [link] = how the parent was found.` }, { kind: 'pre', text: waterfall(ours) });
  }
  if (sample && zipkin) {
    const zs = await zipkin.services();
    const zt = await zipkin.trace(sample.traceId!);
    const ours = traceOf(col, sample.traceId!);
    const ok = !!zt && zt.length === ours.length && ours.every((s) => {
      const z = zt.find((x) => x.id === s.spanId);
      return !!z && (s.parent ? z.parentId === s.parent.spanId : !z.parentId);
    });
    ctx.check('Zipkin (second backend) holds the same trace with the same parents', ok && ['frontend', 'middle', 'leaf'].every((x) => zs.includes(x)), `services ${zs.join(', ')}; ${zt?.length ?? 0} spans for ${sample.traceId}`);
  } else if (!zipkin) ctx.progress.info(ctx.options.zipkin !== 'auto' ? 'Zipkin off' : timeScale() > 2 ? 'Zipkin skipped under emulation: Jaeger only' : 'Zipkin jar not in the lab cache (pnpm lab setup tracing fetches it): Jaeger only');
  ctx.metric('backends', { jaeger: JAEGER_VERSION, zipkin: zipkin ? ZIPKIN_VERSION : null });

  // the sample being complete does not mean every batch is in: one run counted 75 of 80 (its later
  // batches still on their way). Waited for, bounded: a trace that never arrives still fails.
  const expectFront = genA.length;
  let jFront: Awaited<ReturnType<typeof jaeger.traces>> = [];
  await pollUntil(async () => (jFront = await jaeger.traces('frontend', 2000)).length >= expectFront, scaledTimeout(5000), ctx.signal);
  ctx.check('Jaeger holds a frontend trace for every generated request', jFront.length >= expectFront, `${jFront.length} frontend traces in Jaeger, ${expectFront} requests`);

  // ---------------------------------------------------------------- phase B: concurrency
  ctx.progress.step(`phase B: ${n} requests over ${conc} connections (event-loop ambiguity)`);
  const pathsB = Array.from({ length: n }, (_, i) => `/api/c${i}`);
  const genB = await generate(chain.frontend.port, pathsB, conc, ctx.signal);
  await settle(tracer, col, scaledTimeout(5000), ctx.signal);
  const frontB = frontendServer(col);
  const missingB = genB.filter((g) => !frontB.has(g.path));
  ctx.check(`concurrent requests (${conc} connections) all become frontend spans`, missingB.length === 0, `${genB.length - missingB.length}/${genB.length}`);
  // a link that is made must be right: the client span's request belongs to its parent's request
  let wrong = 0, checkedLinks = 0;
  for (const s of col.spans) {
    if (s.kind !== 'client' || s.link !== 'thread' || !s.parent?.request?.target || !s.request?.target) continue;
    const parentId = s.parent.request.target.split('?')[0]!.split('/').pop();
    const childId = s.request.target.split('?')[0]!.split('/').pop();
    if (!parentId || !childId || !/^c?\d+$/.test(parentId)) continue;
    checkedLinks++;
    if (parentId !== childId) wrong++;
  }
  ctx.check('no wrong thread links (ambiguous ones are left unlinked)', wrong === 0, `${checkedLinks} thread links checked, ${wrong} wrong`);

  // linking rate per service
  const rows: (string | number)[][] = [];
  const rates: Record<string, unknown> = {};
  for (const [i, name] of SERVICE_NAMES.entries()) {
    if (!i) continue;
    for (const kind of ['server', 'client'] as const) {
      const all = col.spans.filter((s) => s.service === i && s.kind === kind);
      if (!all.length) continue;
      const by = (l: string) => all.filter((s) => s.link === l).length;
      const linked = all.length - by('root') - by('ambiguous');
      rows.push([name, kind, all.length, by('traceparent'), by('tuple'), by('thread'), by('ambiguous'), by('root'), `${((linked / all.length) * 100).toFixed(1)}%`]);
      rates[`${name}.${kind}`] = { spans: all.length, linked, rate: linked / all.length, ambiguous: by('ambiguous'), root: by('root') };
    }
  }
  ctx.metric('linking', rates);
  ctx.section('Linking rate per service (phases A and B)', {
    kind: 'text',
    text: 'Frontend server spans are roots by design (the load generator is not traced). The Node frontend serves every request on one thread: with one connection at a time its outgoing calls link by thread; with several in flight they are ambiguous and stay unlinked (phase B). Python serves each connection on its own thread, so its calls always link.',
  }, { kind: 'table', columns: ['service', 'kind', 'spans', 'traceparent', 'tuple', 'thread', 'ambiguous', 'root', 'linked'], rows });

  // ---------------------------------------------------------------- phase C: backend outage
  ctx.progress.step('phase C: Jaeger stopped mid-run, then restarted');
  const ex = tracer.exporter!;
  // the counts before the outage: taken once what phases A and B queued has gone out
  await pollUntil(() => ex.stats.queued === 0, scaledTimeout(500), ctx.signal);
  const before = { ...ex.stats };
  await jaeger.stop();
  const outageN = Math.max(n, Math.ceil((maxQueue * 2) / 5));
  const genC = await generate(chain.frontend.port, Array.from({ length: outageN }, (_, i) => `/api/o${i}`), 1, ctx.signal);
  await settle(tracer, col, scaledTimeout(5000), ctx.signal);
  // the export attempts against the stopped Jaeger fail and the overflow is dropped
  await pollUntil(() => ex.stats.dropped > before.dropped, scaledTimeout(1000), ctx.signal);
  const during = { ...ex.stats };
  const rss = process.memoryUsage().rss;
  ctx.check('with Jaeger down the export queue stays bounded and drops are counted', during.highWater <= maxQueue && during.dropped > before.dropped,
    `${genC.length} requests (${genC.length * 5} spans) during the outage; queue high water ${during.highWater}/${maxQueue}, dropped ${during.dropped - before.dropped}, failed batches ${during.failedBatches - before.failedBatches}`);
  stopped();
  await jaeger.start(scaledTimeout(30_000));
  const genD = await generate(chain.frontend.port, Array.from({ length: 10 }, (_, i) => `/api/r${i}`), 1, ctx.signal);
  await settle(tracer, col, scaledTimeout(5000), ctx.signal);
  const resumeUntil = Date.now() + scaledTimeout(10_000);
  while (Date.now() < resumeUntil && (ex.stats.queued > 0 || ex.stats.exported <= during.exported)) await sleep(200);
  const newIds = new Set(genD.map((g) => frontendServer(col).get(g.path)?.traceId).filter(Boolean));
  // one small lookup per trace (the list query below returns up to 2000 traces: too heavy to poll)
  await pollUntil(async () => {
    for (const id of newIds) if (!(await jaeger.trace(id!))) return false;
    return true;
  }, scaledTimeout(1000), ctx.signal);
  const after = { ...ex.stats };
  const jAfter = await jaeger.traces('frontend', 2000);
  const found = jAfter.filter((t) => newIds.has(t.traceID)).length;
  ctx.check('export resumes when Jaeger returns', after.exported > during.exported && found === newIds.size && newIds.size === genD.length,
    `exported ${after.exported - during.exported} spans after the restart (queue held ${during.queued}); ${found}/${genD.length} new traces in the restarted Jaeger`);
  ctx.metric('outage', { maxQueue, before, during, after, rssBytes: rss, requestsDuringOutage: genC.length });
  ctx.section('Export queue during a Jaeger outage', {
    kind: 'kv',
    items: {
      'queue bound (spans)': maxQueue, 'requests while down': genC.length, 'queue high water': during.highWater, 'dropped while down': during.dropped - before.dropped,
      'failed export batches': during.failedBatches - before.failedBatches, 'exported after restart': after.exported - during.exported, 'new traces found after restart': `${found}/${genD.length}`,
    },
  });

  // ---------------------------------------------------------------- report
  const snap = tracer.snapshot();
  ctx.metric('tracer', snap);
  const prom = await (await fetch(tracer.metricsUrl!)).text();
  // in-kernel RED (every request, crossed or not; nothing is sampled here) against the spans
  const kred = tracer.kernel.red();
  const kcount = (service: number, role: string) => kred.filter((r) => r.service === service && r.role === role).reduce((a, r) => a + r.counts.reduce((x, y) => x + y, 0), 0);
  const redRows = ([1, 2, 3] as const).flatMap((sv) => (['server', 'client'] as const).map((role) => [SERVICE_NAMES[sv]!, role, kcount(sv, role), col.spans.filter((x) => x.service === sv && x.kind === role).length]));
  ctx.metric('kernelRed', { series: kred, perService: redRows });
  ctx.section('In-kernel RED against spans', { kind: 'text', text: 'Requests counted by the BPF side (every request, whether its records crossed or not) beside the spans user space built from the records. Nothing is sampled in this run, so they differ only where a request produced no span: a head refused with 400/431, garbage, or a request still open at the end.' },
    { kind: 'table', columns: ['service', 'kind', 'kernel count', 'spans'], rows: redRows });
  const feKernel = kcount(1, 'server'), feSpans = col.spans.filter((x) => x.service === 1 && x.kind === 'server').length;
  // a head the server refused (400/431 to a truncated head) is counted by the kernel but is no span; garbage is neither
  ctx.check('in-kernel RED counts every frontend request (spans + heads refused unparsed)', feKernel === feSpans + snap.assembler.rejectedUnparsed, `kernel ${feKernel}, spans ${feSpans}, refused heads ${snap.assembler.rejectedUnparsed}, garbage connections ${garbage.length} (not counted)`);
  ctx.check('in-kernel RED on the Prometheus endpoint', /ebpf_http_kernel_duration_seconds_count\{service="frontend",kind="server",status_class="2xx"\}/.test(prom), tracer.metricsUrl!);
  ctx.check('RED metrics on the Prometheus endpoint', /ebpf_http_requests_total\{[^}]*service="frontend"/.test(prom) && /ebpf_http_duration_seconds_bucket/.test(prom), tracer.metricsUrl!);
  const calls = new Map<string, number>();
  calls.set('loadgen → frontend', col.spans.filter((s) => s.service === 1 && s.kind === 'server').length);
  for (const s of col.spans) {
    if (s.kind !== 'server' || !s.parent) continue;
    const k = `${SERVICE_NAMES[s.parent.service]} → ${SERVICE_NAMES[s.service]}`;
    calls.set(k, (calls.get(k) ?? 0) + 1);
  }
  const refusedCalls = col.spans.filter((s) => s.errorType === 'connection_refused').length;
  if (refusedCalls) calls.set('middle → (closed port)', refusedCalls);
  ctx.section('Service map', { kind: 'text', text: 'Calls seen on the node, caller → callee (a callee counted under a caller when the 4-tuple link joined them).' },
    { kind: 'table', columns: ['edge', 'calls'], rows: [...calls.entries()].map(([k, v]) => [k, v]) });

  const buckets = [100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000];
  const routes = new Map<string, number[]>();
  for (const s of col.spans) {
    if (s.kind !== 'server' || !s.request?.target) continue;
    const r = `${SERVICE_NAMES[s.service]} ${routeOf(s.request.target.split('?')[0]!).replace(/\/(c|o|r)\d+$/, '/{id}')}`;
    const h = routes.get(r) ?? new Array(buckets.length + 1).fill(0);
    const us = Number(s.endTs - s.startTs) / 1000;
    const b = buckets.findIndex((x) => us <= x);
    h[b < 0 ? buckets.length : b]++;
    routes.set(r, h);
  }
  ctx.section('Per-route latency (server spans)', {
    kind: 'chart', title: 'server span duration by route', type: 'bar', labels: [...buckets.map((b) => `≤${b >= 1000 ? `${b / 1000}ms` : `${b}µs`}`), '>100ms'],
    datasets: [...routes.entries()].map(([k, v]) => ({ label: k, data: v })), xLabel: 'duration', yLabel: 'requests',
  });

  const total = genA.length;
  ctx.headline({ name: 'tracing.requestsMatched', label: 'generated requests found as correct frontend spans', unit: '%', better: 'higher', value: (matched / total) * 100, goal: { op: '>=', target: 100, verdict: matched === total ? 'met' : 'not met' } });
  ctx.headline({ name: 'tracing.chainsComplete', label: 'request chains forming one correct trace', unit: '%', better: 'higher', value: (chainsOk / total) * 100, goal: { op: '>=', target: 100, verdict: chainsOk === total ? 'met' : 'not met' } });
  const mid = rates['middle.client'] as { rate: number } | undefined;
  if (mid) ctx.headline({ name: 'tracing.linkRate.middle', label: 'middle (threaded Python) outgoing calls linked', unit: '%', better: 'higher', value: mid.rate * 100 });
  ctx.section('Result', {
    kind: 'kv',
    items: {
      'capture bytes per syscall': ctx.options['capture-bytes'] as number,
      'kernel records': snap.assembler.events,
      'ring buffer lost': snap.kernelLost,
      'program runs the kernel skipped (recursion)': Object.entries(snap.kernelMissed.perProgram).map(([p, n]) => `${p} ${n}`).join(', ') + (snap.kernelMissed.standbyTook ? `; the standby copies took ${snap.kernelMissed.standbyTook} events` : ''),
      spans: col.spans.length,
      'exported / dropped': `${snap.export?.exported} / ${snap.export?.dropped}`,
      'BPF run time': snap.bpf ? `${(snap.bpf.runTimeNs / 1e6).toFixed(1)} ms over ${snap.bpf.runCnt} runs (${(snap.bpf.runTimeNs / Math.max(1, snap.bpf.runCnt)).toFixed(0)} ns/run)` : 'n/a',
    },
  });
}

const scenario: Scenario = {
  name: 'tracing',
  description: 'zero-code HTTP tracing from the kernel → OpenTelemetry → Jaeger (Node → Python → nginx chain)',
  tools: ['tracing'],
  options: {
    requests: { only: 'run', type: 'int', description: 'requests per phase', default: 80, min: 8, max: 100000, valueName: 'N' },
    concurrency: { only: 'run', type: 'int', description: 'connections in the concurrent phase', default: 4, min: 2, max: 256, valueName: 'N' },
    'max-queue': { only: 'run', type: 'int', description: 'export queue bound (spans)', default: 200, min: 10, max: 1_000_000, valueName: 'N' },
    'capture-bytes': { only: 'run', type: 'int', description: 'payload bytes per syscall that cross to user space', default: 256, min: 64, max: 512, valueName: 'N' },
    zipkin: { only: 'run', type: 'string', choices: ['auto', 'off'], default: 'auto', description: 'auto: also export to a Zipkin server when its jar is in the lab cache (pnpm lab setup tracing) and not under TCG; off: Jaeger only' },
    repeat: { only: 'bench', type: 'int', description: 'bench: interleaved rounds', default: 3, min: 1, max: 50, valueName: 'N' },
    seconds: { only: 'bench', type: 'int', description: 'bench: seconds per measurement', default: 5, min: 1, max: 600, valueName: 'S' },
    connections: { only: 'bench', type: 'int', description: 'bench: wrk connections', default: 16, min: 1, max: 4096, valueName: 'N' },
    'tracer-sched': { only: 'bench', type: 'list', choices: SCHEDS, default: 'normal', description: 'bench: how the tracer is scheduled in its windows, one eBPF configuration each (normal; nice: nice 19; idle: SCHED_IDLE; idle-noexport: SCHED_IDLE without export, a diagnostic; floor: hooks attached but nothing selected, the mechanism\'s own cost, a diagnostic), interleaved with the others', valueName: 'normal,nice,idle,idle-noexport,floor' },
    'compare-hook': { only: 'bench', type: 'list', choices: ['sock', 'tp_btf', 'raw_tp'], description: 'bench: also measure every eBPF configuration with these payload hooks, interleaved with the rest (the tracer uses the kernel\'s own otherwise: sock on 6.3+, else sys_exit as tp_btf)', valueName: 'sock,tp_btf,raw_tp' },
    sample: { only: 'bench', type: 'number', description: 'bench: also measure the tracer sampling this share of root requests in the kernel, beside the SDK sampling the same share (1: no sampled pair)', default: 0.01, min: 1e-6, max: 1, valueName: 'R' },
    'tracer-warmup': { only: 'bench', type: 'int', description: 'bench: seconds of the same load with the tracer attached before each eBPF window, not measured (a fresh tracer spends its first seconds compiling; users run it as a daemon)', default: 2, min: 0, max: 60, valueName: 'S' },
    'cpu-prof': { only: 'bench', type: 'string', description: 'bench: write a V8 CPU profile of the tracer for each eBPF measurement into DIR (summary in the report)', valueName: 'DIR',
      check: (v) => {
        try {
          checkOutDir(v, { option: 'cpu-prof', example: '--cpu-prof /tmp/tracer-profiles' });
          return undefined;
        } catch (e) {
          return { message: withoutOption((e as Error).message, 'cpu-prof', v), fix: (e as { fix?: string }).fix ?? 'give a directory you can write' };
        }
      } },
  },
  // Jaeger is built on the host before a guest boots (3.5 min cold here, seconds with Go's build
  // cache): the guest reads the host's tree read-only and has no route to the Go module proxy
  vm: { prepare: (log) => ensureJaeger(log) },
  run: async (ctx) => (ctx.mode === 'bench' ? bench(ctx) : run(ctx)),
};
export default scenario;
