// The three ways to hold a link to a rate that the scenario compares, on the same veth:
// EDT (bpf/tc_shape + fq, through controller/tc), HTB and TBF (the kernel's classic shapers,
// configured with iproute2 as a user would). Each returns how to change a class's rate live and
// how to undo itself; the root qdisc goes back to the device default either way.
import type { Topology } from '../../lab/netns.ts';
import { LabError } from '../../common/errors.ts';
import { TcShaper } from '../../controller/tc/shaper.ts';
import { latencyHorizonNs, validateConfig } from '../../controller/tc/config.ts';

export type Kind = 'edt' | 'htb' | 'tbf';
export const KINDS: Kind[] = ['edt', 'htb', 'tbf'];

/**
 * a class: its rate, and the destination port that selects it (null: everything else to the peer);
 * EDT: its drop horizon (default: the controller's 2 s, Cilium's); HTB: the leaf qdisc under the
 * class (default: none given, i.e. HTB's own pfifo of txqueuelen packets)
 */
export interface ClassDef { name: string; mbit: number; port: number | null; horizon?: 'auto'; leaf?: 'fq_codel' }

/** the EDT horizon `auto` gives a class at `mbit` (controller/tc/config.ts latencyHorizonNs), in ms */
export const latencyHorizonMs = (mbit: number) => Number(latencyHorizonNs(BigInt(Math.round(mbit * 1e6)))) / 1e6;

export interface Shaping {
  kind: Kind;
  setRate(name: string, mbit: number): Promise<void>;
  /** packets the shaper dropped so far (EDT: horizon drops of all classes; HTB/TBF: the root qdisc's drops, leaves included) */
  drops(): Promise<number>;
  close(): Promise<void>;
}

/** `pid`: a process living in the sending namespace (its /proc/<pid>/net/dev has the device's counters) */
export interface Link { topo: Topology; ns: string; role: string; dev: string; peer: string; pid?: number }

const mbit = (m: number) => `${m}mbit`;

export async function shape(kind: Kind, l: Link, classes: ClassDef[]): Promise<Shaping> {
  const tc = (args: string[]) => l.topo.exec(l.role, 'tc', args);
  if (kind === 'edt') {
    const s = TcShaper.start({ dev: l.dev, netns: l.ns, ingress: false });
    try {
      s.control.apply(validateConfig({
        classes: classes.map((c) => ({ name: c.name, rate: mbit(c.mbit), ...(c.horizon ? { horizon: c.horizon } : {}), match: [c.port ? { dst: `${l.peer}/32`, port: c.port } : { dst: `${l.peer}/32` }] })),
      }));
    } catch (e) {
      s.close();
      throw e;
    }
    return {
      kind,
      async setRate(name, m) {
        s.control.setRate(name, BigInt(m) * 1_000_000n); // an auto horizon follows the rate
      },
      async drops() {
        return s.control.classStats().reduce((a, c) => a + Number(c.horizonDrops), 0);
      },
      async close() {
        s.close();
      },
    };
  }
  const drops = async () => {
    const r = await l.topo.exec(l.role, 'tc', ['-s', '-j', 'qdisc', 'show', 'dev', l.dev, 'root'], { reject: false });
    try {
      return (JSON.parse(String(r.stdout)) as { drops?: number }[])[0]?.drops ?? NaN;
    } catch {
      return NaN;
    }
  };
  const undo = async () => {
    await tc(['qdisc', 'del', 'dev', l.dev, 'root']).catch(() => {});
  };
  try {
    if (kind === 'tbf') {
      if (classes.length !== 1) throw new LabError('TBF is classless: one class only');
      const r = classes[0]!.mbit;
      // burst: 4 ms at the rate (≥ 2 full-size TSO frames so 10 Mbit/s still passes GSO skbs),
      // queue: 50 ms — the configuration an administrator would typically write
      const burst = Math.max(140_000, Math.round((r * 1e6) / 8 / 250));
      await tc(['qdisc', 'add', 'dev', l.dev, 'root', 'handle', '1:', 'tbf', 'rate', mbit(r), 'burst', String(burst), 'latency', '50ms']);
      return {
        kind,
        async setRate(_n, m) {
          await tc(['qdisc', 'change', 'dev', l.dev, 'root', 'handle', '1:', 'tbf', 'rate', mbit(m), 'burst', String(Math.max(140_000, Math.round((m * 1e6) / 8 / 250))), 'latency', '50ms']);
        },
        drops,
        close: undo,
      };
    }
    const total = classes.reduce((a, c) => a + c.mbit, 0);
    const def = classes.findIndex((c) => c.port === null);
    await tc(['qdisc', 'add', 'dev', l.dev, 'root', 'handle', '1:', 'htb', 'default', String(10 + (def < 0 ? 0 : def) * 10)]);
    await tc(['class', 'add', 'dev', l.dev, 'parent', '1:', 'classid', '1:1', 'htb', 'rate', mbit(total), 'ceil', mbit(total)]);
    const ids = new Map<string, string>();
    for (const [i, c] of classes.entries()) {
      const id = `1:${10 + i * 10}`;
      ids.set(c.name, id);
      await tc(['class', 'add', 'dev', l.dev, 'parent', '1:1', 'classid', id, 'htb', 'rate', mbit(c.mbit), 'ceil', mbit(c.mbit)]);
      // fq_codel with its defaults (target 5 ms, ECN on, 1024 flow queues): per-flow queues and
      // CoDel inside the class, as a latency-minded administrator would add
      if (c.leaf) await tc(['qdisc', 'add', 'dev', l.dev, 'parent', id, 'handle', `${10 + i * 10}:`, c.leaf]);
      if (c.port) await tc(['filter', 'add', 'dev', l.dev, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip', 'dport', String(c.port), '0xffff', 'flowid', id]);
    }
    return {
      kind,
      async setRate(name, m) {
        await tc(['class', 'change', 'dev', l.dev, 'parent', '1:1', 'classid', ids.get(name)!, 'htb', 'rate', mbit(m), 'ceil', mbit(m)]);
      },
      drops,
      close: undo,
    };
  } catch (e) {
    await undo();
    throw e;
  }
}
