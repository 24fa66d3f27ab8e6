// Profile the TS consumer alone: `node --cpu-prof --cpu-prof-dir DIR --import tsx
// scenarios/hello-openat/profile.ts [RATE/s, 0 = flat out] [MS] [fail|open]`, then
// `tsx scenarios/hello-openat/profile.ts --top DIR/*.cpuprofile` lists the self time per function.
// Not part of a run: a developer's tool for finding where the consumer's CPU goes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readPidStat } from '../../common/host.ts';
import { buildLoadgen, GEN_PATHS, runTs, type GenKind } from './consumer.ts';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount: number }

/** self time per function (by name + file:line), top n, from a V8 .cpuprofile */
export function topSelf(profile: { nodes: Node[]; startTime: number; endTime: number; samples: number[] }, n = 25): { fn: string; ms: number; pct: number }[] {
  const per = new Map<string, number>();
  let total = 0;
  for (const nd of profile.nodes) {
    const f = nd.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : ''}`.trim();
    per.set(key, (per.get(key) ?? 0) + nd.hitCount);
    total += nd.hitCount;
  }
  const msPerHit = (profile.endTime - profile.startTime) / 1000 / Math.max(total, 1);
  return [...per].sort((a, b) => b[1] - a[1]).slice(0, n).map(([fn, h]) => ({ fn, ms: +(h * msPerHit).toFixed(1), pct: +((100 * h) / Math.max(total, 1)).toFixed(1) }));
}

/** CPU ns (utime+stime) per thread of this process */
function threadCpu(): Map<string, { name: string; ns: number; sys: number }> {
  const m = new Map<string, { name: string; ns: number; sys: number }>();
  for (const tid of fs.readdirSync('/proc/self/task')) {
    const st = readPidStat(`/proc/self/task/${tid}/stat`);
    if (st) m.set(tid, { name: st.comm, ns: (st.ticks * 1e9) / 100, sys: (st.sysTicks * 1e9) / 100 }); // else the thread ended
  }
  return m;
}

if (process.argv[2] === '--top') {
  for (const f of process.argv.slice(3)) {
    console.log(f);
    for (const r of topSelf(JSON.parse(fs.readFileSync(f, 'utf8')))) console.log(`${String(r.pct).padStart(5)}% ${String(r.ms).padStart(8)} ms  ${r.fn}`);
  }
} else {
  const rate = Number(process.argv[2] ?? 0);
  const ms = Number(process.argv[3] ?? 3000);
  const gen = (process.argv[4] ?? 'fail') as GenKind;
  const bin = await buildLoadgen();
  const out = path.join(os.tmpdir(), `ebpf-lab-profile-${process.pid}.out`);
  try {
    // a warm-up run first (EBPF_LAB_PROFILE_WARMUP_MS, default 0): the bench's rounds after the
    // first run JIT-compiled code, a cold profile is mostly the compiler's
    const warm = Number(process.env.EBPF_LAB_PROFILE_WARMUP_MS ?? 0);
    if (warm > 0) await runTs(bin, rate, warm, GEN_PATHS[gen], out);
    // CLOCK_MONOTONIC seconds, for `perf record -k CLOCK_MONOTONIC` + `perf report --time START,`
    console.error(`measure-start ${(Number(process.hrtime.bigint()) / 1e9).toFixed(6)}`);
    const before = threadCpu();
    const r = await runTs(bin, rate, ms, GEN_PATHS[gen], out);
    const after = threadCpu();
    const { timeline: _t, ...rest } = r;
    console.log(JSON.stringify(rest));
    // where the process's CPU went, per thread (main thread, koffi's async worker, libuv, V8 GC…)
    for (const [tid, v] of after) console.log(`thread ${tid} ${v.name}: ${((v.ns - (before.get(tid)?.ns ?? 0)) / 1e6).toFixed(0)} ms (system ${((v.sys - (before.get(tid)?.sys ?? 0)) / 1e6).toFixed(0)} ms)`);
  } finally {
    fs.rmSync(out, { force: true });
  }
}
