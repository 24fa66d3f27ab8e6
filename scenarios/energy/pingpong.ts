// The cost of the sched_switch hook: `perf bench sched pipe` (two tasks ping-ponging a byte
// through a pair of pipes, two context switches per round trip), with the energy program attached
// and not, interleaved round by round (the order alternates), time per operation compared per round.
import { execa } from 'execa';
import { bootstrapRatioCI, median, summary, verdict } from '../../lab/stats.ts';
import { EnergyCollector } from '../../controller/energy/collector.ts';

export interface PingPongResult {
  loops: number;
  rounds: { off: number; on: number; ratio: number; order: string }[];
  /** µs per op, per configuration */
  off: ReturnType<typeof summary>;
  on: ReturnType<typeof summary>;
  /** (on / off − 1) per round, in % */
  overheadPct: ReturnType<typeof summary> & { values: number[] };
  ci: ReturnType<typeof bootstrapRatioCI>;
  verdict: 'pass' | 'fail' | 'inconclusive';
  hook: string;
}

export async function pipeUsPerOp(loops: number, signal?: AbortSignal): Promise<number> {
  const r = await execa('perf', ['bench', 'sched', 'pipe', '-l', String(loops)], { cancelSignal: signal, all: true, reject: false });
  const m = /([\d.]+)\s+usecs\/op/.exec(r.all ?? '');
  if (r.exitCode !== 0 || !m) throw new Error(`perf bench sched pipe failed (exit ${r.exitCode}): ${(r.all ?? '').split('\n').slice(-3).join(' | ')}`);
  return Number(m[1]);
}

export async function pingPong(opts: { rounds: number; loops: number; goalPct: number; signal?: AbortSignal; onRound?: (i: number) => void }): Promise<PingPongResult> {
  const rounds: PingPongResult['rounds'] = [];
  let hook = '';
  await pipeUsPerOp(Math.max(1000, opts.loops / 10), opts.signal); // warm-up (page cache, CPU frequency)
  for (let i = 0; i < opts.rounds; i++) {
    opts.onRound?.(i);
    const v: { off?: number; on?: number } = {};
    const order = i % 2 ? ['on', 'off'] : ['off', 'on'];
    for (const cfg of order) {
      if (cfg === 'off') v.off = await pipeUsPerOp(opts.loops, opts.signal);
      else {
        const c = await EnergyCollector.open({ power: 'model' });
        try {
          hook = c.hook.name;
          v.on = await pipeUsPerOp(opts.loops, opts.signal);
        } finally {
          c.close();
        }
      }
    }
    rounds.push({ off: v.off!, on: v.on!, ratio: v.on! / v.off!, order: order.join('→') });
  }
  const pct = rounds.map((r) => (r.ratio - 1) * 100);
  const ci = bootstrapRatioCI(rounds.map((r) => r.off), rounds.map((r) => r.on));
  return {
    loops: opts.loops,
    rounds,
    off: summary(rounds.map((r) => r.off)),
    on: summary(rounds.map((r) => r.on)),
    overheadPct: { ...summary(pct), values: pct },
    ci,
    verdict: rounds.length >= 2 ? verdict(ci, 1 + opts.goalPct / 100) : median(pct) <= opts.goalPct ? 'pass' : 'fail',
    hook,
  };
}
