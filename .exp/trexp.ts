import fs from 'node:fs';
import { Session } from 'node:inspector/promises';
const sess = new Session(); sess.connect();
import { execa } from 'execa';
import { KernelTracer } from '../controller/tracing/kernel.ts';
import { Tracer } from '../controller/tracing/tracer.ts';
import { createCgroup, removeCgroup, cgroup2Root } from '../controller/security/cgroup.ts';
const root = cgroup2Root();
const cg = `${root}/trexp`;
createCgroup(cg);
const LAUNCHER = `import os,sys
open(sys.argv[1]+'/cgroup.procs','w').write(str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])`;
const port = 18080 + Math.floor(Math.random() * 1000);
const srv = execa('/usr/bin/python3', ['-c', LAUNCHER, cg, process.execPath, 'scenarios/tracing/bench-server.cjs'], { env: { PORT: String(port) }, reject: false, stdout: 'pipe' });
await new Promise((r) => srv.stdout!.once('data', r));
const cpu = () => Number(/usage_usec (\d+)/.exec(fs.readFileSync(`${cg}/cpu.stat`, 'utf8'))![1]);
const selfCpu = () => { const u = process.cpuUsage(); return u.user + u.system; };
const id = BigInt(fs.statSync(cg).ino);
async function wrk() {
  const r = await execa('wrk', ['-t1', '-c16', '-d4s', `http://127.0.0.1:${port}/local`]);
  const m = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout)!; const n = /(\d+) requests in/.exec(r.stdout)!;
  return { rps: Number(m[1]), n: Number(n[1]) };
}
const modes = (process.env.MODES ?? 'none,kernel,tracer').split(',');
const res: Record<string, number[][]> = {};
for (let round = 0; round < Number(process.env.ROUNDS ?? 2); round++) for (const mode of modes) {
  let k: KernelTracer | null = null; let t: Tracer | null = null; let loop: Promise<void> | null = null;
  if (mode === 'kernel') { k = await KernelTracer.start({ stats: true, sysExit: 'raw_tp' }); k.selectCgroup(id, 1); let c = 0; loop = k.consume(() => { c++; }); }
  if (mode === 'kernelunsel') { k = await KernelTracer.start({ stats: true, sysExit: 'raw_tp' }); }
  if (mode === 'btfunsel') { k = await KernelTracer.start({ stats: true, sysExit: 'tp_btf' }); }
  if (mode === 'btf') { k = await KernelTracer.start({ stats: true, sysExit: 'tp_btf' }); k.selectCgroup(id, 1); let c = 0; loop = k.consume(() => { c++; }); }
  if (mode === 'ksamp0') { k = await KernelTracer.start({ stats: !process.env.NOSTATS, sampleRatio: 1e-6 }); k.selectCgroup(id, 1); }
  if (mode === 'ksampc') { k = await KernelTracer.start({ stats: !process.env.NOSTATS, sampleRatio: Number(process.env.RATIO ?? 0.01) }); k.selectCgroup(id, 1); let c = 0; loop = k.consume(() => { c++; }); }
  if (mode === 'ksamp0c') { k = await KernelTracer.start({ stats: !process.env.NOSTATS, sampleRatio: 1e-6 }); k.selectCgroup(id, 1); let c = 0; loop = k.consume(() => { c++; }); }
  if (mode === 'kernelnoconsume') { k = await KernelTracer.start({ stats: true, ringBytes: 4096 }); k.selectCgroup(id, 1); }
  if (mode === 'sampled') { t = await Tracer.start({ services: [{ name: 'svc', cgroup: cg }], stats: process.env.NOSTATS ? false : true, captureBytes: 256, sampleRatio: Number(process.env.RATIO ?? 0.01) } as any); }
  if (mode === 'tracer') { t = await Tracer.start({ services: [{ name: 'svc', cgroup: cg }], stats: true, captureBytes: 256 } as any); }
  await new Promise((r) => setTimeout(r, 300));
  const thr = () => Object.fromEntries(fs.readdirSync('/proc/self/task').map((t) => { try { const st = fs.readFileSync(`/proc/self/task/${t}/stat`, 'utf8'); const r = st.slice(st.lastIndexOf(')') + 2).split(' '); return [`${t}:${st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'))}`, Number(r[11]) + Number(r[12])]; } catch { return [t, 0]; } }));
  const cs = () => { const t = fs.readFileSync(`/proc/self/task/${process.pid}/status`, 'utf8'); return Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(t)![1]) + Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(t)![1]); };
  const cs0 = cs();
  const th0 = thr(); const ring = (k ?? t?.kernel)?.ring; const d0 = ring?.delivered ?? 0, wk0 = ring?.wakeups ?? 0;
  const c0 = cpu(), s0 = selfCpu();
  const b0 = (k ?? t?.kernel)?.programStats().runTimeNs ?? 0;
  if (process.env.PROF) { await sess.post('Profiler.enable'); await sess.post('Profiler.start'); }
  const perfp = process.env.PERF && mode !== 'none' ? execa('perf', ['record', '-a', '-g', '-o', `/tmp/perf-${mode}.data`, '--', 'sleep', '3'], { reject: false }) : null;
  const w = await wrk();
  await perfp;
  if (process.env.PROF) { const { profile } = await sess.post('Profiler.stop') as any; fs.writeFileSync(`${process.env.PROF}-${mode}-${round}.cpuprofile`, JSON.stringify(profile)); }
  const c1 = cpu(), s1 = selfCpu();
  const th1 = thr(); console.log('   threads(ticks):', Object.entries(th1).map(([k, v]) => [k, v - (th0[k] ?? 0)]).filter(([, v]) => (v as number) > 0).map(([k, v]) => `${k}=${v}`).join(' '), 'records', (ring?.delivered ?? 0) - d0, 'mainctxsw', cs() - cs0, 'wakeups', (ring?.wakeups ?? 0) - wk0);
  const b1 = (k ?? t?.kernel)?.programStats().runTimeNs ?? 0;
  const row = [w.rps, (c1 - c0) / w.n, (s1 - s0) / w.n, (b1 - b0) / 1000 / w.n];
  (res[mode] ??= []).push(row);
  console.log(round, mode.padEnd(16), 'rps', w.rps.toFixed(0), 'app µs/req', row[1].toFixed(2), 'agent µs/req', row[2].toFixed(2), 'bpf µs/req', row[3].toFixed(2));
  if (k && process.env.PERPROG) { for (const [n, pr] of Object.entries(k.skel.programs as any)) { try { const i = (pr as any).info(); if (Number(i.runCnt)) console.log('   ', n.padEnd(16), 'runs/req', (Number(i.runCnt)/w.n).toFixed(2), 'ns/run', (Number(i.runTimeNs)/Number(i.runCnt)).toFixed(0)); } catch {} } }
  if (k) { k.close(); await loop?.catch(() => {}); }
  if (t) await t.stop();
}
srv.kill('SIGKILL'); await srv.catch(() => {});
removeCgroup(cg);
process.exit(0);
