// The data plane's flow hash (flow_hash() in bpf/xdp_lb.bpf.c), in TypeScript: tells which ring
// slot, hence which backend, a new flow gets. Tests use it to predict forwarding exactly.
function rotl(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51) >>> 0;
  k = rotl(k, 15);
  k = Math.imul(k, 0x1b873593) >>> 0;
  h = (h ^ k) >>> 0;
  h = rotl(h, 13);
  return (Math.imul(h, 5) + 0xe6546b64) >>> 0;
}

/** src: 16 address bytes as in the packet; sport/dport: network-order u16 values as loaded on x86 */
export function flowHash(src: Uint8Array, sportRaw: number, dportRaw: number, proto: number): number {
  const dv = new DataView(src.buffer, src.byteOffset, 16);
  let h = 0x9747b28c;
  for (let i = 0; i < 4; i++) h = mix(h, dv.getUint32(i * 4, true));
  h = mix(h, ((sportRaw << 16) | dportRaw) >>> 0);
  h = mix(h, proto);
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  return h;
}
