// Errors that tell the user what failed and what to do, cilium/ebpf style: a load failure carries
// the failing program, the verifier log (its tail is what matters) and a hint.
import os from 'node:os';

/**
 * Errno values by name (libbpf returns -errno), so code compares `r === -Errno.ENOENT`, never a
 * bare number. ENOTSUPP (524) is kernel-internal and missing from Node's table.
 */
export const Errno = { ...os.constants.errno, ENOTSUPP: 524 } as const;
export type ErrnoName = keyof typeof Errno;

/** 'ENOENT' for 2 or -2; undefined for 0 or an unknown number */
export function errnoCode(e: number): ErrnoName | undefined {
  return e ? names[Math.abs(e)] as ErrnoName | undefined : undefined;
}

export class BpfError extends Error {
  constructor(
    message: string,
    readonly errno: number = 0,
    readonly hint?: string,
    /** what libbpf printed while doing it (warnings, CO-RE relocation failures …) */
    readonly libbpfLog: string = '',
  ) {
    super(hint ? `${message}\n  hint: ${hint}` : message);
    this.name = 'BpfError';
  }

  /** the errno by name ('ENOENT', 'EPERM' …), like Go's errors.Is(err, unix.ENOENT) */
  get code(): ErrnoName | undefined {
    return errnoCode(this.errno);
  }

  /** the kernel lacks the feature (cilium/ebpf's ErrNotSupported): EOPNOTSUPP, ENOTSUPP, or EINVAL for an unknown type */
  get notSupported(): boolean {
    return this.code === 'EOPNOTSUPP' || this.code === 'ENOTSUPP';
  }
}

/**
 * An attach that failed: which program, which kind of hook (tracing, xdp, tc, cgroup, perf_event,
 * netns) and which target, with the errno by name. cilium/ebpf's link package has one such error
 * per kind; one class with a `kind` serves the same checks here.
 */
export class AttachError extends BpfError {
  constructor(
    readonly kind: AttachKind,
    readonly program: string,
    readonly target: string,
    errno: number,
    hint?: string,
    libbpfLog = '',
  ) {
    super(`attaching ${program} (${target}): ${errnoName(errno)}`, Math.abs(errno), hint ?? busyHint(kind, errno) ?? hintFor(errno, libbpfLog), libbpfLog);
    this.name = 'AttachError';
  }
}

/** the hook is taken: one XDP program per interface and mode, one tc filter per handle and priority */
function busyHint(kind: AttachKind, errno: number): string | undefined {
  const e = Math.abs(errno);
  if (kind === 'xdp' && e === Errno.EBUSY) return 'another XDP program is attached to this interface (another LB instance?): stop it, or detach it (ip link set dev DEV xdp off)';
  if (kind === 'tc' && e === Errno.EEXIST) return 'a tc filter with this handle and priority is on this device already (another shaper instance?): stop it (pnpm lab tc shape stop --instance NAME)';
  return undefined;
}

/** An attach refused before any syscall: the input itself is wrong (no such interface, bad name …). */
export class AttachInputError extends BpfError {
  constructor(
    readonly kind: AttachKind,
    message: string,
    hint?: string,
    errno = Errno.EINVAL,
  ) {
    super(message, errno, hint);
    this.name = 'AttachInputError';
  }
}

export type AttachKind = 'tracing' | 'xdp' | 'tc' | 'cgroup' | 'perf_event' | 'netns';

export class VerifierError extends BpfError {
  constructor(
    readonly object: string,
    readonly program: string,
    errno: number,
    readonly log: string,
    libbpfLog: string,
  ) {
    const tail = VerifierError.tail(log, 20);
    super(
      `loading program "${program}" of ${object} failed: ${errnoName(errno)}${tail ? `\n  verifier log (last lines):\n${tail.split('\n').map((l) => `    ${l}`).join('\n')}` : ''}`,
      errno,
      hintFor(errno, log + libbpfLog),
      libbpfLog,
    );
    this.name = 'VerifierError';
  }

  static tail(log: string, n: number): string {
    return log.trimEnd().split('\n').slice(-n).join('\n');
  }
}

const names: Record<number, string> = Object.fromEntries(
  Object.entries(os.constants.errno).map(([k, v]) => [v, k]),
);

export function errnoName(e: number): string {
  const n = Math.abs(e);
  return names[n] ? `${names[n]} (${n})` : `errno ${n}`;
}

/** The fix for the usual suspects, from the errno and whatever the verifier/libbpf said. */
export function hintFor(errno: number, text = ''): string | undefined {
  const e = Math.abs(errno);
  if (/vmlinux BTF|failed to find valid kernel BTF|Kernel doesn't support BTF/i.test(text))
    return 'the kernel has no BTF (/sys/kernel/btf/vmlinux): CO-RE needs CONFIG_DEBUG_INFO_BTF=y, or pass a btfCustomPath';
  if (/failed to resolve CO-RE relocation|relo #\d+.*failed/i.test(text))
    return 'a CO-RE relocation failed: a field or type the program reads does not exist on this kernel; guard it with bpf_core_field_exists()';
  if (/unknown func|invalid func|helper call is not allowed|program of this type cannot use helper/i.test(text))
    return 'the program calls a helper this kernel or program type does not offer; probe it (pnpm lab doctor) and use a fallback';
  if (/BPF program is too large|too many instructions|complexity limit/i.test(text))
    return 'the verifier hit its complexity limit: bound the loops, split the program with tail calls, or simplify branches';
  if (/invalid mem access|invalid access to|R\d+ invalid|R\d+ !read_ok|math between .* pointer/i.test(text))
    return 'the verifier could not prove a memory access safe: add a bounds check (e.g. data + len <= data_end) right before it';
  if (e === Errno.EPERM)
    return process.getuid?.() === 0
      ? 'permission denied as root: the kernel forbids this program/attach type here (lockdown, or an LSM); check pnpm lab doctor'
      : 'needs CAP_BPF (and CAP_PERFMON/CAP_NET_ADMIN for tracing/networking): run as root';
  if (e === Errno.EINVAL && /unknown|not supported|invalid argument/i.test(text))
    return 'the kernel rejected the program or attach type: it may be unsupported on this kernel (pnpm lab doctor lists what is)';
  if (e === Errno.ENOTSUPP || e === Errno.EOPNOTSUPP) return 'not supported on this kernel: probe with pnpm lab doctor and use a fallback hook';
  if (e === Errno.ENOENT) return 'the attach target does not exist on this kernel (tracepoint, function or interface name)';
  if (e === Errno.E2BIG) return 'a struct passed to the kernel is larger than this kernel knows (newer libbpf/header than the kernel)';
  return undefined;
}
