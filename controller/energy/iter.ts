// The iter flavour's bookkeeping (pure; controller/energy/collector.ts feeds it from the kernel).
// Each read brings one record per live thread from the task iterator (bpf/energy.bpf.c energy_iter)
// and one per thread the kernel freed since the last read (energy_task_free, its final runtime).
// A thread is charged the growth of its se.sum_exec_runtime since its previous record, to the
// (cgroup, tgid) of the record that shows it; the kernel keeps the runtime, this keeps only what
// was charged. Identity is the task_struct's address, not the tid:
//   - a non-leader thread that execs takes the leader's tid *and* start time (de_thread), while the
//     old leader leaves under the exec'ing thread's old tid; by (tid, start) the new program's time
//     would be measured against the old leader's runtime and the old leader charged twice;
//   - an address is reused only after its task was freed: a walk that shows a later start time at
//     a known address means another task, and the old one's exit record is still to come
//     (`retired`); an earlier start time at the same address is the same thread only as its
//     process's leader in the same process (the de_thread case), else also another task.
// Not handled (counted or charged wrongly, rare): a thread that execs twice within one read, and
// a thread born after the collector opened that execs before any walk saw it (it takes its
// leader's older start time, so what it ran before the next walk is taken for time before us).
// A thread first seen is charged nothing (its runtime so far ran before the collector looked)
// unless it started after the collector opened (`bornAfter`), then all of it. A thread that left
// the walk and whose exit record does not come within `giveUpNs` (the kernel's LRU of exit records
// was full) is given up: counted in `lost`, and its record, should it still come, ignored.
// Each read's growth is split over the CPUs by `weights` (the kernel's per-CPU busy time over the
// read, /proc/stat; even when unknown): the kernel keeps no per-thread per-CPU time.

export interface IterRecord {
  task: bigint;
  cgroupId: bigint;
  sumNs: number;
  startNs: bigint;
  tid: number;
  tgid: number;
  comm: string;
}

export interface IterKey {
  /** which incarnation of the key: one pruned and made again (pid reuse) starts from 0 with a new gen */
  gen: number;
  cgroupId: bigint;
  tgid: number;
  comm: string;
  /** cumulative on-CPU ns per CPU (index into the CPU list the account was made with) */
  ns: number[];
}

interface Thread {
  start: bigint;
  sum: number;
  key: string;
  cgroupId: bigint;
  tgid: number;
  /** the update that last saw it in the walk */
  seen: number;
  /** when a walk first missed it (0n while walks see it) */
  missingSince: bigint;
}

const keyOf = (cg: bigint, tgid: number) => `${cg}:${tgid}`;

export class IterAccount {
  /** cumulative per (cgroup, tgid) */
  readonly keys = new Map<string, IterKey & { sampled: number; total: number }>();
  /** cumulative busy ns per CPU (index) */
  readonly busy: number[];
  /** threads given up (no exit record within giveUpNs) */
  lost = 0;
  private readonly threads = new Map<bigint, Thread>();
  private readonly retired = new Map<string, Thread>();
  private readonly givenUp = new Map<string, bigint>();
  private readonly live = new Map<string, number>();
  private seq = 0;
  private gens = 0;

  constructor(
    private readonly cpus: number,
    private readonly bornAfter: bigint,
    private readonly giveUpNs = 10_000_000_000n,
  ) {
    this.busy = new Array<number>(cpus).fill(0);
  }

  /** threads the account follows (live, or gone with their exit record due) */
  get threadCount(): number {
    return this.threads.size + this.retired.size;
  }

