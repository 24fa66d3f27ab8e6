// Everything the lab assumes about the CPU architecture, in one table keyed by process.arch.
// Only x86-64 is filled in: it is what the lab is built and tested on. Another architecture fails
// at the first use with one clear error instead of, say, calling the wrong syscall number.
import { LabError } from './errors.ts';

export interface ArchFacts {
  /** process.arch */
  node: NodeJS.Architecture;
  /** Debian's name (binary-<debian>/Packages, linux-image-*-<debian>) */
  debian: string;
  /** QEMU system emulator for this architecture */
  qemu: string;
  /** clang -D__TARGET_ARCH_<x> for bpf_tracing.h's PT_REGS_* accessors */
  bpfTargetArch: string;
  /** syscall numbers the binding calls through libc's syscall(2) (no libc wrapper exists) */
  syscall: { perf_event_open: number };
  /** open(2) flags that differ between architectures */
  O_DIRECTORY: number;
  /**
   * How a va_list parameter arrives in a C callback. On x86-64 va_list is an array type, so as a
   * parameter it decays to a pointer that can be handed on to vsnprintf unchanged (libbpf's print
   * callback relies on this). On arm64 it is a struct passed by value: the pointer trick is wrong.
   */
  vaList: 'pointer';
  /**
   * Memory ordering for the BPF ring buffer's producer/consumer positions, read from JS: on x86
   * (TSO) plain loads and stores are never reordered with each other, and V8 does not reorder
   * them across the data reads of one drain, so a plain DataView read of the producer position
   * followed by reading the record header is the same acquire load libbpf does with
   * smp_load_acquire. A weakly ordered architecture needs real acquire/release (Atomics).
   */
  memoryModel: 'tso';
}

const FACTS: Partial<Record<NodeJS.Architecture, ArchFacts>> = {
  x64: {
    node: 'x64',
    debian: 'amd64',
    qemu: 'qemu-system-x86_64',
    bpfTargetArch: 'x86',
    syscall: { perf_event_open: 298 },
    O_DIRECTORY: 0o200000,
    vaList: 'pointer',
    memoryModel: 'tso',
  },
};

/** The facts for `arch` (default: this process), or a LabError naming what is missing. */
export function archFacts(arch: NodeJS.Architecture = process.arch): ArchFacts {
  const f = FACTS[arch];
  if (!f) {
    throw new LabError(
      `unsupported architecture: ${arch} (the lab knows only ${Object.keys(FACTS).join(', ')})`,
      'add its syscall numbers, open flags, va_list passing and memory model to common/arch.ts and test the binding there',
    );
  }
  return f;
}
