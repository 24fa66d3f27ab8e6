// Timeouts scale with the target. Under TCG a guest runs 10-30x slower than native, so a wait
// that is generous on the host (a daemon ready in 15 s) fails in a VM. The VM target sets
// EBPF_LAB_TIME_SCALE for everything it runs in the guest (TCG 10, KVM 2); on the host it is 1
// unless the user sets it. A leaf module: scenarios and controllers may import it.
export function timeScale(): number {
  const v = Number(process.env.EBPF_LAB_TIME_SCALE);
  return Number.isFinite(v) && v > 0 ? v : 1;
}

export function scaledTimeout(ms: number): number {
  return Math.round(ms * timeScale());
}
