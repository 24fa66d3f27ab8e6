// Synthetic run histories for compare/publish tests: results.json objects shaped like the
// runner's, with seeded noise so a test is reproducible. Not used outside tests.
import { sampleResults } from '../report/fixture.ts';
import type { Headline, Results } from '../results.ts';
import { mad, median, rng } from '../stats.ts';

export interface SynthOpts {
  scenario?: string;
  kernel?: { release: string; spec: string; target: 'host' | 'vm' };
  /** true value of the metric in this run */
  value: number;
  /** relative half-width of uniform noise per round (0.05 = ±5%) */
  noise: number;
  rounds?: number;
  seed: number;
  index: number;
  better?: 'higher' | 'lower';
  commit?: string;
  status?: Results['status'];
  regressionFloor?: number;
}

export function headlineFrom(name: string, label: string, unit: string, better: 'higher' | 'lower', rounds: number[], extra: Partial<Headline> = {}): Headline {
  return { name, label, unit, better, value: median(rounds), rounds, spread: { n: rounds.length, min: Math.min(...rounds), max: Math.max(...rounds), mad: mad(rounds) }, ...extra };
}

/** one run of a synthetic history; `index` orders runs in time (one day apart) */
export function synthRun(o: SynthOpts): Results {
  const r = sampleResults();
  const rand = rng(o.seed);
  const n = o.rounds ?? 10;
  const rounds = Array.from({ length: n }, () => o.value * (1 + (rand() * 2 - 1) * o.noise));
  const k = o.kernel ?? { release: '6.18.0-test', spec: 'host', target: 'host' as const };
  const scenario = o.scenario ?? 'xdp-lb';
  const day = new Date(Date.UTC(2026, 10, 1) + o.index * 86_400_000);
  const stamp = day.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  r.runId = `${stamp}-${scenario}-${k.spec}-${o.index}`;
  r.scenario = scenario;
  r.mode = 'bench';
  r.status = o.status ?? 'pass';
  r.startedAt = day.toISOString();
  r.finishedAt = new Date(day.getTime() + 60_000).toISOString();
  r.durationMs = 60_000;
  r.environment = {
    ...r.environment,
    kernel: { release: k.release, spec: k.spec },
    target: k.target,
    cpu: { model: 'Synthetic CPU @ 2.0GHz', cores: 2 },
    git: { commit: o.commit ?? (o.index * 7919).toString(16).padStart(8, '0').repeat(5), dirty: false },
    ...(k.target === 'vm' ? { vm: { accel: 'tcg' } } : {}),
  };
  // a quiet machine: a busy run's figures are not judged (compare.ts busyRun)
  r.context = { ...r.context!, busy: [], othersCores: 0.05, topOthers: [] };
  const better = o.better ?? 'lower';
  r.headline = [headlineFrom('lb.cpuPerRequest', 'LB CPU per request', 'µs', better, rounds, o.regressionFloor !== undefined ? { regressionFloor: o.regressionFloor } : {})];
  return r;
}

/**
 * A small site's worth of runs: two scenarios × two kernels × six nights, a 15% regression on the
 * last night of xdp-lb on the host, plus a run without headlines and a run that errored.
 */
export function fixtureHistory(): Results[] {
  const out: Results[] = [];
  const kernels = [
    { release: '6.18.0-test', spec: 'host', target: 'host' as const },
    { release: '6.1.0-50-amd64', spec: '6.1', target: 'vm' as const },
  ];
  let seed = 1;
  for (let night = 0; night < 6; night++) {
    for (const [ki, k] of kernels.entries()) {
      const lb = synthRun({ index: night, seed: seed++, noise: 0.04, value: (ki ? 30 : 10) * (night === 5 && ki === 0 ? 1.15 : 1), kernel: k, scenario: 'xdp-lb' });
      lb.runId += `-${ki}`;
      out.push(lb);
      const ho = synthRun({ index: night, seed: seed++, noise: 0.03, value: ki ? 2.5e5 : 1.2e6, better: 'higher', kernel: k, scenario: 'hello-openat' });
      ho.runId += `-${ki}`;
      ho.headline = [headlineFrom('events.rate', 'events per second', 'events/s', 'higher', ho.headline![0]!.rounds!, { comparator: { name: 'opensnoop (C)', ratio: 0.92, likeForLike: true }, goal: { op: '>=', target: 0.8, of: 'ratio', verdict: night === 3 && ki === 1 ? 'not met' : 'met' } })];
      ho.startedAt = new Date(Date.parse(ho.startedAt) + 3_600_000).toISOString();
      out.push(ho);
    }
  }
  const sec = synthRun({ index: 5, seed: 999, noise: 0, value: 1, scenario: 'security' });
  sec.runId += '-nohead';
  delete sec.headline;
  sec.mode = 'run';
  out.push(sec);
  const err = synthRun({ index: 5, seed: 998, noise: 0, value: 1, scenario: 'security', kernel: kernels[1] });
  err.runId += '-error';
  err.status = 'error';
  err.error = 'guest did not boot';
  out.push(err);
  return out;
}
