// Maglev consistent hashing (Eisenbud et al., NSDI'16, §3.4): every backend has a permutation of
// the table slots (offset + j·skip mod M, M prime); backends take turns claiming their next
// preferred free slot until the table is full. Weights: a backend claims a slot per turn in
// proportion to its weight (credit accumulates by weight and is spent in units of the maximum
// weight), which keeps each backend's share within a small error of weight/Σweight. A backend
// whose weight is too small for one slot of its own (weights [1000, 1, 1] on 251 slots: 0.25
// each) still gets one — the skew is at most one slot per backend: its share is at least 1/size.
export interface MaglevBackend {
  /** stable identity: the permutation depends on it, so the same backend always prefers the same slots */
  key: string;
  /** the value written to the table (the data plane's backend id) */
  id: number;
  weight: number;
}

export const EMPTY_SLOT = 0xffffffff; // LB_EMPTY_SLOT: the data plane drops on it

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/** the smallest prime ≥ n (a ringSize to suggest) */
export function nextPrime(n: number): number {
  let p = Math.max(2, Math.ceil(n));
  while (!isPrime(p)) p++;
  return p;
}

// two independent 32-bit string hashes (FNV-1a with different bases, then a murmur finaliser)
function hash32(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

export function maglevTable(backends: MaglevBackend[], size: number): Uint32Array {
  if (!isPrime(size)) throw new Error(`Maglev table size ${size} is not prime`);
  const table = new Uint32Array(size).fill(EMPTY_SLOT);
  const live = backends.filter((b) => b.weight > 0);
  if (live.length === 0) return table;
  // sort by key so the result does not depend on insertion order (a restarted controller
  // computes the same table from the same set)
  live.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const n = live.length;
  const offset = new Uint32Array(n);
  const skip = new Uint32Array(n);
  const next = new Uint32Array(n);
  const credit = new Float64Array(n);
  const maxW = Math.max(...live.map((b) => b.weight));
  live.forEach((b, i) => {
    offset[i] = hash32(b.key, 0x1234567) % size;
    skip[i] = (hash32(b.key, 0x7654321) % (size - 1)) + 1;
  });
  let filled = 0;
  // each outer pass gives every backend weight/maxW claims; bounded: at least one claim per pass
  while (filled < size) {
    for (let i = 0; i < n && filled < size; i++) {
      credit[i] += live[i]!.weight / maxW;
      while (credit[i]! >= 1 && filled < size) {
        credit[i] -= 1;
        // next preferred slot that is still free; a permutation visits every slot, so this ends
        let c = (offset[i]! + next[i]! * skip[i]!) % size;
        while (table[c] !== EMPTY_SLOT) {
          next[i]++;
          c = (offset[i]! + next[i]! * skip[i]!) % size;
        }
        table[c] = live[i]!.id;
        next[i]++;
        filled++;
      }
    }
  }
  // A live backend left without a slot took no traffic although its weight is > 0, silently. Each
  // such one (in key order) takes the first slot of its own permutation whose owner has more than
  // one, so nobody is starved in turn. Only such backends change the table: one whose backends all
  // own a slot is the plain weighted Maglev table, and adding or removing a starved backend moves
  // one slot. With at most `size` backends (the configs refuse more) some owner always has two.
  if (live.length <= size) {
    const owned = new Map<number, number>();
    for (const v of table) owned.set(v, (owned.get(v) ?? 0) + 1);
    for (let i = 0; i < n; i++) {
      const id = live[i]!.id;
      if (owned.has(id)) continue;
      for (let j = 0; j < size; j++) {
        const c = (offset[i]! + j * skip[i]!) % size;
        const o = table[c]!;
        if (owned.get(o)! > 1) {
          owned.set(o, owned.get(o)! - 1);
          owned.set(id, 1);
          table[c] = id;
          break;
        }
      }
    }
  }
  return table;
}

/** entries per backend id */
export function shares(table: Uint32Array): Map<number, number> {
  const m = new Map<number, number>();
  for (const v of table) m.set(v, (m.get(v) ?? 0) + 1);
  return m;
}
