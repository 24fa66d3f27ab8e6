// Where joules come from, in order: RAPL through the powercap sysfs, RAPL through perf's power
// PMU, else the model (controller/energy/model.ts) — every reading says which, and the model's
// say "estimate". A meter is trusted only after it advanced: a VM can expose the power PMU (or
// even powercap files) whose counters never move, and a meter that reads 0 J is not a measurement.
import fs from 'node:fs';
import path from 'node:path';
import { perfEventOpen } from '../libbpf/index.ts';
import type { PowerSourceName } from './model.ts';

export interface Meter {
  name: PowerSourceName;
  /** e.g. "powercap intel-rapl:0 (package-0)" */
  detail: string;
  /** cumulative joules since the meter was opened */
  readJoules(): number;
  close(): void;
}

export interface SourceChoice {
  meter: Meter | null;
  /** why each meter that was looked for is not used (empty when a meter was chosen first time) */
  evidence: string[];
}

const POWERCAP = '/sys/class/powercap';
const PERF_POWER = '/sys/bus/event_source/devices/power';

function readNum(p: string): number {
  return Number(fs.readFileSync(p, 'utf8').trim());
}

/**
 * top-level RAPL package zones (intel-rapl:N / amd-rapl:N without a sub-zone, named package-N).
 * Not psys: on Intel client machines intel-rapl:1 is often the platform zone, which contains the
 * package, and summing both counted the package twice (found by review, session 56).
 */
export function powercapZones(root = POWERCAP): string[] {
  if (!fs.existsSync(root)) return [];
  const name = (z: string) => {
    try {
      return fs.readFileSync(path.join(root, z, 'name'), 'utf8').trim();
    } catch {
      return null; // no name file: taken as a package zone
    }
  };
  return fs.readdirSync(root).filter((z) => /^[a-z]+-rapl:\d+$/.test(z) && (name(z) ?? 'package').startsWith('package')).map((z) => path.join(root, z));
}

/** more than any package draws (W): a "wrap" that implies more was a reset */
const MAX_PACKAGE_WATTS = 5000;
/**
 * what a counter that wraps at `range` gained from `last` to `v`, at most `max` (the most the
 * package can have used since). A reading below the last is a wrap only where that fits `max`;
 * otherwise the counter was reset (resume from suspend, driver reload) and counts again from 0:
 * read as a wrap, it added up to the whole range (~262 kJ) at once.
 */
export function counterDelta(last: number, v: number, range: number, max = Infinity): number {
  if (v >= last) return v - last;
  const wrapped = v + range - last;
  return range > 0 && wrapped <= max ? wrapped : v;
}

function powercapMeter(zones: string[]): Meter {
  // energy_uj wraps at max_energy_range_uj: accumulate deltas, not raw values
  const st = zones.map((z) => ({ file: path.join(z, 'energy_uj'), range: readNum(path.join(z, 'max_energy_range_uj')), last: readNum(path.join(z, 'energy_uj')), total: 0 }));
  let lastT = process.hrtime.bigint();
  const names = zones.map((z) => `${path.basename(z)}${fs.existsSync(path.join(z, 'name')) ? ` (${fs.readFileSync(path.join(z, 'name'), 'utf8').trim()})` : ''}`);
  return {
    name: 'rapl',
    detail: `powercap ${names.join(', ')}`,
    readJoules() {
      let j = 0;
      const t = process.hrtime.bigint();
      const maxUj = MAX_PACKAGE_WATTS * (Number(t - lastT) / 1e9 + 1) * 1e6;
      lastT = t;
      for (const s of st) {
        const v = readNum(s.file);
        s.total += counterDelta(s.last, v, s.range, maxUj);
        s.last = v;
        j += s.total / 1e6;
      }
      return j;
    },
    close() {},
  };
}

function perfPowerMeter(event: string): Meter {
  const type = readNum(path.join(PERF_POWER, 'type'));
  const cfg = fs.readFileSync(path.join(PERF_POWER, 'events', event), 'utf8').trim();
  const m = /event=(0x[0-9a-f]+|\d+)/i.exec(cfg);
  if (!m) throw new Error(`cannot parse ${event}: ${cfg}`);
  const scale = readNum(path.join(PERF_POWER, 'events', `${event}.scale`));
  // the power PMU counts per package; its cpumask names one CPU per package
  const cpus = fs.readFileSync(path.join(PERF_POWER, 'cpumask'), 'utf8').trim().split(',').flatMap((r) => {
    const [a, b] = r.split('-').map(Number);
    return b === undefined ? [a!] : Array.from({ length: b - a! + 1 }, (_, i) => a! + i);
  });
  const fds = cpus.map((cpu) => perfEventOpen({ type, config: Number(m[1]) }, cpu));
  const buf = Buffer.alloc(8);
  const read = (fd: number) => (fs.readSync(fd, buf, 0, 8, null), buf.readBigUInt64LE(0));
  const first = fds.map(read);
  return {
    name: 'rapl',
    detail: `perf power/${event}/ (scale ${scale} J)`,
    readJoules: () => fds.reduce((s, fd, i) => s + Number(read(fd) - first[i]!) * scale, 0),
    close: () => fds.forEach((fd) => fs.closeSync(fd)),
  };
}

async function advances(m: Meter, waitMs: number): Promise<boolean> {
  const a = m.readJoules();
  await new Promise((r) => setTimeout(r, waitMs));
  return m.readJoules() > a;
}

/**
 * Find a meter: powercap RAPL package zones, then perf power's energy-pkg; each must
 * advance within `waitMs` (the machine is never fully idle for 300 ms: the lab itself runs).
 */
export async function findMeter(opts: { waitMs?: number; powercapRoot?: string } = {}): Promise<SourceChoice> {
  const waitMs = opts.waitMs ?? 300;
  const evidence: string[] = [];
  const zones = powercapZones(opts.powercapRoot);
  if (!zones.length) evidence.push(`no RAPL zones under ${opts.powercapRoot ?? POWERCAP}`);
  else {
    try {
      const m = powercapMeter(zones);
      if (await advances(m, waitMs)) return { meter: m, evidence };
      evidence.push(`${m.detail}: energy_uj did not advance in ${waitMs} ms`);
    } catch (e) {
      evidence.push(`powercap: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  const events = fs.existsSync(path.join(PERF_POWER, 'events')) ? fs.readdirSync(path.join(PERF_POWER, 'events')).filter((e) => /^energy-[a-z]+$/.test(e)) : [];
  if (!events.length) evidence.push(`no perf power events (${PERF_POWER}/events has no energy-*)`);
  else if (!events.includes('energy-pkg')) evidence.push(`perf power has ${events.join(', ')} but no energy-pkg (the package's own counter)`);
  // the package's counter only: psys (the platform, package included) or cores/ram are other zones
  for (const ev of ['energy-pkg'].filter((e) => events.includes(e))) {
    let m: Meter | null = null;
    try {
      m = perfPowerMeter(ev);
      if (await advances(m, waitMs)) return { meter: m, evidence };
      evidence.push(`perf power/${ev}/ opens but reads no energy in ${waitMs} ms (a virtual PMU without a meter)`);
    } catch (e) {
      evidence.push(`perf power/${ev}/: ${(e as Error).message.split('\n')[0]}`);
    }
    m?.close();
  }
  return { meter: null, evidence };
}