  /**
   * One read: the walk's records, then the exit records drained after it (in that order: a thread
   * freed after the walk has its final value counted against what the walk saw). `weights`: each
   * CPU's share of the read's busy time (summing to 1), or null for an even split.
   */
  update(now: bigint, walk: Iterable<IterRecord>, exits: Iterable<IterRecord>, weights: number[] | null): void {
    this.prune();
    const ok = weights && weights.length === this.cpus && weights.every((x) => Number.isFinite(x) && x >= 0);
    const w = ok ? weights : new Array<number>(this.cpus).fill(1 / this.cpus);
    const seq = ++this.seq;
    for (const r of walk) {
      let th = this.threads.get(r.task);
      // an earlier start is the same thread only after an exec (de_thread: the leader's tid and start, same process)
      if (th && (r.startNs > th.start || (r.startNs < th.start && !(r.tid === r.tgid && r.tgid === th.tgid)))) {
        // the address holds another task now: the old one's exit record is due
        this.threads.delete(r.task);
        th.missingSince = now;
        this.retired.set(`${r.task}:${th.start}`, th);
        th = undefined;
      }
      if (!th) {
        const key = keyOf(r.cgroupId, r.tgid);
        this.threads.set(r.task, { start: r.startNs, sum: r.sumNs, key, cgroupId: r.cgroupId, tgid: r.tgid, seen: seq, missingSince: 0n });
        this.addLive(key, 1);
        this.charge(key, r, r.startNs >= this.bornAfter ? r.sumNs : 0, w, true);
        continue;
      }
      const grew = Math.max(0, r.sumNs - th.sum);
      th.sum = Math.max(th.sum, r.sumNs);
      th.start = r.startNs; // equal, or earlier after a de_thread
      th.seen = seq;
      th.missingSince = 0n;
      if (th.cgroupId !== r.cgroupId || th.tgid !== r.tgid) {
        const key = keyOf(r.cgroupId, r.tgid);
        this.addLive(th.key, -1);
        this.addLive(key, 1);
        th.key = key;
        th.cgroupId = r.cgroupId;
        th.tgid = r.tgid;
      }
      // most threads did not run since the last read: nothing to add
      if (grew > 0) this.charge(th.key, r, grew, w, true);
    }
    for (const r of exits) {
      const id = `${r.task}:${r.startNs}`;
      const key = keyOf(r.cgroupId, r.tgid);
      if (this.givenUp.delete(id)) continue;
      let th = this.retired.get(id);
      if (th) this.retired.delete(id);
      else {
        th = this.threads.get(r.task);
        // The same thread: the start time the walk saw, or an earlier one after an exec the walk
        // missed — then it leaves as its process's leader (de_thread gave it the leader's tid and
        // start). Anything else at a tracked address is a thread no walk saw (born and freed
        // between two reads) whose address a thread the walk did see took over afterwards.
        if (th && (r.startNs === th.start || (r.startNs < th.start && r.tid === r.tgid && r.tgid === th.tgid))) this.threads.delete(r.task);
        else th = undefined;
      }
      if (th) {
        this.addLive(th.key, -1);
        this.charge(key, r, Math.max(0, r.sumNs - th.sum), w, false);
      } else this.charge(key, r, r.startNs >= this.bornAfter ? r.sumNs : 0, w, false);
    }
    const giveUp = (m: Map<string, Thread> | Map<bigint, Thread>, id: bigint | string, th: Thread, addr: bigint | string) => {
      (m as Map<typeof id, Thread>).delete(id);
      this.addLive(th.key, -1);
      this.lost++;
      this.givenUp.set(typeof addr === 'string' ? addr : `${addr}:${th.start}`, now + 10n * this.giveUpNs);
    };
    for (const [addr, th] of this.threads) {
      if (th.seen === seq) continue;
      if (!th.missingSince) th.missingSince = now;
      else if (now - th.missingSince > this.giveUpNs) giveUp(this.threads, addr, th, addr);
    }
    for (const [id, th] of this.retired) if (now - th.missingSince > this.giveUpNs) giveUp(this.retired, id, th, id);
    for (const [id, until] of this.givenUp) if (now > until) this.givenUp.delete(id);
  }

  /** a sample has read every key's value as it is now: keys with no thread left can go at the next update */
  markSampled(): void {
    for (const k of this.keys.values()) k.sampled = k.total;
  }

  /** keys whose threads are all gone and whose last value a sample has seen */
  private prune(): void {
    for (const [key, k] of this.keys) if (!this.live.get(key) && k.sampled === k.total) this.keys.delete(key);
  }

  private addLive(key: string, d: number): void {
    const n = (this.live.get(key) ?? 0) + d;
    if (n > 0) this.live.set(key, n);
    else this.live.delete(key);
  }

  private charge(key: string, r: IterRecord, ns: number, w: number[], fromWalk: boolean): void {
    let k = this.keys.get(key);
    if (!k) this.keys.set(key, (k = { gen: ++this.gens, cgroupId: r.cgroupId, tgid: r.tgid, comm: r.comm, ns: new Array<number>(this.cpus).fill(0), sampled: -1, total: 0 }));
    else if (fromWalk && r.comm) k.comm = r.comm; // an exit record names the thread, not its leader
    if (ns <= 0) return;
    k.total += ns;
    // whole nanoseconds, the last CPU taking the remainder: sums over CPUs stay exact
    let left = ns;
    for (let i = 0; i < this.cpus; i++) {
      const x = i === this.cpus - 1 ? left : Math.min(left, Math.floor(ns * w[i]!));
      left -= x;
      k.ns[i]! += x;
      this.busy[i]! += x;
    }
  }
}

/** each CPU's share of the busy time between two /proc/stat readings (user + nice + system), or null when none moved */
export function busyWeights(prev: number[] | null, cur: number[]): number[] | null {
  if (!prev || prev.length !== cur.length) return null;
  const d = cur.map((x, i) => Math.max(0, x - prev[i]!));
  const sum = d.reduce((a, b) => a + b, 0);
  return sum > 0 ? d.map((x) => x / sum) : null;
}

/** per listed CPU, user + nice + system ticks from /proc/stat's text (0 for a CPU it does not list) */
export function procStatBusy(text: string, cpus: number[]): number[] {
  const by = new Map<number, number>();
  for (const line of text.split('\n')) {
    const m = /^cpu(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(line);
    if (m) by.set(Number(m[1]), Number(m[2]) + Number(m[3]) + Number(m[4]));
  }
  return cpus.map((c) => by.get(c) ?? 0);
}
