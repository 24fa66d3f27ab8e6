// perf_event programs: one perf event per CPU (software or hardware), each with the program
// attached through a bpf_link that owns the event's fd.
import { archFacts } from '../../../common/arch.ts';
import { B, C, errno } from '../ffi.ts';
import { AttachError, AttachInputError, BpfError, Errno, errnoName, hintFor } from '../errors.ts';
import type { Link } from '../link.ts';
import type { Program } from '../object.ts';
import { linkFrom, requireLoaded } from './internal.ts';

const PERF_FLAG_FD_CLOEXEC = 8;
const PERF_ATTR_FREQ = 1n << 10n;
// the size we tell the kernel (PERF_ATTR_SIZE_VER7): older kernels accept it, the tail is zero
const PERF_ATTR_SIZE = 128;

export interface PerfEventAttr {
  /** PERF_TYPE_* (0 hardware, 1 software …) */
  type: number;
  /** PERF_COUNT_* of that type */
  config: number;
  /** sample every n events … */
  samplePeriod?: number;
  /** … or n times a second (takes precedence) */
  freq?: number;
}

/** Attach to an already opened perf event fd (the link owns it afterwards; the caller, if this throws). */
export function attachPerfEvent(prog: Program, pfd: number): Link {
  if (!Number.isInteger(pfd) || pfd < 0) throw new AttachInputError('perf_event', `perf event fd ${pfd} is not a file descriptor`, undefined, Errno.EBADF);
  return linkFrom('perf_event', prog, `perf_event fd ${pfd}`, () => B.bpf_program__attach_perf_event(prog.ptr, pfd));
}

type RawAttr = { type: number; config: number | bigint; sample_period: number; flags: bigint };
function perfAttr(x: RawAttr) {
  return {
    ...x, size: PERF_ATTR_SIZE, sample_type: 0, read_format: 0, wakeup_events: 0, bp_type: 0, config1: 0, config2: 0,
    branch_sample_type: 0, sample_regs_user: 0, sample_stack_user: 0, clockid: 0, sample_regs_intr: 0, aux_watermark: 0,
    sample_max_stack: 0, _reserved_2: 0, aux_sample_size: 0, _reserved_3: 0, sig_data: 0, config3: 0,
  };
}

/**
 * Open a counting perf event (no sampling) on one CPU for all processes, e.g. hardware cycles for
 * a BPF_MAP_TYPE_PERF_EVENT_ARRAY slot or a power/energy-* counter; the caller owns the fd
 * (read 8 bytes for the count, close it when done). Throws BpfError with the errno (ENOENT: the
 * machine does not expose this event; ENODEV: offline CPU).
 */
export function perfEventOpen(attr: { type: number; config: number | bigint }, cpu: number): number {
  const a = perfAttr({ type: attr.type, config: attr.config, sample_period: 0, flags: 0n });
  const fd = Number(C.syscall_perf_event_open(archFacts().syscall.perf_event_open, a, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
  if (fd < 0) {
    const e = errno();
    throw new BpfError(`perf_event_open(type ${attr.type}, config ${attr.config}) on cpu ${cpu}: ${errnoName(e)}`, e, hintFor(e));
  }
  return fd;
}

/** Sample on every CPU: a perf event per online CPU, each with this program attached. */
export function attachPerfEventAllCpus(prog: Program, attr: PerfEventAttr): Link[] {
  const period = attr.freq ?? attr.samplePeriod ?? 1;
  if (!Number.isInteger(period) || period <= 0) throw new AttachInputError('perf_event', `sampling ${attr.freq !== undefined ? 'frequency' : 'period'} ${period} is not a positive integer`);
  requireLoaded('perf_event', prog);
  const nr = archFacts().syscall.perf_event_open;
  const a = perfAttr({ type: attr.type, config: attr.config, sample_period: period, flags: attr.freq ? PERF_ATTR_FREQ : 0n });
  const links: Link[] = [];
  try {
    for (let cpu = 0; cpu < B.libbpf_num_possible_cpus(); cpu++) {
      const pfd = Number(C.syscall_perf_event_open(nr, a, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
      if (pfd < 0) {
        const e = errno();
        if (e === Errno.ENODEV) continue; // a possible CPU that is offline
        throw new AttachError('perf_event', prog.name, `perf_event_open on cpu ${cpu}`, e);
      }
      try {
        links.push(attachPerfEvent(prog, pfd));
      } catch (e) {
        C.close(pfd); // libbpf closes it only once the link holds it: enabled, it would keep sampling
        throw e;
      }
    }
  } catch (err) {
    links.forEach((l) => l.close());
    throw err;
  }
  return links;
}
