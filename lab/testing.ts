// Test helpers shared by the *.test.ts files next to the code they test.
import { execa } from 'execa';
import { describe } from 'vitest';

/** Why a root/BPF test cannot run here, or null when it can. */
export const rootSkipReason: string | null = process.getuid?.() === 0 ? null : 'needs root (loads BPF programs)';

/** describe() for tests that need root; elsewhere the suite is skipped with the reason in its name. */
export function describeRoot(name: string, fn: () => void): void {
  if (rootSkipReason) describe.skip(`${name} [skipped: ${rootSkipReason}]`, fn);
  else describe(name, fn);
}

/** Kernel BPF objects (programs, maps, links) by kind, as bpftool sees them. */
export async function bpfObjects(): Promise<{ progs: { id: number; name?: string }[]; maps: { id: number; name?: string }[]; links: { id: number; prog_id?: number }[] }> {
  const j = async (kind: string) => {
    const r = await execa('bpftool', ['-j', kind, 'show'], { reject: false });
    return r.exitCode === 0 && r.stdout.trim() ? JSON.parse(r.stdout) : [];
  };
  const [progs, maps, links] = await Promise.all([j('prog'), j('map'), j('link')]);
  return { progs, maps, links };
}

/** What fn throws (the test fails when it does not throw), for asserting on an error's fields. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw, but the call returned');
}
