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
  const better = o.better ?? 'lower';
  r.headline = [headlineFrom('lb.cpuPerRequest', 'LB CPU per request', 'µs', better, rounds, o.regressionFloor !== undefined ? { regressionFloor: o.regressionFloor } : {})];
  return r;
}
