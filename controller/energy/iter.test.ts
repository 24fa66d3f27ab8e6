// The iter flavour's bookkeeping on made-up records (no kernel): growth, exits, exec's tid swap,
// address reuse, give-up, pruning, the per-CPU split.
import { describe, expect, it } from 'vitest';
import { busyWeights, IterAccount, procStatBusy, type IterRecord } from './iter.ts';

const S = 1_000_000_000n;
const rec = (task: number, start: number, sum: number, o: Partial<IterRecord> = {}): IterRecord => ({ task: BigInt(task), startNs: BigInt(start), sumNs: sum, cgroupId: 1n, tid: task, tgid: task, comm: 'x', ...o });
const total = (a: IterAccount, key = '1:1') => (a.keys.get(key)?.ns ?? []).reduce((s, x) => s + x, 0);
const busy = (a: IterAccount) => a.busy.reduce((s, x) => s + x, 0);

describe('IterAccount', () => {
  it('charges a thread seen before it opened only what it ran since, one born after all of it', () => {
    const a = new IterAccount(2, 100n);
    a.update(1n * S, [rec(1, 50, 1000), rec(2, 150, 400, { tgid: 2 })], [], null);
    expect(total(a)).toBe(0);
    expect(total(a, '1:2')).toBe(400);
    a.update(2n * S, [rec(1, 50, 1600), rec(2, 150, 500, { tgid: 2 })], [], null);
    expect(total(a)).toBe(600);
    expect(total(a, '1:2')).toBe(500);
    expect(busy(a)).toBe(1100);
    expect(a.keys.get('1:1')!.ns).toEqual([300, 300]); // no weights: even
  });

  it('an exit record closes a thread at its final runtime; one no walk saw is charged whole if born after', () => {
    const a = new IterAccount(1, 100n);
    a.update(1n * S, [rec(1, 150, 100)], [], null);
    a.update(2n * S, [], [rec(1, 150, 180), rec(7, 160, 40, { tgid: 1 })], null);
    expect(total(a)).toBe(180 + 40);
    expect(a.threadCount).toBe(0);
    // an exit of a thread that predates the account and no walk saw: nothing known to charge
    a.update(3n * S, [], [rec(8, 10, 5000)], null);
    expect(busy(a)).toBe(220);
  });

  it('exec from a non-leader thread (de_thread: the exec-er takes the leader\'s tid and start time) charges both threads once', () => {
    const a = new IterAccount(1, 0n);
    // leader at address 0xa (tid 10, start 100), thread at 0xb (tid 11, start 200)
    a.update(1n * S, [rec(0xa, 100, 1000, { tid: 10, tgid: 10 }), rec(0xb, 200, 500, { tid: 11, tgid: 10 })], [], null);
    const before = total(a, '1:10');
    // 0xb exec'd: now tid 10, start 100; the old leader leaves as tid 11 with start 100
    a.update(2n * S, [rec(0xb, 100, 600, { tid: 10, tgid: 10 })], [rec(0xa, 100, 1050, { tid: 11, tgid: 10 })], null);
    expect(total(a, '1:10') - before).toBe(100 + 50);
    a.update(3n * S, [rec(0xb, 100, 700, { tid: 10, tgid: 10 })], [], null);
    expect(total(a, '1:10') - before).toBe(250);
    a.update(30n * S, [rec(0xb, 100, 700, { tid: 10, tgid: 10 })], [], null);
    expect(a.lost).toBe(0);
  });

  it('a reused task address is another thread; the old one\'s exit record still closes it', () => {
    const a = new IterAccount(1, 15n);
    a.update(1n * S, [rec(5, 10, 100)], [], null);
    // freed (record pending) and the address reused by a thread born after the account opened
    a.update(2n * S, [rec(5, 20, 30)], [rec(5, 10, 120)], null);
    expect(total(a, '1:5')).toBe(30 + 20);
    expect(a.threadCount).toBe(1);
    a.update(3n * S, [rec(5, 20, 70)], [], null);
    expect(total(a, '1:5')).toBe(90);
  });

  it('an unseen thread\'s exit record at an address a seen thread took over afterwards leaves that thread alone', () => {
    const a = new IterAccount(1, 15n);
    // X (start 20) was born and freed between two reads; Y (start 30) got its address and was seen
    a.update(1n * S, [rec(5, 30, 100, { tid: 41, tgid: 40 })], [rec(5, 20, 7, { tid: 51, tgid: 50 })], null);
    expect(total(a, '1:40')).toBe(100);
    expect(total(a, '1:50')).toBe(7);
    expect(a.threadCount).toBe(1);
    a.update(2n * S, [rec(5, 30, 130, { tid: 41, tgid: 40 })], [], null);
    expect(total(a, '1:40')).toBe(130); // not 100 + 130: Y was not taken for new again
  });

  it('a thread that exec\'d and exited before a walk saw the exec is closed by its record as its process\'s leader', () => {
    const a = new IterAccount(1, 0n);
    a.update(1n * S, [rec(0xa, 100, 1000, { tid: 10, tgid: 10 }), rec(0xb, 200, 500, { tid: 11, tgid: 10 })], [], null);
    const before = total(a, '1:10');
    a.update(2n * S, [], [rec(0xa, 100, 1010, { tid: 11, tgid: 10 }), rec(0xb, 100, 540, { tid: 10, tgid: 10 })], null);
    expect(total(a, '1:10') - before).toBe(10 + 40);
    expect(a.threadCount).toBe(0);
  });

  it('an earlier start at a known address is another task unless it shows the same process\'s leader', () => {
    const a = new IterAccount(1, 0n);
    a.update(1n * S, [rec(5, 300, 100, { tid: 31, tgid: 30 })], [], null);
    // freed; its address went to a thread of another process that exec'd (its leader's older start)
    a.update(2n * S, [rec(5, 200, 70, { tid: 40, tgid: 40 })], [rec(5, 300, 150, { tid: 31, tgid: 30 })], null);
    expect(total(a, '1:30')).toBe(150);
    expect(total(a, '1:40')).toBe(70);
    expect(a.threadCount).toBe(1);
  });

  it('a key pruned and made again (pid reuse) is a new generation', () => {
    const a = new IterAccount(1, 0n);
    a.update(1n * S, [rec(1, 5, 10)], [], null);
    const g = a.keys.get('1:1')!.gen;
    a.update(2n * S, [], [rec(1, 5, 20)], null);
    a.markSampled();
    a.update(3n * S, [rec(2, 6, 3, { tgid: 1 })], [], null);
    expect(a.keys.get('1:1')!.gen).not.toBe(g);
    expect(total(a)).toBe(3);
  });

  it('ignores weights that are not one finite share per CPU', () => {
    const a = new IterAccount(2, 0n);
    a.update(1n * S, [rec(1, 5, 100)], [], [NaN, 1]);
    a.update(2n * S, [rec(1, 5, 200)], [], [1]);
    expect(a.keys.get('1:1')!.ns).toEqual([100, 100]);
  });

  it('gives up a thread whose exit record never comes, counts it, and ignores the record if it comes late', () => {
    const a = new IterAccount(1, 0n, 10n * S);
    a.update(1n * S, [rec(1, 5, 100)], [], null);
    a.update(2n * S, [], [], null); // gone from the walk: waits for its record
    expect(a.lost).toBe(0);
    a.update(13n * S, [], [], null);
    expect(a.lost).toBe(1);
    a.update(14n * S, [], [rec(1, 5, 150)], null);
    expect(total(a)).toBe(100); // not 150 more: its whole runtime would be charged a second time
  });

  it('a cgroup move sends the growth to the new key; keys of gone threads go once a sample has seen them', () => {
    const a = new IterAccount(1, 0n);
    a.update(1n * S, [rec(1, 5, 100), rec(2, 6, 10, { tgid: 2 })], [], null);
    a.update(2n * S, [rec(1, 5, 160, { cgroupId: 9n }), rec(2, 6, 10, { tgid: 2 })], [], null);
    expect(total(a, '9:1')).toBe(60);
    expect(a.keys.has('1:1')).toBe(true); // its value has not been sampled yet
    a.markSampled();
    a.update(3n * S, [rec(1, 5, 170, { cgroupId: 9n })], [rec(2, 6, 15, { tgid: 2 })], null);
    expect(a.keys.has('1:1')).toBe(false); // no thread left, sampled
    expect(total(a, '1:2')).toBe(15); // its last 5 ns are not sampled yet: kept
    a.markSampled();
    a.update(4n * S, [rec(1, 5, 170, { cgroupId: 9n })], [], null);
    expect(a.keys.has('1:2')).toBe(false);
    expect(a.keys.has('9:1')).toBe(true); // live
  });

  it('splits each read\'s growth over the CPUs by the given weights', () => {
    const a = new IterAccount(2, 0n);
    a.update(1n * S, [rec(1, 5, 0)], [], null);
    a.update(2n * S, [rec(1, 5, 100)], [], [0.75, 0.25]);
    expect(a.keys.get('1:1')!.ns).toEqual([75, 25]);
    expect(a.busy).toEqual([75, 25]);
    // whole nanoseconds: a third of 100 is 33, the rest goes to the last CPU
    a.update(3n * S, [rec(1, 5, 200)], [], [1 / 3, 2 / 3]);
    expect(a.keys.get('1:1')!.ns).toEqual([108, 92]);
  });
});

describe('per-CPU weights from /proc/stat', () => {
  const stat = (a: number[], b: number[]) => `cpu  9 9 9 9 0 0 0 0 0 0\ncpu0 ${a.join(' ')} 5000 0 0 0 0 0 0\ncpu1 ${b.join(' ')} 5000 0 0 0 0 0 0\nintr 1\n`;
  it('takes user + nice + system per listed CPU', () => {
    expect(procStatBusy(stat([1, 2, 3], [10, 0, 5]), [0, 1, 4])).toEqual([6, 15, 0]);
  });
  it('weights are each CPU\'s share of the busy ticks between two readings, null when none moved', () => {
    expect(busyWeights([6, 15], [36, 25])).toEqual([0.75, 0.25]);
    expect(busyWeights([6, 15], [6, 15])).toBeNull();
    expect(busyWeights(null, [6, 15])).toBeNull();
  });
});
